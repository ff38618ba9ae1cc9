//! The emulator: normalisers, the MLP(s), the head, save/load and batched inference.

use super::folded::{DenseF64, Folded};
use super::heads::{
    self, Closing, HeadKind, LogSign, N_ENV, N_STATE, N_WATER, N_X, N_Y, PAPER_CLOSING, Penalties, PenaltyScales,
};
use crate::error::{Error, Result};
use crate::layout;
use crate::state::{AerosolState, Environment};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use gradlab_core::data::{array_to_tensor, tensor_to_array};
use gradlab_core::nn::{Activation, Mlp};
use gradlab_core::normalize::{NormKind, Normalizer};
use gradlab_core::params::Init;
use ndarray::{Array2, ArrayView2, Axis};
use std::path::{Path, PathBuf};

/// How the 28 targets are represented for the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// z-score per column (the paper's default).
    #[default]
    ZScore,
    /// core's signed log `sign·ln(1 + |v|/s)`, then z-score.
    SignedLog,
    /// z-scored `ln(|v| + ε)` regressed, plus a sign classifier for the columns whose sign is not
    /// fixed on the training data (the paper's log variant).
    LogSign,
}

fn default_hidden() -> Vec<usize> {
    vec![128, 128]
}
fn yes() -> bool {
    true
}
fn default_eps_rel() -> f64 {
    1e-6
}

/// Architecture, normalisation and constraints of one emulator variant.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Hidden layer widths (default 128, 128: the paper's 32 → 128 → 128 → 28).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Input normalisation.
    #[serde(default)]
    pub input_norm: NormKind,
    /// Target representation.
    #[serde(default)]
    pub output: OutputKind,
    /// Constraint layer.
    #[serde(default)]
    pub head: HeadKind,
    /// Whether the head is part of the model during training (it is always applied in
    /// inference). Ignored for `log_sign`, whose losses act on magnitudes and signs.
    #[serde(default = "yes")]
    pub head_in_training: bool,
    /// Soft constraints in the loss.
    #[serde(default)]
    pub penalties: Penalties,
    /// ε of the log-magnitude transform relative to the column's mean |value|.
    #[serde(default = "default_eps_rel")]
    pub log_eps_rel: f64,
    /// Which tendency per species the completion head computes (default: the paper's).
    #[serde(default)]
    pub closing: Closing,
    /// Robust target scaling: when `q > 0`, the training targets are clipped per column to their
    /// `[q, 1 − q]` quantiles before the output normaliser is fitted and before the loss (the
    /// test targets and the predictions are not clipped). 0 = off (the paper's plain z-score).
    #[serde(default)]
    pub target_winsorize: f64,
    /// Robust output scale without clipping: when `q > 0`, the output normaliser is fitted on the
    /// training targets clipped to their `[q, 1 − q]` quantiles, but the loss sees the unclipped
    /// targets. For heavy-tailed columns the scale then follows the bulk of the cells instead of
    /// a handful of extreme ones; pair it with `huber_delta` so those cells cannot dominate the
    /// loss. 0 = off.
    #[serde(default)]
    pub target_scale_quantile: f64,
    /// Huber loss in the normalised target space: `d²` for `|d| ≤ δ`, `2δ|d| − δ²` beyond (equal
    /// to the MSE near zero, linear in the tails). 0 = plain MSE (the paper's).
    #[serde(default)]
    pub huber_delta: f64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            hidden: default_hidden(),
            input_norm: NormKind::ZScore,
            output: OutputKind::ZScore,
            head: HeadKind::Plain,
            head_in_training: true,
            penalties: Penalties::default(),
            log_eps_rel: default_eps_rel(),
            closing: Closing::Paper,
            target_winsorize: 0.0,
            target_scale_quantile: 0.0,
            huber_delta: 0.0,
        }
    }
}

impl EmulatorConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(Error::invalid("hidden", format!("{:?}", self.hidden), "one or more widths >= 1"));
        }
        for (f, v) in [("penalties.mass", self.penalties.mass), ("penalties.positivity", self.penalties.positivity)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(f, v, "a finite weight >= 0"));
            }
        }
        if !(self.log_eps_rel > 0.0 && self.log_eps_rel < 1.0) {
            return Err(Error::invalid("log_eps_rel", self.log_eps_rel, "0 < eps < 1"));
        }
        if !(self.target_winsorize >= 0.0 && self.target_winsorize < 0.5) {
            return Err(Error::invalid("target_winsorize", self.target_winsorize, "a quantile 0 <= q < 0.5"));
        }
        if !(self.target_scale_quantile >= 0.0 && self.target_scale_quantile < 0.5) {
            return Err(Error::invalid("target_scale_quantile", self.target_scale_quantile, "a quantile 0 <= q < 0.5"));
        }
        if !(self.huber_delta >= 0.0 && self.huber_delta.is_finite()) {
            return Err(Error::invalid("huber_delta", self.huber_delta, "a finite δ >= 0 (0: MSE)"));
        }
        Ok(())
    }
}

/// `emulator.json` of a saved emulator.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    format: String,
    config: EmulatorConfig,
    dt: f64,
    x_norm: Normalizer,
    y_norm: Normalizer,
    log_sign: Option<LogSign>,
    scales: PenaltyScales,
    #[serde(default = "paper_closing")]
    closing: [usize; 4],
    #[serde(default)]
    clip: Option<Vec<[f32; 2]>>,
}

fn paper_closing() -> [usize; 4] {
    PAPER_CLOSING
}

/// Per column the `[q, 1 − q]` quantiles of `t` (nearest rank).
fn quantile_bounds(t: &ArrayView2<f32>, q: f64) -> Vec<[f32; 2]> {
    t.columns()
        .into_iter()
        .map(|c| {
            let mut v: Vec<f32> = c.to_vec();
            v.sort_by(f32::total_cmp);
            if v.is_empty() {
                return [f32::NEG_INFINITY, f32::INFINITY];
            }
            let last = (v.len() - 1) as f64;
            [v[(q * last).round() as usize], v[((1.0 - q) * last).round() as usize]]
        })
        .collect()
}

/// Mean over all elements of `d²` (δ = 0) or of the Huber loss scaled to match it near zero:
/// `min(|d|, δ)² + 2δ·max(|d| − δ, 0)` = `d²` for `|d| ≤ δ`, `2δ|d| − δ²` beyond.
pub(crate) fn huber_or_mse(d: &Tensor, delta: f64) -> Result<Tensor> {
    if delta <= 0.0 {
        return Ok(d.sqr()?.mean_all()?);
    }
    let a = d.abs()?;
    let quad = a.clamp(0.0, delta)?.sqr()?;
    let lin = ((a - delta)?.relu()? * (2.0 * delta))?;
    Ok(quad.add(&lin)?.mean_all()?)
}

fn clip_columns(t: &ArrayView2<f32>, bounds: &[[f32; 2]]) -> Array2<f32> {
    let mut out = t.to_owned();
    for ((_, j), v) in out.indexed_iter_mut() {
        *v = v.clamp(bounds[j][0], bounds[j][1]);
    }
    out
}

const FORMAT: &str = "gradlab-aerosol/m7-emulator/v1";
const CONFIG_FILE: &str = "emulator.json";
const WEIGHTS_FILE: &str = "weights.safetensors";

/// Physical training data of the emulator: inputs X `[N, 32]` and targets `[N, 28]`
/// (24 tendencies, 4 water contents).
#[derive(Debug, Clone)]
pub struct EmulatorData {
    /// Inputs in physical units.
    pub x: Array2<f32>,
    /// Targets in physical units.
    pub t: Array2<f32>,
}

impl EmulatorData {
    /// From dataset tables X `[N, 32]` and y `[N, 28]` (state after the step, then water), in
    /// f64 so that the tendencies `y − x` are computed before rounding to f32.
    pub fn from_xy(x: &ArrayView2<f64>, y: &ArrayView2<f64>) -> Result<Self> {
        check_cols("X", x.dim(), N_X)?;
        check_cols("y", y.dim(), N_Y)?;
        if x.nrows() != y.nrows() {
            return Err(Error::Shape {
                what: "y".into(),
                expected: format!("[{}, {N_Y}] (as many rows as X)", x.nrows()),
                got: vec![y.nrows(), y.ncols()],
            });
        }
        let t = Array2::from_shape_fn((x.nrows(), N_Y), |(i, j)| {
            if j < N_STATE { (y[[i, j]] - x[[i, N_ENV + j]]) as f32 } else { y[[i, j]] as f32 }
        });
        Ok(EmulatorData { x: x.mapv(|v| v as f32), t })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// The given rows.
    pub fn rows(&self, idx: &[usize]) -> EmulatorData {
        EmulatorData { x: self.x.select(Axis(0), idx), t: self.t.select(Axis(0), idx) }
    }
}

pub(crate) fn check_cols(what: &str, dim: (usize, usize), cols: usize) -> Result<()> {
    if dim.1 != cols {
        return Err(Error::Shape { what: what.into(), expected: format!("[N, {cols}]"), got: vec![dim.0, dim.1] });
    }
    Ok(())
}

/// What one batched emulator step returns.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorStep {
    /// The states after the step.
    pub states: Vec<AerosolState>,
    /// Aerosol water of the soluble modes NS, KS, AS, CS after the step \[kg m⁻³\].
    pub water: Vec<[f64; 4]>,
}

/// A trained (or freshly initialised) M7 emulator.
///
/// ```no_run
/// use gradlab_aerosol::emulator::Emulator;
/// use gradlab_aerosol::{AerosolState, Environment};
///
/// let emulator = Emulator::load("runs/m7-emulator/latest/models/completion_max_variance")?;
/// let env = vec![Environment { h2so4_production: 1e4, ..Environment::default() }; 2];
/// let mut state = AerosolState { h2so4: 1e7, ..AerosolState::default() };
/// state.so4[1] = 1e9;
/// state.n[1] = 500.0;
/// let out = emulator.step(&env, &[state, state])?;
/// assert_eq!(out.states.len(), 2);
/// # Ok::<(), gradlab_aerosol::Error>(())
/// ```
pub struct Emulator {
    /// Settings and everything fitted on the training data (what `emulator.json` holds).
    s: Saved,
    vm: VarMap,
    reg: Mlp,
    cls: Option<Mlp>,
    device: Device,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("config", &self.s.config).field("dt", &self.s.dt).finish_non_exhaustive()
    }
}

/// Rows per forward pass in inference (bounds memory for a global step).
const CHUNK: usize = 1 << 16;

impl Emulator {
    /// A new emulator with normalisers fitted on `train` and seeded initial weights. `dt` is
    /// the box model's time step (the sulfur budget is `P·dt`).
    pub fn new(cfg: EmulatorConfig, dt: f64, train: &EmulatorData, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        if !(dt > 0.0 && dt.is_finite()) {
            return Err(Error::invalid("dt", dt, "a time step > 0 s"));
        }
        check_cols("training X", train.x.dim(), N_X)?;
        check_cols("training targets", train.t.dim(), N_Y)?;
        let xn = Normalizer::fit(&train.x.view(), cfg.input_norm)?;
        let clip = (cfg.target_winsorize > 0.0).then(|| quantile_bounds(&train.t.view(), cfg.target_winsorize));
        // The normaliser sees the clipped targets when winsorizing (clipped in the loss too) or
        // when only the scale is robust (unclipped in the loss).
        let fit_bounds = clip.clone().or_else(|| {
            (cfg.target_scale_quantile > 0.0).then(|| quantile_bounds(&train.t.view(), cfg.target_scale_quantile))
        });
        let clipped;
        let tt = match &fit_bounds {
            Some(b) => {
                clipped = clip_columns(&train.t.view(), b);
                clipped.view()
            }
            None => train.t.view(),
        };
        let (yn, log_sign) = match cfg.output {
            OutputKind::ZScore => (Normalizer::fit(&tt, NormKind::ZScore)?, None),
            OutputKind::SignedLog => (Normalizer::fit(&tt, NormKind::SignedLog)?, None),
            OutputKind::LogSign => {
                let ls = LogSign::fit(&tt, cfg.log_eps_rel);
                (Normalizer::fit(&ls.magnitude(&tt).view(), NormKind::ZScore)?, Some(ls))
            }
        };
        let closing = heads::closing_columns(cfg.closing, &train.t.view());
        let n = train.len() as f64;
        let std: Vec<f64> = train
            .t
            .columns()
            .into_iter()
            .map(|c| {
                let m = c.iter().map(|&v| v as f64).sum::<f64>() / n;
                (c.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n).sqrt()
            })
            .collect();
        let scales = PenaltyScales::from_std(&std);
        let saved =
            Saved { format: FORMAT.into(), config: cfg, dt, x_norm: xn, y_norm: yn, log_sign, scales, closing, clip };
        let em = Self::build(saved, device)?;
        // PyTorch's nn.Linear default, as the paper's PyTorch emulator starts.
        gradlab_core::params::init(&em.vm, seed, Init::TorchDefault)?;
        Ok(em)
    }

    fn build(s: Saved, device: &Device) -> Result<Self> {
        heads::check_closing(&s.closing)?;
        if let Some(c) = &s.clip
            && c.len() != N_Y
        {
            return Err(Error::invalid("clip", c.len(), format!("{N_Y} column bounds")));
        }
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, device);
        let mut sizes = vec![N_X];
        sizes.extend(&s.config.hidden);
        sizes.push(N_Y);
        let reg = Mlp::new(&sizes, Activation::Relu, vb.pp("reg"))?;
        let cls = match &s.log_sign {
            Some(ls) if !ls.variable().is_empty() => {
                let mut cls_sizes = sizes.clone();
                *cls_sizes.last_mut().expect("non-empty") = ls.variable().len();
                Some(Mlp::new(&cls_sizes, Activation::Relu, vb.pp("cls"))?)
            }
            _ => None,
        };
        Ok(Emulator { s, vm, reg, cls, device: device.clone() })
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.s.config
    }

    /// The time step of the sulfur budget \[s\].
    pub fn dt(&self) -> f64 {
        self.s.dt
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The parameters (for the trainer and checkpoints).
    pub fn varmap(&self) -> &VarMap {
        &self.vm
    }

    /// The sign/magnitude encoding, for `log_sign` emulators.
    pub fn log_sign(&self) -> Option<&LogSign> {
        self.s.log_sign.as_ref()
    }

    /// The column per species (sulfur, BC, OC, dust) that the completion head computes.
    pub fn closing(&self) -> [usize; 4] {
        self.s.closing
    }

    /// Number of trainable parameters.
    pub fn parameters(&self) -> usize {
        gradlab_core::params::count_params(&self.vm)
    }

    /// Network outputs `(raw [N, 28], sign logits)` for physical inputs `[N, 32]`.
    pub fn raw(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let xn = self.s.x_norm.transform_tensor(x)?;
        let raw = self.reg.forward(&xn)?;
        let logits = match &self.cls {
            Some(c) => Some(c.forward(&xn)?),
            None => None,
        };
        Ok((raw, logits))
    }

    /// Physical outputs before the head.
    pub fn decode(&self, raw: &Tensor, logits: Option<&Tensor>) -> Result<Tensor> {
        match &self.s.log_sign {
            Some(ls) => ls.decode(&self.s.y_norm.inverse_tensor(raw)?, logits),
            None => Ok(self.s.y_norm.inverse_tensor(raw)?),
        }
    }

    /// Physical outputs `[N, 28]` (tendencies and water) of physical inputs `[N, 32]`, with the
    /// head applied — the emulator's prediction as a tensor on its device.
    pub fn forward_physical(&self, x: &Tensor) -> Result<Tensor> {
        let (raw, logits) = self.raw(x)?;
        let phys = self.decode(&raw, logits.as_ref())?;
        heads::apply(self.s.config.head, &phys, x, self.s.dt, &self.s.closing)
    }

    /// Training targets in the network's representation: `(targets [N, 28], sign labels)`.
    pub fn encode_targets(&self, t: &ArrayView2<f32>) -> Result<(Array2<f32>, Option<Array2<f32>>)> {
        check_cols("targets", t.dim(), N_Y)?;
        let clipped = self.s.clip.as_ref().map(|b| clip_columns(t, b));
        let tc = match &clipped {
            Some(c) => c.view(),
            None => t.view(),
        };
        match &self.s.log_sign {
            // Signs from the unclipped targets (clipping at a quantile may cross zero).
            Some(ls) => Ok((self.s.y_norm.transform(&ls.magnitude(&tc).view())?, Some(ls.labels(t)))),
            None => Ok((self.s.y_norm.transform(&tc)?, None)),
        }
    }

    /// The training loss of a batch: MSE (or Huber, `huber_delta`) in the network's representation (after the head, in
    /// physical units then re-normalised, when the head is active in training), plus the sign
    /// cross-entropy for `log_sign`, plus the soft penalties. `x` physical `[N, 32]`, `target`
    /// and `labels` from [`Emulator::encode_targets`].
    pub fn loss(&self, x: &Tensor, target: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let (raw, logits) = self.raw(x)?;
        let head_on =
            self.s.config.head_in_training && self.s.config.head != HeadKind::Plain && self.s.log_sign.is_none();
        let need_phys = head_on || self.s.config.penalties.any();
        let phys = if need_phys {
            let p = self.decode(&raw, logits.as_ref())?;
            Some(if head_on { heads::apply(self.s.config.head, &p, x, self.s.dt, &self.s.closing)? } else { p })
        } else {
            None
        };
        let pred = match (&phys, head_on) {
            (Some(p), true) => self.s.y_norm.transform_tensor(p)?,
            _ => raw,
        };
        let mut loss = huber_or_mse(&pred.sub(target)?, self.s.config.huber_delta)?;
        if let (Some(z), Some(l)) = (&logits, labels) {
            loss = loss.add(&heads::bce_with_logits(z, l)?)?;
        }
        if let Some(p) = &phys
            && let Some(pen) = heads::penalty(&self.s.config.penalties, &self.s.scales, p, x, self.s.dt)?
        {
            loss = loss.add(&pen)?;
        }
        Ok(loss)
    }

    /// Predicted tendencies and water `[N, 28]` (physical units, head applied) for physical
    /// inputs `[N, 32]`, computed in chunks.
    ///
    /// On the CPU with a z-scored output and no sign classifier, the normalisers and a linear
    /// head are folded into the network's first and last layers and the rows are spread over the
    /// rayon pool (see [`super::folded`]); otherwise the network runs as in training, in chunks.
    pub fn predict(&self, x: &ArrayView2<f32>) -> Result<Array2<f32>> {
        check_cols("X", x.dim(), N_X)?;
        if let Some(f) = self.folded()? {
            return f.predict(x);
        }
        self.predict_unfolded(x)
    }

    /// [`Emulator::predict`] through the network as trained (normalisers and head as separate
    /// ops), in chunks of rows.
    pub fn predict_unfolded(&self, x: &ArrayView2<f32>) -> Result<Array2<f32>> {
        check_cols("X", x.dim(), N_X)?;
        let mut out = Array2::<f32>::zeros((x.nrows(), N_Y));
        let mut start = 0;
        while start < x.nrows() {
            let end = (start + CHUNK).min(x.nrows());
            let xt = array_to_tensor(&x.slice(ndarray::s![start..end, ..]), &self.device)?;
            let p = tensor_to_array(&self.forward_physical(&xt)?)?;
            out.slice_mut(ndarray::s![start..end, ..]).assign(&p);
            start = end;
        }
        Ok(out)
    }

    /// The inference network with the normalisers and the head folded in, where that applies.
    fn folded(&self) -> Result<Option<Folded>> {
        if !self.device.is_cpu() || self.cls.is_some() || self.s.log_sign.is_some() {
            return Ok(None);
        }
        let layers = self
            .reg
            .layers()
            .iter()
            .map(|l| -> Result<DenseF64> {
                let (outputs, inputs) = l.weight().dims2()?;
                let w = l.weight().to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                let b = match l.bias() {
                    Some(b) => b.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                    None => vec![0.0; outputs],
                };
                Ok(DenseF64 { w, b, inputs, outputs })
            })
            .collect::<Result<Vec<_>>>()?;
        Folded::new(layers, &self.s.x_norm, &self.s.y_norm, self.s.config.head, self.s.dt, &self.s.closing)
    }

    /// One emulated step in the dataset layout: X `[N, 32]` → y `[N, 28]` (states after the
    /// step, then water), in f64. With the correction head the next state is `max(x + Δ, 0)`
    /// evaluated in f64, so no state is negative.
    pub fn step_table(&self, x: &ArrayView2<f64>) -> Result<Array2<f64>> {
        check_cols("X", x.dim(), N_X)?;
        let d = self.predict(&x.mapv(|v| v as f32).view())?;
        let positive = self.s.config.head == HeadKind::Correction;
        Ok(Array2::from_shape_fn((x.nrows(), N_Y), |(i, j)| {
            if j < N_STATE {
                let v = x[[i, N_ENV + j]] + d[[i, j]] as f64;
                if positive { v.max(0.0) } else { v }
            } else {
                d[[i, j]] as f64
            }
        }))
    }

    /// One emulated step for a batch of cells (the host-model interface): environments and
    /// states in M7 units, one per cell. Sea salt is not emulated and passes through unchanged.
    pub fn step(&self, env: &[Environment], state: &[AerosolState]) -> Result<EmulatorStep> {
        if env.len() != state.len() {
            return Err(Error::Shape {
                what: "env vs state".into(),
                expected: format!("{} environments (one per state)", state.len()),
                got: vec![env.len()],
            });
        }
        let mut x = Array2::<f64>::zeros((env.len(), N_X));
        for (i, (e, s)) in env.iter().zip(state).enumerate() {
            let r = x.row_mut(i).into_slice().expect("standard layout");
            layout::write_env(e, &mut r[..N_ENV]);
            layout::write_state(s, false, &mut r[N_ENV..]);
        }
        let y = self.step_table(&x.view())?;
        let mut states = Vec::with_capacity(env.len());
        let mut water = Vec::with_capacity(env.len());
        for (i, s0) in state.iter().enumerate() {
            let r = y.row(i);
            let r = r.as_slice().expect("standard layout");
            let mut s = layout::read_state(&r[..N_STATE], false);
            s.ss = s0.ss;
            states.push(s);
            water.push([r[N_STATE], r[N_STATE + 1], r[N_STATE + 2], r[N_STATE + 3]]);
        }
        let _ = N_WATER;
        Ok(EmulatorStep { states, water })
    }

    /// Writes `emulator.json` (configuration, time step, normalisers) and
    /// `weights.safetensors` into `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        gradlab_core::io::write_json(&dir.join(CONFIG_FILE), &self.s)?;
        let p = dir.join(WEIGHTS_FILE);
        self.vm
            .save(&p)
            .map_err(|e| Error::SavedEmulator { path: dir.to_path_buf(), detail: format!("{WEIGHTS_FILE}: {e}") })?;
        Ok(())
    }

    /// Loads a saved emulator onto the CPU.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(dir, &Device::Cpu)
    }

    /// Loads a saved emulator onto `device`.
    pub fn load_on(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir: PathBuf = dir.as_ref().to_path_buf();
        let bad = |detail: String| Error::SavedEmulator { path: dir.clone(), detail };
        let cfg_path = dir.join(CONFIG_FILE);
        if !cfg_path.exists() {
            return Err(bad(format!("no {CONFIG_FILE} (write one with Emulator::save)")));
        }
        let s: Saved = gradlab_core::io::read_json(&cfg_path)?;
        if s.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", s.format)));
        }
        s.config.validate()?;
        if s.x_norm.columns() != N_X || s.y_norm.columns() != N_Y {
            return Err(bad(format!(
                "normalisers have {} and {} columns, expected {N_X} and {N_Y}",
                s.x_norm.columns(),
                s.y_norm.columns()
            )));
        }
        if (s.config.output == OutputKind::LogSign) != s.log_sign.is_some() {
            return Err(bad("log_sign encoding present iff output = log_sign".into()));
        }
        let em = Self::build(s, device)?;
        gradlab_core::train::load_weights(&em.vm, &dir.join(WEIGHTS_FILE))?;
        Ok(em)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlab_core::params::{read_params_f64, sorted_vars};

    /// Inputs with distinct column scales, targets a fixed function of them.
    fn data(n: usize) -> EmulatorData {
        let x = Array2::from_shape_fn((n, N_X), |(i, j)| 1.0 + ((i * 7 + j * 3) % 11) as f64 * (1.0 + j as f64));
        let y = Array2::from_shape_fn((n, N_Y), |(i, j)| x[[i, (j + 1) % N_X]] * 0.5 + j as f64);
        EmulatorData::from_xy(&x.view(), &y.view()).unwrap()
    }

    #[test]
    fn network_forward_matches_hand_computation_and_init_is_seeded() {
        let d = data(40);
        let cfg = EmulatorConfig { hidden: vec![4], ..Default::default() };
        let new = |seed| Emulator::new(cfg.clone(), 720.0, &d, seed, &Device::Cpu).unwrap();
        let em = new(5);
        let a = read_params_f64(em.varmap()).unwrap();
        assert_eq!(a, read_params_f64(new(5).varmap()).unwrap());
        assert_ne!(a, read_params_f64(new(6).varmap()).unwrap());
        // PyTorch's nn.Linear default: weights and biases within ±1/√fan_in (32 for l0, 4 for l1).
        for (name, v) in sorted_vars(em.varmap()) {
            let bound = if name.starts_with("reg.l0") { 1.0 / 32f64.sqrt() } else { 0.5 };
            let vals = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(vals.iter().all(|x| (x.abs() as f64) <= bound), "{name}");
        }
        // Hand-computed forward pass of the regression MLP (ReLU hidden layer, linear output) on
        // the normalised inputs.
        let get = |n: &str| em.varmap().data().lock().unwrap()[n].as_tensor().clone();
        let (w0, b0) = (get("reg.l0.weight").to_vec2::<f32>().unwrap(), get("reg.l0.bias").to_vec1::<f32>().unwrap());
        let (w1, b1) = (get("reg.l1.weight").to_vec2::<f32>().unwrap(), get("reg.l1.bias").to_vec1::<f32>().unwrap());
        let x = array_to_tensor(&d.x.slice(ndarray::s![0..1, ..]), &Device::Cpu).unwrap();
        let xn = em.s.x_norm.transform_tensor(&x).unwrap().to_vec2::<f32>().unwrap().remove(0);
        let h: Vec<f32> = (0..4).map(|i| (b0[i] + (0..N_X).map(|j| w0[i][j] * xn[j]).sum::<f32>()).max(0.0)).collect();
        let y: Vec<f32> = (0..N_Y).map(|i| b1[i] + (0..4).map(|j| w1[i][j] * h[j]).sum::<f32>()).collect();
        let out = em.raw(&x).unwrap().0.to_vec2::<f32>().unwrap();
        for i in 0..N_Y {
            assert!((out[0][i] - y[i]).abs() < 1e-5, "{out:?} {y:?}");
        }
    }
}
