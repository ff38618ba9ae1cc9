//! Experiments `m7-emulator` (train every head variant, evaluate, roll out) and `m7-speed`
//! (emulator vs box-model throughput).

use super::EmulatorError;
use super::eval::{Evaluation, evaluate, species_means};
use super::heads::{Closing, HeadKind, N_ENV, N_STATE, Penalties};
use super::model::{Emulator, EmulatorConfig, EmulatorData, OutputKind};
use super::rollout::{TRACKED, rollout};
use super::speed::{box_model_throughput, cells_to_x, emulator_throughput};
use crate::config::M7Config;
use crate::dataset;
use crate::layout;
use crate::model::M7;
use crate::sampler::{SamplerConfig, sample_cells};
use crate::state::{AerosolState, Environment};
use gradlab_core::device::DeviceChoice;
use gradlab_core::experiment::{Experiment, ExperimentResult, RunContext};
use gradlab_core::normalize::NormKind;
use gradlab_core::observe::{JsonlObserver, Observer, ProgressObserver};
use gradlab_core::plot::{LinePlot, Mark, ScatterPlot};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::train::TrainConfig;
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// The experiments of the emulator.
pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment {
            entry: "aerosol.m7_emulator",
            description: "Train the M7 emulator with every head variant (plain, completion, correction, soft penalties, log+sign); R², mass violation, negativity, scatter plots, K-step rollouts vs the box model",
            run: run_emulator,
        },
        Experiment {
            entry: "aerosol.m7_speed",
            description: "Emulator inference throughput vs the M7 box model on the same cells, batch sizes up to one global step (571,392 cells)",
            run: run_speed,
        },
    ]
}

fn default_split() -> [f64; 2] {
    [0.8, 0.1]
}

/// Where the data comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataParams {
    /// A dataset directory in the reference layout (e.g. `runs/m7-generate/<ts>/dataset`);
    /// when absent the cells are sampled here with `m7` and `sampler`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Cells to sample when `dir` is absent.
    #[serde(default)]
    pub samples: usize,
    /// Train and validation fractions (the rest is test) when sampling.
    #[serde(default = "default_split")]
    pub split: [f64; 2],
    /// Fraction of the sampled cells, those with the most extreme tendencies (largest |z| over
    /// the 28 targets), that are split as their own stratum with the same fractions, so train,
    /// validation and test each get their share of the rare extreme cells
    /// ([`dataset::stratified_split_indices`]). 0 = a purely random split.
    #[serde(default)]
    pub stratify_tails: f64,
    /// Box model of the recorded step.
    #[serde(default)]
    pub m7: M7Config,
    /// Sampler.
    #[serde(default)]
    pub sampler: SamplerConfig,
}

/// One head variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Name in tables and file names.
    pub name: String,
    /// Target representation.
    #[serde(default)]
    pub output: OutputKind,
    /// Constraint layer.
    #[serde(default)]
    pub head: HeadKind,
    /// Whether the head is active in training.
    #[serde(default = "yes")]
    pub head_in_training: bool,
    /// Soft constraints.
    #[serde(default)]
    pub penalties: Penalties,
    /// Closing column per species of the completion head (default: the paper's).
    #[serde(default)]
    pub closing: Closing,
    /// Robust target scaling quantile of this variant (overrides the top-level
    /// `target_winsorize`).
    #[serde(default)]
    pub target_winsorize: Option<f64>,
    /// Robust output scale of this variant (overrides the top-level `target_scale_quantile`).
    #[serde(default)]
    pub target_scale_quantile: Option<f64>,
    /// Huber δ of this variant (overrides the top-level `huber_delta`).
    #[serde(default)]
    pub huber_delta: Option<f64>,
}

fn yes() -> bool {
    true
}

/// Rollout settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutParams {
    /// Test cells rolled out.
    pub cells: usize,
    /// Consecutive steps.
    pub steps: usize,
}

/// Parameters of `m7-emulator`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorParams {
    /// Seed of sampling, initialisation and shuffling.
    pub seed: u64,
    /// Data.
    pub data: DataParams,
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Input normalisation.
    #[serde(default)]
    pub input_norm: NormKind,
    /// Robust target scaling for every variant: the training targets are clipped per column to
    /// their `[q, 1 − q]` quantiles before the output normaliser and the loss (0 = off).
    #[serde(default)]
    pub target_winsorize: f64,
    /// [`EmulatorConfig::target_scale_quantile`] for every variant (0 = off, the paper's z-score).
    #[serde(default)]
    pub target_scale_quantile: f64,
    /// [`EmulatorConfig::huber_delta`] for every variant (0 = MSE, the paper's).
    #[serde(default)]
    pub huber_delta: f64,
    /// The head variants to train.
    pub variants: Vec<Variant>,
    /// Trainer settings (shared by all variants; the seed is overridden by `seed`).
    pub train: TrainConfig,
    /// Rollout.
    pub rollout: RolloutParams,
    /// Test rows drawn in the scatter plots.
    #[serde(default = "default_scatter")]
    pub scatter_points: usize,
    /// Device.
    #[serde(default)]
    pub device: DeviceChoice,
}

fn default_scatter() -> usize {
    3000
}

/// Train / validation / test splits, the box-model configuration that produced them and where
/// they came from. Shared by `m7-emulator`, `m7-speed` and the studies (`m7-hpo`, `m7-landscape`).
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training rows.
    pub train: EmulatorData,
    /// Validation rows.
    pub val: EmulatorData,
    /// Test rows.
    pub test: EmulatorData,
    /// Box-model time step [s].
    pub dt: f64,
    /// Box-model configuration of the data.
    pub m7: M7Config,
    /// Where the data came from.
    pub source: String,
}

/// The loss settings in words, for reports.
fn loss_words(huber: f64, scale_q: f64, winsorize: f64) -> String {
    let mut w = if huber > 0.0 { format!("Huber (δ = {huber})") } else { "MSE".to_string() };
    w.push_str(" on targets z-scored");
    if winsorize > 0.0 {
        w.push_str(&format!(" after clipping to their [{winsorize}, 1 − {winsorize}] quantiles"));
    } else if scale_q > 0.0 {
        w.push_str(&format!(
            " with mean and σ of the bulk (targets clipped to [{scale_q}, 1 − {scale_q}] quantiles for the fit only)"
        ));
    } else {
        w.push_str(" with the training mean and σ (the paper's)");
    }
    w
}

/// Loads a dataset directory (`data.dir`) or samples `data.samples` cells with the box model.
pub fn load_data(p: &DataParams, seed: u64) -> crate::emulator::Result<Splits> {
    if let Some(dir) = &p.dir {
        let d = dataset::read_dataset(dir)?;
        if d.include_sea_salt {
            return Err(EmulatorError::config(
                "data.dir",
                dir.display(),
                "a dataset in the 24-state layout without sea salt",
            ));
        }
        let m7 = d.manifest.as_ref().map(|m| m.m7).unwrap_or_default();
        let f = |x: &Array2<f32>, y: &Array2<f32>| {
            EmulatorData::from_xy(&x.mapv(f64::from).view(), &y.mapv(f64::from).view())
        };
        return Ok(Splits {
            train: f(&d.x_train, &d.y_train)?,
            val: f(&d.x_val, &d.y_val)?,
            test: f(&d.x_test, &d.y_test)?,
            dt: m7.dt,
            m7,
            source: format!("dataset {}", dir.display()),
        });
    }
    if p.samples < 100 {
        return Err(EmulatorError::config("data.samples", p.samples, "at least 100 cells, or data.dir"));
    }
    let samples = sample_cells(&p.m7, &p.sampler, seed, 0, p.samples)?;
    let (x, y) = dataset::tables(&samples, false);
    let all = EmulatorData::from_xy(&x.view(), &y.view())?;
    if !(0.0..1.0).contains(&p.stratify_tails) {
        return Err(EmulatorError::config(
            "data.stratify_tails",
            p.stratify_tails,
            "a fraction 0 <= f < 1 of the cells (0: a random split)",
        ));
    }
    let parts = if p.stratify_tails > 0.0 {
        let scores = dataset::tail_scores(&all.t.view());
        dataset::stratified_split_indices(&scores, p.stratify_tails, p.split[0], p.split[1], seed)?
    } else {
        dataset::split_indices(x.nrows(), p.split[0], p.split[1], seed)?
    };
    let f = |idx: &Vec<usize>| EmulatorData { x: all.x.select(Axis(0), idx), t: all.t.select(Axis(0), idx) };
    let strat = if p.stratify_tails > 0.0 {
        format!(", split stratified on the {} most extreme cells", (p.samples as f64 * p.stratify_tails).ceil())
    } else {
        String::new()
    };
    Ok(Splits {
        train: f(&parts[0]),
        val: f(&parts[1]),
        test: f(&parts[2]),
        dt: p.m7.dt,
        m7: p.m7,
        source: format!("{} cells sampled with seed {seed} (f64 tendencies){strat}", p.samples),
    })
}

fn cells_of(x: &Array2<f32>, n: usize) -> (Vec<Environment>, Vec<AerosolState>) {
    (0..n.min(x.nrows()))
        .map(|i| {
            let r: Vec<f64> = x.row(i).iter().map(|&v| v as f64).collect();
            (layout::read_env(&r[..N_ENV]), layout::read_state(&r[N_ENV..], false))
        })
        .unzip()
}

/// Variable groups for the scatter plots: (name, output columns).
const GROUPS: [(&str, &[usize]); 7] = [
    ("h2so4", &[0]),
    ("so4", &[1, 2, 3, 4]),
    ("bc", &[5, 6, 7, 8]),
    ("oc", &[9, 10, 11, 12]),
    ("du", &[13, 14, 15, 16]),
    ("number", &[17, 18, 19, 20, 21, 22, 23]),
    ("water", &[24, 25, 26, 27]),
];

struct Outcome {
    name: String,
    eval: Evaluation,
    epochs: usize,
    stopped_early: bool,
    seconds: f64,
    rollout: Vec<super::rollout::RolloutStep>,
}

/// Runs `m7-emulator`.
pub fn run_emulator(ctx: &mut RunContext) -> ExperimentResult {
    let p: EmulatorParams = ctx.params()?;
    if p.variants.is_empty() {
        return Err("variants: give at least one head variant".into());
    }
    let device = p.device.open()?;
    let t0 = Instant::now();
    let data = load_data(&p.data, p.seed)?;
    let data_secs = t0.elapsed().as_secs_f64();
    let means = species_means(&data.train.x.view())?;
    let truth_eval = evaluate(&data.test.x.view(), &data.test.t.view(), &data.test.t.view(), data.dt, &means)?;
    let m7 = M7::new(data.m7)?;
    let (renv, rstart) = cells_of(&data.test.x, p.rollout.cells);
    let mut train_cfg = p.train.clone();
    train_cfg.seed = p.seed;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut preds: Vec<Array2<f32>> = Vec::new();
    for v in &p.variants {
        let cfg = EmulatorConfig {
            hidden: p.hidden.clone(),
            input_norm: p.input_norm,
            output: v.output,
            head: v.head,
            head_in_training: v.head_in_training,
            penalties: v.penalties,
            closing: v.closing,
            target_winsorize: v.target_winsorize.unwrap_or(p.target_winsorize),
            target_scale_quantile: v.target_scale_quantile.unwrap_or(p.target_scale_quantile),
            huber_delta: v.huber_delta.unwrap_or(p.huber_delta),
            ..Default::default()
        };
        let t = Instant::now();
        let observers: Vec<Box<dyn Observer>> = vec![
            Box::new(ProgressObserver::new(&format!("m7-emulator {}", v.name), ctx.quiet)),
            Box::new(JsonlObserver::new(ctx.dir.jsonl("metrics.jsonl")?, 200).with_tag(&v.name)),
        ];
        let ck = ctx.dir.subdir(&format!("checkpoints/{}", v.name))?;
        let (em, rep) =
            super::train::fit(cfg, data.dt, &train_cfg, p.seed, &data.train, &data.val, &device, &ck, observers)?;
        let seconds = t.elapsed().as_secs_f64();
        em.save(ctx.dir.subdir(&format!("models/{}", v.name))?)?;
        let pred = em.predict(&data.test.x.view())?;
        let eval = evaluate(&data.test.x.view(), &data.test.t.view(), &pred.view(), data.dt, &means)?;
        let ro = rollout(&em, &m7, &renv, &rstart, p.rollout.steps)?;
        ctx.metrics()?.log(
            &serde_json::json!({"variant": v.name, "closing": em.closing(), "test": &eval, "rollout_last": ro.last()}),
        )?;
        if !ctx.quiet {
            eprintln!(
                "m7-emulator {}: R² {:.4} (median {:.4}), R² log {:.4}, neg frac {:.2e}, {} epochs, {:.0} s, closing {:?}",
                v.name,
                eval.r2_mean,
                eval.r2_median,
                eval.r2_log_mean,
                eval.negative_fraction,
                rep.epochs_run,
                seconds,
                em.closing()
            );
        }
        outcomes.push(Outcome {
            name: v.name.clone(),
            eval,
            epochs: rep.epochs_run,
            stopped_early: rep.stopped_early,
            seconds,
            rollout: ro,
        });
        preds.push(pred);
    }

    // Figures.
    let best = (0..outcomes.len())
        .max_by(|&a, &b| outcomes[a].eval.r2_mean.total_cmp(&outcomes[b].eval.r2_mean))
        .expect("at least one variant");
    let ycols = layout::y_columns(false);
    let n_sc = p.scatter_points.min(data.test.len());
    for (g, cols) in GROUPS {
        let mut pts = Vec::with_capacity(n_sc * cols.len());
        for &j in cols {
            let c = data.test.t.column(j);
            let m = c.iter().map(|&v| v as f64).sum::<f64>() / c.len() as f64;
            let sd = (c.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / c.len() as f64).sqrt().max(1e-300);
            for i in 0..n_sc {
                pts.push((data.test.t[[i, j]] as f64 / sd, preds[best][[i, j]] as f64 / sd));
            }
        }
        let what = if g == "water" { "water content" } else { "tendency" };
        ScatterPlot::new(&format!("{}: {g} {what}, predicted vs true", outcomes[best].name), pts)
            .x_label(&format!("true {what} / std of true (per column)"))
            .y_label(&format!("predicted {what} / std of true"))
            .save(&ctx.dir.file(&format!("scatter_{g}"))?)?;
    }
    let mut r2plot = LinePlot::new("Test R² per output (clipped at −1)")
        .x_label("output column (0–23 tendencies, 24–27 water)")
        .y_label("R²");
    for o in &outcomes {
        let pts = o.eval.r2.iter().enumerate().map(|(j, &r)| (j as f64, r.max(-1.0))).collect();
        r2plot = r2plot.series(&o.name, pts, Mark::LinePoints);
    }
    r2plot.save(&ctx.dir.file("r2_per_output")?)?;
    // Bars (outlines) of the best variant.
    let mut bars = Vec::new();
    for (j, &r) in outcomes[best].eval.r2.iter().enumerate() {
        let (a, b, h) = (j as f64 - 0.4, j as f64 + 0.4, r.max(-1.0));
        bars.extend([(a, 0.0), (a, h), (b, h), (b, 0.0)]);
    }
    LinePlot::new(&format!("R² per output, {} (bars; clipped at −1)", outcomes[best].name))
        .x_label("output column (0–23 tendencies, 24–27 water)")
        .y_label("R²")
        .series(&outcomes[best].name, bars, Mark::Line)
        .save(&ctx.dir.file("r2_bars")?)?;
    let mut drift_plot = LinePlot::new("Rollout: relative drift of total number vs the box model")
        .x_label("steps")
        .y_label("(emulator − box) / box");
    for o in &outcomes {
        let pts = o.rollout.iter().map(|r| (r.step as f64, r.drift[4])).collect();
        drift_plot = drift_plot.series(&o.name, pts, Mark::LinePoints);
    }
    drift_plot.save(&ctx.dir.file("rollout_number_drift")?)?;

    // Tables.
    let pct = |v: f64| format!("{:.2e}", v);
    let mut rows = Vec::new();
    for o in &outcomes {
        let e = &o.eval;
        rows.push(vec![
            o.name.clone(),
            fmt_num(e.r2_mean, 4),
            fmt_num(e.r2_median, 4),
            fmt_num(e.r2_log_mean, 4),
            e.mass_rmse.iter().map(|&v| pct(v)).collect::<Vec<_>>().join(" / "),
            e.mass_max.iter().map(|&v| pct(v)).collect::<Vec<_>>().join(" / "),
            pct(e.negative_fraction),
            pct(e.negative_water_fraction),
            pct(e.negative_mean),
            format!("{}{}", o.epochs, if o.stopped_early { " (early stop)" } else { "" }),
            fmt_num(o.seconds, 1),
        ]);
    }
    let e = &truth_eval;
    rows.push(vec![
        "box model (truth)".into(),
        "1".into(),
        "1".into(),
        "1".into(),
        e.mass_rmse.iter().map(|&v| pct(v)).collect::<Vec<_>>().join(" / "),
        e.mass_max.iter().map(|&v| pct(v)).collect::<Vec<_>>().join(" / "),
        pct(e.negative_fraction),
        pct(e.negative_water_fraction),
        pct(e.negative_mean),
        "–".into(),
        "–".into(),
    ]);
    let headers = [
        "variant",
        "R² (avg of 28)",
        "R² (median of 28)",
        "R² log|Δ|",
        "mass RMSE / mean (S / BC / OC / DU)",
        "max mass violation / mean (S / BC / OC / DU)",
        "neg. fraction",
        "neg. water fraction",
        "neg. mean",
        "epochs",
        "train s",
    ];
    let mut ro_rows = Vec::new();
    for o in &outcomes {
        if let Some(last) = o.rollout.last() {
            let mut r = vec![o.name.clone()];
            r.extend(last.drift.iter().map(|&d| format!("{d:+.3e}")));
            r.push(pct(last.negative_fraction));
            r.push(last.nonfinite_cells.to_string());
            ro_rows.push(r);
        }
    }
    let mut ro_headers = vec!["variant".to_string()];
    ro_headers.extend(TRACKED.iter().map(|t| format!("drift {t}")));
    ro_headers.extend(["neg. fraction".to_string(), "non-finite cells".to_string()]);
    let mut r2_rows = Vec::new();
    for (j, c) in ycols.iter().enumerate() {
        let mut r = vec![format!("{} {}", if j < N_STATE { "Δ" } else { "" }, c.name)];
        r.extend(outcomes.iter().map(|o| fmt_num(o.eval.r2[j], 3)));
        r2_rows.push(r);
    }
    let mut r2_headers = vec!["output".to_string()];
    r2_headers.extend(outcomes.iter().map(|o| o.name.clone()));

    let summary = serde_json::json!({
        "data": {"source": data.source, "train": data.train.len(), "val": data.val.len(), "test": data.test.len(), "dt": data.dt, "seconds": data_secs},
        "species_means": means,
        "truth": truth_eval,
        "best_variant": outcomes[best].name,
        "variants": outcomes.iter().map(|o| serde_json::json!({
            "name": o.name, "test": o.eval, "epochs": o.epochs, "stopped_early": o.stopped_early,
            "train_seconds": o.seconds, "rollout": o.rollout,
        })).collect::<Vec<_>>(),
        "paper": {"r2_mean": 0.771, "r2_mean_log_sign_workshop": 0.89},
    });
    ctx.dir.write_summary(&summary)?;

    let mut r = Report::new("m7-emulator: physics-constrained neural emulator of M7");
    r.paragraph(&format!(
        "Data: {}; {} / {} / {} train / val / test rows; Δt = {} s. MLP 32 → {:?} → 28 (ReLU), inputs {:?}-normalised; \
         Trainer: {:?}, batch {}, up to {} epochs, early stopping {:?}. Loss (unless a variant overrides it): {}. \
         Paper (Harder et al. 2022): average R² 0.771 (0.89 with the log + sign variant in the workshop paper).",
        data.source,
        data.train.len(),
        data.val.len(),
        data.test.len(),
        data.dt,
        p.hidden,
        p.input_norm,
        p.train.optimizer,
        p.train.batch_size,
        p.train.epochs,
        p.train.early_stopping,
        loss_words(p.huber_delta, p.target_scale_quantile, p.target_winsorize),
    ));
    r.code("sh", &ctx.command());
    r.heading("Test set, every head variant");
    r.table(&headers, &rows);
    r.paragraph(
        "Mass metrics: per species ΣΔ − budget (P·Δt for sulfur, 0 otherwise) divided by the species' mean \
         concentration in the training inputs. Negative fraction: share of predicted next-state entries x + Δ < 0 \
         over the 24 states. The last row evaluates the box model's own tendencies.",
    );
    r.heading(&format!("Rollout: {} steps from {} test cells (constant environment)", p.rollout.steps, renv.len()));
    r.table(&ro_headers, &ro_rows);
    r.heading("R² per output");
    r.table(&r2_headers, &r2_rows);
    r.figure("R² per output, all variants", "r2_per_output.png");
    r.figure("R² per output, best variant (bars)", "r2_bars.png");
    r.heading(&format!("Predicted vs true, best variant ({})", outcomes[best].name));
    for (g, _) in GROUPS {
        r.figure(g, &format!("scatter_{g}.png"));
    }
    r.figure("Rollout drift of total number", "rollout_number_drift.png");
    r.write(&ctx.dir)?;
    Ok(())
}

fn default_batches() -> Vec<usize> {
    vec![1_000, 10_000, 100_000, 571_392]
}

/// Parameters of `m7-speed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedParams {
    /// Seed of the sampled cells.
    pub seed: u64,
    /// Distinct cells sampled (tiled to the largest batch).
    pub pool_cells: usize,
    /// Batch sizes (cells per call).
    #[serde(default = "default_batches")]
    pub batch_sizes: Vec<usize>,
    /// Best-of repeats per measurement.
    pub repeats: usize,
    /// A saved emulator; when absent a freshly initialised one with `hidden` is timed (the
    /// cost does not depend on the weights' values).
    #[serde(default)]
    pub model_dir: Option<PathBuf>,
    /// Hidden widths of the fresh emulator.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Head of the fresh emulator.
    #[serde(default)]
    pub head: HeadKind,
    /// Extra device for the emulator (`cuda` needs the `cuda` feature); the CPU is always timed.
    #[serde(default)]
    pub device: DeviceChoice,
    /// Sampler.
    #[serde(default)]
    pub sampler: SamplerConfig,
}

fn default_hidden() -> Vec<usize> {
    vec![128, 128]
}

/// Runs `m7-speed`.
pub fn run_speed(ctx: &mut RunContext) -> ExperimentResult {
    let p: SpeedParams = ctx.params()?;
    let max_batch = p.batch_sizes.iter().copied().max().ok_or("batch_sizes: give at least one batch size")?;
    if p.batch_sizes.contains(&0) || p.pool_cells == 0 {
        return Err("batch_sizes and pool_cells must be >= 1".into());
    }
    let m7cfg = M7Config::default();
    let samples = sample_cells(&m7cfg, &p.sampler, p.seed, 0, p.pool_cells)?;
    let pool: Vec<(Environment, AerosolState)> = samples.iter().map(|s| (s.env, s.before)).collect();
    let cells: Vec<(Environment, AerosolState)> = (0..max_batch).map(|i| pool[i % pool.len()]).collect();
    let x = cells_to_x(&cells);
    let m7 = M7::new(m7cfg)?;
    let cpu = candle_core::Device::Cpu;
    let make = |dev: &candle_core::Device| -> super::error::Result<Emulator> {
        match &p.model_dir {
            Some(d) => Emulator::load_on(d, dev),
            None => {
                let (sx, sy) = dataset::tables(&samples, false);
                let d = EmulatorData::from_xy(&sx.view(), &sy.view())?;
                let cfg = EmulatorConfig { hidden: p.hidden.clone(), head: p.head, ..Default::default() };
                Emulator::new(cfg, m7cfg.dt, &d, p.seed, dev)
            }
        }
    };
    let em_cpu = make(&cpu)?;
    let extra = p.device.open()?;
    let em_gpu = if extra.is_cuda() { Some(make(&extra)?) } else { None };
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    let mut records = Vec::new();
    for &b in &p.batch_sizes {
        let xb = x.slice(ndarray::s![..b, ..]).to_owned();
        let box_tp = box_model_throughput(&m7, &cells[..b], p.repeats);
        let em_tp = emulator_throughput(&em_cpu, &xb, p.repeats)?;
        let gpu_tp = match &em_gpu {
            Some(g) => Some(emulator_throughput(g, &xb, p.repeats)?),
            None => None,
        };
        if !ctx.quiet {
            eprintln!(
                "m7-speed batch {b}: box {box_tp:.3e} cells/s, emulator CPU {em_tp:.3e} cells/s ({:.2}×)",
                em_tp / box_tp
            );
        }
        records.push(serde_json::json!({"batch": b, "box_cells_per_s": box_tp, "emulator_cpu_cells_per_s": em_tp,
            "speedup_cpu": em_tp / box_tp, "emulator_gpu_cells_per_s": gpu_tp, "speedup_gpu": gpu_tp.map(|g| g / box_tp)}));
        ctx.metrics()?.log(records.last().expect("just pushed"))?;
        rows.push(vec![
            b.to_string(),
            format!("{box_tp:.3e}"),
            format!("{em_tp:.3e}"),
            format!("{:.2}", em_tp / box_tp),
            gpu_tp.map_or("–".into(), |g| format!("{g:.3e} ({:.1}×)", g / box_tp)),
        ]);
    }
    ctx.dir.write_summary(
        &serde_json::json!({"threads": threads, "pool_cells": p.pool_cells, "parameters": em_cpu.parameters(),
        "model": p.model_dir, "rows": records, "paper": {"gpu_speedup": 64.0}}),
    )?;
    let mut r = Report::new("m7-speed: emulator vs M7 box-model throughput");
    r.paragraph(&format!(
        "Same cells for both ({} distinct spun-up cells tiled to each batch size). Box model: one M7 step per cell, \
         parallel over {threads} rayon threads. Emulator: `Emulator::predict` from a host array to a host array \
         (normalisation, MLP 32 → {:?} → 28, {:?} head, de-normalisation), {} parameters, f32, same threads. \
         Best of {} repeats. Paper: GPU emulator > 64× faster than M7 on CPU.",
        p.pool_cells,
        em_cpu.config().hidden,
        em_cpu.config().head,
        em_cpu.parameters(),
        p.repeats
    ));
    r.code("sh", &ctx.command());
    r.table(
        &["cells per call", "box model (cells/s)", "emulator CPU (cells/s)", "speed-up CPU", "emulator GPU (cells/s)"],
        &rows,
    );
    r.write(&ctx.dir)?;
    Ok(())
}
