//! The analyses of the landscape study on fixed analysis frames: mode connectivity and
//! prediction instability between two solutions, curvature and eigenvector slices of one.

use std::sync::Arc;

use gradlab_landscape::connectivity::{Bezier, BezierConfig, PathProfile, linear_path, train_bezier};
use gradlab_landscape::hessian::HvpMethod;
use gradlab_landscape::surface::{Axis, Surface, SurfaceOptions, evaluate_surface};
use gradlab_landscape::{Objective, SpectrumConfig, Subspace, spectrum};
use serde::{Deserialize, Serialize};

use super::activations::stacked_activations;
use super::found_tracks;
use super::objective::{Measure, TrackObjective};
use super::similarity::{Disagreement, binary_disagreement, correctness_disagreement, linear_cka};
use crate::error::{Error, Result};
use crate::gnn::GnnConfig;
use crate::training::{FrameData, Method, TrainSpec};

/// Objectives the Bézier curves are trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveObjective {
    /// Hamming loss of the assignment, blackbox gradient with the variant's λ (PTT: the
    /// spec's λ).
    Hamming,
    /// Binary cross-entropy of the edge probabilities.
    Bce,
}

/// Minibatches for stochastic training: each evaluation uses the next part's frames, in turn,
/// starting from the first after [`Cycle::restart`]. Over a full cycle at a fixed point the mean
/// of the parts' losses and gradients is the full batch's (the parts have equal size).
#[derive(Debug)]
pub struct Cycle {
    parts: Vec<TrackObjective>,
    next: usize,
}

impl Cycle {
    /// `measure` (one with a gradient) on `frames` split in order into parts of `per_part`,
    /// which must divide the number of frames; in train mode
    /// ([`TrackObjective::in_train_mode`]) when `train_mode`.
    pub fn new(
        model: &GnnConfig,
        frames: &[FrameData],
        per_part: usize,
        measure: Measure,
        train_mode: bool,
    ) -> Result<Self> {
        if per_part == 0 || frames.is_empty() || !frames.len().is_multiple_of(per_part) {
            return Err(Error::invalid(
                "frames per minibatch",
                format!("{per_part} of {} frames", frames.len()),
                "≥ 1 frame per minibatch, dividing the (non-zero) number of frames",
            ));
        }
        if !measure.differentiable() {
            return Err(Error::invalid(
                "minibatch measure",
                measure.name(),
                "a measure with a gradient (hamming, bce)",
            ));
        }
        let parts = frames
            .chunks(per_part)
            .map(|c| {
                let o = TrackObjective::new(model, Arc::new(c.to_vec()), measure.clone())?;
                if train_mode { o.in_train_mode() } else { Ok(o) }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cycle { parts, next: 0 })
    }

    /// The next evaluation uses the first part again.
    pub fn restart(&mut self) {
        self.next = 0;
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    fn advance(&mut self) -> usize {
        let i = self.next;
        self.next = (i + 1) % self.parts.len();
        i
    }
}

impl Objective for Cycle {
    fn dim(&self) -> usize {
        self.parts[0].dim()
    }
    fn loss(&mut self, theta: &[f64]) -> gradlab_landscape::Result<f64> {
        let i = self.advance();
        self.parts[i].loss(theta)
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> gradlab_landscape::Result<f64> {
        let i = self.advance();
        self.parts[i].loss_grad(theta, grad)
    }
}

/// The measures of one variant on the analysis frames.
#[derive(Debug)]
pub struct Measures {
    /// Hamming loss with the variant's assignment (PAT training loss).
    pub hamming: TrackObjective,
    /// Edge TPR of the assignment.
    pub tpr: TrackObjective,
    /// BCE (PTT training loss).
    pub bce: TrackObjective,
    /// Track purity.
    pub purity: TrackObjective,
    /// The variant's own training loss.
    pub own: Measure,
    /// Hamming loss and edge TPR with the BatchNorm statistics recomputed at each point
    /// ([`Measures::recompute_batch_norm_on`]).
    pub recomputed: Option<(TrackObjective, TrackObjective)>,
    /// Hamming loss and BCE in minibatches of training frames, the Bézier curves' training
    /// objectives when set ([`Measures::train_curves_on`]); otherwise the curves are trained
    /// on the analysis frames (full batch).
    pub curve_training: Option<(Cycle, Cycle)>,
    spec: TrainSpec,
    frames: Arc<Vec<FrameData>>,
}

impl Measures {
    /// The measures of a variant trained with `spec`, on `frames`.
    pub fn new(model: &GnnConfig, frames: Arc<Vec<FrameData>>, spec: &TrainSpec) -> Result<Self> {
        let hamming_m = Measure::Hamming { assign: spec.assign.clone() };
        let own = match spec.method {
            Method::Pat => hamming_m.clone(),
            Method::Ptt => Measure::Bce,
        };
        let hamming = TrackObjective::new(model, frames.clone(), hamming_m)?;
        let tpr = hamming.with_measure(Measure::Tpr { assign: spec.assign.clone() })?;
        let bce = hamming.with_measure(Measure::Bce)?;
        let purity = hamming.with_measure(Measure::Purity { filter: spec.filter, assign: spec.assign.clone() })?;
        Ok(Measures {
            hamming,
            tpr,
            bce,
            purity,
            own,
            recomputed: None,
            curve_training: None,
            spec: spec.clone(),
            frames,
        })
    }

    /// Paths are also profiled with the BatchNorm statistics recomputed from train-mode passes
    /// over `bn_frames` at each point (training frames, as Garipov et al. 2018).
    pub fn recompute_batch_norm_on(&mut self, bn_frames: Arc<Vec<FrameData>>) -> Result<()> {
        let h = self.hamming.with_recomputed_batch_norm(bn_frames.clone())?;
        let t = self.tpr.with_recomputed_batch_norm(bn_frames)?;
        self.recomputed = Some((h, t));
        Ok(())
    }

    /// The Bézier curves are trained on `frames` (training frames, not the analysis frames they
    /// are evaluated on, as Garipov et al. 2018 train theirs on the training set) in minibatches
    /// of `per_sample` frames, one per sampled `t`, cycled in order from the first at every curve;
    /// with `train_mode` each frame is normalised by its own BatchNorm batch statistics, as in
    /// training (Garipov et al.), else by the running statistics interpolated along the curve.
    pub fn train_curves_on(
        &mut self,
        model: &GnnConfig,
        frames: &[FrameData],
        per_sample: usize,
        train_mode: bool,
    ) -> Result<()> {
        let hamming_m = Measure::Hamming { assign: self.spec.assign.clone() };
        let hamming = Cycle::new(model, frames, per_sample, hamming_m, train_mode)?;
        let bce = Cycle::new(model, frames, per_sample, Measure::Bce, train_mode)?;
        self.curve_training = Some((hamming, bce));
        Ok(())
    }

    /// (purity, Hamming, BCE, TPR) at `theta`.
    pub fn endpoint(&mut self, theta: &[f64]) -> Result<[f64; 4]> {
        Ok([self.purity.value(theta)?, self.hamming.value(theta)?, self.bce.value(theta)?, self.tpr.value(theta)?])
    }
}

/// Settings of the connectivity of a pair.
#[derive(Debug, Clone)]
pub struct PathSettings<'a> {
    /// Points along each path (t = 0 … 1).
    pub points: usize,
    /// Bézier training.
    pub bezier: &'a BezierConfig,
    /// Objectives the curves are trained with.
    pub objectives: &'a [CurveObjective],
}

/// Mode connectivity between two solutions. Without a suffix the BatchNorm statistics along
/// a path are interpolated with the weights; `_bn`: recomputed at each point (when
/// [`Measures::recompute_batch_norm_on`] was called; absent / empty otherwise).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connectivity {
    /// Hamming loss along the straight line.
    pub linear_hamming: PathProfile,
    /// Edge TPR along the straight line.
    pub linear_tpr: Vec<f64>,
    /// Per trained curve: its objective, the Hamming loss and the TPR along it.
    pub bezier: Vec<(CurveObjective, PathProfile, Vec<f64>)>,
    /// Hamming loss along the straight line, BatchNorm recomputed.
    #[serde(default)]
    pub linear_hamming_bn: Option<PathProfile>,
    /// Edge TPR along the straight line, BatchNorm recomputed.
    #[serde(default)]
    pub linear_tpr_bn: Option<Vec<f64>>,
    /// Per trained curve (same order as `bezier`): Hamming loss and TPR, BatchNorm recomputed.
    #[serde(default)]
    pub bezier_bn: Vec<(PathProfile, Vec<f64>)>,
}

/// Hamming loss and TPR along the straight line and along Bézier curves trained between `a`
/// and `b` (the curves' `t` samples from `settings.bezier.seed`).
pub fn connectivity(m: &mut Measures, a: &[f64], b: &[f64], settings: &PathSettings<'_>) -> Result<Connectivity> {
    let linear_hamming = linear_path(&mut m.hamming, a, b, settings.points)?;
    let linear_tpr = linear_path(&mut m.tpr, a, b, settings.points)?.losses;
    let (mut linear_hamming_bn, mut linear_tpr_bn) = (None, None);
    if let Some((h, t)) = m.recomputed.as_mut() {
        linear_hamming_bn = Some(linear_path(h, a, b, settings.points)?);
        linear_tpr_bn = Some(linear_path(t, a, b, settings.points)?.losses);
    }
    let mut bezier = Vec::new();
    let mut bezier_bn = Vec::new();
    for obj in settings.objectives {
        let init = Bezier::straight(a, b)?;
        let (curve, _hist) = match (obj, m.curve_training.as_mut()) {
            (CurveObjective::Hamming, None) => train_bezier(&mut m.hamming, init, settings.bezier)?,
            (CurveObjective::Bce, None) => train_bezier(&mut m.bce, init, settings.bezier)?,
            (CurveObjective::Hamming, Some((h, _))) => {
                h.restart();
                train_bezier(h, init, settings.bezier)?
            }
            (CurveObjective::Bce, Some((_, b))) => {
                b.restart();
                train_bezier(b, init, settings.bezier)?
            }
        };
        let ph = curve.profile(&mut m.hamming, settings.points)?;
        let pt = curve.profile(&mut m.tpr, settings.points)?.losses;
        if let Some((h, t)) = m.recomputed.as_mut() {
            bezier_bn.push((curve.profile(h, settings.points)?, curve.profile(t, settings.points)?.losses));
        }
        bezier.push((*obj, ph, pt));
    }
    Ok(Connectivity { linear_hamming, linear_tpr, bezier, linear_hamming_bn, linear_tpr_bn, bezier_bn })
}

/// Prediction instability between two solutions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instability {
    /// Disagreement of the edge assignments.
    pub edges: Disagreement,
    /// Disagreement of the reconstructed true tracks.
    pub tracks: Disagreement,
    /// Linear CKA of each module's activations.
    pub cka: Vec<f64>,
}

/// Edge and track disagreement and per-module CKA of the solutions `a` and `b`.
pub fn instability(m: &mut Measures, a: &[f64], b: &[f64]) -> Result<Instability> {
    let assign = m.spec.assign.clone();
    let ya = m.hamming.assignments(a, &assign)?;
    let yb = m.hamming.assignments(b, &assign)?;
    let (mut fa, mut fb, mut ea, mut eb, mut truth) = (vec![], vec![], vec![], vec![], vec![]);
    let frames = m.frames.clone();
    for (f, fd) in frames.iter().enumerate() {
        ea.extend_from_slice(&ya[f]);
        eb.extend_from_slice(&yb[f]);
        truth.extend_from_slice(&fd.graph.edge_truth);
        fa.extend(found_tracks(fd, &ya[f], &m.spec.filter)?);
        fb.extend(found_tracks(fd, &yb[f], &m.spec.filter)?);
    }
    let edges = binary_disagreement(&ea, &eb, &truth)?;
    let tracks = correctness_disagreement(&fa, &fb)?;
    let graphs: Vec<_> = frames.iter().map(|fd| &fd.input).collect();
    m.hamming.value(a)?;
    let act_a = stacked_activations(m.hamming.model(), &graphs)?;
    m.hamming.value(b)?;
    let act_b = stacked_activations(m.hamming.model(), &graphs)?;
    let cka = act_a.iter().zip(&act_b).map(|(x, y)| linear_cka(&x.2, x.1, &y.2, y.1)).collect::<Result<Vec<f64>>>()?;
    Ok(Instability { edges, tracks, cka })
}

/// Settings of the curvature of a solution.
#[derive(Debug, Clone)]
pub struct CurvatureSettings<'a> {
    /// Top eigenvalues (`top_k` ≥ 2: the top 2 span the slices), SLQ density. Its `hvp` is the
    /// fallback: exact products (double backward) are used where the check of
    /// [`choose_hvp`] passes.
    pub spectrum: &'a SpectrumConfig,
    /// The seed of the spectrum's Lanczos start and SLQ probes.
    pub seed: u64,
    /// Points per slice axis.
    pub points: usize,
    /// Each slice axis spans `[−range, range]`.
    pub range: f64,
    /// Surface evaluation (threads, progress).
    pub surface: SurfaceOptions,
}

/// Curvature of one solution and its eigenvector slices.
#[derive(Debug, Clone)]
pub struct Curvature {
    /// Top eigenvalues.
    pub top: Vec<f64>,
    /// Whether Lanczos converged.
    pub converged: bool,
    /// Hessian-vector products used.
    pub hvps: usize,
    /// How they were computed.
    pub hvp: HvpMethod,
    /// Why: the exact product passed its check, or the check's refusal.
    pub hvp_reason: String,
    /// Support of the SLQ density.
    pub slq_range: (f64, f64),
    /// Eigenvalue grid of the density.
    pub grid: Vec<f64>,
    /// Spectral density on the grid.
    pub density: Vec<f64>,
    /// The variant's own loss on the top-2 eigenvector plane.
    pub loss: Surface,
    /// Track purity on the same plane.
    pub purity: Surface,
}

/// Exact Hessian-vector products (double backward) where they can be trusted, else `fallback`:
/// one exact product along a random direction (from `seed`) is attempted; the landscape crate
/// refuses it when this thread's double backward detaches (candle's setting) or when it
/// disagrees with central differences of the gradient (a custom op whose backward is not
/// itself differentiable, as the fused message-passing kernels' are not). Returns the method
/// and the reason, for the report.
pub fn choose_hvp<O: Objective>(
    obj: &mut O,
    at: &[f64],
    fallback: HvpMethod,
    seed: u64,
) -> Result<(HvpMethod, String)> {
    let mut rng = gradlab_core::rng::rng(seed);
    let v = gradlab_core::rng::uniform_vec(&mut rng, obj.dim(), -1.0, 1.0);
    let mut out = vec![0.0; obj.dim()];
    match obj.hvp_exact(at, &v, &mut out) {
        Ok(()) => Ok((HvpMethod::Exact, "exact: double backward, checked against central differences".into())),
        Err(gradlab_landscape::Error::Unsupported(why)) => {
            Ok((fallback, format!("{fallback:?}: exact refused ({why})")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Hessian of the BCE loss over the trainable parameters at `theta` ([`spectrum`]: Lanczos top
/// eigenvalues, SLQ density), and the loss and purity slices along its top-2 eigenvectors.
pub fn curvature(m: &Measures, theta: &[f64], s: &CurvatureSettings<'_>) -> Result<Curvature> {
    if s.spectrum.top_k < 2 {
        return Err(crate::error::Error::invalid("top_k", s.spectrum.top_k, "≥ 2 (the top two span the slices)"));
    }
    let bce = m.bce.with_measure(Measure::Bce)?;
    let index = bce.trainable_indices();
    let mut sub = Subspace::new(bce, theta.to_vec(), index)?;
    let phi = sub.restrict(theta);
    let (hvp, hvp_reason) = choose_hvp(&mut sub, &phi, s.spectrum.hvp, s.seed)?;
    let sp = spectrum(&mut sub, &phi, &SpectrumConfig { hvp, ..s.spectrum.clone() }, s.seed)?;
    let d1 = sub.embed_direction(&sp.top.vectors[0]);
    let d2 = sub.embed_direction(&sp.top.vectors[1]);
    let ax = Axis::new(-s.range, s.range, s.points)?;
    let own = m.hamming.with_measure(m.own.clone())?;
    let loss = evaluate_surface(&own, theta, &[&d1, &d2], ax, Some(ax), &s.surface)?;
    let purity = evaluate_surface(&m.purity, theta, &[&d1, &d2], ax, Some(ax), &s.surface)?;
    let hvps = sp.lanczos_cost.products + sp.trace_cost.products + sp.slq_cost.products;
    Ok(Curvature {
        top: sp.top.values,
        converged: sp.top.converged,
        hvps,
        hvp,
        hvp_reason,
        slq_range: sp.range,
        grid: sp.grid,
        density: sp.density,
        loss,
        purity,
    })
}
