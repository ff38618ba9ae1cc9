//! `m7-emulator`: train every head variant of the emulator, evaluate it on the test rows, roll it
//! out against the box model, and report.
//!
//! The variants are partial overrides of one base [`EmulatorConfig`] (the `emulator` block of the
//! config; see [`Variant`]).

use crate::box_model::M7;
use crate::emulator::data::{DataParams, Splits, cells_of, load_data};
use crate::emulator::emulator_model::EmulatorData;
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
use gradlab_core::stats::mean_std;
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
    /// The first seed: the sampled cells and the split; the weights' initialisation and the
    /// shuffling are derived from it.
    pub seed: u64,
    /// Seeds to repeat everything with: `seed`, `seed + 1`, …, each drawing its own cells, split,
    /// initialisation and shuffling (with `data.dir` the rows and split stay the same).
    #[serde(default = "one")]
    pub n_seeds: usize,
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

fn one() -> usize {
    1
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
    seed: u64,
    /// Evaluation on the validation rows (what the variant is selected by).
    val: Evaluation,
    /// Evaluation on the test rows.
    eval: Evaluation,
    epochs: usize,
    stopped_early: bool,
    seconds: f64,
    rollout: Vec<RolloutStep>,
    /// Test predictions (kept for the first seed's figures only).
    pred: Option<Array2<f32>>,
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

/// What one seed gave: its data summary and every variant's outcome.
struct SeedRun {
    seed: u64,
    data: serde_json::Value,
    means: [f64; 4],
    truth: Evaluation,
    rollout_cells: usize,
    outcomes: Vec<Outcome>,
}

/// Runs `m7-emulator`: for each seed, data → train and evaluate each variant (validation and
/// test rows) → the variant selected by its mean validation R² over the seeds → figures → report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: EmulatorParams = ctx.params()?;
    if p.n_seeds == 0 {
        return Err(crate::Error::invalid("n_seeds", 0, ">= 1").into());
    }
    if p.variants.is_empty() {
        return Err(crate::Error::invalid("variants", "[]", "at least one variant").into());
    }
    let last_seed = p.seed.checked_add(p.n_seeds as u64 - 1);
    if last_seed.is_none() {
        return Err(crate::Error::invalid("seed", p.seed, format!("seed + n_seeds − 1 <= {}", u64::MAX)).into());
    }
    let configs = variant_configs(&p.emulator, &p.variants)?;
    let mut runs: Vec<SeedRun> = Vec::with_capacity(p.n_seeds);
    // The first seed's test rows, for the figures.
    let mut first_test = None;
    for k in 0..p.n_seeds {
        let seed = p.seed + k as u64;
        let (train_cfg, init_seed) = derive_seeds(&p.train, seed)?;
        let prep = prepare(&p, seed)?;
        let mut outcomes = Vec::new();
        for (v, cfg) in p.variants.iter().zip(&configs) {
            let mut o = train_variant(ctx, &p, &prep, seed, &v.name, cfg.clone(), &train_cfg, init_seed)?;
            if k > 0 {
                o.pred = None;
            }
            outcomes.push(o);
        }
        let data = &prep.data;
        runs.push(SeedRun {
            seed,
            data: serde_json::json!({"source": data.source, "train": data.train.len(), "val": data.val.len(),
                "test": data.test.len(), "dt": data.dt, "seconds": prep.data_secs}),
            means: prep.means,
            truth: prep.truth.clone(),
            rollout_cells: prep.rollout_env.len(),
            outcomes,
        });
        if k == 0 {
            first_test = Some(prep.data.test);
        }
    }
    let selected = select_by_validation(&runs);
    let first = &runs[0];
    let test = first_test.expect("at least one seed");
    plot_scatter(ctx, &test, &first.outcomes[selected], p.scatter_points)?;
    plot_r2_and_drift(ctx, &first.outcomes, selected)?;
    write_summary(ctx, &runs, selected)?;
    write_report(ctx, &p, &runs, selected)?;
    Ok(())
}

/// Index of the variant with the highest validation R² (average of the 28 outputs), averaged
/// over the seeds; ties go to the earlier variant.
fn select_by_validation(runs: &[SeedRun]) -> usize {
    let n_var = runs[0].outcomes.len();
    let score = |j: usize| mean_std(&runs.iter().map(|r| r.outcomes[j].val.r2_mean).collect::<Vec<_>>()).0;
    let mut best = 0;
    for j in 1..n_var {
        // NaN (a diverged variant) never wins.
        if score(j) > score(best) || score(best).is_nan() {
            best = j;
        }
    }
    best
}

/// Data stage: the splits, the species means, the box model's own evaluation and the rollout
/// start cells.
fn prepare(p: &EmulatorParams, seed: u64) -> crate::Result<Prepared> {
    let t0 = Instant::now();
    let data = load_data(&p.data, seed)?;
    let data_secs = t0.elapsed().as_secs_f64();
    let means = species_means(&data.train.x.view())?;
    let truth = evaluate(&data.test.x.view(), &data.test.t.view(), &data.test.t.view(), data.dt, &means)?;
    let m7 = M7::new(data.m7)?;
    let (rollout_env, rollout_start) = cells_of(&data.test.x, p.rollout.cells);
    let device = p.device.open()?;
    Ok(Prepared { data, data_secs, means, truth, m7, rollout_env, rollout_start, device })
}

/// Train stage for one variant and seed: fit, save, evaluate on the validation and test rows,
/// roll out. With several seeds, checkpoints and models go to `seed-S/` subfolders.
#[allow(clippy::too_many_arguments)]
fn train_variant(
    ctx: &mut RunContext,
    p: &EmulatorParams,
    prep: &Prepared,
    seed: u64,
    name: &str,
    cfg: EmulatorConfig,
    train_cfg: &TrainConfig,
    init_seed: u64,
) -> crate::Result<Outcome> {
    let data = &prep.data;
    let t = Instant::now();
    let (tag, sub) = if p.n_seeds > 1 {
        (format!("seed {seed} {name}"), format!("seed-{seed}/{name}"))
    } else {
        (name.to_string(), name.to_string())
    };
    let observers: Vec<Box<dyn Observer>> = vec![
        Box::new(ProgressObserver::new(&format!("m7-emulator {tag}"), ctx.quiet)),
        Box::new(JsonlObserver::new(ctx.dir.jsonl("metrics.jsonl")?, 200).with_tag(&tag)),
    ];
    let ck = ctx.dir.subdir(&format!("checkpoints/{sub}"))?;
    let (em, rep) =
        fit(cfg, data.dt, train_cfg, init_seed, &data.train, &data.val, &prep.device, &ck, ctx.resume, observers)?;
    let seconds = t.elapsed().as_secs_f64();
    em.save(ctx.dir.subdir(&format!("models/{sub}"))?)?;
    let val_pred = em.predict(&data.val.x.view())?;
    let val = evaluate(&data.val.x.view(), &data.val.t.view(), &val_pred.view(), data.dt, &prep.means)?;
    drop(val_pred);
    let pred = em.predict(&data.test.x.view())?;
    let eval = evaluate(&data.test.x.view(), &data.test.t.view(), &pred.view(), data.dt, &prep.means)?;
    let ro = rollout(&em, &prep.m7, &prep.rollout_env, &prep.rollout_start, p.rollout.steps)?;
    ctx.metrics()?.log(&serde_json::json!({"variant": name, "seed": seed, "closing": em.closing(), "val": &val,
        "test": &eval, "rollout_last": ro.last()}))?;
    if !ctx.quiet {
        eprintln!(
            "m7-emulator {tag}: validation R² {:.4}; test R² {:.4} (median {:.4}), R² log {:.4}, neg frac {:.2e}, {} epochs, {:.0} s, closing {:?}",
            val.r2_mean,
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
        seed,
        val,
        eval,
        epochs: rep.epochs_run,
        stopped_early: rep.stopped_early,
        seconds,
        rollout: ro,
        pred: Some(pred),
    })
}

/// Predicted vs true of the best variant, one figure per variable group (both axes divided by the
/// standard deviation of the true column).
fn plot_scatter(ctx: &RunContext, test: &EmulatorData, best: &Outcome, points: usize) -> crate::Result<()> {
    let Some(pred) = &best.pred else { return Ok(()) };
    let n_sc = points.min(test.len());
    for (g, cols) in GROUPS {
        let mut pts = Vec::with_capacity(n_sc * cols.len());
        for &j in cols {
            let c = test.t.column(j);
            let m = c.iter().map(|&v| v as f64).sum::<f64>() / c.len() as f64;
            let sd = (c.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / c.len() as f64).sqrt().max(1e-300);
            for i in 0..n_sc {
                pts.push((test.t[[i, j]] as f64 / sd, pred[[i, j]] as f64 / sd));
            }
        }
        let what = if g == "water" { "water content" } else { "tendency" };
        ScatterPlot::new(&format!("{} (seed {}): {g} {what}, predicted vs true", best.name, best.seed), pts)
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

/// Mean and standard deviation over the seeds of one metric of one variant.
fn over_seeds(runs: &[SeedRun], j: usize, f: impl Fn(&Outcome) -> f64) -> (f64, f64) {
    mean_std(&runs.iter().map(|r| f(&r.outcomes[j])).collect::<Vec<_>>())
}

fn write_summary(ctx: &RunContext, runs: &[SeedRun], selected: usize) -> crate::Result<()> {
    let ms = |(m, s): (f64, f64)| serde_json::json!({"mean": m, "std": s});
    let variants: Vec<_> = (0..runs[0].outcomes.len())
        .map(|j| {
            serde_json::json!({
                "name": runs[0].outcomes[j].name,
                "selected": j == selected,
                "val_r2_mean": ms(over_seeds(runs, j, |o| o.val.r2_mean)),
                "test_r2_mean": ms(over_seeds(runs, j, |o| o.eval.r2_mean)),
                "test_r2_median": ms(over_seeds(runs, j, |o| o.eval.r2_median)),
                "test_r2_log_mean": ms(over_seeds(runs, j, |o| o.eval.r2_log_mean)),
                "runs": runs.iter().map(|r| {
                    let o = &r.outcomes[j];
                    serde_json::json!({"seed": o.seed, "val": o.val, "test": o.eval, "epochs": o.epochs,
                        "stopped_early": o.stopped_early, "train_seconds": o.seconds, "rollout": o.rollout})
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let summary = serde_json::json!({
        "seeds": runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
        "selection": "highest validation R² (average of the 28 outputs), mean over the seeds",
        "selected_variant": runs[0].outcomes[selected].name,
        "data": runs.iter().map(|r| serde_json::json!({"seed": r.seed, "rows": r.data, "species_means": r.means,
            "truth": r.truth})).collect::<Vec<_>>(),
        "variants": variants,
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

/// The selection table: one row per variant, validation and test R² over the seeds.
fn selection_table(runs: &[SeedRun], selected: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let n = runs.len();
    let pm = |(m, s): (f64, f64)| if n > 1 { format!("{} ± {}", fmt_num(m, 4), fmt_num(s, 2)) } else { fmt_num(m, 4) };
    let rows = (0..runs[0].outcomes.len())
        .map(|j| {
            let name = &runs[0].outcomes[j].name;
            vec![
                if j == selected { format!("**{name}** (selected)") } else { name.clone() },
                pm(over_seeds(runs, j, |o| o.val.r2_mean)),
                pm(over_seeds(runs, j, |o| o.eval.r2_mean)),
                pm(over_seeds(runs, j, |o| o.eval.r2_median)),
                pm(over_seeds(runs, j, |o| o.eval.r2_log_mean)),
                sci(over_seeds(runs, j, |o| o.eval.negative_fraction).0),
                sci(over_seeds(runs, j, |o| o.eval.mass_max.iter().cloned().fold(0.0, f64::max)).0),
            ]
        })
        .collect();
    let what = if n > 1 { format!(" (mean ± std over {n} seeds)") } else { String::new() };
    let headers = vec![
        format!("variant"),
        format!("validation R² (avg of 28){what}"),
        format!("test R² (avg of 28){what}"),
        "test R² (median of 28)".into(),
        "test R² log|Δ|".into(),
        "test neg. fraction (mean)".into(),
        "test max mass violation / mean, worst species (mean)".into(),
    ];
    (headers, rows)
}

fn write_report(ctx: &RunContext, p: &EmulatorParams, runs: &[SeedRun], selected: usize) -> crate::Result<()> {
    let first = &runs[0];
    let seeds: Vec<String> = runs.iter().map(|r| r.seed.to_string()).collect();
    let mut r = Report::new("m7-emulator: physics-constrained neural emulator of M7");
    r.paragraph(&format!(
        "Data: {}; {} / {} / {} train / val / test rows per seed; Δt = {} s. MLP 32 → {:?} → 28 (ReLU), inputs {:?}-normalised; \
         Trainer: {:?}, batch {}, up to {} epochs, early stopping {:?}. Loss (unless a variant overrides it): {}. \
         Seeds: {} (each draws its own cells, split, initialisation and shuffling). \
         Paper (Harder et al. 2022): average R² 0.771 (0.89 with the log + sign variant in the workshop paper).",
        first.data["source"].as_str().unwrap_or("?"),
        first.data["train"],
        first.data["val"],
        first.data["test"],
        first.data["dt"],
        p.emulator.hidden,
        p.emulator.input_norm,
        p.train.optimizer,
        p.train.batch_size,
        p.train.epochs,
        p.train.early_stopping,
        loss_words(&p.emulator),
        seeds.join(", "),
    ));
    r.code("sh", &ctx.command());
    let (m, s) = over_seeds(runs, selected, |o| o.eval.r2_mean);
    r.heading("Selection on the validation split");
    r.paragraph(&format!(
        "The variant is chosen by its validation R² (average of the 28 outputs) averaged over the seeds; the test \
         rows are used for nothing else. Selected: **{}**, test R² {} ± {} over {} seed(s) (paper: 0.771).",
        first.outcomes[selected].name,
        fmt_num(m, 4),
        fmt_num(s, 2),
        runs.len()
    ));
    let (headers, rows) = selection_table(runs, selected);
    r.table(&headers, &rows);
    for run in runs {
        let (headers, rows) = test_table(&run.outcomes, &run.truth);
        let [(ro_headers, ro_rows), (r2_headers, r2_rows)] = rollout_and_r2_tables(&run.outcomes);
        r.heading(&format!("Seed {}: test set, every head variant", run.seed));
        r.table(&headers, &rows);
        r.subheading(&format!(
            "Seed {}: rollout, {} steps from {} test cells (constant environment)",
            run.seed, p.rollout.steps, run.rollout_cells
        ));
        r.table(&ro_headers, &ro_rows);
        if run.seed == first.seed {
            r.subheading(&format!("Seed {}: test R² per output", run.seed));
            r.table(&r2_headers, &r2_rows);
        }
    }
    r.paragraph(
        "Mass metrics: per species ΣΔ − budget (P·Δt for sulfur, 0 otherwise) divided by the species' mean \
         concentration in the training inputs. Negative fraction: share of predicted next-state entries x + Δ < 0 \
         over the 24 states. The last row of each test table evaluates the box model's own tendencies.",
    );
    r.heading(&format!("Figures (seed {})", first.seed));
    r.figure("R² per output, all variants", "r2_per_output.png");
    r.figure("R² per output, selected variant (bars)", "r2_bars.png");
    r.subheading(&format!("Predicted vs true, selected variant ({})", first.outcomes[selected].name));
    for (g, _) in GROUPS {
        r.figure(g, &format!("scatter_{g}.png"));
    }
    r.figure("Rollout drift of total number", "rollout_number_drift.png");
    r.write(&ctx.dir)?;
    Ok(())
}
