//! Training with the core [`Trainer`]: mini-batches of physical rows, the emulator's loss,
//! validation loss for early stopping, best-checkpoint restore.

use super::error::Result;
use super::model::{Emulator, EmulatorConfig, EmulatorData};
use candle_core::{Device, Tensor};
use gradlab_core::data::array_to_tensor;
use gradlab_core::observe::Observer;
use gradlab_core::train::{TrainConfig, TrainReport, Trainer, Validation, load_weights};
use ndarray::{Array2, Axis};
use std::path::Path;

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

/// Trains a new emulator on `train` with early stopping on the loss over `val`; checkpoints go
/// to `checkpoints`, and the best weights (lowest validation loss) are loaded before returning.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    cfg: EmulatorConfig,
    dt: f64,
    train_cfg: &TrainConfig,
    seed: u64,
    train: &EmulatorData,
    val: &EmulatorData,
    device: &Device,
    checkpoints: &Path,
    observers: Vec<Box<dyn Observer + '_>>,
) -> Result<(Emulator, TrainReport)> {
    let em = Emulator::new(cfg, dt, train, seed, device)?;
    let tr = Encoded::new(&em, train)?;
    let va = Encoded::new(&em, val)?;
    let report = {
        let mut trainer = Trainer::new(train_cfg.clone(), em.varmap())?.checkpoint_to(checkpoints);
        for o in observers {
            trainer = trainer.observe(Boxed(o));
        }
        trainer.fit::<gradlab_core::Error, _, _>(
            tr.x.nrows(),
            |idx| {
                let (x, t, l) = tr.batch(idx, device).map_err(to_core)?;
                em.loss(&x, &t, l.as_ref()).map_err(to_core)
            },
            || Ok(Validation::loss(mean_loss(&em, &va, 16384).map_err(to_core)?)),
        )?
    };
    if let Some(best) = &report.best_checkpoint {
        load_weights(em.varmap(), best)?;
    }
    Ok((em, report))
}

/// Lets boxed observers be passed to [`Trainer::observe`].
struct Boxed<'a>(Box<dyn Observer + 'a>);

impl Observer for Boxed<'_> {
    fn on_start(&mut self, e: &gradlab_core::observe::StartEvent) -> gradlab_core::Result<()> {
        self.0.on_start(e)
    }
    fn on_step(&mut self, e: &gradlab_core::observe::StepEvent) -> gradlab_core::Result<()> {
        self.0.on_step(e)
    }
    fn on_eval(&mut self, e: &gradlab_core::observe::EvalEvent) -> gradlab_core::Result<()> {
        self.0.on_eval(e)
    }
    fn on_end(&mut self) -> gradlab_core::Result<()> {
        self.0.on_end()
    }
}

/// The trainer's closures return core errors; ours are wrapped as a core "invalid" error with
/// the message (core errors pass through unchanged).
fn to_core(e: super::error::EmulatorError) -> gradlab_core::Error {
    match e {
        super::error::EmulatorError::Core(c) => c,
        super::error::EmulatorError::Candle(c) => gradlab_core::Error::from(c),
        other => gradlab_core::Error::invalid("emulator", other, "a valid emulator batch"),
    }
}
