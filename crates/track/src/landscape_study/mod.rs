//! The loss-landscape study of Kortus et al. (TMLR 2025, "a loss landscape perspective"):
//! experiment `track-landscape` (`configs/track-landscape.json`).
//!
//! For every model variant (PAT with several λ, PTT, optionally another optimiser) several
//! seeds are trained with [`crate::training::train`]; then, on a fixed set of analysis frames:
//!
//! - **mode connectivity** for every pair of seeds: the Hamming loss and the edge TPR along
//!   the straight line and along quadratic Bézier curves trained between the pair (with the
//!   Hamming loss through the blackbox gradient, and with BCE) — max Hamming, min TPR
//!   ([`gradlab_landscape::connectivity`]);
//! - **curvature** of each solution: top Hessian eigenvalues by Lanczos and the spectral
//!   density by SLQ ([`gradlab_landscape::lanczos`], [`gradlab_landscape::slq`]) of the BCE
//!   loss over the trainable parameters (the Hamming loss is piecewise constant, its Hessian
//!   is zero almost everywhere), and 2-D slices of the training loss and of the track purity
//!   along the top-2 eigenvectors;
//! - **prediction instability** between seeds: min–max normalised disagreement of the edge
//!   assignments and of the reconstructed tracks ([`similarity`]), linear CKA of every
//!   module's activations ([`activations`]);
//! - **λ vs instability**, as a table and a plot.

pub mod activations;
pub mod error;
pub mod objective;
pub mod similarity;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use gradlab_core::experiment::{Experiment, ExperimentResult, RunContext};
use gradlab_core::observe::{JsonlObserver, Observer, ProgressObserver};
use gradlab_core::optim::OptimizerConfig;
use gradlab_core::params::read_params_f64;
use gradlab_core::plot::{HeatMap, LinePlot, Mark};
use gradlab_core::report::{Report, fmt_num};
use gradlab_landscape::connectivity::{Bezier, BezierConfig, PathProfile, linear_path, train_bezier};
use gradlab_landscape::hessian::{HessianOperator, HvpMethod};
use gradlab_landscape::lanczos::{LanczosConfig, Which, lanczos};
use gradlab_landscape::output::plot_density;
use gradlab_landscape::slq::{SlqConfig, slq};
use gradlab_landscape::surface::{Axis, Surface, SurfaceOptions, evaluate_surface};
use serde::{Deserialize, Serialize};

use self::activations::{MODULES, stacked_activations};
use self::error::StudyError;
use self::objective::{Measure, Subspace, TrackObjective};
use self::similarity::{Disagreement, binary_disagreement, correctness_disagreement, linear_cka};
use crate::experiments::SetupParams;
use crate::gnn_experiments::DataParams;
use crate::sim::Simulator;
use crate::tracks::{build_tracks, true_primary_tracks};
use crate::training::{FrameData, MAX_PATHS, Method, TrainSpec, prepare, train};

/// The experiments of this module.
pub fn experiments() -> Vec<Experiment> {
    vec![Experiment {
        entry: "track.landscape",
        description: "Loss-landscape study: linear vs Bézier mode connectivity between seeds (max Hamming, min TPR), \
                      Hessian spectrum and top-2 eigenvector slices (loss, purity), prediction instability \
                      (min-max disagreement, CKA) vs λ for PAT λ∈{25,50,75} and PTT",
        run,
    }]
}

/// The paper's connectivity ranges (section "Loss-landscape study"): linear interpolation
/// max Hamming ≈ 0.23–0.35 and min TPR 63–75 %, Bézier max Hamming ≈ 0.008–0.015, TPR ≥ 98 %.
pub const PAPER_CONNECTIVITY: &str = "linear: max Hamming ≈ 0.23–0.35, min TPR 63–75 %; \
                                       Bézier: max Hamming ≈ 0.008–0.015, min TPR ≥ 98 %";

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

/// Objectives the Bézier curves are trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveObjective {
    /// Hamming loss of the assignment, blackbox gradient with the variant's λ (PTT: the
    /// spec's λ).
    Hamming,
    /// Binary cross-entropy of the edge probabilities.
    Bce,
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
    /// At most this many seed pairs per variant (all when absent).
    #[serde(default)]
    pub max_pairs: Option<usize>,
    /// Bézier training (Adam on the control point).
    pub bezier: BezierConfig,
    /// Objectives the curves are trained with.
    pub bezier_objectives: Vec<CurveObjective>,
    /// Top Hessian eigenvalues reported (≥ 2; the top 2 span the slices).
    pub top_k: usize,
    /// Lanczos settings (paper: power iteration, 100 iterations, tol 1e-3).
    pub lanczos: LanczosConfig,
    /// Stochastic Lanczos quadrature for the spectral density.
    pub slq: SlqConfig,
    /// Finite-difference step of the Hessian-vector products (f32 model: 1e-2).
    pub hvp_step: f64,
    /// Eigenvector slices.
    pub slice: SliceParams,
    /// Worker threads for the slices (0: all cores).
    #[serde(default)]
    pub threads: usize,
}

/// Parameters of `track-landscape`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Simulation seed.
    pub seed: u64,
    /// Model seeds (initialisation and shuffling), ≥ 2.
    pub seeds: Vec<u64>,
    /// Simulation setup.
    #[serde(default)]
    pub setup: SetupParams,
    /// Training data.
    pub data: DataParams,
    /// Training specification shared by the variants.
    pub spec: TrainSpec,
    /// The variants.
    pub variants: Vec<Variant>,
    /// The analysis.
    pub analysis: AnalysisParams,
}

impl Params {
    /// Checks everything that can be checked before training.
    pub fn validate(&self) -> Result<(), StudyError> {
        let bad = |what, value: String, allowed| Err(StudyError::Invalid { what, value, allowed });
        let uniq: BTreeSet<u64> = self.seeds.iter().copied().collect();
        if self.seeds.len() < 2 || uniq.len() != self.seeds.len() {
            return bad("seeds", format!("{:?}", self.seeds), "at least two distinct seeds");
        }
        if self.variants.is_empty() {
            return bad("variants", "[]".into(), "at least one variant");
        }
        if self.data.train_frames == 0 || self.data.val_frames == 0 || self.analysis.frames == 0 {
            return bad(
                "data.train_frames / data.val_frames / analysis.frames",
                format!("{} / {} / {}", self.data.train_frames, self.data.val_frames, self.analysis.frames),
                "all ≥ 1",
            );
        }
        let a = &self.analysis;
        if a.path_points < 3 {
            return bad("analysis.path_points", a.path_points.to_string(), "≥ 3");
        }
        if a.top_k < 2 {
            return bad("analysis.top_k", a.top_k.to_string(), "≥ 2 (the top two span the slices)");
        }
        if a.slice.points < 3 || !(a.slice.range.is_finite() && a.slice.range > 0.0) {
            return bad(
                "analysis.slice",
                format!("points {} range {}", a.slice.points, a.slice.range),
                "points ≥ 3, finite range > 0",
            );
        }
        if !(a.hvp_step.is_finite() && a.hvp_step > 0.0) {
            return bad("analysis.hvp_step", a.hvp_step.to_string(), "a finite step > 0");
        }
        if a.max_pairs == Some(0) {
            return bad("analysis.max_pairs", "0".into(), "≥ 1, or absent for all pairs");
        }
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

/// For each true primary track of a frame, whether the selection reconstructs it: some kept
/// track (after the filter) whose hits all belong to that primary.
pub fn found_tracks(
    fd: &FrameData,
    selected: &[bool],
    filter: &crate::tracks::TrackFilter,
) -> crate::Result<Vec<bool>> {
    let g = &fd.graph;
    let truth = true_primary_tracks(g);
    let found: BTreeSet<u32> = match build_tracks(g, selected, MAX_PATHS) {
        Ok(t) => filter
            .apply(g, t)
            .iter()
            .filter(|t| {
                let id = g.track[t[0] as usize];
                t.iter().all(|&n| g.is_primary[n as usize] && g.track[n as usize] == id)
            })
            .map(|t| g.track[t[0] as usize])
            .collect(),
        Err(crate::Error::TooManyPaths { .. }) => BTreeSet::new(),
        Err(e) => return Err(e),
    };
    Ok(truth.iter().map(|t| found.contains(&g.track[t[0] as usize])).collect())
}

/// One trained model.
struct Trained {
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
    linear_hamming: PathProfile,
    linear_tpr: Vec<f64>,
    bezier: Vec<(CurveObjective, PathProfile, Vec<f64>)>,
    edges: Disagreement,
    tracks: Disagreement,
    cka: Vec<f64>,
}

/// Curvature of one solution.
#[derive(Debug, Clone, Serialize)]
struct Curvature {
    variant: String,
    seed: u64,
    top: Vec<f64>,
    converged: bool,
    hvps: usize,
    slq_range: (f64, f64),
    loss_centre: f64,
    purity_centre: f64,
    loss_max_on_slice: f64,
    purity_min_on_slice: f64,
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
fn stem(s: &str) -> String {
    s.replace('λ', "lambda").replace(['=', ' ', '(', ')'], "_").replace("__", "_").trim_end_matches('_').to_string()
}

/// Runs `track-landscape`.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.validate()?;
    let t0 = Instant::now();
    let det = p.setup.detector.load()?;
    let model_cfg = &p.spec.model;
    let tl = p.spec.tracker_layers;
    let sim = Simulator::new(&p.setup.sim_config(&det, p.data.thickness_mm, p.data.primaries))?;
    let train_frames =
        prepare(&sim.simulate_frames(p.seed, 0, p.data.train_frames as u64), &p.setup.graph, model_cfg, tl)?;
    let val_frames =
        prepare(&sim.simulate_frames(p.seed, 500_000, p.data.val_frames as u64), &p.setup.graph, model_cfg, tl)?;
    let frames = Arc::new(prepare(
        &sim.simulate_frames(p.seed, 2_000_000, p.analysis.frames as u64),
        &p.setup.graph,
        model_cfg,
        tl,
    )?);
    let mut timings = serde_json::Map::new();
    timings.insert("data_s".into(), t0.elapsed().as_secs_f64().into());

    // ---- training ------------------------------------------------------------------------
    let t = Instant::now();
    let specs: Vec<TrainSpec> = p.variants.iter().map(|v| p.spec_of(v)).collect();
    let labels: Vec<String> = p.variants.iter().zip(&specs).map(|(v, s)| label(v, s)).collect();
    let mut trained: Vec<Trained> = Vec::new();
    for (vi, spec) in specs.iter().enumerate() {
        for &seed in &p.seeds {
            let mut spec = spec.clone();
            spec.train.seed = seed;
            let tag = format!("{} seed {seed}", labels[vi]);
            let ck = ctx.dir.subdir(&format!("checkpoints/{}-seed{seed}", stem(&labels[vi])))?;
            let obs: Vec<Box<dyn Observer>> = vec![
                Box::new(JsonlObserver::new(ctx.dir.jsonl("train.jsonl")?, 10).with_tag(&tag)),
                Box::new(ProgressObserver::new(&tag, ctx.quiet)),
            ];
            let (model, rep) = train(&spec, seed, &train_frames, &val_frames, Some(&ck), false, obs)?;
            trained.push(Trained {
                variant: vi,
                seed,
                theta: read_params_f64(&model.vm)?,
                val_purity: rep.best.unwrap_or(f64::NAN),
            });
        }
    }
    timings.insert("training_s".into(), t.elapsed().as_secs_f64().into());

    // ---- per-variant analysis ------------------------------------------------------------------
    let a = &p.analysis;
    let mut pairs: Vec<PairResult> = Vec::new();
    let mut curvatures: Vec<Curvature> = Vec::new();
    let mut endpoint_rows = Vec::new();
    let mut t_paths = 0.0;
    let mut t_curv = 0.0;
    let mut t_inst = 0.0;
    let mut report = Report::new("track-landscape: loss-landscape study of the tracking GNN");
    for (vi, spec) in specs.iter().enumerate() {
        let name = &labels[vi];
        let models: Vec<&Trained> = trained.iter().filter(|m| m.variant == vi).collect();
        let hamming = Measure::Hamming { assign: spec.assign.clone() };
        let own = match spec.method {
            Method::Pat => hamming.clone(),
            Method::Ptt => Measure::Bce,
        };
        let mut ham = TrackObjective::new(model_cfg, frames.clone(), hamming.clone())?;
        let mut tpr = ham.with_measure(Measure::Tpr { assign: spec.assign.clone() })?;
        let mut bce = ham.with_measure(Measure::Bce)?;
        let mut purity = ham.with_measure(Measure::Purity { filter: spec.filter, assign: spec.assign.clone() })?;
        for m in &models {
            endpoint_rows.push(vec![
                name.clone(),
                m.seed.to_string(),
                fmt_num(m.val_purity * 100.0, 1),
                fmt_num(purity.value(&m.theta)? * 100.0, 1),
                fmt_num(ham.value(&m.theta)?, 4),
                fmt_num(bce.value(&m.theta)?, 4),
                fmt_num(tpr.value(&m.theta)? * 100.0, 1),
            ]);
        }

        // Pairs: connectivity and instability.
        let mut k = 0;
        'pairs: for i in 0..models.len() {
            for j in i + 1..models.len() {
                if a.max_pairs.is_some_and(|mp| k >= mp) {
                    break 'pairs;
                }
                k += 1;
                let (ma, mb) = (models[i], models[j]);
                let tp = Instant::now();
                let lin_h = linear_path(&mut ham, &ma.theta, &mb.theta, a.path_points)?;
                let lin_t = linear_path(&mut tpr, &ma.theta, &mb.theta, a.path_points)?.losses;
                let mut curves = Vec::new();
                for obj in &a.bezier_objectives {
                    let mut cfg = a.bezier.clone();
                    cfg.seed = a.bezier.seed ^ (ma.seed << 16) ^ mb.seed;
                    let init = Bezier::straight(&ma.theta, &mb.theta)?;
                    let (curve, _hist) = match obj {
                        CurveObjective::Hamming => train_bezier(&mut ham, init, &cfg)?,
                        CurveObjective::Bce => train_bezier(&mut bce, init, &cfg)?,
                    };
                    let ph = curve.profile(&mut ham, a.path_points)?;
                    let pt = curve.profile(&mut tpr, a.path_points)?.losses;
                    curves.push((*obj, ph, pt));
                }
                t_paths += tp.elapsed().as_secs_f64();

                let ti = Instant::now();
                let ya = ham.assignments(&ma.theta, &spec.assign)?;
                let yb = ham.assignments(&mb.theta, &spec.assign)?;
                let (mut fa, mut fb, mut ea, mut eb, mut truth) = (vec![], vec![], vec![], vec![], vec![]);
                for (f, fd) in frames.iter().enumerate() {
                    ea.extend_from_slice(&ya[f]);
                    eb.extend_from_slice(&yb[f]);
                    truth.extend_from_slice(&fd.graph.edge_truth);
                    fa.extend(found_tracks(fd, &ya[f], &spec.filter)?);
                    fb.extend(found_tracks(fd, &yb[f], &spec.filter)?);
                }
                let edges = binary_disagreement(&ea, &eb, &truth)?;
                let tracks = correctness_disagreement(&fa, &fb)?;
                let graphs: Vec<_> = frames.iter().map(|fd| &fd.input).collect();
                ham.value(&ma.theta)?;
                let act_a = stacked_activations(ham.model(), &graphs)?;
                ham.value(&mb.theta)?;
                let act_b = stacked_activations(ham.model(), &graphs)?;
                let cka = act_a
                    .iter()
                    .zip(&act_b)
                    .map(|(x, y)| linear_cka(&x.2, x.1, &y.2, y.1))
                    .collect::<Result<Vec<f64>, _>>()?;
                t_inst += ti.elapsed().as_secs_f64();
                ctx.metrics()?.log(&serde_json::json!({
                    "variant": name, "seeds": [ma.seed, mb.seed], "linear_max_hamming": max_of(&lin_h.losses),
                    "linear_min_tpr": min_of(&lin_t), "edges_minmax": edges.min_max, "tracks_minmax": tracks.min_max, "cka": cka,
                }))?;
                pairs.push(PairResult {
                    variant: name.clone(),
                    seeds: (ma.seed, mb.seed),
                    linear_hamming: lin_h,
                    linear_tpr: lin_t,
                    bezier: curves,
                    edges,
                    tracks,
                    cka,
                });
            }
        }
        // Path figure of the first pair.
        if let Some(pr) = pairs.iter().find(|pr| &pr.variant == name) {
            let pts = |v: &[f64]| pr.linear_hamming.ts.iter().zip(v).map(|(t, l)| (*t, *l)).collect::<Vec<_>>();
            let mut lp =
                LinePlot::new(&format!("{name}: Hamming loss between seeds {} and {}", pr.seeds.0, pr.seeds.1))
                    .x_label("t")
                    .y_label("Hamming loss")
                    .series("linear", pts(&pr.linear_hamming.losses), Mark::LinePoints);
            let mut tp = LinePlot::new(&format!("{name}: edge TPR between seeds {} and {}", pr.seeds.0, pr.seeds.1))
                .x_label("t")
                .y_label("edge TPR")
                .series("linear", pts(&pr.linear_tpr), Mark::LinePoints);
            for (o, ph, pt) in &pr.bezier {
                lp = lp.series(&format!("Bézier ({o:?})"), pts(&ph.losses), Mark::LinePoints);
                tp = tp.series(&format!("Bézier ({o:?})"), pts(pt), Mark::LinePoints);
            }
            lp.save(&ctx.dir.file(&format!("paths/{}_hamming", stem(name)))?)?;
            tp.save(&ctx.dir.file(&format!("paths/{}_tpr", stem(name)))?)?;
        }

        // Curvature and slices.
        let tc = Instant::now();
        for m in models.iter().take(a.slice.seeds) {
            let index: Vec<usize> = (0..m.theta.len()).filter(|&i| !bce.buffers()[i]).collect();
            let mut sub = Subspace::new(bce.with_measure(Measure::Bce)?, m.theta.clone(), index)?;
            let phi = sub.restrict(&m.theta);
            let method = HvpMethod::FiniteDifference { h: a.hvp_step };
            let (eig, hvps, quad) = {
                let mut op = HessianOperator::new(&mut sub, &phi, method)?;
                let eig = lanczos(&mut op, a.top_k, Which::Largest, &a.lanczos)?;
                let quad = slq(&mut op, &a.slq)?;
                (eig, op.products, quad)
            };
            let (lo, hi) = quad.range();
            let width = (hi - lo).max(1e-12);
            let grid: Vec<f64> = (0..=400).map(|i| lo - 0.05 * width + 1.1 * width * i as f64 / 400.0).collect();
            let density = quad.density(&grid, 0.01 * width)?;
            let tag = format!("{}_seed{}", stem(name), m.seed);
            plot_density(
                &ctx.dir.file(&format!("spectra/{tag}"))?,
                &format!("{name} seed {}: Hessian (BCE) eigenvalue density", m.seed),
                &grid,
                &density,
                &eig.values,
            )?;
            let d1 = sub.embed_direction(&eig.vectors[0]);
            let d2 = sub.embed_direction(&eig.vectors[1]);
            let ax = Axis::new(-a.slice.range, a.slice.range, a.slice.points)?;
            let opts = SurfaceOptions { threads: a.threads, progress: !ctx.quiet, ..Default::default() };
            let own_obj = ham.with_measure(own.clone())?;
            let s_loss = evaluate_surface(&own_obj, &m.theta, &[&d1, &d2], ax, Some(ax), &opts)?;
            let s_pur = evaluate_surface(&purity, &m.theta, &[&d1, &d2], ax, Some(ax), &opts)?;
            let c = a.slice.points / 2;
            let heat = |s: &Surface, what: &str, file: &str| -> ExperimentResult {
                HeatMap::new(
                    &format!("{name} seed {}: {what} along the top-2 Hessian eigenvectors", m.seed),
                    s.xs.clone(),
                    s.ys.clone(),
                    s.rows(),
                )
                .x_label("α (eigenvector 1)")
                .y_label("β (eigenvector 2)")
                .z_label(what)
                .contour_levels(16)
                .marker("solution", (0.0, 0.0))
                .save(&ctx.dir.file(&format!("slices/{file}"))?)?;
                Ok(())
            };
            heat(&s_loss, own.name(), &format!("{tag}_loss"))?;
            heat(&s_pur, "track purity", &format!("{tag}_purity"))?;
            ctx.dir.write_json(
                &format!("slices/{tag}.json"),
                &serde_json::json!({"loss": &s_loss, "purity": &s_pur, "eigenvalues": eig.values}),
            )?;
            curvatures.push(Curvature {
                variant: name.clone(),
                seed: m.seed,
                top: eig.values.clone(),
                converged: eig.converged,
                hvps,
                slq_range: (lo, hi),
                loss_centre: s_loss.at(c, c),
                purity_centre: s_pur.at(c, c),
                loss_max_on_slice: max_of(&s_loss.loss),
                purity_min_on_slice: min_of(&s_pur.loss),
            });
        }
        t_curv += tc.elapsed().as_secs_f64();
    }
    timings.insert("connectivity_s".into(), t_paths.into());
    timings.insert("instability_s".into(), t_inst.into());
    timings.insert("curvature_and_slices_s".into(), t_curv.into());
    timings.insert("total_s".into(), t0.elapsed().as_secs_f64().into());

    // ---- report ---------------------------------------------------------------------------------
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&format!(
        "Training: {} frames of {} primaries behind {} mm water, {} validation frames, {} epochs × grad_accum {}, seeds {:?}. \
         Analysis on {} independent frames (BatchNorm in inference mode). Hamming loss = the PAT training loss \
         (mean over tracker edges + mean over calorimeter edges); TPR = pooled edge TPR of the per-layer assignment.",
        p.data.train_frames,
        p.data.primaries,
        p.data.thickness_mm,
        p.data.val_frames,
        p.spec.train.epochs,
        p.spec.train.grad_accum,
        p.seeds,
        p.analysis.frames
    ));
    report.heading("Solutions");
    report.table(&["variant", "seed", "best val purity %", "purity %", "Hamming", "BCE", "edge TPR %"], &endpoint_rows);

    report.heading("Mode connectivity (paper's table columns)");
    report.paragraph(&format!("Paper (5 seeds per configuration): {PAPER_CONNECTIVITY}."));
    let mut conn_rows = Vec::new();
    for pr in &pairs {
        let mut row = vec![
            pr.variant.clone(),
            format!("{}–{}", pr.seeds.0, pr.seeds.1),
            fmt_num(max_of(&pr.linear_hamming.losses), 4),
            fmt_num(100.0 * min_of(&pr.linear_tpr), 1),
        ];
        for o in &a.bezier_objectives {
            match pr.bezier.iter().find(|b| b.0 == *o) {
                Some((_, ph, pt)) => {
                    row.push(fmt_num(max_of(&ph.losses), 4));
                    row.push(fmt_num(100.0 * min_of(pt), 1));
                }
                None => row.extend(["—".to_string(), "—".to_string()]),
            }
        }
        conn_rows.push(row);
    }
    let mut headers =
        vec!["variant".to_string(), "seeds".into(), "linear max Hamming".into(), "linear min TPR %".into()];
    for o in &a.bezier_objectives {
        headers.push(format!("Bézier ({o:?}) max Hamming"));
        headers.push(format!("Bézier ({o:?}) min TPR %"));
    }
    report.table(&headers, &conn_rows);
    for name in &labels {
        if pairs.iter().any(|pr| &pr.variant == name) {
            report.figure(
                &format!("{name}: Hamming loss along the paths (first pair)"),
                &format!("paths/{}_hamming.png", stem(name)),
            );
        }
    }

    report.heading("Curvature (Hessian of the BCE loss over the trainable parameters)");
    let mut curv_rows = Vec::new();
    for c in &curvatures {
        curv_rows.push(vec![
            c.variant.clone(),
            c.seed.to_string(),
            c.top.iter().map(|v| fmt_num(*v, 3)).collect::<Vec<_>>().join(", "),
            format!("{}", c.converged),
            c.hvps.to_string(),
            format!("[{}, {}]", fmt_num(c.slq_range.0, 3), fmt_num(c.slq_range.1, 3)),
            fmt_num(c.loss_max_on_slice, 4),
            fmt_num(100.0 * c.purity_min_on_slice, 1),
        ]);
    }
    report.table(
        &[
            "variant",
            "seed",
            "top eigenvalues",
            "Lanczos converged",
            "HVPs",
            "SLQ support",
            "max loss on slice",
            "min purity % on slice",
        ],
        &curv_rows,
    );
    for c in &curvatures {
        let tag = format!("{}_seed{}", stem(&c.variant), c.seed);
        report.figure(
            &format!("{} seed {}: training loss on the top-2 eigenvector plane", c.variant, c.seed),
            &format!("slices/{tag}_loss.png"),
        );
        report.figure(
            &format!("{} seed {}: track purity on the top-2 eigenvector plane", c.variant, c.seed),
            &format!("slices/{tag}_purity.png"),
        );
        report.figure(&format!("{} seed {}: spectral density", c.variant, c.seed), &format!("spectra/{tag}.png"));
    }

    report.heading("Prediction instability between seeds");
    let mut inst_rows = Vec::new();
    let mut per_variant = Vec::new();
    for (vi, name) in labels.iter().enumerate() {
        let prs: Vec<&PairResult> = pairs.iter().filter(|pr| &pr.variant == name).collect();
        if prs.is_empty() {
            continue;
        }
        let e = mean(&prs.iter().map(|pr| pr.edges.min_max).collect::<Vec<_>>());
        let tr = mean(&prs.iter().map(|pr| pr.tracks.min_max).collect::<Vec<_>>());
        let er = mean(&prs.iter().map(|pr| pr.edges.raw).collect::<Vec<_>>());
        let trr = mean(&prs.iter().map(|pr| pr.tracks.raw).collect::<Vec<_>>());
        let cka: Vec<f64> =
            (0..MODULES.len()).map(|k| mean(&prs.iter().map(|pr| pr.cka[k]).collect::<Vec<_>>())).collect();
        let barrier = mean(&prs.iter().map(|pr| max_of(&pr.linear_hamming.losses)).collect::<Vec<_>>());
        let lam = if specs[vi].method == Method::Pat { Some(specs[vi].assign.lambda) } else { None };
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
        inst_rows.push(row);
        per_variant.push(serde_json::json!({
            "variant": name, "lambda": lam, "optimizer_override": p.variants[vi].optimizer.is_some(), "edges_raw": er, "edges_minmax": e,
            "tracks_raw": trr, "tracks_minmax": tr, "linear_max_hamming": barrier, "cka": cka,
        }));
    }
    let mut h = vec![
        "variant",
        "λ",
        "edge disagreement",
        "edge m_mm",
        "track disagreement",
        "track m_mm",
        "linear max Hamming",
    ];
    h.extend(MODULES.iter().copied());
    report.paragraph(
        "m_mm = (m − |q_a − q_b|) / (min(q_a + q_b, 1) − |q_a − q_b|): m = fraction of items on which the two seeds disagree, \
         q = error rates. Edges: the assignment of every hit-graph edge. Tracks: every true primary track, \"correct\" when a \
         kept reconstructed track consists of its hits only. Last columns: linear CKA of each module's activations \
         (mean over pairs).",
    );
    report.table(&h, &inst_rows);

    // λ vs instability plot: PAT variants without optimiser override as lines, the rest as points.
    let mut lp = LinePlot::new("Prediction instability vs λ")
        .x_label("λ (blackbox gradient)")
        .y_label("min-max normalised disagreement");
    let pat: Vec<&serde_json::Value> =
        per_variant.iter().filter(|v| v["lambda"].is_number() && v["optimizer_override"] == false).collect();
    let lams: Vec<f64> = pat.iter().map(|v| v["lambda"].as_f64().unwrap_or(0.0)).collect();
    let (l0, l1) = (min_of(&lams), max_of(&lams));
    for (key, what) in [("edges_minmax", "edges"), ("tracks_minmax", "tracks")] {
        let mut pts: Vec<(f64, f64)> =
            pat.iter().map(|v| (v["lambda"].as_f64().unwrap_or(0.0), v[key].as_f64().unwrap_or(f64::NAN))).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        lp = lp.series(&format!("PAT, {what}"), pts, Mark::LinePoints);
        for v in per_variant.iter().filter(|v| !pat.iter().any(|q| std::ptr::eq(*q, *v))) {
            let y = v[key].as_f64().unwrap_or(f64::NAN);
            let name = v["variant"].as_str().unwrap_or("?");
            match v["lambda"].as_f64() {
                Some(l) => lp = lp.series(&format!("{name}, {what}"), vec![(l, y)], Mark::Points),
                None if l1 > l0 => lp = lp.series(&format!("{name}, {what}"), vec![(l0, y), (l1, y)], Mark::Dashed),
                None => lp = lp.series(&format!("{name}, {what}"), vec![(l0 - 1.0, y), (l0 + 1.0, y)], Mark::Dashed),
            }
        }
    }
    lp.save(&ctx.dir.file("lambda_vs_instability")?)?;
    report.figure(
        "Min–max normalised disagreement vs λ (PTT and other variants dashed / as points)",
        "lambda_vs_instability.png",
    );
    report.heading("Timings (this machine)");
    report.code("json", &serde_json::to_string_pretty(&timings)?);
    ctx.dir.write_summary(&serde_json::json!({
        "pairs": pairs, "curvature": curvatures, "per_variant": per_variant, "timings": timings,
        "training": trained.iter().map(|m| serde_json::json!({"variant": labels[m.variant], "seed": m.seed, "best_val_purity": m.val_purity})).collect::<Vec<_>>(),
    }))?;
    report.write(&ctx.dir)?;
    Ok(())
}

#[cfg(test)]
mod tests;
