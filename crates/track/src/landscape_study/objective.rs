//! The tracking network as a [`gradlab_landscape::Objective`] on fixed frames.
//!
//! [`TrackObjective`] evaluates one [`Measure`] of an interaction network at a flat parameter
//! vector (the order of `gradlab_core::params`) on a fixed set of frames, in inference mode
//! (BatchNorm uses its running statistics). It is a [`VarMapObjective`] with one batch per frame
//! (equal weights) and the frame's context; the running statistics are frozen variables: part of
//! the flat vector (so interpolating two models interpolates their statistics), zero gradient.
//! [`gradlab_landscape::objective::Subspace`] restricts an objective to the trainable entries for
//! curvature (Hessian eigenvectors, spectral density).
//!
//! Losses with a gradient: the PAT training loss (Hamming loss through the per-layer
//! assignment, tracker + calorimeter terms; the gradient is the blackbox gradient of the
//! assignment, the same surrogate the network is trained with) and the PTT loss (BCE).
//! Reconstruction measures without a gradient: track purity and edge TPR of the assignment.

use std::sync::Arc;

use candle_core::Tensor;
use candle_nn::VarMap;
use gradlab_landscape::{Objective, Replicate, VarMapObjective};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gnn::GnnConfig;
use crate::layer_assign::AssignConfig;
use crate::tracks::TrackFilter;
use crate::training::{FrameData, Method, Model, Selector, evaluate_selection, loss_from_logits, select, summarise};

/// What a [`TrackObjective`] evaluates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Measure {
    /// Hamming loss of the assignment (PAT training loss), blackbox gradient with `assign`.
    Hamming {
        /// λ and estimator of the blackbox gradient.
        assign: AssignConfig,
    },
    /// Binary cross-entropy of the edge probabilities (PTT training loss).
    Bce,
    /// Mean track purity after the assignment (no gradient).
    Purity {
        /// Track filter.
        filter: TrackFilter,
        /// Assignment used at reconstruction.
        assign: AssignConfig,
    },
    /// Pooled edge true-positive rate of the assignment (no gradient).
    Tpr {
        /// Assignment used at reconstruction.
        assign: AssignConfig,
    },
}

impl Measure {
    /// Whether the measure has a gradient.
    pub fn differentiable(&self) -> bool {
        matches!(self, Measure::Hamming { .. } | Measure::Bce)
    }
    /// Short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            Measure::Hamming { .. } => "hamming",
            Measure::Bce => "bce",
            Measure::Purity { .. } => "purity",
            Measure::Tpr { .. } => "tpr",
        }
    }
}

/// Whether a variable of the network is a BatchNorm running statistic (not trained).
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// A measure of the tracking network on fixed frames (see the module docs).
pub struct TrackObjective {
    inner: VarMapObjective<Model>,
    frames: Arc<Vec<FrameData>>,
    measure: Measure,
    /// Frames the BatchNorm statistics are recomputed from at every evaluated point (see
    /// [`TrackObjective::with_recomputed_batch_norm`]); `None`: the statistics in θ are used.
    bn_frames: Option<Arc<Vec<FrameData>>>,
    /// The last point whose statistics were recomputed, and that point with them.
    bn_cache: Option<(Vec<f64>, Vec<f64>)>,
}

impl std::fmt::Debug for TrackObjective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackObjective")
            .field("frames", &self.frames.len())
            .field("measure", &self.measure)
            .field("bn_frames", &self.bn_frames.as_ref().map(|f| f.len()))
            .finish()
    }
}

/// How a [`Measure`] is evaluated: a per-frame loss (with a gradient) or a reconstruction
/// measure (without).
enum Evaluation {
    Loss(Method, AssignConfig),
    Reconstruction { filter: TrackFilter, assign: AssignConfig, purity: bool },
}

impl Measure {
    fn evaluation(&self) -> Evaluation {
        match self.clone() {
            Measure::Hamming { assign } => Evaluation::Loss(Method::Pat, assign),
            Measure::Bce => Evaluation::Loss(Method::Ptt, AssignConfig::default()),
            Measure::Purity { filter, assign } => Evaluation::Reconstruction { filter, assign, purity: true },
            Measure::Tpr { assign } => {
                Evaluation::Reconstruction { filter: TrackFilter::default(), assign, purity: false }
            }
        }
    }
}

/// The training loss of frame `i`: in inference mode (BatchNorm normalises by the running
/// statistics in θ), or in train mode (by the frame's own batch statistics, differentiated
/// through, as in training; the running statistics a train-mode pass updates are overwritten by
/// the next evaluation's θ).
fn frame_loss(
    frames: Arc<Vec<FrameData>>,
    method: Method,
    assign: AssignConfig,
    train_mode: bool,
) -> impl Fn(&Model, usize) -> Result<Tensor> + Send + Sync + 'static {
    move |m: &Model, i: usize| {
        let fd = &frames[i];
        Ok(loss_from_logits(&m.net.forward_t(&fd.input, train_mode)?, fd, method, &assign)?)
    }
}

/// Mean track purity (or pooled edge TPR) of the assignment on `frames`.
fn reconstruction(
    frames: Arc<Vec<FrameData>>,
    filter: TrackFilter,
    assign: AssignConfig,
    purity: bool,
) -> impl Fn(&Model) -> Result<f64> + Send + Sync + 'static {
    move |m: &Model| {
        let mut evals = Vec::with_capacity(frames.len());
        for fd in frames.iter() {
            let p = m.probabilities(fd)?;
            let s = select(fd, &p, Selector::Lap(assign.unmatched()))?;
            evals.push(evaluate_selection(&fd.graph, &s, &filter)?);
        }
        let summary = summarise(&evals);
        Ok(if purity { summary.purity } else { summary.tpr })
    }
}

/// Equal weights, one per frame.
fn frame_weights(frames: &[FrameData]) -> Vec<f64> {
    vec![1.0 / frames.len() as f64; frames.len()]
}

impl TrackObjective {
    /// A fresh network of configuration `cfg` evaluating `measure` on `frames`.
    pub fn new(cfg: &GnnConfig, frames: Arc<Vec<FrameData>>, measure: Measure) -> Result<Self> {
        if frames.is_empty() {
            return Err(Error::invalid("frames", 0, "at least one frame"));
        }
        let cfg = cfg.clone();
        let build = move || -> Result<(Model, VarMap)> {
            let m = Model::new(&cfg, 0)?;
            let vm = m.vm.clone();
            Ok((m, vm))
        };
        let inner = match measure.evaluation() {
            Evaluation::Loss(method, assign) => {
                VarMapObjective::new(build, frame_loss(frames.clone(), method, assign, false), frame_weights(&frames))?
            }
            Evaluation::Reconstruction { filter, assign, purity } => {
                VarMapObjective::with_value(build, reconstruction(frames.clone(), filter, assign, purity))?
            }
        };
        Ok(TrackObjective { inner: inner.frozen(is_buffer), frames, measure, bn_frames: None, bn_cache: None })
    }

    /// The same network (current parameters) and frames with another measure.
    pub fn with_measure(&self, measure: Measure) -> Result<Self> {
        let frames = self.frames.clone();
        let inner = match measure.evaluation() {
            Evaluation::Loss(method, assign) => self
                .inner
                .same_model_with_loss(frame_loss(frames.clone(), method, assign, false), frame_weights(&frames))?,
            Evaluation::Reconstruction { filter, assign, purity } => {
                self.inner.same_model_with_value(reconstruction(frames.clone(), filter, assign, purity))?
            }
        };
        Ok(TrackObjective { inner, frames, measure, bn_frames: self.bn_frames.clone(), bn_cache: None })
    }

    /// The same network, frames and loss, evaluated in train mode: each frame is normalised by
    /// its own BatchNorm batch statistics (differentiated through), not by the running
    /// statistics in θ — the loss the network was trained on, and the one Garipov et al. (2018)
    /// train their curves with. Only for a loss (Hamming, BCE), without recomputed statistics.
    pub fn in_train_mode(&self) -> Result<Self> {
        let Evaluation::Loss(method, assign) = self.measure.evaluation() else {
            return Err(Error::invalid("train-mode measure", self.measure.name(), "a loss (hamming, bce)"));
        };
        if self.bn_frames.is_some() {
            return Err(Error::invalid(
                "train-mode measure",
                "recomputed BatchNorm statistics",
                "the running statistics in θ (train mode uses batch statistics)",
            ));
        }
        let frames = self.frames.clone();
        let inner = self
            .inner
            .same_model_with_loss(frame_loss(frames.clone(), method, assign, true), frame_weights(&frames))?;
        Ok(TrackObjective { inner, frames, measure: self.measure.clone(), bn_frames: None, bn_cache: None })
    }

    /// The same network, frames and measure, but at every evaluated point θ the BatchNorm
    /// running statistics in θ are replaced by statistics recomputed at θ's trained parameters
    /// from train-mode passes over `bn_frames` ([`Model::recompute_batch_norm`]), as Garipov et
    /// al. (2018) do along connecting paths: an interpolated network then gets the statistics
    /// of its own activations, not an interpolation of its endpoints'. Gradients and
    /// Hessian-vector products hold the recomputed statistics fixed.
    pub fn with_recomputed_batch_norm(&self, bn_frames: Arc<Vec<FrameData>>) -> Result<Self> {
        if bn_frames.is_empty() {
            return Err(Error::invalid("BatchNorm frames", 0, "at least one frame"));
        }
        let mut o = self.with_measure(self.measure.clone())?;
        o.bn_frames = Some(bn_frames);
        Ok(o)
    }

    /// Whether the BatchNorm statistics are recomputed at each point.
    pub fn recomputes_batch_norm(&self) -> bool {
        self.bn_frames.is_some()
    }

    /// θ as evaluated: θ itself, or θ with its BatchNorm statistics recomputed.
    fn effective<'a>(&mut self, theta: &'a [f64]) -> Result<std::borrow::Cow<'a, [f64]>> {
        let Some(frames) = self.bn_frames.clone() else { return Ok(std::borrow::Cow::Borrowed(theta)) };
        if let Some((at, with)) = &self.bn_cache
            && at.as_slice() == theta
        {
            return Ok(std::borrow::Cow::Owned(with.clone()));
        }
        self.inner.set_params(theta)?;
        self.inner.model().recompute_batch_norm(&frames)?;
        let with = self.inner.params()?;
        self.bn_cache = Some((theta.to_vec(), with.clone()));
        Ok(std::borrow::Cow::Owned(with))
    }

    /// The measure.
    pub fn measure(&self) -> &Measure {
        &self.measure
    }
    /// Per entry of the flat vector: whether it is a BatchNorm running statistic (not trained).
    pub fn buffers(&self) -> Vec<bool> {
        self.inner.frozen_mask()
    }
    /// The flat indices of the trained entries (for a [`gradlab_landscape::objective::Subspace`]).
    pub fn trainable_indices(&self) -> Vec<usize> {
        self.inner.trainable_indices()
    }
    /// The network (holding the parameters of the last evaluation).
    pub fn model(&self) -> &Model {
        self.inner.model()
    }
    /// The fixed frames.
    pub fn frames(&self) -> &[FrameData] {
        &self.frames
    }

    /// The measure at `theta` (loss, purity or TPR).
    pub fn value(&mut self, theta: &[f64]) -> Result<f64> {
        let theta = self.effective(theta)?;
        Ok(self.inner.loss(&theta)?)
    }

    /// The edge assignments (LAP on `1 − p`) of every frame at `theta`, concatenated.
    pub fn assignments(&mut self, theta: &[f64], assign: &AssignConfig) -> Result<Vec<Vec<bool>>> {
        let theta = self.effective(theta)?;
        self.inner.set_params(&theta)?;
        let model = self.inner.model();
        self.frames
            .iter()
            .map(|fd| {
                let p = model.probabilities(fd)?;
                select(fd, &p, Selector::Lap(assign.unmatched()))
            })
            .collect()
    }
}

impl Objective for TrackObjective {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn loss(&mut self, theta: &[f64]) -> gradlab_landscape::Result<f64> {
        let theta = self.effective(theta)?;
        self.inner.loss(&theta)
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> gradlab_landscape::Result<f64> {
        let theta = self.effective(theta)?;
        self.inner.loss_grad(&theta, grad)
    }
    fn hvp_exact(&mut self, theta: &[f64], v: &[f64], out: &mut [f64]) -> gradlab_landscape::Result<()> {
        let theta = self.effective(theta)?;
        self.inner.hvp_exact(&theta, v, out)
    }
}

impl Replicate for TrackObjective {
    fn replicate(&self) -> gradlab_landscape::Result<Self> {
        Ok(TrackObjective {
            inner: self.inner.replicate()?,
            frames: self.frames.clone(),
            measure: self.measure.clone(),
            bn_frames: self.bn_frames.clone(),
            bn_cache: None,
        })
    }
}
