//! Experiments (run with `cargo xtask experiment <name> [--quick]`), one module each:
//!
//! - `bo-lazy-vs-full` (`bayesopt.lazy_vs_full`, [`lazy_vs_full`]): cost of one BO iteration
//!   vs the number of observations n for lag = 1, 3, 10, ∞, from measured components
//!   (hyperparameter refit, full factorisation, O(n²) append, acquisition maximisation) with
//!   fitted log–log slopes; and the total model + acquisition overhead of real 100-iteration
//!   runs on Levy-5D.
//! - `bo-regret` (`bayesopt.regret`, [`regret`]): best-so-far vs evaluations, mean ± std over
//!   seeds, per test function and refit policy.
//! - `bo-parallel` (`bayesopt.parallel`, [`parallel`]): iterations and evaluations to reach a
//!   target with q = 1, 5, 20 points per iteration.
//! - `bo-hpo-digits` (`bayesopt.hpo_digits`, [`hpo_digits`]): the paper's HPO experiment on real
//!   data — a LeNet-style CNN tuned on the 8×8 digits by lag 1/3/∞/adaptive BO, random search and
//!   q = 20 batches: iterations and wall time to a target validation accuracy, test accuracy.
//!
//! Each config has one top-level `seed`; replicate `s` of a design runs with
//! [`replicate_seed`]`(seed, s)` and the other seeds are derived from `seed` with
//! [`gradlab_core::rng::derive_seed`] on named streams. The `seed` of a nested study
//! configuration is derived, so a non-zero one is refused.

pub mod hpo_digits;
pub mod lazy_vs_full;
pub mod parallel;
pub mod regret;

use crate::error::{Error, Result};
use crate::minimize::{MinimizeResult, Minimizer, StopRule};
use crate::space::Point;
use crate::study::{Study, StudyConfig};
use crate::testfns::TestFunction;
use gradlab_core::experiment::Experiment;
use gradlab_core::plot::LinePlot;
use gradlab_core::report::fmt_num;
use gradlab_core::rng::derive_seed;

/// The experiments of this crate.
pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment {
            entry: "bayesopt.lazy_vs_full",
            description: "Lazy GP vs full refits: time per BO iteration vs n (lag 1/3/10/inf), log-log slopes, total overhead over 100 iterations of Levy-5D",
            run: lazy_vs_full::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "bayesopt.regret",
            description: "Best-so-far vs evaluations (mean ± std over seeds) per test function and refit policy",
            run: regret::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "bayesopt.parallel",
            description: "Batch BO with q = 1, 5, 20: iterations and evaluations to reach a target",
            run: parallel::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "bayesopt.hpo_digits",
            description: "Tune a LeNet-style CNN on the 8x8 digits: lag 1/3/inf/adaptive BO vs random search vs q = 20 batches; iterations and wall time to a target validation accuracy, test accuracy of the best",
            run: hpo_digits::run,
            uses_ranks: false,
        },
    ]
}

/// Stream of [`derive_seed`] under which the replicate seeds of a run are drawn.
const REPLICATE_STREAM: u64 = 0x5245_504c; // "REPL"

/// Seed of replicate `s` of a run with top-level seed `seed` (the same replicate seeds for
/// every cell of a design, so cells are compared on paired runs).
pub fn replicate_seed(seed: u64, s: usize) -> u64 {
    derive_seed(derive_seed(seed, REPLICATE_STREAM), s as u64)
}

/// Refuses a non-zero `seed` in a nested study configuration (it is derived from the
/// config's top-level `seed`) and an invalid one ([`StudyConfig::check`], the field prefixed
/// with `field`), before any run starts.
pub(crate) fn check_nested_study(field: &str, study: &StudyConfig) -> Result<()> {
    if study.seed != 0 {
        return Err(Error::invalid(
            format!("{field}.seed"),
            study.seed,
            "0 (left out): each run's seed is derived from the top-level `seed`",
        ));
    }
    study.check().map_err(|e| match e {
        Error::Invalid { field: f, value, allowed } => Error::Invalid { field: format!("{field}.{f}"), value, allowed },
        e => e,
    })
}

/// Refuses a count that must be at least 1.
pub(crate) fn require_positive(field: &str, value: usize) -> Result<()> {
    if value == 0 { Err(Error::invalid(field, value, ">= 1")) } else { Ok(()) }
}

/// Refuses an empty list (a run over it would write empty tables).
pub(crate) fn require_nonempty<T>(field: &str, list: &[T], what: &str) -> Result<()> {
    if list.is_empty() { Err(Error::invalid(field, "[]", format!("at least one {what}"))) } else { Ok(()) }
}

/// Objective of a test function on a point of its space.
fn objective(f: TestFunction) -> impl Fn(&Point) -> std::result::Result<f64, String> + Sync {
    move |p: &Point| Ok(f.eval(&p.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect::<Vec<_>>()))
}

/// One BO run of `budget` evaluations on `f`, `q` points per iteration.
pub(crate) fn run_bo(
    f: TestFunction,
    config: StudyConfig,
    budget: usize,
    q: usize,
    stop: StopRule,
) -> Result<(Study, MinimizeResult)> {
    Minimizer { config, batch: q, stop, ..Minimizer::new(budget) }.run(&f.space(), objective(f))
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

pub(crate) use gradlab_core::stats::median;

/// Mean and sample standard deviation (0 for one value).
pub(crate) use gradlab_core::stats::mean_std;

/// `mean ± std` for a table cell.
pub(crate) fn pm(v: &[f64], digits: usize) -> String {
    let (m, s) = mean_std(v);
    format!("{} ± {}", fmt_num(m, digits), fmt_num(s, 2))
}

/// Mean over runs of `max(best − f*, floor)` at each position of the best-so-far curves
/// (a run shorter than the longest keeps its last value), as `(position + 1, mean)`.
pub(crate) fn mean_regret_curve(curves: &[Vec<f64>], optimum: f64, floor: f64) -> Vec<(f64, f64)> {
    let len = curves.iter().map(Vec::len).max().unwrap_or(0);
    (0..len)
        .map(|i| {
            let v: Vec<f64> = curves.iter().map(|c| (c[i.min(c.len() - 1)] - optimum).max(floor)).collect();
            ((i + 1) as f64, mean_std(&v).0)
        })
        .collect()
}

/// A figure of regret (`best − f*`, log scale) against `x_label`.
pub(crate) fn regret_plot(title: &str, x_label: &str) -> LinePlot {
    LinePlot::new(title).x_label(x_label).y_label("best − f*").log_y(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlab_core::experiment::{ExperimentConfig, from_value};

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
            let cfg = ExperimentConfig::load(&path).unwrap();
            for quick in [false, true] {
                let v = cfg.resolve(quick, &[]).unwrap();
                let f = path.display().to_string();
                match cfg.entry.as_str() {
                    "bayesopt.lazy_vs_full" => from_value::<lazy_vs_full::Params>(&v, &f).unwrap().check().unwrap(),
                    "bayesopt.regret" => from_value::<regret::Params>(&v, &f).unwrap().check().unwrap(),
                    "bayesopt.parallel" => from_value::<parallel::Params>(&v, &f).unwrap().check().unwrap(),
                    e => panic!("unknown entry {e}"),
                }
            }
            assert!(experiments().iter().any(|e| e.entry == cfg.entry));
        }
    }

    /// Every list parameter of the three experiments, emptied with `--set`, and every count
    /// set to 0, is refused with the field named (the quick configs, as the CLI resolves them).
    #[test]
    fn empty_lists_and_zero_counts_are_refused() {
        let cases: [(&str, &[&str]); 3] = [
            (
                "bo-lazy-vs-full",
                &["sizes=[]", "lags=[]", "repeats=0", "loop_seeds=0", "loop_iterations=0", "sizes=[1, 50]"],
            ),
            ("bo-regret", &["functions=[]", "policies=[]", "seeds=0", "budget=0", "policies=[{\"every\": 0}]"]),
            ("bo-parallel", &["qs=[]", "strategies=[]", "qs=[0]", "seeds=0", "max_evaluations=0"]),
        ];
        for (name, sets) in cases {
            let path =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(format!("{name}.json"));
            let cfg = ExperimentConfig::load(&path).unwrap();
            for set in sets {
                let v = cfg.resolve(true, &[set.to_string()]).unwrap();
                let f = path.display().to_string();
                let r = match cfg.entry.as_str() {
                    "bayesopt.lazy_vs_full" => from_value::<lazy_vs_full::Params>(&v, &f).unwrap().check(),
                    "bayesopt.regret" => from_value::<regret::Params>(&v, &f).unwrap().check(),
                    _ => from_value::<parallel::Params>(&v, &f).unwrap().check(),
                };
                let key = set.split('=').next().unwrap();
                match r {
                    Err(Error::Invalid { field, .. }) => assert!(field.starts_with(key), "{name} --set {set}: {field}"),
                    r => panic!("{name} --set {set}: expected Error::Invalid naming `{key}`, got {r:?}"),
                }
            }
        }
        // No size measured for a refit, and an invalid nested study option, are refused up front.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/bo-lazy-vs-full.json");
        let cfg = ExperimentConfig::load(&path).unwrap();
        let sets = ["loop_study.maximize.candidates=0".to_string(), "loop_study.maximize.starts=0".to_string()];
        for (sets, field) in
            [(&["refit_max_n=10".to_string()][..], "refit_max_n"), (&sets, "loop_study.maximize.candidates")]
        {
            let v = cfg.resolve(true, sets).unwrap();
            let e = from_value::<lazy_vs_full::Params>(&v, "x").unwrap().check().unwrap_err();
            assert!(matches!(&e, Error::Invalid { field: f, .. } if f == field), "{sets:?}: {e}");
        }
    }

    #[test]
    fn nested_study_seed_is_refused() {
        let e = check_nested_study("study", &StudyConfig { seed: 4, ..Default::default() }).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "study.seed"), "{e}");
        assert!(e.to_string().contains("derived"), "{e}");
        let lag = crate::study::LagPolicy::Every(0);
        let e = check_nested_study("study", &StudyConfig { lag, ..Default::default() }).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "study.lag.every"), "{e}");
        assert_ne!(replicate_seed(0, 0), replicate_seed(0, 1));
    }

    /// `bo-regret` killed after its first finished cell (the test hook stops the run right after
    /// that save) and resumed in the same folder reads that cell back, runs the others, and ends
    /// with the results of an uninterrupted run.
    #[test]
    fn bo_regret_killed_after_a_cell_and_resumed_equals_an_uninterrupted_run() {
        use gradlab_core::experiment::RunContext;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/bo-regret.json");
        let cfg = ExperimentConfig::load(&path).unwrap();
        let params = cfg.resolve(true, &["seeds=2".into(), "budget=14".into()]).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let ctx_at = |name: &str, existing: bool| {
            let dir = gradlab_core::run::RunDir::at(tmp.path().join(name), existing).unwrap();
            RunContext::new("bo-regret", &path, &cfg.entry, params.clone(), true, true, dir).unwrap()
        };
        regret::run(&mut ctx_at("whole", false)).unwrap();
        let mut ctx = ctx_at("part", false);
        ctx.stop_after_saves = Some(1);
        assert!(regret::run(&mut ctx).unwrap_err().to_string().contains("interrupted"));
        let first = tmp.path().join("part/stages/branin-lag1.json");
        let before = std::fs::metadata(&first).map(|m| m.modified().unwrap()).unwrap_or_else(|_| {
            panic!(
                "missing {}: {:?}",
                first.display(),
                std::fs::read_dir(tmp.path().join("part/stages")).unwrap().collect::<Vec<_>>()
            )
        });
        let mut ctx = ctx_at("part", true);
        ctx.resume = true;
        regret::run(&mut ctx).unwrap();
        assert_eq!(std::fs::metadata(&first).unwrap().modified().unwrap(), before, "the finished cell is read back");
        let summary = |d: &str| -> Vec<serde_json::Value> {
            let s: serde_json::Value = gradlab_core::io::read_json(&tmp.path().join(d).join("summary.json")).unwrap();
            s.as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    c.as_object_mut().unwrap().retain(|k, _| !k.contains("overhead"));
                    c
                })
                .collect()
        };
        assert_eq!(summary("part"), summary("whole"));
    }
}
