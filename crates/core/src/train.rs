//! The training loop: one [`Trainer`] for every model in gradlab.
//!
//! The trainer knows nothing about models. It gets the model's [`VarMap`], the number of training
//! items, a closure that returns the (scalar) loss of a mini-batch of item indices, and a closure
//! that validates. It owns everything else: shuffling (seeded per epoch), the optimiser and its
//! learning-rate schedule, gradient accumulation, gradient clipping, the NaN/inf guard,
//! validation every epoch or every K steps, early stopping, best/last checkpoints in safetensors,
//! and exact resume. Observers ([`crate::observe`]) watch it.
//!
//! **Exact resume.** A checkpoint holds the weights, the optimiser state and the loop position
//! (epoch, batch within the epoch, optimiser step, early-stopping counters). Batches of an epoch
//! depend only on `(seed, epoch)`, so a run that is stopped and resumed takes exactly the same
//! steps as one that was not, and ends with bit-identical weights on the CPU.

use crate::data::{Sampling, sampled_epoch_batches};
use crate::observe::{EvalEvent, Observer, StartEvent, StepEvent};
use crate::optim::{AnyOptimizer, LrSchedule, OptimizerConfig, StatefulOptimizer};
use crate::params::sorted_vars;
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use candle_nn::VarMap;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Early stopping on the monitored validation metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// Minimum improvement that counts.
    #[serde(default)]
    pub min_delta: f64,
}

/// Which way the monitored metric should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMode {
    /// Lower is better (losses).
    #[default]
    Min,
    /// Higher is better (purity, R²).
    Max,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn val_loss_name() -> String {
    "val_loss".into()
}

/// Training configuration (as written in experiment configs).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training items.
    pub epochs: usize,
    /// Items per mini-batch (per micro-batch when accumulating).
    pub batch_size: usize,
    /// The optimiser.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule over optimiser steps.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Micro-batches whose gradients are summed (then averaged) per optimiser step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Clip the global gradient L2 norm to this value.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// Stop when the monitored metric has not improved for `patience` evaluations.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Validate (and checkpoint) every this many optimiser steps instead of every epoch.
    #[serde(default)]
    pub eval_every_steps: Option<usize>,
    /// Metric that selects the best checkpoint and drives early stopping: `val_loss` or a key
    /// of the validation metrics.
    #[serde(default = "val_loss_name")]
    pub monitor: String,
    /// Whether the monitored metric should be minimised or maximised.
    #[serde(default)]
    pub monitor_mode: MonitorMode,
    /// Shuffle the training items every epoch.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Seed of the shuffling.
    #[serde(default)]
    pub seed: u64,
    /// How an epoch draws its items when `shuffle` is on: a permutation (default) or `n` draws
    /// with replacement.
    #[serde(default)]
    pub sampling: Sampling,
    /// Stop after this many optimiser steps in all (a budget smaller than `epochs` gives); the
    /// last step is validated and checkpointed.
    #[serde(default)]
    pub max_steps: Option<usize>,
}

impl TrainConfig {
    /// A configuration with the given epochs and batch size and defaults elsewhere.
    pub fn new(epochs: usize, batch_size: usize) -> Self {
        TrainConfig {
            epochs,
            batch_size,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::Constant,
            grad_accum: 1,
            clip_grad_norm: None,
            early_stopping: None,
            eval_every_steps: None,
            monitor: val_loss_name(),
            monitor_mode: MonitorMode::Min,
            shuffle: true,
            seed: 0,
            sampling: Sampling::Permutation,
            max_steps: None,
        }
    }

    /// Check the configuration.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid("train.epochs", 0, "at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("train.batch_size", 0, "at least 1"));
        }
        if self.grad_accum == 0 {
            return Err(Error::invalid("train.grad_accum", 0, "at least 1"));
        }
        if let Some(c) = self.clip_grad_norm
            && !(c > 0.0 && c.is_finite())
        {
            return Err(Error::invalid("train.clip_grad_norm", c, "a finite number > 0"));
        }
        if self.max_steps == Some(0) {
            return Err(Error::invalid("train.max_steps", 0, "at least 1 (or absent for `epochs` epochs)"));
        }
        if self.eval_every_steps == Some(0) {
            return Err(Error::invalid("train.eval_every_steps", 0, "at least 1 (or absent for every epoch)"));
        }
        self.optimizer.validate()?;
        self.schedule.validate()
    }
}

/// What a validation returns: the validation loss and any extra metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Validation {
    pub loss: f64,
    pub metrics: BTreeMap<String, f64>,
}

impl Validation {
    /// A validation with only a loss.
    pub fn loss(loss: f64) -> Self {
        Validation { loss, metrics: BTreeMap::new() }
    }
}

/// One evaluation in the history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalRecord {
    /// The epoch (0-based) this evaluation belongs to: the one just finished for end-of-epoch
    /// evaluations, the current one for step-based evaluations.
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub metrics: BTreeMap<String, f64>,
}

/// The loop's position and counters, saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Epoch to continue in.
    pub epoch: usize,
    /// Batch of that epoch to continue at.
    pub batch: usize,
    /// Optimiser steps done.
    pub step: usize,
    /// Best monitored value so far.
    pub best: Option<f64>,
    /// Step of the best evaluation.
    pub best_step: Option<usize>,
    /// Evaluations since the last improvement.
    pub bad_evals: usize,
    /// Whether early stopping has triggered.
    pub stopped_early: bool,
    /// All evaluations so far.
    pub history: Vec<EvalRecord>,
    /// The configuration that produced this state (checked on resume).
    pub config: TrainConfig,
}

impl TrainState {
    /// Whether the training that saved this state ran to its end: early stopping triggered,
    /// `max_steps` reached, or its last epoch begun (a run that `max_steps` did not limit; the
    /// state saved in the last epoch may predate its last steps, so this never refuses a
    /// finished run but may pass one stopped inside its last epoch).
    pub fn finished(&self) -> bool {
        self.stopped_early
            || self.config.max_steps.is_some_and(|m| self.step >= m)
            || self.epoch + 1 >= self.config.epochs
    }
}

/// What [`Trainer::fit`] returns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainReport {
    pub history: Vec<EvalRecord>,
    pub best: Option<f64>,
    pub best_step: Option<usize>,
    pub steps: usize,
    pub epochs_run: usize,
    pub stopped_early: bool,
    /// Whether the loop returned because of `stop_after_steps` (an interruption), not because it
    /// finished.
    pub interrupted: bool,
    /// Path of the best checkpoint, if checkpointing.
    pub best_checkpoint: Option<PathBuf>,
}

/// The training loop. See the module docs.
pub struct Trainer<'a> {
    cfg: TrainConfig,
    varmap: &'a VarMap,
    observers: Vec<Box<dyn Observer + 'a>>,
    checkpoint_dir: Option<PathBuf>,
    resume: bool,
    stop_after_steps: Option<usize>,
    restore_best: bool,
    best_in_memory: Option<Vec<Tensor>>,
    lookahead: Option<Lookahead<'a>>,
}

/// A prefetch hint: how many micro-batches ahead, and whom to tell.
type Lookahead<'a> = (usize, Box<dyn FnMut(&[usize]) + 'a>);

const BEST: &str = "best.safetensors";
const LAST: &str = "last.safetensors";
const OPT: &str = "optimizer.safetensors";
const STATE: &str = "train_state.json";

impl<'a> Trainer<'a> {
    /// A trainer for the parameters in `varmap`.
    pub fn new(cfg: TrainConfig, varmap: &'a VarMap) -> Result<Self> {
        cfg.validate()?;
        Ok(Trainer {
            cfg,
            varmap,
            observers: Vec::new(),
            checkpoint_dir: None,
            resume: false,
            stop_after_steps: None,
            restore_best: false,
            best_in_memory: None,
            lookahead: None,
        })
    }

    /// Before each micro-batch, call `hint` with the items of `batches` micro-batches of the
    /// epoch starting with this one (fewer at its end), so that a data source can prepare the
    /// next ones while this one is computed, and drop what is no longer named. A hint only: the
    /// loss closure still asks for every item, and nothing changes if the hint is ignored.
    pub fn lookahead(mut self, batches: usize, hint: impl FnMut(&[usize]) + 'a) -> Self {
        self.lookahead = (batches > 0).then(|| (batches, Box::new(hint) as Box<dyn FnMut(&[usize]) + 'a>));
        self
    }

    /// Add an observer.
    #[must_use]
    pub fn observe(mut self, o: impl Observer + 'a) -> Self {
        self.observers.push(Box::new(o));
        self
    }

    /// Write `best.safetensors`, `last.safetensors`, `optimizer.safetensors` and
    /// `train_state.json` into `dir` at every evaluation.
    #[must_use]
    pub fn checkpoint_to(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Continue from the last checkpoint in the checkpoint directory, if there is one.
    #[must_use]
    pub fn resume(mut self, yes: bool) -> Self {
        self.resume = yes;
        self
    }

    /// Return (as if interrupted) once this many optimiser steps are done in total. For tests of
    /// resume and for time-boxed runs.
    #[must_use]
    pub fn stop_after_steps(mut self, steps: usize) -> Self {
        self.stop_after_steps = Some(steps);
        self
    }

    /// Leave the best weights (by the monitored metric) in the model when [`Trainer::fit`]
    /// returns, instead of the last ones: read back from `best.safetensors` when checkpointing,
    /// else from a copy kept in memory at each improvement.
    #[must_use]
    pub fn restore_best(mut self, yes: bool) -> Self {
        self.restore_best = yes;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Train. `train_loss(batch)` returns the scalar loss of a mini-batch of training-item
    /// indices (mean over the batch); `validate()` evaluates the current parameters.
    ///
    /// The closures may fail with the caller's own error type `E` (any type a core [`Error`]
    /// converts into); such an error stops training and is returned unchanged. When the closures
    /// end in `Ok(…?)` the type is not inferable: name it, `fit::<MyError, _, _>(…)`.
    pub fn fit<E, L, V>(
        &mut self,
        n_train: usize,
        mut train_loss: L,
        mut validate: V,
    ) -> std::result::Result<TrainReport, E>
    where
        E: From<Error>,
        L: FnMut(&[usize]) -> std::result::Result<Tensor, E>,
        V: FnMut() -> std::result::Result<Validation, E>,
    {
        // The loop works in core errors; a caller's error is parked here and handed back whole.
        let parked: std::cell::RefCell<Option<E>> = std::cell::RefCell::new(None);
        let park = |e: E| {
            *parked.borrow_mut() = Some(e);
            Error::invalid("training callback", "failed", "see the caller's error")
        };
        let result = self.fit_core(n_train, |idx| train_loss(idx).map_err(park), || validate().map_err(park));
        if let Some(e) = parked.into_inner() {
            return Err(e);
        }
        let report = result?;
        if self.restore_best {
            if let Some(best) = &report.best_checkpoint {
                load_weights(self.varmap, best)?;
            } else if let Some(saved) = self.best_in_memory.take() {
                for ((_, v), t) in sorted_vars(self.varmap).iter().zip(saved) {
                    v.set(&t).map_err(Error::from)?;
                }
            }
        }
        Ok(report)
    }

    fn fit_core<L, V>(&mut self, n_train: usize, mut train_loss: L, mut validate: V) -> Result<TrainReport>
    where
        L: FnMut(&[usize]) -> Result<Tensor>,
        V: FnMut() -> Result<Validation>,
    {
        if n_train == 0 {
            return Err(Error::invalid("training items", 0, "at least 1"));
        }
        let cfg = self.cfg.clone();
        let named = sorted_vars(self.varmap);
        let vars: Vec<_> = named.iter().map(|(_, v)| v.clone()).collect();
        let mut opt = cfg.optimizer.build(vars.clone())?;
        let batches_per_epoch = n_train.div_ceil(cfg.batch_size);
        let steps_per_epoch = batches_per_epoch.div_ceil(cfg.grad_accum);
        let total_steps = cfg.max_steps.map_or(steps_per_epoch * cfg.epochs, |m| m.min(steps_per_epoch * cfg.epochs));

        let mut st = TrainState {
            epoch: 0,
            batch: 0,
            step: 0,
            best: None,
            best_step: None,
            bad_evals: 0,
            stopped_early: false,
            history: Vec::new(),
            config: cfg.clone(),
        };
        if self.resume
            && let Some(dir) = &self.checkpoint_dir
            && dir.join(STATE).exists()
        {
            st = self.load_checkpoint(dir, &mut opt)?;
        }
        for o in &mut self.observers {
            o.on_start(&StartEvent { total_steps, done_steps: st.step, epochs: cfg.epochs })?;
        }

        let mut interrupted = false;
        let mut since_eval_loss = 0.0;
        let mut since_eval_n = 0usize;
        'epochs: while st.epoch < cfg.epochs && !st.stopped_early && st.step < total_steps {
            let sampling = if cfg.shuffle { cfg.sampling } else { Sampling::InOrder };
            let batches = sampled_epoch_batches(n_train, cfg.batch_size, sampling, cfg.seed, st.epoch)?;
            let mut acc: Option<GradStore> = None;
            let mut k = 0usize;
            let mut step_loss = 0.0;
            while st.batch < batches.len() {
                let b = st.batch;
                if let Some((ahead, hint)) = &mut self.lookahead {
                    hint(&batches[b..(b + *ahead).min(batches.len())].concat());
                }
                let loss = train_loss(&batches[b])?;
                let lv = loss.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
                if !lv.is_finite() {
                    return Err(Error::NonFiniteLoss { epoch: st.epoch, step: st.step, value: lv });
                }
                let mut g = loss.backward()?;
                // Keep the parameters' gradients only: a backward pass's store also holds the
                // gradient of every intermediate tensor, which would pile up over the
                // accumulated micro-batches (GBs per step for the tracking GNN).
                let a = acc.get_or_insert_with(GradStore::default);
                for v in &vars {
                    if let Some(t) = g.remove(v.as_tensor()) {
                        let sum = match a.remove(v.as_tensor()) {
                            Some(prev) => (prev + t)?.detach(),
                            None => t,
                        };
                        a.insert(v.as_tensor(), sum);
                    }
                }
                drop(g);
                k += 1;
                step_loss += lv;
                st.batch += 1;
                if k == cfg.grad_accum || st.batch == batches.len() {
                    let mut grads = acc.take().expect("at least one micro-batch");
                    if k > 1 {
                        for v in &vars {
                            if let Some(t) = grads.remove(v.as_tensor()) {
                                grads.insert(v.as_tensor(), (t / k as f64)?);
                            }
                        }
                    }
                    let norm = grad_norm(&grads, &vars)?;
                    if !norm.is_finite() {
                        return Err(Error::NonFiniteLoss { epoch: st.epoch, step: st.step, value: norm });
                    }
                    if let Some(max) = cfg.clip_grad_norm
                        && norm > max
                    {
                        let s = max / (norm + 1e-12);
                        for v in &vars {
                            if let Some(t) = grads.remove(v.as_tensor()) {
                                grads.insert(v.as_tensor(), (t * s)?);
                            }
                        }
                    }
                    let lr = cfg.schedule.lr_at(cfg.optimizer.lr(), st.step, total_steps);
                    opt.set_learning_rate(lr);
                    opt.step(&grads)?;
                    st.step += 1;
                    let mean_loss = step_loss / k as f64;
                    since_eval_loss += mean_loss;
                    since_eval_n += 1;
                    for o in &mut self.observers {
                        o.on_step(&StepEvent { epoch: st.epoch, step: st.step, loss: mean_loss, lr, grad_norm: norm })?;
                    }
                    k = 0;
                    step_loss = 0.0;
                    let eval_now = matches!(cfg.eval_every_steps, Some(e) if st.step.is_multiple_of(e));
                    if eval_now {
                        let tl = since_eval_loss / since_eval_n.max(1) as f64;
                        since_eval_loss = 0.0;
                        since_eval_n = 0;
                        let ep = st.epoch;
                        self.evaluate(&mut st, &opt, tl, ep, &mut validate)?;
                        if st.stopped_early {
                            break 'epochs;
                        }
                    }
                    if cfg.max_steps.is_some_and(|m| st.step >= m) {
                        if !eval_now {
                            let tl = since_eval_loss / since_eval_n.max(1) as f64;
                            let ep = st.epoch;
                            self.evaluate(&mut st, &opt, tl, ep, &mut validate)?;
                        }
                        break 'epochs;
                    }
                    if self.stop_after_steps.is_some_and(|s| st.step >= s) {
                        if !eval_now {
                            // Save the position so that resume continues from here.
                            self.save_last(&st, &opt)?;
                        }
                        interrupted = true;
                        break 'epochs;
                    }
                }
            }
            st.epoch += 1;
            st.batch = 0;
            if cfg.eval_every_steps.is_none() {
                let tl = since_eval_loss / since_eval_n.max(1) as f64;
                since_eval_loss = 0.0;
                since_eval_n = 0;
                let finished = st.epoch - 1;
                self.evaluate(&mut st, &opt, tl, finished, &mut validate)?;
            }
        }
        for o in &mut self.observers {
            o.on_end()?;
        }
        Ok(TrainReport {
            history: st.history.clone(),
            best: st.best,
            best_step: st.best_step,
            steps: st.step,
            epochs_run: st.epoch,
            stopped_early: st.stopped_early,
            interrupted,
            best_checkpoint: self.checkpoint_dir.as_ref().map(|d| d.join(BEST)).filter(|p| p.exists()),
        })
    }

    fn evaluate<V>(
        &mut self,
        st: &mut TrainState,
        opt: &AnyOptimizer,
        train_loss: f64,
        epoch: usize,
        validate: &mut V,
    ) -> Result<()>
    where
        V: FnMut() -> Result<Validation>,
    {
        let v = validate()?;
        let monitored = if self.cfg.monitor == "val_loss" {
            v.loss
        } else {
            *v.metrics.get(&self.cfg.monitor).ok_or_else(|| {
                Error::invalid(
                    "train.monitor",
                    &self.cfg.monitor,
                    format!("`val_loss` or one of the validation metrics {:?}", v.metrics.keys().collect::<Vec<_>>()),
                )
            })?
        };
        let min_delta = self.cfg.early_stopping.as_ref().map_or(0.0, |e| e.min_delta);
        let improved = match st.best {
            None => monitored.is_finite(),
            Some(b) => match self.cfg.monitor_mode {
                MonitorMode::Min => monitored < b - min_delta,
                MonitorMode::Max => monitored > b + min_delta,
            },
        };
        if improved {
            st.best = Some(monitored);
            st.best_step = Some(st.step);
            st.bad_evals = 0;
        } else {
            st.bad_evals += 1;
        }
        if let Some(es) = &self.cfg.early_stopping
            && st.bad_evals >= es.patience.max(1)
        {
            st.stopped_early = true;
        }
        st.history.push(EvalRecord { epoch, step: st.step, train_loss, val_loss: v.loss, metrics: v.metrics.clone() });
        if improved {
            if let Some(dir) = &self.checkpoint_dir {
                let p = dir.join(BEST);
                save_atomic(self.varmap, &p)?;
            } else if self.restore_best {
                let copies = sorted_vars(self.varmap)
                    .iter()
                    .map(|(_, v)| v.as_tensor().copy())
                    .collect::<candle_core::Result<Vec<_>>>()?;
                self.best_in_memory = Some(copies);
            }
        }
        // Observers first, the position last: a run killed in between resumes from the previous
        // checkpoint and evaluates this point again, so an observer that keeps what it saw (a
        // persisted trajectory) never misses a point.
        for o in &mut self.observers {
            o.on_eval(&EvalEvent {
                epoch,
                step: st.step,
                train_loss,
                val_loss: v.loss,
                metrics: v.metrics.clone(),
                is_best: improved,
            })?;
        }
        self.save_last(st, opt)
    }

    fn save_last(&self, st: &TrainState, opt: &AnyOptimizer) -> Result<()> {
        let Some(dir) = &self.checkpoint_dir else { return Ok(()) };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        save_atomic(self.varmap, &dir.join(LAST))?;
        let (tensors, t) = opt.state_tensors()?;
        let map: HashMap<String, Tensor> = tensors.into_iter().collect();
        save_tensors_atomic(&map, &dir.join(OPT))?;
        crate::io::write_json(&dir.join(STATE), &serde_json::json!({ "state": st, "optimizer_step": t }))
    }

    fn load_checkpoint(&self, dir: &Path, opt: &mut AnyOptimizer) -> Result<TrainState> {
        let saved: SavedState = crate::io::read_json(&dir.join(STATE))?;
        if saved.state.config != self.cfg {
            return Err(Error::Checkpoint {
                path: dir.join(STATE),
                message: "the checkpoint was written with a different training configuration; \
                          resume with the same configuration or start a fresh run"
                    .into(),
            });
        }
        load_weights(self.varmap, &dir.join(LAST))?;
        let p = dir.join(OPT);
        let dev = sorted_vars(self.varmap).first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let t = candle_core::safetensors::load(&p, &dev)
            .map_err(|e| Error::Checkpoint { path: p, message: e.to_string() })?;
        opt.load_state(&t, saved.optimizer_step)?;
        Ok(saved.state)
    }
}

#[derive(serde::Deserialize)]
struct SavedState {
    state: TrainState,
    optimizer_step: usize,
}

/// The loop's state saved in a checkpoint directory (`train_state.json`, written by
/// [`Trainer::checkpoint_to`] at every evaluation): the best monitored value and its step, the
/// evaluations so far, the configuration.
pub fn read_train_state(dir: &Path) -> Result<TrainState> {
    let saved: SavedState = crate::io::read_json(&dir.join(STATE))?;
    Ok(saved.state)
}

/// Save every variable of `varmap` as safetensors at `path`, atomically (a temporary file beside
/// it, renamed over it), creating the directory if needed.
pub fn save_atomic(varmap: &VarMap, path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> =
        sorted_vars(varmap).into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    save_tensors_atomic(&map, path)
}

fn save_tensors_atomic(map: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let ck = |m: String| Error::Checkpoint { path: path.to_path_buf(), message: m };
    let tmp = path.with_extension(format!("safetensors.tmp{}", std::process::id()));
    candle_core::safetensors::save(map, &tmp).map_err(|e| ck(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Load weights saved with `VarMap::save` (or a `best.safetensors` checkpoint) into `varmap`,
/// checking that every variable is present with the right shape (see [`crate::params::load_named`]).
pub fn load_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let ck = |m: String| Error::Checkpoint { path: path.to_path_buf(), message: m };
    if !path.exists() {
        return Err(ck("file not found".into()));
    }
    let vars = sorted_vars(varmap);
    let dev = vars.first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
    let t = candle_core::safetensors::load(path, &dev).map_err(|e| ck(e.to_string()))?;
    crate::params::load_named(varmap, &t).map_err(|e| match e {
        e @ Error::ShapeMismatch { .. } => e,
        other => ck(other.to_string()),
    })
}

/// Global L2 norm of the gradients of `vars`.
pub fn grad_norm(grads: &GradStore, vars: &[candle_core::Var]) -> Result<f64> {
    let mut s = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            s += g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
    }
    Ok(s.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Table, array_to_tensor};
    use crate::params::read_params_f64;
    use candle_core::{Device, Module};
    use candle_nn::VarBuilder;
    use ndarray::Array2;

    fn data(n: usize, seed: u64) -> Table {
        let mut r = crate::rng::rng(seed);
        let x = crate::rng::normal_vec(&mut r, n * 2, 0.0, 1.0);
        let x = Array2::from_shape_vec((n, 2), x.iter().map(|&v| v as f32).collect()).unwrap();
        let y = x.map_axis(ndarray::Axis(1), |r| 2.0 * r[0] - r[1] + 0.5).insert_axis(ndarray::Axis(1));
        Table::new(x, y).unwrap()
    }

    fn run(cfg: TrainConfig, dir: Option<&Path>, stop: Option<usize>, resume: bool) -> (Vec<f64>, TrainReport) {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let lin = candle_nn::linear(2, 1, vb.pp("lin")).unwrap();
        // Deterministic initialisation independent of candle's RNG.
        let init: Vec<f64> = vec![0.1, -0.2, 0.3];
        crate::params::write_params_f64(&vm, &init).unwrap();
        let mut tr = Trainer::new(cfg, &vm).unwrap();
        if let Some(d) = dir {
            tr = tr.checkpoint_to(d).resume(resume);
        }
        if let Some(s) = stop {
            tr = tr.stop_after_steps(s);
        }
        let rep = fit_linear(tr, &lin);
        (read_params_f64(&vm).unwrap(), rep)
    }

    /// Fits `lin` to the linear map of [`data`] (64 training rows, 32 validation rows).
    fn fit_linear(mut tr: Trainer<'_>, lin: &candle_nn::Linear) -> TrainReport {
        let t = data(64, 1);
        let v = data(32, 2);
        tr.fit::<Error, _, _>(
            t.len(),
            |idx| {
                let (x, y) = t.batch(idx, &Device::Cpu)?;
                Ok(lin.forward(&x)?.sub(&y)?.sqr()?.mean_all()?)
            },
            || {
                let x = array_to_tensor(&v.x.view(), &Device::Cpu)?;
                let y = array_to_tensor(&v.y.view(), &Device::Cpu)?;
                let l = lin.forward(&x)?.sub(&y)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
                Ok(Validation::loss(l))
            },
        )
        .unwrap()
    }

    fn cfg() -> TrainConfig {
        let mut c = TrainConfig::new(6, 8);
        c.optimizer =
            OptimizerConfig::Rmsprop(crate::optim::RmsPropParams { lr: 0.01, momentum: 0.5, ..Default::default() });
        c.grad_accum = 3;
        c.clip_grad_norm = Some(5.0);
        c.schedule = LrSchedule::Cosine { warmup: 2, min_lr: 1e-4 };
        c.seed = 11;
        c
    }

    #[test]
    fn learns_a_linear_map() {
        let mut c = TrainConfig::new(40, 8);
        c.optimizer = OptimizerConfig::Adamw(crate::optim::AdamWParams { lr: 0.05, ..Default::default() });
        let (p, rep) = run(c, None, None, false);
        // params sorted: lin.bias, lin.weight[0], lin.weight[1] → 0.5, 2, −1
        assert!((p[0] - 0.5).abs() < 0.02 && (p[1] - 2.0).abs() < 0.02 && (p[2] + 1.0).abs() < 0.02, "{p:?}");
        assert!(rep.best.unwrap() < 1e-3);
        assert_eq!(rep.history.len(), 40);
    }

    /// The lookahead hint names, before each micro-batch, exactly the items of that micro-batch
    /// and the next ones of the epoch (what the loss closure asks for next), and does not change
    /// the result.
    #[test]
    fn lookahead_names_the_next_micro_batches_and_changes_nothing() {
        let mut c = cfg();
        c.epochs = 2;
        let (plain, _) = run(c.clone(), None, None, false);
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let lin = candle_nn::linear(2, 1, vb.pp("lin")).unwrap();
        crate::params::write_params_f64(&vm, &[0.1, -0.2, 0.3]).unwrap();
        let hints = std::cell::RefCell::new(Vec::<Vec<usize>>::new());
        let asked = std::cell::RefCell::new(Vec::<Vec<usize>>::new());
        let t = data(64, 1);
        Trainer::new(c, &vm)
            .unwrap()
            .lookahead(3, |next| hints.borrow_mut().push(next.to_vec()))
            .fit::<Error, _, _>(
                t.len(),
                |idx| {
                    asked.borrow_mut().push(idx.to_vec());
                    let (x, y) = t.batch(idx, &Device::Cpu)?;
                    Ok(lin.forward(&x)?.sub(&y)?.sqr()?.mean_all()?)
                },
                || Ok(Validation::loss(0.0)),
            )
            .unwrap();
        assert_eq!(read_params_f64(&vm).unwrap(), plain);
        let (asked, hints) = (asked.into_inner(), hints.into_inner());
        // 64 items in batches of 8: 8 micro-batches per epoch; the hint does not reach into the
        // next epoch (its order is not drawn yet).
        assert_eq!(asked.len(), 16);
        assert_eq!(hints.len(), 16);
        let mut h = hints.iter();
        for epoch in asked.chunks(8) {
            for b in 0..8 {
                let want: Vec<usize> = epoch[b..(b + 3).min(8)].concat();
                assert_eq!(h.next().unwrap(), &want);
            }
        }
    }

    /// Validation loss that gets worse after the third evaluation: the best weights are those of
    /// evaluation 3, whatever happens later.
    fn restore_case(dir: Option<&Path>) -> (Vec<f64>, Vec<Vec<f64>>, TrainReport) {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let lin = candle_nn::linear(2, 1, vb.pp("lin")).unwrap();
        crate::params::write_params_f64(&vm, &[0.1, -0.2, 0.3]).unwrap();
        let t = data(64, 1);
        let mut traj = crate::observe::TrajectoryObserver::new(&vm);
        let mut evals = 0;
        let rep = {
            let mut tr = Trainer::new(TrainConfig::new(6, 16), &vm).unwrap().restore_best(true).observe(&mut traj);
            if let Some(d) = dir {
                tr = tr.checkpoint_to(d);
            }
            tr.fit::<Error, _, _>(
                t.len(),
                |idx| {
                    let (x, y) = t.batch(idx, &Device::Cpu)?;
                    Ok(lin.forward(&x)?.sub(&y)?.sqr()?.mean_all()?)
                },
                || {
                    evals += 1;
                    Ok(Validation::loss((evals as f64 - 3.0).abs()))
                },
            )
            .unwrap()
        };
        assert_eq!(traj.params.len(), 7, "start + 6 evaluations");
        assert_eq!(traj.val_losses, vec![2.0, 1.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(traj.steps, vec![4, 8, 12, 16, 20, 24]);
        (read_params_f64(&vm).unwrap(), traj.params, rep)
    }

    /// A persisted trajectory of a run stopped mid-way (with a point recorded after the last
    /// checkpoint, as a kill between the observers and the checkpoint leaves it) and resumed is
    /// the trajectory of an uninterrupted run.
    #[test]
    fn a_persisted_trajectory_survives_an_interruption() {
        fn go(dir: &Path, stop: Option<usize>, resume: bool) -> (Vec<Vec<f64>>, Vec<f64>, Vec<usize>) {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
            let lin = candle_nn::linear(2, 1, vb.pp("lin")).unwrap();
            crate::params::write_params_f64(&vm, &[0.1, -0.2, 0.3]).unwrap();
            let mut traj =
                crate::observe::TrajectoryObserver::persisted(&vm, &dir.join("trajectory.jsonl"), resume).unwrap();
            {
                let mut tr = Trainer::new(cfg(), &vm).unwrap().checkpoint_to(dir).resume(resume).observe(&mut traj);
                if let Some(s) = stop {
                    tr = tr.stop_after_steps(s);
                }
                fit_linear(tr, &lin);
            }
            let again =
                crate::observe::TrajectoryObserver::persisted(&vm, &dir.join("trajectory.jsonl"), true).unwrap();
            assert_eq!(again.params, traj.params, "the file holds what the observer holds");
            (traj.params, traj.val_losses, traj.steps)
        }
        let full = tempfile::tempdir().unwrap();
        let whole = go(full.path(), None, false);
        assert_eq!(whole.2, vec![3, 6, 9, 12, 15, 18]);
        let part = tempfile::tempdir().unwrap();
        let first = go(part.path(), Some(7), false);
        assert_eq!(first.2, vec![3, 6]);
        // A point after the checkpoint (step 7): recorded, then killed before the trainer saved.
        let mut w = crate::io::JsonlWriter::append(part.path().join("trajectory.jsonl")).unwrap();
        w.log(&serde_json::json!({"step": 9, "val_loss": 123.0, "params": [9.0, 9.0, 9.0]})).unwrap();
        drop(w);
        let resumed = go(part.path(), None, true);
        assert_eq!(resumed, whole);
    }

    #[test]
    fn restore_best_and_trajectory() {
        let (p, traj, rep) = restore_case(None);
        assert_eq!(rep.best_step, Some(12));
        assert_eq!(p, traj[3], "the weights of the third evaluation are restored from memory");
        assert_ne!(p, traj[6]);
        let tmp = tempfile::tempdir().unwrap();
        let (p2, traj2, _) = restore_case(Some(tmp.path()));
        assert_eq!(traj2, traj);
        assert_eq!(p2, traj2[3], "the weights of the third evaluation are restored from best.safetensors");
    }

    #[test]
    fn a_callers_error_comes_back_unchanged() {
        #[derive(Debug)]
        enum Mine {
            Core(Error),
            Bad(usize),
        }
        impl From<Error> for Mine {
            fn from(e: Error) -> Self {
                Mine::Core(e)
            }
        }
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let _ = candle_nn::linear(2, 1, vb.pp("lin")).unwrap();
        let mut tr = Trainer::new(TrainConfig::new(1, 4), &vm).unwrap();
        let e = tr.fit(8, |idx| Err(Mine::Bad(idx.len())), || Ok(Validation::loss(0.0))).unwrap_err();
        assert!(matches!(e, Mine::Bad(4)), "{e:?}");
        let mut tr = Trainer::new(TrainConfig::new(1, 4), &vm).unwrap();
        let e = tr.fit(0, |_| Err(Mine::Bad(0)), || Ok(Validation::loss(0.0))).unwrap_err();
        assert!(matches!(e, Mine::Core(Error::Invalid { .. })), "{e:?}");
    }

    #[test]
    fn max_steps_stops_mid_epoch_validates_and_resumes_to_the_same_end() {
        // cfg(): 8 batches per epoch, grad_accum 3 → 3 steps per epoch, validated every epoch.
        let mut c = cfg();
        c.max_steps = Some(7);
        let (p, rep) = run(c.clone(), None, None, false);
        assert_eq!(rep.steps, 7);
        let steps: Vec<usize> = rep.history.iter().map(|h| h.step).collect();
        assert_eq!(steps, vec![3, 6, 7], "every epoch end, and the last step");
        // Stopped at step 4 and resumed: the same weights at step 7; resuming again does nothing.
        let tmp = tempfile::tempdir().unwrap();
        let _ = run(c.clone(), Some(tmp.path()), Some(4), false);
        assert!(!read_train_state(tmp.path()).unwrap().finished(), "stopped at step 4 of 7");
        let (p2, rep2) = run(c.clone(), Some(tmp.path()), None, true);
        assert_eq!((p2, rep2.steps), (p.clone(), 7));
        assert!(read_train_state(tmp.path()).unwrap().finished());
        let (p3, rep3) = run(c.clone(), Some(tmp.path()), None, true);
        assert_eq!((p3, rep3.steps), (p, 7));
        c.max_steps = Some(0);
        assert!(c.validate().is_err());
    }

    #[test]
    fn resume_is_exact() {
        let full = run(cfg(), None, None, false).0;
        let tmp = tempfile::tempdir().unwrap();
        // Interrupt mid-epoch (8 batches/epoch, 3 per step → 3 steps/epoch; step 4 is in epoch 1).
        let (_, r1) = run(cfg(), Some(tmp.path()), Some(4), false);
        assert!(r1.interrupted);
        let (resumed, r2) = run(cfg(), Some(tmp.path()), None, true);
        assert!(!r2.interrupted);
        assert_eq!(r2.steps, 18);
        assert_eq!(full, resumed, "resumed run must end with identical weights");
        assert!(tmp.path().join(BEST).exists());
        // Resuming with another configuration is refused.
        let mut other = cfg();
        other.seed = 12;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let _ = candle_nn::linear(2, 1, vb.pp("lin")).unwrap();
        let mut tr = Trainer::new(other, &vm).unwrap().checkpoint_to(tmp.path()).resume(true);
        let e = tr.fit::<Error, _, _>(4, |_| unreachable!(), || unreachable!()).unwrap_err();
        assert!(matches!(e, Error::Checkpoint { .. }), "{e}");
    }

    #[test]
    fn nan_loss_is_a_typed_error() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let lin = candle_nn::linear(1, 1, vb.pp("l")).unwrap();
        let mut tr = Trainer::new(TrainConfig::new(3, 2), &vm).unwrap();
        let mut calls = 0;
        let e = tr
            .fit::<Error, _, _>(
                4,
                |_| {
                    calls += 1;
                    let x = Tensor::new(&[[1.0f32]], &Device::Cpu)?;
                    let y = lin.forward(&x)?.sum_all()?;
                    if calls == 3 { Ok(y.affine(f64::NAN, 0.0)?) } else { Ok(y) }
                },
                || Ok(Validation::loss(0.0)),
            )
            .unwrap_err();
        match e {
            Error::NonFiniteLoss { epoch, step, value } => {
                assert_eq!((epoch, step), (1, 2));
                assert!(value.is_nan());
            }
            other => panic!("wrong error {other}"),
        }
    }

    #[test]
    fn early_stopping_and_monitor() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let lin = candle_nn::linear(1, 1, vb.pp("l")).unwrap();
        let mut c = TrainConfig::new(50, 2);
        c.early_stopping = Some(EarlyStopping { patience: 3, min_delta: 0.0 });
        c.monitor = "score".into();
        c.monitor_mode = MonitorMode::Max;
        let scores = [0.1, 0.5, 0.4, 0.45, 0.3, 0.9];
        let mut i = 0;
        let rep = Trainer::new(c, &vm)
            .unwrap()
            .fit::<Error, _, _>(
                2,
                |_| Ok(lin.forward(&Tensor::new(&[[1.0f32]], &Device::Cpu)?)?.sum_all()?),
                || {
                    let mut v = Validation::loss(1.0);
                    v.metrics.insert("score".into(), scores[i.min(5)]);
                    i += 1;
                    Ok(v)
                },
            )
            .unwrap();
        assert!(rep.stopped_early);
        assert_eq!(rep.history.len(), 5);
        assert_eq!(rep.best, Some(0.5));
        assert_eq!(rep.best_step, Some(2));
    }

    #[test]
    fn gradient_accumulation_equals_large_batch() {
        // Accumulating 4 micro-batches of 2 (equal sizes) equals one batch of 8 under SGD.
        let go = |bs: usize, acc: usize| {
            let mut c = TrainConfig::new(2, bs);
            c.grad_accum = acc;
            c.shuffle = false;
            c.optimizer = OptimizerConfig::Sgd(crate::optim::SgdParams { lr: 0.1, ..Default::default() });
            run(c, None, None, false).0
        };
        let a = go(8, 1);
        let b = go(2, 4);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{a:?} {b:?}");
        }
    }

    #[test]
    fn invalid_config_is_rejected() {
        let vm = VarMap::new();
        let mut c = TrainConfig::new(1, 1);
        c.grad_accum = 0;
        assert!(Trainer::new(c, &vm).is_err());
        let j = serde_json::json!({"epochs": 1, "batch_size": 4, "optimiser": {}});
        let e = crate::experiment::from_value::<TrainConfig>(&j, "x.json").unwrap_err().to_string();
        assert!(e.contains("optimiser"), "{e}");
    }
}
