//! The `minimize` loop: ask, evaluate (a batch in parallel threads), tell, save, log, until
//! the budget or a stopping rule ends it.
//!
//! Three forms: [`minimize`] (one call, objective on [`Point`]s), [`minimize_f64`] (one call,
//! objective on `&[f64]` over a box) and the [`Minimizer`] settings struct (batches, stopping
//! rules, saving, JSON-lines history, progress bar, resuming a loaded study).

use crate::error::{Error, Result};
use crate::space::{Param, Point, Space};
use crate::study::{AskStats, Study, StudyConfig, Trial, TrialState};
use gradlab_core::io::JsonlWriter;
use gradlab_core::observe::progress_bar;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// When to stop before the budget is spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StopRule {
    /// Stop once a value ≤ target has been observed.
    pub target: Option<f64>,
    /// Stop after this many evaluations without improving the best value.
    pub patience: Option<usize>,
    /// Stop after this much wall time (seconds).
    pub max_seconds: Option<f64>,
}

/// One line of the JSON-lines history ([`Minimizer::history`]): a told trial, the best value
/// so far and the model statistics of the ask that proposed it.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryRecord<'a> {
    /// Iteration (batch) of this run, from 0.
    pub iteration: usize,
    /// Trial id.
    pub trial: u64,
    /// Parameter values.
    pub params: &'a Point,
    /// State after the tell.
    pub state: &'a TrialState,
    /// Objective value if complete.
    pub value: Option<f64>,
    /// Failure reason if failed.
    pub error: Option<&'a str>,
    /// Best value so far.
    pub best: Option<f64>,
    /// Whether the ask refit the hyperparameters.
    pub refit: bool,
    /// Model + acquisition seconds of the ask.
    pub overhead_s: f64,
    /// Observations in the model at the ask.
    pub n: usize,
}

/// Result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct MinimizeResult {
    /// Best parameters.
    pub best_params: Option<Point>,
    /// Best value.
    pub best_value: Option<f64>,
    /// Finished evaluations.
    pub evaluations: usize,
    /// Failed evaluations.
    pub failed: usize,
    /// Best value after each evaluation (tell order).
    pub best_so_far: Vec<f64>,
    /// Model + acquisition seconds per ask.
    pub overhead_s: Vec<f64>,
    /// Why it stopped.
    pub stopped_by: String,
}

/// The minimisation loop and its settings; fill the fields, then [`Minimizer::run`] (a new
/// study) or [`Minimizer::resume`] (a loaded one).
///
/// ```
/// use gradlab_bayesopt::minimize::{Minimizer, StopRule};
/// use gradlab_bayesopt::{space::Space, study::StudyConfig};
/// let space = Space::uniform_box(2, -2.0, 2.0)?;
/// let m = Minimizer {
///     config: StudyConfig { seed: 7, ..Default::default() },
///     batch: 2,
///     stop: StopRule { target: Some(0.01), ..Default::default() },
///     ..Minimizer::new(30)
/// };
/// let (study, r) = m.run(&space, |p| Ok::<_, String>(p.iter().map(|v| v.as_f64().unwrap().powi(2)).sum()))?;
/// assert!(r.best_value.unwrap() < 0.05 && study.n_finished() <= 30);
/// # Ok::<(), gradlab_bayesopt::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Minimizer {
    /// Study configuration (seed, kernel, acquisition, lag, …) of a new study.
    pub config: StudyConfig,
    /// Finished evaluations to reach (those of a resumed study count).
    pub budget: usize,
    /// Points per iteration, evaluated in parallel threads (at least 1).
    pub batch: usize,
    /// Early stopping.
    pub stop: StopRule,
    /// Save the study here after every ask and every batch of tells.
    pub save_to: Option<PathBuf>,
    /// Append one JSON line per told trial ([`HistoryRecord`]) to this file.
    pub history: Option<PathBuf>,
    /// Draw a progress bar on stderr ([`gradlab_core::observe::progress_bar`]; never drawn
    /// when stderr is not a terminal).
    pub progress: bool,
}

impl Minimizer {
    /// A loop of `budget` evaluations: default study configuration (seed 0), one point per
    /// iteration, no stopping rule, no files, no progress bar.
    pub fn new(budget: usize) -> Self {
        Minimizer {
            config: StudyConfig::default(),
            budget,
            batch: 1,
            stop: StopRule::default(),
            save_to: None,
            history: None,
            progress: false,
        }
    }

    /// Runs on a new study over `space`.
    pub fn run<F, E>(&self, space: &Space, objective: F) -> Result<(Study, MinimizeResult)>
    where
        F: Fn(&Point) -> std::result::Result<f64, E> + Sync,
        E: std::fmt::Display,
    {
        let study = Study::new(space.clone(), self.config.clone())?;
        self.resume(study, objective)
    }

    /// Runs on a new study over an all-float `space` (`float` and `log_float` parameters)
    /// with an objective of plain `f64`s: the objective sees each parameter's value (a
    /// `log_float` is searched on its log scale but passed as is). `int` and `categorical`
    /// parameters are refused with [`Error::Invalid`]. A non-finite value records the trial
    /// as failed.
    pub fn run_f64<F>(&self, space: &Space, objective: F) -> Result<(Study, MinimizeResult)>
    where
        F: Fn(&[f64]) -> f64 + Sync,
    {
        if let Some(p) = space.params().iter().find(|p| !matches!(p, Param::Float { .. } | Param::LogFloat { .. })) {
            let kind = if matches!(p, Param::Int { .. }) { "int" } else { "categorical" };
            return Err(Error::invalid(
                p.name(),
                kind,
                "a float or log_float parameter (the f64 form passes plain numbers)",
            ));
        }
        self.run(space, |p: &Point| {
            let x: Vec<f64> = p.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
            Ok::<f64, std::convert::Infallible>(objective(&x))
        })
    }

    /// Continues an existing (e.g. loaded) study until its finished evaluations reach the
    /// budget. Pending trials (asked before a stop) are evaluated first. Errors writing the
    /// study or the history end the run.
    pub fn resume<F, E>(&self, mut study: Study, objective: F) -> Result<(Study, MinimizeResult)>
    where
        F: Fn(&Point) -> std::result::Result<f64, E> + Sync,
        E: std::fmt::Display,
    {
        let start = Instant::now();
        let mut track = BestTracker::default();
        for t in study.told() {
            track.push(t.value);
        }
        let mut history = self.history.as_ref().map(JsonlWriter::append).transpose()?;
        let bar = progress_bar(self.budget as u64, "minimize", !self.progress);
        bar.set_position(study.n_finished() as u64);
        let mut overhead = Vec::new();
        let mut iteration = 0;
        let stopped_by = loop {
            if let Some(why) = self.stop_reason(&study, &track, start) {
                break why;
            }
            let batch = self.next_batch(&mut study, &mut overhead)?;
            let results: Vec<std::result::Result<f64, String>> = if batch.len() > 1 {
                batch.par_iter().map(|t| objective(&t.params).map_err(|e| e.to_string())).collect()
            } else {
                batch.iter().map(|t| objective(&t.params).map_err(|e| e.to_string())).collect()
            };
            for (t, r) in batch.iter().zip(results) {
                match r {
                    Ok(v) => study.tell(t.id, v)?,
                    Err(e) => study.tell_failed(t.id, e)?,
                }
                let tr = &study.trials()[t.id as usize];
                track.push(if tr.state == TrialState::Complete { tr.value } else { None });
                if let Some(h) = history.as_mut() {
                    h.log(&history_record(iteration, tr, track.best(), study.last_stats()))?;
                }
            }
            if let Some(p) = &self.save_to {
                study.save(p)?;
            }
            bar.set_position(study.n_finished() as u64);
            if let Some(b) = track.best() {
                bar.set_message(format!("best {b:.6}"));
            }
            iteration += 1;
        };
        bar.finish_and_clear();
        let b = study.best();
        let result = MinimizeResult {
            best_params: b.map(|t| t.params.clone()),
            best_value: b.and_then(|t| t.value),
            evaluations: study.n_finished(),
            failed: study.trials().iter().filter(|t| t.state == TrialState::Failed).count(),
            best_so_far: track.best_so_far,
            overhead_s: overhead,
            stopped_by,
        };
        Ok((study, result))
    }

    /// Why the loop stops now, if it does.
    fn stop_reason(&self, study: &Study, track: &BestTracker, start: Instant) -> Option<String> {
        if study.n_finished() >= self.budget {
            return Some("budget".into());
        }
        match self.stop {
            StopRule { target: Some(t), .. } if track.best <= t => Some(format!("target {t}")),
            StopRule { patience: Some(p), .. } if track.since_improve >= p => Some(format!("patience {p}")),
            StopRule { max_seconds: Some(s), .. } if start.elapsed() > Duration::from_secs_f64(s) => {
                Some(format!("time {s} s"))
            }
            _ => None,
        }
    }

    /// The pending trials of a resumed study, else a new batch (saved right after the ask).
    fn next_batch(&self, study: &mut Study, overhead: &mut Vec<f64>) -> Result<Vec<Trial>> {
        let pending: Vec<Trial> = study.pending().into_iter().cloned().collect();
        if !pending.is_empty() {
            return Ok(pending);
        }
        let q = self.batch.max(1).min(self.budget - study.n_finished());
        let b = study.ask_batch(q)?;
        overhead.push(study.last_stats().overhead_s());
        if let Some(p) = &self.save_to {
            study.save(p)?;
        }
        Ok(b)
    }
}

fn history_record<'a>(iteration: usize, t: &'a Trial, best: Option<f64>, stats: &AskStats) -> HistoryRecord<'a> {
    HistoryRecord {
        iteration,
        trial: t.id,
        params: &t.params,
        state: &t.state,
        value: t.value,
        error: t.error.as_deref(),
        best,
        refit: stats.refit,
        overhead_s: stats.overhead_s(),
        n: stats.n,
    }
}

/// Best value so far in tell order, and evaluations since it last improved.
#[derive(Debug)]
struct BestTracker {
    best: f64,
    since_improve: usize,
    best_so_far: Vec<f64>,
}

impl Default for BestTracker {
    fn default() -> Self {
        BestTracker { best: f64::INFINITY, since_improve: 0, best_so_far: Vec::new() }
    }
}

impl BestTracker {
    /// Records one told trial (`None`: failed).
    fn push(&mut self, value: Option<f64>) {
        match value {
            Some(v) if v < self.best => {
                self.best = v;
                self.since_improve = 0;
            }
            _ => self.since_improve += 1,
        }
        self.best_so_far.push(self.best);
    }

    fn best(&self) -> Option<f64> {
        self.best.is_finite().then_some(self.best)
    }
}

/// Minimises `objective` over `space` with `budget` evaluations and the study configuration
/// `config` (its `seed` fixes every random draw: same seed, same run).
///
/// ```
/// use gradlab_bayesopt::{minimize, space::Space, study::StudyConfig};
/// let space = Space::uniform_box(2, -2.0, 2.0)?;
/// let config = StudyConfig { seed: 1, ..Default::default() };
/// let r = minimize(|p| p.iter().map(|v| v.as_f64().unwrap().powi(2)).sum(), &space, 25, &config)?;
/// assert!(r.best_value.unwrap() < 0.05);
/// # Ok::<(), gradlab_bayesopt::Error>(())
/// ```
pub fn minimize<F>(objective: F, space: &Space, budget: usize, config: &StudyConfig) -> Result<MinimizeResult>
where
    F: Fn(&Point) -> f64 + Sync,
{
    let m = Minimizer { config: config.clone(), ..Minimizer::new(budget) };
    let (_, r) = m.run(space, |p: &Point| Ok::<f64, std::convert::Infallible>(objective(p)))?;
    Ok(r)
}

/// Minimises `objective(x)` over the box `bounds` (`(low, high)` per coordinate) with
/// `budget` evaluations and the study configuration `config`; returns the best point and its
/// value. A non-finite value counts as a failed evaluation; if every evaluation fails the
/// result is [`Error::TooFewObservations`]. For log-scaled coordinates build a [`Space`] and
/// use [`Minimizer::run_f64`].
///
/// ```
/// use gradlab_bayesopt::{minimize_f64, study::StudyConfig};
/// let config = StudyConfig { seed: 3, ..Default::default() };
/// let (x, v) = minimize_f64(|x| (x[0] - 1.0).powi(2) + x[1].powi(2), &[(-2.0, 2.0), (-2.0, 2.0)], 25, &config)?;
/// assert!(v < 0.05 && (x[0] - 1.0).abs() < 0.25);
/// # Ok::<(), gradlab_bayesopt::Error>(())
/// ```
pub fn minimize_f64<F>(
    objective: F,
    bounds: &[(f64, f64)],
    budget: usize,
    config: &StudyConfig,
) -> Result<(Vec<f64>, f64)>
where
    F: Fn(&[f64]) -> f64 + Sync,
{
    let m = Minimizer { config: config.clone(), ..Minimizer::new(budget) };
    let (study, _) = m.run_f64(&Space::from_bounds(bounds)?, objective)?;
    let best = study.best().ok_or(Error::TooFewObservations { need: 1, have: 0 })?;
    let x = best.params.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
    Ok((x, best.value.unwrap_or(f64::NAN)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquisition::MaximizeOptions;
    use crate::gp::FitOptions;
    use crate::study::LagPolicy;
    use crate::testfns::TestFunction;

    fn cfg(seed: u64, lag: LagPolicy) -> StudyConfig {
        StudyConfig {
            seed,
            lag,
            maximize: MaximizeOptions { candidates: 500, starts: 4, max_iter: 40, ..Default::default() },
            fit: FitOptions { restarts: 2, max_iter: 40, ..Default::default() },
            ..Default::default()
        }
    }

    fn obj(f: TestFunction) -> impl Fn(&Point) -> std::result::Result<f64, String> + Sync {
        move |p: &Point| Ok(f.eval(&p.iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>()))
    }

    #[test]
    fn resume_after_drop_gives_identical_run() {
        let f = TestFunction::Branin;
        let dir = tempfile::tempdir().unwrap();
        for lag in [LagPolicy::Every(3), LagPolicy::adaptive()] {
            let (full, _) = Minimizer { config: cfg(7, lag), ..Minimizer::new(30) }.run(&f.space(), obj(f)).unwrap();
            let path = dir.path().join(format!("{}.json", lag.label()));
            for k in [4, 13, 21] {
                let _ = std::fs::remove_file(&path);
                // Run k evaluations, then drop everything but the file.
                let saving =
                    |budget| Minimizer { config: cfg(7, lag), save_to: Some(path.clone()), ..Minimizer::new(budget) };
                let (s, _) = saving(k).run(&f.space(), obj(f)).unwrap();
                drop(s);
                // Simulate a kill right after an ask: the pending trial is saved too.
                let mut s = Study::load(&path).unwrap();
                s.ask().unwrap();
                s.save(&path).unwrap();
                drop(s);
                let s = Study::load(&path).unwrap();
                let (resumed, _) = saving(30).resume(s, obj(f)).unwrap();
                assert_eq!(resumed.trials().len(), full.trials().len());
                for (a, b) in resumed.trials().iter().zip(full.trials()) {
                    assert_eq!(a.params, b.params, "{lag:?} k {k}: trial {}", a.id);
                    assert_eq!(a.value, b.value);
                }
            }
        }
    }

    #[test]
    fn branin_reaches_near_optimum_and_failures_are_recorded() {
        let f = TestFunction::Branin;
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let objective = |p: &Point| {
            let c = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if c == 7 { Err("simulated crash".to_string()) } else { obj(f)(p) }
        };
        let dir = tempfile::tempdir().unwrap();
        let hist = dir.path().join("h.jsonl");
        let m = Minimizer { config: cfg(1, LagPolicy::Every(3)), history: Some(hist.clone()), ..Minimizer::new(40) };
        let (study, r) = m.run(&f.space(), objective).unwrap();
        assert_eq!(r.failed, 1);
        assert_eq!(r.evaluations, 40);
        assert!(r.best_value.unwrap() < 0.45, "best {:?}", r.best_value);
        assert_eq!(std::fs::read_to_string(&hist).unwrap().lines().count(), 40);
        assert!(study.trials().iter().any(|t| t.error.as_deref() == Some("simulated crash")));
        // best_so_far is monotone.
        assert!(r.best_so_far.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn stopping_rules_and_parallel_batches() {
        let f = TestFunction::Branin;
        let m = Minimizer {
            config: cfg(2, LagPolicy::adaptive()),
            stop: StopRule { target: Some(0.5), ..Default::default() },
            ..Minimizer::new(200)
        };
        let (_, r) = m.run(&f.space(), obj(f)).unwrap();
        assert!(r.stopped_by.starts_with("target") && r.best_value.unwrap() <= 0.5, "{r:?}");
        assert!(r.evaluations < 200);
        let m = Minimizer { config: cfg(2, LagPolicy::Every(1)), batch: 5, ..Minimizer::new(25) };
        let (s, r) = m.run(&f.space(), obj(f)).unwrap();
        assert_eq!(r.evaluations, 25);
        assert!(s.trials().iter().all(|t| t.state == TrialState::Complete));
    }

    #[test]
    fn history_write_errors_end_the_run() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be opened as the history file.
        let m = Minimizer {
            config: cfg(1, LagPolicy::Every(3)),
            history: Some(dir.path().to_path_buf()),
            ..Minimizer::new(5)
        };
        let e = m.run(&TestFunction::Branin.space(), obj(TestFunction::Branin)).unwrap_err();
        assert!(matches!(e, Error::Core(gradlab_core::Error::Io { .. })), "{e}");
    }

    #[test]
    fn f64_form_reaches_branin_optimum_and_is_reproducible() {
        let f = TestFunction::Branin;
        let bounds = f.bounds();
        let config = StudyConfig { seed: 11, ..Default::default() };
        let (x, v) = minimize_f64(|x| f.eval(x), &bounds, 60, &config).unwrap();
        // Branin's minimum is 0.397887 (at three points).
        assert!(v < 0.45, "best {v} at {x:?}");
        assert!((f.eval(&x) - v).abs() < 1e-12);
        assert!(x.iter().zip(&bounds).all(|(x, (lo, hi))| (lo..=hi).contains(&x)));
        let again = minimize_f64(|x| f.eval(x), &bounds, 60, &config).unwrap();
        assert_eq!(again, (x, v));
    }

    #[test]
    fn f64_form_takes_log_floats_and_refuses_ints() {
        let space = Space::new(vec![
            Param::LogFloat { name: "lr".into(), low: 1e-4, high: 1.0 },
            Param::Float { name: "m".into(), low: 0.0, high: 1.0 },
        ])
        .unwrap();
        let m = Minimizer { config: cfg(4, LagPolicy::Every(3)), ..Minimizer::new(20) };
        let (_, r) = m.run_f64(&space, |x| (x[0].log10() + 2.0).powi(2) + x[1]).unwrap();
        let lr = r.best_params.as_ref().unwrap()[0].as_f64().unwrap();
        assert!((1e-4..=1.0).contains(&lr) && r.best_value.unwrap() < 0.5, "{r:?}");
        let ints = Space::new(vec![Param::Int { name: "k".into(), low: 0, high: 3 }]).unwrap();
        let e = m.run_f64(&ints, |x| x[0]).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "k"), "{e}");
    }
}
