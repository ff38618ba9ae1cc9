//! Observers: what the training loop reports, kept separate from the loop itself.
//!
//! The [`crate::train::Trainer`] emits events; observers render them. Two are provided: a
//! progress bar on stderr ([`ProgressObserver`], hidden when stderr is not a terminal or when
//! quiet) and a JSON-lines metrics file ([`JsonlObserver`]).

use crate::Result;
use crate::io::JsonlWriter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;

/// Sent once before the first step.
#[derive(Debug, Clone, Serialize)]
pub struct StartEvent {
    /// Total optimiser steps planned (all epochs).
    pub total_steps: usize,
    /// Optimiser steps already done (non-zero when resuming).
    pub done_steps: usize,
    /// Epochs planned.
    pub epochs: usize,
}

/// Sent after each optimiser step.
#[derive(Debug, Clone, Serialize)]
pub struct StepEvent {
    pub epoch: usize,
    /// Optimiser steps done so far (1-based).
    pub step: usize,
    /// Mean training loss of the micro-batches of this step.
    pub loss: f64,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Sent after each validation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalEvent {
    pub epoch: usize,
    pub step: usize,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    pub val_loss: f64,
    /// Extra validation metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Whether this evaluation is the best so far by the monitored metric.
    pub is_best: bool,
}

/// A training observer. Every method has a no-op default.
pub trait Observer {
    fn on_start(&mut self, _e: &StartEvent) -> Result<()> {
        Ok(())
    }
    fn on_step(&mut self, _e: &StepEvent) -> Result<()> {
        Ok(())
    }
    fn on_eval(&mut self, _e: &EvalEvent) -> Result<()> {
        Ok(())
    }
    fn on_end(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<O: Observer + ?Sized> Observer for Box<O> {
    fn on_start(&mut self, e: &StartEvent) -> Result<()> {
        (**self).on_start(e)
    }
    fn on_step(&mut self, e: &StepEvent) -> Result<()> {
        (**self).on_step(e)
    }
    fn on_eval(&mut self, e: &EvalEvent) -> Result<()> {
        (**self).on_eval(e)
    }
    fn on_end(&mut self) -> Result<()> {
        (**self).on_end()
    }
}

impl<O: Observer + ?Sized> Observer for &mut O {
    fn on_start(&mut self, e: &StartEvent) -> Result<()> {
        (**self).on_start(e)
    }
    fn on_step(&mut self, e: &StepEvent) -> Result<()> {
        (**self).on_step(e)
    }
    fn on_eval(&mut self, e: &EvalEvent) -> Result<()> {
        (**self).on_eval(e)
    }
    fn on_end(&mut self) -> Result<()> {
        (**self).on_end()
    }
}

/// Records the training trajectory: the flat parameters (see [`crate::params`]) before the first
/// step and at every evaluation, with the validation loss and step of each evaluation. Pass it
/// by `&mut` to [`crate::train::Trainer::observe`] and read it after training.
///
/// [`TrajectoryObserver::persisted`] also keeps every point in a JSON-lines file, so that a run
/// continued with `Trainer::resume` has the whole trajectory: the points recorded before the
/// interruption are read back, and those after the checkpoint the trainer resumes from are
/// dropped (the trainer computes them again).
#[derive(Clone)]
pub struct TrajectoryObserver {
    varmap: candle_nn::VarMap,
    /// Flat parameters: `params[0]` at the start, then one per evaluation.
    pub params: Vec<Vec<f64>>,
    /// Validation loss of each evaluation (`params[i + 1]`).
    pub val_losses: Vec<f64>,
    /// Optimiser step of each evaluation.
    pub steps: Vec<usize>,
    file: Option<std::path::PathBuf>,
}

/// One line of a persisted trajectory: the start (`step` 0, no loss) or an evaluation.
#[derive(Serialize, serde::Deserialize)]
struct TrajectoryRecord {
    step: usize,
    /// `None` for the start, and for a non-finite loss (JSON has no NaN).
    val_loss: Option<f64>,
    params: Vec<f64>,
}

impl std::fmt::Debug for TrajectoryObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrajectoryObserver").field("points", &self.params.len()).field("steps", &self.steps).finish()
    }
}

impl TrajectoryObserver {
    /// A recorder of the parameters of `varmap` (shares the variables, copies nothing yet).
    pub fn new(varmap: &candle_nn::VarMap) -> Self {
        TrajectoryObserver {
            varmap: varmap.clone(),
            params: Vec::new(),
            val_losses: Vec::new(),
            steps: Vec::new(),
            file: None,
        }
    }

    /// A recorder that also appends every point to `file` (JSON lines). With `resume`, the
    /// points already in `file` are read back first (a torn last line is dropped); otherwise an
    /// existing `file` is replaced.
    pub fn persisted(varmap: &candle_nn::VarMap, file: &std::path::Path, resume: bool) -> Result<Self> {
        let mut t = TrajectoryObserver::new(varmap);
        let mut intact = false;
        if resume && file.is_file() {
            let (records, torn) = crate::io::read_jsonl_recovering(file)?;
            intact = torn.is_none();
            for (i, r) in records.into_iter().enumerate() {
                let r: TrajectoryRecord = serde_json::from_value(r).map_err(|source| crate::Error::JsonLine {
                    path: file.to_path_buf(),
                    line: i + 1,
                    source,
                })?;
                if i > 0 {
                    t.val_losses.push(r.val_loss.unwrap_or(f64::NAN));
                    t.steps.push(r.step);
                }
                t.params.push(r.params);
            }
        }
        t.file = Some(file.to_path_buf());
        if !intact {
            t.rewrite()?;
        }
        Ok(t)
    }

    /// Replace the file with the points held now.
    fn rewrite(&self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        crate::io::write_atomic(file, |w| {
            for i in 0..self.params.len() {
                let (step, val_loss) =
                    if i == 0 { (0, None) } else { (self.steps[i - 1], Some(self.val_losses[i - 1])) };
                let r = TrajectoryRecord {
                    step,
                    val_loss: val_loss.filter(|v| v.is_finite()),
                    params: self.params[i].clone(),
                };
                serde_json::to_writer(&mut *w, &r)
                    .map_err(|source| crate::Error::Json { path: file.clone(), source })?;
                std::io::Write::write_all(w, b"\n").map_err(|e| crate::Error::io(file, e))?;
            }
            Ok(())
        })
    }

    fn append_last(&self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let i = self.params.len() - 1;
        let (step, val_loss) = if i == 0 { (0, None) } else { (self.steps[i - 1], Some(self.val_losses[i - 1])) };
        let r = TrajectoryRecord { step, val_loss: val_loss.filter(|v| v.is_finite()), params: self.params[i].clone() };
        JsonlWriter::append(file)?.log(&r)
    }
}

impl Observer for TrajectoryObserver {
    fn on_start(&mut self, e: &StartEvent) -> Result<()> {
        if self.params.is_empty() {
            self.params.push(crate::params::read_params_f64(&self.varmap)?);
            self.append_last()?;
        } else if let Some(keep) = self.steps.iter().position(|&s| s > e.done_steps) {
            // Points after the checkpoint the trainer resumes from: it evaluates them again.
            self.steps.truncate(keep);
            self.val_losses.truncate(keep);
            self.params.truncate(keep + 1);
            self.rewrite()?;
        }
        Ok(())
    }
    fn on_eval(&mut self, e: &EvalEvent) -> Result<()> {
        self.params.push(crate::params::read_params_f64(&self.varmap)?);
        self.val_losses.push(e.val_loss);
        self.steps.push(e.step);
        self.append_last()
    }
}

/// A progress bar on stderr.
#[derive(Debug)]
pub struct ProgressObserver {
    bar: ProgressBar,
    label: String,
}

/// Whether progress bars should be drawn: stderr is a terminal and not `quiet`.
pub fn progress_enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A progress bar for `len` items (hidden unless [`progress_enabled`]).
pub fn progress_bar(len: u64, label: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if progress_enabled(quiet) { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})")
    {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    bar
}

impl ProgressObserver {
    /// A bar labelled `label`; hidden when `quiet` or stderr is not a terminal.
    pub fn new(label: &str, quiet: bool) -> Self {
        ProgressObserver { bar: progress_bar(0, label, quiet), label: label.to_string() }
    }
}

impl Observer for ProgressObserver {
    fn on_start(&mut self, e: &StartEvent) -> Result<()> {
        self.bar.set_length(e.total_steps as u64);
        self.bar.set_position(e.done_steps as u64);
        self.bar.set_prefix(self.label.clone());
        Ok(())
    }
    fn on_step(&mut self, e: &StepEvent) -> Result<()> {
        self.bar.set_position(e.step as u64);
        self.bar.set_message(format!("epoch {} loss {:.4e}", e.epoch, e.loss));
        Ok(())
    }
    fn on_eval(&mut self, e: &EvalEvent) -> Result<()> {
        self.bar.set_message(format!("epoch {} val {:.4e}{}", e.epoch, e.val_loss, if e.is_best { " *" } else { "" }));
        Ok(())
    }
    fn on_end(&mut self) -> Result<()> {
        self.bar.finish_and_clear();
        Ok(())
    }
}

/// Writes `{"event": "step", ...}` every `every` steps and every evaluation to a JSON-lines file.
#[derive(Debug)]
pub struct JsonlObserver {
    w: JsonlWriter,
    every: usize,
    tag: Option<String>,
}

impl JsonlObserver {
    /// Log to `w`, steps every `every` steps (0 = no step records).
    pub fn new(w: JsonlWriter, every: usize) -> Self {
        JsonlObserver { w, every, tag: None }
    }

    /// Add `"tag": tag` to every record (e.g. the model variant).
    #[must_use]
    pub fn with_tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.to_string());
        self
    }

    fn record<T: Serialize>(&mut self, event: &str, e: &T) -> Result<()> {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("event".into(), event.into());
            if let Some(t) = &self.tag {
                o.insert("tag".into(), t.clone().into());
            }
        }
        self.w.log(&v)
    }
}

impl Observer for JsonlObserver {
    fn on_step(&mut self, e: &StepEvent) -> Result<()> {
        if self.every > 0 && e.step.is_multiple_of(self.every) {
            self.record("step", e)?;
        }
        Ok(())
    }
    fn on_eval(&mut self, e: &EvalEvent) -> Result<()> {
        self.record("eval", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_observer_writes_events() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.jsonl");
        let mut o = JsonlObserver::new(JsonlWriter::append(&p).unwrap(), 2).with_tag("plain");
        for s in 1..=4 {
            o.on_step(&StepEvent { epoch: 0, step: s, loss: 1.0 / s as f64, lr: 0.1, grad_norm: 1.0 }).unwrap();
        }
        o.on_eval(&EvalEvent {
            epoch: 0,
            step: 4,
            train_loss: 0.5,
            val_loss: 0.4,
            metrics: BTreeMap::new(),
            is_best: true,
        })
        .unwrap();
        let recs = crate::io::read_jsonl(&p).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0]["step"], 2);
        assert_eq!(recs[2]["event"], "eval");
        assert_eq!(recs[2]["tag"], "plain");
    }

    #[test]
    fn quiet_progress_is_hidden() {
        let b = progress_bar(10, "x", true);
        assert!(b.is_hidden());
        let mut o = ProgressObserver::new("t", true);
        o.on_start(&StartEvent { total_steps: 3, done_steps: 0, epochs: 1 }).unwrap();
        o.on_end().unwrap();
    }
}
