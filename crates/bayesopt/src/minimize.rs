//! The `minimize` loop: ask, evaluate (a batch in parallel threads), tell, save, observe,
//! until the budget or a stopping rule ends it.

use crate::error::{Error, Result};
use crate::space::{Point, Space};
use crate::study::{AskStats, Study, StudyConfig, Trial, TrialState};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
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

/// What an observer sees after each batch.
#[derive(Clone, Debug, Serialize)]
pub struct IterationEvent<'a> {
    /// Iteration (ask) number, from 0.
    pub iteration: usize,
    /// Finished evaluations so far.
    pub evaluations: usize,
    /// Best value so far.
    pub best: Option<f64>,
    /// The batch just told.
    pub trials: &'a [Trial],
    /// Model statistics of the ask.
    pub stats: &'a AskStats,
}

/// Receives progress of a [`Minimizer`] run. Methods default to no-ops.
pub trait Observer: Send {
    /// Called after each batch is told.
    fn on_iteration(&mut self, _event: &IterationEvent<'_>) {}
    /// Called once at the end.
    fn on_finish(&mut self, _study: &Study) {}
}

/// Progress bar on stderr (indicatif).
pub struct ProgressObserver {
    bar: indicatif::ProgressBar,
}

impl ProgressObserver {
    /// A bar for `budget` evaluations.
    pub fn new(budget: usize) -> Self {
        let bar = indicatif::ProgressBar::new(budget as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} evals  best {msg}  [{elapsed_precise}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        ProgressObserver { bar }
    }
}

impl Observer for ProgressObserver {
    fn on_iteration(&mut self, e: &IterationEvent<'_>) {
        self.bar.set_position(e.evaluations as u64);
        if let Some(b) = e.best {
            self.bar.set_message(format!("{b:.6}"));
        }
    }
    fn on_finish(&mut self, _study: &Study) {
        self.bar.finish();
    }
}

/// Appends one JSON line per told trial: id, params, value/state, best so far, overhead.
pub struct JsonLinesObserver {
    file: std::io::BufWriter<std::fs::File>,
}

impl JsonLinesObserver {
    /// Opens `path` for appending.
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Ok(JsonLinesObserver { file: std::io::BufWriter::new(file) })
    }
}

impl Observer for JsonLinesObserver {
    fn on_iteration(&mut self, e: &IterationEvent<'_>) {
        for t in e.trials {
            let line = serde_json::json!({
                "iteration": e.iteration, "trial": t.id, "params": t.params, "state": t.state,
                "value": t.value, "error": t.error, "best": e.best,
                "refit": e.stats.refit, "overhead_s": e.stats.overhead_s(), "n": e.stats.n,
            });
            let _ = writeln!(self.file, "{line}");
        }
        let _ = self.file.flush();
    }
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

/// Configurable minimisation loop.
pub struct Minimizer {
    config: StudyConfig,
    budget: usize,
    q: usize,
    stop: StopRule,
    save_path: Option<PathBuf>,
    observers: Vec<Box<dyn Observer>>,
}

impl Minimizer {
    /// Loop with `budget` evaluations and default configuration.
    pub fn new(budget: usize) -> Self {
        Minimizer {
            config: StudyConfig::default(),
            budget,
            q: 1,
            stop: StopRule::default(),
            save_path: None,
            observers: Vec::new(),
        }
    }

    /// Study configuration.
    #[must_use]
    pub fn config(mut self, config: StudyConfig) -> Self {
        self.config = config;
        self
    }

    /// Points per iteration, evaluated in parallel threads.
    #[must_use]
    pub fn batch(mut self, q: usize) -> Self {
        self.q = q.max(1);
        self
    }

    /// Stopping rule.
    #[must_use]
    pub fn stop(mut self, stop: StopRule) -> Self {
        self.stop = stop;
        self
    }

    /// Save the study to `path` after every ask and every batch of tells.
    #[must_use]
    pub fn save_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.save_path = Some(path.into());
        self
    }

    /// Adds an observer.
    #[must_use]
    pub fn observer(mut self, o: impl Observer + 'static) -> Self {
        self.observers.push(Box::new(o));
        self
    }

    /// Runs on a new study over `space`.
    pub fn run<F, E>(self, space: &Space, objective: F) -> Result<(Study, MinimizeResult)>
    where
        F: Fn(&Point) -> std::result::Result<f64, E> + Sync,
        E: std::fmt::Display,
    {
        let study = Study::new(space.clone(), self.config.clone())?;
        self.resume(study, objective)
    }

    /// Continues an existing (e.g. loaded) study until its finished evaluations reach the
    /// budget. Pending trials (asked before a stop) are evaluated first.
    pub fn resume<F, E>(mut self, mut study: Study, objective: F) -> Result<(Study, MinimizeResult)>
    where
        F: Fn(&Point) -> std::result::Result<f64, E> + Sync,
        E: std::fmt::Display,
    {
        let start = Instant::now();
        let mut best_so_far = Vec::new();
        let mut best = f64::INFINITY;
        let mut since_improve = 0usize;
        let mut told: Vec<&Trial> = study.trials().iter().filter(|t| t.tell_index.is_some()).collect();
        told.sort_by_key(|t| t.tell_index);
        for t in told {
            if let Some(v) = t.value {
                if v < best {
                    best = v;
                    since_improve = 0;
                } else {
                    since_improve += 1;
                }
            } else {
                since_improve += 1;
            }
            best_so_far.push(best);
        }
        let mut overhead = Vec::new();
        let mut iteration = 0;
        let stopped_by;
        loop {
            if study.n_finished() >= self.budget {
                stopped_by = "budget".to_string();
                break;
            }
            if let Some(t) = self.stop.target {
                if best <= t {
                    stopped_by = format!("target {t}");
                    break;
                }
            }
            if let Some(p) = self.stop.patience {
                if since_improve >= p {
                    stopped_by = format!("patience {p}");
                    break;
                }
            }
            if let Some(s) = self.stop.max_seconds {
                if start.elapsed() > Duration::from_secs_f64(s) {
                    stopped_by = format!("time {s} s");
                    break;
                }
            }
            let pending: Vec<Trial> = study.pending().into_iter().cloned().collect();
            let batch = if !pending.is_empty() {
                pending
            } else {
                let q = self.q.min(self.budget - study.n_finished());
                let b = study.ask_batch(q)?;
                overhead.push(study.last_stats().overhead_s());
                if let Some(p) = &self.save_path {
                    study.save(p)?;
                }
                b
            };
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
                match (tr.state == TrialState::Complete, tr.value) {
                    (true, Some(v)) if v < best => {
                        best = v;
                        since_improve = 0;
                    }
                    _ => since_improve += 1,
                }
                best_so_far.push(best);
            }
            if let Some(p) = &self.save_path {
                study.save(p)?;
            }
            let told: Vec<Trial> = batch.iter().map(|t| study.trials()[t.id as usize].clone()).collect();
            let stats = study.last_stats().clone();
            let ev = IterationEvent {
                iteration,
                evaluations: study.n_finished(),
                best: best.is_finite().then_some(best),
                trials: &told,
                stats: &stats,
            };
            for o in self.observers.iter_mut() {
                o.on_iteration(&ev);
            }
            iteration += 1;
        }
        for o in self.observers.iter_mut() {
            o.on_finish(&study);
        }
        let b = study.best();
        let result = MinimizeResult {
            best_params: b.map(|t| t.params.clone()),
            best_value: b.and_then(|t| t.value),
            evaluations: study.n_finished(),
            failed: study.trials().iter().filter(|t| t.state == TrialState::Failed).count(),
            best_so_far,
            overhead_s: overhead,
            stopped_by,
        };
        Ok((study, result))
    }
}

/// Minimises `objective` over `space` with `budget` evaluations and default settings.
///
/// ```
/// use gradlab_bayesopt::{minimize, space::Space};
/// let space = Space::uniform_box(2, -2.0, 2.0)?;
/// let r = minimize(|p| p.iter().map(|v| v.as_f64().unwrap().powi(2)).sum(), &space, 25)?;
/// assert!(r.best_value.unwrap() < 0.05);
/// # Ok::<(), gradlab_bayesopt::Error>(())
/// ```
pub fn minimize<F>(objective: F, space: &Space, budget: usize) -> Result<MinimizeResult>
where
    F: Fn(&Point) -> f64 + Sync,
{
    let (_, r) = Minimizer::new(budget).run(space, |p: &Point| Ok::<f64, std::convert::Infallible>(objective(p)))?;
    Ok(r)
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
            let (full, _) = Minimizer::new(30).config(cfg(7, lag)).run(&f.space(), obj(f)).unwrap();
            let path = dir.path().join(format!("{}.json", lag.label()));
            for k in [4, 13, 21] {
                let _ = std::fs::remove_file(&path);
                // Run k evaluations, then drop everything but the file.
                let (s, _) = Minimizer::new(k).config(cfg(7, lag)).save_to(&path).run(&f.space(), obj(f)).unwrap();
                drop(s);
                // Simulate a kill right after an ask: the pending trial is saved too.
                let mut s = Study::load(&path).unwrap();
                s.ask().unwrap();
                s.save(&path).unwrap();
                drop(s);
                let s = Study::load(&path).unwrap();
                let (resumed, _) = Minimizer::new(30).config(cfg(7, lag)).save_to(&path).resume(s, obj(f)).unwrap();
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
        let (study, r) = Minimizer::new(40)
            .config(cfg(1, LagPolicy::Every(3)))
            .observer(JsonLinesObserver::create(&hist).unwrap())
            .run(&f.space(), objective)
            .unwrap();
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
        let (_, r) = Minimizer::new(200)
            .config(cfg(2, LagPolicy::adaptive()))
            .stop(StopRule { target: Some(0.5), ..Default::default() })
            .run(&f.space(), obj(f))
            .unwrap();
        assert!(r.stopped_by.starts_with("target") && r.best_value.unwrap() <= 0.5, "{r:?}");
        assert!(r.evaluations < 200);
        let (s, r) = Minimizer::new(25).config(cfg(2, LagPolicy::Every(1))).batch(5).run(&f.space(), obj(f)).unwrap();
        assert_eq!(r.evaluations, 25);
        assert!(s.trials().iter().all(|t| t.state == TrialState::Complete));
    }
}
