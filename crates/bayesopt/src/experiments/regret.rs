//! `bo-regret`: best-so-far against evaluations, mean ± std over replicate seeds, per test
//! function and refit policy.
//!
//! Stages: runs per (function, policy) in parallel over seeds → statistics and figure per
//! function → report.

use super::{check_nested_study, mean_regret_curve, mean_std, median, pm, regret_plot, replicate_seed};
use super::{require_nonempty, require_positive, run_bo};
use crate::error::Result;
use crate::minimize::StopRule;
use crate::study::{LagPolicy, StudyConfig};
use crate::testfns::TestFunction;
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::plot::Mark;
use gradlab_core::report::{Report, fmt_num};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of `bo-regret`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Seed of the run: replicate `s` uses [`replicate_seed`]`(seed, s)` in every cell.
    pub seed: u64,
    /// Replicates per (function, policy).
    pub seeds: usize,
    /// Functions.
    pub functions: Vec<TestFunction>,
    /// Refit policies.
    pub policies: Vec<LagPolicy>,
    /// Evaluations per run.
    pub budget: usize,
    /// Study configuration (the lag is set per cell; the seed is derived, so it must be left
    /// out).
    pub study: StudyConfig,
}

impl Params {
    /// Refuses zero seeds or budget, empty lists of functions or policies and a nested study
    /// seed.
    pub fn check(&self) -> Result<()> {
        require_positive("seeds", self.seeds)?;
        require_positive("budget", self.budget)?;
        require_nonempty("functions", &self.functions, "test function")?;
        require_nonempty("policies", &self.policies, "refit policy")?;
        for (i, &lag) in self.policies.iter().enumerate() {
            check_nested_study(&format!("policies[{i}]"), &StudyConfig { lag, ..Default::default() })?;
        }
        check_nested_study("study", &self.study)
    }
}

/// One run: best-so-far per evaluation, total overhead (s), refits.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunOutcome {
    best_so_far: Vec<f64>,
    overhead_s: f64,
    refits: usize,
}

/// Runs the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.check()?;
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for &f in &p.functions {
        let title = format!("{}: regret of best-so-far (mean over {} seeds)", f.name(), p.seeds);
        let mut plot = regret_plot(&title, "evaluations");
        for &policy in &p.policies {
            // Each finished cell is a stage: `--resume` reads it back instead of running it again.
            let runs = ctx.stage(&format!("{}-{}", f.name(), policy.label()), || replicates(&p, f, policy))?;
            for (s, r) in runs.iter().enumerate() {
                ctx.metrics()?.log(&serde_json::json!({
                    "function": f.name(), "policy": policy.label(), "seed": replicate_seed(p.seed, s),
                    "best_so_far": r.best_so_far, "overhead_s": r.overhead_s, "refits": r.refits,
                }))?;
            }
            let (row, curve, cell) = cell_statistics(&p, f, policy, &runs);
            if !ctx.quiet {
                eprintln!("{} {}: final {} (regret {})", f.name(), policy.label(), row[2], row[3]);
            }
            plot = plot.series(&policy.label(), curve, Mark::Line);
            rows.push(row);
            summary.push(cell);
        }
        plot.save(&ctx.dir.file(&format!("regret_{}", f.name()))?)?;
    }
    ctx.dir.write_summary(&summary)?;
    report(ctx, &p, &rows)
}

/// The `seeds` replicate runs of one cell, in parallel.
fn replicates(p: &Params, f: TestFunction, lag: LagPolicy) -> Result<Vec<RunOutcome>> {
    (0..p.seeds)
        .into_par_iter()
        .map(|s| {
            let cfg = StudyConfig { seed: replicate_seed(p.seed, s), lag, ..p.study.clone() };
            let (study, r) = run_bo(f, cfg, p.budget, 1, StopRule::default())?;
            Ok(RunOutcome {
                best_so_far: r.best_so_far,
                overhead_s: r.overhead_s.iter().sum(),
                refits: study.model_checkpoint().map_or(0, |m| m.refits),
            })
        })
        .collect()
}

/// Table row, mean regret curve and summary record of one cell.
fn cell_statistics(
    p: &Params,
    f: TestFunction,
    policy: LagPolicy,
    runs: &[RunOutcome],
) -> (Vec<String>, Vec<(f64, f64)>, serde_json::Value) {
    let refits: Vec<f64> = runs.iter().map(|r| r.refits as f64).collect();
    let finals: Vec<f64> = runs.iter().map(|r| *r.best_so_far.last().unwrap_or(&f64::NAN)).collect();
    let regrets: Vec<f64> = finals.iter().map(|v| v - f.optimum()).collect();
    let overheads: Vec<f64> = runs.iter().map(|r| r.overhead_s / p.budget as f64 * 1e3).collect();
    let curves: Vec<Vec<f64>> = runs.iter().map(|r| r.best_so_far.clone()).collect();
    let curve = mean_regret_curve(&curves, f.optimum(), 1e-12);
    let row = vec![
        f.name().to_string(),
        policy.label(),
        pm(&finals, 4),
        pm(&regrets, 3),
        fmt_num(median(&regrets), 3),
        fmt_num(mean_std(&overheads).0, 3),
        fmt_num(mean_std(&refits).0, 3),
    ];
    let (fm, fs) = mean_std(&finals);
    let (rm, rs) = mean_std(&regrets);
    let cell = serde_json::json!({
        "function": f.name(), "policy": policy.label(), "final_mean": fm, "final_std": fs,
        "regret_mean": rm, "regret_std": rs, "overhead_ms_per_eval": mean_std(&overheads).0,
        "refits_mean": mean_std(&refits).0, "mean_curve": curve.iter().map(|c| c.1).collect::<Vec<_>>(),
    });
    (row, curve, cell)
}

/// Writes the report.
fn report(ctx: &RunContext, p: &Params, rows: &[Vec<String>]) -> ExperimentResult {
    let mut report = Report::new("bo-regret: best-so-far vs evaluations");
    report.paragraph(&format!(
        "{} seeds per cell, {} evaluations per run, Matérn-5/2 GP, {:?}, {} candidates + {} local starts. Seeds run in parallel, so overheads here are indicative only (see bo-lazy-vs-full).",
        p.seeds, p.budget, p.study.acquisition, p.study.maximize.candidates, p.study.maximize.starts
    ));
    report.code("sh", &ctx.command());
    report.heading(&format!("Best value after {} evaluations", p.budget));
    report.table(
        &[
            "function",
            "policy",
            "best (mean ± std)",
            "regret (mean ± std)",
            "median regret",
            "overhead (ms / eval)",
            "refits",
        ],
        rows,
    );
    for &f in &p.functions {
        report.figure(&format!("{} regret", f.name()), &format!("regret_{}.png", f.name()));
    }
    report.write(&ctx.dir)?;
    Ok(())
}
