//! Experiments (run with `cargo xtask experiment <name> [--quick]`):
//!
//! - `bo-lazy-vs-full` (`bayesopt.lazy_vs_full`): cost of one BO iteration vs the number of
//!   observations n for lag = 1, 3, 10, ∞, from measured components (hyperparameter refit,
//!   full factorisation, O(n²) append, acquisition maximisation) with fitted log–log slopes;
//!   and the total model + acquisition overhead of real 100-iteration runs on Levy-5D.
//! - `bo-regret` (`bayesopt.regret`): best-so-far vs evaluations, mean ± std over seeds, per
//!   test function and refit policy.
//! - `bo-parallel` (`bayesopt.parallel`): iterations and evaluations to reach a target with
//!   q = 1, 5, 20 points per iteration.

use crate::acquisition::{MaximizeOptions, Sampler, maximize, sample_unit};
use crate::gp::{FitOptions, Gp};
use crate::kernel::Hyper;
use crate::minimize::{MinimizeResult, Minimizer, StopRule};
use crate::space::Point;
use crate::study::{BatchStrategy, LagPolicy, Study, StudyConfig};
use crate::testfns::TestFunction;
use gradlab_core::experiment::{Experiment, ExperimentResult, RunContext};
use gradlab_core::plot::{LinePlot, Mark};
use gradlab_core::report::{Report, fmt_num};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The experiments of this crate.
pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment {
            entry: "bayesopt.lazy_vs_full",
            description: "Lazy GP vs full refits: time per BO iteration vs n (lag 1/3/10/inf), log-log slopes, total overhead over 100 iterations of Levy-5D",
            run: lazy_vs_full,
        },
        Experiment {
            entry: "bayesopt.regret",
            description: "Best-so-far vs evaluations (mean ± std over seeds) per test function and refit policy",
            run: regret,
        },
        Experiment {
            entry: "bayesopt.parallel",
            description: "Batch BO with q = 1, 5, 20: iterations and evaluations to reach a target",
            run: parallel,
        },
    ]
}

fn objective(f: TestFunction) -> impl Fn(&Point) -> Result<f64, String> + Sync {
    move |p: &Point| Ok(f.eval(&p.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect::<Vec<_>>()))
}

fn run_bo(
    f: TestFunction,
    cfg: StudyConfig,
    budget: usize,
    q: usize,
    stop: StopRule,
) -> crate::Result<(Study, MinimizeResult)> {
    Minimizer::new(budget).config(cfg).batch(q).stop(stop).run(&f.space(), objective(f))
}

/// Least-squares slope of ln t against ln n.
pub fn loglog_slope(n: &[f64], t: &[f64]) -> f64 {
    let pts: Vec<(f64, f64)> =
        n.iter().zip(t).filter(|(a, b)| **a > 0.0 && **b > 0.0).map(|(a, b)| (a.ln(), b.ln())).collect();
    let m = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / m;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / m;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, s)
}

fn pm(v: &[f64], digits: usize) -> String {
    let (m, s) = mean_std(v);
    format!("{} ± {}", fmt_num(m, digits), fmt_num(s, 2))
}

// ---------------------------------------------------------------------------------------
// bo-lazy-vs-full

/// Parameters of `bo-lazy-vs-full`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LazyParams {
    /// Seed.
    pub seed: u64,
    /// Function providing the data (Levy-5D in the paper).
    pub function: TestFunction,
    /// Numbers of observations n at which the components are timed.
    pub sizes: Vec<usize>,
    /// Lags whose per-iteration cost is reported (0 means ∞).
    pub lags: Vec<usize>,
    /// Repetitions of the cheap timings (the minimum is reported: robust to other load).
    pub repeats: usize,
    /// Largest n at which the whole hyperparameter refit is run; above it the refit is
    /// estimated as (mean LML evaluations per refit) × (time of one LML evaluation).
    pub refit_max_n: usize,
    /// Hyperparameter fitting used for the refit timing.
    pub fit: FitOptions,
    /// Acquisition maximisation used for the timings.
    pub maximize: MaximizeOptions,
    /// BO iterations of the end-to-end runs (after the initial design).
    pub loop_iterations: usize,
    /// Seeds of the end-to-end runs.
    pub loop_seeds: usize,
    /// Study configuration of the end-to-end runs (the lag is overridden).
    pub loop_study: StudyConfig,
}

#[derive(Clone, Debug, Serialize)]
struct SizeTiming {
    n: usize,
    refit_s: f64,
    refit_measured: bool,
    refit_evaluations: usize,
    lml_eval_s: f64,
    factor_s: f64,
    append_s: f64,
    acquisition_s: f64,
}

fn lag_label(k: usize) -> String {
    if k == 0 { "lag ∞".into() } else { format!("lag {k}") }
}

fn per_iteration(t: &SizeTiming, k: usize) -> f64 {
    match k {
        0 => t.append_s + t.acquisition_s,
        1 => t.refit_s + t.acquisition_s,
        k => ((k - 1) as f64 * t.append_s + t.refit_s) / k as f64 + t.acquisition_s,
    }
}

fn lazy_vs_full(ctx: &mut RunContext) -> ExperimentResult {
    let p: LazyParams = ctx.params()?;
    if p.sizes.is_empty() || p.repeats == 0 {
        return Err("sizes must be non-empty and repeats >= 1".into());
    }
    let f = p.function;
    let space = f.space();
    let d = space.encoded_dim();
    let mut timings = Vec::new();
    for &n in &p.sizes {
        let mut rng = StdRng::seed_from_u64(p.seed ^ n as u64);
        let x = sample_unit(Sampler::Lhs, n + p.repeats, d, &mut rng);
        let y: Vec<f64> = x
            .chunks(d)
            .map(|u| {
                let pt = space.decode(u).expect("valid");
                f.eval(&pt.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect::<Vec<_>>())
            })
            .collect();
        let mut gp = Gp::new(Default::default(), d, Hyper::default_for(d), Default::default());
        gp.set_data(x[..n * d].to_vec(), y[..n].to_vec())?;
        let (refit_s, refit_evaluations, refit_measured) = if n <= p.refit_max_n {
            let t0 = Instant::now();
            let rep = gp.fit(&p.fit, p.seed)?;
            (t0.elapsed().as_secs_f64(), rep.evaluations, true)
        } else {
            // Hyperparameters fitted on the first 500 points stand in (same function).
            let sub = n.min(500);
            let mut small = Gp::new(Default::default(), d, Hyper::default_for(d), Default::default());
            small.set_data(x[..sub * d].to_vec(), y[..sub].to_vec())?;
            small.fit(&p.fit, p.seed)?;
            gp.set_hyperparameters(small.hyper().clone())?;
            let measured: Vec<&SizeTiming> = timings.iter().filter(|t: &&SizeTiming| t.refit_measured).collect();
            let mean_evals =
                measured.iter().map(|t| t.refit_evaluations as f64).sum::<f64>() / measured.len().max(1) as f64;
            (f64::NAN, mean_evals.round() as usize, false)
        };
        let theta = gp.hyper().to_vec();
        let mut grad = vec![0.0; theta.len()];
        let mut lml = Vec::new();
        for _ in 0..p.repeats {
            let t0 = Instant::now();
            std::hint::black_box(gp.neg_lml_grad(&theta, &mut grad));
            lml.push(t0.elapsed().as_secs_f64());
        }
        let lml_eval_s = lml.iter().cloned().fold(f64::INFINITY, f64::min);
        let mut factor = Vec::new();
        let mut append = Vec::new();
        let mut acq = Vec::new();
        for r in 0..p.repeats {
            let t0 = Instant::now();
            gp.refactor()?;
            factor.push(t0.elapsed().as_secs_f64());
            let xi = &x[(n + r) * d..(n + r + 1) * d];
            let t0 = Instant::now();
            gp.append(xi, y[n + r])?;
            append.push(t0.elapsed().as_secs_f64());
            gp.truncate(n);
            let t0 = Instant::now();
            gp.prepare();
            let best = gp.y().iter().map(|&v| gp.standardise(v)).fold(f64::INFINITY, f64::min);
            let ident = |u: &[f64]| u.to_vec();
            let props = maximize(&Default::default(), &gp, best, &p.maximize, 1, &[], &ident, r as u64);
            acq.push(t0.elapsed().as_secs_f64());
            assert!(!props.is_empty());
        }
        let min = |v: Vec<f64>| v.into_iter().fold(f64::INFINITY, f64::min);
        let factor_s = min(factor);
        let t = SizeTiming {
            n,
            refit_s: if refit_measured { refit_s + factor_s } else { refit_evaluations as f64 * lml_eval_s + factor_s },
            refit_measured,
            refit_evaluations,
            lml_eval_s,
            factor_s,
            append_s: min(append),
            acquisition_s: min(acq),
        };
        if !ctx.quiet {
            eprintln!(
                "n {n}: refit {:.4} s ({} LML evals{}), LML eval {:.4} s, factor {:.4} s, append {:.6} s, acquisition {:.4} s",
                t.refit_s,
                t.refit_evaluations,
                if t.refit_measured { "" } else { ", estimated" },
                t.lml_eval_s,
                t.factor_s,
                t.append_s,
                t.acquisition_s
            );
        }
        ctx.metrics()?.log(&serde_json::json!({"part": "scaling", "timing": t}))?;
        timings.push(t);
    }
    let ns: Vec<f64> = timings.iter().map(|t| t.n as f64).collect();
    let upper = timings.len() / 2;
    let comp = |sel: &dyn Fn(&SizeTiming) -> f64| -> (f64, f64) {
        let ts: Vec<f64> = timings.iter().map(sel).collect();
        (loglog_slope(&ns, &ts), loglog_slope(&ns[upper..], &ts[upper..]))
    };
    let mut slope_rows = Vec::new();
    let mut slopes = serde_json::Map::new();
    for (name, sel) in [
        ("append one row (O(n²))", &(|t: &SizeTiming| t.append_s) as &dyn Fn(&SizeTiming) -> f64),
        ("full factorisation", &|t: &SizeTiming| t.factor_s),
        ("one LML + gradient evaluation", &|t: &SizeTiming| t.lml_eval_s),
        ("hyperparameter refit + factorisation", &|t: &SizeTiming| t.refit_s),
        ("acquisition maximisation", &|t: &SizeTiming| t.acquisition_s),
    ] {
        let (a, b) = comp(sel);
        slope_rows.push(vec![name.to_string(), fmt_num(a, 2), fmt_num(b, 2)]);
        slopes.insert(name.into(), serde_json::json!({"all": a, "upper_half": b}));
    }
    for &k in &p.lags {
        let (a, b) = comp(&|t: &SizeTiming| per_iteration(t, k));
        let (ma, mb) = comp(&|t: &SizeTiming| per_iteration(t, k) - t.acquisition_s);
        slope_rows.push(vec![format!("iteration, {}", lag_label(k)), fmt_num(a, 2), fmt_num(b, 2)]);
        slope_rows.push(vec![format!("model update only, {}", lag_label(k)), fmt_num(ma, 2), fmt_num(mb, 2)]);
        slopes.insert(format!("iteration_{}", lag_label(k)), serde_json::json!({"all": a, "upper_half": b}));
        slopes.insert(format!("model_{}", lag_label(k)), serde_json::json!({"all": ma, "upper_half": mb}));
    }
    // Figures.
    let mut plot =
        LinePlot::new(&format!("Time per BO iteration vs n ({}, {} candidates)", f.name(), p.maximize.candidates))
            .x_label("observations n")
            .y_label("seconds per iteration")
            .log_x(true)
            .log_y(true);
    for &k in &p.lags {
        plot = plot.series(
            &lag_label(k),
            timings.iter().map(|t| (t.n as f64, per_iteration(t, k))).collect(),
            Mark::LinePoints,
        );
    }
    plot.save(&ctx.dir.file("iteration_time")?)?;
    LinePlot::new("Components of one iteration vs n")
        .x_label("observations n")
        .y_label("seconds")
        .log_x(true)
        .log_y(true)
        .series("refit + factorisation", timings.iter().map(|t| (t.n as f64, t.refit_s)).collect(), Mark::LinePoints)
        .series("factorisation", timings.iter().map(|t| (t.n as f64, t.factor_s)).collect(), Mark::LinePoints)
        .series("append", timings.iter().map(|t| (t.n as f64, t.append_s)).collect(), Mark::LinePoints)
        .series("acquisition", timings.iter().map(|t| (t.n as f64, t.acquisition_s)).collect(), Mark::LinePoints)
        .save(&ctx.dir.file("components")?)?;

    // End-to-end runs.
    let mut loop_rows = Vec::new();
    let mut loop_json = Vec::new();
    let mut base_overhead = None;
    for &k in &p.lags {
        let lag = if k == 0 { LagPolicy::Never } else { LagPolicy::Every(k) };
        let mut overhead = Vec::new();
        let mut best = Vec::new();
        for s in 0..p.loop_seeds {
            let cfg = StudyConfig { seed: p.seed + s as u64, lag, ..p.loop_study.clone() };
            let n_init = if cfg.n_initial > 0 { cfg.n_initial } else { (2 * d + 1).max(5) };
            let (_, r) = run_bo(f, cfg, n_init + p.loop_iterations, 1, StopRule::default())?;
            overhead.push(r.overhead_s.iter().sum::<f64>());
            best.push(r.best_value.unwrap_or(f64::NAN));
        }
        let (om, _) = mean_std(&overhead);
        if k == 1 {
            base_overhead = Some(om);
        }
        if !ctx.quiet {
            eprintln!("{}: overhead {:.3} s over {} iterations, best {:?}", lag_label(k), om, p.loop_iterations, best);
        }
        loop_json.push(serde_json::json!({"lag": lag_label(k), "overhead_s": overhead, "best": best}));
        loop_rows.push((k, om, overhead, best));
    }
    let loop_table: Vec<Vec<String>> = loop_rows
        .iter()
        .map(|(k, om, overhead, best)| {
            vec![
                lag_label(*k),
                pm(overhead, 3),
                fmt_num(om / p.loop_iterations as f64 * 1e3, 3),
                base_overhead.map_or("–".into(), |b| format!("{}×", fmt_num(b / om, 3))),
                pm(best, 4),
            ]
        })
        .collect();
    let summary = serde_json::json!({
        "function": f.name(),
        "timings": timings,
        "slopes": slopes,
        "loop": loop_json,
        "loop_iterations": p.loop_iterations,
    });
    ctx.dir.write_summary(&summary)?;
    let mut r = Report::new("bo-lazy-vs-full: lazy GP vs full refits");
    r.paragraph(&format!(
        "Data: {} values of n, observations of {} at Latin-hypercube points. Timed per n: hyperparameter refit (multi-start L-BFGS, {} restarts, ≤ {} iterations each) plus full factorisation (run up to n = {}; above, estimated as mean LML evaluations per refit × one evaluation); one LML + gradient evaluation; full factorisation; appending one row (O(n²)); maximising log-EI ({} candidates, {} local starts). Cheap timings are the minimum of {} repeats (the machine is shared). Per-iteration cost of lag k = (refit + (k−1)·append)/k + acquisition.",
        p.sizes.len(), f.name(), p.fit.restarts, p.fit.max_iter, p.refit_max_n, p.maximize.candidates, p.maximize.starts, p.repeats
    ));
    r.code("sh", &ctx.command());
    r.heading("Component timings");
    let rows: Vec<Vec<String>> = timings
        .iter()
        .map(|t| {
            let mut row = vec![
                t.n.to_string(),
                format!("{}{}", fmt_num(t.refit_s, 3), if t.refit_measured { "" } else { " (est.)" }),
                t.refit_evaluations.to_string(),
                fmt_num(t.lml_eval_s * 1e3, 3),
                fmt_num(t.factor_s * 1e3, 3),
                fmt_num(t.append_s * 1e3, 3),
                fmt_num(t.acquisition_s * 1e3, 3),
            ];
            for &k in &p.lags {
                row.push(fmt_num(per_iteration(t, k) * 1e3, 3));
            }
            row
        })
        .collect();
    let mut headers: Vec<String> =
        ["n", "refit (s)", "LML evals", "LML eval (ms)", "factor (ms)", "append (ms)", "acquisition (ms)"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    headers.extend(p.lags.iter().map(|&k| format!("iteration {} (ms)", lag_label(k))));
    r.table(&headers, &rows);
    r.heading("Log–log slopes of cost vs n");
    r.table(&["quantity", "slope (all n)", "slope (upper half of n)"], &slope_rows);
    r.heading(&format!("End-to-end: {} BO iterations of {} ({} seeds)", p.loop_iterations, f.name(), p.loop_seeds));
    r.table(&["policy", "total overhead (s)", "per iteration (ms)", "speed-up vs lag 1", "best value"], &loop_table);
    r.figure("Time per iteration vs n", "iteration_time.png");
    r.figure("Components vs n", "components.png");
    r.write(&ctx.dir)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// bo-regret

/// Parameters of `bo-regret`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegretParams {
    /// First seed.
    pub seed: u64,
    /// Seeds per (function, policy).
    pub seeds: usize,
    /// Functions.
    pub functions: Vec<TestFunction>,
    /// Refit policies.
    pub policies: Vec<LagPolicy>,
    /// Evaluations per run.
    pub budget: usize,
    /// Study configuration (seed and lag overridden).
    pub study: StudyConfig,
}

fn regret(ctx: &mut RunContext) -> ExperimentResult {
    let p: RegretParams = ctx.params()?;
    if p.seeds == 0 || p.budget == 0 {
        return Err("seeds and budget must be >= 1".into());
    }
    let mut report = Report::new("bo-regret: best-so-far vs evaluations");
    report.paragraph(&format!(
        "{} seeds per cell, {} evaluations per run, Matérn-5/2 GP, {:?}, {} candidates + {} local starts. Seeds run in parallel, so overheads here are indicative only (see bo-lazy-vs-full).",
        p.seeds, p.budget, p.study.acquisition, p.study.maximize.candidates, p.study.maximize.starts
    ));
    report.code("sh", &ctx.command());
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for &f in &p.functions {
        let mut plot = LinePlot::new(&format!("{}: regret of best-so-far (mean over {} seeds)", f.name(), p.seeds))
            .x_label("evaluations")
            .y_label("best − f*")
            .log_y(true);
        for &pol in &p.policies {
            let runs: Vec<(Vec<f64>, f64, usize)> = (0..p.seeds)
                .into_par_iter()
                .map(|s| {
                    let cfg = StudyConfig { seed: p.seed + s as u64, lag: pol, ..p.study.clone() };
                    run_bo(f, cfg, p.budget, 1, StopRule::default()).map(|(st, r)| {
                        (r.best_so_far, r.overhead_s.iter().sum::<f64>(), st.model_checkpoint().map_or(0, |m| m.refits))
                    })
                })
                .collect::<crate::Result<Vec<_>>>()?;
            let refits: Vec<f64> = runs.iter().map(|r| r.2 as f64).collect();
            let finals: Vec<f64> = runs.iter().map(|r| *r.0.last().unwrap_or(&f64::NAN)).collect();
            let regrets: Vec<f64> = finals.iter().map(|v| v - f.optimum()).collect();
            let overheads: Vec<f64> = runs.iter().map(|r| r.1 / p.budget as f64 * 1e3).collect();
            let curve: Vec<(f64, f64, f64)> = (0..p.budget)
                .map(|i| {
                    let v: Vec<f64> = runs.iter().map(|r| (r.0[i] - f.optimum()).max(1e-12)).collect();
                    let (m, s) = mean_std(&v);
                    ((i + 1) as f64, m, s)
                })
                .collect();
            for (s, r) in runs.iter().enumerate() {
                ctx.metrics()?.log(&serde_json::json!({
                    "function": f.name(), "policy": pol.label(), "seed": p.seed + s as u64,
                    "best_so_far": r.0, "overhead_s": r.1, "refits": r.2,
                }))?;
            }
            if !ctx.quiet {
                eprintln!("{} {}: final {} (regret {})", f.name(), pol.label(), pm(&finals, 4), pm(&regrets, 3));
            }
            plot = plot.series(&pol.label(), curve.iter().map(|c| (c.0, c.1)).collect(), Mark::Line);
            rows.push(vec![
                f.name().to_string(),
                pol.label(),
                pm(&finals, 4),
                pm(&regrets, 3),
                fmt_num(median(regrets.clone()), 3),
                fmt_num(mean_std(&overheads).0, 3),
                fmt_num(mean_std(&refits).0, 3),
            ]);
            summary.push(serde_json::json!({
                "function": f.name(), "policy": pol.label(), "final_mean": mean_std(&finals).0, "final_std": mean_std(&finals).1,
                "regret_mean": mean_std(&regrets).0, "regret_std": mean_std(&regrets).1, "overhead_ms_per_eval": mean_std(&overheads).0, "refits_mean": mean_std(&refits).0,
                "mean_curve": curve.iter().map(|c| c.1).collect::<Vec<_>>(),
            }));
        }
        plot.save(&ctx.dir.file(&format!("regret_{}", f.name()))?)?;
    }
    ctx.dir.write_summary(&summary)?;
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
        &rows,
    );
    for &f in &p.functions {
        report.figure(&format!("{} regret", f.name()), &format!("regret_{}.png", f.name()));
    }
    report.write(&ctx.dir)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// bo-parallel

/// Parameters of `bo-parallel`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelParams {
    /// First seed.
    pub seed: u64,
    /// Seeds per cell.
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
    /// Study configuration (seed and batch overridden).
    pub study: StudyConfig,
}

fn parallel(ctx: &mut RunContext) -> ExperimentResult {
    let p: ParallelParams = ctx.params()?;
    let f = p.function;
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    let mut plot = LinePlot::new(&format!("{}: best-so-far vs iterations (mean over {} seeds)", f.name(), p.seeds))
        .x_label("iterations (batches)")
        .y_label("best − f*")
        .log_y(true);
    let mut base_iters = None;
    for &strategy in &p.strategies {
        for &q in &p.qs {
            let mut iters = Vec::new();
            let mut evals = Vec::new();
            let mut curves: Vec<Vec<f64>> = Vec::new();
            let mut reached = 0;
            let mut wall = Vec::new();
            for s in 0..p.seeds {
                let cfg = StudyConfig { seed: p.seed + s as u64, batch: strategy, ..p.study.clone() };
                let t0 = Instant::now();
                let (study, _) =
                    run_bo(f, cfg, p.max_evaluations, q, StopRule { target: Some(p.target), ..Default::default() })?;
                wall.push(t0.elapsed().as_secs_f64());
                let mut told: Vec<_> = study.trials().iter().filter(|t| t.tell_index.is_some()).collect();
                told.sort_by_key(|t| t.tell_index);
                let hit = told.iter().position(|t| t.value.is_some_and(|v| v <= p.target));
                let n_iter = study.trials().iter().map(|t| t.ask_index + 1).max().unwrap_or(0) as usize;
                match hit {
                    Some(i) => {
                        reached += 1;
                        iters.push((told[i].ask_index + 1) as f64);
                        evals.push((i + 1) as f64);
                    }
                    None => {
                        iters.push(n_iter as f64);
                        evals.push(told.len() as f64);
                    }
                }
                // best-so-far per iteration
                let mut per_iter = vec![f64::INFINITY; n_iter];
                for t in study.trials() {
                    if let Some(v) = t.value {
                        let k = t.ask_index as usize;
                        per_iter[k] = per_iter[k].min(v);
                    }
                }
                let mut best = f64::INFINITY;
                curves.push(
                    per_iter
                        .iter()
                        .map(|&v| {
                            best = best.min(v);
                            best
                        })
                        .collect(),
                );
            }
            let max_len = curves.iter().map(Vec::len).max().unwrap_or(0);
            let curve: Vec<(f64, f64)> = (0..max_len)
                .map(|i| {
                    let v: Vec<f64> = curves.iter().map(|c| (c[i.min(c.len() - 1)] - f.optimum()).max(1e-9)).collect();
                    ((i + 1) as f64, mean_std(&v).0)
                })
                .collect();
            plot = plot.series(&format!("q = {q}, {}", strategy_label(strategy)), curve, Mark::LinePoints);
            let (mi, _) = mean_std(&iters);
            if q == 1 && base_iters.is_none() {
                base_iters = Some(mi);
            }
            if !ctx.quiet {
                eprintln!(
                    "{} q {q}: iterations {} evaluations {} reached {reached}/{}",
                    strategy_label(strategy),
                    pm(&iters, 3),
                    pm(&evals, 3),
                    p.seeds
                );
            }
            rows.push(vec![
                strategy_label(strategy),
                q.to_string(),
                format!("{reached}/{}", p.seeds),
                pm(&iters, 3),
                pm(&evals, 3),
                base_iters.map_or("–".into(), |b| format!("{}×", fmt_num(b / mi, 3))),
                fmt_num(mean_std(&wall).0, 3),
            ]);
            summary.push(serde_json::json!({"strategy": strategy_label(strategy), "q": q, "reached": reached, "iterations": iters, "evaluations": evals, "wall_s": wall}));
            ctx.metrics()?.log(summary.last().expect("just pushed"))?;
        }
    }
    plot.save(&ctx.dir.file("parallel")?)?;
    ctx.dir.write_summary(&summary)?;
    let mut r = Report::new("bo-parallel: q points per iteration");
    r.paragraph(&format!(
        "{} with target {} (f* = {}), at most {} evaluations, {} seeds. Iterations count batches (the initial design included); runs that never reach the target count their full length.",
        f.name(), p.target, f.optimum(), p.max_evaluations, p.seeds
    ));
    r.code("sh", &ctx.command());
    r.table(&["strategy", "q", "reached", "iterations", "evaluations", "fewer iterations vs q = 1", "wall (s)"], &rows);
    r.figure("Best-so-far vs iterations", "parallel.png");
    r.write(&ctx.dir)?;
    Ok(())
}

fn strategy_label(s: BatchStrategy) -> String {
    match s {
        BatchStrategy::LocalMaxima => "local maxima".into(),
        BatchStrategy::ConstantLiar(l) => format!("constant liar ({l:?})").to_lowercase(),
        BatchStrategy::KrigingBeliever => "kriging believer".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_power_law() {
        let n = [100.0, 200.0, 400.0, 800.0];
        let t: Vec<f64> = n.iter().map(|x: &f64| 3e-9 * x.powf(2.5)).collect();
        assert!((loglog_slope(&n, &t) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn configs_parse() {
        for name in ["bo-lazy-vs-full", "bo-regret", "bo-parallel"] {
            let path =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(format!("{name}.json"));
            let cfg = gradlab_core::experiment::ExperimentConfig::load(&path).unwrap();
            for quick in [false, true] {
                let v = cfg.resolve(quick, &[]).unwrap();
                let f = path.display().to_string();
                match cfg.entry.as_str() {
                    "bayesopt.lazy_vs_full" => {
                        drop(gradlab_core::experiment::from_value::<LazyParams>(&v, &f).unwrap())
                    }
                    "bayesopt.regret" => drop(gradlab_core::experiment::from_value::<RegretParams>(&v, &f).unwrap()),
                    "bayesopt.parallel" => {
                        drop(gradlab_core::experiment::from_value::<ParallelParams>(&v, &f).unwrap())
                    }
                    e => panic!("unknown entry {e}"),
                }
            }
            assert!(experiments().iter().any(|e| e.entry == cfg.entry));
        }
    }
}
