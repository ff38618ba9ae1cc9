//! `track-landscape` (`configs/track-landscape.json`): the loss-landscape and stability study.
//!
//! For every model variant (PAT with several λ, PTT, optionally another optimiser) every
//! replicate seed is trained; then, on fixed analysis frames, the stages of
//! [`crate::landscape_study::analysis`]: mode connectivity and prediction instability for every
//! pair of seeds, curvature and eigenvector slices of the first seeds, and λ vs instability, as
//! tables and figures.

use std::sync::Arc;
use std::time::Instant;

use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::optim::OptimizerConfig;
use gradlab_core::params::read_params_f64;
use gradlab_core::plot::{HeatMap, LinePlot, Mark};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::rng::derive_seed;
use gradlab_landscape::SpectrumConfig;
use gradlab_landscape::connectivity::{BezierConfig, PathProfile};
use gradlab_landscape::hessian::HvpMethod;
use gradlab_landscape::lanczos::LanczosConfig;
use gradlab_landscape::output::plot_density;
use gradlab_landscape::slq::SlqConfig;
use gradlab_landscape::surface::{Surface, SurfaceOptions};
use serde::{Deserialize, Serialize};

use super::common::{gnn_study_params, stem, train_replicates};
use crate::error::{Error, Result};
use crate::landscape_study::activations::MODULES;
use crate::landscape_study::analysis::{
    Connectivity, CurvatureSettings, CurveObjective, Instability, Measures, PathSettings, connectivity, curvature,
    instability,
};
use crate::paper;
use crate::setup::ANALYSIS_FIRST;
use crate::training::{FrameData, FrameSource, Method, TrainSpec, TrainedModel, prepare};

/// Named stream of the Bézier curves' `t` samples (with the pair's seeds).
pub const STREAM_BEZIER: u64 = 0xBE21;
/// Named stream of the Lanczos and SLQ start vectors (with the solution's seed).
pub const STREAM_SPECTRUM: u64 = 0x5EC7;

/// One trained configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Label (default: "PAT λ=…" or "PTT", plus the optimiser when overridden).
    #[serde(default)]
    pub name: Option<String>,
    /// PAT or PTT.
    pub method: Method,
    /// λ of the blackbox gradient (PAT; default: the spec's).
    #[serde(default)]
    pub lambda: Option<f64>,
    /// Optimiser override (default: the spec's).
    #[serde(default)]
    pub optimizer: Option<OptimizerConfig>,
}

/// The 2-D eigenvector slices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceParams {
    /// Points per axis (paper: 50).
    pub points: usize,
    /// Each axis spans `[−range, range]` along a unit eigenvector (paper: 0.5).
    pub range: f64,
    /// Seeds per variant that get slices and spectra (the first ones).
    pub seeds: usize,
}

/// Everything after training.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisParams {
    /// Fixed analysis frames (independent of training and validation).
    pub frames: usize,
    /// Points along each path (t = 0 … 1).
    pub path_points: usize,
    /// Training frames (evenly spaced over the training set) the BatchNorm statistics are
    /// recomputed from at every point of every path, reported beside the interpolated
    /// statistics; 0: interpolated statistics only.
    #[serde(default)]
    pub batch_norm_frames: usize,
    /// At most this many seed pairs per variant (all when absent).
    #[serde(default)]
    pub max_pairs: Option<usize>,
    /// Bézier training (Adam on the control point; `seed` is derived).
    pub bezier: BezierConfig,
    /// Objectives the curves are trained with.
    pub bezier_objectives: Vec<CurveObjective>,
    /// Training frames (evenly spaced over the training set) the Bézier curves are trained on,
    /// in minibatches of `bezier_batch_frames` frames per sampled `t`, cycled in order (Garipov
    /// et al. 2018 train on the training set); the curves are then evaluated on the analysis
    /// frames. 0: trained on the analysis frames themselves, full batch.
    #[serde(default)]
    pub bezier_training_frames: usize,
    /// Frames per minibatch of the curve training (divides `bezier_training_frames`; 0 when
    /// that is 0).
    #[serde(default)]
    pub bezier_batch_frames: usize,
    /// Train the curves in train mode: each frame normalised by its own BatchNorm batch
    /// statistics, as the networks were trained and as Garipov et al. train curves (then the
    /// "BN recomputed" columns are their evaluation); `false`: by the running statistics
    /// interpolated along the curve. Needs `bezier_training_frames` > 0.
    #[serde(default)]
    pub bezier_train_mode: bool,
    /// Top Hessian eigenvalues reported (≥ 2; the top 2 span the slices).
    pub top_k: usize,
    /// Lanczos settings (paper: power iteration, 100 iterations, tol 1e-3; `seed` is derived).
    pub lanczos: LanczosConfig,
    /// Stochastic Lanczos quadrature for the spectral density (`seed` is derived).
    pub slq: SlqConfig,
    /// Finite-difference step of the Hessian-vector products (f32 model: 1e-2).
    pub hvp_step: f64,
    /// Eigenvector slices.
    pub slice: SliceParams,
    /// Worker threads for the slices (0: all cores).
    #[serde(default)]
    pub threads: usize,
}

gnn_study_params! {
    /// Parameters of `track-landscape`.
    pub struct Params {
        /// The variants.
        pub variants: Vec<Variant>,
        /// The analysis.
        pub analysis: AnalysisParams,
        /// Analyse the trained models of finished GNN runs (`track-compare`, `track-pat` or
        /// `track-ptt` folders; one path or a list) instead of training: their `seed`, `setup`,
        /// `data` and `spec` (equal in every folder) replace this config's, the union of their
        /// `seeds` replaces `seeds`, and every variant × seed is read from the
        /// `checkpoints/<label>-seed<s>` (best weights) of the one folder that has it (so a
        /// `track-landscape` run that trained only the Adam variant can join `track-compare` runs).
        #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
        pub models: Vec<std::path::PathBuf>,
    }
}

impl Params {
    /// Checks everything that can be checked before training.
    pub fn validate(&self) -> Result<()> {
        self.base().validate(2)?;
        if self.variants.is_empty() {
            return Err(Error::invalid("variants", "[]", "at least one variant"));
        }
        let a = &self.analysis;
        if a.frames == 0 {
            return Err(Error::invalid("analysis.frames", 0, "≥ 1"));
        }
        if a.path_points < 3 {
            return Err(Error::invalid("analysis.path_points", a.path_points, "≥ 3"));
        }
        if a.top_k < 2 {
            return Err(Error::invalid("analysis.top_k", a.top_k, "≥ 2 (the top two span the slices)"));
        }
        if a.slice.points < 3 || !(a.slice.range.is_finite() && a.slice.range > 0.0) {
            let value = format!("points {} range {}", a.slice.points, a.slice.range);
            return Err(Error::invalid("analysis.slice", value, "points ≥ 3, finite range > 0"));
        }
        if !(a.hvp_step.is_finite() && a.hvp_step > 0.0) {
            return Err(Error::invalid("analysis.hvp_step", a.hvp_step, "a finite step > 0"));
        }
        match (a.bezier_training_frames, a.bezier_batch_frames) {
            (0, 0) => {}
            (0, b) => {
                return Err(Error::invalid(
                    "analysis.bezier_batch_frames",
                    b,
                    "0 unless analysis.bezier_training_frames > 0 (the curves are then trained on the analysis frames)",
                ));
            }
            (n, b) if b == 0 || !n.is_multiple_of(b) => {
                return Err(Error::invalid(
                    "analysis.bezier_batch_frames",
                    b,
                    format!("≥ 1 and dividing analysis.bezier_training_frames = {n}"),
                ));
            }
            _ => {}
        }
        if a.bezier_train_mode && a.bezier_training_frames == 0 {
            return Err(Error::invalid(
                "analysis.bezier_train_mode",
                true,
                "false unless analysis.bezier_training_frames > 0 (curves in train mode are trained on training frames)",
            ));
        }
        if a.bezier_objectives.is_empty() {
            return Err(Error::invalid("analysis.bezier_objectives", "[]", "at least one of \"hamming\", \"bce\""));
        }
        if a.max_pairs == Some(0) {
            return Err(Error::invalid("analysis.max_pairs", 0, "≥ 1, or absent for all pairs"));
        }
        Error::check_derived_seed("analysis.bezier.seed", a.bezier.seed)?;
        Error::check_derived_seed("analysis.lanczos.seed", a.lanczos.seed)?;
        Error::check_derived_seed("analysis.slq.seed", a.slq.seed)?;
        for v in &self.variants {
            self.spec_of(v).validate()?;
        }
        Ok(())
    }

    /// The training specification of a variant.
    pub fn spec_of(&self, v: &Variant) -> TrainSpec {
        let mut s = self.spec.clone();
        s.method = v.method;
        if let Some(l) = v.lambda {
            s.assign.lambda = l;
        }
        if let Some(o) = &v.optimizer {
            s.train.optimizer = o.clone();
        }
        s
    }
}

/// The label of a variant.
pub fn label(v: &Variant, spec: &TrainSpec) -> String {
    if let Some(n) = &v.name {
        return n.clone();
    }
    let base = match v.method {
        Method::Pat => format!("PAT λ={}", spec.assign.lambda),
        Method::Ptt => "PTT".to_string(),
    };
    match &v.optimizer {
        Some(o) => format!("{base} ({})", optimizer_name(o)),
        None => base,
    }
}

fn optimizer_name(o: &OptimizerConfig) -> &'static str {
    match o {
        OptimizerConfig::Adamw(_) => "Adam",
        OptimizerConfig::Sgd(_) => "SGD",
        OptimizerConfig::Rmsprop(_) => "RMSprop",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// One trained solution.
struct Solution {
    variant: usize,
    seed: u64,
    theta: Vec<f64>,
    val_purity: f64,
}

/// Results for one pair of seeds of a variant.
#[derive(Debug, Clone, Serialize)]
struct PairResult {
    variant: String,
    seeds: (u64, u64),
    #[serde(flatten)]
    paths: Connectivity,
    #[serde(flatten)]
    instability: Instability,
}

/// Curvature summary of one solution.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct CurvatureRow {
    variant: String,
    seed: u64,
    top: Vec<f64>,
    converged: bool,
    hvps: usize,
    /// How the products were computed and why (exact where its check passes).
    #[serde(default)]
    hvp: String,
    slq_range: (f64, f64),
    loss_centre: f64,
    purity_centre: f64,
    loss_max_on_slice: f64,
    purity_min_on_slice: f64,
}

/// What the analysis stages collect.
#[derive(Default)]
struct Study {
    labels: Vec<String>,
    specs: Vec<TrainSpec>,
    endpoint_rows: Vec<Vec<String>>,
    pairs: Vec<PairResult>,
    curvatures: Vec<CurvatureRow>,
    timings: serde_json::Map<String, serde_json::Value>,
}

impl Study {
    fn time(&mut self, key: &str, secs: f64) {
        let old = self.timings.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0);
        self.timings.insert(key.into(), (old + secs).into());
    }
}

fn max_of(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}
fn min_of(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}
fn mean(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() { f64::NAN } else { f.iter().sum::<f64>() / f.len() as f64 }
}

/// Runs `track-landscape`: data → training → per-variant analysis → report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let mut p: Params = ctx.params()?;
    let seed_dirs = if p.models.is_empty() { Vec::new() } else { adopt_runs(&mut p)? };
    p.validate()?;
    let t0 = Instant::now();
    let mut st = Study::default();
    let (train_frames, val_frames) = p.base().training_data()?;
    let frames = Arc::new(analysis_frames(&p)?);
    let bn_frames = spaced_training_frames(&train_frames, p.analysis.batch_norm_frames, "analysis.batch_norm_frames")?;
    let curve_frames =
        spaced_training_frames(&train_frames, p.analysis.bezier_training_frames, "analysis.bezier_training_frames")?;
    st.time("data_s", t0.elapsed().as_secs_f64());
    st.specs = p.variants.iter().map(|v| p.spec_of(v)).collect();
    st.labels = p.variants.iter().zip(&st.specs).map(|(v, s)| label(v, s)).collect();
    let t = Instant::now();
    let variants: Vec<(String, TrainSpec)> = st.labels.iter().cloned().zip(st.specs.iter().cloned()).collect();
    let solutions: Vec<Solution> = match p.models.is_empty() {
        false => load_solutions(&seed_dirs, &p, &variants)?,
        true => train_replicates(ctx, p.base(), &variants, &train_frames, &val_frames)?
            .into_iter()
            .map(|r| {
                let theta = read_params_f64(&r.model.vm)?;
                Ok(Solution { variant: r.variant, seed: r.seed, theta, val_purity: r.report.best.unwrap_or(f64::NAN) })
            })
            .collect::<Result<_>>()?,
    };
    st.time(if p.models.is_empty() { "training_s" } else { "loading_s" }, t.elapsed().as_secs_f64());
    for vi in 0..variants.len() {
        let models: Vec<&Solution> = solutions.iter().filter(|m| m.variant == vi).collect();
        let data =
            VariantFrames { analysis: frames.clone(), batch_norm: bn_frames.clone(), curves: curve_frames.clone() };
        analyse_variant(ctx, &p, &mut st, vi, &models, data)?;
    }
    st.time("total_s", t0.elapsed().as_secs_f64());
    write_report(ctx, &p, &st, &solutions)?;
    Ok(())
}

/// `models` as one path or a list of paths.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<std::path::PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(std::path::PathBuf),
        Many(Vec<std::path::PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

/// Takes `seed`, `setup`, `data` and `spec` from the run folders' `config.json` (equal in every
/// folder) and the union of their `seeds`; returns the folders that trained each seed (several
/// when they trained different variants, e.g. a `track-compare` run and a `track-landscape` run
/// of the Adam variant; [`load_solutions`] takes each variant × seed from the one folder that has it).
fn adopt_runs(p: &mut Params) -> Result<Vec<(u64, Vec<std::path::PathBuf>)>> {
    let mut first: Option<(std::path::PathBuf, serde_json::Value)> = None;
    let mut seed_dirs: Vec<(u64, Vec<std::path::PathBuf>)> = Vec::new();
    for dir in &p.models {
        let file = dir.join("config.json");
        if !file.is_file() {
            return Err(Error::invalid(
                "models",
                dir.display(),
                "run folders of track-compare, track-pat or track-ptt (with config.json and checkpoints/)",
            ));
        }
        let cfg: serde_json::Value = gradlab_core::io::read_json(&file)?;
        let params = cfg["params"].clone();
        if let Some((f, fp)) = &first {
            for key in ["seed", "setup", "data", "spec"] {
                if params[key] != fp[key] {
                    return Err(Error::invalid(
                        "models",
                        format!("{} and {} differ in params.{key}", f.display(), file.display()),
                        "runs of the same study settings (only their seeds may differ)",
                    ));
                }
            }
        }
        let seeds: Vec<u64> = field(&params, "seeds", &file)?;
        for s in seeds {
            match seed_dirs.iter_mut().find(|(t, _)| *t == s) {
                Some((_, dirs)) => dirs.push(dir.clone()),
                None => seed_dirs.push((s, vec![dir.clone()])),
            }
        }
        if first.is_none() {
            first = Some((file, params));
        }
    }
    let (file, params) = first.expect("models is not empty");
    p.seed = field(&params, "seed", &file)?;
    p.setup = field(&params, "setup", &file)?;
    p.data = field(&params, "data", &file)?;
    p.spec = field(&params, "spec", &file)?;
    p.seeds = seed_dirs.iter().map(|(s, _)| *s).collect();
    Ok(seed_dirs)
}

fn field<T: serde::de::DeserializeOwned>(params: &serde_json::Value, key: &str, file: &std::path::Path) -> Result<T> {
    serde_json::from_value(params[key].clone()).map_err(|e| {
        Error::invalid(format!("models: {}: params.{key}", file.display()), e, "the fields of a GNN study's config")
    })
}

/// Every variant × seed of finished runs: best weights of `checkpoints/<label>-seed<s>` in the
/// one folder of that seed that has it (none or two is an error naming them), its card checked
/// against the variant (method, λ, network, graph cuts), its best validation value.
fn load_solutions(
    seed_dirs: &[(u64, Vec<std::path::PathBuf>)],
    p: &Params,
    variants: &[(String, TrainSpec)],
) -> Result<Vec<Solution>> {
    let mut out = Vec::new();
    for (seed, dirs) in seed_dirs {
        let seed = *seed;
        for (vi, (label, spec)) in variants.iter().enumerate() {
            let name = format!("{}-seed{seed}", stem(label));
            let found: Vec<std::path::PathBuf> =
                dirs.iter().map(|d| d.join("checkpoints").join(&name)).filter(|c| c.is_dir()).collect();
            let ck = match found.as_slice() {
                [one] => one.clone(),
                [] => {
                    let have: Vec<String> = dirs
                        .iter()
                        .flat_map(|d| {
                            std::fs::read_dir(d.join("checkpoints"))
                                .map(|r| {
                                    r.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                                        .collect::<Vec<_>>()
                                })
                                .unwrap_or_default()
                        })
                        .collect();
                    let where_ = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
                    return Err(Error::invalid(
                        "models",
                        format!("{where_}: no checkpoint for {label} seed {seed}"),
                        format!("variants and seeds the runs trained (their checkpoints: {have:?})"),
                    ));
                }
                several => {
                    let list = several.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" and ");
                    return Err(Error::invalid(
                        "models",
                        format!("{label} seed {seed} is in both {list}"),
                        "folders whose variants × seeds do not overlap",
                    ));
                }
            };
            let tm = TrainedModel::load(&ck)?;
            let card = &tm.card;
            let same = card.spec.method == spec.method
                && (spec.method == Method::Ptt || card.spec.assign.lambda == spec.assign.lambda)
                && card.spec.model == spec.model
                && card.graph == p.setup.graph;
            if !same {
                return Err(Error::invalid(
                    "models",
                    format!("{}: trained as {:?} λ={} ", ck.display(), card.spec.method, card.spec.assign.lambda),
                    format!("a checkpoint of {label} with the run's network and graph cuts"),
                ));
            }
            let state = gradlab_core::train::read_train_state(&ck).ok();
            if let Some(st) = state.as_ref().filter(|s| !s.finished()) {
                return Err(Error::invalid(
                    "models",
                    format!(
                        "{}: training stopped at step {} of {} (epoch {} of {})",
                        ck.display(),
                        st.step,
                        st.config.max_steps.map_or("—".to_string(), |m| m.to_string()),
                        st.epoch,
                        st.config.epochs
                    ),
                    "finished trainings (finish it with `cargo xtask experiment NAME --resume RUN_DIR`)",
                ));
            }
            let val_purity = state.and_then(|s| s.best).unwrap_or(f64::NAN);
            out.push(Solution { variant: vi, seed, theta: read_params_f64(&tm.model.vm)?, val_purity });
        }
    }
    Ok(out)
}

/// `count` training frames evenly spaced over the training set (every phantom), for the
/// BatchNorm recomputation along paths or the curves' training (`field` names the setting);
/// `None` when `count` is 0.
fn spaced_training_frames<S: FrameSource + ?Sized>(
    train: &S,
    count: usize,
    field: &str,
) -> Result<Option<Arc<Vec<FrameData>>>> {
    if count == 0 {
        return Ok(None);
    }
    let n = train.len();
    if count > n {
        return Err(Error::invalid(field, count, format!("≤ the {n} training frames")));
    }
    let frames = (0..count).map(|k| Ok(train.get(k * n / count)?.into_owned())).collect::<Result<Vec<_>>>()?;
    Ok(Some(Arc::new(frames)))
}

/// The fixed analysis frames (independent of training and validation).
fn analysis_frames(p: &Params) -> Result<Vec<FrameData>> {
    let det = p.setup.detector.load()?;
    // Behind the first training phantom.
    let sim = p.setup.simulator(&det, p.data.thicknesses_mm[0], p.data.primaries)?;
    let raw = sim.simulate_frames(p.seed, ANALYSIS_FIRST, p.analysis.frames as u64);
    prepare(&raw, &p.setup.graph, &p.spec.model, p.spec.tracker_layers)
}

/// The frames of a variant's analysis.
struct VariantFrames {
    /// The fixed analysis frames every measure is evaluated on.
    analysis: Arc<Vec<FrameData>>,
    /// Training frames for the BatchNorm recomputation along paths.
    batch_norm: Option<Arc<Vec<FrameData>>>,
    /// Training frames the Bézier curves are trained on.
    curves: Option<Arc<Vec<FrameData>>>,
}

/// Endpoints, pairs (connectivity and instability) and curvature of one variant.
fn analyse_variant(
    ctx: &mut RunContext,
    p: &Params,
    st: &mut Study,
    vi: usize,
    models: &[&Solution],
    data: VariantFrames,
) -> Result<()> {
    let a = &p.analysis;
    let name = st.labels[vi].clone();
    let mut m = Measures::new(&p.spec.model, data.analysis, &st.specs[vi])?;
    if let Some(bn) = data.batch_norm {
        m.recompute_batch_norm_on(bn)?;
    }
    if let Some(cf) = data.curves {
        m.train_curves_on(&p.spec.model, &cf, a.bezier_batch_frames, a.bezier_train_mode)?;
    }
    for s in models {
        let [pur, ham, bce, tpr] = m.endpoint(&s.theta)?;
        st.endpoint_rows.push(vec![
            name.clone(),
            s.seed.to_string(),
            fmt_num(s.val_purity * 100.0, 1),
            fmt_num(pur * 100.0, 1),
            fmt_num(ham, 4),
            fmt_num(bce, 4),
            fmt_num(tpr * 100.0, 1),
        ]);
    }
    let pairs: Vec<(usize, usize)> = (0..models.len())
        .flat_map(|i| (i + 1..models.len()).map(move |j| (i, j)))
        .take(a.max_pairs.unwrap_or(usize::MAX))
        .collect();
    for (i, j) in pairs {
        let pr = analyse_pair(ctx, p, st, &mut m, &name, models[i], models[j])?;
        st.pairs.push(pr);
    }
    path_figure(ctx, st, &name)?;
    let tc = Instant::now();
    for s in models.iter().take(a.slice.seeds) {
        // A finished curvature (spectrum, slices and their figures) is read back on `--resume`.
        let row = ctx.stage(&format!("{name}-curvature-seed{}", s.seed), || analyse_curvature(ctx, p, &m, &name, s))?;
        st.curvatures.push(row);
    }
    st.time("curvature_and_slices_s", tc.elapsed().as_secs_f64());
    Ok(())
}

/// Connectivity and instability of one pair of solutions.
fn analyse_pair(
    ctx: &mut RunContext,
    p: &Params,
    st: &mut Study,
    m: &mut Measures,
    name: &str,
    sa: &Solution,
    sb: &Solution,
) -> Result<PairResult> {
    let a = &p.analysis;
    let mut bezier = a.bezier.clone();
    bezier.seed = derive_seed(derive_seed(p.seed, STREAM_BEZIER), (sa.seed << 16) ^ sb.seed);
    let settings = PathSettings { points: a.path_points, bezier: &bezier, objectives: &a.bezier_objectives };
    // A finished pair (its curves are the long part) is read back on `--resume`.
    let (paths, inst) = ctx.stage(&format!("{name}-pair-seeds{}-{}", sa.seed, sb.seed), || -> Result<_> {
        let tp = Instant::now();
        let paths = connectivity(m, &sa.theta, &sb.theta, &settings)?;
        st.time("connectivity_s", tp.elapsed().as_secs_f64());
        let ti = Instant::now();
        let inst = instability(m, &sa.theta, &sb.theta)?;
        st.time("instability_s", ti.elapsed().as_secs_f64());
        Ok((paths, inst))
    })?;
    ctx.metrics()?.log(&serde_json::json!({
        "variant": name, "seeds": [sa.seed, sb.seed], "linear_max_hamming": max_of(&paths.linear_hamming.losses),
        "linear_min_tpr": min_of(&paths.linear_tpr), "edges_minmax": inst.edges.min_max,
        "tracks_minmax": inst.tracks.min_max, "cka": inst.cka,
    }))?;
    Ok(PairResult { variant: name.to_string(), seeds: (sa.seed, sb.seed), paths, instability: inst })
}

/// Hamming loss and TPR along the paths of the variant's first pair.
fn path_figure(ctx: &RunContext, st: &Study, name: &str) -> Result<()> {
    let Some(pr) = st.pairs.iter().find(|pr| pr.variant == name) else {
        return Ok(());
    };
    let c = &pr.paths;
    let pts = |v: &[f64]| c.linear_hamming.ts.iter().zip(v).map(|(t, l)| (*t, *l)).collect::<Vec<_>>();
    let between = format!("between seeds {} and {}", pr.seeds.0, pr.seeds.1);
    let mut lp = LinePlot::new(&format!("{name}: Hamming loss {between}")).x_label("t").y_label("Hamming loss").series(
        "linear",
        pts(&c.linear_hamming.losses),
        Mark::LinePoints,
    );
    let mut tp = LinePlot::new(&format!("{name}: edge TPR {between}")).x_label("t").y_label("edge TPR").series(
        "linear",
        pts(&c.linear_tpr),
        Mark::LinePoints,
    );
    for (o, ph, pt) in &c.bezier {
        lp = lp.series(&format!("Bézier ({o:?})"), pts(&ph.losses), Mark::LinePoints);
        tp = tp.series(&format!("Bézier ({o:?})"), pts(pt), Mark::LinePoints);
    }
    lp.save(&ctx.dir.file(&format!("paths/{}_hamming", stem(name)))?)?;
    tp.save(&ctx.dir.file(&format!("paths/{}_tpr", stem(name)))?)?;
    Ok(())
}

/// Spectrum and slices of one solution: figures, slice data and the summary row.
fn analyse_curvature(ctx: &RunContext, p: &Params, m: &Measures, name: &str, s: &Solution) -> Result<CurvatureRow> {
    let a = &p.analysis;
    let spectrum_seed = derive_seed(derive_seed(p.seed, STREAM_SPECTRUM), s.seed);
    let spectrum = SpectrumConfig {
        hvp: HvpMethod::FiniteDifference { h: a.hvp_step },
        top_k: a.top_k,
        lanczos: a.lanczos.clone(),
        trace_products: 0,
        slq: a.slq.clone(),
        ..Default::default()
    };
    let settings = CurvatureSettings {
        spectrum: &spectrum,
        seed: spectrum_seed,
        points: a.slice.points,
        range: a.slice.range,
        surface: SurfaceOptions { threads: a.threads, progress: !ctx.quiet, ..Default::default() },
    };
    let c = curvature(m, &s.theta, &settings)?;
    let tag = format!("{}_seed{}", stem(name), s.seed);
    plot_density(
        &ctx.dir.file(&format!("spectra/{tag}"))?,
        &format!("{name} seed {}: Hessian (BCE) eigenvalue density", s.seed),
        &c.grid,
        &c.density,
        &c.top,
    )?;
    let heat = |surface: &Surface, what: &str, file: &str| -> Result<()> {
        let title = format!("{name} seed {}: {what} along the top-2 Hessian eigenvectors", s.seed);
        HeatMap::new(&title, surface.xs.clone(), surface.ys.clone(), surface.rows())
            .x_label("α (eigenvector 1)")
            .y_label("β (eigenvector 2)")
            .z_label(what)
            .contour_levels(16)
            .marker("solution", (0.0, 0.0))
            .save(&ctx.dir.file(&format!("slices/{file}"))?)?;
        Ok(())
    };
    heat(&c.loss, m.own.name(), &format!("{tag}_loss"))?;
    heat(&c.purity, "track purity", &format!("{tag}_purity"))?;
    ctx.dir.write_json(
        &format!("slices/{tag}.json"),
        &serde_json::json!({"loss": &c.loss, "purity": &c.purity, "eigenvalues": c.top}),
    )?;
    let centre = a.slice.points / 2;
    Ok(CurvatureRow {
        variant: name.to_string(),
        seed: s.seed,
        top: c.top.clone(),
        converged: c.converged,
        hvps: c.hvps,
        hvp: c.hvp_reason.clone(),
        slq_range: c.slq_range,
        loss_centre: c.loss.at(centre, centre),
        purity_centre: c.purity.at(centre, centre),
        loss_max_on_slice: max_of(&c.loss.loss),
        purity_min_on_slice: min_of(&c.purity.loss),
    })
}

/// The report and the summary.
fn write_report(ctx: &RunContext, p: &Params, st: &Study, solutions: &[Solution]) -> Result<()> {
    let mut report = Report::new("track-landscape: loss-landscape study of the tracking GNN");
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&format!(
        "Training: {} frames per phantom of {} primaries behind {:?} mm water, {} validation frames per phantom, {} epochs × grad_accum {}, seeds {:?}. \
         Analysis on {} independent frames behind the first phantom (BatchNorm in inference mode). Hamming loss = the PAT training loss \
         (mean over tracker edges + mean over calorimeter edges); TPR = pooled edge TPR of the per-layer assignment.",
        p.data.train_frames,
        p.data.primaries,
        p.data.thicknesses_mm,
        p.data.val_frames,
        p.spec.train.epochs,
        p.spec.train.grad_accum,
        p.seeds,
        p.analysis.frames
    ));
    if !p.models.is_empty() {
        let dirs: Vec<String> = p.models.iter().map(|d| format!("`{}`", d.display())).collect();
        report.paragraph(&format!(
            "Models: not trained here — the best checkpoints of the run(s) {} (their seed, seeds, setup, data and spec).",
            dirs.join(", ")
        ));
    }
    report.heading("Solutions");
    let header = ["variant", "seed", "best val purity %", "purity %", "Hamming", "BCE", "edge TPR %"];
    report.table(&header, &st.endpoint_rows);
    report_connectivity(&mut report, p, st);
    report_curvature(&mut report, st);
    let per_variant = report_instability(&mut report, p, st);
    lambda_plot(ctx, &mut report, &per_variant)?;
    report.heading("Timings (this machine)");
    report.code("json", &serde_json::to_string_pretty(&st.timings).unwrap_or_default());
    ctx.dir.write_summary(&serde_json::json!({
        "pairs": st.pairs, "curvature": st.curvatures, "per_variant": per_variant, "timings": st.timings,
        "training": solutions.iter().map(|m| serde_json::json!({"variant": st.labels[m.variant], "seed": m.seed, "best_val_purity": m.val_purity})).collect::<Vec<_>>(),
    }))?;
    report.write(&ctx.dir)?;
    Ok(())
}

fn report_connectivity(report: &mut Report, p: &Params, st: &Study) {
    let objectives = &p.analysis.bezier_objectives;
    report.heading("Mode connectivity (paper's table columns)");
    report.paragraph(&format!("Paper (5 seeds per configuration): {}.", paper::CONNECTIVITY));
    let a = &p.analysis;
    report.paragraph(&if a.bezier_training_frames > 0 {
        format!(
            "Bézier curves trained ({} Adam steps, {} sampled t per step) on {} training frames in minibatches of {} \
             frames per t, cycled in order, BatchNorm {}, and evaluated on the {} analysis frames.",
            a.bezier.steps,
            a.bezier.samples_per_step,
            a.bezier_training_frames,
            a.bezier_batch_frames,
            if a.bezier_train_mode {
                "in train mode (each frame normalised by its own batch statistics, as in training)"
            } else {
                "normalised by the running statistics interpolated along the curve"
            },
            a.frames
        )
    } else {
        format!(
            "Bézier curves trained ({} Adam steps, {} sampled t per step) on the {} analysis frames they are evaluated on \
             (full batch; `analysis.bezier_training_frames` = 0).",
            a.bezier.steps, a.bezier.samples_per_step, a.frames
        )
    });
    let recomputed = p.analysis.batch_norm_frames > 0;
    report.paragraph(&if recomputed {
        format!(
            "Columns without a suffix: BatchNorm running statistics interpolated with the weights along the path. \
             \"BN recomputed\": at every point the statistics are recomputed from train-mode passes over {} training \
             frames (Garipov et al. 2018), so an interpolated network is normalised by its own activations.",
            p.analysis.batch_norm_frames
        )
    } else {
        "BatchNorm running statistics interpolated with the weights along the paths (not recomputed: \
         `analysis.batch_norm_frames` = 0)."
            .to_string()
    });
    let mut rows = Vec::new();
    for pr in &st.pairs {
        let c = &pr.paths;
        let mut row = vec![
            pr.variant.clone(),
            format!("{}–{}", pr.seeds.0, pr.seeds.1),
            fmt_num(max_of(&c.linear_hamming.losses), 4),
            fmt_num(100.0 * min_of(&c.linear_tpr), 1),
        ];
        for o in objectives {
            match c.bezier.iter().find(|b| b.0 == *o) {
                Some((_, ph, pt)) => row.extend([fmt_num(max_of(&ph.losses), 4), fmt_num(100.0 * min_of(pt), 1)]),
                None => row.extend(["—".to_string(), "—".to_string()]),
            }
        }
        if recomputed {
            let cell = |p: Option<(&PathProfile, &Vec<f64>)>| match p {
                Some((ph, pt)) => [fmt_num(max_of(&ph.losses), 4), fmt_num(100.0 * min_of(pt), 1)],
                None => ["—".to_string(), "—".to_string()],
            };
            row.extend(cell(c.linear_hamming_bn.as_ref().zip(c.linear_tpr_bn.as_ref())));
            for o in objectives {
                let i = c.bezier.iter().position(|b| b.0 == *o);
                row.extend(cell(i.and_then(|i| c.bezier_bn.get(i)).map(|(h, t)| (h, t))));
            }
        }
        rows.push(row);
    }
    let mut headers =
        vec!["variant".to_string(), "seeds".into(), "linear max Hamming".into(), "linear min TPR %".into()];
    for o in objectives {
        headers.push(format!("Bézier ({o:?}) max Hamming"));
        headers.push(format!("Bézier ({o:?}) min TPR %"));
    }
    if recomputed {
        headers.push("linear max Hamming, BN recomputed".into());
        headers.push("linear min TPR %, BN recomputed".into());
        for o in objectives {
            headers.push(format!("Bézier ({o:?}) max Hamming, BN recomputed"));
            headers.push(format!("Bézier ({o:?}) min TPR %, BN recomputed"));
        }
    }
    report.table(&headers, &rows);
    for name in &st.labels {
        if st.pairs.iter().any(|pr| &pr.variant == name) {
            report.figure(
                &format!("{name}: Hamming loss along the paths (first pair)"),
                &format!("paths/{}_hamming.png", stem(name)),
            );
        }
    }
}

fn report_curvature(report: &mut Report, st: &Study) {
    report.heading("Curvature (Hessian of the BCE loss over the trainable parameters)");
    let rows: Vec<Vec<String>> = st
        .curvatures
        .iter()
        .map(|c| {
            vec![
                c.variant.clone(),
                c.seed.to_string(),
                c.top.iter().map(|v| fmt_num(*v, 3)).collect::<Vec<_>>().join(", "),
                format!("{}", c.converged),
                c.hvps.to_string(),
                format!("[{}, {}]", fmt_num(c.slq_range.0, 3), fmt_num(c.slq_range.1, 3)),
                fmt_num(c.loss_max_on_slice, 4),
                fmt_num(100.0 * c.purity_min_on_slice, 1),
            ]
        })
        .collect();
    let header = ["variant", "seed", "top eigenvalues", "Lanczos converged", "HVPs", "SLQ support"];
    let mut header = header.to_vec();
    header.extend(["max loss on slice", "min purity % on slice"]);
    report.table(&header, &rows);
    report
        .paragraph("Hessian-vector products (exact where an exact product passes its check, else finite differences):");
    let how: Vec<String> = st.curvatures.iter().map(|c| format!("{} seed {}: {}", c.variant, c.seed, c.hvp)).collect();
    report.bullets(&how);
    for c in &st.curvatures {
        let tag = format!("{}_seed{}", stem(&c.variant), c.seed);
        let who = format!("{} seed {}", c.variant, c.seed);
        report
            .figure(&format!("{who}: training loss on the top-2 eigenvector plane"), &format!("slices/{tag}_loss.png"));
        report.figure(
            &format!("{who}: track purity on the top-2 eigenvector plane"),
            &format!("slices/{tag}_purity.png"),
        );
        report.figure(&format!("{who}: spectral density"), &format!("spectra/{tag}.png"));
    }
}

/// The instability table; returns the per-variant means.
fn report_instability(report: &mut Report, p: &Params, st: &Study) -> Vec<serde_json::Value> {
    report.heading("Prediction instability between seeds");
    let mut rows = Vec::new();
    let mut per_variant = Vec::new();
    for (vi, name) in st.labels.iter().enumerate() {
        let prs: Vec<&PairResult> = st.pairs.iter().filter(|pr| &pr.variant == name).collect();
        if prs.is_empty() {
            continue;
        }
        let avg = |f: &dyn Fn(&PairResult) -> f64| mean(&prs.iter().map(|pr| f(pr)).collect::<Vec<_>>());
        let e = avg(&|pr| pr.instability.edges.min_max);
        let tr = avg(&|pr| pr.instability.tracks.min_max);
        let er = avg(&|pr| pr.instability.edges.raw);
        let trr = avg(&|pr| pr.instability.tracks.raw);
        let cka: Vec<f64> = (0..MODULES.len()).map(|k| avg(&|pr| pr.instability.cka[k])).collect();
        let barrier = avg(&|pr| max_of(&pr.paths.linear_hamming.losses));
        let spec = &st.specs[vi];
        let lam = if spec.method == Method::Pat { Some(spec.assign.lambda) } else { None };
        let mut row = vec![
            name.clone(),
            lam.map(|l| fmt_num(l, 0)).unwrap_or_else(|| "—".into()),
            fmt_num(er, 4),
            fmt_num(e, 3),
            fmt_num(trr, 4),
            fmt_num(tr, 3),
            fmt_num(barrier, 4),
        ];
        row.extend(cka.iter().map(|c| fmt_num(*c, 3)));
        rows.push(row);
        per_variant.push(serde_json::json!({
            "variant": name, "lambda": lam, "optimizer_override": p.variants[vi].optimizer.is_some(), "edges_raw": er, "edges_minmax": e,
            "tracks_raw": trr, "tracks_minmax": tr, "linear_max_hamming": barrier, "cka": cka,
        }));
    }
    let mut h = vec!["variant", "λ", "edge disagreement", "edge m_mm", "track disagreement", "track m_mm"];
    h.push("linear max Hamming");
    h.extend(MODULES.iter().copied());
    report.paragraph(
        "m_mm = (m − |q_a − q_b|) / (min(q_a + q_b, 1) − |q_a − q_b|): m = fraction of items on which the two seeds disagree, \
         q = error rates. Edges: the assignment of every hit-graph edge. Tracks: every true primary track, \"correct\" when a \
         kept reconstructed track consists of its hits only. Last columns: linear CKA of each module's activations \
         (mean over pairs).",
    );
    report.table(&h, &rows);
    per_variant
}

/// λ vs instability: PAT variants without optimiser override as lines, the rest as points or
/// dashed levels.
fn lambda_plot(ctx: &RunContext, report: &mut Report, per_variant: &[serde_json::Value]) -> Result<()> {
    let mut lp = LinePlot::new("Prediction instability vs λ")
        .x_label("λ (blackbox gradient)")
        .y_label("min-max normalised disagreement");
    let is_pat = |v: &serde_json::Value| v["lambda"].is_number() && v["optimizer_override"] == false;
    let lams: Vec<f64> =
        per_variant.iter().filter(|v| is_pat(v)).map(|v| v["lambda"].as_f64().unwrap_or(0.0)).collect();
    let (l0, l1) = (min_of(&lams), max_of(&lams));
    for (key, what) in [("edges_minmax", "edges"), ("tracks_minmax", "tracks")] {
        let mut pts: Vec<(f64, f64)> = per_variant
            .iter()
            .filter(|v| is_pat(v))
            .map(|v| (v["lambda"].as_f64().unwrap_or(0.0), v[key].as_f64().unwrap_or(f64::NAN)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        lp = lp.series(&format!("PAT, {what}"), pts, Mark::LinePoints);
        for v in per_variant.iter().filter(|v| !is_pat(v)) {
            let y = v[key].as_f64().unwrap_or(f64::NAN);
            let series = format!("{}, {what}", v["variant"].as_str().unwrap_or("?"));
            lp = match v["lambda"].as_f64() {
                Some(l) => lp.series(&series, vec![(l, y)], Mark::Points),
                None if l1 > l0 => lp.series(&series, vec![(l0, y), (l1, y)], Mark::Dashed),
                None => lp.series(&series, vec![(l0 - 1.0, y), (l0 + 1.0, y)], Mark::Dashed),
            };
        }
    }
    lp.save(&ctx.dir.file("lambda_vs_instability")?)?;
    report.figure(
        "Min–max normalised disagreement vs λ (PTT and other variants dashed / as points)",
        "lambda_vs_instability.png",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlab_core::experiment::{ExperimentConfig, from_value};

    fn root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn quick_and_full_configs_resolve_and_validate() {
        let file = root().join("configs/track-landscape.json");
        let cfg = ExperimentConfig::load(&file).unwrap();
        assert_eq!(cfg.entry, "track.landscape");
        assert!(crate::experiments().iter().any(|e| e.entry == cfg.entry));
        for quick in [false, true] {
            let v = cfg.resolve(quick, &[]).unwrap();
            let p: Params = from_value(&v, "track-landscape.json").unwrap();
            p.validate().unwrap();
            let lambdas: Vec<f64> = p
                .variants
                .iter()
                .filter(|v| v.method == Method::Pat && v.optimizer.is_none())
                .map(|v| p.spec_of(v).assign.lambda)
                .collect();
            assert_eq!(lambdas, vec![25.0, 50.0, 75.0], "quick = {quick}");
            assert!(p.variants.iter().any(|v| v.method == Method::Ptt));
        }
        // bad values are rejected with the field named
        let mut v = cfg.resolve(true, &[]).unwrap();
        v["seeds"] = serde_json::json!([1]);
        let p: Params = from_value(&v, "x").unwrap();
        assert!(p.validate().unwrap_err().to_string().contains("seeds"));
        let mut v = cfg.resolve(true, &[]).unwrap();
        v["analysis"]["top_k"] = serde_json::json!(1);
        let p: Params = from_value(&v, "x").unwrap();
        assert!(p.validate().unwrap_err().to_string().contains("top_k"));
        // curves trained on training frames: the minibatch must divide them, and needs them
        for (n, b, ok) in [(32, 4, true), (0, 0, true), (0, 4, false), (32, 0, false), (32, 5, false)] {
            let mut v = cfg.resolve(true, &[]).unwrap();
            v["analysis"]["bezier_training_frames"] = serde_json::json!(n);
            v["analysis"]["bezier_batch_frames"] = serde_json::json!(b);
            v["analysis"]["bezier_train_mode"] = serde_json::json!(false);
            let p: Params = from_value(&v, "x").unwrap();
            match p.validate() {
                Ok(()) => assert!(ok, "{n} / {b} accepted"),
                Err(e) => assert!(!ok && e.to_string().contains("bezier_batch_frames"), "{n} / {b}: {e}"),
            }
        }
        let mut v = cfg.resolve(true, &[]).unwrap();
        v["analysis"]["bezier_training_frames"] = serde_json::json!(0);
        v["analysis"]["bezier_batch_frames"] = serde_json::json!(0);
        v["analysis"]["bezier_train_mode"] = serde_json::json!(true);
        let p: Params = from_value(&v, "x").unwrap();
        assert!(p.validate().unwrap_err().to_string().contains("bezier_train_mode"));
        let mut v = cfg.resolve(true, &[]).unwrap();
        v["analysis"]["bezier_objectives"] = serde_json::json!([]);
        let p: Params = from_value(&v, "x").unwrap();
        assert!(p.validate().unwrap_err().to_string().contains("bezier_objectives"));
        // seeds the run derives from `seed` are refused when given
        for field in [["spec", "train"], ["analysis", "bezier"], ["analysis", "lanczos"], ["analysis", "slq"]] {
            let mut v = cfg.resolve(true, &[]).unwrap();
            v[field[0]][field[1]]["seed"] = serde_json::json!(7);
            let p: Params = from_value(&v, "x").unwrap();
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("{}.{}.seed", field[0], field[1])) && e.contains("derived"), "{e}");
        }
    }

    #[test]
    fn the_experiment_runs_end_to_end_at_a_tiny_scale() {
        let file = root().join("configs/track-landscape.json");
        let cfg = ExperimentConfig::load(&file).unwrap();
        let det = root().join("configs/detector-bergen-dtc.json");
        let sets = vec![
            format!("setup.detector=\"{}\"", det.display()),
            "seeds=[1,2]".into(),
            "data.primaries=8".into(),
            "data.train_frames=4".into(),
            "data.val_frames=1".into(),
            "spec.train.epochs=1".into(),
            "spec.train.grad_accum=2".into(),
            "spec.train.eval_every_steps=2".into(),
            "analysis.frames=1".into(),
            "analysis.path_points=3".into(),
            "analysis.bezier.steps=2".into(),
            "analysis.bezier_training_frames=4".into(),
            "analysis.bezier_batch_frames=2".into(),
            "analysis.lanczos.max_steps=4".into(),
            "analysis.slq.probes=1".into(),
            "analysis.slq.steps=3".into(),
            "analysis.slice.points=3".into(),
            "analysis.threads=1".into(),
        ];
        let mut params = cfg.resolve(true, &sets).unwrap();
        params["variants"] = serde_json::json!([{ "method": "pat", "lambda": 50.0 }, { "method": "ptt" }]);
        let tmp = tempfile::tempdir().unwrap();
        let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-landscape").unwrap();
        let mut ctx = RunContext::new("track-landscape", &file, &cfg.entry, params.clone(), true, true, dir).unwrap();
        run(&mut ctx).unwrap();
        // Killed right after its first finished pair and resumed in its folder: the pair is read
        // back (its file is not written again) and the results equal the uninterrupted run's.
        let part = tmp.path().join("part");
        let part_ctx = |existing: bool| {
            let dir = gradlab_core::run::RunDir::at(&part, existing).unwrap();
            RunContext::new("track-landscape", &file, &cfg.entry, params.clone(), true, true, dir).unwrap()
        };
        let mut c = part_ctx(false);
        c.stop_after_saves = Some(1);
        assert!(run(&mut c).unwrap_err().to_string().contains("interrupted"));
        let stage = std::fs::read_dir(part.join("stages")).unwrap().next().unwrap().unwrap().path();
        let before = std::fs::metadata(&stage).unwrap().modified().unwrap();
        let mut c = part_ctx(true);
        c.resume = true;
        run(&mut c).unwrap();
        assert_eq!(std::fs::metadata(&stage).unwrap().modified().unwrap(), before, "{}", stage.display());
        let results = |d: &std::path::Path| {
            let s: serde_json::Value = gradlab_core::io::read_json(&d.join("summary.json")).unwrap();
            assert!(s["pairs"].as_array().is_some_and(|a| !a.is_empty()) && s["curvature"].is_array());
            (s["pairs"].clone(), s["curvature"].clone(), s["per_variant"].clone())
        };
        assert_eq!(results(&part), results(ctx.dir.path()));
        // The same analysis of the first run's trained models, read from its folder: the same
        // results, without training.
        let mut from = params.clone();
        // As on the command line: the shipped config has the key, so `--set models=DIR` works.
        let mut via_set = params.clone();
        gradlab_core::experiment::apply_set(&mut via_set, &format!("models={}", ctx.dir.path().display())).unwrap();
        assert_eq!(via_set["models"], serde_json::json!(ctx.dir.path().display().to_string()));
        from["models"] = serde_json::json!(ctx.dir.path());
        from["spec"]["train"]["epochs"] = serde_json::json!(99); // replaced by the run's spec
        let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-landscape").unwrap();
        let mut c = RunContext::new("track-landscape", &file, &cfg.entry, from.clone(), true, true, dir).unwrap();
        run(&mut c).unwrap();
        assert_eq!(results(c.dir.path()), results(ctx.dir.path()));
        assert!(!c.dir.path().join("checkpoints").exists() && !c.dir.path().join("train.jsonl").exists());
        // Several folders: a variant × seed must come from one of them (the resumed copy trained
        // the same ones).
        let mut both = from.clone();
        both["models"] = serde_json::json!([ctx.dir.path(), &part]);
        let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-landscape").unwrap();
        let mut c = RunContext::new("track-landscape", &file, &cfg.entry, both, true, true, dir).unwrap();
        let e = run(&mut c).unwrap_err().to_string();
        assert!(e.contains("PAT λ=50 seed 1 is in both") && e.contains("do not overlap"), "{e}");
        // A checkpoint whose training did not finish is refused, naming where it stopped.
        let unfinished = tmp.path().join("unfinished");
        std::fs::create_dir_all(&unfinished).unwrap();
        for f in ["config.json", "checkpoints"] {
            let status =
                std::process::Command::new("cp").arg("-r").arg(part.join(f)).arg(&unfinished).status().unwrap();
            assert!(status.success());
        }
        let state_file = unfinished.join("checkpoints").join("PTT-seed1").join("train_state.json");
        let mut saved: serde_json::Value = gradlab_core::io::read_json(&state_file).unwrap();
        saved["state"]["step"] = serde_json::json!(0);
        saved["state"]["epoch"] = serde_json::json!(0);
        saved["state"]["config"]["max_steps"] = serde_json::json!(5);
        saved["state"]["config"]["epochs"] = serde_json::json!(3);
        std::fs::write(&state_file, serde_json::to_string(&saved).unwrap()).unwrap();
        let mut cut = from.clone();
        cut["models"] = serde_json::json!(&unfinished);
        let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-landscape").unwrap();
        let mut c = RunContext::new("track-landscape", &file, &cfg.entry, cut, true, true, dir).unwrap();
        let e = run(&mut c).unwrap_err().to_string();
        assert!(e.contains("PTT-seed1") && e.contains("training stopped at step 0 of 5 (epoch 0 of 3)"), "{e}");
        // A variant the run did not train is refused by name.
        from["variants"] = serde_json::json!([{ "method": "pat", "lambda": 25.0 }]);
        let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-landscape").unwrap();
        let mut c = RunContext::new("track-landscape", &file, &cfg.entry, from.clone(), true, true, dir).unwrap();
        let e = run(&mut c).unwrap_err().to_string();
        assert!(e.contains("no checkpoint for PAT λ=25 seed 1") && e.contains("PAT_lambda_50-seed1"), "{e}");
        // Trained elsewhere (a run of that variant alone, same seeds), it joins: each variant × seed
        // comes from the folder that has it, and the first run's variants give the same results.
        let mut extra = params.clone();
        extra["variants"] = serde_json::json!([{ "method": "pat", "lambda": 25.0 }]);
        let extra_dir = gradlab_core::run::RunDir::create(tmp.path(), "track-landscape").unwrap();
        let mut c = RunContext::new("track-landscape", &file, &cfg.entry, extra, true, true, extra_dir).unwrap();
        run(&mut c).unwrap();
        let mut joined = from.clone();
        joined["models"] = serde_json::json!([ctx.dir.path(), c.dir.path()]);
        joined["variants"] = serde_json::json!([{ "method": "pat", "lambda": 50.0 }, { "method": "ptt" }, { "method": "pat", "lambda": 25.0 }]);
        let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-landscape").unwrap();
        let mut j = RunContext::new("track-landscape", &file, &cfg.entry, joined, true, true, dir).unwrap();
        run(&mut j).unwrap();
        let s_joined: serde_json::Value = gradlab_core::io::read_json(&j.dir.path().join("summary.json")).unwrap();
        let s_first: serde_json::Value = gradlab_core::io::read_json(&ctx.dir.path().join("summary.json")).unwrap();
        let s_extra: serde_json::Value = gradlab_core::io::read_json(&c.dir.path().join("summary.json")).unwrap();
        let pairs = s_joined["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 3, "one pair per variant");
        assert_eq!(pairs[..2], s_first["pairs"].as_array().unwrap()[..]);
        assert_eq!(pairs[2], s_extra["pairs"][0]);
        let report = std::fs::read_to_string(ctx.dir.path().join("report.md")).unwrap();
        let s: serde_json::Value = gradlab_core::io::read_json(&ctx.dir.path().join("summary.json")).unwrap();
        let pair = &s["pairs"][0];
        assert_eq!(pair["linear_hamming_bn"]["losses"].as_array().map(|a| a.len()), Some(3), "{pair}");
        assert_eq!(pair["bezier_bn"].as_array().map(|a| a.len()), pair["bezier"].as_array().map(|a| a.len()));
        // Every curvature row says how its Hessian-vector products were computed.
        for c in s["curvature"].as_array().unwrap() {
            let how = c["hvp"].as_str().unwrap_or_default();
            assert!(how.starts_with("exact") || how.contains("exact refused"), "{how}");
        }
        for needle in [
            "linear max Hamming",
            "linear max Hamming, BN recomputed",
            "Bézier (Hamming) max Hamming",
            "edge m_mm",
            "PAT λ=50",
            "PTT",
            "lambda_vs_instability.png",
        ] {
            assert!(report.contains(needle), "report lacks {needle}");
        }
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(ctx.dir.path().join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["pairs"].as_array().unwrap().len(), 2);
        for pr in summary["pairs"].as_array().unwrap() {
            let e = pr["edges"]["min_max"].as_f64();
            assert!(e.is_none() || (-1e-12..=1.0 + 1e-12).contains(&e.unwrap()));
        }
    }

    /// Runs a config at its quick or full scale into `runs/` (for measurements; not a unit test):
    /// `TL_CONFIG=track-landscape TL_QUICK=1 cargo test --workspace --release experiments::landscape::tests::run_config -- --ignored`.
    #[test]
    #[ignore]
    fn run_config() {
        let name = std::env::var("TL_CONFIG").unwrap_or_else(|_| "track-landscape".into());
        let quick = std::env::var("TL_QUICK").is_ok_and(|v| v == "1");
        let file = root().join(format!("configs/{name}.json"));
        let cfg = ExperimentConfig::load(&file).unwrap();
        let det = root().join("configs/detector-bergen-dtc.json");
        let params = cfg.resolve(quick, &[format!("setup.detector=\"{}\"", det.display())]).unwrap();
        let dir = gradlab_core::run::RunDir::create(root().join("runs"), &name).unwrap();
        eprintln!("run dir {}", dir.path().display());
        let mut ctx = RunContext::new(&name, &file, &cfg.entry, params, quick, false, dir).unwrap();
        run(&mut ctx).unwrap();
    }
}
