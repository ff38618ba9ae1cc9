//! `m7-emulator`: train every head variant of the emulator, evaluate it on the test rows, roll it
//! out against the box model, and report.
//!
//! The variants are partial overrides of one base [`EmulatorConfig`] (the `emulator` block of the
//! config; see [`Variant`]).

use crate::box_model::M7;
use crate::emulator::data::{DataParams, Splits, cells_of, load_data};
use crate::emulator::eval::{Evaluation, evaluate, species_means};
use crate::emulator::heads::N_STATE;
use crate::emulator::rollout::{RolloutStep, TRACKED, rollout};
use crate::emulator::train::{derive_seeds, fit};
use crate::emulator::variant::variant_configs;
use crate::emulator::{EmulatorConfig, Variant};
use crate::layout;
use crate::state::{AerosolState, Environment};
use gradlab_core::device::DeviceChoice;
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::observe::{JsonlObserver, Observer, ProgressObserver};
use gradlab_core::plot::{LinePlot, Mark, ScatterPlot};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::train::TrainConfig;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::time::Instant;

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
    /// The run's one seed: the sampled cells and the split; the weights' initialisation and the
    /// shuffling are derived from it.
    pub seed: u64,
    /// Data.
    pub data: DataParams,
    /// The base emulator every variant starts from.
    pub emulator: EmulatorConfig,
    /// The variants to train: each a name and the [`EmulatorConfig`] fields it changes.
    pub variants: Vec<Variant>,
    /// Trainer settings (shared by all variants; `train.seed` is derived from `seed`).
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

/// What one trained variant gave.
struct Outcome {
    name: String,
    eval: Evaluation,
    epochs: usize,
    stopped_early: bool,
    seconds: f64,
    rollout: Vec<RolloutStep>,
    pred: Array2<f32>,
}

/// The data and what every variant is compared with.
struct Prepared {
    data: Splits,
    data_secs: f64,
    means: [f64; 4],
    truth: Evaluation,
    m7: M7,
    rollout_env: Vec<Environment>,
    rollout_start: Vec<AerosolState>,
    device: candle_core::Device,
}

/// Runs `m7-emulator`: data → train and evaluate each variant → figures → report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: EmulatorParams = ctx.params()?;
    let configs = variant_configs(&p.emulator, &p.variants)?;
    let (train_cfg, init_seed) = derive_seeds(&p.train, p.seed)?;
    let prep = prepare(&p)?;
    let mut outcomes = Vec::new();
    for (v, cfg) in p.variants.iter().zip(configs) {
        outcomes.push(train_variant(ctx, &p, &prep, &v.name, cfg, &train_cfg, init_seed)?);
    }
    let best = (0..outcomes.len())
        .max_by(|&a, &b| outcomes[a].eval.r2_mean.total_cmp(&outcomes[b].eval.r2_mean))
        .expect("at least one variant");
    plot_scatter(ctx, &prep.data, &outcomes[best], p.scatter_points)?;
    plot_r2_and_drift(ctx, &outcomes, best)?;
    write_summary(ctx, &prep, &outcomes, best)?;
    write_report(ctx, &p, &prep, &outcomes, best)?;
    Ok(())
}

/// Data stage: the splits, the species means, the box model's own evaluation and the rollout
/// start cells.
fn prepare(p: &EmulatorParams) -> crate::Result<Prepared> {
    let t0 = Instant::now();
    let data = load_data(&p.data, p.seed)?;
    let data_secs = t0.elapsed().as_secs_f64();
    let means = species_means(&data.train.x.view())?;
    let truth = evaluate(&data.test.x.view(), &data.test.t.view(), &data.test.t.view(), data.dt, &means)?;
    let m7 = M7::new(data.m7)?;
    let (rollout_env, rollout_start) = cells_of(&data.test.x, p.rollout.cells);
    let device = p.device.open()?;
    Ok(Prepared { data, data_secs, means, truth, m7, rollout_env, rollout_start, device })
}

/// Train stage for one variant: fit, save, evaluate on the test rows, roll out.
fn train_variant(
    ctx: &mut RunContext,
    p: &EmulatorParams,
    prep: &Prepared,
    name: &str,
    cfg: EmulatorConfig,
    train_cfg: &TrainConfig,
    init_seed: u64,
) -> crate::Result<Outcome> {
    let data = &prep.data;
    let t = Instant::now();
    let observers: Vec<Box<dyn Observer>> = vec![
        Box::new(ProgressObserver::new(&format!("m7-emulator {name}"), ctx.quiet)),
        Box::new(JsonlObserver::new(ctx.dir.jsonl("metrics.jsonl")?, 200).with_tag(name)),
    ];
    let ck = ctx.dir.subdir(&format!("checkpoints/{name}"))?;
    let (em, rep) =
        fit(cfg, data.dt, train_cfg, init_seed, &data.train, &data.val, &prep.device, &ck, ctx.resume, observers)?;
    let seconds = t.elapsed().as_secs_f64();
    em.save(ctx.dir.subdir(&format!("models/{name}"))?)?;
    let pred = em.predict(&data.test.x.view())?;
    let eval = evaluate(&data.test.x.view(), &data.test.t.view(), &pred.view(), data.dt, &prep.means)?;
    let ro = rollout(&em, &prep.m7, &prep.rollout_env, &prep.rollout_start, p.rollout.steps)?;
    ctx.metrics()?.log(
        &serde_json::json!({"variant": name, "closing": em.closing(), "test": &eval, "rollout_last": ro.last()}),
    )?;
    if !ctx.quiet {
        eprintln!(
            "m7-emulator {name}: R² {:.4} (median {:.4}), R² log {:.4}, neg frac {:.2e}, {} epochs, {:.0} s, closing {:?}",
            eval.r2_mean,
            eval.r2_median,
            eval.r2_log_mean,
            eval.negative_fraction,
            rep.epochs_run,
            seconds,
            em.closing()
        );
    }
    Ok(Outcome {
        name: name.to_string(),
        eval,
        epochs: rep.epochs_run,
        stopped_early: rep.stopped_early,
        seconds,
        rollout: ro,
        pred,
    })
}

/// Predicted vs true of the best variant, one figure per variable group (both axes divided by the
/// standard deviation of the true column).
fn plot_scatter(ctx: &RunContext, data: &Splits, best: &Outcome, points: usize) -> crate::Result<()> {
    let n_sc = points.min(data.test.len());
    for (g, cols) in GROUPS {
        let mut pts = Vec::with_capacity(n_sc * cols.len());
        for &j in cols {
            let c = data.test.t.column(j);
            let m = c.iter().map(|&v| v as f64).sum::<f64>() / c.len() as f64;
            let sd = (c.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / c.len() as f64).sqrt().max(1e-300);
            for i in 0..n_sc {
                pts.push((data.test.t[[i, j]] as f64 / sd, best.pred[[i, j]] as f64 / sd));
            }
        }
        let what = if g == "water" { "water content" } else { "tendency" };
        ScatterPlot::new(&format!("{}: {g} {what}, predicted vs true", best.name), pts)
            .x_label(&format!("true {what} / std of true (per column)"))
            .y_label(&format!("predicted {what} / std of true"))
            .save(&ctx.dir.file(&format!("scatter_{g}"))?)?;
    }
    Ok(())
}

/// R² per output (all variants, and bars of the best) and the rollout drift of total number.
fn plot_r2_and_drift(ctx: &RunContext, outcomes: &[Outcome], best: usize) -> crate::Result<()> {
    let mut r2plot = LinePlot::new("Test R² per output (clipped at −1)")
        .x_label("output column (0–23 tendencies, 24–27 water)")
        .y_label("R²");
    for o in outcomes {
        let pts = o.eval.r2.iter().enumerate().map(|(j, &r)| (j as f64, r.max(-1.0))).collect();
        r2plot = r2plot.series(&o.name, pts, Mark::LinePoints);
    }
    r2plot.save(&ctx.dir.file("r2_per_output")?)?;
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
    for o in outcomes {
        let pts = o.rollout.iter().map(|r| (r.step as f64, r.drift[4])).collect();
        drift_plot = drift_plot.series(&o.name, pts, Mark::LinePoints);
    }
    drift_plot.save(&ctx.dir.file("rollout_number_drift")?)?;
    Ok(())
}

fn write_summary(ctx: &RunContext, prep: &Prepared, outcomes: &[Outcome], best: usize) -> crate::Result<()> {
    let data = &prep.data;
    let summary = serde_json::json!({
        "data": {"source": data.source, "train": data.train.len(), "val": data.val.len(), "test": data.test.len(), "dt": data.dt, "seconds": prep.data_secs},
        "species_means": prep.means,
        "truth": prep.truth,
        "best_variant": outcomes[best].name,
        "variants": outcomes.iter().map(|o| serde_json::json!({
            "name": o.name, "test": o.eval, "epochs": o.epochs, "stopped_early": o.stopped_early,
            "train_seconds": o.seconds, "rollout": o.rollout,
        })).collect::<Vec<_>>(),
        "paper": {"r2_mean": 0.771, "r2_mean_log_sign_workshop": 0.89},
    });
    ctx.dir.write_summary(&summary)?;
    Ok(())
}

fn sci(v: f64) -> String {
    format!("{v:.2e}")
}

fn joined(v: &[f64]) -> String {
    v.iter().map(|&x| sci(x)).collect::<Vec<_>>().join(" / ")
}

/// The test-set table: one row per variant, then the box model's own tendencies.
fn test_table(outcomes: &[Outcome], truth: &Evaluation) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut rows = Vec::new();
    for o in outcomes {
        let e = &o.eval;
        rows.push(vec![
            o.name.clone(),
            fmt_num(e.r2_mean, 4),
            fmt_num(e.r2_median, 4),
            fmt_num(e.r2_log_mean, 4),
            joined(&e.mass_rmse),
            joined(&e.mass_max),
            sci(e.negative_fraction),
            sci(e.negative_water_fraction),
            sci(e.negative_mean),
            format!("{}{}", o.epochs, if o.stopped_early { " (early stop)" } else { "" }),
            fmt_num(o.seconds, 1),
        ]);
    }
    let e = truth;
    let mut truth_row: Vec<String> = ["box model (truth)", "1", "1", "1"].map(String::from).to_vec();
    truth_row.extend([
        joined(&e.mass_rmse),
        joined(&e.mass_max),
        sci(e.negative_fraction),
        sci(e.negative_water_fraction),
        sci(e.negative_mean),
        "–".into(),
        "–".into(),
    ]);
    rows.push(truth_row);
    let headers = vec![
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
    (headers, rows)
}

/// The rollout table (last step of each variant) and the R² per output table.
fn rollout_and_r2_tables(outcomes: &[Outcome]) -> [(Vec<String>, Vec<Vec<String>>); 2] {
    let mut ro_rows = Vec::new();
    for o in outcomes {
        if let Some(last) = o.rollout.last() {
            let mut r = vec![o.name.clone()];
            r.extend(last.drift.iter().map(|&d| format!("{d:+.3e}")));
            r.push(sci(last.negative_fraction));
            r.push(last.nonfinite_cells.to_string());
            ro_rows.push(r);
        }
    }
    let mut ro_headers = vec!["variant".to_string()];
    ro_headers.extend(TRACKED.iter().map(|t| format!("drift {t}")));
    ro_headers.extend(["neg. fraction".to_string(), "non-finite cells".to_string()]);
    let mut r2_rows = Vec::new();
    for (j, c) in layout::y_columns(false).iter().enumerate() {
        let mut r = vec![format!("{} {}", if j < N_STATE { "Δ" } else { "" }, c.name)];
        r.extend(outcomes.iter().map(|o| fmt_num(o.eval.r2[j], 3)));
        r2_rows.push(r);
    }
    let mut r2_headers = vec!["output".to_string()];
    r2_headers.extend(outcomes.iter().map(|o| o.name.clone()));
    [(ro_headers, ro_rows), (r2_headers, r2_rows)]
}

/// The loss settings in words, for reports.
fn loss_words(cfg: &EmulatorConfig) -> String {
    let (huber, scale_q, winsorize) = (cfg.huber_delta, cfg.target_scale_quantile, cfg.target_winsorize);
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

fn write_report(
    ctx: &RunContext,
    p: &EmulatorParams,
    prep: &Prepared,
    outcomes: &[Outcome],
    best: usize,
) -> crate::Result<()> {
    let data = &prep.data;
    let (headers, rows) = test_table(outcomes, &prep.truth);
    let [(ro_headers, ro_rows), (r2_headers, r2_rows)] = rollout_and_r2_tables(outcomes);
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
        p.emulator.hidden,
        p.emulator.input_norm,
        p.train.optimizer,
        p.train.batch_size,
        p.train.epochs,
        p.train.early_stopping,
        loss_words(&p.emulator),
    ));
    r.code("sh", &ctx.command());
    r.heading("Test set, every head variant");
    r.table(&headers, &rows);
    r.paragraph(
        "Mass metrics: per species ΣΔ − budget (P·Δt for sulfur, 0 otherwise) divided by the species' mean \
         concentration in the training inputs. Negative fraction: share of predicted next-state entries x + Δ < 0 \
         over the 24 states. The last row evaluates the box model's own tendencies.",
    );
    r.heading(&format!(
        "Rollout: {} steps from {} test cells (constant environment)",
        p.rollout.steps,
        prep.rollout_env.len()
    ));
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
