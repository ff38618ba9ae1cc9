//! The stages shared by `track-pat`, `track-ptt` and `track-compare`.
//!
//! One flow: simulate training/validation frames at one setting, train every model variant for
//! every replicate seed with the core trainer (checkpoints in the run directory, best by
//! validation purity), then evaluate on independent test frames for each (primaries, water
//! thickness) setting: the per-layer assignment on every model, the score-threshold baseline
//! (no assignment) on every model, and (`track-compare`) the track follower. Mean ± std over
//! seeds, edge TPR/FPR, training curves, purity vs density, and timings.

use std::collections::BTreeMap;
use std::time::Instant;

use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::plot::{LinePlot, Mark};
use gradlab_core::report::Report;
use serde::Serialize;

use super::common::{Replicate, StudyBase, gnn_study_params, mean_std, train_replicates};
use crate::detector::DetectorConfig;
use crate::error::{Error, Result};
use crate::follower::{FollowerConfig, follow};
use crate::paper;
use crate::setup::{FrameStream, Grid, TEST_FIRST};
use crate::tracks::{FrameMetrics, MeanMetrics, average, evaluate};
use crate::training::{
    FrameData, FrameEval, FrameSource, Method, Model, Selector, Summary, TrainSpec, evaluate_model, evaluate_selection,
    frame_loss, select, summarise,
};

gnn_study_params! {
    /// Parameters of `track-pat`, `track-ptt` and `track-compare`.
    pub struct Params {
        /// λ values trained with PAT (`track-pat`; `track-compare` when not empty).
        #[serde(default)]
        pub lambdas: Vec<f64>,
        /// λ of PAT in `track-compare` when `lambdas` is empty.
        #[serde(default = "fifty")]
        pub compare_lambda: f64,
        /// Test settings and frames per setting.
        pub eval: Grid,
        /// Probability cut of the score-threshold baseline.
        #[serde(default = "half")]
        pub threshold: f64,
        /// Follower parameters (`track-compare`).
        #[serde(default)]
        pub follower: FollowerConfig,
    }
}

fn half() -> f64 {
    0.5
}
fn fifty() -> f64 {
    50.0
}

/// One method at one test setting: the summary of every replicate.
#[derive(Debug, Clone, Serialize)]
struct Cell {
    primaries: usize,
    thickness_mm: f64,
    method: String,
    per_seed: Vec<Summary>,
}

/// Everything the evaluation stage measures.
#[derive(Debug, Default)]
struct Evaluation {
    cells: Vec<Cell>,
    follower: Vec<(usize, f64, MeanMetrics)>,
    timings: serde_json::Map<String, serde_json::Value>,
}

/// Train `variants` (label, specification) and evaluate them on the test grid; `compare` adds
/// the track follower and timings.
pub fn run_variants(
    ctx: &mut RunContext,
    p: &Params,
    variants: Vec<(String, TrainSpec)>,
    compare: bool,
    title: &str,
) -> ExperimentResult {
    let base = p.base();
    base.validate(1)?;
    p.eval.validate("eval")?;
    for (_, s) in &variants {
        s.validate()?;
    }
    p.follower.validate()?;
    let t0 = Instant::now();
    let (train_frames, val_frames) = base.training_data()?;
    // Graph size of the training data, from its first frames of each phantom.
    let probe: Vec<usize> = (0..base.data.thicknesses_mm.len())
        .flat_map(|k| (0..base.data.train_frames.min(4)).map(move |j| k * base.data.train_frames + j))
        .collect();
    let mut edges = 0usize;
    for &i in &probe {
        edges += train_frames.get(i)?.num_edges();
    }
    let mean_edges = edges as f64 / probe.len() as f64;
    let data_secs = t0.elapsed().as_secs_f64();
    let reps = train_replicates(ctx, base, &variants, &train_frames, &val_frames)?;
    let ev = evaluate_grid(p, &variants, &reps, compare)?;
    let mut report = Report::new(title);
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&setup_text(base, &p.eval, &reps, mean_edges, data_secs));
    results_table(&mut report, &ev);
    figures(ctx, &mut report, p, &reps, &variants, &ev)?;
    if !ev.timings.is_empty() {
        report.heading("Timings (this machine)");
        report.code(
            "json",
            &serde_json::to_string_pretty(&ev.timings).map_err(|e| Error::invalid("timings", e, "JSON"))?,
        );
    }
    let training: Vec<_> = reps
        .iter()
        .map(|r| {
            serde_json::json!({
                "variant": variants[r.variant].0, "seed": r.seed, "steps": r.report.steps,
                "best_purity": r.report.best, "best_step": r.report.best_step, "train_seconds": r.seconds,
            })
        })
        .collect();
    ctx.dir.write_summary(&serde_json::json!({
        "cells": ev.cells,
        "follower": ev.follower.iter().map(|(n, t, m)| serde_json::json!({"primaries": n, "thickness_mm": t, "metrics": m})).collect::<Vec<_>>(),
        "training": training,
        "timings": ev.timings,
        "total_seconds": t0.elapsed().as_secs_f64(),
    }))?;
    report.write(&ctx.dir)?;
    Ok(())
}

/// Evaluate every model on every test setting (assignment and score threshold), plus the
/// follower and timings with `compare`.
fn evaluate_grid(
    p: &Params,
    variants: &[(String, TrainSpec)],
    reps: &[Replicate],
    compare: bool,
) -> Result<Evaluation> {
    let det = p.setup.detector.load()?;
    let mut ev = Evaluation::default();
    let timing_n = *p.eval.primaries.iter().filter(|&&x| x <= 100).max().unwrap_or(&p.eval.primaries[0]);
    let largest_n = *p.eval.primaries.iter().max().unwrap_or(&0);
    for (n, t) in p.eval.settings() {
        // Each test frame is built once, scored by every model and selector, and dropped.
        let test = test_frames(p, &det, n, t)?;
        // Per replicate: (assignment, threshold) evaluations of every frame.
        let mut per_rep: Vec<(Vec<FrameEval>, Vec<FrameEval>)> = vec![(Vec::new(), Vec::new()); reps.len()];
        let mut fm: Vec<FrameMetrics> = Vec::new();
        for i in 0..test.len() {
            let fd = test.get(i)?;
            for (r, (lap, thr)) in reps.iter().zip(per_rep.iter_mut()) {
                let spec = &variants[r.variant].1;
                let probs = r.model.probabilities(&fd)?;
                let s = select(&fd, &probs, Selector::Lap(spec.assign.unmatched()))?;
                lap.push(evaluate_selection(&fd.graph, &s, &spec.filter)?);
                let s = select(&fd, &probs, Selector::Threshold(p.threshold))?;
                thr.push(evaluate_selection(&fd.graph, &s, &spec.filter)?);
            }
            if compare {
                let tr = follow(&fd.graph, &p.follower)?;
                fm.push(evaluate(&fd.graph, &p.spec.filter.apply(&fd.graph, tr)));
            }
        }
        for (vi, (label, _)) in variants.iter().enumerate() {
            let (mut lap, mut thr) = (Vec::new(), Vec::new());
            for (_, (l, t)) in reps.iter().zip(&per_rep).filter(|(r, _)| r.variant == vi) {
                lap.push(summarise(l));
                thr.push(summarise(t));
            }
            ev.cells.push(Cell { primaries: n, thickness_mm: t, method: label.clone(), per_seed: lap });
            let method = format!("{label} score > {}", p.threshold);
            ev.cells.push(Cell { primaries: n, thickness_mm: t, method, per_seed: thr });
        }
        if !compare {
            continue;
        }
        ev.follower.push((n, t, average(&fm)));
        let first_thickness = t == p.eval.thicknesses_mm[0];
        // Timings at 100 primaries (or the largest setting below it), first thickness only, on
        // up to 10 of the test frames held in memory.
        if n == timing_n && first_thickness {
            let held =
                (0..test.len().min(10)).map(|i| test.get(i).map(|c| c.into_owned())).collect::<Result<Vec<_>>>()?;
            ev.timings = time_pipeline(&reps[0].model, &variants[0].1, &held, n, t)?;
        }
        if n == largest_n
            && first_thickness
            && let Some(m) = peak_rss_mib()
        {
            let v = serde_json::json!({ "primaries": n, "mib": m });
            ev.timings.insert("peak_rss_mib_after_largest_setting".into(), v);
        }
    }
    Ok(ev)
}

/// Independent test frames of one setting, simulated on demand.
fn test_frames(p: &Params, det: &DetectorConfig, n: usize, t: f64) -> Result<FrameStream> {
    let sim = p.setup.simulator(det, t, n)?;
    FrameStream::new(
        vec![(sim, p.seed)],
        p.eval.frames,
        TEST_FIRST,
        &p.setup.graph,
        &p.spec.model,
        p.spec.tracker_layers,
    )
}

fn setup_text(base: StudyBase<'_>, eval: &Grid, reps: &[Replicate], mean_edges: f64, data_secs: f64) -> String {
    let (d, s) = (base.data, base.spec);
    format!(
        "Training: {} frames per phantom of {} primaries behind {:?} mm water (mean {:.0} hit-graph edges per frame), {} validation frames per phantom, simulated on demand; \
         {} optimiser steps of {} frames (batch 1 × grad_accum {}), optimiser {:?}; model {:?} hidden {}; seeds {:?}. \
         Test: {} independent frames per setting. Purity / efficiency in % (mean ± std over seeds of the frame averages). \
         Data preparation {:.1} s.",
        d.train_frames,
        d.primaries,
        d.thicknesses_mm,
        mean_edges,
        d.val_frames,
        reps.first().map_or(0, |r| r.report.steps),
        s.train.grad_accum,
        s.train.grad_accum,
        s.train.optimizer,
        s.model.graph,
        s.model.hidden,
        base.seeds,
        eval.frames,
        data_secs
    )
}

fn pct(xs: &[f64]) -> String {
    let (m, s) = mean_std(xs);
    format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
}

/// The purity/efficiency table, beside the paper.
fn results_table(report: &mut Report, ev: &Evaluation) {
    let mut rows = Vec::new();
    for c in &ev.cells {
        let col = |f: fn(&Summary) -> f64| c.per_seed.iter().map(f).collect::<Vec<f64>>();
        let failed: usize = c.per_seed.iter().map(|s| s.failed).sum();
        let is_pat50 = c.method.starts_with("PAT λ=50") && !c.method.contains("score");
        let paper = if is_pat50 { paper::pat(c.thickness_mm, c.primaries) } else { None };
        rows.push(vec![
            c.primaries.to_string(),
            format!("{:.0}", c.thickness_mm),
            c.method.clone(),
            pct(&col(|s| s.purity)),
            pct(&col(|s| s.efficiency)),
            format!("{:.1} / {:.2}", 100.0 * mean_std(&col(|s| s.tpr)).0, 100.0 * mean_std(&col(|s| s.fpr)).0),
            failed.to_string(),
            paper.unwrap_or_else(|| "—".into()),
        ]);
    }
    for (n, t, m) in &ev.follower {
        rows.push(vec![
            n.to_string(),
            format!("{t:.0}"),
            "track follower".into(),
            format!("{:.1}", 100.0 * m.purity),
            format!("{:.1}", 100.0 * m.efficiency),
            "—".into(),
            "0".into(),
            paper::follower(*t, *n).unwrap_or_else(|| "—".into()),
        ]);
    }
    report.heading("Purity and efficiency");
    let header = ["p+/frame", "water mm", "method", "purity %", "efficiency %", "edge TPR / FPR %"];
    let mut header = header.to_vec();
    header.extend(["failed frames", "paper pur / eff"]);
    report.table(&header, &rows);
    report.paragraph(
        "“score > t” is the score-threshold baseline: edges with probability above t, no assignment. A frame whose selection \
         branches into more than 200 000 root-to-leaf paths counts as failed (purity and efficiency 0).",
    );
}

/// Training curves and purity vs density.
fn figures(
    ctx: &RunContext,
    report: &mut Report,
    p: &Params,
    reps: &[Replicate],
    variants: &[(String, TrainSpec)],
    ev: &Evaluation,
) -> Result<()> {
    let curves: BTreeMap<String, Vec<(f64, f64)>> = reps
        .iter()
        .map(|r| {
            let tag = format!("{} seed {}", variants[r.variant].0, r.seed);
            let pts = r.report.history.iter().map(|h| (h.step as f64, h.metrics.get("purity").copied().unwrap_or(0.0)));
            (tag, pts.collect())
        })
        .collect();
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
    let mut methods: Vec<&String> = ev.cells.iter().map(|c| &c.method).collect();
    methods.sort();
    methods.dedup();
    for m in methods {
        let pts: Vec<(f64, f64)> = ev
            .cells
            .iter()
            .filter(|c| &c.method == m && c.thickness_mm == t_ref)
            .map(|c| (c.primaries as f64, mean_std(&c.per_seed.iter().map(|s| s.purity).collect::<Vec<_>>()).0))
            .collect();
        dp = dp.series(m, pts, Mark::LinePoints);
    }
    if !ev.follower.is_empty() {
        let pts = ev.follower.iter().filter(|c| c.1 == t_ref).map(|c| (c.0 as f64, c.2.purity)).collect();
        dp = dp.series("track follower", pts, Mark::Dashed);
    }
    dp.save(&ctx.dir.path().join("purity_vs_density"))?;
    report.figure("Purity vs primaries per frame", "purity_vs_density.png");
    Ok(())
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Per-frame timings: GNN forward + backward (train mode), the LAPs alone, and end-to-end
/// reconstruction (eval forward + LAP + track building + metrics).
fn time_pipeline(
    model: &Model,
    spec: &TrainSpec,
    frames: &[FrameData],
    n: usize,
    t: f64,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let k = frames.len() as f64;
    let s = Instant::now();
    for fd in frames {
        let l = frame_loss(model, fd, Method::Ptt, &spec.assign, true)?;
        let _ = l.backward()?;
    }
    let fb = s.elapsed().as_secs_f64() / k;
    let probs: Vec<Vec<f32>> = frames.iter().map(|fd| model.probabilities(fd)).collect::<Result<_>>()?;
    let s = Instant::now();
    for (fd, p) in frames.iter().zip(&probs) {
        let w: Vec<f64> = p.iter().map(|&x| 1.0 - x as f64).collect();
        fd.lap.solve(&w, spec.assign.unmatched())?;
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

/// A variant of the shared specification: `method`, and λ when given.
pub fn variant(p: &Params, method: Method, lambda: Option<f64>) -> TrainSpec {
    let mut s = p.spec.clone();
    s.method = method;
    if let Some(l) = lambda {
        s.assign.lambda = l;
    }
    s
}
