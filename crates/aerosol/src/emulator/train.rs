//! Training with the core [`Trainer`]: mini-batches of physical rows, the emulator's loss,
//! validation loss for early stopping, the best weights restored at the end.

use super::emulator_model::{Emulator, EmulatorConfig, EmulatorData};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use gradlab_core::data::array_to_tensor;
use gradlab_core::observe::Observer;
use gradlab_core::rng::derive_seed;
use gradlab_core::train::{TrainConfig, TrainReport, Trainer, Validation};
use ndarray::{Array2, Axis};
use std::path::Path;

/// Stream of a run's `seed` that initialises the weights.
pub const INIT_STREAM: u64 = 0x1417;
/// Stream of a run's `seed` that shuffles the mini-batches (`TrainConfig::seed`).
pub const SHUFFLE_STREAM: u64 = 0x5A0F;

/// The trainer settings and the initialisation seed of a run with one top-level `seed`: both
/// derived from it (streams [`SHUFFLE_STREAM`], [`INIT_STREAM`]). A non-zero `train.seed` in the
/// configuration is refused rather than silently replaced.
pub fn derive_seeds(train: &TrainConfig, seed: u64) -> Result<(TrainConfig, u64)> {
    Error::check_derived_seed("train.seed", train.seed)?;
    let mut tc = train.clone();
    tc.seed = derive_seed(seed, SHUFFLE_STREAM);
    Ok((tc, derive_seed(seed, INIT_STREAM)))
}

/// Encoded training rows held on the device's side of the loop.
struct Encoded {
    x: Array2<f32>,
    target: Array2<f32>,
    labels: Option<Array2<f32>>,
}

impl Encoded {
    fn new(em: &Emulator, d: &EmulatorData) -> Result<Self> {
        let (target, labels) = em.encode_targets(&d.t.view())?;
        Ok(Encoded { x: d.x.clone(), target, labels })
    }

    fn batch(&self, idx: &[usize], dev: &Device) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let t = |a: &Array2<f32>| array_to_tensor(&a.select(Axis(0), idx).view(), dev);
        let labels = match &self.labels {
            Some(l) => Some(t(l)?),
            None => None,
        };
        Ok((t(&self.x)?, t(&self.target)?, labels))
    }
}

/// Mean loss over `data` in chunks (weighted by chunk size).
fn mean_loss(em: &Emulator, enc: &Encoded, chunk: usize) -> Result<f64> {
    let n = enc.x.nrows();
    let mut total = 0.0;
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let idx: Vec<usize> = (start..end).collect();
        let (x, t, l) = enc.batch(&idx, em.device())?;
        let v = em.loss(&x, &t, l.as_ref())?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        total += v * (end - start) as f64;
        start = end;
    }
    Ok(total / n.max(1) as f64)
}

/// Trains a new emulator (initialised from `init_seed`; the shuffling seed is `train_cfg.seed`)
/// on `train` with early stopping on the loss over `val`; checkpoints go to `checkpoints`, and
/// the best weights (lowest validation loss) are left in the model. With `resume`, training
/// continues exactly from the checkpoint found in `checkpoints` (a finished run is not trained
/// again; see [`Trainer::resume`]).
#[allow(clippy::too_many_arguments)]
pub fn fit<'o>(
    cfg: EmulatorConfig,
    dt: f64,
    train_cfg: &TrainConfig,
    init_seed: u64,
    train: &EmulatorData,
    val: &EmulatorData,
    device: &Device,
    checkpoints: &Path,
    resume: bool,
    observers: Vec<Box<dyn Observer + 'o>>,
) -> Result<(Emulator, TrainReport)> {
    let em = Emulator::new(cfg, dt, train, init_seed, device)?;
    let report = train_emulator(&em, train_cfg, train, val, checkpoints, resume, observers)?;
    Ok((em, report))
}

/// Trains `em` (already built, e.g. to attach a [`gradlab_core::observe::TrajectoryObserver`]
/// to its parameters) as [`fit`] does.
pub fn train_emulator<'o>(
    em: &Emulator,
    train_cfg: &TrainConfig,
    train: &EmulatorData,
    val: &EmulatorData,
    checkpoints: &Path,
    resume: bool,
    observers: Vec<Box<dyn Observer + 'o>>,
) -> Result<TrainReport> {
    let tr = Encoded::new(em, train)?;
    let va = Encoded::new(em, val)?;
    let mut trainer =
        Trainer::new(train_cfg.clone(), em.varmap())?.checkpoint_to(checkpoints).resume(resume).restore_best(true);
    for o in observers {
        trainer = trainer.observe(o);
    }
    trainer.fit::<Error, _, _>(
        tr.x.nrows(),
        |idx| {
            let (x, t, l) = tr.batch(idx, em.device())?;
            em.loss(&x, &t, l.as_ref())
        },
        || Ok(Validation::loss(mean_loss(em, &va, 16384)?)),
    )
}
