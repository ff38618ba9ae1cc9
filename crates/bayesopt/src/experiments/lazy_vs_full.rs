//! `bo-lazy-vs-full`: the cost of one BO iteration against the number of observations n for
//! lags 1, 3, 10 and ∞, from timed components (hyperparameter refit, full factorisation,
//! O(n²) append, acquisition maximisation) with log–log slopes; and the total model +
//! acquisition overhead of real runs on the same function.
//!
//! Stages: component timings per n → slopes → figures → end-to-end runs → report.

use super::{check_nested_study, mean_std, pm, replicate_seed, require_nonempty, require_positive, run_bo};
use crate::acquisition::{MaximizeOptions, Sampler, maximize, sample_unit};
use crate::error::{Error, Result};
use crate::gp::{FitOptions, Gp};
use crate::kernel::Hyper;
use crate::minimize::StopRule;
use crate::study::{LagPolicy, StudyConfig};
use crate::testfns::TestFunction;
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::plot::{LinePlot, Mark};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::rng::{derive_seed, stream_rng};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Stream of the observations at size n (`derive_seed(seed, DATA_STREAM)`, then n).
const DATA_STREAM: u64 = 1;
/// Stream of the hyperparameter fits.
const FIT_STREAM: u64 = 2;
/// Stream of the acquisition maximisations (then the repeat).
const ACQUISITION_STREAM: u64 = 3;

/// Parameters of `bo-lazy-vs-full`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Seed of the run: data, fits, acquisitions and the end-to-end runs derive theirs.
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
    /// Replicates (seeds) of the end-to-end runs.
    pub loop_seeds: usize,
    /// Study configuration of the end-to-end runs (the lag is set per row; the seed is
    /// derived, so it must be left out).
    pub loop_study: StudyConfig,
}

impl Params {
    /// Refuses empty sizes or lags, a size below 2, a `refit_max_n` below every size (no
    /// refit would be measured to estimate the others from), zero repeats, seeds or loop
    /// iterations and a nested study seed.
    pub fn check(&self) -> Result<()> {
        if self.sizes.is_empty() {
            return Err(Error::invalid("sizes", "[]", "at least one size"));
        }
        if let Some(&n) = self.sizes.iter().find(|&&n| n < 2) {
            return Err(Error::invalid("sizes", n, "sizes >= 2 (observations to fit a GP on)"));
        }
        require_nonempty("lags", &self.lags, "lag (0 for ∞)")?;
        let smallest = self.sizes.iter().min().copied().unwrap_or(0);
        if self.refit_max_n < smallest {
            return Err(Error::invalid(
                "refit_max_n",
                self.refit_max_n,
                format!(">= the smallest size ({smallest}): refits above it are estimated from measured ones"),
            ));
        }
        require_positive("repeats", self.repeats)?;
        require_positive("loop_seeds", self.loop_seeds)?;
        require_positive("loop_iterations", self.loop_iterations)?;
        check_nested_study("loop_study", &self.loop_study)?;
        self.maximize.check()?;
        self.fit.bounds.check()
    }
}

/// Timed components at one size n (seconds).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
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

/// A timed component of an iteration: its label and where its time is in a [`SizeTiming`].
type Component = (&'static str, fn(&SizeTiming) -> f64);

/// End-to-end runs of one lag.
struct LoopRow {
    lag: usize,
    overhead_s: Vec<f64>,
    best: Vec<f64>,
}

fn lag_label(k: usize) -> String {
    if k == 0 { "lag ∞".into() } else { format!("lag {k}") }
}

/// Cost of one iteration of lag `k` (0: ∞): a refit every k iterations, appends otherwise.
fn per_iteration(t: &SizeTiming, k: usize) -> f64 {
    match k {
        0 => t.append_s + t.acquisition_s,
        1 => t.refit_s + t.acquisition_s,
        k => ((k - 1) as f64 * t.append_s + t.refit_s) / k as f64 + t.acquisition_s,
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}

/// Runs the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.check()?;
    let mut timings = Vec::new();
    for &n in &p.sizes {
        // Each measured size is a stage: `--resume` reads it back instead of timing it again.
        let t = ctx.stage(&format!("size-{n}"), || time_size(&p, n, &timings))?;
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
    let (slope_rows, slopes) = slopes(&p, &timings);
    figures(ctx, &p, &timings)?;
    let loops = end_to_end(ctx, &p)?;
    let loop_json: Vec<_> = loops
        .iter()
        .map(|l| serde_json::json!({"lag": lag_label(l.lag), "overhead_s": l.overhead_s, "best": l.best}))
        .collect();
    ctx.dir.write_summary(&serde_json::json!({
        "function": p.function.name(),
        "timings": timings,
        "slopes": slopes,
        "loop": loop_json,
        "loop_iterations": p.loop_iterations,
    }))?;
    report(ctx, &p, &timings, &slope_rows, &loops)
}

/// Observations of the function at `n + repeats` Latin-hypercube points (the last `repeats`
/// are the appended ones), in the unit cube.
fn size_data(p: &Params, n: usize) -> (Vec<f64>, Vec<f64>) {
    let f = p.function;
    let space = f.space();
    let d = space.encoded_dim();
    let mut rng = stream_rng(derive_seed(p.seed, DATA_STREAM), n as u64);
    let x = sample_unit(Sampler::Lhs, n + p.repeats, d, &mut rng);
    let y = x
        .chunks(d)
        .map(|u| {
            let pt = space.decode(u).expect("a unit-cube point of the right length decodes");
            f.eval(&pt.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect::<Vec<_>>())
        })
        .collect();
    (x, y)
}

/// Refit time, LML evaluations per refit and whether the refit was run (else estimated from
/// the measured sizes before); leaves fitted hyperparameters in `gp`.
fn refit(p: &Params, gp: &mut Gp, x: &[f64], y: &[f64], timings: &[SizeTiming]) -> Result<(f64, usize, bool)> {
    let n = gp.len();
    let d = gp.dim();
    let fit_seed = derive_seed(p.seed, FIT_STREAM);
    if n <= p.refit_max_n {
        let t0 = Instant::now();
        let rep = gp.fit(&p.fit, fit_seed)?;
        return Ok((t0.elapsed().as_secs_f64(), rep.evaluations, true));
    }
    // Hyperparameters fitted on the first 500 points stand in (same function).
    let sub = n.min(500);
    let mut small = Gp::new(Default::default(), d, Hyper::default_for(d), Default::default());
    small.set_data(x[..sub * d].to_vec(), y[..sub].to_vec())?;
    small.fit(&p.fit, fit_seed)?;
    gp.set_hyperparameters(small.hyper().clone())?;
    let measured: Vec<&SizeTiming> = timings.iter().filter(|t| t.refit_measured).collect();
    let mean_evals = measured.iter().map(|t| t.refit_evaluations as f64).sum::<f64>() / measured.len().max(1) as f64;
    Ok((f64::NAN, mean_evals.round() as usize, false))
}

/// Times every component at size `n`.
fn time_size(p: &Params, n: usize, timings: &[SizeTiming]) -> Result<SizeTiming> {
    let (x, y) = size_data(p, n);
    let d = p.function.space().encoded_dim();
    let mut gp = Gp::new(Default::default(), d, Hyper::default_for(d), Default::default());
    gp.set_data(x[..n * d].to_vec(), y[..n].to_vec())?;
    let (refit_s, refit_evaluations, refit_measured) = refit(p, &mut gp, &x, &y, timings)?;
    let theta = gp.hyper().to_vec();
    let mut grad = vec![0.0; theta.len()];
    let mut lml = Vec::new();
    for _ in 0..p.repeats {
        let t0 = Instant::now();
        std::hint::black_box(gp.neg_lml_grad(&theta, &mut grad));
        lml.push(t0.elapsed().as_secs_f64());
    }
    let (mut factor, mut append, mut acq) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..p.repeats {
        let t0 = Instant::now();
        gp.refactor()?;
        factor.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        gp.append(&x[(n + r) * d..(n + r + 1) * d], y[n + r])?;
        append.push(t0.elapsed().as_secs_f64());
        gp.truncate(n);
        let t0 = Instant::now();
        gp.prepare();
        let best = gp.y().iter().map(|&v| gp.standardise(v)).fold(f64::INFINITY, f64::min);
        let ident = |u: &[f64]| u.to_vec();
        let seed = derive_seed(derive_seed(p.seed, ACQUISITION_STREAM), r as u64);
        let props = maximize(&Default::default(), &gp, best, &p.maximize, 1, &[], &ident, seed);
        acq.push(t0.elapsed().as_secs_f64());
        assert!(!props.is_empty(), "the maximiser always returns a point");
    }
    let (lml_eval_s, factor_s) = (min(&lml), min(&factor));
    Ok(SizeTiming {
        n,
        refit_s: if refit_measured { refit_s + factor_s } else { refit_evaluations as f64 * lml_eval_s + factor_s },
        refit_measured,
        refit_evaluations,
        lml_eval_s,
        factor_s,
        append_s: min(&append),
        acquisition_s: min(&acq),
    })
}

/// Log–log slopes of each component and of each lag's iteration cost, over all n and over
/// the upper half of n: table rows and JSON.
fn slopes(p: &Params, timings: &[SizeTiming]) -> (Vec<Vec<String>>, serde_json::Map<String, serde_json::Value>) {
    let ns: Vec<f64> = timings.iter().map(|t| t.n as f64).collect();
    let upper = timings.len() / 2;
    let slope = |sel: &dyn Fn(&SizeTiming) -> f64| -> (f64, f64) {
        let ts: Vec<f64> = timings.iter().map(sel).collect();
        (super::loglog_slope(&ns, &ts), super::loglog_slope(&ns[upper..], &ts[upper..]))
    };
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    let mut add = |label: String, key: String, (a, b): (f64, f64)| {
        rows.push(vec![label, fmt_num(a, 2), fmt_num(b, 2)]);
        json.insert(key, serde_json::json!({"all": a, "upper_half": b}));
    };
    let components: [Component; 5] = [
        ("append one row (O(n²))", |t| t.append_s),
        ("full factorisation", |t| t.factor_s),
        ("one LML + gradient evaluation", |t| t.lml_eval_s),
        ("hyperparameter refit + factorisation", |t| t.refit_s),
        ("acquisition maximisation", |t| t.acquisition_s),
    ];
    for (name, sel) in components {
        add(name.to_string(), name.to_string(), slope(&sel));
    }
    for &k in &p.lags {
        let l = lag_label(k);
        add(format!("iteration, {l}"), format!("iteration_{l}"), slope(&|t| per_iteration(t, k)));
        add(format!("model update only, {l}"), format!("model_{l}"), slope(&|t| per_iteration(t, k) - t.acquisition_s));
    }
    // Rows: components, then per lag "iteration" and "model update only".
    (rows, json)
}

/// `iteration_time.png` (per lag) and `components.png`.
fn figures(ctx: &RunContext, p: &Params, timings: &[SizeTiming]) -> Result<()> {
    let log_log = |title: &str, y_label: &str| {
        LinePlot::new(title).x_label("observations n").y_label(y_label).log_x(true).log_y(true)
    };
    let curve = |sel: &dyn Fn(&SizeTiming) -> f64| timings.iter().map(|t| (t.n as f64, sel(t))).collect::<Vec<_>>();
    let title = format!("Time per BO iteration vs n ({}, {} candidates)", p.function.name(), p.maximize.candidates);
    let mut plot = log_log(&title, "seconds per iteration");
    for &k in &p.lags {
        plot = plot.series(&lag_label(k), curve(&|t| per_iteration(t, k)), Mark::LinePoints);
    }
    plot.save(&ctx.dir.file("iteration_time")?)?;
    log_log("Components of one iteration vs n", "seconds")
        .series("refit + factorisation", curve(&|t| t.refit_s), Mark::LinePoints)
        .series("factorisation", curve(&|t| t.factor_s), Mark::LinePoints)
        .series("append", curve(&|t| t.append_s), Mark::LinePoints)
        .series("acquisition", curve(&|t| t.acquisition_s), Mark::LinePoints)
        .save(&ctx.dir.file("components")?)?;
    Ok(())
}

/// `loop_seeds` real runs per lag: total model + acquisition overhead and best value.
fn end_to_end(ctx: &RunContext, p: &Params) -> Result<Vec<LoopRow>> {
    let d = p.function.space().encoded_dim();
    let mut rows = Vec::new();
    for &k in &p.lags {
        let lag = if k == 0 { LagPolicy::Never } else { LagPolicy::Every(k) };
        let (mut overhead_s, mut best) = (Vec::new(), Vec::new());
        for s in 0..p.loop_seeds {
            let cfg = StudyConfig { seed: replicate_seed(p.seed, s), lag, ..p.loop_study.clone() };
            let n_init = if cfg.n_initial > 0 { cfg.n_initial } else { (2 * d + 1).max(5) };
            let (_, r) = run_bo(p.function, cfg, n_init + p.loop_iterations, 1, StopRule::default())?;
            overhead_s.push(r.overhead_s.iter().sum::<f64>());
            best.push(r.best_value.unwrap_or(f64::NAN));
        }
        if !ctx.quiet {
            let om = mean_std(&overhead_s).0;
            eprintln!("{}: overhead {om:.3} s over {} iterations, best {best:?}", lag_label(k), p.loop_iterations);
        }
        rows.push(LoopRow { lag: k, overhead_s, best });
    }
    Ok(rows)
}

/// Writes the report.
fn report(
    ctx: &RunContext,
    p: &Params,
    timings: &[SizeTiming],
    slope_rows: &[Vec<String>],
    loops: &[LoopRow],
) -> ExperimentResult {
    let f = p.function;
    let mut r = Report::new("bo-lazy-vs-full: lazy GP vs full refits");
    r.paragraph(&format!(
        "Data: {} values of n, observations of {} at Latin-hypercube points. Timed per n: hyperparameter refit (multi-start L-BFGS, {} restarts, ≤ {} iterations each) plus full factorisation (run up to n = {}; above, estimated as mean LML evaluations per refit × one evaluation); one LML + gradient evaluation; full factorisation; appending one row (O(n²)); maximising log-EI ({} candidates, {} local starts). Cheap timings are the minimum of {} repeats (the machine is shared). Per-iteration cost of lag k = (refit + (k−1)·append)/k + acquisition.",
        p.sizes.len(), f.name(), p.fit.restarts, p.fit.max_iter, p.refit_max_n, p.maximize.candidates, p.maximize.starts, p.repeats
    ));
    r.code("sh", &ctx.command());
    r.heading("Component timings");
    let ms = |s: f64| fmt_num(s * 1e3, 3);
    let rows: Vec<Vec<String>> = timings
        .iter()
        .map(|t| {
            let refit = format!("{}{}", fmt_num(t.refit_s, 3), if t.refit_measured { "" } else { " (est.)" });
            let mut row = vec![t.n.to_string(), refit, t.refit_evaluations.to_string()];
            row.extend([t.lml_eval_s, t.factor_s, t.append_s, t.acquisition_s].map(ms));
            row.extend(p.lags.iter().map(|&k| ms(per_iteration(t, k))));
            row
        })
        .collect();
    let mut headers: Vec<String> =
        ["n", "refit (s)", "LML evals", "LML eval (ms)", "factor (ms)", "append (ms)", "acquisition (ms)"]
            .map(String::from)
            .to_vec();
    headers.extend(p.lags.iter().map(|&k| format!("iteration {} (ms)", lag_label(k))));
    r.table(&headers, &rows);
    r.heading("Log–log slopes of cost vs n");
    r.table(&["quantity", "slope (all n)", "slope (upper half of n)"], slope_rows);
    r.heading(&format!("End-to-end: {} BO iterations of {} ({} seeds)", p.loop_iterations, f.name(), p.loop_seeds));
    let base = loops.iter().find(|l| l.lag == 1).map(|l| mean_std(&l.overhead_s).0);
    let loop_table: Vec<Vec<String>> = loops
        .iter()
        .map(|l| {
            let om = mean_std(&l.overhead_s).0;
            vec![
                lag_label(l.lag),
                pm(&l.overhead_s, 3),
                fmt_num(om / p.loop_iterations as f64 * 1e3, 3),
                base.map_or("–".into(), |b| format!("{}×", fmt_num(b / om, 3))),
                pm(&l.best, 4),
            ]
        })
        .collect();
    r.table(&["policy", "total overhead (s)", "per iteration (ms)", "speed-up vs lag 1", "best value"], &loop_table);
    r.figure("Time per iteration vs n", "iteration_time.png");
    r.figure("Components vs n", "components.png");
    r.write(&ctx.dir)?;
    Ok(())
}
