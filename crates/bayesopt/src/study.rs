//! Ask/tell optimisation study with a lazy GP, persisted as JSON.
//!
//! A [`Study`] proposes points ([`Study::ask`], [`Study::ask_batch`]) and records results
//! ([`Study::tell`], [`Study::tell_failed`]). Asks may stay pending while more are asked
//! (pending points enter the model as fantasies); tells may come in any order. The model is
//! updated lazily at ask time: completed observations are appended to the GP in the order
//! they were told (`O(n²)` each), and hyperparameters are refit and the factor rebuilt only
//! when the [`LagPolicy`] says so.
//!
//! Everything that determines future proposals is in the JSON file ([`Study::save`]): the
//! trials, the ask counter (each ask draws its randomness from `seed` and its index) and the
//! last refit (hyperparameters, standardisation, number of points). Loading replays the
//! factorisation at that refit and the appends after it, so a resumed study proposes the
//! same points as one that never stopped. A loaded study is validated first
//! ([`Study::validate`]): a hand-edited file with a complete trial without a value, a
//! duplicate id, a point outside the space or inconsistent counters is refused with
//! [`Error::Invalid`] naming the field.

use crate::acquisition::{
    Acquisition, Candidates, GP_HEDGE_MEMBERS, MaximizeOptions, Sampler, maximize_over, sample_unit,
};
use crate::chol::JitterPolicy;
use crate::error::{Error, Result};
use crate::gp::{FitOptions, Gp, PoolPosterior};
use crate::kernel::{Hyper, KernelKind};
use crate::space::{Point, Space};
use gradlab_core::rng::{derive_seed, rng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

/// When to refit hyperparameters and refactorise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LagPolicy {
    /// Every `k` asks (`k = 1`: classic BO).
    Every(usize),
    /// Fit once when the model is first built, then only append (lag = ∞).
    Never,
    /// Refit when a newly appended point's standardised residual exceeds `residual`, when
    /// the log marginal likelihood per point fell by more than `lml_drop` since the last
    /// refit, or after `max_lag` asks.
    Adaptive {
        /// Longest lag allowed.
        max_lag: usize,
        /// Threshold on |standardised residual| of a new point.
        residual: f64,
        /// Threshold on the drop of the log-likelihood per point (nats).
        lml_drop: f64,
    },
}

impl Default for LagPolicy {
    fn default() -> Self {
        LagPolicy::Every(3)
    }
}

impl LagPolicy {
    /// The adaptive policy with default thresholds.
    pub fn adaptive() -> LagPolicy {
        LagPolicy::Adaptive { max_lag: 20, residual: 3.0, lml_drop: 0.5 }
    }

    /// Short label (`lag1`, `lag3`, `lag_inf`, `adaptive`).
    pub fn label(&self) -> String {
        match self {
            LagPolicy::Every(k) => format!("lag{k}"),
            LagPolicy::Never => "lag_inf".into(),
            LagPolicy::Adaptive { .. } => "adaptive".into(),
        }
    }

    fn check(&self) -> Result<()> {
        match *self {
            LagPolicy::Every(0) => Err(Error::invalid("lag.every", "0", ">= 1")),
            LagPolicy::Adaptive { max_lag, residual, lml_drop } => {
                if max_lag == 0 || !(residual > 0.0) || !(lml_drop > 0.0) {
                    Err(Error::invalid(
                        "lag.adaptive",
                        format!("max_lag {max_lag}, residual {residual}, lml_drop {lml_drop}"),
                        "max_lag >= 1, residual > 0, lml_drop > 0",
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Value assumed for a pending point by constant-liar batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lie {
    /// Best observed value (optimistic; spreads the batch least).
    Min,
    /// Mean observed value.
    #[default]
    Mean,
    /// Worst observed value (pessimistic; spreads the batch most).
    Max,
}

/// How a batch of `q` points is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BatchStrategy {
    /// The `q` best distinct local maxima of one acquisition surface (the paper's scheme).
    #[default]
    LocalMaxima,
    /// Sequential: after each pick, append it to the GP with a constant lie.
    ConstantLiar(Lie),
    /// Sequential: after each pick, append it with the GP's own mean.
    KrigingBeliever,
}

/// The incumbent `best` that expected improvement (and PI) measure improvement against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Incumbent {
    /// The best observed value (noise-free objectives).
    #[default]
    BestObserved,
    /// The lowest posterior mean at the observed points: for noisy objectives, where the best
    /// observed value is biased low by the luckiest noise draw.
    PosteriorMean,
}

/// Study configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudyConfig {
    /// Seed of all randomness.
    pub seed: u64,
    /// Size of the initial design (0: `max(5, 2·dim + 1)`).
    pub n_initial: usize,
    /// The initial design's points: a Latin hypercube (default) or scrambled Sobol points.
    pub design: Sampler,
    /// Kernel family.
    pub kernel: KernelKind,
    /// Acquisition function.
    pub acquisition: Acquisition,
    /// Refit policy.
    pub lag: LagPolicy,
    /// Hyperparameter fitting.
    pub fit: FitOptions,
    /// Acquisition maximisation.
    pub maximize: MaximizeOptions,
    /// Batch strategy for `ask_batch` with q > 1.
    pub batch: BatchStrategy,
    /// Jitter policy of the Cholesky factor.
    pub jitter: JitterPolicy,
    /// Incumbent of the acquisition (set `PosteriorMean` for noisy objectives).
    pub incumbent: Incumbent,
}

/// GP-Hedge's state, saved with the study.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeState {
    /// Cumulative gain of each member.
    pub gains: Vec<f64>,
    /// Each member's proposal at the last ask (unit cube), not yet scored.
    pub proposals: Vec<Vec<f64>>,
    /// Member picked at each GP-guided ask, in order.
    pub picks: Vec<usize>,
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            seed: 0,
            n_initial: 0,
            design: Sampler::Lhs,
            kernel: KernelKind::Matern52,
            acquisition: crate::acquisition::STUDY_ACQUISITION,
            lag: LagPolicy::default(),
            fit: FitOptions::default(),
            maximize: MaximizeOptions::default(),
            batch: BatchStrategy::default(),
            jitter: JitterPolicy::default(),
            incumbent: Incumbent::default(),
        }
    }
}

impl StudyConfig {
    /// Validates the configuration.
    pub fn check(&self) -> Result<()> {
        self.lag.check()?;
        self.acquisition.check()?;
        self.maximize.check()?;
        self.fit.check()?;
        if !(self.jitter.factor > 1.0 && self.jitter.first_rel > 0.0) {
            return Err(Error::invalid("jitter", format!("{:?}", self.jitter), "factor > 1, first_rel > 0"));
        }
        Ok(())
    }
}

/// State of a trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Asked, not told yet.
    Pending,
    /// Told with a value.
    Complete,
    /// Told as failed.
    Failed,
}

/// One proposed point and its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trial {
    /// Identifier (ask order).
    pub id: u64,
    /// Parameter values.
    pub params: Point,
    /// Unit-cube encoding (snapped).
    pub x: Vec<f64>,
    /// State.
    pub state: TrialState,
    /// Objective value if complete.
    pub value: Option<f64>,
    /// Failure reason if failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Index of the ask call that produced it.
    pub ask_index: u64,
    /// Position in the order of tells.
    pub tell_index: Option<u64>,
}

/// Model state needed to reproduce the GP exactly after loading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCheckpoint {
    /// Number of completed observations (in tell order) at the last refit.
    pub refit_points: usize,
    /// Hyperparameters of the last refit.
    pub hyper: Hyper,
    /// Output mean at the last refit.
    pub y_mean: f64,
    /// Output std at the last refit.
    pub y_std: f64,
    /// Asks with a model since the last refit.
    pub since_refit: usize,
    /// Observations in the model at the end of the last ask.
    pub synced: usize,
    /// Log marginal likelihood per point right after the last refit.
    pub lml_per_point: f64,
    /// Refits so far.
    pub refits: usize,
}

/// Timing and decisions of the last ask (not persisted).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AskStats {
    /// True if hyperparameters were refit.
    pub refit: bool,
    /// Seconds spent fitting hyperparameters and refactorising.
    pub fit_s: f64,
    /// Seconds spent appending observations (and fantasies).
    pub update_s: f64,
    /// Seconds spent maximising the acquisition (including `candidates_s`).
    pub acquisition_s: f64,
    /// Of `acquisition_s`, seconds spent scoring the candidates (the pool's posterior and the
    /// local candidates'); the rest is the local optimisation.
    pub candidates_s: f64,
    /// Points in the model (real observations).
    pub n: usize,
    /// True if the points came from the initial design.
    pub initial: bool,
    /// Rows of the kept pool's `L⁻¹K(X, X*)` computed in this ask (one per new observation
    /// or fantasy while the hyperparameters stay; all `n` after a refit).
    pub pool_rows: usize,
}

impl AskStats {
    /// Total model + acquisition overhead.
    pub fn overhead_s(&self) -> f64 {
        self.fit_s + self.update_s + self.acquisition_s
    }
}

const FORMAT: &str = "gradlab-bayesopt-study-v1";

/// The `format` tag of a study file: serialises as [`FORMAT`], refuses anything else.
#[derive(Clone, Copy, Debug, Default)]
struct FormatTag;

impl Serialize for FormatTag {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(FORMAT)
    }
}

impl<'de> Deserialize<'de> for FormatTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let f = String::deserialize(d)?;
        if f == FORMAT {
            Ok(FormatTag)
        } else {
            Err(serde::de::Error::custom(format!("format `{f}`, expected `{FORMAT}`")))
        }
    }
}

/// Stream of [`derive_seed`] for the initial Latin-hypercube design of a study.
const DESIGN_STREAM: u64 = u64::MAX;
/// Streams of [`derive_seed`] below an ask's seed: hyperparameter fit, acquisition
/// maximisation (batch pick `k` uses `MAXIMIZE_STREAM + k`).
const FIT_STREAM: u64 = 1;
const MAXIMIZE_STREAM: u64 = 2;
/// GP-Hedge's draw of a member.
const HEDGE_STREAM: u64 = 3;
/// Stream of [`derive_seed`] below the study's seed for the kept candidate pools (pool `r`,
/// drawn after `r` refits, uses `derive_seed(derive_seed(seed, POOL_STREAM), r)`).
const POOL_STREAM: u64 = u64::MAX - 1;

/// An ask/tell Bayesian-optimisation study.
///
/// Its JSON form (see [`Study::save`]) is the struct itself without the in-memory model:
/// `format`, `space`, `config`, `metadata` (left out when empty), `trials`, `n_asks`,
/// `n_tells`, `model`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    format: FormatTag,
    space: Space,
    config: StudyConfig,
    /// Free-form records kept with the study (e.g. the command `tune` runs); never read by
    /// the optimiser.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, serde_json::Value>,
    trials: Vec<Trial>,
    n_asks: u64,
    n_tells: u64,
    model: Option<ModelCheckpoint>,
    /// GP-Hedge's gains and pending proposals (with [`Acquisition::GpHedge`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hedge: Option<HedgeState>,
    /// The GP (rebuilt from `model` and the trials after loading).
    #[serde(skip)]
    gp: Option<Gp>,
    /// The kept candidate pool and the refit count it was drawn at
    /// ([`MaximizeOptions::keep_pool`]; redrawn identically after loading).
    #[serde(skip)]
    pool: Option<(usize, PoolPosterior)>,
    #[serde(skip)]
    last: AskStats,
}

impl Study {
    /// New study over `space`.
    pub fn new(space: Space, config: StudyConfig) -> Result<Study> {
        config.check()?;
        Ok(Study {
            format: FormatTag,
            space,
            config,
            metadata: BTreeMap::new(),
            trials: Vec::new(),
            n_asks: 0,
            n_tells: 0,
            model: None,
            hedge: None,
            gp: None,
            pool: None,
            last: AskStats::default(),
        })
    }

    /// The search space.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The configuration.
    pub fn config(&self) -> &StudyConfig {
        &self.config
    }

    /// Free-form records kept with the study (saved and loaded with it).
    pub fn metadata(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.metadata
    }

    /// Sets the free-form record `key` (saved with the study; the optimiser ignores it).
    pub fn set_metadata(&mut self, key: impl Into<String>, value: serde_json::Value) {
        self.metadata.insert(key.into(), value);
    }

    /// Removes the free-form record `key`, returning it.
    pub fn remove_metadata(&mut self, key: &str) -> Option<serde_json::Value> {
        self.metadata.remove(key)
    }

    /// All trials in ask order.
    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    /// Pending trials.
    pub fn pending(&self) -> Vec<&Trial> {
        self.trials.iter().filter(|t| t.state == TrialState::Pending).collect()
    }

    /// Told trials (completed or failed) in the order they were told.
    pub fn told(&self) -> Vec<&Trial> {
        let mut told: Vec<&Trial> = self.trials.iter().filter(|t| t.tell_index.is_some()).collect();
        told.sort_by_key(|t| t.tell_index);
        told
    }

    /// Number of completed or failed trials.
    pub fn n_finished(&self) -> usize {
        self.trials.iter().filter(|t| t.state != TrialState::Pending).count()
    }

    /// Number of completed trials.
    pub fn n_complete(&self) -> usize {
        self.trials.iter().filter(|t| t.state == TrialState::Complete).count()
    }

    /// Best completed trial.
    pub fn best(&self) -> Option<&Trial> {
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .min_by(|a, b| a.value.unwrap_or(f64::INFINITY).total_cmp(&b.value.unwrap_or(f64::INFINITY)))
    }

    /// The completed trial whose point has the lowest posterior mean, with that mean: the
    /// incumbent to report for a noisy objective (the best *observed* value, [`Study::best`],
    /// is biased low by noise). The GP is the one of the last ask (trials told since then are
    /// predicted, not conditioned on); `None` before the first model is built.
    pub fn best_by_posterior_mean(&self) -> Option<(&Trial, f64)> {
        let gp = self.gp.as_ref()?;
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .map(|t| (t, gp.predict(&t.x).mean))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// GP-Hedge's state (with [`Acquisition::GpHedge`], after the first GP-guided ask).
    pub fn hedge(&self) -> Option<&HedgeState> {
        self.hedge.as_ref()
    }

    /// Statistics of the last ask.
    pub fn last_stats(&self) -> &AskStats {
        &self.last
    }

    /// The GP, if built.
    pub fn gp(&self) -> Option<&Gp> {
        self.gp.as_ref()
    }

    /// Model checkpoint (last refit).
    pub fn model_checkpoint(&self) -> Option<&ModelCheckpoint> {
        self.model.as_ref()
    }

    fn n_initial(&self) -> usize {
        if self.config.n_initial > 0 { self.config.n_initial } else { (2 * self.space.encoded_dim() + 1).max(5) }
    }

    /// Completed trials in tell order: indices into `trials`.
    fn observed(&self) -> Vec<usize> {
        let mut idx: Vec<usize> =
            (0..self.trials.len()).filter(|&i| self.trials[i].state == TrialState::Complete).collect();
        idx.sort_by_key(|&i| self.trials[i].tell_index);
        idx
    }

    /// Asks for one point.
    pub fn ask(&mut self) -> Result<Trial> {
        Ok(self.ask_batch(1)?.remove(0))
    }

    /// Asks for `q` points at once.
    pub fn ask_batch(&mut self, q: usize) -> Result<Vec<Trial>> {
        if q == 0 {
            return Err(Error::invalid("q", "0", ">= 1"));
        }
        let ask_index = self.n_asks;
        let seed = derive_seed(self.config.seed, ask_index);
        let d = self.space.encoded_dim();
        let n_init = self.n_initial();
        let obs = self.observed();
        let mut stats = AskStats { n: obs.len(), ..Default::default() };
        let mut xs: Vec<Vec<f64>> = Vec::with_capacity(q);
        // Initial design: n_initial points of the configured design, in order.
        let mut design_rng = rng(derive_seed(self.config.seed, DESIGN_STREAM));
        let design = sample_unit(self.config.design, n_init, d, &mut design_rng);
        while xs.len() < q && self.trials.len() + xs.len() < n_init {
            let i = self.trials.len() + xs.len();
            xs.push(self.space.snap(&design[i * d..(i + 1) * d])?);
        }
        if xs.len() < q {
            if obs.len() < 2 {
                // Not enough data for a model (failures or pending points): random points.
                let mut rng = rng(seed);
                let extra = sample_unit(Sampler::Random, q - xs.len(), d, &mut rng);
                for c in extra.chunks(d) {
                    xs.push(self.space.snap(c)?);
                }
                stats.initial = true;
            } else {
                let more = self.propose(q - xs.len(), &obs, &xs, seed, &mut stats)?;
                xs.extend(more);
            }
        } else {
            stats.initial = true;
        }
        self.n_asks += 1;
        let mut out = Vec::with_capacity(q);
        for x in xs {
            let params = self.space.decode(&x)?;
            let trial = Trial {
                id: self.trials.len() as u64,
                params,
                x,
                state: TrialState::Pending,
                value: None,
                error: None,
                ask_index,
                tell_index: None,
            };
            self.trials.push(trial.clone());
            out.push(trial);
        }
        self.last = stats;
        Ok(out)
    }

    /// Brings the GP up to date (rebuilt after loading, new observations appended) and refits
    /// when the lag policy says so.
    fn sync_model(&mut self, obs: &[usize], seed: u64, stats: &mut AskStats) -> Result<()> {
        let d = self.space.encoded_dim();
        let t0 = Instant::now();
        // Rebuild after loading: factor at the last refit, replay the appends.
        if self.gp.is_none()
            && let Some(m) = self.model.clone()
        {
            let mut gp = Gp::new(self.config.kernel, d, m.hyper.clone(), self.config.jitter);
            let x: Vec<f64> = obs[..m.refit_points].iter().flat_map(|&i| self.trials[i].x.clone()).collect();
            let y: Vec<f64> = obs[..m.refit_points].iter().map(|&i| self.trials[i].value.unwrap_or(0.0)).collect();
            gp.restore(x, y, m.hyper.clone(), m.y_mean, m.y_std)?;
            for &i in &obs[m.refit_points..m.synced] {
                let t = &self.trials[i];
                if gp.append(&t.x, t.value.unwrap_or(0.0)).is_err() {
                    break;
                }
            }
            self.gp = Some(gp);
        }
        let mut need_refit = self.gp.is_none() || self.gp.as_ref().is_some_and(|g| g.len() > obs.len());
        let mut max_resid: f64 = 0.0;
        if let Some(gp) = self.gp.as_mut()
            && !need_refit
        {
            for &i in &obs[gp.len()..] {
                let t = &self.trials[i];
                match gp.append(&t.x, t.value.unwrap_or(0.0)) {
                    Ok(info) => max_resid = max_resid.max(info.std_residual.abs()),
                    Err(_) => {
                        need_refit = true;
                        break;
                    }
                }
            }
        }
        stats.update_s += t0.elapsed().as_secs_f64();
        if let (Some(m), false) = (self.model.as_mut(), need_refit) {
            m.since_refit += 1;
            let gp = self.gp.as_ref().expect("model exists");
            need_refit = match self.config.lag {
                LagPolicy::Every(k) => m.since_refit >= k,
                LagPolicy::Never => false,
                LagPolicy::Adaptive { max_lag, residual, lml_drop } => {
                    m.since_refit >= max_lag
                        || max_resid > residual
                        || gp.lml() / (gp.len() as f64) < m.lml_per_point - lml_drop
                }
            };
        }
        if need_refit {
            let t1 = Instant::now();
            let x: Vec<f64> = obs.iter().flat_map(|&i| self.trials[i].x.clone()).collect();
            let y: Vec<f64> = obs.iter().map(|&i| self.trials[i].value.unwrap_or(0.0)).collect();
            let hyper = self.model.as_ref().map(|m| m.hyper.clone()).unwrap_or_else(|| Hyper::default_for(d));
            let mut gp = Gp::new(self.config.kernel, d, hyper, self.config.jitter);
            // Sequential factorisations keep the model bit-reproducible after a reload.
            gp.set_data(x, y)?;
            gp.fit(&self.config.fit, derive_seed(seed, FIT_STREAM))?;
            let (y_mean, y_std) = gp.standardisation();
            let refits = self.model.as_ref().map_or(0, |m| m.refits) + 1;
            self.model = Some(ModelCheckpoint {
                refit_points: obs.len(),
                hyper: gp.hyper().clone(),
                y_mean,
                y_std,
                since_refit: 0,
                synced: obs.len(),
                lml_per_point: gp.lml() / obs.len() as f64,
                refits,
            });
            self.gp = Some(gp);
            stats.refit = true;
            stats.fit_s += t1.elapsed().as_secs_f64();
        }
        if let Some(m) = self.model.as_mut() {
            m.synced = obs.len();
        }
        Ok(())
    }

    fn propose(
        &mut self,
        q: usize,
        obs: &[usize],
        extra: &[Vec<f64>],
        seed: u64,
        stats: &mut AskStats,
    ) -> Result<Vec<Vec<f64>>> {
        self.sync_model(obs, seed, stats)?;
        let d = self.space.encoded_dim();
        let t0 = Instant::now();
        let mut gp = self.gp.take().expect("model built");
        let n_real = gp.len();
        // Fantasies for pending points (and design points handed out in this batch).
        let pending: Vec<Vec<f64>> = self
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Pending)
            .map(|t| t.x.clone())
            .chain(extra.iter().cloned())
            .collect();
        let y_obs: Vec<f64> = gp.y().to_vec();
        let lie_value = |lie: Lie| match lie {
            Lie::Min => y_obs.iter().cloned().fold(f64::INFINITY, f64::min),
            Lie::Max => y_obs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            Lie::Mean => y_obs.iter().sum::<f64>() / y_obs.len() as f64,
        };
        let fantasy = |gp: &Gp, x: &[f64]| match self.config.batch {
            BatchStrategy::ConstantLiar(lie) => lie_value(lie),
            _ => gp.predict(x).mean,
        };
        for x in &pending {
            let y = fantasy(&gp, x);
            if gp.append(x, y).is_err() {
                break;
            }
        }
        stats.update_s += t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut exclude: Vec<f64> = self.trials.iter().flat_map(|t| t.x.clone()).collect();
        exclude.extend(extra.iter().flatten());
        let space = &self.space;
        let snap = |x: &[f64]| space.snap(x).unwrap_or_else(|_| x.to_vec());
        let mut acq = self.config.acquisition;
        // GP-Hedge: score the members' last proposals on the updated GP, then draw the member
        // whose acquisition this ask maximises (the others are maximised below for their
        // proposals, which the next ask scores).
        let mut hedge_pick = None;
        if let Acquisition::GpHedge { eta } = self.config.acquisition {
            let members = GP_HEDGE_MEMBERS;
            gp.prepare();
            let h =
                self.hedge.get_or_insert_with(|| HedgeState { gains: vec![0.0; members.len()], ..Default::default() });
            if h.gains.len() != members.len() || h.proposals.len() > members.len() {
                return Err(Error::invalid(
                    "hedge",
                    format!("{} gains, {} proposals", h.gains.len(), h.proposals.len()),
                    format!("one gain and at most one proposal per member ({})", members.len()),
                ));
            }
            for (g, x) in h.gains.iter_mut().zip(&h.proposals) {
                *g -= gp.standardise(gp.predict(x).mean);
            }
            let top = h.gains.iter().map(|g| eta * g).fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = h.gains.iter().map(|g| (eta * g - top).exp()).collect();
            let u = rand::Rng::random::<f64>(&mut rng(derive_seed(seed, HEDGE_STREAM))) * w.iter().sum::<f64>();
            let mut k = 0;
            let mut acc = w[0];
            while acc < u && k + 1 < w.len() {
                k += 1;
                acc += w[k];
            }
            acq = members[k];
            hedge_pick = Some((members, k));
        }
        let mut out = Vec::with_capacity(q);
        let opts = &self.config.maximize;
        // The kept quasi-random pool: one per refit, its posterior following the GP.
        let refits = self.model.as_ref().map_or(0, |m| m.refits);
        let mut pool = match self.pool.take() {
            _ if !opts.keep_pool || opts.candidates == 0 => None,
            Some((r, p)) if r == refits && p.dim() == d && p.len() == opts.candidates => Some(p),
            _ => {
                let mut r = rng(derive_seed(derive_seed(self.config.seed, POOL_STREAM), refits as u64));
                Some(PoolPosterior::new(d, sample_unit(opts.sampler, opts.candidates, d, &mut r))?)
            }
        };
        // Maximise on the current GP; pick `k` of a sequential batch uses stream
        // MAXIMIZE_STREAM + k.
        let incumbent = self.config.incumbent;
        let best_of = |gp: &Gp| match incumbent {
            Incumbent::BestObserved => gp.y().iter().map(|&y| gp.standardise(y)).fold(f64::INFINITY, f64::min),
            // Over the real observations only (fantasies are the GP's own beliefs).
            Incumbent::PosteriorMean => {
                gp.x()[..n_real * d].chunks(d).map(|x| gp.standardise(gp.predict(x).mean)).fold(f64::INFINITY, f64::min)
            }
        };
        let pick = |gp: &mut Gp, pool: Option<&mut PoolPosterior>, q: usize, exclude: &[f64], k: u64| {
            gp.prepare();
            let best = best_of(gp);
            let mut r = rng(derive_seed(seed, MAXIMIZE_STREAM + k));
            let t = Instant::now();
            let cand = Candidates::draw(gp, opts, pool, &mut r)?;
            let cand_s = t.elapsed().as_secs_f64();
            Ok::<_, Error>((
                maximize_over(&acq, gp, best, opts, q, exclude, &snap, &cand, &mut r),
                cand.pool_rows,
                cand_s,
            ))
        };
        if let Some((members, k)) = &hedge_pick {
            // Every member's own maximiser over one shared set of candidates (the picked one's
            // is the first proposal below). The candidates and the picked member use the stream
            // a plain study uses (a one-member portfolio is that study); the others draw their
            // rare fallback points from their own.
            let best = best_of(&gp);
            let mut r = rng(derive_seed(seed, MAXIMIZE_STREAM));
            let t = Instant::now();
            let cand = Candidates::draw(&gp, opts, pool.as_mut(), &mut r)?;
            stats.candidates_s += t.elapsed().as_secs_f64();
            stats.pool_rows += cand.pool_rows;
            let mut proposals = Vec::with_capacity(members.len());
            for (j, m) in members.iter().enumerate() {
                let p = if j == *k {
                    maximize_over(m, &gp, best, opts, 1, &exclude, &snap, &cand, &mut r)
                } else {
                    let mut rj = rng(derive_seed(seed, MAXIMIZE_STREAM + 1000 + j as u64));
                    let nominee = MaximizeOptions { starts: opts.hedge_nominee_starts.unwrap_or(opts.starts), ..*opts };
                    maximize_over(m, &gp, best, &nominee, 1, &exclude, &snap, &cand, &mut rj)
                };
                proposals.push(p.into_iter().next().map(|p| p.x).unwrap_or_else(|| vec![0.5; d]));
            }
            let h = self.hedge.as_mut().expect("hedge state exists");
            h.picks.push(*k);
            if q == 1 {
                out.push(proposals[*k].clone());
            }
            h.proposals = proposals;
        }
        match (self.config.batch, q) {
            _ if hedge_pick.is_some() && q == 1 => {}
            (BatchStrategy::LocalMaxima, _) | (_, 1) => {
                let (props, rows, cand_s) = pick(&mut gp, pool.as_mut(), q, &exclude, 0)?;
                stats.pool_rows += rows;
                stats.candidates_s += cand_s;
                out.extend(props.into_iter().map(|p| p.x));
            }
            _ => {
                for k in 0..q {
                    let (props, rows, cand_s) = pick(&mut gp, pool.as_mut(), 1, &exclude, k as u64)?;
                    stats.pool_rows += rows;
                    stats.candidates_s += cand_s;
                    let x = props.into_iter().next().map(|p| p.x).unwrap_or_else(|| vec![0.5; d]);
                    let y = fantasy(&gp, &x);
                    let _ = gp.append(&x, y);
                    exclude.extend_from_slice(&x);
                    out.push(x);
                }
            }
        }
        self.pool = pool.map(|p| (refits, p));
        gp.truncate(n_real);
        gp.prepare();
        self.gp = Some(gp);
        stats.acquisition_s += t1.elapsed().as_secs_f64();
        Ok(out)
    }

    fn pending_mut(&mut self, id: u64) -> Result<&mut Trial> {
        let t = self.trials.get_mut(id as usize).ok_or(Error::BadTrial { id, problem: "unknown id" })?;
        if t.state != TrialState::Pending {
            return Err(Error::BadTrial { id, problem: "already told" });
        }
        Ok(t)
    }

    /// Records the objective value of trial `id`. A non-finite value marks it failed.
    pub fn tell(&mut self, id: u64, value: f64) -> Result<()> {
        if value.is_finite() {
            self.finish(id, Some(value), None)
        } else {
            self.finish(id, None, Some(format!("non-finite objective value {value}")))
        }
    }

    /// Records that trial `id` failed (it is kept, never modelled).
    pub fn tell_failed(&mut self, id: u64, reason: impl Into<String>) -> Result<()> {
        self.finish(id, None, Some(reason.into()))
    }

    /// Completes pending trial `id` with a value, or fails it with an error.
    fn finish(&mut self, id: u64, value: Option<f64>, error: Option<String>) -> Result<()> {
        let tell_index = self.n_tells;
        let t = self.pending_mut(id)?;
        t.state = if value.is_some() { TrialState::Complete } else { TrialState::Failed };
        t.value = value;
        t.error = error;
        t.tell_index = Some(tell_index);
        self.n_tells += 1;
        Ok(())
    }

    /// Adds an already evaluated point (e.g. a known good configuration).
    pub fn add_observation(&mut self, params: Point, value: f64) -> Result<()> {
        let x = self.space.encode(&params)?;
        let id = self.trials.len() as u64;
        self.trials.push(Trial {
            id,
            params,
            x,
            state: TrialState::Pending,
            value: None,
            error: None,
            ask_index: self.n_asks,
            tell_index: None,
        });
        self.tell(id, value)
    }

    /// Serialises the study (pretty JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("study serialises")
    }

    /// Restores a study from its JSON text; a study that fails [`Study::validate`] is an
    /// error (with the validation message).
    pub fn from_json(s: &str) -> std::result::Result<Study, serde_json::Error> {
        let study: Study = serde_json::from_str(s)?;
        study.validate().map_err(<serde_json::Error as serde::de::Error>::custom)?;
        Ok(study)
    }

    /// Saves atomically (a temporary file renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(gradlab_core::io::write_json(path, self)?)
    }

    /// Loads a saved study and validates it ([`Study::validate`]). Errors name the file; a
    /// bad value is [`Error::Invalid`] whose `field` is `<file>: <field>` (e.g.
    /// `study.json: trials[3].value`).
    pub fn load(path: &Path) -> Result<Study> {
        let study: Study = gradlab_core::io::read_json(path)?;
        study.validate().map_err(|e| match e {
            Error::Invalid { field, value, allowed } => {
                Error::Invalid { field: format!("{}: {field}", path.display()), value, allowed }
            }
            e => e,
        })?;
        Ok(study)
    }

    /// Checks what a hand edit (or a foreign writer) can break and the optimiser relies on:
    /// the configuration; each trial's `id` (its position in ask order, so no duplicates),
    /// `params` (inside the space), `x` (the unit-cube encoding of `params`, coordinates in
    /// [0, 1]), `value` (a finite number exactly when the trial is complete), `ask_index` and
    /// `tell_index` (told trials only, each index once, below the counters); `n_tells` (the
    /// number of told trials); and the model checkpoint (counts within the completed trials,
    /// finite hyperparameters of the right dimension). The first problem found is returned as
    /// [`Error::Invalid`] with `field` naming it (`trials[3].value`, `model.synced`, …).
    pub fn validate(&self) -> Result<()> {
        self.config.check()?;
        let d = self.space.encoded_dim();
        let mut tell_indices = BTreeSet::new();
        for (i, t) in self.trials.iter().enumerate() {
            let field = |name: &str| format!("trials[{i}].{name}");
            if t.id != i as u64 {
                let why = if self.trials[..i].iter().any(|u| u.id == t.id) { "duplicate" } else { "out of order" };
                return Err(Error::invalid(
                    field("id"),
                    t.id,
                    format!("{i} (ids are the positions in ask order; this one is {why})"),
                ));
            }
            self.space.check_point(&t.params).map_err(|e| match e {
                Error::Invalid { field: name, value, allowed } => {
                    Error::Invalid { field: format!("{}.{name}", field("params")), value, allowed }
                }
                e => Error::invalid(field("params"), format!("{:?}", t.params), e.to_string()),
            })?;
            if t.x.len() != d || t.x.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return Err(Error::invalid(field("x"), format!("{:?}", t.x), format!("{d} coordinates in [0, 1]")));
            }
            let enc = self.space.encode(&t.params)?;
            if enc.iter().zip(&t.x).any(|(a, b)| (a - b).abs() > 1e-9) {
                return Err(Error::invalid(
                    field("x"),
                    format!("{:?}", t.x),
                    format!("the encoding of the trial's params, {enc:?}"),
                ));
            }
            match (&t.state, t.value) {
                (TrialState::Complete, Some(v)) if v.is_finite() => {}
                (TrialState::Complete, v) => {
                    return Err(Error::invalid(
                        field("value"),
                        v.map_or("null".into(), |v| v.to_string()),
                        "a finite number (the trial is complete)",
                    ));
                }
                (TrialState::Pending | TrialState::Failed, Some(v)) => {
                    return Err(Error::invalid(
                        field("value"),
                        v,
                        format!("null (the trial is {:?})", t.state).to_lowercase(),
                    ));
                }
                _ => {}
            }
            if t.ask_index > self.n_asks {
                return Err(Error::invalid(field("ask_index"), t.ask_index, format!("<= n_asks ({})", self.n_asks)));
            }
            match (&t.state, t.tell_index) {
                (TrialState::Pending, None) => {}
                (TrialState::Pending, Some(k)) => {
                    return Err(Error::invalid(field("tell_index"), k, "null (the trial is pending)"));
                }
                (_, None) => {
                    return Err(Error::invalid(field("tell_index"), "null", "the position of the trial's tell"));
                }
                (_, Some(k)) => {
                    if k >= self.n_tells || !tell_indices.insert(k) {
                        return Err(Error::invalid(
                            field("tell_index"),
                            k,
                            format!("an index below n_tells ({}) used by no other trial", self.n_tells),
                        ));
                    }
                }
            }
        }
        if tell_indices.len() as u64 != self.n_tells {
            return Err(Error::invalid(
                "n_tells",
                self.n_tells,
                format!("{} (the number of told trials)", tell_indices.len()),
            ));
        }
        if let Some(m) = &self.model {
            let n = self.n_complete();
            if m.refit_points == 0 || m.refit_points > m.synced {
                return Err(Error::invalid(
                    "model.refit_points",
                    m.refit_points,
                    format!("between 1 and model.synced ({})", m.synced),
                ));
            }
            if m.synced > n {
                return Err(Error::invalid("model.synced", m.synced, format!("<= the completed trials ({n})")));
            }
            let h = &m.hyper;
            if h.log_ls.len() != d || h.to_vec().iter().any(|v| !v.is_finite()) {
                return Err(Error::invalid(
                    "model.hyper",
                    format!("{h:?}"),
                    format!("finite values with {d} length scales"),
                ));
            }
            if !(m.y_mean.is_finite() && m.y_std.is_finite() && m.y_std > 0.0) {
                return Err(Error::invalid(
                    "model.y_mean, model.y_std",
                    format!("{}, {}", m.y_mean, m.y_std),
                    "finite, y_std > 0",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Param, Value};
    use crate::testfns::TestFunction;

    fn quick_config(seed: u64) -> StudyConfig {
        StudyConfig {
            seed,
            maximize: MaximizeOptions { candidates: 300, starts: 3, max_iter: 30, ..Default::default() },
            fit: FitOptions { restarts: 1, max_iter: 30, ..Default::default() },
            ..Default::default()
        }
    }

    fn eval(f: TestFunction, t: &Trial) -> f64 {
        let x: Vec<f64> = t.params.iter().map(|v| v.as_f64().unwrap()).collect();
        f.eval(&x)
    }

    /// Runs `n` asks and tells of `f` one at a time.
    fn run_n(s: &mut Study, f: TestFunction, n: usize) {
        for _ in 0..n {
            let t = s.ask().unwrap();
            s.tell(t.id, eval(f, &t)).unwrap();
        }
    }

    #[test]
    fn gp_hedge_portfolio_picks_members_scores_them_and_survives_a_reload() {
        let f = TestFunction::Branin;
        // With η = 0 and no gains the draw is uniform; whatever member is drawn, its proposal is
        // the one a plain study with that member's acquisition makes at the same ask.
        let mut hedge =
            Study::new(f.space(), StudyConfig { acquisition: Acquisition::GpHedge { eta: 0.0 }, ..quick_config(4) })
                .unwrap();
        run_n(&mut hedge, f, 6);
        let k = hedge.hedge().unwrap().picks[0];
        let mut plain =
            Study::new(f.space(), StudyConfig { acquisition: GP_HEDGE_MEMBERS[k], ..quick_config(4) }).unwrap();
        run_n(&mut plain, f, 6);
        let xs = |s: &Study| s.trials().iter().map(|t| t.x.clone()).collect::<Vec<_>>();
        assert_eq!(xs(&hedge), xs(&plain));
        assert!(plain.hedge().is_none());
        // Three members: every GP-guided ask records a pick and three proposals; the gains fall
        // by the standardised posterior mean at each proposal.
        let cfg = StudyConfig { acquisition: Acquisition::GpHedge { eta: 1.0 }, ..quick_config(5) };
        let mut s = Study::new(f.space(), cfg.clone()).unwrap();
        run_n(&mut s, f, 12);
        let h = s.hedge().unwrap().clone();
        assert_eq!((h.gains.len(), h.proposals.len(), h.picks.len()), (3, 3, 12 - 5));
        assert!(h.gains.iter().all(|g| g.is_finite()) && h.gains.iter().any(|g| *g != 0.0));
        // Saved and loaded: the continuation equals the uninterrupted study's.
        let mut r = Study::from_json(&s.to_json()).unwrap();
        assert_eq!(r.hedge(), s.hedge());
        // The next ask scores the three proposals with the GP that has the 12th observation.
        let t = s.ask().unwrap();
        let gp = s.gp().unwrap();
        let after = s.hedge().unwrap();
        for j in 0..3 {
            let want = h.gains[j] - gp.standardise(gp.predict(&h.proposals[j]).mean);
            assert!((after.gains[j] - want).abs() <= 1e-12 * (1.0 + want.abs()), "{} vs {want}", after.gains[j]);
        }
        s.tell(t.id, eval(f, &t)).unwrap();
        run_n(&mut s, f, 7);
        run_n(&mut r, f, 8);
        assert_eq!(xs(&r), xs(&s));
        assert_eq!(r.hedge(), s.hedge());
        let bad = StudyConfig { acquisition: Acquisition::GpHedge { eta: f64::NAN }, ..quick_config(5) };
        assert!(Study::new(f.space(), bad).unwrap_err().to_string().contains("acquisition.eta"));
    }

    #[test]
    fn gp_hedge_nominee_starts_only_change_the_members_not_drawn() {
        let f = TestFunction::Hartmann6;
        let with = |seed: u64, nominee: Option<usize>, n: usize| {
            let mut cfg = StudyConfig { acquisition: Acquisition::GpHedge { eta: 1.0 }, ..quick_config(seed) };
            cfg.maximize.hedge_nominee_starts = nominee;
            let mut s = Study::new(f.space(), cfg).unwrap();
            run_n(&mut s, f, n);
            s
        };
        let xs = |s: &Study| s.trials().iter().map(|t| t.x.clone()).collect::<Vec<_>>();
        // `None` is `maximize.starts` for every member
        let starts = quick_config(0).maximize.starts;
        let (plain, same) = (with(8, None, 16), with(8, Some(starts), 16));
        assert!(plain.hedge().unwrap().picks.len() >= 2);
        assert_eq!(xs(&plain), xs(&same));
        assert_eq!(plain.hedge(), same.hedge());
        // One start for the members not drawn: at the first GP-guided ask (all gains 0, the same
        // draw) the drawn member's proposal — the point evaluated — is unchanged, while another
        // member's proposal (a single L-BFGS start from the best candidate) moves on some seeds.
        let first = 16 - plain.hedge().unwrap().picks.len() + 1;
        let mut moved = 0;
        for seed in 8..14 {
            let (plain, cheap) = (with(seed, None, first), with(seed, Some(1), first));
            let (hp, hc) = (plain.hedge().unwrap(), cheap.hedge().unwrap());
            assert_eq!((hp.picks.len(), hc.picks.len()), (1, 1));
            let k = hp.picks[0];
            assert_eq!(hc.picks[0], k);
            assert_eq!(xs(&plain), xs(&cheap));
            assert_eq!(hp.proposals[k], hc.proposals[k]);
            moved += (0..3).any(|j| j != k && hp.proposals[j] != hc.proposals[j]) as usize;
        }
        assert!(moved > 0, "one start found every other member's maximum on all seeds: the test says nothing");
        // 0 starts is refused, naming the field, not raised to 1
        let mut bad = quick_config(8);
        bad.maximize.hedge_nominee_starts = Some(0);
        let e = Study::new(f.space(), bad).unwrap_err().to_string();
        assert!(e.contains("maximize.hedge_nominee_starts"), "{e}");
    }

    #[test]
    fn kept_pool_grows_by_one_row_per_observation_and_reloads_bit_for_bit() {
        let f = TestFunction::Hartmann6;
        // Lag ∞ (hyperparameters frozen after the first fit): after the ask that builds the
        // pool, each ask computes one row of L⁻¹K(X, X*) per new observation.
        let cfg = StudyConfig { lag: LagPolicy::Never, batch: BatchStrategy::KrigingBeliever, ..quick_config(8) };
        let mut s = Study::new(f.space(), cfg.clone()).unwrap();
        run_n(&mut s, f, 14);
        let first = s.last_stats().clone();
        assert!(!first.initial && first.refit, "14 asks: 13 design points (2d + 1), then the first fit");
        assert_eq!(first.pool_rows, first.n);
        run_n(&mut s, f, 3);
        assert!(!s.last_stats().refit);
        assert_eq!(s.last_stats().pool_rows, 1);
        // A sequential (Kriging-believer) batch: its fantasies are rows too, and are recomputed at the next ask
        // (they were removed), with the new observations.
        let batch = s.ask_batch(3).unwrap();
        assert_eq!(s.last_stats().pool_rows, 1 + 2, "one new observation, two fantasies");
        for t in &batch {
            s.tell(t.id, eval(f, t)).unwrap();
        }
        s.ask().map(|t| s.tell(t.id, eval(f, &t))).unwrap().unwrap();
        assert_eq!(s.last_stats().pool_rows, 3);
        // Saved and loaded: the pool is redrawn from the study's seed and rebuilt; the
        // continuation equals the uninterrupted study's bit for bit.
        let mut r = Study::from_json(&s.to_json()).unwrap();
        run_n(&mut s, f, 4);
        run_n(&mut r, f, 4);
        let xs = |s: &Study| s.trials().iter().map(|t| t.x.clone()).collect::<Vec<_>>();
        assert_eq!(xs(&r), xs(&s));
        // Lag 2: the pool is redrawn and rebuilt at every refit.
        let mut l2 = Study::new(f.space(), StudyConfig { lag: LagPolicy::Every(2), ..quick_config(8) }).unwrap();
        run_n(&mut l2, f, 16);
        let st = l2.last_stats();
        assert_eq!(st.pool_rows, if st.refit { st.n } else { 1 });
        // Without a kept pool no rows are kept; the study still runs and differs only through
        // its candidates.
        let fresh = MaximizeOptions { keep_pool: false, ..cfg.maximize };
        let mut nk = Study::new(f.space(), StudyConfig { maximize: fresh, ..cfg }).unwrap();
        run_n(&mut nk, f, 16);
        assert_eq!(nk.last_stats().pool_rows, 0);
        assert_eq!(xs(&nk)[..13], xs(&s)[..13], "same design");
    }

    #[test]
    fn out_of_order_tells_pending_and_failures() {
        let f = TestFunction::Branin;
        let mut s = Study::new(f.space(), quick_config(1)).unwrap();
        let batch = s.ask_batch(8).unwrap();
        assert_eq!(s.pending().len(), 8);
        // Tell in reverse order; one failure.
        for t in batch.iter().rev() {
            if t.id == 3 {
                s.tell_failed(t.id, "crashed").unwrap();
            } else {
                s.tell(t.id, eval(f, t)).unwrap();
            }
        }
        assert!(matches!(s.tell(2, 1.0), Err(Error::BadTrial { .. })));
        assert!(matches!(s.tell(99, 1.0), Err(Error::BadTrial { .. })));
        // Two asks pending at once, then BO asks: distinct from each other and from data.
        let a = s.ask().unwrap();
        let b = s.ask().unwrap();
        assert!(!s.last_stats().initial);
        assert_ne!(a.x, b.x);
        for t in &s.trials()[..8] {
            assert_ne!(t.x, b.x);
        }
        s.tell(b.id, eval(f, &b)).unwrap();
        s.tell(a.id, f64::NAN).unwrap();
        assert_eq!(s.trials()[a.id as usize].state, TrialState::Failed);
        assert_eq!(s.n_complete(), 8);
        assert_eq!(s.n_finished(), 10);
    }

    /// A noisy Branin (Gaussian noise, σ = 2; the function spans ≈ 0.4–300 on its domain), with
    /// the posterior-mean incumbent in the acquisition: the fitted noise term picks the noise
    /// up, the search still gets close to the optimum, and the value reported for the incumbent
    /// by posterior mean is closer to the truth than the best noisy observation (the winner's
    /// curse: the lowest of many noisy values is biased low). (That the posterior-mean trial is
    /// also *truly* better than the best-observed one was tried and does not hold here: near
    /// the optimum their true values differ by less than the noise.)
    #[test]
    fn noisy_branin_fitted_noise_and_posterior_mean_incumbent() {
        use rand::Rng;
        let f = TestFunction::Branin;
        let sigma = 2.0;
        let (mut err_obs, mut err_mean, mut worst) = (0.0, 0.0, 0.0f64);
        let seeds = 6;
        for seed in 0..seeds {
            let cfg = StudyConfig { incumbent: Incumbent::PosteriorMean, ..quick_config(100 + seed) };
            let mut s = Study::new(f.space(), cfg).unwrap();
            let mut rng = gradlab_core::rng::rng(900 + seed);
            for _ in 0..40 {
                let t = s.ask().unwrap();
                // Box–Muller
                let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
                let y = eval(f, &t) + sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                s.tell(t.id, y).unwrap();
            }
            s.ask().unwrap(); // a model on all 40 observations
            let gp = s.gp().unwrap();
            let (_, y_std) = gp.standardisation();
            let noise_sd = gp.hyper().log_sn2.exp().sqrt() * y_std;
            assert!(noise_sd > 0.2 * sigma && noise_sd < 5.0 * sigma, "seed {seed}: fitted noise sd {noise_sd}");
            let b = s.best().unwrap();
            err_obs += (eval(f, b) - b.value.unwrap()).abs();
            let (t, mean) = s.best_by_posterior_mean().unwrap();
            err_mean += (eval(f, t) - mean).abs();
            worst = worst.max(eval(f, t));
        }
        let (err_obs, err_mean) = (err_obs / seeds as f64, err_mean / seeds as f64);
        eprintln!(
            "mean |truth − reported|: posterior mean {err_mean:.3}, best observed {err_obs:.3}; worst {worst:.3}"
        );
        // within two noise sd of f* = 0.398 (one of the three basins; the median over the domain
        // is ≈ 25): measured worst 2.07 over the 6 seeds
        assert!(worst < 0.398 + 2.0 * sigma, "true value at a posterior-mean incumbent: {worst}");
        assert!(
            err_mean < 0.5 * err_obs,
            "mean |truth − reported|: posterior mean {err_mean}, best observed {err_obs}"
        );
    }

    #[test]
    fn json_roundtrip_preserves_study() {
        let space = Space::new(vec![
            Param::Float { name: "a".into(), low: 0.0, high: 1.0 },
            Param::Int { name: "k".into(), low: 1, high: 5 },
            Param::Categorical { name: "c".into(), choices: vec!["x".into(), "y".into()] },
        ])
        .unwrap();
        let mut s = Study::new(space, quick_config(3)).unwrap();
        // 9 design points, then 6 model-based asks on the mixed (snapped) space.
        for _ in 0..15 {
            let t = s.ask().unwrap();
            let v = t.params[0].as_f64().unwrap() + if t.params[2] == Value::Choice("x".into()) { 0.0 } else { 1.0 };
            s.tell(t.id, v).unwrap();
        }
        assert!(!s.last_stats().initial);
        for (i, a) in s.trials().iter().enumerate() {
            s.space().check_point(&a.params).unwrap();
            assert_eq!(s.space().encode(&a.params).unwrap(), a.x);
            for b in &s.trials()[..i] {
                assert_ne!(a.x, b.x, "duplicate proposal");
            }
        }
        let j = s.to_json();
        let r = Study::from_json(&j).unwrap();
        assert_eq!(r.trials(), s.trials());
        assert_eq!(r.to_json(), j);
        assert!(Study::from_json(&j.replace(FORMAT, "other")).is_err());
    }

    #[test]
    fn batch_strategies_give_distinct_points() {
        let f = TestFunction::Hartmann6;
        for batch in [BatchStrategy::LocalMaxima, BatchStrategy::ConstantLiar(Lie::Max), BatchStrategy::KrigingBeliever]
        {
            let mut s = Study::new(f.space(), StudyConfig { batch, ..quick_config(4) }).unwrap();
            for t in s.ask_batch(13).unwrap() {
                s.tell(t.id, eval(f, &t)).unwrap();
            }
            let b = s.ask_batch(5).unwrap();
            assert_eq!(b.len(), 5);
            for i in 0..5 {
                for j in 0..i {
                    assert!(b[i].x.iter().zip(&b[j].x).any(|(p, q)| (p - q).abs() > 1e-3), "{batch:?}");
                }
            }
        }
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Study>();
        check::<Gp>();
        check::<Space>();
        check::<crate::chol::IncrementalCholesky>();
        check::<Trial>();
    }

    #[test]
    fn lag_policy_controls_refits() {
        let f = TestFunction::Branin;
        // n_initial = 5 for Branin; asks 6..=17 use the model (12 asks).
        for (lag, expect) in [(LagPolicy::Every(1), 12), (LagPolicy::Every(4), 3), (LagPolicy::Never, 1)] {
            let mut s = Study::new(f.space(), StudyConfig { lag, ..quick_config(5) }).unwrap();
            let mut refits = 0;
            for _ in 0..17 {
                let t = s.ask().unwrap();
                refits += s.last_stats().refit as usize;
                s.tell(t.id, eval(f, &t)).unwrap();
            }
            assert_eq!(refits, expect, "{lag:?}");
            assert_eq!(s.model_checkpoint().unwrap().refits, expect);
            // Between refits the model is the appended factor: it must equal a from-scratch
            // factorisation with the same hyperparameters and standardisation.
            let gp = s.gp().unwrap();
            let m = s.model_checkpoint().unwrap();
            let mut fresh = Gp::new(gp.kind(), 2, m.hyper.clone(), JitterPolicy::default());
            fresh.restore(gp.x().to_vec(), gp.y().to_vec(), m.hyper.clone(), m.y_mean, m.y_std).unwrap();
            let p = [0.3, 0.6];
            let (a, b) = (gp.predict_std(&p), fresh.predict_std(&p));
            assert!((a.0 - b.0).abs() < 1e-8 && (a.1 - b.1).abs() < 1e-8, "{lag:?}: {a:?} vs {b:?}");
            assert!((gp.lml() - fresh.lml()).abs() < 1e-8 * fresh.lml().abs().max(1.0));
        }
    }

    /// A saved Branin study with a model (7 trials), edited by `edit`, then loaded.
    fn load_edited(edit: impl Fn(&mut serde_json::Value)) -> Result<Study> {
        let f = TestFunction::Branin;
        let mut s = Study::new(f.space(), quick_config(8)).unwrap();
        for _ in 0..7 {
            let t = s.ask().unwrap();
            s.tell(t.id, eval(f, &t)).unwrap();
        }
        s.set_metadata("note", serde_json::json!("kept"));
        let mut v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        edit(&mut v);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.json");
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        let loaded = Study::load(&path);
        // `from_json` refuses exactly what `load` refuses.
        assert_eq!(loaded.is_ok(), Study::from_json(&v.to_string()).is_ok());
        loaded
    }

    #[test]
    fn hand_edited_study_is_validated_on_load() {
        let s = load_edited(|_| {}).unwrap();
        assert_eq!(s.metadata()["note"], "kept");
        assert!(s.model_checkpoint().is_some());
        type Edit = fn(&mut serde_json::Value);
        let cases: [(&str, Edit, &str); 9] = [
            ("trials[2].value", |v| v["trials"][2]["value"] = serde_json::Value::Null, "null"),
            ("trials[3].id", |v| v["trials"][3]["id"] = 2.into(), "2"),
            ("trials[1].x", |v| v["trials"][1]["x"][0] = 1.5.into(), "1.5"),
            ("trials[1].x", |v| v["trials"][1]["x"][0] = 0.123456.into(), "0.123456"),
            ("trials[4].params.x0", |v| v["trials"][4]["params"][0] = 100.0.into(), "100"),
            ("trials[0].tell_index", |v| v["trials"][0]["tell_index"] = 99.into(), "99"),
            ("trials[5].value", |v| v["trials"][5]["state"] = "failed".into(), ""),
            ("n_tells", |v| v["n_tells"] = 9.into(), "9"),
            ("model.synced", |v| v["model"]["synced"] = 50.into(), "50"),
        ];
        for (want, edit, value) in cases {
            let e = load_edited(edit).unwrap_err();
            match &e {
                Error::Invalid { field, value: got, .. } => {
                    assert!(field.ends_with(&format!("study.json: {want}")), "{want}: {e}");
                    assert!(got.contains(value), "{want}: {e}");
                }
                _ => panic!("{want}: expected Error::Invalid, got {e}"),
            }
        }
    }

    #[test]
    fn bad_config_is_rejected() {
        let f = TestFunction::Branin;
        let e = Study::new(f.space(), StudyConfig { lag: LagPolicy::Every(0), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("lag"), "{e}");
        let e = Study::new(f.space(), StudyConfig { acquisition: Acquisition::Ei { xi: -1.0 }, ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().contains("xi"), "{e}");
        let j = r#"{"seed": 1, "lag": {"every": 2}, "bogus": 3}"#;
        assert!(serde_json::from_str::<StudyConfig>(j).is_err());
        let c: StudyConfig =
            serde_json::from_str(r#"{"seed": 1, "lag": "never", "acquisition": {"kind": "ucb", "kappa": 2.0}}"#)
                .unwrap();
        assert_eq!(c.lag, LagPolicy::Never);
    }
}
