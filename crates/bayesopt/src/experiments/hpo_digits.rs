//! `bo-hpo-digits`: the paper's HPO experiment on real data, scaled to this machine.
//!
//! Ram et al. (MLHPC 2019) tuned LeNet-5 on MNIST and report 0.97 accuracy after 168 iterations
//! of lazy BO against 732 of classic BO. Here a LeNet-style CNN (conv 3×3 → ReLU → max-pool 2 →
//! conv 3×3 → ReLU → max-pool 2 → linear → dropout → linear, candle-nn, trained by the shared
//! [`Trainer`] with SGD + momentum) is tuned on scikit-learn's 8×8 digits (1,797 images shipped in
//! `data/digits/`, see its README), over learning rate (log), momentum, width, dropout, batch
//! size (`2^batch_log2`) and weight decay (log). The objective is the validation error after a
//! fixed number of epochs on one seeded, stratified train/validation/test split.
//!
//! Methods: BO with lag 1 (classic), lag 3, lag ∞ and the adaptive policy, random search, and BO
//! with q points per iteration (the batch evaluated one after the other here; iterations count
//! batches). Each method runs `seeds` replicates with the full budget; replicate `s` of every
//! method trains every configuration from the same initialisation, shuffling and dropout seeds,
//! so the objective is one deterministic function per replicate and the methods are compared on
//! paired runs. Per run: the evaluations and wall time (model + acquisition + training) until the
//! best validation accuracy first reaches `target`, the best validation accuracy, and the test
//! accuracy of the best configuration, measured once after the search by retraining it (which
//! also checks that its recorded validation accuracy is reproduced). A training whose loss
//! becomes non-finite counts as chance accuracy (0.1).
//!
//! Each finished run (method, replicate) is a stage: `--resume` reads it back.

use super::{check_nested_study, mean_std, pm, replicate_seed, require_nonempty, require_positive};
use crate::error::{Error, Result};
use crate::space::{Param, Point, Space, Value};
use crate::study::{LagPolicy, Study, StudyConfig};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder, VarMap};
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::optim::{OptimizerConfig, SgdParams};
use gradlab_core::params::{Init, init};
use gradlab_core::plot::{LinePlot, Mark};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::rng::{derive_seed, permutation, rng, stream_rng};
use gradlab_core::train::{TrainConfig, Trainer, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Number of classes.
pub const N_CLASSES: usize = 10;
/// Side of an image in pixels.
pub const SIDE: usize = 8;
/// Largest pixel value (each pixel counts the on pixels of a 4×4 block).
pub const MAX_PIXEL: u8 = 16;
/// Accuracy recorded for a training whose loss became non-finite (chance).
pub const DIVERGED_ACCURACY: f64 = 0.1;

const SPLIT_STREAM: u64 = 0x5350_4c54; // "SPLT"
const STUDY_STREAM: u64 = 0x5354_4459; // "STDY"
const RANDOM_STREAM: u64 = 0x524e_4453; // "RNDS"
const TRAIN_STREAM: u64 = 0x5452_4e53; // "TRNS"
const INIT_STREAM: u64 = 1;
const SHUFFLE_STREAM: u64 = 2;
const DROPOUT_STREAM: u64 = 3;

// ---------------------------------------------------------------------------------------------
// Data

/// The digits set: `images` row-major, 64 pixels (0..=16) per image; `labels` 0..=9.
#[derive(Clone, Debug)]
pub struct Digits {
    /// Pixels, `len() × 64`.
    pub images: Vec<u8>,
    /// Labels.
    pub labels: Vec<u8>,
}

impl Digits {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Images per label 0..=9.
    pub fn label_counts(&self) -> [usize; N_CLASSES] {
        let mut c = [0; N_CLASSES];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// FNV-1a (64 bit) over the pixels, then the labels.
    pub fn checksum(&self) -> u64 {
        self.images
            .iter()
            .chain(&self.labels)
            .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
    }

    /// Mean and standard deviation of the pixels (scaled to [0, 1]) of the images `idx`.
    pub fn pixel_stats(&self, idx: &[usize]) -> (f64, f64) {
        let px = SIDE * SIDE;
        let v: Vec<f64> = idx
            .iter()
            .flat_map(|&i| self.images[i * px..(i + 1) * px].iter().map(|&v| v as f64 / MAX_PIXEL as f64))
            .collect();
        let n = v.len().max(1) as f64;
        let m = v.iter().sum::<f64>() / n;
        (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt().max(1e-12))
    }

    /// The images `idx` as an `(n, 1, 8, 8)` f32 tensor, pixels scaled to [0, 1] then
    /// standardised with `(mean, std)`, and their labels.
    fn tensors(&self, idx: &[usize], (mean, std): (f64, f64)) -> Result<(Tensor, Vec<u32>)> {
        let px = SIDE * SIDE;
        let x: Vec<f32> = idx
            .iter()
            .flat_map(|&i| {
                self.images[i * px..(i + 1) * px]
                    .iter()
                    .map(move |&v| ((v as f64 / MAX_PIXEL as f64 - mean) / std) as f32)
            })
            .collect();
        let t = Tensor::from_vec(x, (idx.len(), 1, SIDE, SIDE), &Device::Cpu).map_err(gradlab_core::Error::from)?;
        Ok((t, idx.iter().map(|&i| self.labels[i] as u32).collect()))
    }
}

/// `dir` as given when it exists (or is absolute), else relative to the workspace root (so the
/// config's `data/digits` is found from the tests, whose working directory is the crate).
pub fn resolve_dir(dir: &Path) -> PathBuf {
    if dir.is_absolute() || dir.exists() {
        return dir.to_path_buf();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
    if root.exists() { root } else { dir.to_path_buf() }
}

/// Reads `images.npy` (uint8, `(n, 8, 8)`, values 0..=16) and `labels.npy` (uint8, `(n,)`, values
/// 0..=9) from `dir` (exported by `scripts/export_digits.py`); a wrong dtype, shape or value is an
/// error naming the file.
pub fn load_digits(dir: &Path) -> Result<Digits> {
    let dir = resolve_dir(dir);
    let (ip, lp) = (dir.join("images.npy"), dir.join("labels.npy"));
    let images: ndarray::Array3<u8> = gradlab_core::io::read_npy(&ip)?;
    let labels: ndarray::Array1<u8> = gradlab_core::io::read_npy(&lp)?;
    let (n, h, w) = images.dim();
    if (h, w) != (SIDE, SIDE) || n == 0 {
        return Err(Error::invalid(ip.display().to_string(), format!("shape ({n}, {h}, {w})"), "(n ≥ 1, 8, 8)"));
    }
    if labels.len() != n {
        return Err(Error::invalid(
            lp.display().to_string(),
            format!("{} labels", labels.len()),
            format!("{n} (one per image)"),
        ));
    }
    if let Some(v) = images.iter().find(|&&v| v > MAX_PIXEL) {
        return Err(Error::invalid(ip.display().to_string(), format!("pixel {v}"), "0..=16"));
    }
    if let Some(v) = labels.iter().find(|&&v| v as usize >= N_CLASSES) {
        return Err(Error::invalid(lp.display().to_string(), format!("label {v}"), "0..=9"));
    }
    Ok(Digits { images: images.iter().copied().collect(), labels: labels.to_vec() })
}

/// Item indices of the train, validation and test parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Training items (sorted).
    pub train: Vec<usize>,
    /// Validation items (sorted).
    pub val: Vec<usize>,
    /// Test items (sorted).
    pub test: Vec<usize>,
}

/// A split stratified by label: in each class, a seeded permutation, the first
/// `round(n_c · train)` items for training, the next `round(n_c · val)` for validation, the rest
/// for testing.
pub fn stratified_split(labels: &[u8], train: f64, val: f64, seed: u64) -> Result<Split> {
    if !(train > 0.0 && val > 0.0 && train + val < 1.0) {
        return Err(Error::invalid(
            "data.train / data.val",
            format!("{train} / {val}"),
            "both > 0 with train + val < 1",
        ));
    }
    let mut s = Split { train: vec![], val: vec![], test: vec![] };
    for c in 0..N_CLASSES {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] as usize == c).collect();
        let perm = permutation(&mut stream_rng(seed, c as u64), idx.len());
        let n_tr = (idx.len() as f64 * train).round() as usize;
        let n_va = ((idx.len() as f64 * val).round() as usize).min(idx.len() - n_tr);
        for (k, &p) in perm.iter().enumerate() {
            let part = if k < n_tr {
                &mut s.train
            } else if k < n_tr + n_va {
                &mut s.val
            } else {
                &mut s.test
            };
            part.push(idx[p]);
        }
    }
    for part in [&mut s.train, &mut s.val, &mut s.test] {
        part.sort_unstable();
    }
    Ok(s)
}

/// The tensors of one split (pixels standardised with the training pixels' mean and standard
/// deviation), and the epochs every evaluation trains for.
pub struct Task {
    x_train: Tensor,
    y_train: Tensor,
    n_train: usize,
    x_val: Tensor,
    y_val: Vec<u32>,
    x_test: Tensor,
    y_test: Vec<u32>,
    epochs: usize,
}

impl Task {
    /// The task of `split` of `data`, `epochs` epochs per training.
    pub fn new(data: &Digits, split: &Split, epochs: usize) -> Result<Task> {
        let stats = data.pixel_stats(&split.train);
        let (x_train, y) = data.tensors(&split.train, stats)?;
        let n_train = y.len();
        let y_train = Tensor::from_vec(y, n_train, &Device::Cpu).map_err(gradlab_core::Error::from)?;
        let (x_val, y_val) = data.tensors(&split.val, stats)?;
        let (x_test, y_test) = data.tensors(&split.test, stats)?;
        Ok(Task { x_train, y_train, n_train, x_val, y_val, x_test, y_test, epochs })
    }
}

// ---------------------------------------------------------------------------------------------
// Model

/// The LeNet-style CNN: conv 3×3 (`width` channels, padding 1) → ReLU → max-pool 2 → conv 3×3
/// (`2·width`) → ReLU → max-pool 2 → linear (`8·width` → `4·width`) → ReLU → dropout → linear (10).
pub struct Net {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    hidden: usize,
}

impl Net {
    /// The layers on `vb` (variables `conv1.*`, `conv2.*`, `fc1.*`, `fc2.*`).
    pub fn new(width: usize, vb: VarBuilder) -> gradlab_core::Result<Net> {
        let cfg = Conv2dConfig { padding: 1, ..Default::default() };
        let hidden = 4 * width;
        Ok(Net {
            conv1: candle_nn::conv2d(1, width, 3, cfg, vb.pp("conv1"))?,
            conv2: candle_nn::conv2d(width, 2 * width, 3, cfg, vb.pp("conv2"))?,
            fc1: candle_nn::linear(2 * width * (SIDE / 4) * (SIDE / 4), hidden, vb.pp("fc1"))?,
            fc2: candle_nn::linear(hidden, N_CLASSES, vb.pp("fc2"))?,
            hidden,
        })
    }

    /// Logits of `x` (`(n, 1, 8, 8)`); `mask` (`(n, 4·width)`, already scaled) is the dropout
    /// mask of a training step, `None` at evaluation.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> gradlab_core::Result<Tensor> {
        let h = conv3x3(x, &self.conv1)?.relu()?.max_pool2d(2)?;
        let h = conv3x3(&h, &self.conv2)?.relu()?.max_pool2d(2)?;
        let h = self.fc1.forward(&h.flatten_from(1)?)?.relu()?;
        let h = match mask {
            Some(m) => h.mul(m)?,
            None => h,
        };
        Ok(self.fc2.forward(&h)?)
    }

    /// Accuracy on `x` against `y`.
    pub fn accuracy(&self, x: &Tensor, y: &[u32]) -> gradlab_core::Result<f64> {
        let pred = self.forward(x, None)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok(pred.iter().zip(y).filter(|(p, t)| p == t).count() as f64 / y.len().max(1) as f64)
    }
}

/// A 3×3 convolution with padding 1 as a gather (im2col by `index_select`) and one matrix
/// product: candle's CPU `conv2d` backward (a transposed convolution) is 5–10× slower than the
/// whole training step here on 8×8 inputs. Same weights and result as `conv.forward(x)`.
pub fn conv3x3(x: &Tensor, conv: &Conv2d) -> gradlab_core::Result<Tensor> {
    let (b, c, s, s2) = x.dims4()?;
    let w = conv.weight();
    let o = w.dim(0)?;
    let p = s + 2;
    let idx: Vec<u32> = (0..s)
        .flat_map(|i| {
            (0..s2).flat_map(move |j| (0..3).flat_map(move |di| (0..3).map(move |dj| ((i + di) * p + j + dj) as u32)))
        })
        .collect();
    let idx = Tensor::from_vec(idx, s * s2 * 9, x.device())?;
    let flat = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.reshape((b, c, p * (s2 + 2)))?;
    let patches =
        flat.index_select(&idx, 2)?.reshape((b, c, s * s2, 9))?.permute((0, 2, 1, 3))?.reshape((b * s * s2, c * 9))?;
    let mut y = patches.matmul(&w.reshape((o, c * 9))?.t()?)?;
    if let Some(bias) = conv.bias() {
        y = y.broadcast_add(bias)?;
    }
    Ok(y.reshape((b, s, s2, o))?.permute((0, 3, 1, 2))?.contiguous()?)
}

/// Inverted-dropout mask of a training step (`(rows, cols)`: 0 with probability `p`, else
/// `1/(1−p)`), drawn from stream `step` of `seed` (candle's own dropout is not seeded); `None`
/// when `p = 0`.
pub fn dropout_mask(p: f64, rows: usize, cols: usize, seed: u64, step: u64) -> gradlab_core::Result<Option<Tensor>> {
    if p <= 0.0 {
        return Ok(None);
    }
    let mut r = stream_rng(seed, step);
    let keep = (1.0 / (1.0 - p)) as f32;
    let m: Vec<f32> = (0..rows * cols).map(|_| if r.random::<f64>() < p { 0.0 } else { keep }).collect();
    Ok(Some(Tensor::from_vec(m, (rows, cols), &Device::Cpu)?))
}

/// Hyperparameters of one evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// SGD learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Channels of the first convolution.
    pub width: usize,
    /// Dropout probability before the last layer.
    pub dropout: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// L2 weight decay.
    pub weight_decay: f64,
}

impl Hyper {
    /// From a point of [`SpaceParams::space`].
    pub fn from_point(space: &Space, pt: &Point) -> Result<Hyper> {
        let m = space.point_to_map(pt);
        let f = |k: &str| {
            m.get(k).and_then(Value::as_f64).ok_or_else(|| {
                Error::invalid(
                    "hyperparameter",
                    k,
                    "a point with lr, momentum, width, dropout, batch_log2, weight_decay",
                )
            })
        };
        Ok(Hyper {
            lr: f("lr")?,
            momentum: f("momentum")?,
            width: f("width")? as usize,
            dropout: f("dropout")?,
            batch_size: 1usize << (f("batch_log2")? as u32),
            weight_decay: f("weight_decay")?,
        })
    }
}

/// A trained network and whether its loss became non-finite.
pub struct Trained {
    /// The network.
    pub net: Net,
    /// Its variables.
    pub vars: VarMap,
    /// Training stopped at a non-finite loss.
    pub diverged: bool,
}

/// Trains the CNN with `h` for the task's epochs; initialisation, shuffling and dropout masks
/// come from `seed`, so the same `(h, seed)` gives the same network.
pub fn train(task: &Task, h: &Hyper, seed: u64) -> Result<Trained> {
    let vars = VarMap::new();
    let net = Net::new(h.width, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu))?;
    init(&vars, derive_seed(seed, INIT_STREAM), Init::TorchDefault)?;
    let mut tc = TrainConfig::new(task.epochs, h.batch_size);
    tc.optimizer = OptimizerConfig::Sgd(SgdParams { lr: h.lr, momentum: h.momentum, weight_decay: h.weight_decay });
    tc.seed = derive_seed(seed, SHUFFLE_STREAM);
    let drop_seed = derive_seed(seed, DROPOUT_STREAM);
    let mut step = 0u64;
    let fit = Trainer::new(tc, &vars)?.fit::<gradlab_core::Error, _, _>(
        task.n_train,
        |batch| {
            let idx = Tensor::from_vec(batch.iter().map(|&i| i as u32).collect::<Vec<_>>(), batch.len(), &Device::Cpu)?;
            let mask = dropout_mask(h.dropout, batch.len(), net.hidden, drop_seed, step)?;
            step += 1;
            let logits = net.forward(&task.x_train.index_select(&idx, 0)?, mask.as_ref())?;
            Ok(candle_nn::loss::cross_entropy(&logits, &task.y_train.index_select(&idx, 0)?)?)
        },
        || Ok(Validation::loss(0.0)),
    );
    let diverged = match fit {
        Ok(_) => false,
        Err(gradlab_core::Error::NonFiniteLoss { .. }) => true,
        Err(e) => return Err(e.into()),
    };
    Ok(Trained { net, vars, diverged })
}

/// Validation accuracy of `h` trained with `seed` ([`DIVERGED_ACCURACY`] when it diverged),
/// and whether it diverged.
pub fn validation_accuracy(task: &Task, h: &Hyper, seed: u64) -> Result<(f64, bool)> {
    let t = train(task, h, seed)?;
    if t.diverged {
        return Ok((DIVERGED_ACCURACY, true));
    }
    Ok((t.net.accuracy(&task.x_val, &task.y_val)?, false))
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Data settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataParams {
    /// Folder with `images.npy` and `labels.npy` (relative: to the working directory, else to
    /// the workspace root).
    pub dir: PathBuf,
    /// Fraction of each class for training.
    pub train: f64,
    /// Fraction of each class for validation (the rest is the test set).
    pub val: f64,
}

/// Search space: `[low, high]` of each hyperparameter.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceParams {
    /// Learning rate (log scale).
    pub lr: [f64; 2],
    /// Momentum.
    pub momentum: [f64; 2],
    /// Channels of the first convolution (integer).
    pub width: [i64; 2],
    /// Dropout probability.
    pub dropout: [f64; 2],
    /// Batch size `2^k`, `k` integer.
    pub batch_log2: [i64; 2],
    /// Weight decay (log scale).
    pub weight_decay: [f64; 2],
}

impl SpaceParams {
    /// The search space (fields checked, named `space.<name>`).
    pub fn space(&self) -> Result<Space> {
        let bad = |f: &str, v: String, a: &str| Err(Error::invalid(format!("space.{f}"), v, a));
        if !(self.momentum[0] >= 0.0 && self.momentum[1] < 1.0) {
            return bad("momentum", format!("{:?}", self.momentum), "within [0, 1)");
        }
        if !(self.dropout[0] >= 0.0 && self.dropout[1] <= 0.9) {
            return bad("dropout", format!("{:?}", self.dropout), "within [0, 0.9]");
        }
        if !(self.width[0] >= 1 && self.width[1] <= 256) {
            return bad("width", format!("{:?}", self.width), "within [1, 256]");
        }
        if !(self.batch_log2[0] >= 0 && self.batch_log2[1] <= 12) {
            return bad("batch_log2", format!("{:?}", self.batch_log2), "within [0, 12]");
        }
        let float = |n: &str, b: [f64; 2]| Param::Float { name: n.into(), low: b[0], high: b[1] };
        let log = |n: &str, b: [f64; 2]| Param::LogFloat { name: n.into(), low: b[0], high: b[1] };
        let int = |n: &str, b: [i64; 2]| Param::Int { name: n.into(), low: b[0], high: b[1] };
        Space::new(vec![
            log("lr", self.lr),
            float("momentum", self.momentum),
            int("width", self.width),
            float("dropout", self.dropout),
            int("batch_log2", self.batch_log2),
            log("weight_decay", self.weight_decay),
        ])
        .map_err(|e| match e {
            Error::Invalid { field, value, allowed } => {
                Error::Invalid { field: format!("space.{field}"), value, allowed }
            }
            e => e,
        })
    }
}

fn one() -> usize {
    1
}

/// A search method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Method {
    /// BO with a refit policy, `q` points per iteration.
    Bo {
        /// Refit policy (`{"every": 1}` classic, `"never"` lag ∞, `{"adaptive": …}`).
        lag: LagPolicy,
        /// Points per iteration.
        #[serde(default = "one")]
        q: usize,
    },
    /// Uniform random search in the encoded space.
    Random,
}

impl Method {
    /// Short label: `lag1`, `lag3`, `lag_inf`, `adaptive`, `lag3-q20`, `random`.
    pub fn label(&self) -> String {
        match self {
            Method::Bo { lag, q: 1 } => lag.label(),
            Method::Bo { lag, q } => format!("{}-q{q}", lag.label()),
            Method::Random => "random".into(),
        }
    }

    fn q(&self) -> usize {
        match self {
            Method::Bo { q, .. } => *q,
            Method::Random => 1,
        }
    }
}

/// Parameters of `bo-hpo-digits`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The run's one seed: the split from it; replicate `s` uses [`replicate_seed`]`(seed, s)`
    /// for the study, random search and every training.
    pub seed: u64,
    /// Data.
    pub data: DataParams,
    /// Search space.
    pub space: SpaceParams,
    /// Epochs of every training.
    pub epochs: usize,
    /// Target validation accuracy.
    pub target: f64,
    /// Evaluations per run.
    pub budget: usize,
    /// Replicates per method.
    pub seeds: usize,
    /// Methods compared.
    pub methods: Vec<Method>,
    /// Study settings of the BO methods (the lag is the method's; the seed is derived).
    #[serde(default)]
    pub study: StudyConfig,
}

impl Params {
    /// Refuses zero counts, an empty or duplicated method list, q = 0, a target outside (0, 1],
    /// a bad split or space and a nested study seed.
    pub fn check(&self) -> Result<()> {
        require_positive("seeds", self.seeds)?;
        require_positive("budget", self.budget)?;
        require_positive("epochs", self.epochs)?;
        require_nonempty("methods", &self.methods, "method")?;
        if !(self.target > 0.0 && self.target <= 1.0) {
            return Err(Error::invalid("target", self.target, "a validation accuracy in (0, 1]"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.methods {
            if m.q() == 0 {
                return Err(Error::invalid("methods.q", 0, ">= 1"));
            }
            if let Method::Bo { lag: LagPolicy::Every(0), .. } = m {
                return Err(Error::invalid("methods.lag.every", 0, ">= 1"));
            }
            if !seen.insert(m.label()) {
                return Err(Error::invalid("methods", m.label(), "each method once"));
            }
        }
        stratified_split(&[], self.data.train, self.data.val, 0)?;
        self.space.space()?;
        check_nested_study("study", &self.study)
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

/// One evaluation of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// 0-based, in order of evaluation.
    pub id: usize,
    /// 1-based iteration (batch) that proposed it.
    pub iteration: usize,
    /// Hyperparameters.
    pub params: BTreeMap<String, Value>,
    /// Validation accuracy.
    pub val_acc: f64,
    /// The training's loss became non-finite (`val_acc` is then chance).
    pub diverged: bool,
    /// Seconds of the training and validation.
    pub eval_s: f64,
    /// Seconds the method spent proposing this evaluation's batch.
    pub overhead_s: f64,
    /// Seconds since the run started when this evaluation finished.
    pub wall_s: f64,
}

/// When a run first reached the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Iterations (batches) up to and including the one that reached it.
    pub iterations: usize,
    /// Evaluations up to and including it.
    pub evaluations: usize,
    /// Wall seconds at that evaluation (batches evaluated one after the other).
    pub wall_s: f64,
    /// Wall seconds had each batch been trained concurrently: Σ over batches of proposal time
    /// plus the longest training in the batch.
    pub parallel_wall_s: f64,
}

/// One run of a method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// Method label.
    pub method: String,
    /// Replicate.
    pub replicate: usize,
    /// Every evaluation.
    pub records: Vec<EvalRecord>,
    /// Iterations (batches) run.
    pub iterations: usize,
    /// Best validation accuracy.
    pub best_val_acc: f64,
    /// Id of the (first) evaluation with it.
    pub best_id: usize,
    /// First reaching of the target, if any.
    pub hit: Option<Hit>,
    /// Validation accuracy of the best configuration retrained after the search.
    pub retrained_val_acc: f64,
    /// Test accuracy of that retrained network (the only test evaluation of the run).
    pub test_acc: f64,
    /// Wall seconds of the search (without the retraining).
    pub wall_s: f64,
    /// Wall seconds with each batch trained concurrently (see [`Hit::parallel_wall_s`]).
    pub parallel_wall_s: f64,
    /// Seconds spent proposing points (GP, acquisition; 0 for random search).
    pub overhead_s: f64,
}

/// Best validation accuracy so far after each evaluation.
pub fn best_so_far(records: &[EvalRecord]) -> Vec<f64> {
    let mut best = f64::NEG_INFINITY;
    records
        .iter()
        .map(|r| {
            best = best.max(r.val_acc);
            best
        })
        .collect()
}

/// Σ over the batches of `records` (up to and including evaluation `upto`) of proposal time
/// plus the longest training.
fn parallel_wall(records: &[EvalRecord], upto: usize) -> f64 {
    let mut per: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    for r in &records[..=upto] {
        let e = per.entry(r.iteration).or_insert((r.overhead_s, 0.0));
        e.1 = e.1.max(r.eval_s);
    }
    per.values().map(|(o, e)| o + e).sum()
}

/// The first reaching of `target` in `records`.
pub fn first_hit(records: &[EvalRecord], target: f64) -> Option<Hit> {
    let i = records.iter().position(|r| r.val_acc >= target)?;
    Some(Hit {
        iterations: records[i].iteration,
        evaluations: i + 1,
        wall_s: records[i].wall_s,
        parallel_wall_s: parallel_wall(records, i),
    })
}

/// Replicate `s` of `method`: the search, then the best configuration retrained once for its
/// test accuracy.
pub fn run_method(task: &Task, p: &Params, method: &Method, s: usize) -> Result<RunOutcome> {
    let rs = replicate_seed(p.seed, s);
    let train_seed = derive_seed(rs, TRAIN_STREAM);
    let space = p.space.space()?;
    let mut records: Vec<EvalRecord> = Vec::with_capacity(p.budget);
    let t0 = Instant::now();
    let evaluate = |pt: &Point, iteration: usize, overhead_s: f64, records: &mut Vec<EvalRecord>| -> Result<f64> {
        let t = Instant::now();
        let (val_acc, diverged) = validation_accuracy(task, &Hyper::from_point(&space, pt)?, train_seed)?;
        records.push(EvalRecord {
            id: records.len(),
            iteration,
            params: space.point_to_map(pt),
            val_acc,
            diverged,
            eval_s: t.elapsed().as_secs_f64(),
            overhead_s,
            wall_s: t0.elapsed().as_secs_f64(),
        });
        Ok(val_acc)
    };
    let mut iteration = 0;
    match method {
        Method::Bo { lag, q } => {
            let cfg = StudyConfig { seed: derive_seed(rs, STUDY_STREAM), lag: *lag, ..p.study.clone() };
            let mut study = Study::new(space.clone(), cfg)?;
            while records.len() < p.budget {
                let t = Instant::now();
                let trials = study.ask_batch((*q).min(p.budget - records.len()))?;
                let overhead = t.elapsed().as_secs_f64();
                iteration += 1;
                for tr in trials {
                    let acc = evaluate(&tr.params, iteration, overhead, &mut records)?;
                    study.tell(tr.id, 1.0 - acc)?;
                }
            }
        }
        Method::Random => {
            let mut r = rng(derive_seed(rs, RANDOM_STREAM));
            let d = space.encoded_dim();
            while records.len() < p.budget {
                let u: Vec<f64> = (0..d).map(|_| r.random::<f64>()).collect();
                let pt = space.decode(&space.snap(&u)?)?;
                iteration += 1;
                evaluate(&pt, iteration, 0.0, &mut records)?;
            }
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let best = records.iter().enumerate().fold(0, |b, (i, r)| if r.val_acc > records[b].val_acc { i } else { b });
    let best_pt = space.point_from_map(&records[best].params)?;
    let trained = train(task, &Hyper::from_point(&space, &best_pt)?, train_seed)?;
    let (retrained_val_acc, test_acc) = if trained.diverged {
        (DIVERGED_ACCURACY, DIVERGED_ACCURACY)
    } else {
        (trained.net.accuracy(&task.x_val, &task.y_val)?, trained.net.accuracy(&task.x_test, &task.y_test)?)
    };
    Ok(RunOutcome {
        method: method.label(),
        replicate: s,
        iterations: iteration,
        best_val_acc: records[best].val_acc,
        best_id: best,
        hit: first_hit(&records, p.target),
        retrained_val_acc,
        test_acc,
        wall_s,
        parallel_wall_s: parallel_wall(&records, records.len() - 1),
        overhead_s: records
            .iter()
            .filter(|r| r.id == 0 || records[r.id - 1].iteration != r.iteration)
            .map(|r| r.overhead_s)
            .sum(),
        records,
    })
}

// ---------------------------------------------------------------------------------------------
// The experiment

/// Paper figures (Ram et al. 2019) shown beside ours.
const PAPER: &str = "LeNet-5 on MNIST, target 0.97 accuracy: 168 iterations lazy vs 732 classic; ResNet-32 on \
                     CIFAR-10, target 0.79: 62 vs 176, and 35 iterations with q = 20";

/// Runs `bo-hpo-digits`.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.check()?;
    let data = load_digits(&p.data.dir)?;
    let split = stratified_split(&data.labels, p.data.train, p.data.val, derive_seed(p.seed, SPLIT_STREAM))?;
    let task = Task::new(&data, &split, p.epochs)?;
    let mut all: Vec<(Method, Vec<RunOutcome>)> = Vec::new();
    for m in &p.methods {
        let mut runs = Vec::new();
        for s in 0..p.seeds {
            let r = ctx.stage(&format!("{}-seed{s}", m.label()), || run_method(&task, &p, m, s))?;
            if !ctx.quiet {
                eprintln!(
                    "bo-hpo-digits {} seed {s}: best val acc {:.4} (test {:.4}), target {} after {}, {:.1} s",
                    r.method,
                    r.best_val_acc,
                    r.test_acc,
                    p.target,
                    r.hit.as_ref().map_or("not reached".into(), |h| format!("{} iterations", h.iterations)),
                    r.wall_s
                );
            }
            for rec in &r.records {
                ctx.metrics()?.log(&serde_json::json!({"method": r.method, "replicate": s, "record": rec}))?;
            }
            runs.push(r);
        }
        all.push((m.clone(), runs));
    }
    let (rows, summary) = compare(&p, &all);
    plot(ctx, &all)?;
    let evals: Vec<f64> =
        all.iter().flat_map(|(_, rs)| rs.iter().flat_map(|r| r.records.iter().map(|e| e.eval_s))).collect();
    let per_eval = mean_std(&evals).0;
    ctx.dir.write_summary(&serde_json::json!({
        "target": p.target, "budget": p.budget, "seeds": p.seeds, "epochs": p.epochs,
        "split": {"train": split.train.len(), "val": split.val.len(), "test": split.test.len()},
        "mean_evaluation_s": per_eval, "methods": summary, "paper": PAPER,
        "runs": all.iter().flat_map(|(_, rs)| rs.iter().map(|r| serde_json::json!({
            "method": r.method, "replicate": r.replicate, "iterations": r.iterations, "best_val_acc": r.best_val_acc,
            "best_params": r.records[r.best_id].params, "hit": r.hit, "retrained_val_acc": r.retrained_val_acc,
            "test_acc": r.test_acc, "wall_s": r.wall_s, "parallel_wall_s": r.parallel_wall_s, "overhead_s": r.overhead_s,
        }))).collect::<Vec<_>>(),
    }))?;
    report(ctx, &p, &split, &rows, per_eval)
}

/// Table rows and summary entries per method.
fn compare(p: &Params, all: &[(Method, Vec<RunOutcome>)]) -> (Vec<Vec<String>>, Vec<serde_json::Value>) {
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for (m, runs) in all {
        let hits: Vec<&Hit> = runs.iter().filter_map(|r| r.hit.as_ref()).collect();
        let col = |f: &dyn Fn(&RunOutcome) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let hcol = |f: &dyn Fn(&Hit) -> f64| hits.iter().map(|h| f(h)).collect::<Vec<f64>>();
        let or_dash = |v: &[f64], d: usize| if v.is_empty() { "—".to_string() } else { pm(v, d) };
        let (iters, evals, wall, pwall) = (
            hcol(&|h| h.iterations as f64),
            hcol(&|h| h.evaluations as f64),
            hcol(&|h| h.wall_s),
            hcol(&|h| h.parallel_wall_s),
        );
        let (best, test, total, overhead) =
            (col(&|r| r.best_val_acc), col(&|r| r.test_acc), col(&|r| r.wall_s), col(&|r| r.overhead_s));
        rows.push(vec![
            m.label(),
            m.q().to_string(),
            format!("{}/{}", hits.len(), runs.len()),
            or_dash(&iters, 3),
            or_dash(&evals, 3),
            or_dash(&wall, 3),
            if m.q() > 1 { or_dash(&pwall, 3) } else { "—".into() },
            pm(&best, 4),
            pm(&test, 4),
            pm(&overhead, 3),
            pm(&total, 3),
        ]);
        summary.push(serde_json::json!({
            "method": m.label(), "q": m.q(), "reached": hits.len(), "runs": runs.len(),
            "iterations_to_target": iters, "evaluations_to_target": evals, "wall_s_to_target": wall,
            "parallel_wall_s_to_target": pwall, "best_val_acc": best, "test_acc": test, "overhead_s": overhead,
            "wall_s": total, "budget": p.budget,
        }));
    }
    (rows, summary)
}

/// Mean best validation error (1 − accuracy) against evaluations, one series per method.
fn plot(ctx: &RunContext, all: &[(Method, Vec<RunOutcome>)]) -> Result<()> {
    let mut fig = LinePlot::new("Best validation error vs evaluations (mean over seeds)")
        .x_label("evaluations")
        .y_label("best validation error")
        .log_y(true);
    for (m, runs) in all {
        let curves: Vec<Vec<f64>> = runs.iter().map(|r| best_so_far(&r.records)).collect();
        let len = curves.iter().map(Vec::len).max().unwrap_or(0);
        let pts = (0..len)
            .map(|i| {
                let v: Vec<f64> = curves.iter().map(|c| (1.0 - c[i.min(c.len() - 1)]).max(1e-4)).collect();
                ((i + 1) as f64, mean_std(&v).0)
            })
            .collect();
        fig = fig.series(&m.label(), pts, Mark::LinePoints);
    }
    fig.save(&ctx.dir.file("best_error_vs_evaluations")?)?;
    Ok(())
}

fn report(ctx: &RunContext, p: &Params, split: &Split, rows: &[Vec<String>], per_eval: f64) -> ExperimentResult {
    let s = &p.space;
    let mut r =
        Report::new("bo-hpo-digits: tuning a LeNet-style CNN on the 8×8 digits by lazy vs classic BO vs random search");
    r.code("sh", &ctx.command());
    r.paragraph(&format!(
        "Data: scikit-learn's 8×8 digits (`{}`, pixels standardised by the training pixels' mean and std), stratified split {} train / {} validation / {} test. Model: conv 3×3 (w) → \
         ReLU → max-pool → conv 3×3 (2w) → ReLU → max-pool → linear (4w) → ReLU → dropout → linear (10), SGD with momentum, \
         {} epochs, the shared `Trainer`. Search space: lr ∈ [{}, {}] (log), momentum ∈ [{}, {}], width w ∈ [{}, {}], \
         dropout ∈ [{}, {}], batch = 2^k, k ∈ [{}, {}], weight decay ∈ [{}, {}] (log). Objective: validation error. \
         Budget {} evaluations per run, {} seed(s) per method; replicate s trains every configuration from the same seeds \
         (paired runs). Target: validation accuracy ≥ {}. Iterations count batches (q > 1) and include the initial design \
         (BO: {} Latin-hypercube points). Test accuracy: the best configuration retrained once after the search. \
         Mean seconds per evaluation: {}.",
        p.data.dir.display(), split.train.len(), split.val.len(), split.test.len(), p.epochs, s.lr[0], s.lr[1], s.momentum[0],
        s.momentum[1], s.width[0], s.width[1], s.dropout[0], s.dropout[1], s.batch_log2[0], s.batch_log2[1],
        s.weight_decay[0], s.weight_decay[1], p.budget, p.seeds, p.target,
        if p.study.n_initial > 0 { p.study.n_initial.to_string() } else { "max(5, 2d + 1) = 13".into() },
        fmt_num(per_eval, 3)
    ));
    r.heading("Results");
    r.table(
        &[
            "method",
            "q",
            "reached",
            "iterations to target",
            "evaluations to target",
            "wall s to target",
            "wall s to target, batch concurrent",
            "best val acc",
            "test acc of best",
            "proposal s",
            "wall s",
        ],
        rows,
    );
    r.paragraph(&format!(
        "Means ± std over the runs that reached the target (\"reached\"); best and test accuracy over all runs. \
         Paper (Ram et al. 2019): {PAPER}."
    ));
    r.figure("Best validation error vs evaluations", "best_error_vs_evaluations.png");
    r.write(&ctx.dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlab_core::experiment::{ExperimentConfig, from_value};

    fn config_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/bo-hpo-digits.json")
    }

    #[test]
    fn digits_load_with_their_shape_counts_and_checksum() {
        let d = load_digits(Path::new("data/digits")).unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.images.len(), 1797 * 64);
        assert_eq!(d.label_counts(), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert_eq!(d.images.iter().map(|&v| v as u64).sum::<u64>(), 561_718, "pixel sum printed by the export");
        assert_eq!(*d.images.iter().max().unwrap(), 16);
        assert_eq!(d.checksum(), 11_057_834_985_257_796_257, "FNV-1a of the exported files");
        let e = load_digits(Path::new("no/such/dir")).unwrap_err().to_string();
        assert!(e.contains("images.npy"), "{e}");
    }

    #[test]
    fn split_is_a_stratified_partition() {
        let d = load_digits(Path::new("data/digits")).unwrap();
        let s = stratified_split(&d.labels, 0.6, 0.2, 7).unwrap();
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..d.len()).collect::<Vec<_>>());
        for c in 0..N_CLASSES as u8 {
            let n = d.labels.iter().filter(|&&l| l == c).count() as f64;
            let nv = s.val.iter().filter(|&&i| d.labels[i] == c).count() as f64;
            assert!((nv - 0.2 * n).abs() <= 0.5, "class {c}: {nv} of {n}");
        }
        assert_eq!(s, stratified_split(&d.labels, 0.6, 0.2, 7).unwrap());
        assert_ne!(s, stratified_split(&d.labels, 0.6, 0.2, 8).unwrap());
        assert!(stratified_split(&d.labels, 0.8, 0.2, 7).is_err());
    }

    #[test]
    fn configs_resolve_and_bad_values_are_refused() {
        let cfg = ExperimentConfig::load(&config_path()).unwrap();
        assert_eq!(cfg.entry, "bayesopt.hpo_digits");
        assert!(super::super::experiments().iter().any(|e| e.entry == cfg.entry));
        for quick in [false, true] {
            let p: Params = from_value(&cfg.resolve(quick, &[]).unwrap(), "bo-hpo-digits").unwrap();
            p.check().unwrap();
            let labels: Vec<String> = p.methods.iter().map(Method::label).collect();
            for l in ["lag1", "lag3", "lag_inf", "random"] {
                assert!(labels.iter().any(|x| x == l), "{quick}: {labels:?}");
            }
            assert!(p.methods.iter().any(|m| m.q() > 1), "a parallel method");
            assert!(quick || (p.seeds >= 5 && p.methods.iter().any(|m| m.q() == 20)));
        }
        for (set, field) in [
            ("seeds=0", "seeds"),
            ("budget=0", "budget"),
            ("methods=[]", "methods"),
            ("target=1.5", "target"),
            ("space.dropout=[0.0, 1.0]", "space.dropout"),
            ("space.lr=[0.1, 0.01]", "space.lr.high"),
            ("data.val=0.5", "data.train / data.val"),
            ("methods=[{\"kind\": \"random\"}, {\"kind\": \"random\"}]", "methods"),
        ] {
            let v = cfg.resolve(true, &[set.to_string()]).unwrap();
            match from_value::<Params>(&v, "x").unwrap().check() {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{set}"),
                r => panic!("{set}: {r:?}"),
            }
        }
    }

    #[test]
    fn gathered_convolution_equals_candle_conv2d() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let conv = candle_nn::conv2d(3, 5, 3, Conv2dConfig { padding: 1, ..Default::default() }, vb).unwrap();
        init(&vm, 4, Init::TorchDefault).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).unwrap();
        let a = conv3x3(&x, &conv).unwrap();
        let b = conv.forward(&x).unwrap();
        assert_eq!(a.dims(), b.dims());
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn dropout_masks_are_seeded() {
        assert!(dropout_mask(0.0, 2, 3, 1, 0).unwrap().is_none());
        let a = dropout_mask(0.5, 20, 30, 1, 4).unwrap().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = dropout_mask(0.5, 20, 30, 1, 4).unwrap().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let c = dropout_mask(0.5, 20, 30, 1, 5).unwrap().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&v| v == 0.0 || v == 2.0));
        let kept = a.iter().filter(|&&v| v > 0.0).count();
        assert!((200..400).contains(&kept), "{kept}");
    }

    /// The quick scale, from its config: every method's runs are recorded with accuracies in
    /// [0, 1], the best configuration retrained reproduces its recorded validation accuracy, the
    /// recorded first reaching of the target agrees with the trace, and the report is written.
    #[test]
    fn quick_scale_runs_and_its_records_are_consistent() {
        use gradlab_core::experiment::RunContext;
        let path = config_path();
        let cfg = ExperimentConfig::load(&path).unwrap();
        let params = cfg.resolve(true, &[]).unwrap();
        let p: Params = from_value(&params, "x").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = gradlab_core::run::RunDir::at(tmp.path().join("run"), false).unwrap();
        let mut ctx = RunContext::new("bo-hpo-digits", &path, &cfg.entry, params.clone(), true, true, dir).unwrap();
        run(&mut ctx).unwrap();
        let d = tmp.path().join("run");
        for f in ["report.md", "summary.json", "best_error_vs_evaluations.png", "metrics.jsonl"] {
            assert!(d.join(f).exists(), "missing {f}");
        }
        for m in &p.methods {
            for s in 0..p.seeds {
                let f = d.join(format!("stages/{}-seed{s}.json", m.label()));
                let r: RunOutcome = gradlab_core::io::read_json(&f).unwrap();
                assert_eq!(r.records.len(), p.budget, "{}", r.method);
                assert_eq!(r.iterations, p.budget.div_ceil(m.q()), "{}", r.method);
                for x in r.records.iter().map(|e| e.val_acc).chain([r.best_val_acc, r.test_acc, r.retrained_val_acc]) {
                    assert!((0.0..=1.0).contains(&x), "{}: {x}", r.method);
                }
                assert_eq!(r.best_val_acc, best_so_far(&r.records)[p.budget - 1]);
                assert_eq!(r.retrained_val_acc, r.best_val_acc, "{}: the best configuration retrained", r.method);
                let first = r.records.iter().position(|e| e.val_acc >= p.target);
                assert_eq!(r.hit.as_ref().map(|h| h.evaluations), first.map(|i| i + 1), "{}", r.method);
                if let (Some(h), Some(i)) = (&r.hit, first) {
                    assert_eq!(h.iterations, r.records[i].iteration);
                    assert!(r.records[..i].iter().all(|e| e.val_acc < p.target));
                    assert!(h.wall_s <= r.wall_s && h.parallel_wall_s <= h.wall_s + 1e-9);
                }
            }
        }
        let summary: serde_json::Value = gradlab_core::io::read_json(&d.join("summary.json")).unwrap();
        assert_eq!(summary["methods"].as_array().unwrap().len(), p.methods.len());
        let report = std::fs::read_to_string(d.join("report.md")).unwrap();
        assert!(report.contains("168 iterations lazy vs 732 classic"));
    }
}
