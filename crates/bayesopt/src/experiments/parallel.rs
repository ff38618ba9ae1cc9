//! `bo-parallel`: iterations and evaluations to reach a target value with q points per
//! iteration, per batch strategy.
//!
//! Stages: replicate runs per (strategy, q) → per-run hit statistics and best-so-far per
//! iteration → table row and figure series → report.

use super::{check_nested_study, mean_regret_curve, mean_std, pm, regret_plot, replicate_seed};
use super::{require_nonempty, require_positive, run_bo};
use crate::error::{Error, Result};
use crate::minimize::StopRule;
use crate::study::{BatchStrategy, Study, StudyConfig};
use crate::testfns::TestFunction;
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::plot::Mark;
use gradlab_core::report::{Report, fmt_num};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Parameters of `bo-parallel`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Seed of the run: replicate `s` uses [`replicate_seed`]`(seed, s)` in every cell.
    pub seed: u64,
    /// Replicates per cell.
    pub seeds: usize,
    /// Function.
    pub function: TestFunction,
    /// Target value: a run succeeds when it observes a value ≤ target.
    pub target: f64,
    /// Batch sizes.
    pub qs: Vec<usize>,
    /// Batch strategies.
    pub strategies: Vec<BatchStrategy>,
    /// Evaluation cap per run.
    pub max_evaluations: usize,
    /// Study configuration (the batch strategy is set per cell; the seed is derived, so it
    /// must be left out).
    pub study: StudyConfig,
}

impl Params {
    /// Refuses zero seeds, batch sizes or cap, empty lists of batch sizes or strategies and a
    /// nested study seed.
    pub fn check(&self) -> Result<()> {
        require_positive("seeds", self.seeds)?;
        require_positive("max_evaluations", self.max_evaluations)?;
        require_nonempty("qs", &self.qs, "batch size")?;
        require_nonempty("strategies", &self.strategies, "batch strategy")?;
        if let Some(&q) = self.qs.iter().find(|&&q| q == 0) {
            return Err(Error::invalid("qs", q, "batch sizes >= 1"));
        }
        check_nested_study("study", &self.study)
    }
}

/// One run: iterations and evaluations until the target (or the whole run), whether it was
/// reached, best-so-far per iteration, wall time.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunOutcome {
    iterations: f64,
    evaluations: f64,
    reached: bool,
    best_per_iteration: Vec<f64>,
    wall_s: f64,
}

fn strategy_label(s: BatchStrategy) -> String {
    match s {
        BatchStrategy::LocalMaxima => "local maxima".into(),
        BatchStrategy::ConstantLiar(l) => format!("constant liar ({l:?})").to_lowercase(),
        BatchStrategy::KrigingBeliever => "kriging believer".into(),
    }
}

/// Runs the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.check()?;
    let f = p.function;
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    let title = format!("{}: best-so-far vs iterations (mean over {} seeds)", f.name(), p.seeds);
    let mut plot = regret_plot(&title, "iterations (batches)");
    let mut base_iterations = None;
    for &strategy in &p.strategies {
        for &q in &p.qs {
            // Each finished cell is a stage: `--resume` reads it back instead of running it again.
            let runs = ctx.stage(&format!("{}-q{q}", strategy_label(strategy)), || {
                (0..p.seeds).map(|s| replicate(&p, strategy, q, s)).collect::<Result<Vec<_>>>()
            })?;
            let iters: Vec<f64> = runs.iter().map(|r| r.iterations).collect();
            let evals: Vec<f64> = runs.iter().map(|r| r.evaluations).collect();
            let wall: Vec<f64> = runs.iter().map(|r| r.wall_s).collect();
            let reached = runs.iter().filter(|r| r.reached).count();
            let curves: Vec<Vec<f64>> = runs.iter().map(|r| r.best_per_iteration.clone()).collect();
            let label = strategy_label(strategy);
            plot = plot.series(
                &format!("q = {q}, {label}"),
                mean_regret_curve(&curves, f.optimum(), 1e-9),
                Mark::LinePoints,
            );
            let mi = mean_std(&iters).0;
            if q == 1 && base_iterations.is_none() {
                base_iterations = Some(mi);
            }
            if !ctx.quiet {
                eprintln!(
                    "{label} q {q}: iterations {} evaluations {} reached {reached}/{}",
                    pm(&iters, 3),
                    pm(&evals, 3),
                    p.seeds
                );
            }
            rows.push(vec![
                label.clone(),
                q.to_string(),
                format!("{reached}/{}", p.seeds),
                pm(&iters, 3),
                pm(&evals, 3),
                base_iterations.map_or("–".into(), |b| format!("{}×", fmt_num(b / mi, 3))),
                fmt_num(mean_std(&wall).0, 3),
            ]);
            let cell = serde_json::json!({"strategy": label, "q": q, "reached": reached, "iterations": iters, "evaluations": evals, "wall_s": wall});
            ctx.metrics()?.log(&cell)?;
            summary.push(cell);
        }
    }
    plot.save(&ctx.dir.file("parallel")?)?;
    ctx.dir.write_summary(&summary)?;
    report(ctx, &p, &rows)
}

/// Replicate `s` of one cell, stopped at the target.
fn replicate(p: &Params, strategy: BatchStrategy, q: usize, s: usize) -> Result<RunOutcome> {
    let cfg = StudyConfig { seed: replicate_seed(p.seed, s), batch: strategy, ..p.study.clone() };
    let t0 = Instant::now();
    let stop = StopRule { target: Some(p.target), ..Default::default() };
    let (study, _) = run_bo(p.function, cfg, p.max_evaluations, q, stop)?;
    let wall_s = t0.elapsed().as_secs_f64();
    let told = study.told();
    let hit = told.iter().position(|t| t.value.is_some_and(|v| v <= p.target));
    let best_per_iteration = best_per_iteration(&study);
    let (iterations, evaluations) = match hit {
        Some(i) => ((told[i].ask_index + 1) as f64, (i + 1) as f64),
        None => (best_per_iteration.len() as f64, told.len() as f64),
    };
    Ok(RunOutcome { iterations, evaluations, reached: hit.is_some(), best_per_iteration, wall_s })
}

/// Best value so far after each iteration (ask) of a study.
fn best_per_iteration(study: &Study) -> Vec<f64> {
    let n_iter = study.trials().iter().map(|t| t.ask_index + 1).max().unwrap_or(0) as usize;
    let mut per_iter = vec![f64::INFINITY; n_iter];
    for t in study.trials() {
        if let Some(v) = t.value {
            let k = t.ask_index as usize;
            per_iter[k] = per_iter[k].min(v);
        }
    }
    let mut best = f64::INFINITY;
    per_iter
        .into_iter()
        .map(|v| {
            best = best.min(v);
            best
        })
        .collect()
}

/// Writes the report.
fn report(ctx: &RunContext, p: &Params, rows: &[Vec<String>]) -> ExperimentResult {
    let f = p.function;
    let mut r = Report::new("bo-parallel: q points per iteration");
    r.paragraph(&format!(
        "{} with target {} (f* = {}), at most {} evaluations, {} seeds. Iterations count batches (the initial design included); runs that never reach the target count their full length.",
        f.name(), p.target, f.optimum(), p.max_evaluations, p.seeds
    ));
    r.code("sh", &ctx.command());
    r.table(&["strategy", "q", "reached", "iterations", "evaluations", "fewer iterations vs q = 1", "wall (s)"], rows);
    r.figure("Best-so-far vs iterations", "parallel.png");
    r.write(&ctx.dir)?;
    Ok(())
}
