//! `m7-hpo`: hyperparameter optimisation of the M7 emulator with lazy Gaussian-process BO
//! (Ram et al., MLHPC 2019) against classic BO and random search.
//!
//! Search space: learning rate (log), weight decay (log), width, depth and batch size
//! (`2^batch_log2`) of the emulator; the objective is the validation R² (uniform mean over the 28
//! outputs) after a fixed number of epochs with early stopping. Each policy gets the same
//! evaluation budget, evaluated in batches of `q` proposals trained concurrently (one thread
//! each). Every policy's study is saved after each batch (`studies/<policy>.json`, the
//! `gradlab-bayesopt` JSON format) together with a JSON-lines history of timings
//! (`studies/<policy>.jsonl`), so an interrupted run continues where it stopped.
//!
//! Resuming: with `resume_dir` set to an earlier run, that run's studies and histories are
//! copied into the **new** run's `studies/` and continued there; the earlier run's folder is only
//! read, never written (a policy whose study the new folder already holds is not copied again,
//! so `cargo xtask experiment m7-hpo --resume <new run>` continues in place). On loading, the
//! study is the source of truth for what was evaluated: a torn last history line (a kill during
//! the append) is dropped with a warning, history records of trials the study does not hold are
//! dropped, and trials the study holds without a history record (a kill between saving the study
//! and appending the history) get a record rebuilt from the study (score from the study, timings
//! unknown: `null`). So the evaluations never exceed `budget`.

use crate::emulator::data::{DataParams, Splits, load_data};
use crate::emulator::eval::{evaluate, species_means};
use crate::emulator::train::{INIT_STREAM, SHUFFLE_STREAM, fit};
use crate::emulator::{EmulatorConfig, EmulatorData};
use crate::error::{Error, Result};
use candle_core::Device;
use gradlab_bayesopt::space::{Param, Point, Space, Value};
use gradlab_bayesopt::study::{LagPolicy, Study, StudyConfig, Trial, TrialState};
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::normalize::NormKind;
use gradlab_core::optim::{AdamWParams, OptimizerConfig};
use gradlab_core::plot::{LinePlot, Mark};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::rng::{derive_seed, stream_rng};
use gradlab_core::train::{EarlyStopping, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A search policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Policy {
    /// Bayesian optimisation with a lag policy (`every: 1` classic, `never` lag ∞).
    Bo {
        /// Refit policy.
        lag: LagPolicy,
    },
    /// Uniform random search over the (encoded) space.
    Random,
}

impl Policy {
    /// Short label (`lag1`, `lag3`, `lag_inf`, `random`).
    pub fn label(&self) -> String {
        match self {
            Policy::Bo { lag } => lag.label(),
            Policy::Random => "random".into(),
        }
    }
}

/// One finished evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Policy label.
    pub policy: String,
    /// Trial id (0-based, in ask order).
    pub id: u64,
    /// Batch number.
    pub batch: usize,
    /// Hyperparameters.
    pub params: std::collections::BTreeMap<String, Value>,
    /// Objective (validation R²; NaN, `null` in the JSON, when the evaluation failed).
    #[serde(deserialize_with = "null_as_nan")]
    pub score: f64,
    /// Seconds of this evaluation (NaN, `null` in the JSON, when unknown: a record rebuilt from
    /// the study after a kill).
    #[serde(deserialize_with = "null_as_nan")]
    pub eval_s: f64,
    /// Seconds the policy spent proposing this evaluation's batch (GP fit, update, acquisition;
    /// NaN when unknown, as `eval_s`).
    #[serde(deserialize_with = "null_as_nan")]
    pub overhead_s: f64,
    /// Wall-clock seconds since the policy started when the batch finished (cumulative over
    /// resumed runs).
    pub wall_s: f64,
    /// Why the evaluation failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// serde_json writes a non-finite number as `null`: read `null` back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Stream of the study seed for the random-search policy (one sub-stream per trial id).
const RANDOM_POLICY_STREAM: u64 = 0x5EED;
/// Stream of the run's seed for the studies (`study.seed` is derived, not given).
const STUDY_STREAM: u64 = 0x57D7;

/// Best score so far after each evaluation.
pub fn best_so_far(history: &[EvalRecord]) -> Vec<f64> {
    let mut best = f64::NEG_INFINITY;
    history
        .iter()
        .map(|r| {
            if r.score.is_finite() && r.score > best {
                best = r.score;
            }
            best
        })
        .collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::io(path, source)
}

/// The records of a history file (none when it does not exist) and whether the file needs to be
/// rewritten before appending: a torn last line (a kill in the middle of an append) is dropped
/// with a warning; a malformed line elsewhere is an error naming the line.
fn read_history(path: &Path) -> Result<(Vec<EvalRecord>, bool)> {
    if !path.exists() {
        return Ok((Vec::new(), false));
    }
    let (values, torn) = gradlab_core::io::read_jsonl_recovering(path)?;
    if let Some(line) = torn {
        eprintln!("warning: {}: dropped the torn last line {line} (a write that was interrupted)", path.display());
    }
    let records = values
        .into_iter()
        .map(|v| {
            serde_json::from_value::<EvalRecord>(v).map_err(|source| Error::Json { path: path.to_path_buf(), source })
        })
        .collect::<Result<Vec<_>>>()?;
    let unterminated = std::fs::read(path).map_err(io(path))?.last().is_some_and(|b| *b != b'\n');
    Ok((records, torn.is_some() || unterminated))
}

/// The history of `study` read from `path`, made consistent with the study (the source of truth
/// for what was evaluated): records of trials the study has not told (or duplicates) are
/// dropped, and every told trial without a record gets one rebuilt from the study (its score;
/// timings unknown, NaN; `wall_s` the last one recorded), numbered as the batches of `q` after
/// the last recorded batch. When anything was dropped or added the file is rewritten
/// atomically, so appending continues on a clean file.
fn reconcile_history(label: &str, study: &Study, path: &Path, q: usize) -> Result<Vec<EvalRecord>> {
    let (mut history, mut rewrite) = read_history(path)?;
    let told: std::collections::BTreeMap<u64, &Trial> =
        study.trials().iter().filter(|t| t.state != TrialState::Pending).map(|t| (t.id, t)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let before = history.len();
    history.retain(|r| told.contains_key(&r.id) && seen.insert(r.id));
    if history.len() != before {
        eprintln!(
            "warning: {}: dropped {} record(s) of trials the study {} does not hold as evaluated",
            path.display(),
            before - history.len(),
            label
        );
        rewrite = true;
    }
    let wall = history.iter().map(|r| r.wall_s).fold(0.0, f64::max);
    let next_batch = history.iter().map(|r| r.batch + 1).max().unwrap_or(0);
    let missing: Vec<&Trial> = told.values().filter(|t| !seen.contains(&t.id)).copied().collect();
    if !missing.is_empty() {
        eprintln!(
            "warning: {}: {} evaluation(s) of the study {label} had no history record (killed between saving the \
             study and appending the history); rebuilt from the study, timings unknown",
            path.display(),
            missing.len()
        );
        rewrite = true;
    }
    for (k, t) in missing.into_iter().enumerate() {
        history.push(EvalRecord {
            policy: label.to_string(),
            id: t.id,
            batch: next_batch + k / q,
            params: study.space().point_to_map(&t.params),
            score: t.value.map_or(f64::NAN, |v| -v),
            eval_s: f64::NAN,
            overhead_s: f64::NAN,
            wall_s: wall,
            error: t.error.clone(),
        });
    }
    history.sort_by_key(|r| r.id);
    if rewrite {
        let mut text = String::new();
        for r in &history {
            text.push_str(
                &serde_json::to_string(r).map_err(|source| Error::Json { path: path.to_path_buf(), source })?,
            );
            text.push('\n');
        }
        gradlab_core::io::write_text(path, &text)?;
    }
    Ok(history)
}

/// The next `k` points of `policy`: the study's batch proposal (BO), or uniform draws from the
/// trial's own stream of `seed` (random search).
fn ask(policy: &Policy, study: &mut Study, space: &Space, seed: u64, k: usize) -> Result<Vec<(u64, Point)>> {
    match policy {
        Policy::Bo { .. } => Ok(study.ask_batch(k)?.into_iter().map(|t| (t.id, t.params)).collect()),
        Policy::Random => {
            let d = space.encoded_dim();
            (0..k)
                .map(|i| {
                    let id = (study.trials().len() + i) as u64;
                    let mut rng = stream_rng(derive_seed(seed, RANDOM_POLICY_STREAM), id);
                    let u: Vec<f64> = (0..d).map(|_| rand::Rng::random::<f64>(&mut rng)).collect();
                    Ok((id, space.decode(&space.snap(&u)?)?))
                })
                .collect()
        }
    }
}

/// Evaluates the points concurrently, one thread each: (score, seconds, error) per point; a
/// failed or panicking evaluation scores NaN with its message.
fn evaluate_concurrently<F>(points: &[(u64, Point)], objective: &F) -> Vec<(f64, f64, Option<String>)>
where
    F: Fn(&Point, u64) -> Result<f64> + Sync,
{
    std::thread::scope(|s| {
        let handles: Vec<_> = points
            .iter()
            .map(|(id, pt)| {
                s.spawn(move || {
                    let t = Instant::now();
                    let (v, e) = match objective(pt, *id) {
                        Ok(v) => (v, None),
                        Err(e) => (f64::NAN, Some(e.to_string())),
                    };
                    (v, t.elapsed().as_secs_f64(), e)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or((f64::NAN, 0.0, Some("evaluation panicked".into())))).collect()
    })
}

/// Runs one policy until `budget` evaluations are recorded, in batches of `q` evaluated
/// concurrently by `objective(params, trial_id)` (larger is better). The study and the history
/// live in `state_dir` (`<label>.json`, `<label>.jsonl`); existing files are resumed, the history
/// reconciled with the study first (a torn last line dropped, evaluations the study holds
/// without a record rebuilt from it; see the module docs), so the evaluations in the study never
/// exceed `budget` however the previous run was killed. A saved study of another search space is
/// refused.
pub fn run_policy<F>(
    policy: &Policy,
    space: &Space,
    config: &StudyConfig,
    budget: usize,
    q: usize,
    state_dir: &Path,
    objective: F,
) -> Result<Vec<EvalRecord>>
where
    F: Fn(&Point, u64) -> Result<f64> + Sync,
{
    if budget == 0 || q == 0 {
        return Err(Error::invalid("budget / q", format!("{budget} / {q}"), "both ≥ 1"));
    }
    std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
    let label = policy.label();
    let study_path = state_dir.join(format!("{label}.json"));
    let hist_path = state_dir.join(format!("{label}.jsonl"));
    let mut cfg = config.clone();
    if let Policy::Bo { lag } = policy {
        cfg.lag = *lag;
    }
    let mut study = if study_path.exists() { Study::load(&study_path)? } else { Study::new(space.clone(), cfg)? };
    if study.space() != space {
        return Err(Error::invalid(
            "space",
            format!("{:?}", space.params()),
            format!(
                "the search space of the study being resumed, {}: {:?}",
                study_path.display(),
                study.space().params()
            ),
        ));
    }
    // The study is the source of truth: the history is made to agree with it.
    let mut history = reconcile_history(&label, &study, &hist_path, q)?;
    let offset = history.last().map(|r| r.wall_s).unwrap_or(0.0);
    let start = Instant::now();
    let mut batch = history.last().map(|r| r.batch + 1).unwrap_or(0);
    while history.len() < budget {
        let k = q.min(budget - history.len());
        let t_ask = Instant::now();
        let points = ask(policy, &mut study, space, config.seed, k)?;
        let overhead = t_ask.elapsed().as_secs_f64();
        let results = evaluate_concurrently(&points, &objective);
        for ((id, pt), (v, _, _)) in points.iter().zip(&results) {
            match policy {
                Policy::Bo { .. } => {
                    if v.is_finite() {
                        study.tell(*id, -v)?
                    } else {
                        study.tell_failed(*id, "evaluation failed or non-finite R²")?
                    }
                }
                Policy::Random => {
                    // non-finite values are recorded as failed trials by `tell`
                    study.add_observation(pt.clone(), if v.is_finite() { -v } else { f64::NAN })?;
                }
            }
        }
        study.save(&study_path)?;
        let wall = offset + start.elapsed().as_secs_f64();
        let mut lines = String::new();
        for ((id, pt), (v, secs, err)) in points.iter().zip(&results) {
            let r = EvalRecord {
                policy: label.clone(),
                id: *id,
                batch,
                params: space.point_to_map(pt),
                score: *v,
                eval_s: *secs,
                overhead_s: overhead,
                wall_s: wall,
                error: err.clone(),
            };
            lines.push_str(
                &serde_json::to_string(&r).map_err(|source| Error::Json { path: hist_path.clone(), source })?,
            );
            lines.push('\n');
            history.push(r);
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&hist_path)
            .and_then(|mut f| f.write_all(lines.as_bytes()))
            .map_err(io(&hist_path))?;
        batch += 1;
    }
    Ok(history)
}

/// Largest hidden width of the search space (4096² weights are 64 MiB per layer in f32).
pub const MAX_WIDTH: i64 = 4096;
/// Largest number of hidden layers of the search space.
pub const MAX_DEPTH: i64 = 16;
/// Largest batch-size exponent of the search space: batches of up to 2^24 = 16,777,216 rows.
pub const MAX_BATCH_LOG2: i64 = 24;

/// Bounds of the search space (checked by [`SpaceParams::validate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceParams {
    /// Learning rate range (log scale).
    pub lr: (f64, f64),
    /// Weight-decay range (log scale).
    pub weight_decay: (f64, f64),
    /// Hidden width range.
    pub width: (i64, i64),
    /// Number of hidden layers.
    pub depth: (i64, i64),
    /// Batch size `2^k` for k in this range.
    pub batch_log2: (i64, i64),
}

impl SpaceParams {
    /// Refuses bounds that are not a range of sensible values, naming the field
    /// (`space.<name>`) and what is allowed: `0 < lr.low < lr.high <= 1`,
    /// `0 < weight_decay.low < weight_decay.high <= 1` (both searched on a log scale, finite),
    /// `1 <= width.low <= width.high <= MAX_WIDTH`, `1 <= depth.low <= depth.high <= MAX_DEPTH`
    /// and `0 <= batch_log2.low <= batch_log2.high <= MAX_BATCH_LOG2` (`1 << 70` would wrap).
    pub fn validate(&self) -> Result<()> {
        for (name, (lo, hi)) in [("lr", self.lr), ("weight_decay", self.weight_decay)] {
            if !(lo.is_finite() && hi.is_finite() && 0.0 < lo && lo < hi && hi <= 1.0) {
                return Err(Error::invalid(
                    format!("space.{name}"),
                    format!("[{lo}, {hi}]"),
                    "[low, high] with 0 < low < high <= 1 (searched on a log scale)",
                ));
            }
        }
        for (name, (lo, hi), min, max, what) in [
            ("width", self.width, 1, MAX_WIDTH, "hidden units per layer"),
            ("depth", self.depth, 1, MAX_DEPTH, "hidden layers"),
            ("batch_log2", self.batch_log2, 0, MAX_BATCH_LOG2, "batch size 2^k: 1 … 16,777,216 rows"),
        ] {
            if !(min <= lo && lo <= hi && hi <= max) {
                return Err(Error::invalid(
                    format!("space.{name}"),
                    format!("[{lo}, {hi}]"),
                    format!("[low, high] with {min} <= low <= high <= {max} ({what})"),
                ));
            }
        }
        Ok(())
    }

    /// The search space ([`SpaceParams::validate`] first).
    pub fn space(&self) -> Result<Space> {
        self.validate()?;
        Ok(Space::new(vec![
            Param::LogFloat { name: "lr".into(), low: self.lr.0, high: self.lr.1 },
            Param::LogFloat { name: "weight_decay".into(), low: self.weight_decay.0, high: self.weight_decay.1 },
            Param::Int { name: "width".into(), low: self.width.0, high: self.width.1 },
            Param::Int { name: "depth".into(), low: self.depth.0, high: self.depth.1 },
            Param::Int { name: "batch_log2".into(), low: self.batch_log2.0, high: self.batch_log2.1 },
        ])?)
    }
}

/// What an evaluation scores on the validation rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Uniform mean of the 28 per-output R² (the paper's metric).
    #[default]
    R2Mean,
    /// Uniform mean of `max(R², 0)`: on small data a few near-constant outputs reach R² of
    /// −10³ and more and would dominate the plain mean.
    R2ClippedMean,
}

impl Score {
    /// The score of per-output R² values.
    pub fn of(&self, r2: &[f64]) -> f64 {
        match self {
            Score::R2Mean => r2.iter().sum::<f64>() / r2.len().max(1) as f64,
            Score::R2ClippedMean => r2.iter().map(|r| r.max(0.0)).sum::<f64>() / r2.len().max(1) as f64,
        }
    }
}

/// Parameters of `m7-hpo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpoParams {
    /// The run's one seed: the data; the studies' seed (`study.seed`, refused when given) and
    /// every evaluation's initialisation and shuffling are derived from it.
    pub seed: u64,
    /// Data (as `m7-emulator`).
    pub data: DataParams,
    /// Search space.
    pub space: SpaceParams,
    /// Epochs per evaluation (with early stopping).
    pub epochs: usize,
    /// Early-stopping patience (epochs).
    pub patience: usize,
    /// Validation score.
    #[serde(default)]
    pub score: Score,
    /// Evaluations per policy.
    pub budget: usize,
    /// Proposals per batch, evaluated concurrently.
    pub q: usize,
    /// Policies compared.
    pub policies: Vec<Policy>,
    /// Study settings shared by the BO policies (the lag is the policy's).
    #[serde(default)]
    pub study: StudyConfig,
    /// Continue the studies saved in this earlier run's `studies/` (`runs/m7-hpo/<ts>`): they are
    /// copied into the new run's `studies/` and continued there; the earlier run is only read.
    #[serde(default)]
    pub resume_dir: Option<PathBuf>,
}

/// Decoded hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Width.
    pub width: usize,
    /// Depth.
    pub depth: usize,
    /// Batch size.
    pub batch_size: usize,
}

impl Hyper {
    /// From a point of [`SpaceParams::space`].
    pub fn from_point(space: &Space, pt: &Point) -> Result<Self> {
        let m = space.point_to_map(pt);
        let f = |k: &str| {
            m.get(k).and_then(Value::as_f64).ok_or_else(|| {
                Error::invalid("hyperparameter", k, "a point with lr, weight_decay, width, depth, batch_log2")
            })
        };
        let k = f("batch_log2")?;
        if !(0.0..=MAX_BATCH_LOG2 as f64).contains(&k) {
            return Err(Error::invalid("batch_log2", k, format!("0 <= k <= {MAX_BATCH_LOG2}")));
        }
        Ok(Hyper {
            lr: f("lr")?,
            weight_decay: f("weight_decay")?,
            width: f("width")? as usize,
            depth: f("depth")? as usize,
            batch_size: 1usize << (k as u32),
        })
    }
}

/// Trains an emulator with `h` (initialisation and shuffling derived from `seed`) and returns
/// its validation `score`.
#[allow(clippy::too_many_arguments)]
pub fn train_and_score(
    h: &Hyper,
    score: Score,
    epochs: usize,
    patience: usize,
    seed: u64,
    train: &EmulatorData,
    val: &EmulatorData,
    dt: f64,
    ck: &Path,
) -> Result<f64> {
    let cfg = EmulatorConfig { hidden: vec![h.width; h.depth], input_norm: NormKind::default(), ..Default::default() };
    let mut tc = TrainConfig::new(epochs, h.batch_size);
    tc.optimizer = OptimizerConfig::Adamw(AdamWParams { lr: h.lr, weight_decay: h.weight_decay, ..Default::default() });
    tc.early_stopping = Some(EarlyStopping { patience, min_delta: 0.0 });
    tc.seed = derive_seed(seed, SHUFFLE_STREAM);
    let (em, _) = fit(cfg, dt, &tc, derive_seed(seed, INIT_STREAM), train, val, &Device::Cpu, ck, false, vec![])?;
    let pred = em.predict(&val.x.view())?;
    let means = species_means(&train.x.view())?;
    Ok(score.of(&evaluate(&val.x.view(), &val.t.view(), &pred.view(), dt, &means)?.r2))
}

/// Runs `m7-hpo`: data → every policy's study → comparison → report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: HpoParams = ctx.params()?;
    if p.policies.is_empty() || p.budget == 0 || p.q == 0 || p.epochs == 0 {
        return Err(Error::invalid(
            "policies / budget / q / epochs",
            format!("{} policies / {} / {} / {}", p.policies.len(), p.budget, p.q, p.epochs),
            "at least one policy, budget, q and epochs >= 1",
        )
        .into());
    }
    Error::check_derived_seed("study.seed", p.study.seed)?;
    p.space.validate()?;
    let state_dir = ctx.dir.subdir("studies")?;
    if let Some(from) = &p.resume_dir {
        let labels: Vec<String> = p.policies.iter().map(Policy::label).collect();
        copy_studies(from, &state_dir, &labels)?;
    }
    let t0 = Instant::now();
    let data = load_data(&p.data, p.seed)?;
    let data_s = t0.elapsed().as_secs_f64();
    let all = run_policies(ctx, &p, &data, &state_dir)?;
    let cmp = compare(&all);
    plot_progress(ctx, &all)?;
    let verdict = verdict(&cmp.summary);
    write_report(ctx, &p, &data, data_s, &cmp, &verdict)?;
    ctx.dir.write_summary(&serde_json::json!({"policies": cmp.summary, "target": cmp.target, "verdict": verdict, "data_s": data_s, "state_dir": state_dir, "resumed_from": p.resume_dir}))?;
    Ok(())
}

/// Copies the study and history of each policy in `labels` from the earlier run `from`
/// (`from/studies/`) into `state_dir`, unless `state_dir` already holds that policy's study (it
/// was copied, or this run has progressed, before). The history is copied first and the study
/// last, atomically, so a study present in `state_dir` means a complete copy. `from` is only
/// read. A `from` without `studies/` is refused.
pub fn copy_studies(from: &Path, state_dir: &Path, labels: &[String]) -> Result<()> {
    let src = from.join("studies");
    if !src.is_dir() {
        return Err(Error::invalid(
            "resume_dir",
            from.display(),
            "an earlier m7-hpo run folder holding studies/ (runs/m7-hpo/<timestamp>)",
        ));
    }
    for label in labels {
        let (study, hist) = (format!("{label}.json"), format!("{label}.jsonl"));
        if state_dir.join(&study).exists() || !src.join(&study).exists() {
            continue;
        }
        for name in [hist, study] {
            let from_file = src.join(&name);
            if from_file.exists() {
                let bytes = std::fs::read(&from_file).map_err(io(&from_file))?;
                let to = state_dir.join(&name);
                gradlab_core::io::write_atomic(&to, |w| {
                    std::io::Write::write_all(w, &bytes).map_err(|e| gradlab_core::Error::io(&to, e))
                })?;
            }
        }
    }
    Ok(())
}

/// Every policy's study to its budget (resuming what `state_dir` holds); the histories by label.
fn run_policies(
    ctx: &mut RunContext,
    p: &HpoParams,
    data: &Splits,
    state_dir: &Path,
) -> Result<Vec<(String, Vec<EvalRecord>)>> {
    let space = p.space.space()?;
    let scratch = ctx.dir.subdir("trials")?;
    let mut study_cfg = p.study.clone();
    study_cfg.seed = derive_seed(p.seed, STUDY_STREAM);
    let mut all = Vec::new();
    for policy in &p.policies {
        let label = policy.label();
        let objective = |pt: &Point, id: u64| -> Result<f64> {
            let h = Hyper::from_point(&space, pt)?;
            let ck = scratch.join(format!("{label}-{id}"));
            std::fs::create_dir_all(&ck).map_err(io(&ck))?;
            let r = train_and_score(&h, p.score, p.epochs, p.patience, p.seed, &data.train, &data.val, data.dt, &ck);
            let _ = std::fs::remove_dir_all(&ck);
            r
        };
        let hist = run_policy(policy, &space, &study_cfg, p.budget, p.q, state_dir, objective)?;
        let best = best_so_far(&hist);
        if !ctx.quiet {
            eprintln!(
                "m7-hpo {label}: best validation R² {:.4} after {} evaluations, {:.0} s",
                best.last().copied().unwrap_or(f64::NAN),
                hist.len(),
                hist.last().map(|r| r.wall_s).unwrap_or(0.0)
            );
        }
        for r in &hist {
            ctx.metrics()?.log(r)?;
        }
        all.push((label, hist));
    }
    Ok(all)
}

/// The policies side by side: the target R², a table row and a summary entry per policy.
struct Comparison {
    target: f64,
    target_from: &'static str,
    tol: f64,
    rows: Vec<Vec<String>>,
    summary: Vec<serde_json::Value>,
}

fn compare(all: &[(String, Vec<EvalRecord>)]) -> Comparison {
    // Target: the best R² classic BO (lag 1) reached; otherwise the best over all policies.
    let finals: Vec<f64> = all.iter().map(|(_, h)| best_so_far(h).last().copied().unwrap_or(f64::NAN)).collect();
    let classic = all.iter().position(|(l, _)| l == "lag1");
    let (target, target_from) = match classic {
        Some(i) => (finals[i], "classic BO (lag 1)"),
        None => (finals.iter().copied().fold(f64::NEG_INFINITY, f64::max), "the best policy"),
    };
    let tol = 1e-3;
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for (label, hist) in all {
        let best = best_so_far(hist);
        let reach = best.iter().position(|b| *b >= target - tol);
        // Timings of records rebuilt after a kill are unknown (NaN) and left out of the sums.
        let overhead: f64 = {
            let mut seen = std::collections::BTreeSet::new();
            hist.iter().filter(|r| seen.insert(r.batch)).map(|r| r.overhead_s).filter(|v| v.is_finite()).sum()
        };
        let evals: f64 = hist.iter().map(|r| r.eval_s).filter(|v| v.is_finite()).sum();
        let best_rec = hist.iter().filter(|r| r.score.is_finite()).max_by(|a, b| a.score.total_cmp(&b.score));
        rows.push(vec![
            label.clone(),
            hist.len().to_string(),
            fmt_num(*best.last().unwrap_or(&f64::NAN), 4),
            reach.map(|i| (i + 1).to_string()).unwrap_or_else(|| "not reached".into()),
            reach.map(|i| fmt_num(hist[i].wall_s, 1)).unwrap_or_else(|| "—".into()),
            fmt_num(hist.last().map(|r| r.wall_s).unwrap_or(0.0), 1),
            fmt_num(overhead, 3),
            fmt_num(evals, 1),
            best_rec
                .map(|r| r.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        ]);
        summary.push(serde_json::json!({
            "policy": label, "evaluations": hist.len(), "best_r2": best.last(), "evals_to_target": reach.map(|i| i + 1),
            "wall_s_to_target": reach.map(|i| hist[i].wall_s), "wall_s": hist.last().map(|r| r.wall_s), "bo_overhead_s": overhead,
            "evaluation_s": evals, "best_params": best_rec.map(|r| &r.params),
        }));
    }
    Comparison { target, target_from, tol, rows, summary }
}

/// Best validation R² against evaluations and against wall time, one series per policy.
fn plot_progress(ctx: &RunContext, all: &[(String, Vec<EvalRecord>)]) -> Result<()> {
    let mut by_eval =
        LinePlot::new("Best validation R² vs evaluations").x_label("evaluations").y_label("best validation R²");
    let mut by_wall =
        LinePlot::new("Best validation R² vs wall time").x_label("wall time [s]").y_label("best validation R²");
    let finite = |pts: Vec<(f64, f64)>| pts.into_iter().filter(|p| p.1.is_finite()).collect::<Vec<_>>();
    for (label, hist) in all {
        let best = best_so_far(hist);
        by_eval = by_eval.series(
            label,
            finite(best.iter().enumerate().map(|(i, b)| ((i + 1) as f64, *b)).collect()),
            Mark::LinePoints,
        );
        by_wall = by_wall.series(
            label,
            finite(hist.iter().zip(&best).map(|(r, b)| (r.wall_s, *b)).collect()),
            Mark::LinePoints,
        );
    }
    by_eval.save(&ctx.dir.file("best_r2_vs_evaluations")?)?;
    by_wall.save(&ctx.dir.file("best_r2_vs_wall_time")?)?;
    Ok(())
}

/// Whether lag ∞ and lag 3 reached classic BO's final R² in less wall time.
fn verdict(summary: &[serde_json::Value]) -> String {
    let pos = |l: &str| summary.iter().position(|s| s["policy"] == l);
    let Some(c) = pos("lag1") else {
        return "no classic BO (lag 1) policy in this run".into();
    };
    let cw = summary[c]["wall_s_to_target"].as_f64();
    let mut parts = Vec::new();
    for (name, i) in [("lag ∞", pos("lag_inf")), ("lag 3", pos("lag3"))] {
        if let Some(i) = i {
            let w = summary[i]["wall_s_to_target"].as_f64();
            parts.push(match (w, cw) {
                (Some(w), Some(cw)) if w < cw => {
                    format!("{name} reached classic BO's R² in less wall time ({w:.1} s vs {cw:.1} s)")
                }
                (Some(w), Some(cw)) => format!("{name} reached classic BO's R² but not faster ({w:.1} s vs {cw:.1} s)"),
                _ => format!("{name} did not reach classic BO's R² within the budget"),
            });
        }
    }
    parts.join("; ")
}

fn write_report(
    ctx: &RunContext,
    p: &HpoParams,
    data: &Splits,
    data_s: f64,
    cmp: &Comparison,
    verdict: &str,
) -> Result<()> {
    let mut report = Report::new("m7-hpo: emulator hyperparameters by lazy vs classic BO vs random search");
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    if let Some(from) = &p.resume_dir {
        report.paragraph(&format!(
            "Resumed: the studies of `{}` were copied into this run's `studies/` and continued here \
             (that run's folder is unchanged); the evaluations below include its evaluations.",
            from.display()
        ));
    }
    report.paragraph(&format!(
        "Score: {:?}. Data: {} ({} train / {} validation rows, loaded in {:.1} s). Search space: lr ∈ [{}, {}] (log), weight decay ∈ [{}, {}] (log), \
         width ∈ [{}, {}], depth ∈ [{}, {}], batch = 2^k, k ∈ [{}, {}]. Each evaluation trains for at most {} epochs (AdamW, early \
         stopping patience {}) and scores R² on the validation rows (score above). Budget {} evaluations per \
         policy, in batches of q = {} trained concurrently (one thread each); BO initial design {} points (Latin hypercube), \
         then the q best local maxima of EI.",
        p.score, data.source, data.train.len(), data.val.len(), data_s, p.space.lr.0, p.space.lr.1, p.space.weight_decay.0, p.space.weight_decay.1,
        p.space.width.0, p.space.width.1, p.space.depth.0, p.space.depth.1, p.space.batch_log2.0, p.space.batch_log2.1, p.epochs,
        p.patience, p.budget, p.q, if p.study.n_initial > 0 { p.study.n_initial.to_string() } else { "max(5, 2d+1)".into() }
    ));
    report.heading("Results");
    report.table(
        &[
            "policy",
            "evaluations",
            "best val R²",
            "evals to target",
            "wall s to target",
            "wall s total",
            "BO overhead s",
            "Σ evaluation s",
            "best hyperparameters",
        ],
        &cmp.rows,
    );
    report.paragraph(&format!(
        "Target = {} − {}: the final best R² of {} ({}).",
        fmt_num(cmp.target, 4),
        cmp.tol,
        cmp.target_from,
        fmt_num(cmp.target, 4)
    ));
    report.paragraph(&format!("Verdict on this machine, this run: {verdict}."));
    report.figure("Best validation R² vs evaluations", "best_r2_vs_evaluations.png");
    report.figure("Best validation R² vs wall time", "best_r2_vs_wall_time.png");
    report.write(&ctx.dir)?;
    Ok(())
}
