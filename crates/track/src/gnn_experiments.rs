//! Experiments of Tracking II: `track-pat`, `track-ptt` and `track-compare`.
//!
//! All three share one flow: simulate training/validation frames at one setting, train every
//! model variant for every seed with the core trainer (checkpoints in the run directory, best by
//! validation purity), then evaluate on independent test frames for each (primaries, water
//! thickness) setting: the per-layer assignment on every model, the score-threshold baseline
//! (no assignment) on every model, and the track follower. Mean ± std over seeds, edge TPR/FPR,
//! training curves, purity vs density, and timings.

use std::collections::BTreeMap;
use std::time::Instant;

use gradlab_core::experiment::{Experiment, ExperimentResult, RunContext};
use gradlab_core::observe::{JsonlObserver, Observer, ProgressObserver};
use gradlab_core::plot::{LinePlot, Mark};
use gradlab_core::report::Report;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::experiments::SetupParams;
use crate::experiments::follower::{PAPER_FOLLOWER_100, PAPER_PAT};
use crate::follower::{FollowerConfig, follow};
use crate::sim::Simulator;
use crate::tracks::{FrameMetrics, average, evaluate};
use crate::training::{
    FrameData, Method, Model, Selector, Summary, TrainSpec, evaluate_model, frame_loss, prepare, train,
};

/// The experiments of this module.
pub fn all() -> Vec<Experiment> {
    vec![
        Experiment {
            entry: "track.pat",
            description: "PAT (end-to-end, blackbox LAP gradient) for several λ: purity/efficiency grid",
            run: run_pat,
        },
        Experiment {
            entry: "track.ptt",
            description: "PTT (BCE, LAP at inference): purity/efficiency grid",
            run: run_ptt,
        },
        Experiment {
            entry: "track.compare",
            description: "PAT λ=50 vs PTT vs score threshold vs track follower, beside the paper; timings",
            run: run_compare,
        },
    ]
}

/// Where training and validation frames come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataParams {
    /// Water thickness of the training frames [mm].
    pub thickness_mm: f64,
    /// Primaries per training frame.
    pub primaries: usize,
    /// Training frames.
    pub train_frames: usize,
    /// Validation frames.
    pub val_frames: usize,
}

/// Test grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalParams {
    /// Primaries per frame.
    pub primaries: Vec<usize>,
    /// Water thicknesses [mm].
    pub thicknesses_mm: Vec<f64>,
    /// Test frames per setting.
    pub frames: usize,
    /// Probability cut of the score-threshold baseline.
    #[serde(default = "half")]
    pub threshold: f64,
}

fn half() -> f64 {
    0.5
}

/// Parameters of the three experiments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Simulation seed.
    pub seed: u64,
    /// Model seeds (initialisation and shuffling).
    pub seeds: Vec<u64>,
    /// Simulation setup (detector, beam, physics, graph cuts).
    #[serde(default)]
    pub setup: SetupParams,
    /// Training data.
    pub data: DataParams,
    /// The training specification (its `method` is overridden per variant).
    pub spec: TrainSpec,
    /// λ values trained with PAT (`track-pat`; `track-compare` uses `compare_lambda`).
    #[serde(default)]
    pub lambdas: Vec<f64>,
    /// λ of PAT in `track-compare`.
    #[serde(default = "fifty")]
    pub compare_lambda: f64,
    /// Test grid.
    pub eval: EvalParams,
    /// Follower parameters (track-compare).
    #[serde(default)]
    pub follower: FollowerConfig,
}

fn fifty() -> f64 {
    50.0
}

/// Frame-index streams: training, validation and test frames never overlap.
const VAL_FIRST: u64 = 500_000;
const TEST_FIRST: u64 = 1_000_000;

fn run_pat(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    if p.lambdas.is_empty() {
        return Err("lambdas must list at least one λ for track-pat".into());
    }
    let variants = p
        .lambdas
        .iter()
        .map(|&l| {
            let mut s = p.spec.clone();
            s.method = Method::Pat;
            s.assign.lambda = l;
            (format!("PAT λ={l}"), s)
        })
        .collect();
    run_variants(ctx, &p, variants, false, "track-pat: predict-and-track with the blackbox assignment gradient")
}

fn run_ptt(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    let mut s = p.spec.clone();
    s.method = Method::Ptt;
    run_variants(
        ctx,
        &p,
        vec![("PTT".into(), s)],
        false,
        "track-ptt: predict-then-track (BCE, assignment at inference)",
    )
}

fn run_compare(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    let mut pat = p.spec.clone();
    pat.method = Method::Pat;
    pat.assign.lambda = p.compare_lambda;
    let mut ptt = p.spec.clone();
    ptt.method = Method::Ptt;
    let variants = vec![(format!("PAT λ={}", p.compare_lambda), pat), ("PTT".into(), ptt)];
    run_variants(ctx, &p, variants, true, "track-compare: PAT vs PTT vs score threshold vs track follower")
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = if xs.len() > 1 { xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, v.sqrt())
}

fn pct(xs: &[f64]) -> String {
    let (m, s) = mean_std(xs);
    format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[derive(Debug, Clone, Serialize)]
struct Cell {
    primaries: usize,
    thickness_mm: f64,
    method: String,
    per_seed: Vec<Summary>,
}

fn run_variants(
    ctx: &mut RunContext,
    p: &Params,
    variants: Vec<(String, TrainSpec)>,
    compare: bool,
    title: &str,
) -> ExperimentResult {
    if p.seeds.is_empty() || p.data.train_frames == 0 || p.data.val_frames == 0 || p.eval.frames == 0 {
        return Err("seeds, data.train_frames, data.val_frames and eval.frames must all be non-empty / ≥ 1".into());
    }
    for (_, s) in &variants {
        s.validate()?;
    }
    p.follower.validate()?;
    let det = p.setup.detector.load()?;
    let model_cfg = &p.spec.model;
    let tl = p.spec.tracker_layers;
    let t0 = Instant::now();
    let sim = Simulator::new(&p.setup.sim_config(&det, p.data.thickness_mm, p.data.primaries))?;
    let train_frames =
        prepare(&sim.simulate_frames(p.seed, 0, p.data.train_frames as u64), &p.setup.graph, model_cfg, tl)?;
    let val_frames =
        prepare(&sim.simulate_frames(p.seed, VAL_FIRST, p.data.val_frames as u64), &p.setup.graph, model_cfg, tl)?;
    let data_secs = t0.elapsed().as_secs_f64();
    let mean_edges = train_frames.iter().map(|f| f.num_edges()).sum::<usize>() as f64 / train_frames.len() as f64;

    // Train every variant × seed.
    let mut models: Vec<(String, u64, Model)> = Vec::new();
    let mut curves: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut train_log = Vec::new();
    for (label, spec) in &variants {
        for &seed in &p.seeds {
            let mut spec = spec.clone();
            spec.train.seed = seed;
            let tag = format!("{label} seed {seed}");
            let ck = ctx
                .dir
                .subdir(&format!("checkpoints/{}-seed{seed}", label.replace([' ', '='], "_").replace('λ', "lambda")))?;
            let obs: Vec<Box<dyn Observer>> = vec![
                Box::new(JsonlObserver::new(ctx.dir.jsonl("train.jsonl")?, 10).with_tag(&tag)),
                Box::new(ProgressObserver::new(&tag, ctx.quiet)),
            ];
            let t = Instant::now();
            let (model, rep) = train(&spec, seed, &train_frames, &val_frames, Some(&ck), false, obs)?;
            let secs = t.elapsed().as_secs_f64();
            curves.insert(
                tag.clone(),
                rep.history.iter().map(|h| (h.step as f64, h.metrics.get("purity").copied().unwrap_or(0.0))).collect(),
            );
            train_log.push(serde_json::json!({
                "variant": label, "seed": seed, "steps": rep.steps, "best_purity": rep.best, "best_step": rep.best_step,
                "train_seconds": secs,
            }));
            models.push((label.clone(), seed, model));
        }
    }

    // Evaluate on the grid.
    let mut cells: Vec<Cell> = Vec::new();
    let mut follower_cells: Vec<(usize, f64, crate::tracks::MeanMetrics)> = Vec::new();
    let mut timings = serde_json::Map::new();
    for &n in &p.eval.primaries {
        for &t in &p.eval.thicknesses_mm {
            let sim = Simulator::new(&p.setup.sim_config(&det, t, n))?;
            let raw = sim.simulate_frames(p.seed, TEST_FIRST, p.eval.frames as u64);
            let test = prepare(&raw, &p.setup.graph, model_cfg, tl)?;
            for (label, spec) in &variants {
                let mut lap = Vec::new();
                let mut thr = Vec::new();
                for (l, _, m) in models.iter().filter(|(l, _, _)| l == label) {
                    let _ = l;
                    lap.push(evaluate_model(m, &test, Selector::Lap(spec.assign.unmatched()), &spec.filter)?);
                    thr.push(evaluate_model(m, &test, Selector::Threshold(p.eval.threshold), &spec.filter)?);
                }
                cells.push(Cell { primaries: n, thickness_mm: t, method: label.clone(), per_seed: lap });
                cells.push(Cell {
                    primaries: n,
                    thickness_mm: t,
                    method: format!("{label} score > {}", p.eval.threshold),
                    per_seed: thr,
                });
            }
            if compare {
                let fm: Vec<FrameMetrics> = test
                    .par_iter()
                    .map(|fd| {
                        follow(&fd.graph, &p.follower)
                            .map(|tr| evaluate(&fd.graph, &p.spec.filter.apply(&fd.graph, tr)))
                    })
                    .collect::<crate::Result<_>>()?;
                follower_cells.push((n, t, average(&fm)));
                // Timings at 100 primaries (or the largest setting below it), first thickness only.
                if n == *p.eval.primaries.iter().filter(|&&x| x <= 100).max().unwrap_or(&n)
                    && t == p.eval.thicknesses_mm[0]
                {
                    timings = time_pipeline(&models[0].2, &variants[0].1, &test, n, t)?;
                }
            }
            if compare && n == *p.eval.primaries.iter().max().unwrap_or(&n) && t == p.eval.thicknesses_mm[0] {
                if let Some(m) = peak_rss_mib() {
                    timings.insert(
                        "peak_rss_mib_after_largest_setting".into(),
                        serde_json::json!({ "primaries": n, "mib": m }),
                    );
                }
            }
        }
    }

    // Report.
    let mut report = Report::new(title);
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&format!(
        "Training: {} frames of {} primaries behind {} mm water (mean {:.0} hit-graph edges per frame), {} validation frames; \
         {} optimiser steps of {} frames (batch 1 × grad_accum {}), optimiser {:?}; model {:?} hidden {}; seeds {:?}. \
         Test: {} independent frames per setting. Purity / efficiency in % (mean ± std over seeds of the frame averages). \
         Data preparation {:.1} s.",
        p.data.train_frames,
        p.data.primaries,
        p.data.thickness_mm,
        mean_edges,
        p.data.val_frames,
        train_log.first().and_then(|r| r["steps"].as_u64()).unwrap_or(0),
        p.spec.train.grad_accum,
        p.spec.train.grad_accum,
        p.spec.train.optimizer,
        p.spec.model.graph,
        p.spec.model.hidden,
        p.seeds,
        p.eval.frames,
        data_secs
    ));
    let mut rows = Vec::new();
    for c in &cells {
        let pur: Vec<f64> = c.per_seed.iter().map(|s| s.purity).collect();
        let eff: Vec<f64> = c.per_seed.iter().map(|s| s.efficiency).collect();
        let tpr: Vec<f64> = c.per_seed.iter().map(|s| s.tpr).collect();
        let fpr: Vec<f64> = c.per_seed.iter().map(|s| s.fpr).collect();
        let failed: usize = c.per_seed.iter().map(|s| s.failed).sum();
        let paper = if c.method.starts_with("PAT λ=50") && !c.method.contains("score") {
            PAPER_PAT
                .iter()
                .find(|r| r.1 as usize == c.primaries && (r.0 as f64 - c.thickness_mm).abs() < 1e-9)
                .map(|r| format!("{:.1} / {:.1}", r.2, r.3))
        } else {
            None
        };
        rows.push(vec![
            c.primaries.to_string(),
            format!("{:.0}", c.thickness_mm),
            c.method.clone(),
            pct(&pur),
            pct(&eff),
            format!("{:.1} / {:.2}", 100.0 * mean_std(&tpr).0, 100.0 * mean_std(&fpr).0),
            failed.to_string(),
            paper.unwrap_or_else(|| "—".into()),
        ]);
    }
    for (n, t, m) in &follower_cells {
        let paper = PAPER_FOLLOWER_100
            .iter()
            .find(|r| *n == 100 && (r.0 as f64 - t).abs() < 1e-9)
            .map(|r| format!("{:.1} / {:.1}", r.1, r.2));
        rows.push(vec![
            n.to_string(),
            format!("{t:.0}"),
            "track follower".into(),
            format!("{:.1}", 100.0 * m.purity),
            format!("{:.1}", 100.0 * m.efficiency),
            "—".into(),
            "0".into(),
            paper.unwrap_or_else(|| "—".into()),
        ]);
    }
    report.heading("Purity and efficiency");
    report.table(
        &[
            "p+/frame",
            "water mm",
            "method",
            "purity %",
            "efficiency %",
            "edge TPR / FPR %",
            "failed frames",
            "paper pur / eff",
        ],
        &rows,
    );
    report.paragraph(
        "“score > t” is the score-threshold baseline: edges with probability above t, no assignment. A frame whose selection \
         branches into more than 200 000 root-to-leaf paths counts as failed (purity and efficiency 0).",
    );

    // Figures.
    let mut lp = LinePlot::new("Validation track purity during training").x_label("optimiser step").y_label("purity");
    for (tag, pts) in &curves {
        lp = lp.series(tag, pts.clone(), Mark::LinePoints);
    }
    lp.save(&ctx.dir.path().join("training_curves"))?;
    report.figure("Validation purity vs step (best checkpoint selected by it)", "training_curves.png");
    let t_ref = p.eval.thicknesses_mm[0];
    let mut dp = LinePlot::new(&format!("Purity vs density ({t_ref:.0} mm water)"))
        .x_label("primaries per frame")
        .y_label("purity");
    let methods: Vec<String> = {
        let mut m: Vec<String> = cells.iter().map(|c| c.method.clone()).collect();
        m.dedup();
        m.sort();
        m.dedup();
        m
    };
    for m in &methods {
        let pts: Vec<(f64, f64)> = cells
            .iter()
            .filter(|c| &c.method == m && c.thickness_mm == t_ref)
            .map(|c| (c.primaries as f64, mean_std(&c.per_seed.iter().map(|s| s.purity).collect::<Vec<_>>()).0))
            .collect();
        dp = dp.series(m, pts, Mark::LinePoints);
    }
    if !follower_cells.is_empty() {
        let pts = follower_cells.iter().filter(|c| c.1 == t_ref).map(|c| (c.0 as f64, c.2.purity)).collect();
        dp = dp.series("track follower", pts, Mark::Dashed);
    }
    dp.save(&ctx.dir.path().join("purity_vs_density"))?;
    report.figure("Purity vs primaries per frame", "purity_vs_density.png");
    if !timings.is_empty() {
        report.heading("Timings (this machine)");
        report.code("json", &serde_json::to_string_pretty(&timings)?);
    }
    ctx.dir.write_summary(&serde_json::json!({
        "cells": cells,
        "follower": follower_cells.iter().map(|(n, t, m)| serde_json::json!({"primaries": n, "thickness_mm": t, "metrics": m})).collect::<Vec<_>>(),
        "training": train_log,
        "timings": timings,
        "total_seconds": t0.elapsed().as_secs_f64(),
    }))?;
    report.write(&ctx.dir)?;
    Ok(())
}

/// Per-frame timings: GNN forward + backward (train mode), the LAPs alone, and end-to-end
/// reconstruction (eval forward + LAP + track building + metrics).
fn time_pipeline(
    model: &Model,
    spec: &TrainSpec,
    frames: &[FrameData],
    n: usize,
    t: f64,
) -> gradlab_core::Result<serde_json::Map<String, serde_json::Value>> {
    let k = frames.len() as f64;
    let s = Instant::now();
    for fd in frames {
        let l = frame_loss(model, fd, Method::Ptt, &spec.assign, true)?;
        let _ = l.backward()?;
    }
    let fb = s.elapsed().as_secs_f64() / k;
    let probs: Vec<Vec<f32>> = frames.iter().map(|fd| model.probabilities(fd)).collect::<gradlab_core::Result<_>>()?;
    let s = Instant::now();
    for (fd, p) in frames.iter().zip(&probs) {
        let w: Vec<f64> = p.iter().map(|&x| 1.0 - x as f64).collect();
        fd.lap.solve(&w, spec.assign.unmatched()).map_err(crate::training::core_err)?;
    }
    let lap = s.elapsed().as_secs_f64() / k;
    let s = Instant::now();
    evaluate_model(model, frames, Selector::Lap(spec.assign.unmatched()), &spec.filter)?;
    let e2e = s.elapsed().as_secs_f64() / k;
    let mut m = serde_json::Map::new();
    m.insert(
        "setting".into(),
        serde_json::json!({ "primaries": n, "thickness_mm": t, "frames": frames.len(), "graph": spec.model.graph }),
    );
    m.insert("gnn_forward_backward_ms_per_frame".into(), (1e3 * fb).into());
    m.insert("lap_ms_per_frame".into(), (1e3 * lap).into());
    m.insert("reconstruction_ms_per_frame".into(), (1e3 * e2e).into());
    m.insert("mean_edges".into(), (frames.iter().map(|f| f.num_edges()).sum::<usize>() as f64 / k).into());
    Ok(m)
}
