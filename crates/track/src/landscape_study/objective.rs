//! The tracking network as a [`gradlab_landscape::Objective`] on fixed frames.
//!
//! [`TrackObjective`] evaluates one [`Measure`] of an interaction network at a flat parameter
//! vector (the order of `gradlab_core::params`) on a fixed set of frames, in inference mode
//! (BatchNorm uses its running statistics). The running statistics are part of the flat vector
//! (so interpolating two models interpolates their statistics) but are *not* trainable: their
//! gradient entries are zero, and [`Subspace`] restricts an objective to the trainable entries
//! for curvature (Hessian eigenvectors, spectral density).
//!
//! Losses with a gradient: the PAT training loss (Hamming loss through the per-layer
//! assignment, tracker + calorimeter terms; the gradient is the blackbox gradient of the
//! assignment, the same surrogate the network is trained with) and the PTT loss (BCE).
//! Reconstruction measures without a gradient: track purity and edge TPR of the assignment.

use std::sync::Arc;

use candle_core::Tensor;
use gradlab_core::params::{ParamLayout, read_grads_f64, read_params_f64, write_params_f64};
use gradlab_landscape::{Objective, Replicate};
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

/// Entries of the flat vector that are BatchNorm running statistics (not trainable).
pub fn buffer_mask(model: &Model) -> Result<Vec<bool>> {
    let layout = ParamLayout::of(&model.vm)?;
    let mut mask = vec![false; layout.total];
    for e in &layout.entries {
        if e.name.ends_with("running_mean") || e.name.ends_with("running_var") {
            mask[e.range()].iter_mut().for_each(|m| *m = true);
        }
    }
    Ok(mask)
}

/// A measure of the tracking network on fixed frames (see the module docs).
pub struct TrackObjective {
    model: Model,
    cfg: GnnConfig,
    frames: Arc<Vec<FrameData>>,
    measure: Measure,
    buffers: Arc<Vec<bool>>,
}

impl std::fmt::Debug for TrackObjective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackObjective").field("frames", &self.frames.len()).field("measure", &self.measure).finish()
    }
}

impl TrackObjective {
    /// A fresh network of configuration `cfg` evaluating `measure` on `frames`.
    pub fn new(cfg: &GnnConfig, frames: Arc<Vec<FrameData>>, measure: Measure) -> Result<Self> {
        if frames.is_empty() {
            return Err(Error::invalid("frames", 0, "at least one frame"));
        }
        let model = Model::new(cfg, 0)?;
        let buffers = Arc::new(buffer_mask(&model)?);
        Ok(TrackObjective { model, cfg: cfg.clone(), frames, measure, buffers })
    }

    /// The same network and frames with another measure.
    pub fn with_measure(&self, measure: Measure) -> Result<Self> {
        let o = TrackObjective::new(&self.cfg, self.frames.clone(), measure)?;
        o.set(&read_params_f64(&self.model.vm)?)?;
        Ok(o)
    }

    /// The measure.
    pub fn measure(&self) -> &Measure {
        &self.measure
    }
    /// The non-trainable (running statistics) entries of the flat vector.
    pub fn buffers(&self) -> &[bool] {
        &self.buffers
    }
    /// The network (holding the parameters of the last evaluation).
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// The fixed frames.
    pub fn frames(&self) -> &[FrameData] {
        &self.frames
    }

    fn set(&self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.buffers.len() {
            return Err(Error::invalid(
                "theta length",
                theta.len().to_string(),
                "the network's number of parameters (incl. BatchNorm statistics)",
            ));
        }
        Ok(write_params_f64(&self.model.vm, theta)?)
    }

    fn frame_loss(&self, fd: &FrameData) -> Result<Tensor> {
        let z = self.model.net.forward_t(&fd.input, false)?;
        Ok(match &self.measure {
            Measure::Hamming { assign } => loss_from_logits(&z, fd, Method::Pat, assign)?,
            Measure::Bce => loss_from_logits(&z, fd, Method::Ptt, &AssignConfig::default())?,
            _ => unreachable!("frame_loss is only called for differentiable measures"),
        })
    }

    /// The measure at `theta` (loss, purity or TPR).
    pub fn value(&mut self, theta: &[f64]) -> Result<f64> {
        self.set(theta)?;
        match self.measure.clone() {
            Measure::Hamming { .. } | Measure::Bce => {
                let mut s = 0.0;
                for fd in self.frames.iter() {
                    s += self.frame_loss(fd)?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                }
                Ok(s / self.frames.len() as f64)
            }
            Measure::Purity { filter, assign } => Ok(self.reconstruct(&filter, &assign)?.purity),
            Measure::Tpr { assign } => Ok(self.reconstruct(&TrackFilter::default(), &assign)?.tpr),
        }
    }

    fn reconstruct(&self, filter: &TrackFilter, assign: &AssignConfig) -> Result<crate::training::Summary> {
        let mut evals = Vec::with_capacity(self.frames.len());
        for fd in self.frames.iter() {
            let p = self.model.probabilities(fd)?;
            let s = select(fd, &p, Selector::Lap(assign.unmatched()))?;
            evals.push(evaluate_selection(&fd.graph, &s, filter)?);
        }
        Ok(summarise(&evals))
    }

    /// The edge assignments (LAP on `1 − p`) of every frame at `theta`, concatenated.
    pub fn assignments(&mut self, theta: &[f64], assign: &AssignConfig) -> Result<Vec<Vec<bool>>> {
        self.set(theta)?;
        self.frames
            .iter()
            .map(|fd| {
                let p = self.model.probabilities(fd)?;
                Ok(select(fd, &p, Selector::Lap(assign.unmatched()))?)
            })
            .collect()
    }
}

impl Objective for TrackObjective {
    fn dim(&self) -> usize {
        self.buffers.len()
    }
    fn loss(&mut self, theta: &[f64]) -> gradlab_landscape::Result<f64> {
        Ok(self.value(theta)?)
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> gradlab_landscape::Result<f64> {
        if !self.measure.differentiable() {
            return Err(gradlab_landscape::Error::Unsupported(format!(
                "the {} measure has no gradient; use hamming or bce",
                self.measure.name()
            )));
        }
        if grad.len() != self.dim() {
            return Err(gradlab_landscape::Error::LengthMismatch {
                what: "grad",
                expected: self.dim(),
                got: grad.len(),
            });
        }
        self.set(theta)?;
        grad.fill(0.0);
        let w = 1.0 / self.frames.len() as f64;
        let mut total = 0.0;
        for fd in self.frames.iter() {
            let l = self.frame_loss(fd)?;
            total += w * l.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            let g = read_grads_f64(&self.model.vm, &l.backward()?)?;
            for ((a, b), buf) in grad.iter_mut().zip(&g).zip(self.buffers.iter()) {
                if !buf {
                    *a += w * b;
                }
            }
        }
        Ok(total)
    }
}

impl Replicate for TrackObjective {
    fn replicate(&self) -> gradlab_landscape::Result<Self> {
        Ok(self.with_measure(self.measure.clone())?)
    }
}

/// An objective restricted to a subset of its coordinates: `φ ↦ f(base with base[idx] = φ)`.
/// Used to take Hessians over the trainable parameters only.
#[derive(Debug)]
pub struct Subspace<O> {
    inner: O,
    base: Vec<f64>,
    index: Vec<usize>,
    full: Vec<f64>,
    full_grad: Vec<f64>,
}

impl<O: Objective> Subspace<O> {
    /// Restrict `inner` to the coordinates `index` around `base`.
    pub fn new(inner: O, base: Vec<f64>, index: Vec<usize>) -> Result<Self> {
        if base.len() != inner.dim() || index.iter().any(|&i| i >= base.len()) || index.is_empty() {
            return Err(Error::invalid(
                "subspace",
                format!("base {} values, {} indices, objective dim {}", base.len(), index.len(), inner.dim()),
                "a base of the objective's dimension and ≥ 1 indices inside it",
            ));
        }
        let n = base.len();
        Ok(Subspace { inner, full: base.clone(), base, index, full_grad: vec![0.0; n] })
    }
    /// The restricted coordinates of a full vector.
    pub fn restrict(&self, full: &[f64]) -> Vec<f64> {
        self.index.iter().map(|&i| full[i]).collect()
    }
    /// A full vector: the base with the restricted coordinates replaced by `phi`.
    pub fn embed(&self, phi: &[f64]) -> Vec<f64> {
        let mut f = self.base.clone();
        for (&i, v) in self.index.iter().zip(phi) {
            f[i] = *v;
        }
        f
    }
    /// A direction of the subspace as a full vector (zeros outside it).
    pub fn embed_direction(&self, d: &[f64]) -> Vec<f64> {
        let mut f = vec![0.0; self.base.len()];
        for (&i, v) in self.index.iter().zip(d) {
            f[i] = *v;
        }
        f
    }
    fn fill(&mut self, phi: &[f64]) -> gradlab_landscape::Result<()> {
        if phi.len() != self.index.len() {
            return Err(gradlab_landscape::Error::LengthMismatch {
                what: "phi",
                expected: self.index.len(),
                got: phi.len(),
            });
        }
        for (&i, v) in self.index.iter().zip(phi) {
            self.full[i] = *v;
        }
        Ok(())
    }
}

impl<O: Objective> Objective for Subspace<O> {
    fn dim(&self) -> usize {
        self.index.len()
    }
    fn loss(&mut self, phi: &[f64]) -> gradlab_landscape::Result<f64> {
        self.fill(phi)?;
        self.inner.loss(&self.full)
    }
    fn loss_grad(&mut self, phi: &[f64], grad: &mut [f64]) -> gradlab_landscape::Result<f64> {
        self.fill(phi)?;
        let l = self.inner.loss_grad(&self.full, &mut self.full_grad)?;
        for (g, &i) in grad.iter_mut().zip(&self.index) {
            *g = self.full_grad[i];
        }
        Ok(l)
    }
}
