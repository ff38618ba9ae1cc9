//! `landscape-demo`: train a small classifier with the core Trainer, record the trajectory, and
//! analyse the landscape around the best parameters (lowest validation loss, restored by the
//! Trainer): PCA plane with the projected trajectory, filter-normalised random plane, top-2
//! Hessian eigenvector plane, 1-D lines, extreme eigenvalues by Lanczos, trace by Hutchinson /
//! Hutch++, spectral density by SLQ ([`crate::spectrum`]).
//!
//! Data: `classes` interleaved noisy spirals in 2-D (a problem whose decision boundary needs the
//! hidden layers). Model: tanh MLP `2 → hidden… → classes`, cross-entropy, trained in f32; the
//! landscape is evaluated in f64 on a fixed subset of the training data.
//!
//! Stages: [`run`] = data → train → objective → planes (PCA, random, eigenvector) and spectrum →
//! lines → summary and report. One seed: every random stream (data, initialisation, shuffling,
//! evaluation subset, random directions, spectrum) is derived from `seed`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::observe::{JsonlObserver, ProgressObserver, TrajectoryObserver};
use gradlab_core::params::{Init, read_params_f64};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::rng::{derive_seed, normal_vec, permutation, stream_rng};
use gradlab_core::train::{TrainConfig, TrainReport, Trainer, Validation};
use serde::{Deserialize, Serialize};

use crate::candle::{CandleObjective, cross_entropy, mlp};
use crate::connectivity::{PathProfile, linear_path};
use crate::directions::{
    DirectionKind, DirectionSet, Normalization, Pca, VectorParams, cosine, orthogonalize, pca_directions,
    random_direction,
};
use crate::error::{Error, Result};
use crate::objective::{Objective, gradient};
use crate::output::{plot_contour, plot_density, plot_lines, plot_surface3d, save_surface, write_vtk};
use crate::spectrum::{Spectrum, SpectrumConfig, spectrum};
use crate::surface::{
    Axis, MAX_AXIS_POINTS, Surface, SurfaceOptions, TrajectoryPoint, evaluate_surface, project_trajectory,
};

/// Stream of `seed` for the spiral data.
const DATA_STREAM: u64 = 1;
/// Largest `grid`: three planes of grid × grid loss evaluations (2000² ≈ 4 M points each, hours
/// on a few cores for the paper-scale network).
const MAX_DEMO_GRID: usize = 2000;
/// Stream of `seed` for the weight initialisation.
const INIT_STREAM: u64 = 2;
/// Stream of `seed` for the Trainer's shuffling (`train.seed`).
const TRAIN_STREAM: u64 = 3;
/// Stream of `seed` for the fixed evaluation subset.
const SUBSET_STREAM: u64 = 4;
/// Stream of `seed` for the random plane's directions.
const RANDOM_PLANE_STREAM: u64 = 5;
/// Stream of `seed` for the Hessian spectrum (Lanczos, trace and SLQ probes).
const SPECTRUM_STREAM: u64 = 6;

/// The spiral data set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiralConfig {
    /// Number of classes (arms).
    pub classes: usize,
    /// Points per class.
    pub per_class: usize,
    /// Standard deviation of the Gaussian noise added to the points.
    pub noise: f64,
    /// Turns of each arm.
    pub turns: f64,
}

/// Parameters of `landscape-demo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoParams {
    /// The run's seed: data, initialisation, shuffling, evaluation subset, random directions and
    /// the spectrum's probes all come from streams of it.
    pub seed: u64,
    /// Training data.
    pub data: SpiralConfig,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Training (core Trainer); the parameters are recorded at every evaluation, and the best
    /// ones are restored at the end. `train.seed` must be 0 (derived from `seed`).
    pub train: TrainConfig,
    /// Training points in the fixed landscape batch (all if larger than the data).
    pub eval_samples: usize,
    /// Points per axis of the 2-D planes.
    pub grid: usize,
    /// Points of the 1-D lines.
    pub line_points: usize,
    /// The random plane spans `[−r, r]²` in units of the filter-normalised directions.
    pub random_range: f64,
    /// Relative margin around the projected trajectory for the PCA plane.
    pub pca_margin: f64,
    /// The eigenvector plane spans `±r` with `½ λ₁ r² = hessian_rise` (loss rise along the top
    /// eigenvector at the edge, in the quadratic approximation).
    pub hessian_rise: f64,
    /// Hessian spectrum: HVP method, Lanczos top-k (≥ 2: two eigenvectors span a plane) and
    /// bottom-k, trace products, SLQ, density grid. Its seeds must be 0 (derived from `seed`).
    pub spectrum: SpectrumConfig,
    /// Worker threads for surfaces (0 = all cores; see [`SurfaceOptions::threads`]).
    pub threads: usize,
    /// Colour contours by log10 loss.
    pub log_z: bool,
}

impl DemoParams {
    fn validate(&self) -> Result<()> {
        if self.data.classes < 2 || self.data.per_class < 2 {
            return Err(Error::invalid(
                "data",
                format!("{} classes × {}", self.data.classes, self.data.per_class),
                "≥ 2 classes with ≥ 2 points each",
            ));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(Error::invalid("hidden", format!("{:?}", self.hidden), "one or more widths ≥ 1"));
        }
        if !(3..=MAX_DEMO_GRID).contains(&self.grid) || !(3..=MAX_AXIS_POINTS).contains(&self.line_points) {
            return Err(Error::invalid(
                "grid / line_points",
                format!("{} / {}", self.grid, self.line_points),
                format!("3 ≤ grid ≤ {MAX_DEMO_GRID} (three grid × grid planes), 3 ≤ line_points ≤ {MAX_AXIS_POINTS}"),
            ));
        }
        if self.spectrum.top_k < 2 {
            return Err(Error::invalid("spectrum.top_k", self.spectrum.top_k, "≥ 2 (two eigenvectors span the plane)"));
        }
        if !(self.random_range > 0.0 && self.pca_margin >= 0.0 && self.hessian_rise > 0.0) {
            return Err(Error::invalid(
                "random_range / pca_margin / hessian_rise",
                format!("{} / {} / {}", self.random_range, self.pca_margin, self.hessian_rise),
                "> 0, ≥ 0, > 0",
            ));
        }
        if self.train.seed != 0 {
            return Err(Error::invalid("train.seed", self.train.seed, "0: the shuffling seed is derived from `seed`"));
        }
        self.spectrum.check().map_err(|e| match e {
            Error::Invalid { field, value, allowed } => {
                Error::Invalid { field: format!("spectrum.{field}"), value, allowed }
            }
            e => e,
        })
    }
}

/// `classes` noisy spirals: inputs `(n, 2)` f32 and labels `(n,)` u32.
pub fn spirals(cfg: &SpiralConfig, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = gradlab_core::rng::rng(seed);
    let mut x = Vec::with_capacity(cfg.classes * cfg.per_class * 2);
    let mut y = Vec::with_capacity(cfg.classes * cfg.per_class);
    for c in 0..cfg.classes {
        for i in 0..cfg.per_class {
            let r = (i as f64 + 0.5) / cfg.per_class as f64;
            let phi = 2.0 * std::f64::consts::PI * (cfg.turns * r + c as f64 / cfg.classes as f64);
            let noise = normal_vec(&mut rng, 2, 0.0, cfg.noise);
            x.push((2.0 * r * phi.cos() + noise[0]) as f32);
            x.push((2.0 * r * phi.sin() + noise[1]) as f32);
            y.push(c as u32);
        }
    }
    (x, y)
}

/// The training data as tensors, and the layer sizes.
struct Data {
    x: Tensor,
    y: Tensor,
    n: usize,
    sizes: Vec<usize>,
}

fn load_data(p: &DemoParams, dev: &Device) -> Result<Data> {
    let (xs, ys) = spirals(&p.data, derive_seed(p.seed, DATA_STREAM));
    let n = ys.len();
    let mut sizes = vec![2];
    sizes.extend(&p.hidden);
    sizes.push(p.data.classes);
    Ok(Data { x: Tensor::from_vec(xs, (n, 2), dev)?, y: Tensor::from_vec(ys, n, dev)?, n, sizes })
}

/// The trained model's parameters and how it got there.
struct Trained {
    /// The best parameters (restored by the Trainer): the centre θc of every slice.
    theta: Vec<f64>,
    /// Flat parameters at the start and at every evaluation.
    trajectory: Vec<Vec<f64>>,
    val_losses: Vec<f64>,
    report: TrainReport,
    seconds: f64,
}

fn train(ctx: &mut RunContext, p: &DemoParams, data: &Data, dev: &Device) -> Result<Trained> {
    let vm = VarMap::new();
    let model = mlp::build(&data.sizes, VarBuilder::from_varmap(&vm, DType::F32, dev))?;
    gradlab_core::params::init(&vm, derive_seed(p.seed, INIT_STREAM), Init::Glorot)?;
    let tc = TrainConfig { seed: derive_seed(p.seed, TRAIN_STREAM), ..p.train.clone() };
    let t0 = Instant::now();
    let mut traj = TrajectoryObserver::new(&vm);
    let report = {
        let metrics = ctx.dir.jsonl("metrics.jsonl")?;
        let mut trainer = Trainer::new(tc, &vm)?
            .observe(ProgressObserver::new("landscape-demo train", ctx.quiet))
            .observe(JsonlObserver::new(metrics, 50))
            .observe(&mut traj)
            .checkpoint_to(ctx.dir.subdir("checkpoints")?)
            .restore_best(true);
        trainer.fit::<Error, _, _>(
            data.n,
            |idx| {
                let idx = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), dev)?;
                Ok(cross_entropy(&model, &data.x.index_select(&idx, 0)?, &data.y.index_select(&idx, 0)?)?)
            },
            || Ok(Validation::loss(cross_entropy(&model, &data.x, &data.y)?.to_scalar::<f32>()? as f64)),
        )?
    };
    let trajectory = traj.params;
    let flat: Vec<f64> = trajectory.iter().flatten().copied().collect();
    let theta = read_params_f64(&vm)?;
    gradlab_core::io::write_npy_2d(&ctx.dir.file("trajectory.npy")?, trajectory.len(), theta.len(), &flat)?;
    Ok(Trained { theta, trajectory, val_losses: traj.val_losses, report, seconds: t0.elapsed().as_secs_f64() })
}

/// The f64 model on a fixed random subset of the training data, at θc; and the subset's size.
fn objective(p: &DemoParams, data: &Data, theta: &[f64], dev: &Device) -> Result<(CandleObjective<mlp::Mlp>, usize)> {
    let m = p.eval_samples.min(data.n);
    let order = permutation(&mut stream_rng(p.seed, SUBSET_STREAM), data.n);
    let sel: Vec<u32> = order[..m].iter().map(|&i| i as u32).collect();
    let sel = Tensor::from_vec(sel, m, dev)?;
    let xb = data.x.index_select(&sel, 0)?.to_dtype(DType::F64)?;
    let yb = data.y.index_select(&sel, 0)?;
    let sizes = data.sizes.clone();
    let obj = CandleObjective::new(move |vb| mlp::build(&sizes, vb), cross_entropy, vec![(xb, yb)], DType::F64, dev)?;
    obj.set_params(theta)?;
    Ok((obj, m))
}

/// A plane's surface with its directions, and the seconds it took.
struct Plane {
    surface: Surface,
    directions: [Vec<f64>; 2],
    seconds: f64,
}

/// Evaluates the plane `θc + a d₁ + b d₂` over `x × y`, every finished point logged to
/// `partial/<name>.jsonl` in the run folder: a run continued with `--resume` (which trains again
/// to the same θc, deterministic per seed) evaluates only the points that are missing.
fn evaluate_plane(
    ctx: &RunContext,
    name: &str,
    obj: &CandleObjective<mlp::Mlp>,
    theta: &[f64],
    directions: [Vec<f64>; 2],
    (x, y): (Axis, Axis),
    opts: &SurfaceOptions,
) -> Result<Plane> {
    let t = Instant::now();
    let opts =
        SurfaceOptions { resume_file: Some(ctx.dir.subdir("partial")?.join(format!("{name}.jsonl"))), ..opts.clone() };
    let surface = surface_on_ranks(ctx, obj, theta, &[&directions[0], &directions[1]], x, Some(y), &opts)?;
    Ok(Plane { surface, directions, seconds: t.elapsed().as_secs_f64() })
}

/// [`evaluate_surface`] split over the run's ranks ([`RunContext::comm`]; one process: the
/// same call). Every rank uses rank 0's centre and directions, rank 0 keeps the resume file, and
/// every rank gets the whole surface back, so the rest of the pipeline goes on alike everywhere
/// (what the other ranks compute besides the surfaces only goes to their scratch folders).
fn surface_on_ranks(
    ctx: &RunContext,
    obj: &CandleObjective<mlp::Mlp>,
    center: &[f64],
    dirs: &[&[f64]],
    x: Axis,
    y: Option<Axis>,
    opts: &SurfaceOptions,
) -> Result<Surface> {
    use gradlab_core::dist::broadcast_json;
    let comm = ctx.comm();
    if comm.size() == 1 {
        return evaluate_surface(obj, center, dirs, x, y, opts);
    }
    let root = comm.is_root();
    let c: Vec<f64> = broadcast_json(comm, 0, root.then(|| center.to_vec()))?;
    let ds: Vec<Vec<f64>> = broadcast_json(comm, 0, root.then(|| dirs.iter().map(|d| d.to_vec()).collect()))?;
    let ds: Vec<&[f64]> = ds.iter().map(Vec::as_slice).collect();
    // a round is a few points per worker thread: little lost to a kill, little time in gathers
    let threads = if opts.threads == 0 { rayon::current_num_threads() } else { opts.threads };
    let s = crate::surface::evaluate_surface_on(comm, obj, &c, &ds, x, y, opts, 4 * threads)?;
    // JSON has no NaN: the losses travel as options
    let loss: Option<Vec<Option<f64>>> =
        s.as_ref().map(|s| s.loss.iter().map(|v| v.is_finite().then_some(*v)).collect());
    let loss: Vec<Option<f64>> = broadcast_json(comm, 0, loss)?;
    let (xs, ys) = (x.values(), y.map_or(vec![0.0], |a| a.values()));
    Ok(Surface { xs, ys, loss: loss.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect() })
}

/// How a plane is drawn and saved.
struct PlaneOutput<'a> {
    stem: &'a str,
    title: &'a str,
    labels: (&'a str, &'a str),
    short_labels: (&'a str, &'a str),
    trajectory: Option<&'a [TrajectoryPoint]>,
    kind: DirectionKind,
}

/// Contour and 3-D figures, raw data, VTK grid and the direction set of a plane.
fn write_plane(ctx: &RunContext, p: &DemoParams, theta: &[f64], plane: &Plane, out: PlaneOutput) -> Result<()> {
    let s = &plane.surface;
    let traj2d: Option<Vec<(f64, f64)>> =
        out.trajectory.map(|tr| tr.iter().map(|t| (t.projection.coords[0], t.projection.coords[1])).collect());
    let traj3d: Option<Vec<(f64, f64, f64)>> = out
        .trajectory
        .map(|tr| tr.iter().map(|t| (t.projection.coords[0], t.projection.coords[1], t.loss_projected)).collect());
    let (stem, title) = (out.stem, out.title);
    plot_contour(&ctx.dir.file(&format!("{stem}_contour"))?, title, s, out.labels, traj2d.as_deref(), p.log_z)?;
    plot_surface3d(
        &ctx.dir.file(&format!("{stem}_surface3d"))?,
        &format!("{title} (3-D)"),
        s,
        out.short_labels,
        traj3d.as_deref(),
        p.log_z,
    )?;
    save_surface(&ctx.dir.subdir("raw")?, &format!("{stem}_surface"), s)?;
    write_vtk(&ctx.dir.file(&format!("{stem}_surface.vtk"))?, s, 1.0)?;
    DirectionSet::new(out.kind, theta.to_vec(), plane.directions.to_vec())?.save(&ctx.dir.subdir("directions")?, stem)
}

/// The PCA plane of the trajectory (relative to θc) and the trajectory projected onto it.
struct PcaPlane {
    pca: Pca,
    projected: Vec<TrajectoryPoint>,
    plane: Plane,
}

fn pca_plane(
    ctx: &RunContext,
    p: &DemoParams,
    obj: &mut CandleObjective<mlp::Mlp>,
    tr: &Trained,
    opts: &SurfaceOptions,
) -> Result<PcaPlane> {
    // θc is one of the recorded points: its row of differences is zero and adds nothing
    let pca = pca_directions(&tr.trajectory, &tr.theta, 2, false)?;
    let [d1, d2] = [pca.directions[0].clone(), pca.directions[1].clone()];
    let projected = project_trajectory(obj, &tr.theta, &[&d1, &d2], &tr.trajectory)?;
    let span = |k: usize| {
        let (lo, hi) = projected
            .iter()
            .fold((0.0f64, 0.0f64), |(lo, hi), t| (lo.min(t.projection.coords[k]), hi.max(t.projection.coords[k])));
        let w = (hi - lo).max(1e-3);
        Axis::new(lo - p.pca_margin * w, hi + p.pca_margin * w, p.grid)
    };
    let plane = evaluate_plane(ctx, "pca", obj, &tr.theta, [d1, d2], (span(0)?, span(1)?), opts)?;
    let labels = (
        format!("PC1 ({:.1} % of variance)", 100.0 * pca.explained_variance_ratio[0]),
        format!("PC2 ({:.1} % of variance)", 100.0 * pca.explained_variance_ratio[1]),
    );
    let out = PlaneOutput {
        stem: "pca",
        title: "Loss on the PCA plane with the training trajectory",
        labels: (&labels.0, &labels.1),
        short_labels: ("PC1", "PC2"),
        trajectory: Some(&projected),
        kind: DirectionKind::Pca { explained_variance_ratio: pca.explained_variance_ratio.clone() },
    };
    write_plane(ctx, p, &tr.theta, &plane, out)?;
    Ok(PcaPlane { pca, projected, plane })
}

/// A filter-normalised random plane; also returns the cosine of the two directions before
/// orthogonalisation.
fn random_plane(
    ctx: &RunContext,
    p: &DemoParams,
    obj: &CandleObjective<mlp::Mlp>,
    theta: &[f64],
    opts: &SurfaceOptions,
) -> Result<(Plane, f64)> {
    let seed = derive_seed(p.seed, RANDOM_PLANE_STREAM);
    let mut rng = gradlab_core::rng::rng(seed);
    let layout = obj.layout();
    let r1 = random_direction(theta, layout, Normalization::Filter, VectorParams::Zero, &mut rng)?;
    let mut r2 = random_direction(theta, layout, Normalization::Filter, VectorParams::Zero, &mut rng)?;
    let cos_before = cosine(&r1, &r2);
    orthogonalize(&r1, &mut r2)?;
    let ra = Axis::new(-p.random_range, p.random_range, p.grid)?;
    let plane = evaluate_plane(ctx, "random", obj, theta, [r1, r2], (ra, ra), opts)?;
    let out = PlaneOutput {
        stem: "random",
        title: "Loss on a filter-normalised random plane",
        labels: ("δ (filter-normalised)", "η (filter-normalised)"),
        short_labels: ("δ", "η"),
        trajectory: None,
        kind: DirectionKind::Random { normalization: Normalization::Filter, vectors: VectorParams::Zero, seed },
    };
    write_plane(ctx, p, theta, &plane, out)?;
    Ok((plane, cos_before))
}

/// The Hessian spectrum at θc, its density figure and raw data.
fn hessian_spectrum(
    ctx: &RunContext,
    p: &DemoParams,
    obj: &mut CandleObjective<mlp::Mlp>,
    theta: &[f64],
) -> Result<Spectrum> {
    let s = spectrum(obj, theta, &p.spectrum, derive_seed(p.seed, SPECTRUM_STREAM))?;
    plot_density(
        &ctx.dir.file("hessian_density")?,
        &format!("Hessian eigenvalue density (SLQ, {} probes × {} steps)", p.spectrum.slq.probes, p.spectrum.slq.steps),
        &s.grid,
        &s.density,
        &s.extreme_values(),
    )?;
    let raw = ctx.dir.subdir("raw")?;
    gradlab_core::io::write_npy_1d(&raw.join("density_grid.npy"), &s.grid)?;
    gradlab_core::io::write_npy_1d(&raw.join("density.npy"), &s.density)?;
    gradlab_core::io::write_json(&raw.join("slq_quadrature.json"), &s.quadrature)?;
    Ok(s)
}

/// The plane of the top-2 eigenvectors, spanning `±r` with `½ λ₁ r² = hessian_rise`; and the
/// quadratic-model check at its edge along v1: `(L(θc + a v1), L(θc) + a gᵀv1 + ½ λ1 a²)`.
fn eigen_plane(
    ctx: &RunContext,
    p: &DemoParams,
    obj: &mut CandleObjective<mlp::Mlp>,
    theta: &[f64],
    spec: &Spectrum,
    opts: &SurfaceOptions,
) -> Result<(Plane, (f64, f64))> {
    let top = &spec.top;
    let rr = (2.0 * p.hessian_rise / top.values[0].abs().max(1e-12)).sqrt();
    let ea = Axis::new(-rr, rr, p.grid)?;
    let plane =
        evaluate_plane(ctx, "hessian", obj, theta, [top.vectors[0].clone(), top.vectors[1].clone()], (ea, ea), opts)?;
    let labels =
        (format!("v1 (λ1 = {})", fmt_num(top.values[0], 4)), format!("v2 (λ2 = {})", fmt_num(top.values[1], 4)));
    let out = PlaneOutput {
        stem: "hessian",
        title: "Loss on the plane of the top-2 Hessian eigenvectors",
        labels: (&labels.0, &labels.1),
        short_labels: ("v1", "v2"),
        trajectory: None,
        kind: DirectionKind::Hessian { eigenvalues: top.values[..2].to_vec() },
    };
    write_plane(ctx, p, theta, &plane, out)?;
    let s = &plane.surface;
    let (i_edge, j) = (s.xs.len() - 1, s.ys.len() / 2);
    let center_loss = obj.loss(theta)?;
    let (_, g) = gradient(obj, theta)?;
    let gv = crate::vecops::dot(&g, &top.vectors[0]);
    let a = s.xs[i_edge];
    let check = (s.at(i_edge, j), center_loss + a * gv + 0.5 * top.values[0] * a * a);
    Ok((plane, check))
}

/// 1-D lines: from the initialisation to θc, and along a random direction and the top
/// eigenvector through θc.
struct Lines {
    interpolation: PathProfile,
    seconds: f64,
}

fn lines(
    ctx: &RunContext,
    p: &DemoParams,
    obj: &mut CandleObjective<mlp::Mlp>,
    tr: &Trained,
    directions: (&[f64], &[f64], f64),
    opts: &SurfaceOptions,
) -> Result<Lines> {
    let (r1, e1, rr) = directions;
    let theta = &tr.theta;
    let t = Instant::now();
    let interpolation = linear_path(obj, &tr.trajectory[0], theta, p.line_points)?;
    let line =
        |d: &[f64], r: f64| surface_on_ranks(ctx, &*obj, theta, &[d], Axis::new(-r, r, p.line_points)?, None, opts);
    let (random, v1) = (line(r1, p.random_range)?, line(e1, rr)?);
    let seconds = t.elapsed().as_secs_f64();
    plot_lines(
        &ctx.dir.file("line_interpolation")?,
        "Loss on the straight line from initialisation (t = 0) to the centre θc (t = 1)",
        "t",
        &[("(1 − t) θ0 + t θc", &interpolation.ts, &interpolation.losses)],
        true,
    )?;
    plot_lines(
        &ctx.dir.file("line_directions")?,
        "Loss along single directions through the centre",
        "step along the direction",
        &[("filter-normalised random δ", &random.xs, &random.loss), ("top Hessian eigenvector v1", &v1.xs, &v1.loss)],
        true,
    )?;
    let raw = ctx.dir.subdir("raw")?;
    save_surface(&raw, "line_random", &random)?;
    save_surface(&raw, "line_v1", &v1)?;
    Ok(Lines { interpolation, seconds })
}

/// Everything the summary and the report need.
struct Results {
    trained: Trained,
    dim: usize,
    eval_samples: usize,
    center_loss: f64,
    pca: PcaPlane,
    random: Plane,
    cos_before: f64,
    spectrum: Spectrum,
    eigen: Plane,
    quad_check: (f64, f64),
    lines: Lines,
    seconds_total: f64,
}

/// Runs the experiment: data → train → objective → planes and spectrum → lines → summary and
/// report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: DemoParams = ctx.params()?;
    p.validate()?;
    let t_start = Instant::now();
    let dev = Device::Cpu;
    let data = load_data(&p, &dev)?;
    let trained = train(ctx, &p, &data, &dev)?;
    let (mut obj, eval_samples) = objective(&p, &data, &trained.theta, &dev)?;
    let theta = trained.theta.clone();
    let center_loss = obj.loss(&theta)?;
    let opts = SurfaceOptions { threads: p.threads, progress: !ctx.quiet, ..Default::default() };
    let pca = pca_plane(ctx, &p, &mut obj, &trained, &opts)?;
    let (random, cos_before) = random_plane(ctx, &p, &obj, &theta, &opts)?;
    let spectrum = hessian_spectrum(ctx, &p, &mut obj, &theta)?;
    let (eigen, quad_check) = eigen_plane(ctx, &p, &mut obj, &theta, &spectrum, &opts)?;
    let rr = eigen.surface.xs[eigen.surface.xs.len() - 1];
    let dirs = (random.directions[0].as_slice(), eigen.directions[0].as_slice(), rr);
    let lines = lines(ctx, &p, &mut obj, &trained, dirs, &opts)?;
    let r = Results {
        trained,
        dim: obj.dim(),
        eval_samples,
        center_loss,
        pca,
        random,
        cos_before,
        spectrum,
        eigen,
        quad_check,
        lines,
        seconds_total: t_start.elapsed().as_secs_f64(),
    };
    write_summary(ctx, &p, &r)?;
    write_report(ctx, &p, &data.sizes, &r)?;
    Ok(())
}

fn write_summary(ctx: &mut RunContext, p: &DemoParams, r: &Results) -> Result<()> {
    let (s, tr, sp) = (&r.spectrum, &r.trained, &r.spectrum);
    let planes = [&r.pca.plane, &r.random, &r.eigen];
    let grid_pts = planes.iter().map(|pl| pl.surface.loss.len()).sum::<usize>() as f64;
    let surf_secs: f64 = planes.iter().map(|pl| pl.seconds).sum();
    let bottom = s.bottom.as_ref();
    let interp = &r.lines.interpolation;
    let summary = serde_json::json!({
        "parameters": r.dim,
        "train": { "seconds": tr.seconds, "steps": tr.report.steps, "epochs": tr.report.epochs_run,
                   "final_loss_f32": tr.val_losses.last(), "best_loss_f32": tr.report.best, "checkpoints": tr.trajectory.len() },
        "eval_samples": r.eval_samples,
        "center_loss": r.center_loss,
        "pca": { "explained_variance_ratio": r.pca.pca.explained_variance_ratio, "singular_values": r.pca.pca.singular_values,
                 "max_relative_residual": r.pca.projected.iter().map(|t| t.projection.relative_residual).fold(0.0, f64::max) },
        "random_plane": { "cosine_before_orthogonalisation": r.cos_before },
        "surfaces": { "points": grid_pts, "seconds": surf_secs, "points_per_second": grid_pts / surf_secs, "threads": p.threads },
        "hessian": {
            "hvp": p.spectrum.hvp,
            "top": s.top.values, "top_residuals": s.top.residuals, "top_converged": s.top.converged, "top_steps": s.top.steps,
            "bottom": bottom.map(|b| b.values.clone()), "bottom_residuals": bottom.map(|b| b.residuals.clone()),
            "bottom_converged": bottom.map(|b| b.converged),
            "lanczos_products": sp.lanczos_cost.products, "lanczos_seconds": sp.lanczos_cost.seconds,
            "trace_hutchinson": s.trace_hutchinson, "trace_hutch_pp": s.trace, "trace_slq": s.slq_trace,
            "trace_seconds": sp.trace_cost.seconds, "slq_seconds": sp.slq_cost.seconds, "slq_range": [s.range.0, s.range.1],
            "min_max_ratio": s.min_max_ratio(),
            "quadratic_model_edge": { "loss": r.quad_check.0, "quadratic_prediction": r.quad_check.1 },
        },
        "linear_interpolation": { "barrier": interp.barrier, "t_max": interp.t_max, "loss_start": interp.losses[0], "loss_end": interp.losses.last() },
        "line_seconds": r.lines.seconds,
        "seconds_total": r.seconds_total,
    });
    ctx.dir.write_summary(&summary)?;
    ctx.metrics()?.log(&serde_json::json!({"phase": "done", "summary": summary}))?;
    Ok(())
}

/// One row of the surface table.
fn surface_row(name: &str, pl: &Plane, center_loss: f64) -> Vec<String> {
    let s = &pl.surface;
    let (a, b, m) = s.min().unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let max = s.loss.iter().filter(|v| v.is_finite()).copied().fold(f64::NEG_INFINITY, f64::max);
    vec![
        name.into(),
        format!("{}×{}", s.xs.len(), s.ys.len()),
        fmt_num(center_loss, 4),
        format!("{} at ({}, {})", fmt_num(m, 4), fmt_num(a, 3), fmt_num(b, 3)),
        fmt_num(max, 4),
        format!("{:.2}", pl.seconds),
        format!("{:.0}", s.loss.len() as f64 / pl.seconds),
    ]
}

fn write_report(ctx: &RunContext, p: &DemoParams, sizes: &[usize], r: &Results) -> Result<()> {
    let tr = &r.trained;
    let mut rep = Report::new("landscape-demo: loss landscape and Hessian of a small classifier");
    rep.code("sh", &ctx.command());
    rep.paragraph(&format!(
        "{} interleaved spirals ({} points each, noise {}), tanh MLP {:?} ({} parameters), cross-entropy, trained with the core \
         Trainer for {} epochs ({} steps, {:.1} s); {} parameter snapshots (initialisation and every evaluation). The landscape is \
         evaluated in f64 on a fixed subset of {} training points around θc, the parameters with the lowest validation loss \
         (restored by the Trainer; loss {} on the subset).",
        p.data.classes, p.data.per_class, p.data.noise, sizes, r.dim, tr.report.epochs_run, tr.report.steps, tr.seconds,
        tr.trajectory.len(), r.eval_samples, fmt_num(r.center_loss, 5)
    ));
    rep.heading("Surfaces");
    let rows = vec![
        surface_row("PCA plane", &r.pca.plane, r.center_loss),
        surface_row("filter-normalised random plane", &r.random, r.center_loss),
        surface_row("top-2 Hessian eigenvector plane", &r.eigen, r.center_loss),
    ];
    rep.table(&["slice", "grid", "L(θc)", "min (at)", "max", "seconds", "points/s"], &rows);
    rep.figure("PCA plane: training trajectory projected by least squares (red), centre = θc", "pca_contour.png");
    rep.figure("PCA plane, 3-D surface with the trajectory", "pca_surface3d.png");
    rep.figure("Filter-normalised random plane (Li et al. 2018)", "random_contour.png");
    rep.figure("Filter-normalised random plane, 3-D", "random_surface3d.png");
    rep.figure("Plane of the top-2 Hessian eigenvectors", "hessian_contour.png");
    rep.figure("Top-2 eigenvector plane, 3-D", "hessian_surface3d.png");
    report_trajectory(&mut rep, &r.pca);
    report_hessian(&mut rep, p, r);
    let interp = &r.lines.interpolation;
    rep.heading("1-D lines");
    rep.paragraph(&format!(
        "Straight line from the initialisation to θc: barrier max_t L − max(L(0), L(1)) = {} at t = {:.2}.",
        fmt_num(interp.barrier, 4),
        interp.t_max
    ));
    rep.figure("Linear interpolation from initialisation to θc", "line_interpolation.png");
    rep.figure("Loss along a filter-normalised random direction and along the top eigenvector", "line_directions.png");
    rep.paragraph(
        "Raw data: `raw/*.npy` and `raw/*.json` (surfaces, density, quadrature), `directions/` (centre and directions, reloadable \
         with `DirectionSet::load`), `trajectory.npy`, and `*.vtk` (legacy VTK structured grids for ParaView).",
    );
    rep.write(&ctx.dir)?;
    Ok(())
}

fn report_trajectory(rep: &mut Report, pca: &PcaPlane) {
    let (evr, sv) = (&pca.pca.explained_variance_ratio, &pca.pca.singular_values);
    rep.heading("Trajectory on the PCA plane");
    rep.paragraph(&format!(
        "Explained variance of the two PCA directions: {:.1} % and {:.1} % (singular values {} and {}).",
        100.0 * evr[0],
        100.0 * evr[1],
        fmt_num(sv[0], 4),
        fmt_num(sv[1], 4)
    ));
    let proj = &pca.projected;
    let step = (proj.len() / 12).max(1);
    let rows: Vec<Vec<String>> = proj
        .iter()
        .enumerate()
        .filter(|(k, _)| k % step == 0 || *k + 1 == proj.len())
        .map(|(k, t)| {
            vec![
                k.to_string(),
                fmt_num(t.projection.coords[0], 4),
                fmt_num(t.projection.coords[1], 4),
                fmt_num(t.loss_real, 5),
                fmt_num(t.loss_projected, 5),
                format!("{:.3}", t.projection.relative_residual),
            ]
        })
        .collect();
    rep.table(
        &["snapshot", "PC1", "PC2", "loss at checkpoint", "loss at projection", "off-plane part ‖r‖/‖θ−θc‖"],
        &rows,
    );
}

fn report_hessian(rep: &mut Report, p: &DemoParams, r: &Results) {
    let s = &r.spectrum;
    rep.heading("Hessian at θc");
    let pairs = |e: &crate::lanczos::Eigenpairs, name: &dyn Fn(usize) -> String| -> Vec<Vec<String>> {
        e.values
            .iter()
            .zip(&e.residuals)
            .enumerate()
            .map(|(i, (v, res))| vec![name(i), fmt_num(*v, 6), format!("{res:.1e}")])
            .collect()
    };
    let mut rows = pairs(&s.top, &|i| format!("λ{} (largest)", i + 1));
    if let Some(b) = &s.bottom {
        rows.extend(pairs(b, &|i| format!("smallest #{}", i + 1)));
    }
    rep.table(&["eigenvalue", "value", "residual ‖Hv − λv‖"], &rows);
    let est = |t: Option<crate::trace::TraceEstimate>| {
        t.map_or("n/a".into(), |t| format!("{} ± {}", fmt_num(t.trace, 5), fmt_num(t.std_error, 2)))
    };
    rep.paragraph(&format!(
        "Lanczos with full reorthogonalisation: {} Hessian-vector products ({:?}) in {:.2} s; top-{} converged: {}. \
         Trace: Hutchinson {} and Hutch++ {} ({} products each), SLQ n·mean = {}. \
         Ratio λmin/λmax = {} (Li et al.'s convexity indicator). Quadratic model at the edge of the eigenvector plane along v1: \
         loss {} vs ½λ₁a² prediction {}.",
        s.lanczos_cost.products,
        p.spectrum.hvp,
        s.lanczos_cost.seconds,
        p.spectrum.top_k,
        s.top.converged,
        est(s.trace_hutchinson),
        est(s.trace),
        p.spectrum.trace_products,
        fmt_num(s.slq_trace, 5),
        s.min_max_ratio().map_or("n/a".into(), |x| fmt_num(x, 4)),
        fmt_num(r.quad_check.0, 5),
        fmt_num(r.quad_check.1, 5),
    ));
    rep.figure(
        "Hessian eigenvalue density by stochastic Lanczos quadrature; points: Lanczos extreme eigenvalues",
        "hessian_density.png",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlab_core::experiment::ExperimentConfig;
    use gradlab_core::run::RunDir;

    fn config_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/landscape-demo.json")
    }

    fn run_with(quick: bool, sets: &[String]) -> (tempfile::TempDir, serde_json::Value) {
        let path = config_path();
        let cfg = ExperimentConfig::load(&path).unwrap();
        let params = cfg.resolve(quick, sets).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path().join("run"), false).unwrap();
        let mut ctx = RunContext::new("landscape-demo", &path, &cfg.entry, params, quick, true, dir).unwrap();
        run(&mut ctx).unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run/summary.json")).unwrap()).unwrap();
        (tmp, summary)
    }

    /// A grid that would not fit in memory is refused before training, naming the field.
    #[test]
    fn an_oversized_grid_is_refused_before_training() {
        let path = config_path();
        let cfg = ExperimentConfig::load(&path).unwrap();
        let params = cfg.resolve(true, &["grid=1000000000".to_string()]).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path().join("run"), false).unwrap();
        let mut ctx = RunContext::new("landscape-demo", &path, &cfg.entry, params, true, true, dir).unwrap();
        let e = run(&mut ctx).unwrap_err().to_string();
        assert!(e.contains("grid") && e.contains("2000"), "{e}");
        assert!(!tmp.path().join("run/checkpoints").exists(), "refused before training");
    }

    /// A run whose surfaces were cut short (their logs truncated, as after a kill) and that is
    /// continued in its folder ends with exactly the surfaces of an uninterrupted run.
    #[test]
    fn a_run_resumed_after_a_kill_during_the_surfaces_equals_an_uninterrupted_run() {
        let sets: Vec<String> = ["data.per_class=40", "hidden=[8]", "train.epochs=3", "eval_samples=120", "grid=6"]
            .iter()
            .chain(&["line_points=5", "spectrum.top_k=2", "spectrum.bottom_k=0", "spectrum.lanczos.max_steps=30"])
            .chain(&[
                "spectrum.slq.probes=1",
                "spectrum.slq.steps=8",
                "spectrum.trace_products=0",
                "spectrum.hutchinson=false",
            ])
            .map(|s| s.to_string())
            .collect();
        let (full, _) = run_with(true, &sets);
        let (part, _) = run_with(true, &sets);
        // keep the header and the first 10 of 36 points of each plane, the last one torn
        for name in ["pca", "random", "hessian"] {
            let f = part.path().join(format!("run/partial/{name}.jsonl"));
            let text = std::fs::read_to_string(&f).unwrap();
            let mut kept: Vec<&str> = text.lines().take(11).collect();
            let torn = &kept.pop().unwrap()[..8];
            std::fs::write(&f, format!("{}\n{torn}", kept.join("\n"))).unwrap();
        }
        let path = config_path();
        let cfg = ExperimentConfig::load(&path).unwrap();
        let params = cfg.resolve(true, &sets).unwrap();
        let dir = RunDir::at(part.path().join("run"), true).unwrap();
        let mut ctx = RunContext::new("landscape-demo", &path, &cfg.entry, params, true, true, dir).unwrap();
        ctx.resume = true;
        run(&mut ctx).unwrap();
        for name in ["pca", "random", "hessian"] {
            // 9 whole points were kept, the other 27 evaluated once each, none twice
            let text = std::fs::read_to_string(part.path().join(format!("run/partial/{name}.jsonl"))).unwrap();
            let records = text.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count();
            assert_eq!(records, 1 + 36, "{name}: header and 36 points");
        }
        for name in ["pca_surface", "random_surface", "hessian_surface"] {
            let a = gradlab_core::io::read_npy_2d(&full.path().join(format!("run/raw/{name}.npy"))).unwrap();
            let b = gradlab_core::io::read_npy_2d(&part.path().join(format!("run/raw/{name}.npy"))).unwrap();
            assert_eq!(a, b, "{name}");
        }
    }

    /// A tiny end-to-end run (seconds): every output is produced and the numbers are consistent.
    #[test]
    fn tiny_demo_runs_end_to_end() {
        let sets: Vec<String> = [
            "data.per_class=40",
            "hidden=[8]",
            "train.epochs=4",
            "eval_samples=120",
            "grid=5",
            "line_points=5",
            "spectrum.top_k=2",
            "spectrum.bottom_k=1",
            "spectrum.lanczos.max_steps=40",
            "spectrum.slq.probes=1",
            "spectrum.slq.steps=10",
            "spectrum.trace_products=9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (tmp, s) = run_with(true, &sets);
        let run = tmp.path().join("run");
        for f in [
            "report.md",
            "pca_contour.png",
            "random_surface3d.svg",
            "hessian_density.png",
            "pca_surface.vtk",
            "trajectory.npy",
            "raw/pca_surface.npy",
            "directions/pca.npy",
        ] {
            assert!(run.join(f).exists(), "{f} missing");
        }
        let evr = s["pca"]["explained_variance_ratio"].as_array().unwrap();
        assert!(evr[0].as_f64().unwrap() >= evr[1].as_f64().unwrap());
        let top = s["hessian"]["top"].as_array().unwrap();
        assert!(top[0].as_f64().unwrap() >= top[1].as_f64().unwrap());
        let back = DirectionSet::load(&run.join("directions"), "hessian").unwrap();
        assert_eq!(back.directions.len(), 2);
    }

    /// Seeds other than the top-level one are derived: a config that sets one is refused.
    #[test]
    fn derived_seeds_are_refused_when_set() {
        let path = config_path();
        let cfg = ExperimentConfig::load(&path).unwrap();
        for field in ["train.seed", "spectrum.lanczos.seed", "spectrum.slq.seed"] {
            let mut params = cfg.resolve(true, &[]).unwrap();
            let mut v = &mut params;
            for key in field.split('.') {
                v = &mut v[key];
            }
            *v = serde_json::json!(3);
            let p: DemoParams = serde_json::from_value(params).unwrap();
            let e = p.validate().unwrap_err();
            assert!(matches!(&e, Error::Invalid { field: f, .. } if f == field), "{field}: {e}");
            assert!(e.to_string().contains("derived from"), "{e}");
        }
    }

    /// The quick scale as the xtask runs it (about a minute): `cargo test --release -p
    /// gradlab-landscape -- --ignored quick_demo`.
    fn run_and_keep(quick: bool, name: &str) {
        let (tmp, s) = run_with(quick, &[]);
        println!("{}", serde_json::to_string_pretty(&s).unwrap());
        let keep = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runs/landscape-demo").join(name);
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::create_dir_all(keep.parent().unwrap()).unwrap();
        std::fs::rename(tmp.path().join("run"), &keep).unwrap();
    }

    /// The quick scale as the xtask runs it (under a minute), kept in `runs/landscape-demo/quick-test`:
    /// `cargo test --release -p gradlab-landscape --lib -- --ignored quick_demo --nocapture`.
    #[test]
    #[ignore]
    fn quick_demo() {
        run_and_keep(true, "quick-test");
    }

    /// The paper scale (a few minutes), kept in `runs/landscape-demo/full-test`.
    #[test]
    #[ignore]
    fn full_demo() {
        run_and_keep(false, "full-test");
    }
}
