//! `core-regression`: an MLP trained with the [`Trainer`] on a synthetic nonlinear regression
//! problem. It exercises the whole core (data, normalisers, optimiser, early stopping,
//! checkpoints, observers, metrics, plots, report) and is the smoke test of a fresh install.
//!
//! Targets (inputs `x ∈ U[−1.5, 1.5]^d`, `d ≥ 4`, Gaussian noise added):
//! `y0 = sin(π x0)·cos(x1) + 0.5·x2²`, `y1 = exp(−x3²) + x0·x1`.

use crate::data::{Table, array_to_tensor, split_indices, tensor_to_array};
use crate::device::DeviceChoice;
use crate::experiment::{ExperimentResult, RunContext};
use crate::nn::{Activation, Mlp};
use crate::normalize::{NormKind, Normalizer};
use crate::observe::{JsonlObserver, ProgressObserver};
use crate::plot::{LinePlot, Mark, ScatterPlot};
use crate::report::{Report, fmt_num};
use crate::train::{TrainConfig, Trainer, Validation};
use crate::{Error, Result, metrics};
use candle_core::{DType, Device, Module};
use candle_nn::{VarBuilder, VarMap};
use ndarray::{Array2, Axis};
use rand::Rng;

/// Parameters of `core-regression`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub seed: u64,
    /// Samples generated (split into train / val / test).
    pub samples: usize,
    /// Input dimension (≥ 4; extra inputs are distractors).
    pub inputs: usize,
    /// Standard deviation of the additive target noise.
    pub noise: f64,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    pub val_frac: f64,
    pub test_frac: f64,
    #[serde(default)]
    pub device: DeviceChoice,
    pub train: TrainConfig,
}

impl Params {
    fn validate(&self) -> Result<()> {
        if self.inputs < 4 {
            return Err(Error::invalid("inputs", self.inputs, "at least 4"));
        }
        if self.samples < 20 {
            return Err(Error::invalid("samples", self.samples, "at least 20"));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::invalid("noise", self.noise, "a finite number >= 0"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(Error::invalid("hidden", format!("{:?}", self.hidden), "one or more widths >= 1"));
        }
        Ok(())
    }
}

/// The synthetic data set.
pub fn make_data(p: &Params) -> Table {
    let mut r = crate::rng::rng(p.seed);
    let x = Array2::from_shape_fn((p.samples, p.inputs), |_| r.random_range(-1.5f32..1.5));
    let noise = crate::rng::normal_vec(&mut crate::rng::stream_rng(p.seed, 1), p.samples * 2, 0.0, p.noise);
    let mut y = Array2::<f32>::zeros((p.samples, 2));
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        let (a, b, c, d) = (row[0] as f64, row[1] as f64, row[2] as f64, row[3] as f64);
        y[[i, 0]] = ((std::f64::consts::PI * a).sin() * b.cos() + 0.5 * c * c + noise[2 * i]) as f32;
        y[[i, 1]] = ((-d * d).exp() + a * b + noise[2 * i + 1]) as f32;
    }
    Table { x, y }
}

/// Run the experiment (continuing from the run directory's checkpoint when `ctx.resume`).
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    run_until(ctx, None)
}

/// Test hook for kill-and-resume tests: like [`run`], but training returns (as if the process
/// were killed) after `stop_after_steps` optimiser steps, leaving its checkpoint; the run then
/// writes no results. Continue it with `ctx.resume = true`.
#[doc(hidden)]
pub fn run_until(ctx: &mut RunContext, stop_after_steps: Option<usize>) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.validate()?;
    let dev: Device = p.device.open()?;
    let data = make_data(&p);
    let split = split_indices(data.len(), p.val_frac, p.test_frac, p.seed)?;
    let (train, val, test) = data.split(&split);
    let xn = Normalizer::fit(&train.x.view(), NormKind::ZScore)?;
    let yn = Normalizer::fit(&train.y.view(), NormKind::ZScore)?;
    let norm = |t: &Table| -> Result<Table> { Table::new(xn.transform(&t.x.view())?, yn.transform(&t.y.view())?) };
    let (tr_n, va_n, te_n) = (norm(&train)?, norm(&val)?, norm(&test)?);
    xn.save(&ctx.dir.file("x_normalizer.json")?)?;
    yn.save(&ctx.dir.file("y_normalizer.json")?)?;

    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let mut sizes = vec![p.inputs];
    sizes.extend(&p.hidden);
    sizes.push(2);
    let model = Mlp::new(&sizes, Activation::Tanh, vb)?;
    // Deterministic initialisation from the seed (candle's own initialiser is not seeded).
    crate::params::init(&vm, p.seed, crate::params::Init::Glorot)?;

    let vx = array_to_tensor(&va_n.x.view(), &dev)?;
    let vy = array_to_tensor(&va_n.y.view(), &dev)?;
    let metrics_file = ctx.dir.jsonl("metrics.jsonl")?;
    let t0 = std::time::Instant::now();
    let mut trainer = Trainer::new(p.train.clone(), &vm)?
        .observe(ProgressObserver::new("core-regression", ctx.quiet))
        .observe(JsonlObserver::new(metrics_file, 50))
        .checkpoint_to(ctx.dir.subdir("checkpoints")?)
        .resume(ctx.resume)
        .restore_best(true);
    if let Some(steps) = stop_after_steps {
        trainer = trainer.stop_after_steps(steps);
    }
    let report = trainer.fit::<crate::Error, _, _>(
        tr_n.len(),
        |idx| {
            let (x, y) = tr_n.batch(idx, &dev)?;
            Ok(model.forward(&x)?.sub(&y)?.sqr()?.mean_all()?)
        },
        || {
            let l = model.forward(&vx)?.sub(&vy)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
            Ok(Validation::loss(l))
        },
    )?;
    let train_secs = t0.elapsed().as_secs_f64();
    if report.interrupted {
        return Ok(());
    }
    // The best checkpoint is back in the model: evaluate it on the held-out test set, in physical units.
    let pred_n = tensor_to_array(&model.forward(&array_to_tensor(&te_n.x.view(), &dev)?)?)?;
    let pred = yn.inverse(&pred_n.view())?;
    let yt = test.y.mapv(|v| v as f64);
    let yp = pred.mapv(|v| v as f64);
    let r2_cols = metrics::r2_per_column(&yt.view(), &yp.view())?;
    let r2 = metrics::r2(&yt.view(), &yp.view())?;
    let rmse = metrics::rmse(&yt.view(), &yp.view())?;
    let mae = metrics::mae(&yt.view(), &yp.view())?;

    let curve_t: Vec<(f64, f64)> = report.history.iter().map(|h| ((h.epoch + 1) as f64, h.train_loss)).collect();
    let curve_v: Vec<(f64, f64)> = report.history.iter().map(|h| ((h.epoch + 1) as f64, h.val_loss)).collect();
    LinePlot::new("Learning curve (normalised MSE)")
        .x_label("epoch")
        .y_label("MSE (z-scored targets)")
        .log_y(true)
        .series("train", curve_t, Mark::Line)
        .series("validation", curve_v, Mark::LinePoints)
        .save(&ctx.dir.file("learning_curve")?)?;
    for j in 0..2 {
        let pts: Vec<(f64, f64)> = (0..yt.nrows()).map(|i| (yt[[i, j]], yp[[i, j]])).collect();
        ScatterPlot::new(&format!("Test set: y{j} predicted vs true (R² = {:.4})", r2_cols[j]), pts)
            .x_label(&format!("true y{j}"))
            .y_label(&format!("predicted y{j}"))
            .save(&ctx.dir.file(&format!("pred_vs_true_y{j}"))?)?;
    }
    ctx.dir.write_npy("test_pred.npy", &pred)?;
    ctx.dir.write_npy("test_true.npy", &test.y)?;

    let summary = serde_json::json!({
        "r2": r2,
        "r2_per_output": r2_cols,
        "rmse": rmse,
        "mae": mae,
        "best_val_loss": report.best,
        "best_step": report.best_step,
        "steps": report.steps,
        "epochs_run": report.epochs_run,
        "stopped_early": report.stopped_early,
        "train_seconds": train_secs,
        "samples": {"train": train.len(), "val": val.len(), "test": test.len()},
        "parameters": crate::params::count_params(&vm),
    });
    ctx.dir.write_summary(&summary)?;

    let mut r = Report::new("core-regression: MLP on a synthetic nonlinear regression problem");
    r.paragraph(&format!(
        "Inputs x ∈ U[−1.5, 1.5]^{}, targets y0 = sin(πx0)·cos(x1) + 0.5·x2², y1 = exp(−x3²) + x0·x1, noise σ = {}. \
         MLP {:?} (tanh), trained with the core Trainer; the best checkpoint by validation loss is evaluated on the held-out test set.",
        p.inputs, p.noise, sizes
    ));
    r.code("sh", &ctx.command());
    r.heading("Test-set accuracy");
    r.table(
        &["metric", "value"],
        &[
            vec!["R² (uniform average)".into(), fmt_num(r2, 4)],
            vec!["R² y0".into(), fmt_num(r2_cols[0], 4)],
            vec!["R² y1".into(), fmt_num(r2_cols[1], 4)],
            vec!["RMSE".into(), fmt_num(rmse, 4)],
            vec!["MAE".into(), fmt_num(mae, 4)],
            vec!["optimiser steps".into(), report.steps.to_string()],
            vec!["training time (s)".into(), fmt_num(train_secs, 2)],
        ],
    );
    r.heading("Figures");
    r.figure("Learning curve", "learning_curve.png");
    r.figure("y0: predicted vs true", "pred_vs_true_y0.png");
    r.figure("y1: predicted vs true", "pred_vs_true_y1.png");
    r.write(&ctx.dir)?;
    if !ctx.quiet {
        eprintln!("core-regression: test R² = {r2:.4} ({} steps, {train_secs:.1} s)", report.steps);
    }
    Ok(())
}
