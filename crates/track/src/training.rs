//! PAT and PTT training of the interaction network with the core [`Trainer`], and the
//! reconstruction/evaluation helpers they share.
//!
//! - **PAT** (predict-and-track, end to end): `ŷ = assign(1 − σ(z))` per layer pair with the
//!   blackbox gradient ([`crate::layer_assign`]); Hamming loss `mean(ŷ(1 − y) + (1 − ŷ)y)` computed
//!   separately on tracker edges (target hit in the first `tracker_layers` layers) and on
//!   calorimeter edges, then summed.
//! - **PTT** (predict-then-track): binary cross-entropy on the edge probabilities, tracker and
//!   calorimeter terms summed the same way; the assignment runs at inference only.
//!
//! The trainer sees one frame per micro-batch (`batch_size = 1`) and accumulates `grad_accum`
//! of them per optimiser step (32 in the paper); validation reconstructs tracks on the validation
//! frames and reports `purity`, `efficiency`, edge `tpr`/`fpr`, which selects the best checkpoint
//! (`monitor = "purity"`, `monitor_mode = "max"`).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use gradlab_core::observe::Observer;
use gradlab_core::params::Init;
use gradlab_core::train::{TrainConfig, TrainReport, Trainer, Validation};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::gnn::{GnnConfig, GraphInput, GraphKind, InteractionNetwork};
use crate::graph::{GraphConfig, HitGraph, LineGraph};
use crate::layer_assign::{AssignConfig, FrameLap, assign_scaled};
use crate::sim::Frame;
use crate::sparse_lap::Unmatched;
use crate::tracks::{FrameMetrics, Track, TrackFilter, build_tracks, evaluate};

/// Training method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Predict-and-track: Hamming loss through the assignment.
    Pat,
    /// Predict-then-track: BCE on edge probabilities.
    Ptt,
}

/// One frame prepared for the network.
#[derive(Debug, Clone)]
pub struct FrameData {
    /// The hit graph (truth, positions, track building).
    pub graph: HitGraph,
    /// Network inputs.
    pub input: GraphInput,
    /// Per-layer assignment structure.
    pub lap: Arc<FrameLap>,
    /// Edge truth as 0/1 `[E]` (f32).
    pub truth: Tensor,
    /// 1 on tracker edges `[E]` (f32).
    pub tracker_mask: Tensor,
    /// Number of tracker edges.
    pub n_tracker: usize,
}

impl FrameData {
    /// Build graphs and tensors of a frame. Tracker edges are those whose target hit lies in the
    /// first `tracker_layers` layers.
    pub fn new(
        frame: &Frame,
        graph: &GraphConfig,
        model: &GnnConfig,
        tracker_layers: u16,
        dev: &Device,
    ) -> crate::Result<Self> {
        let g = HitGraph::build(frame, graph)?;
        Self::from_graph(g, model, tracker_layers, dev)
    }

    /// From a hit graph.
    pub fn from_graph(g: HitGraph, model: &GnnConfig, tracker_layers: u16, dev: &Device) -> crate::Result<Self> {
        let input = match model.graph {
            GraphKind::Line => GraphInput::line(&LineGraph::build(&g), model, dev)?,
            GraphKind::Hit => GraphInput::hit(&g, dev)?,
        };
        let m = g.num_edges();
        let truth: Vec<f32> = g.edge_truth.iter().map(|&t| if t { 1.0 } else { 0.0 }).collect();
        let trk: Vec<f32> =
            g.dst.iter().map(|&d| if g.layer[d as usize] < tracker_layers { 1.0 } else { 0.0 }).collect();
        let n_tracker = trk.iter().filter(|&&x| x > 0.0).count();
        let lap = Arc::new(FrameLap::new(&g)?);
        let t = |v: Vec<f32>| Tensor::from_vec(v, m, dev);
        Ok(FrameData { truth: t(truth)?, tracker_mask: t(trk)?, input, lap, graph: g, n_tracker })
    }

    /// Number of hit-graph edges.
    pub fn num_edges(&self) -> usize {
        self.graph.num_edges()
    }
}

/// Frames read by index: prepared in memory (`[FrameData]`, `Vec<FrameData>`) or built on
/// demand and dropped after use ([`crate::setup::FrameStream`]), so that training memory does
/// not grow with the number of frames.
pub trait FrameSource: Sync {
    /// Number of frames.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Frame `i < len()`.
    fn get(&self, i: usize) -> crate::Result<Cow<'_, FrameData>>;
    /// A hint: the frames named in `next` are asked for soon (in that order) and others are not;
    /// a source may prepare them in the background. Ignored by default.
    fn prefetch(&self, _next: &[usize]) {}
}

impl FrameSource for [FrameData] {
    fn len(&self) -> usize {
        <[FrameData]>::len(self)
    }
    fn get(&self, i: usize) -> crate::Result<Cow<'_, FrameData>> {
        self.as_ref()
            .get(i)
            .map(Cow::Borrowed)
            .ok_or_else(|| crate::Error::invalid("frame index", i, format!("< {}", <[FrameData]>::len(self))))
    }
}

impl FrameSource for Vec<FrameData> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn get(&self, i: usize) -> crate::Result<Cow<'_, FrameData>> {
        FrameSource::get(self.as_slice(), i)
    }
}

/// Prepare many frames in parallel.
pub fn prepare(
    frames: &[Frame],
    graph: &GraphConfig,
    model: &GnnConfig,
    tracker_layers: u16,
) -> crate::Result<Vec<FrameData>> {
    frames.par_iter().map(|f| FrameData::new(f, graph, model, tracker_layers, &Device::Cpu)).collect()
}

/// The network with its parameters.
pub struct Model {
    /// Parameters (incl. BatchNorm running statistics).
    pub vm: VarMap,
    /// The network.
    pub net: InteractionNetwork,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("net", &self.net).finish_non_exhaustive()
    }
}

impl Model {
    /// A freshly initialised network, deterministic in `seed`: weight matrices `[out, in]`
    /// uniform in `±1/√in` (PyTorch's bound), biases and BatchNorm shifts 0, BatchNorm scales
    /// and running variances 1, running means 0 ([`Init::TorchWeightsZeroBias`]).
    pub fn new(cfg: &GnnConfig, seed: u64) -> crate::Result<Self> {
        let vm = VarMap::new();
        let net = InteractionNetwork::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        gradlab_core::params::init(&vm, seed, Init::TorchWeightsZeroBias)?;
        Ok(Model { vm, net })
    }

    /// Recomputes the running statistics of every BatchNorm layer from train-mode forward
    /// passes over `frames`, as Garipov et al. (2018) do at each point of a connecting path:
    /// running mean = the mean over frames of each frame's batch mean, running variance = the
    /// mean of the batch variances as a train-mode forward records them (unbiased) — PyTorch's
    /// cumulative average (`momentum=None`), one batch per frame. The statistics held before do
    /// not enter. Each frame's statistics are read back from one momentum update of running
    /// statistics set to zero (`m·s`, divided by [`crate::gnn::BN_MOMENTUM`] in f64), so the
    /// fused and the plain candle paths give them alike.
    pub fn recompute_batch_norm(&self, frames: &[FrameData]) -> crate::Result<()> {
        if frames.is_empty() {
            return Err(crate::Error::invalid("BatchNorm frames", 0, "at least one frame"));
        }
        let buffers: Vec<candle_core::Var> = {
            let d = self.vm.data().lock().unwrap_or_else(|p| p.into_inner());
            let mut named: Vec<(&String, &candle_core::Var)> =
                d.iter().filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var")).collect();
            named.sort_by(|a, b| a.0.cmp(b.0));
            named.into_iter().map(|(_, v)| v.clone()).collect()
        };
        let mut acc: Vec<Vec<f64>> = buffers.iter().map(|v| vec![0.0; v.elem_count()]).collect();
        let m = crate::gnn::BN_MOMENTUM;
        for fd in frames {
            for v in &buffers {
                v.set(&v.as_tensor().zeros_like()?)?;
            }
            self.net.forward_t(&fd.input, true)?;
            for (v, a) in buffers.iter().zip(acc.iter_mut()) {
                let s = v.as_tensor().flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                a.iter_mut().zip(s).for_each(|(a, s)| *a += s / m);
            }
        }
        let k = frames.len() as f64;
        for (v, a) in buffers.iter().zip(acc) {
            let t = v.as_tensor();
            let mean: Vec<f64> = a.into_iter().map(|x| x / k).collect();
            v.set(&Tensor::from_vec(mean, t.shape(), t.device())?.to_dtype(t.dtype())?)?;
        }
        Ok(())
    }

    /// Edge probabilities (eval mode: BatchNorm running statistics).
    pub fn probabilities(&self, fd: &FrameData) -> crate::Result<Vec<f32>> {
        let z = self.net.forward_t(&fd.input, false)?;
        Ok(candle_nn::ops::sigmoid(&z)?.to_vec1::<f32>()?)
    }
}

/// Masked means of a per-edge loss: tracker term + calorimeter term (empty terms are dropped).
fn split_mean(per_edge: &Tensor, fd: &FrameData) -> candle_core::Result<Tensor> {
    let n = fd.num_edges();
    let n_cal = n - fd.n_tracker;
    let trk = per_edge.mul(&fd.tracker_mask)?.sum_all()?;
    let cal = (per_edge.sum_all()? - &trk)?;
    let mut total = Tensor::zeros((), per_edge.dtype(), per_edge.device())?;
    if fd.n_tracker > 0 {
        total = (total + (trk / fd.n_tracker as f64)?)?;
    }
    if n_cal > 0 {
        total = (total + (cal / n_cal as f64)?)?;
    }
    Ok(total)
}

/// The training loss of one frame (train-mode forward).
pub fn frame_loss(
    model: &Model,
    fd: &FrameData,
    method: Method,
    assign_cfg: &AssignConfig,
    train: bool,
) -> candle_core::Result<Tensor> {
    let z = model.net.forward_t(&fd.input, train)?;
    loss_from_logits(&z, fd, method, assign_cfg)
}

/// The loss given logits `z` (exposed for tests).
pub fn loss_from_logits(
    z: &Tensor,
    fd: &FrameData,
    method: Method,
    assign_cfg: &AssignConfig,
) -> candle_core::Result<Tensor> {
    loss_from_logits_scaled(z, fd, method, assign_cfg, 1.0)
}

/// [`loss_from_logits`] whose assignment perturbs its costs by `λ·grad_scale·∂L/∂ŷ` in the
/// backward (PAT; see [`crate::layer_assign::assign_scaled`]).
pub fn loss_from_logits_scaled(
    z: &Tensor,
    fd: &FrameData,
    method: Method,
    assign_cfg: &AssignConfig,
    grad_scale: f64,
) -> candle_core::Result<Tensor> {
    let y = &fd.truth;
    match method {
        Method::Ptt => {
            // Stable BCE with logits: max(z, 0) − z·y + log(1 + exp(−|z|)).
            let bce = ((z.relu()? - z.mul(y)?)? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
            split_mean(&bce, fd)
        }
        Method::Pat => {
            let p = candle_nn::ops::sigmoid(z)?;
            let w = p.affine(-1.0, 1.0)?;
            let yh = assign_scaled(&w, &fd.lap, assign_cfg, grad_scale)?;
            // ŷ(1 − y) + (1 − ŷ)y = ŷ + y − 2ŷy
            let ham = ((&yh + y)? - (yh.mul(y)? * 2.0)?)?;
            split_mean(&ham, fd)
        }
    }
}

/// How edges are selected at reconstruction time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selector {
    /// Per-layer assignment on `w = 1 − p`.
    Lap(Unmatched),
    /// Keep edges with `p > t` (no assignment): the score-threshold baseline.
    Threshold(f64),
}

/// Selected edges of a frame.
pub fn select(fd: &FrameData, probs: &[f32], sel: Selector) -> crate::Result<Vec<bool>> {
    match sel {
        Selector::Lap(u) => {
            let w: Vec<f64> = probs.iter().map(|&p| 1.0 - p as f64).collect();
            fd.lap.solve(&w, u)
        }
        Selector::Threshold(t) => Ok(probs.iter().map(|&p| p as f64 > t).collect()),
    }
}

/// Result of reconstructing one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameEval {
    /// Track metrics (`None` when the selection branches into more paths than allowed).
    pub tracks: Option<FrameMetrics>,
    /// True / false positives and negatives of the selected edges.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// False negatives.
    pub fn_: usize,
    /// True negatives.
    pub tn: usize,
}

/// Paths beyond which a dense (threshold) selection counts as a failed frame.
pub const MAX_PATHS: usize = 200_000;

/// Build tracks from a selection, filter them and score them.
pub fn evaluate_selection(g: &HitGraph, selected: &[bool], filter: &TrackFilter) -> crate::Result<FrameEval> {
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    for (s, t) in selected.iter().zip(&g.edge_truth) {
        match (s, t) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    let tracks = match build_tracks(g, selected, MAX_PATHS) {
        Ok(t) => Some(evaluate(g, &filter.apply(g, t))),
        Err(crate::Error::TooManyPaths { .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(FrameEval { tracks, tp, fp, fn_, tn })
}

/// Frame-averaged metrics of many frames (failed frames count as purity = efficiency = 0).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Frames.
    pub frames: usize,
    /// Frames whose selection was too dense to enumerate.
    pub failed: usize,
    /// Mean purity.
    pub purity: f64,
    /// Mean efficiency.
    pub efficiency: f64,
    /// Edge true-positive rate (pooled).
    pub tpr: f64,
    /// Edge false-positive rate (pooled).
    pub fpr: f64,
}

/// Average frame evaluations.
pub fn summarise(evals: &[FrameEval]) -> Summary {
    let n = evals.len();
    if n == 0 {
        return Summary::default();
    }
    let (mut p, mut e, mut failed) = (0.0, 0.0, 0);
    let (mut tp, mut fp, mut fn_, mut tn) = (0usize, 0usize, 0usize, 0usize);
    for ev in evals {
        match ev.tracks {
            Some(m) => {
                p += m.purity;
                e += m.efficiency;
            }
            None => failed += 1,
        }
        tp += ev.tp;
        fp += ev.fp;
        fn_ += ev.fn_;
        tn += ev.tn;
    }
    Summary {
        frames: n,
        failed,
        purity: p / n as f64,
        efficiency: e / n as f64,
        tpr: tp as f64 / (tp + fn_).max(1) as f64,
        fpr: fp as f64 / (fp + tn).max(1) as f64,
    }
}

/// Reconstruct and score frames with a model and a selector.
pub fn evaluate_model<S: FrameSource + ?Sized>(
    model: &Model,
    frames: &S,
    sel: Selector,
    filter: &TrackFilter,
) -> crate::Result<Summary> {
    Ok(summarise(&evaluate_frames(model, frames, 0..frames.len(), sel, filter)?))
}

/// Reconstructs and scores the frames `range` of `frames`, in order.
fn evaluate_frames<S: FrameSource + ?Sized>(
    model: &Model,
    frames: &S,
    range: std::ops::Range<usize>,
    sel: Selector,
    filter: &TrackFilter,
) -> crate::Result<Vec<FrameEval>> {
    let mut evals = Vec::with_capacity(range.len());
    for i in range {
        let fd = frames.get(i)?;
        let fd = fd.as_ref();
        let p = model.probabilities(fd)?;
        let s = select(fd, &p, sel)?;
        evals.push(evaluate_selection(&fd.graph, &s, filter)?);
    }
    Ok(evals)
}

/// [`evaluate_model`] over the ranks of `comm` (every rank holds the model and the same frame
/// source): each rank reconstructs a contiguous slice of the frames, and rank 0 gathers the
/// frame evaluations in frame order and summarises them — the same summary, bit for bit, as one
/// process. Returns it on rank 0, `None` on the other ranks; a failing frame on any rank is an
/// error on every rank.
pub fn evaluate_model_on<S: FrameSource + ?Sized>(
    comm: &dyn gradlab_core::dist::Comm,
    model: &Model,
    frames: &S,
    sel: Selector,
    filter: &TrackFilter,
) -> crate::Result<Option<Summary>> {
    use gradlab_core::dist::{agree, contiguous_slice, gather_json};
    let range = contiguous_slice(frames.len(), comm.rank(), comm.size());
    let evals = agree(comm, || evaluate_frames(model, frames, range, sel, filter))?;
    Ok(gather_json(comm, 0, &evals)?.map(|all| summarise(&all.concat())))
}

/// File name of a trained model's card in its checkpoint folder.
pub const MODEL_CARD_FILE: &str = "model.json";

/// What reconstruction needs besides the weights, saved as `model.json` beside a model's
/// checkpoints (`checkpoints/<variant>-seed<s>/` of the GNN experiments): the training
/// specification (network, assignment, tracker layers, track filter) and the graph cuts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// The training specification.
    pub spec: TrainSpec,
    /// The graph cuts of the frames the model was trained on.
    pub graph: GraphConfig,
}

impl ModelCard {
    /// Writes `model.json` into `dir` (atomically).
    pub fn save(&self, dir: &Path) -> crate::Result<()> {
        Ok(gradlab_core::io::write_json(&dir.join(MODEL_CARD_FILE), self)?)
    }

    /// Reads `dir/model.json` and checks it.
    pub fn load(dir: &Path) -> crate::Result<Self> {
        let card: ModelCard = gradlab_core::io::read_json(&dir.join(MODEL_CARD_FILE))?;
        card.spec.validate()?;
        card.graph.validate()?;
        Ok(card)
    }
}

/// A trained network with its card: reconstructs tracks in frames.
#[derive(Debug)]
pub struct TrainedModel {
    /// Specification and graph cuts.
    pub card: ModelCard,
    /// The network with its weights.
    pub model: Model,
}

/// Tracks of one frame and what led to them.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// The frame's hit graph (`graph.hit[n]` is the frame hit of node `n`).
    pub graph: HitGraph,
    /// Edge probabilities (eval mode).
    pub probabilities: Vec<f32>,
    /// Edges selected by the per-layer assignment.
    pub selected: Vec<bool>,
    /// Tracks (graph node indices, shallow → deep) that pass the card's track filter.
    pub tracks: Vec<Track>,
}

impl TrainedModel {
    /// Loads `dir/model.json` and the weights `dir/best.safetensors` (the selected checkpoint;
    /// `last.safetensors` when there is no best).
    pub fn load(dir: &Path) -> crate::Result<Self> {
        if !dir.join(MODEL_CARD_FILE).is_file() {
            return Err(crate::Error::invalid(
                "model directory",
                dir.display(),
                format!(
                    "a folder with {MODEL_CARD_FILE} (the training spec and graph cuts, written beside the \
                     checkpoints since 2026-12-07) and best.safetensors; for older checkpoints give the card \
                     yourself (TrainedModel::with_card)"
                ),
            ));
        }
        Self::with_card(dir, ModelCard::load(dir)?)
    }

    /// The weights of `dir` (`best.safetensors`, else `last.safetensors`) with a given card.
    pub fn with_card(dir: &Path, card: ModelCard) -> crate::Result<Self> {
        card.spec.validate()?;
        card.graph.validate()?;
        let model = Model::new(&card.spec.model, 0)?;
        let best = dir.join("best.safetensors");
        let path = if best.is_file() { best } else { dir.join("last.safetensors") };
        gradlab_core::train::load_weights(&model.vm, &path)?;
        Ok(TrainedModel { card, model })
    }

    /// Tracks of `frame`: graph, eval-mode probabilities, the per-layer assignment on
    /// `1 − p`, root-to-leaf paths of the selected edges, the card's track filter.
    pub fn reconstruct(&self, frame: &Frame) -> crate::Result<Reconstruction> {
        let spec = &self.card.spec;
        let fd = FrameData::new(frame, &self.card.graph, &spec.model, spec.tracker_layers, &Device::Cpu)?;
        let probabilities = self.model.probabilities(&fd)?;
        let selected = select(&fd, &probabilities, Selector::Lap(spec.assign.unmatched()))?;
        let tracks = spec.filter.apply(&fd.graph, build_tracks(&fd.graph, &selected, MAX_PATHS)?);
        Ok(Reconstruction { graph: fd.graph, probabilities, selected, tracks })
    }
}

fn d_tracker_layers() -> u16 {
    3
}

/// How a frame's loss is scaled before its backward pass (what the blackbox perturbation of PAT
/// sees; PTT's gradients differ only by a global factor, which RMSprop ignores up to its ε).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossScale {
    /// Divided by the frames of an optimiser step (`grad_accum`) before the backward, as the
    /// reference code does: PAT perturbs its costs by `λ·g/grad_accum`.
    #[default]
    Step,
    /// The frame's own loss: PAT perturbs by `λ·g` (`grad_accum`× larger perturbations).
    Frame,
}

/// BatchNorm mode of the validation forward passes that select the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ValidationBn {
    /// Train mode, batch statistics of each frame (the reference never switches to eval mode
    /// there; running statistics are updated by these passes too, as in PyTorch).
    #[default]
    Train,
    /// Eval mode: running statistics.
    Eval,
}

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// PAT or PTT.
    pub method: Method,
    /// Network.
    #[serde(default)]
    pub model: GnnConfig,
    /// Assignment (λ, estimator, no-link cost); used in training by PAT, at inference by both.
    #[serde(default)]
    pub assign: AssignConfig,
    /// Trainer configuration (batch_size 1 = one frame per micro-batch; grad_accum 32).
    pub train: TrainConfig,
    /// Edges whose target hit is in the first this many layers form the tracker term (3, the
    /// reference's: pairs 1→0, 2→1 and 3→2).
    #[serde(default = "d_tracker_layers")]
    pub tracker_layers: u16,
    /// How a frame's loss is scaled before its backward (PAT's perturbation size).
    #[serde(default)]
    pub loss_scale: LossScale,
    /// BatchNorm mode of validation (checkpoint selection); tests are always in eval mode.
    #[serde(default)]
    pub validation_bn: ValidationBn,
    /// Track filter used for validation purity.
    #[serde(default)]
    pub filter: TrackFilter,
}

impl TrainSpec {
    /// Check the specification.
    pub fn validate(&self) -> crate::Result<()> {
        self.model.validate()?;
        self.assign.validate()?;
        if self.train.batch_size != 1 {
            return Err(crate::Error::invalid(
                "train.batch_size",
                self.train.batch_size,
                "1 (one frame per micro-batch; use grad_accum for frames per step)",
            ));
        }
        Ok(())
    }

    /// The factor on `∂L/∂ŷ` in PAT's perturbation ([`LossScale`]).
    pub fn perturbation_scale(&self) -> f64 {
        match self.loss_scale {
            LossScale::Step => 1.0 / self.train.grad_accum.max(1) as f64,
            LossScale::Frame => 1.0,
        }
    }
}

/// Validation: mean loss and reconstruction metrics with the assignment, BatchNorm in the
/// mode of `spec.validation_bn`.
pub fn validate<S: FrameSource + ?Sized>(model: &Model, frames: &S, spec: &TrainSpec) -> crate::Result<Validation> {
    let mut loss = 0.0;
    let mut evals = Vec::with_capacity(frames.len());
    let train_bn = spec.validation_bn == ValidationBn::Train;
    let n = frames.len();
    for i in 0..n {
        frames.prefetch(&(i..(i + 3).min(n)).collect::<Vec<_>>());
        let fd = frames.get(i)?;
        let fd = fd.as_ref();
        let z = model.net.forward_t(&fd.input, train_bn)?;
        loss += loss_from_logits(&z, fd, spec.method, &spec.assign)?.to_scalar::<f32>()? as f64;
        let p = candle_nn::ops::sigmoid(&z)?.to_vec1::<f32>()?;
        let s = select(fd, &p, Selector::Lap(spec.assign.unmatched()))?;
        evals.push(evaluate_selection(&fd.graph, &s, &spec.filter)?);
    }
    let s = summarise(&evals);
    let mut v = Validation::loss(loss / frames.len().max(1) as f64);
    v.metrics.insert("purity".into(), s.purity);
    v.metrics.insert("efficiency".into(), s.efficiency);
    v.metrics.insert("tpr".into(), s.tpr);
    v.metrics.insert("fpr".into(), s.fpr);
    Ok(v)
}

/// Named stream of the network initialisation of a replicate ([`replicate_seeds`]).
pub const STREAM_INIT: u64 = 0x1417;
/// Named stream of the shuffling of a replicate ([`replicate_seeds`]).
pub const STREAM_SHUFFLE: u64 = 0x5487;

/// The seeds of training replicate `replicate` of a run whose seed is `seed`:
/// `(initialisation, shuffling)`, each from its own named stream.
pub fn replicate_seeds(seed: u64, replicate: u64) -> (u64, u64) {
    use gradlab_core::rng::derive_seed;
    (derive_seed(derive_seed(seed, STREAM_INIT), replicate), derive_seed(derive_seed(seed, STREAM_SHUFFLE), replicate))
}

/// Train a model from initialisation seed `init_seed` (shuffling from `spec.train.seed`); on
/// return it holds the best weights by the monitored metric.
pub fn train<'a, S: FrameSource + ?Sized, V: FrameSource + ?Sized>(
    spec: &TrainSpec,
    init_seed: u64,
    train_frames: &S,
    val_frames: &V,
    checkpoint_dir: Option<&Path>,
    resume: bool,
    observers: Vec<Box<dyn Observer + 'a>>,
) -> crate::Result<(Model, TrainReport)> {
    spec.validate()?;
    let model = Model::new(&spec.model, init_seed)?;
    let report = {
        let mut tr = Trainer::new(spec.train.clone(), &model.vm)?.restore_best(true);
        for o in observers {
            tr = tr.observe(o);
        }
        if let Some(d) = checkpoint_dir {
            tr = tr.checkpoint_to(d).resume(resume);
        }
        // Frames of this micro-batch and the next two: a streaming source builds them meanwhile.
        tr = tr.lookahead(3, |next| train_frames.prefetch(next));
        tr.fit::<crate::Error, _, _>(
            train_frames.len(),
            |idx| {
                let mut total: Option<Tensor> = None;
                let c = spec.perturbation_scale();
                for &i in idx {
                    let fd = train_frames.get(i)?;
                    let z = model.net.forward_t(&fd.input, true)?;
                    let l = loss_from_logits_scaled(&z, &fd, spec.method, &spec.assign, c)?;
                    total = Some(match total {
                        None => l,
                        Some(t) => (t + l)?,
                    });
                }
                let t = total.ok_or_else(|| crate::Error::invalid("batch", 0, "at least one frame"))?;
                Ok((t / idx.len() as f64)?)
            },
            || validate(&model, val_frames, spec),
        )?
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Frame;
    use crate::test_fixtures::toy_frame;
    use gradlab_core::optim::{OptimizerConfig, RmsPropParams};
    use gradlab_core::train::MonitorMode;

    fn spec(method: Method, steps_eval: usize) -> TrainSpec {
        let mut t = TrainConfig::new(6, 1);
        t.grad_accum = 4;
        t.optimizer = OptimizerConfig::Rmsprop(RmsPropParams { lr: 3e-3, ..Default::default() });
        t.eval_every_steps = Some(steps_eval);
        t.monitor = "purity".into();
        t.monitor_mode = MonitorMode::Max;
        t.seed = 3;
        TrainSpec {
            method,
            model: GnnConfig { angle_encoding_dim: 8, ..Default::default() },
            assign: AssignConfig::default(),
            train: t,
            tracker_layers: 2,
            loss_scale: LossScale::Step,
            validation_bn: ValidationBn::Eval,
            filter: TrackFilter::default(),
        }
    }

    fn data(model: &GnnConfig) -> (Vec<FrameData>, Vec<FrameData>) {
        let tr: Vec<Frame> = (0..8).map(|s| toy_frame(s, 12)).collect();
        let va: Vec<Frame> = (100..103).map(|s| toy_frame(s, 12)).collect();
        let g = GraphConfig::default();
        (prepare(&tr, &g, model, 2).unwrap(), prepare(&va, &g, model, 2).unwrap())
    }

    #[test]
    fn ptt_and_pat_training_lower_their_losses() {
        for method in [Method::Ptt, Method::Pat] {
            let s = spec(method, 2);
            let (tr, va) = data(&s.model);
            let before = {
                let m = Model::new(&s.model, 5).unwrap();
                validate(&m, &va, &s).unwrap()
            };
            let (_, rep) = train(&s, 5, &tr, &va, None, false, vec![]).unwrap();
            assert_eq!(rep.steps, 12);
            let best_loss = rep.history.iter().map(|h| h.val_loss).fold(f64::INFINITY, f64::min);
            assert!(best_loss < before.loss, "{method:?}: {best_loss} vs initial {}", before.loss);
        }
    }

    #[test]
    fn a_saved_model_reconstructs_as_the_evaluation_does() {
        let s = spec(Method::Ptt, 2);
        let (tr, va) = data(&s.model);
        let dir = tempfile::tempdir().unwrap();
        let (model, _) = train(&s, 5, &tr, &va, Some(dir.path()), false, vec![]).unwrap();
        let card = ModelCard { spec: s.clone(), graph: GraphConfig::default() };
        // without a card the folder is refused, naming what is missing
        let e = TrainedModel::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("model.json"), "{e}");
        card.save(dir.path()).unwrap();
        let tm = TrainedModel::load(dir.path()).unwrap();
        assert_eq!(tm.card, card);
        let frame = toy_frame(100, 12);
        let rec = tm.reconstruct(&frame).unwrap();
        // the same weights as the trained model (best checkpoint restored), the same tracks as
        // the evaluation path
        let fd = &va[0];
        assert_eq!(rec.graph, fd.graph);
        let p = model.probabilities(fd).unwrap();
        assert_eq!(rec.probabilities, p);
        let sel = select(fd, &p, Selector::Lap(s.assign.unmatched())).unwrap();
        assert_eq!(rec.selected, sel);
        let tracks = s.filter.apply(&fd.graph, build_tracks(&fd.graph, &sel, MAX_PATHS).unwrap());
        assert_eq!(rec.tracks, tracks);
        // graph nodes point back at the frame's hits
        for (n, &h) in rec.graph.hit.iter().enumerate() {
            let hit = &frame.hits[h as usize];
            assert_eq!([hit.x, hit.y, hit.z], rec.graph.position(n));
            assert_eq!(hit.track, rec.graph.track[n]);
        }
    }

    /// Validation purity after 100 steps of 32 frames drawn with replacement from 300 small
    /// simulated frames (10 primaries behind 150 mm water), 30 validation frames; `edit` changes
    /// the reference-default specification.
    fn small_frame_purity(method: Method, init_seed: u64, edit: &dyn Fn(&mut TrainSpec)) -> f64 {
        use crate::setup::FrameStream;
        use crate::sim::{SimConfig, Simulator};
        use gradlab_core::data::Sampling;
        let mut t = TrainConfig::new(100, 1);
        t.grad_accum = 32;
        t.max_steps = Some(100);
        t.sampling = Sampling::WithReplacement;
        t.optimizer = OptimizerConfig::Rmsprop(RmsPropParams { lr: 1e-3, ..Default::default() });
        t.eval_every_steps = Some(100);
        t.monitor = "purity".into();
        t.monitor_mode = MonitorMode::Max;
        t.seed = 11;
        let mut spec = TrainSpec {
            method,
            model: GnnConfig { angle_encoding_dim: 32, ..Default::default() },
            assign: AssignConfig::default(),
            train: t,
            tracker_layers: 3,
            loss_scale: LossScale::Step,
            validation_bn: ValidationBn::Train,
            filter: TrackFilter::default(),
        };
        edit(&mut spec);
        let graph = GraphConfig::default();
        let sim = Simulator::new(&SimConfig::bergen(150.0, 10)).unwrap();
        let (m, k) = (&spec.model, spec.tracker_layers);
        let train_src = FrameStream::new(vec![(sim.clone(), 7)], 300, 0, &graph, m, k).unwrap();
        let val = FrameStream::new(vec![(sim, 7)], 30, 500_000, &graph, m, k).unwrap().prepare_all().unwrap();
        let (_, rep) = train(&spec, init_seed, &train_src, &val, None, false, vec![]).unwrap();
        assert_eq!(rep.steps, 100);
        rep.history.last().unwrap().metrics["purity"]
    }

    /// The check of PAT as the reference trains it: on small simulated frames, after 100
    /// steps, PAT's validation purity is within 5 points of PTT's. Reference defaults
    /// throughout: loss scaled per step before the backward, clamped perturbation without 1/λ,
    /// tracker pairs 1→0, 2→1, 3→2, BatchNorm in train mode for validation, encoding ω from 1 to
    /// ≈ 900. (`pat_reference_settings_ablation` measures each choice reverted alone; see
    /// docs/results/tracking.md.)
    #[test]
    fn pat_trained_as_the_reference_keeps_up_with_ptt_after_100_steps() {
        let (ptt, pat) = (small_frame_purity(Method::Ptt, 5, &|_| {}), small_frame_purity(Method::Pat, 5, &|_| {}));
        eprintln!("validation purity after 100 steps: PTT {ptt:.3}, PAT {pat:.3}");
        assert!(ptt > 0.5, "PTT learns: {ptt}");
        assert!(pat > ptt - 0.05, "PAT {pat} vs PTT {ptt}");
    }

    /// Which of the reference's training choices matter for PAT: validation purity after 100
    /// steps on small frames, each choice reverted alone, two initialisations. Prints a table
    /// (`cargo test --release -p gradlab-track --lib pat_reference_settings_ablation -- --ignored --nocapture`).
    #[test]
    #[ignore = "an ablation study (≈ 5 min), run by hand"]
    fn pat_reference_settings_ablation() {
        type Edit = Box<dyn Fn(&mut TrainSpec)>;
        let old_encoding = |s: &mut TrainSpec| {
            s.model.angle_scale = 100.0;
            s.model.encoding_base = 100.0;
        };
        let rows: Vec<(&str, Method, Edit)> = vec![
            ("PTT, reference settings", Method::Ptt, Box::new(|_| {})),
            ("PAT, reference settings", Method::Pat, Box::new(|_| {})),
            ("PAT, frame loss unscaled (perturbation ×32)", Method::Pat, Box::new(|s| s.loss_scale = LossScale::Frame)),
            ("PAT, no clamp of w'", Method::Pat, Box::new(|s| s.assign.clamp_perturbed = false)),
            ("PAT, gradient ÷ λ", Method::Pat, Box::new(|s| s.assign.scale_by_lambda = true)),
            ("PAT, tracker term 1→0, 2→1 only", Method::Pat, Box::new(|s| s.tracker_layers = 2)),
            ("PAT, validation BN in eval mode", Method::Pat, Box::new(|s| s.validation_bn = ValidationBn::Eval)),
            ("PAT, encoding √(100θ)·100^(−2i/d)", Method::Pat, Box::new(old_encoding)),
            (
                "PAT, all six reverted",
                Method::Pat,
                Box::new(move |s| {
                    s.loss_scale = LossScale::Frame;
                    s.assign.clamp_perturbed = false;
                    s.assign.scale_by_lambda = true;
                    s.tracker_layers = 2;
                    s.validation_bn = ValidationBn::Eval;
                    old_encoding(s);
                }),
            ),
        ];
        println!("| variant | purity, init 5 | purity, init 6 | mean |\n|---|---|---|---|");
        for (name, method, edit) in &rows {
            let a = small_frame_purity(*method, 5, edit.as_ref());
            let b = small_frame_purity(*method, 6, edit.as_ref());
            println!("| {name} | {:.1} | {:.1} | {:.1} |", 100.0 * a, 100.0 * b, 50.0 * (a + b));
        }
    }

    #[test]
    fn resume_reproduces_an_uninterrupted_run() {
        let s = spec(Method::Pat, 3);
        let (tr, va) = data(&s.model);
        let read = |m: &Model| gradlab_core::params::read_params_f64(&m.vm).unwrap();
        let full = {
            let tmp = tempfile::tempdir().unwrap();
            let (m, _) = train(&s, 5, &tr, &va, Some(tmp.path()), false, vec![]).unwrap();
            let _ = m;
            // Compare last weights: reload last.safetensors.
            let m2 = Model::new(&s.model, 0).unwrap();
            gradlab_core::train::load_weights(&m2.vm, &tmp.path().join("last.safetensors")).unwrap();
            read(&m2)
        };
        let tmp = tempfile::tempdir().unwrap();
        {
            let model = Model::new(&s.model, 5).unwrap();
            let mut t = Trainer::new(s.train.clone(), &model.vm).unwrap().checkpoint_to(tmp.path()).stop_after_steps(5);
            let r = t
                .fit::<crate::Error, _, _>(
                    tr.len(),
                    |idx| {
                        let z = model.net.forward_t(&tr[idx[0]].input, true)?;
                        Ok(loss_from_logits_scaled(&z, &tr[idx[0]], s.method, &s.assign, s.perturbation_scale())?)
                    },
                    || validate(&model, &va, &s),
                )
                .unwrap();
            assert!(r.interrupted);
        }
        let (_, rep) = train(&s, 5, &tr, &va, Some(tmp.path()), true, vec![]).unwrap();
        assert_eq!(rep.steps, 12);
        let m2 = Model::new(&s.model, 0).unwrap();
        gradlab_core::train::load_weights(&m2.vm, &tmp.path().join("last.safetensors")).unwrap();
        assert_eq!(read(&m2), full);
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn losses_match_hand_computation() {
        let model = GnnConfig { angle_encoding_dim: 8, ..Default::default() };
        let fd = &prepare(&[toy_frame(1, 3)], &GraphConfig::default(), &model, 2).unwrap()[0];
        let n = fd.num_edges();
        let zs: Vec<f32> = (0..n).map(|k| ((k * 7919) % 13) as f32 / 3.0 - 2.0).collect();
        let z = Tensor::from_vec(zs.clone(), n, &Device::Cpu).unwrap();
        let truth: Vec<bool> = fd.graph.edge_truth.clone();
        let trk: Vec<bool> = fd.graph.dst.iter().map(|&d| fd.graph.layer[d as usize] < 2).collect();
        let split = |f: &dyn Fn(usize) -> f64| {
            let (mut a, mut na, mut b, mut nb) = (0.0, 0, 0.0, 0);
            for k in 0..n {
                if trk[k] {
                    a += f(k);
                    na += 1;
                } else {
                    b += f(k);
                    nb += 1;
                }
            }
            a / na as f64 + b / nb as f64
        };
        let bce = split(&|k| {
            let p = 1.0 / (1.0 + (-(zs[k] as f64)).exp());
            if truth[k] { -p.ln() } else { -(1.0 - p).ln() }
        });
        let ours =
            loss_from_logits(&z, fd, Method::Ptt, &AssignConfig::default()).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((ours - bce).abs() < 1e-4, "{ours} vs {bce}");
        let p: Vec<f32> = zs.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect();
        let sel = select(fd, &p, Selector::Lap(Unmatched::Forbidden)).unwrap();
        let ham = split(&|k| if sel[k] != truth[k] { 1.0 } else { 0.0 });
        let ours =
            loss_from_logits(&z, fd, Method::Pat, &AssignConfig::default()).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((ours - ham).abs() < 1e-5, "{ours} vs {ham}");
        // The oracle selection gives perfect purity and the threshold selector is a plain cut.
        let ev = evaluate_selection(&fd.graph, &truth, &TrackFilter::default()).unwrap();
        assert_eq!(ev.tracks.unwrap().purity, 1.0);
        assert_eq!((ev.fp, ev.fn_), (0, 0));
        assert_eq!(select(fd, &p, Selector::Threshold(0.5)).unwrap(), p.iter().map(|&x| x > 0.5).collect::<Vec<_>>());
        let mut bad = spec(Method::Ptt, 1);
        bad.train.batch_size = 2;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn evaluation_on_one_process_equals_evaluate_model() {
        let s = spec(Method::Ptt, 2);
        let (_, va) = data(&s.model);
        let model = Model::new(&s.model, 5).unwrap();
        let sel = Selector::Lap(s.assign.unmatched());
        let one = evaluate_model(&model, &va, sel, &s.filter).unwrap();
        let on = evaluate_model_on(&gradlab_core::dist::Local, &model, &va, sel, &s.filter).unwrap().unwrap();
        assert_eq!(one, on);
        assert_eq!(on.frames, va.len());
    }
}
