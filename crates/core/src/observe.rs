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
#[derive(Clone)]
pub struct TrajectoryObserver {
    varmap: candle_nn::VarMap,
    /// Flat parameters: `params[0]` at the start, then one per evaluation.
    pub params: Vec<Vec<f64>>,
    /// Validation loss of each evaluation (`params[i + 1]`).
    pub val_losses: Vec<f64>,
    /// Optimiser step of each evaluation.
    pub steps: Vec<usize>,
}

impl std::fmt::Debug for TrajectoryObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrajectoryObserver").field("points", &self.params.len()).field("steps", &self.steps).finish()
    }
}

impl TrajectoryObserver {
    /// A recorder of the parameters of `varmap` (shares the variables, copies nothing yet).
    pub fn new(varmap: &candle_nn::VarMap) -> Self {
        TrajectoryObserver { varmap: varmap.clone(), params: Vec::new(), val_losses: Vec::new(), steps: Vec::new() }
    }
}

impl Observer for TrajectoryObserver {
    fn on_start(&mut self, _e: &StartEvent) -> Result<()> {
        if self.params.is_empty() {
            self.params.push(crate::params::read_params_f64(&self.varmap)?);
        }
        Ok(())
    }
    fn on_eval(&mut self, e: &EvalEvent) -> Result<()> {
        self.params.push(crate::params::read_params_f64(&self.varmap)?);
        self.val_losses.push(e.val_loss);
        self.steps.push(e.step);
        Ok(())
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
        if self.every > 0 && e.step % self.every == 0 {
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
