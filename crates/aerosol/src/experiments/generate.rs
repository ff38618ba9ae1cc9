//! `m7-generate`: training data for the emulator — sample spun-up cells, take one M7 step each,
//! write the dataset in the reference layout and report distributions, zero-tendency shares,
//! process activity and box-model throughput.

use crate::box_model::M7;
use crate::config::M7Config;
use crate::dataset::{Dtype, tables, write_dataset};
use crate::layout::{self, Column};
use crate::sampler::{SamplerConfig, models, sample_cell};
use crate::state::{AerosolState, Environment};
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::plot::Histogram;
use gradlab_core::report::{Report, fmt_num};
use ndarray::{Array2, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Parameters of `m7-generate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The run's one seed: the sampler's cell streams and the split's shuffle derive from it.
    pub seed: u64,
    /// Number of samples (cells).
    pub samples: usize,
    /// Cells per generation chunk (progress and metrics granularity; at least 1).
    #[serde(default = "default_chunk")]
    pub chunk: usize,
    /// Train and validation fractions; the rest is test.
    #[serde(default = "default_split")]
    pub split: [f64; 2],
    /// Keep sea salt in the state columns.
    #[serde(default)]
    pub include_sea_salt: bool,
    /// Element type of the written arrays.
    #[serde(default)]
    pub dtype: Dtype,
    /// Write the dataset into `<run>/dataset/`.
    #[serde(default = "yes")]
    pub write_dataset: bool,
    /// Cells used for histograms (the first ones; all statistics in tables use every cell).
    #[serde(default = "default_hist")]
    pub histogram_cells: usize,
    /// Histogram bins.
    #[serde(default = "default_bins")]
    pub bins: usize,
    /// Cells (at most `samples` are used) and repeats of the throughput measurement, both at
    /// least 1.
    #[serde(default = "default_tp")]
    pub throughput: [usize; 2],
    /// Box model of the recorded step.
    #[serde(default)]
    pub m7: M7Config,
    /// Sampler.
    #[serde(default)]
    pub sampler: SamplerConfig,
}

impl Params {
    /// Refuses counts that would make the run meaningless instead of clamping them: `samples`,
    /// `chunk`, `bins`, `histogram_cells` and both `throughput` entries must be at least 1, and
    /// `split` is checked before any cell is generated (when the dataset is written).
    pub fn validate(&self) -> crate::Result<()> {
        for (field, v) in [
            ("samples", self.samples),
            ("chunk", self.chunk),
            ("bins", self.bins),
            ("histogram_cells", self.histogram_cells),
            ("throughput[0] (cells)", self.throughput[0]),
            ("throughput[1] (repeats)", self.throughput[1]),
        ] {
            if v == 0 {
                return Err(crate::Error::invalid(field, v, "at least 1"));
            }
        }
        if self.write_dataset {
            crate::dataset::train_val_test_indices(0, self.split[0], self.split[1], 0)?;
        }
        Ok(())
    }
}

fn default_chunk() -> usize {
    20_000
}
fn default_split() -> [f64; 2] {
    [0.8, 0.1]
}
fn yes() -> bool {
    true
}
fn default_hist() -> usize {
    200_000
}
fn default_bins() -> usize {
    60
}
fn default_tp() -> [usize; 2] {
    [50_000, 3]
}

/// Process-activity counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Activity {
    cells: usize,
    condensation: usize,
    nucleation: usize,
    coagulation: usize,
    ageing: usize,
    mode_shift: usize,
    water: usize,
    cloudy: usize,
    production: usize,
}

impl Activity {
    fn add(&mut self, o: &Activity) {
        self.cells += o.cells;
        self.condensation += o.condensation;
        self.nucleation += o.nucleation;
        self.coagulation += o.coagulation;
        self.ageing += o.ageing;
        self.mode_shift += o.mode_shift;
        self.water += o.water;
        self.cloudy += o.cloudy;
        self.production += o.production;
    }
}

fn measure_throughput(model: &M7, cells: &[(Environment, AerosolState)], repeats: usize) -> (f64, f64) {
    let run = |c: &[(Environment, AerosolState)]| {
        let mut acc = 0.0;
        for (env, s) in c {
            let mut s = *s;
            let (d, _) = model.step(env, &mut s);
            acc += s.n[1] + d.water[2];
        }
        acc
    };
    let mut best1 = f64::INFINITY;
    let mut best_all = f64::INFINITY;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    for _ in 0..repeats {
        let t = Instant::now();
        std::hint::black_box(pool.install(|| run(cells)));
        best1 = best1.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(cells.par_chunks(1024).map(run).sum::<f64>());
        best_all = best_all.min(t.elapsed().as_secs_f64());
    }
    let n = cells.len() as f64;
    (n / best1, n / best_all)
}

fn justification(name: &str) -> &'static str {
    if name.starts_with("du_") {
        "dust exists only in land cells with dust emission; M7 moves dust only by coagulation, ageing and shifting"
    } else if name.starts_with("so4_ns") || name == "n_ns" {
        "the nucleation mode is empty unless nucleation happened during spin-up or in this step"
    } else if name.starts_with("bc_cs") || name.starts_with("oc_cs") {
        "coarse BC/OC only arrive by coagulation of KS particles with coarse particles"
    } else if name == "n_cs" || name == "n_ai" || name == "n_ci" {
        "M7 has no intra-modal coagulation for CS/AI/CI; their number changes only by ageing or shifting"
    } else if name.starts_with("n_") {
        "empty mode"
    } else if name.starts_with("water") {
        "empty mode, or sea salt below 45 % RH"
    } else {
        "empty mode or inactive process"
    }
}

/// The generated tables and what was counted while generating them.
struct Generated {
    x: Array2<f64>,
    y: Array2<f64>,
    xc: Vec<Column>,
    yc: Vec<Column>,
    n_state: usize,
    activity: Activity,
    /// Cells sampled by this invocation (the rest were read back from a resumed run's chunks).
    sampled: usize,
    seconds: f64,
}

/// Zero shares and signs of each state tendency.
struct ZeroShares {
    rows: Vec<Vec<String>>,
    shares: Vec<(String, f64)>,
}

/// Runs `m7-generate`: generate → tendency statistics → throughput → histograms → dataset →
/// report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.validate()?;
    let (model, spin) = models(&p.m7, &p.sampler)?;
    // Under MPI the cells are sampled over the ranks; rank 0 alone goes on to the statistics,
    // the throughput measurement, the dataset and the report.
    let Some(g) = generate(ctx, &p, &model, &spin)? else { return Ok(()) };
    let tend = &g.y.slice(s![.., ..g.n_state]) - &g.x.slice(s![.., 8..]);
    let zeros = zero_shares(&g, &tend);
    let tp = throughput(&p, &g, &model);
    let figures = histograms(ctx, &p, &g, &tend)?;
    let dataset_dir = ctx.dir.path().join("dataset");
    let manifest = if p.write_dataset {
        let split = (p.split[0], p.split[1]);
        Some(write_dataset(&dataset_dir, &g.x, &g.y, p.include_sea_salt, split, p.seed, p.dtype, &p.m7, &p.sampler)?)
    } else {
        None
    };
    write_report(ctx, &p, &g, &zeros, tp, &figures)?;
    let cols = |c: &[Column]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    ctx.dir.write_summary(&serde_json::json!({
        "samples": p.samples,
        "throughput_cells_per_s_1_thread": tp.0,
        "throughput_cells_per_s_all_threads": tp.1,
        "threads": rayon::current_num_threads(),
        "generation_cells_per_s": g.sampled as f64 / g.seconds,
        "cells_read_back": p.samples - g.sampled,
        "activity": g.activity,
        "zero_tendency_share": zeros.shares.iter().map(|(n, z)| serde_json::json!({"variable": n, "share": z})).collect::<Vec<_>>(),
        "x_columns": cols(&g.xc),
        "y_columns": cols(&g.yc),
        "dataset": manifest.map(|m| serde_json::json!({"dir": dataset_dir, "counts": m.counts})),
    }))?;
    remove_chunks(ctx)
}

/// The finished chunks are not needed once the tables are written (the dataset holds them).
fn remove_chunks(ctx: &RunContext) -> ExperimentResult {
    let partial = ctx.dir.path().join("partial");
    std::fs::remove_dir_all(&partial).map_err(|e| gradlab_core::Error::io(&partial, e))?;
    let stages = ctx.dir.path().join("stages");
    for e in std::fs::read_dir(&stages).map_err(|e| gradlab_core::Error::io(&stages, e))? {
        let path = e.map_err(|e| gradlab_core::Error::io(&stages, e))?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("chunk-")) {
            std::fs::remove_file(&path).map_err(|e| gradlab_core::Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Samples the cells chunk by chunk (in parallel within a chunk) into the X and y tables.
///
/// Every finished chunk is kept in `partial/` (its X and y rows as `.npy`, then its activity
/// counts as the stage `chunk-<start>`): a run continued with `--resume` reads the finished
/// chunks back and samples only the missing ones, giving the same tables as an uninterrupted run
/// (each cell's stream depends only on the seed and the cell's index).
///
/// Under MPI ([`RunContext::comm`] with several ranks) each chunk is split over the ranks
/// ([`sample_chunk_on`]) and rank 0 keeps the chunks; the tables are the same for any rank count.
/// Returns `None` on the other ranks.
fn generate(ctx: &mut RunContext, p: &Params, model: &M7, spin: &M7) -> crate::Result<Option<Generated>> {
    let root = ctx.comm().is_root();
    let ss = p.include_sea_salt;
    let xc = layout::x_columns(ss);
    let yc = layout::y_columns(ss);
    let n_state = yc.len() - 4;
    let mut x = Array2::<f64>::zeros((p.samples, xc.len()));
    let mut y = Array2::<f64>::zeros((p.samples, yc.len()));
    let mut activity = Activity::default();
    let partial = ctx.dir.subdir("partial")?;
    let bar = gradlab_core::observe::progress_bar(p.samples as u64, "m7-generate", ctx.quiet);
    let t_gen = Instant::now();
    let (mut start, mut sampled) = (0usize, 0usize);
    while start < p.samples {
        let count = p.chunk.min(p.samples - start);
        let key = format!("chunk-{start:012}");
        let (fx, fy) = (partial.join(format!("{key}.x.npy")), partial.join(format!("{key}.y.npy")));
        let mut fresh = None;
        let a: Option<Activity> = ctx.stage_on(&key, || -> crate::Result<Option<Activity>> {
            let Some((cx, cy, a)) = sample_chunk_on(ctx.comm(), model, spin, p, start, count)? else {
                return Ok(None);
            };
            gradlab_core::io::write_npy(&fx, &cx)?;
            gradlab_core::io::write_npy(&fy, &cy)?;
            fresh = Some((cx, cy));
            Ok(Some(a))
        })?;
        let Some(a) = a else {
            start += count;
            continue;
        };
        let (cx, cy) = match fresh {
            Some(c) => {
                sampled += count;
                c
            }
            None => (read_chunk(&fx, count, xc.len())?, read_chunk(&fy, count, yc.len())?),
        };
        x.slice_mut(s![start..start + count, ..]).assign(&cx);
        y.slice_mut(s![start..start + count, ..]).assign(&cy);
        activity.add(&a);
        start += count;
        bar.set_position(start as u64);
        ctx.metrics()?.log(&serde_json::json!({
            "cells": start,
            "sampled_here": sampled,
            "elapsed_s": t_gen.elapsed().as_secs_f64(),
        }))?;
    }
    bar.finish_and_clear();
    if !root {
        return Ok(None);
    }
    Ok(Some(Generated { x, y, xc, yc, n_state, activity, sampled, seconds: t_gen.elapsed().as_secs_f64() }))
}

/// A chunk's X and y rows and its activity counts.
type Chunk = (Array2<f64>, Array2<f64>, Activity);

/// [`sample_chunk`] split over the ranks of `comm`: each samples a contiguous slice of the chunk
/// and rank 0 gathers the rows (in cell order) and adds up the activity counts. `None` on the
/// other ranks.
fn sample_chunk_on(
    comm: &dyn gradlab_core::dist::Comm,
    model: &M7,
    spin: &M7,
    p: &Params,
    start: usize,
    count: usize,
) -> crate::Result<Option<Chunk>> {
    if comm.size() == 1 {
        return Ok(Some(sample_chunk(model, spin, p, start, count)));
    }
    use gradlab_core::dist::{Part, contiguous_slice, gather_parts};
    let mine = contiguous_slice(count, comm.rank(), comm.size());
    let (cx, cy, a) = sample_chunk(model, spin, p, start + mine.start, mine.len());
    let head = serde_json::to_vec(&a).map_err(|e| gradlab_core::Error::external("encoding activity counts", e))?;
    let part = Part { head, values: cx.iter().chain(cy.iter()).copied().collect() };
    let Some(parts) = gather_parts(comm, 0, &part)? else { return Ok(None) };
    let (nx, ny) = (cx.ncols(), cy.ncols());
    let (mut xs, mut ys) = (Vec::with_capacity(count * nx), Vec::with_capacity(count * ny));
    let mut activity = Activity::default();
    for (rank, part) in parts.iter().enumerate() {
        let a: Activity = serde_json::from_slice(&part.head)
            .map_err(|e| gradlab_core::Error::external(format!("activity counts from rank {rank}"), e))?;
        let rows = a.cells;
        if rows != contiguous_slice(count, rank, comm.size()).len() || part.values.len() != rows * (nx + ny) {
            return Err(gradlab_core::Error::invalid(
                "gathered chunk",
                format!("part of rank {rank}"),
                "its slice's rows",
            )
            .into());
        }
        xs.extend_from_slice(&part.values[..rows * nx]);
        ys.extend_from_slice(&part.values[rows * nx..]);
        activity.add(&a);
    }
    let x = Array2::from_shape_vec((count, nx), xs).map_err(|e| gradlab_core::Error::external("gathered X rows", e))?;
    let y = Array2::from_shape_vec((count, ny), ys).map_err(|e| gradlab_core::Error::external("gathered y rows", e))?;
    Ok(Some((x, y, activity)))
}

/// Samples `count` cells from index `start`: their X and y rows and activity counts.
fn sample_chunk(model: &M7, spin: &M7, p: &Params, start: usize, count: usize) -> (Array2<f64>, Array2<f64>, Activity) {
    let samples: Vec<_> = (0..count as u64)
        .into_par_iter()
        .map(|i| sample_cell(model, spin, &p.sampler, p.seed, start as u64 + i))
        .collect();
    let (cx, cy) = tables(&samples, p.include_sea_salt);
    let mut a = Activity { cells: count, ..Default::default() };
    for smp in &samples {
        let i = &smp.info;
        a.condensation += (i.condensed > 0.0) as usize;
        a.nucleation += (i.nucleated > 0.0) as usize;
        a.coagulation += (i.coagulated > 0.0) as usize;
        a.ageing += (i.aged > 0.0) as usize;
        a.mode_shift += (i.shifted > 0.0) as usize;
        a.water += smp.diagnostics.water.iter().any(|&w| w > 0.0) as usize;
        a.cloudy += (smp.env.cloud_cover > 0.0) as usize;
        a.production += (smp.env.h2so4_production > 0.0) as usize;
    }
    (cx, cy, a)
}

/// A finished chunk's rows read back, checked against the shape this run expects.
fn read_chunk(file: &std::path::Path, rows: usize, cols: usize) -> crate::Result<Array2<f64>> {
    let a: Array2<f64> = gradlab_core::io::read_npy(file)?;
    if a.dim() != (rows, cols) {
        return Err(gradlab_core::Error::ShapeMismatch {
            what: format!("{} (a finished chunk of this run)", file.display()),
            expected: vec![rows, cols],
            got: a.shape().to_vec(),
        }
        .into());
    }
    Ok(a)
}

/// Tendencies and zero shares over all cells.
fn zero_shares(g: &Generated, tend: &Array2<f64>) -> ZeroShares {
    let xs = g.x.slice(s![.., 8..]);
    let ys = g.y.slice(s![.., ..g.n_state]);
    let mut rows = Vec::new();
    let mut shares = Vec::new();
    for (k, col) in g.yc.iter().take(g.n_state).enumerate() {
        let t = tend.column(k);
        let n = t.len().max(1) as f64;
        let zero = t.iter().filter(|v| **v == 0.0).count() as f64 / n;
        let pos = t.iter().filter(|v| **v > 0.0).count() as f64 / n;
        let neg = t.iter().filter(|v| **v < 0.0).count() as f64 / n;
        let empty = xs.column(k).iter().zip(ys.column(k)).filter(|(a, b)| **a == 0.0 && **b == 0.0).count() as f64 / n;
        shares.push((col.name.clone(), zero));
        rows.push(vec![
            col.name.clone(),
            format!("{:.1} %", 100.0 * zero),
            format!("{:.1} %", 100.0 * empty),
            format!("{:.1} %", 100.0 * pos),
            format!("{:.1} %", 100.0 * neg),
            if zero > 0.25 { justification(&col.name).to_string() } else { String::new() },
        ]);
    }
    ZeroShares { rows, shares }
}

/// Box-model throughput (cells/s on one thread, on all threads) on the sampled pre-step states.
fn throughput(p: &Params, g: &Generated, model: &M7) -> (f64, f64) {
    let n_tp = p.throughput[0].min(p.samples);
    let cells: Vec<(Environment, AerosolState)> = (0..n_tp)
        .map(|i| {
            let r = g.x.row(i);
            let r = r.as_slice().expect("standard layout");
            (layout::read_env(&r[..8]), layout::read_state(&r[8..], p.include_sea_salt))
        })
        .collect();
    measure_throughput(model, &cells, p.throughput[1])
}

/// Histograms of the inputs, the |tendencies| by sign and the water outputs on the first cells;
/// returns (caption, path) per figure.
fn histograms(ctx: &RunContext, p: &Params, g: &Generated, tend: &Array2<f64>) -> crate::Result<Vec<(String, String)>> {
    let nh = p.histogram_cells.min(p.samples);
    let figs = ctx.dir.subdir("figures")?;
    let mut figure_list: Vec<(String, String)> = Vec::new();
    let hist = |title: &str, xlabel: &str, data: Vec<(&str, Vec<f64>)>, log: bool, stem: &str| -> crate::Result<()> {
        let mut h = Histogram::new(title).x_label(xlabel).y_label("cells").bins(p.bins).log_y(true).log_x(log);
        for (name, v) in data {
            h = h.data(name, v);
        }
        h.save(&figs.join(stem))?;
        Ok(())
    };
    for (k, col) in g.xc.iter().enumerate() {
        let v: Vec<f64> = g.x.slice(s![..nh, k]).to_vec();
        let log = k >= 8 || col.name == "h2so4_production" || col.name == "ionisation";
        let stem = format!("x_{}", col.name);
        let xlabel = if log { "value (log scale)" } else { "value" };
        hist(&format!("{} [{}]", col.name, col.unit), xlabel, vec![(col.name.as_str(), v)], log, &stem)?;
        figure_list.push((format!("input {}", col.name), format!("figures/{stem}.png")));
    }
    for (k, col) in g.yc.iter().take(g.n_state).enumerate() {
        let t = tend.slice(s![..nh, k]);
        let pos: Vec<f64> = t.iter().filter(|v| **v > 0.0).copied().collect();
        let neg: Vec<f64> = t.iter().filter(|v| **v < 0.0).map(|v| -v).collect();
        let stem = format!("tendency_{}", col.name);
        let title = format!("|Δ {}| per step [{}]", col.name, col.unit);
        hist(&title, "|tendency| (log scale)", vec![("Δ > 0", pos), ("Δ < 0", neg)], true, &stem)?;
        figure_list.push((format!("tendency {}", col.name), format!("figures/{stem}.png")));
    }
    for (k, col) in g.yc.iter().enumerate().skip(g.n_state) {
        let v: Vec<f64> = g.y.slice(s![..nh, k]).to_vec();
        let stem = format!("y_{}", col.name);
        hist(&format!("{} [{}]", col.name, col.unit), "value (log scale)", vec![(col.name.as_str(), v)], true, &stem)?;
        figure_list.push((format!("output {}", col.name), format!("figures/{stem}.png")));
    }
    Ok(figure_list)
}

fn write_report(
    ctx: &RunContext,
    p: &Params,
    g: &Generated,
    zeros: &ZeroShares,
    (tp1, tp_all): (f64, f64),
    figures: &[(String, String)],
) -> crate::Result<()> {
    let threads = rayon::current_num_threads();
    let activity = &g.activity;
    let frac = |c: usize| format!("{:.1} %", 100.0 * c as f64 / activity.cells.max(1) as f64);
    let mut report = Report::new("m7-generate: M7 box-model training data");
    report.paragraph(&format!(
        "Command: `{}`. {} cells, seed {}, Δt = {} s, water scheme {:?}. Each cell is spun up by the \
         box model from emissions for {}–{} steps of {} s and then stepped once; X = environment + \
         state before the step, y = state after + water (reference layout, {} / {} columns).",
        ctx.command(),
        p.samples,
        p.seed,
        p.m7.dt,
        p.m7.water,
        p.sampler.spinup_steps[0],
        p.sampler.spinup_steps[1],
        p.sampler.spinup_dt,
        g.xc.len(),
        g.yc.len()
    ));
    report.heading("Throughput");
    report.table(
        &["measure", "value"],
        &[
            vec!["box-model step, 1 thread".into(), format!("{} cells/s", fmt_num(tp1, 3))],
            vec![format!("box-model step, {threads} threads"), format!("{} cells/s", fmt_num(tp_all, 3))],
            vec![
                "generation incl. spin-up".into(),
                if g.sampled == p.samples {
                    format!("{} cells/s ({:.1} s total)", fmt_num(g.sampled as f64 / g.seconds, 3), g.seconds)
                } else {
                    format!(
                        "{} cells/s over the {} cells sampled after `--resume` ({} read back from the interrupted run)",
                        fmt_num(g.sampled as f64 / g.seconds, 3),
                        g.sampled,
                        p.samples - g.sampled
                    )
                },
            ],
        ],
    );
    report.heading("Process activity (share of cells where the process changed the state)");
    report.table(
        &["process", "share of cells"],
        &[
            vec!["condensation".into(), frac(activity.condensation)],
            vec!["nucleation".into(), frac(activity.nucleation)],
            vec!["coagulation".into(), frac(activity.coagulation)],
            vec!["ageing".into(), frac(activity.ageing)],
            vec!["mode shifting".into(), frac(activity.mode_shift)],
            vec!["water uptake (any soluble mode)".into(), frac(activity.water)],
            vec!["(cells with cloud cover > 0)".into(), frac(activity.cloudy)],
            vec!["(cells with H2SO4 production > 0)".into(), frac(activity.production)],
        ],
    );
    report.heading("Tendencies: share of exactly zero, of empty variables, and signs");
    report.paragraph("'empty' = the variable is 0 before and after the step (a subset of the zero tendencies). A justification is given where more than 25 % of tendencies are exactly zero.");
    report.table(&["variable", "Δ = 0", "empty", "Δ > 0", "Δ < 0", "why zero"], &zeros.rows);
    report.heading("Distributions");
    let nh = p.histogram_cells.min(p.samples);
    report
        .paragraph(&format!("Histograms over the first {nh} cells, log-scaled axes (tendencies: |Δ| split by sign)."));
    for (cap, path) in figures {
        report.figure(cap, path);
    }
    report.write(&ctx.dir)?;
    Ok(())
}
