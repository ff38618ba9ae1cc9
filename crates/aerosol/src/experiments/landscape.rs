//! `m7-landscape`: the loss landscape of the plain and the completion-head emulator.
//!
//! Each variant is trained with the core trainer while a
//! [`gradlab_core::observe::TrajectoryObserver`] records its flat parameters at the start and at
//! every validation; then, on a fixed subset of the training rows (the training loss of the
//! variant, head included):
//! - the plane of the first two principal components of the trajectory (relative to the final
//!   point, [`gradlab_landscape::directions::pca_directions`]) with the projected trajectory,
//!   the loss at each checkpoint and at its projection;
//! - the top Hessian eigenvalues (Lanczos) and the spectral density (SLQ) over all parameters,
//!   and the Hutch++ trace — to see whether the hard mass constraint changes the curvature.
//!
//! One seed per run: `seed` draws the data; the initialisation, the shuffling and the spectrum's
//! Lanczos start, SLQ and Hutch++ probes are derived from it (a non-zero `train.seed`,
//! `lanczos.seed` or `slq.seed` is refused).

use crate::emulator::data::{DataParams, Splits, load_data};
use crate::emulator::train::{derive_seeds, train_emulator};
use crate::emulator::variant::variant_configs;
use crate::emulator::{Emulator, EmulatorConfig, EmulatorData, Variant};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use gradlab_core::data::array_to_tensor;
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::observe::TrajectoryObserver;
use gradlab_core::params::read_params_f64;
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::rng::derive_seed;
use gradlab_core::train::TrainConfig;
use gradlab_landscape::directions::{Pca, pca_directions};
use gradlab_landscape::hessian::HvpMethod;
use gradlab_landscape::lanczos::LanczosConfig;
use gradlab_landscape::output::{plot_contour, plot_density, plot_surface3d, save_surface};
use gradlab_landscape::slq::SlqConfig;
use gradlab_landscape::surface::{Axis, SurfaceOptions, TrajectoryPoint, evaluate_surface, project_trajectory};
use gradlab_landscape::{Objective, Spectrum, SpectrumConfig, VarMapObjective, spectrum};
use ndarray::{Array2, Axis as NdAxis};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Stream of the run's seed for the spectrum (Lanczos start, SLQ and Hutch++ probes).
const SPECTRUM_STREAM: u64 = 0x5BEC;

/// One fixed batch: inputs, encoded targets, sign labels (log+sign output), weight.
type Batch = (Tensor, Tensor, Option<Tensor>, f64);

/// The emulator's training loss (head included) on fixed rows as a landscape objective.
pub type EmulatorObjective = VarMapObjective<Emulator>;

/// An emulator built like [`Emulator::new`]`(cfg, dt, train, seed)` (normalisers fitted on
/// `train`) whose loss is evaluated on `rows` of `train`, in batches of `batch` rows weighted by
/// their share of the rows.
pub fn emulator_objective(
    cfg: EmulatorConfig,
    dt: f64,
    train: Arc<EmulatorData>,
    seed: u64,
    rows: &[usize],
    batch: usize,
) -> Result<EmulatorObjective> {
    if rows.is_empty() || batch == 0 {
        return Err(Error::invalid("landscape rows / batch", format!("{} / {batch}", rows.len()), "both ≥ 1"));
    }
    let dev = Device::Cpu;
    let em = Emulator::new(cfg.clone(), dt, &train, seed, &dev)?;
    let sub = train.rows(rows);
    let (target, labels) = em.encode_targets(&sub.t.view())?;
    let mut batches: Vec<Batch> = Vec::new();
    let n = rows.len();
    for s in (0..n).step_by(batch) {
        let e = (s + batch).min(n);
        let idx: Vec<usize> = (s..e).collect();
        let t = |a: &Array2<f32>| array_to_tensor(&a.select(NdAxis(0), &idx).view(), &dev);
        let l = labels.as_ref().map(t).transpose()?;
        batches.push((t(&sub.x)?, t(&target)?, l, (e - s) as f64 / n as f64));
    }
    let weights = batches.iter().map(|b| b.3).collect();
    let build = move || -> Result<(Emulator, VarMap)> {
        let em = Emulator::new(cfg.clone(), dt, &train, seed, &Device::Cpu)?;
        let vm = em.varmap().clone();
        Ok((em, vm))
    };
    let loss = move |em: &Emulator, i: usize| -> Result<Tensor> {
        let (x, t, l, _) = &batches[i];
        em.loss(x, t, l.as_ref())
    };
    Ok(VarMapObjective::new(build, loss, weights)?)
}

/// Parameters of `m7-landscape`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandscapeParams {
    /// The run's one seed (data; every other seed is derived from it).
    pub seed: u64,
    /// Data (as `m7-emulator`).
    pub data: DataParams,
    /// The base emulator of the variants.
    pub emulator: EmulatorConfig,
    /// Variants (plain and completion head): each a name and the [`EmulatorConfig`] fields it
    /// changes.
    pub variants: Vec<Variant>,
    /// Trainer settings (validate at least a few times: the trajectory is recorded there;
    /// `train.seed` is derived from `seed`).
    pub train: TrainConfig,
    /// Training rows in the fixed landscape batches.
    pub eval_rows: usize,
    /// Points per axis of the PCA plane.
    pub grid: usize,
    /// Relative margin around the projected trajectory.
    pub margin: f64,
    /// Top eigenvalues.
    pub top_k: usize,
    /// Lanczos (`lanczos.seed` must be 0: derived from `seed`).
    pub lanczos: LanczosConfig,
    /// SLQ (`slq.seed` must be 0: derived from `seed`).
    pub slq: SlqConfig,
    /// Hutch++ matrix-vector products.
    pub trace_products: usize,
    /// Finite-difference step of the HVPs (f32 model: 1e-2).
    pub hvp_step: f64,
    /// Worker threads for the surface (0: all cores).
    #[serde(default)]
    pub threads: usize,
}

impl LandscapeParams {
    /// Checks the settings.
    fn checked(self) -> Result<Self> {
        if self.grid < 3 || self.eval_rows == 0 || self.top_k == 0 || !(self.hvp_step > 0.0) {
            return Err(Error::invalid(
                "grid / eval_rows / top_k / hvp_step",
                format!("{} / {} / {} / {}", self.grid, self.eval_rows, self.top_k, self.hvp_step),
                "grid ≥ 3, eval_rows ≥ 1, top_k ≥ 1, hvp_step > 0",
            ));
        }
        Error::check_derived_seed("lanczos.seed", self.lanczos.seed)?;
        Error::check_derived_seed("slq.seed", self.slq.seed)?;
        self.spectrum_config().check()?;
        Ok(self)
    }

    /// What [`spectrum`] computes: top eigenvalues, Hutch++ trace, SLQ density, HVPs by central
    /// differences of gradients.
    fn spectrum_config(&self) -> SpectrumConfig {
        SpectrumConfig {
            hvp: HvpMethod::FiniteDifference { h: self.hvp_step },
            top_k: self.top_k,
            lanczos: self.lanczos.clone(),
            trace_products: self.trace_products,
            slq: self.slq.clone(),
            ..Default::default()
        }
    }
}

/// A trained variant and its trajectory.
struct Trained {
    em: Emulator,
    cfg: EmulatorConfig,
    trajectory: Vec<Vec<f64>>,
    val_losses: Vec<f64>,
    train_s: f64,
}

/// The PCA plane of a trajectory.
struct Plane {
    pca: Pca,
    trajectory: Vec<TrajectoryPoint>,
}

/// Curvature at the trained point.
struct Curvature {
    spectrum: Spectrum,
    hvps: usize,
    seconds: f64,
}

/// Runs `m7-landscape`: data → per variant (train with trajectory → PCA plane → curvature) →
/// report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let raw: LandscapeParams = ctx.params()?;
    let p = raw.checked()?;
    let configs = variant_configs(&p.emulator, &p.variants)?;
    let (train_cfg, init_seed) = derive_seeds(&p.train, p.seed)?;
    let t0 = Instant::now();
    let data = load_data(&p.data, p.seed)?;
    let train = Arc::new(data.train.clone());
    let rows: Vec<usize> = (0..p.eval_rows.min(train.len())).collect();
    let mut report = Report::new("m7-landscape: loss landscape of the plain and the completion-head emulator");
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&format!(
        "Data: {} ({} training rows). MLP hidden {:?}; training {} epochs, batch {}, {:?}. Landscape: the variant's training \
         loss (normalised MSE, head included) on the first {} training rows; HVPs by central differences of gradients (h = {}).",
        data.source, train.len(), p.emulator.hidden, p.train.epochs, p.train.batch_size, p.train.optimizer, rows.len(), p.hvp_step
    ));
    let mut table = Vec::new();
    let mut summary = Vec::new();
    for (v, cfg) in p.variants.iter().zip(configs) {
        let ck = ctx.dir.subdir(&format!("checkpoints/{}", v.name))?;
        let trained = train_with_trajectory(cfg, &data, &train_cfg, init_seed, &ck, ctx.resume)?;
        let centre = read_params_f64(trained.em.varmap())?;
        let mut obj = emulator_objective(trained.cfg.clone(), data.dt, train.clone(), init_seed, &rows, 4096)?;
        let plane = pca_plane(ctx, &p, &v.name, &mut obj, &centre, &trained.trajectory)?;
        let curv = curvature(ctx, &p, &v.name, &mut obj, &centre)?;
        let loss_c = obj.loss(&centre)?;
        table.push(table_row(&v.name, &trained, &plane, &curv, loss_c));
        summary.push(summary_entry(&v.name, &trained, &plane, &curv, loss_c));
        report_figures(&mut report, &v.name);
    }
    write_tables(&mut report, &table);
    ctx.dir.write_summary(&serde_json::json!({"variants": summary, "total_s": t0.elapsed().as_secs_f64()}))?;
    report.write(&ctx.dir)?;
    Ok(())
}

/// Trains a variant on the CPU with the core trainer, recording the flat parameters at the start
/// and at every validation; the best weights (lowest validation loss) are left in the model.
fn train_with_trajectory(
    cfg: EmulatorConfig,
    data: &Splits,
    train_cfg: &TrainConfig,
    init_seed: u64,
    checkpoints: &std::path::Path,
    resume: bool,
) -> Result<Trained> {
    let t = Instant::now();
    let em = Emulator::new(cfg.clone(), data.dt, &data.train, init_seed, &Device::Cpu)?;
    let mut traj = TrajectoryObserver::persisted(em.varmap(), &checkpoints.join("trajectory.jsonl"), resume)?;
    train_emulator(&em, train_cfg, &data.train, &data.val, checkpoints, resume, vec![Box::new(&mut traj)])?;
    let TrajectoryObserver { params, val_losses, .. } = traj;
    Ok(Trained { em, cfg, trajectory: params, val_losses, train_s: t.elapsed().as_secs_f64() })
}

/// The loss on the plane of the trajectory's first two principal components, with the projected
/// trajectory: contour, 3-D surface and the raw grid.
fn pca_plane(
    ctx: &RunContext,
    p: &LandscapeParams,
    name: &str,
    obj: &mut EmulatorObjective,
    centre: &[f64],
    trajectory: &[Vec<f64>],
) -> Result<Plane> {
    let pca = pca_directions(trajectory, centre, 2, false)?;
    let dirs: Vec<&[f64]> = pca.directions.iter().map(|d| d.as_slice()).collect();
    let tr = project_trajectory(obj, centre, &dirs, trajectory)?;
    let (mut xa, mut xb, mut ya, mut yb) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for t in &tr {
        xa = xa.min(t.projection.coords[0]);
        xb = xb.max(t.projection.coords[0]);
        ya = ya.min(t.projection.coords[1]);
        yb = yb.max(t.projection.coords[1]);
    }
    let (mx, my) = (p.margin * (xb - xa).max(1e-3), p.margin * (yb - ya).max(1e-3));
    // Finished points are kept in `partial/` so that a resumed run evaluates only the missing ones.
    let resume_file = Some(ctx.dir.subdir("partial")?.join(format!("{name}_pca.jsonl")));
    let opts = SurfaceOptions { threads: p.threads, progress: !ctx.quiet, resume_file, ..Default::default() };
    let x_axis = Axis::new(xa - mx, xb + mx, p.grid)?;
    let surf = evaluate_surface(&*obj, centre, &dirs, x_axis, Some(Axis::new(ya - my, yb + my, p.grid)?), &opts)?;
    let path2: Vec<(f64, f64)> = tr.iter().map(|t| (t.projection.coords[0], t.projection.coords[1])).collect();
    let path3: Vec<(f64, f64, f64)> =
        tr.iter().map(|t| (t.projection.coords[0], t.projection.coords[1], t.loss_projected)).collect();
    let labels = ("PC 1", "PC 2");
    let title = format!("{name}: loss on the PCA plane");
    plot_contour(&ctx.dir.file(&format!("{name}_pca_contour"))?, &title, &surf, labels, Some(&path2), true)?;
    let title = format!("{name}: loss surface (PCA plane)");
    plot_surface3d(&ctx.dir.file(&format!("{name}_pca_surface"))?, &title, &surf, labels, Some(&path3), true)?;
    save_surface(&ctx.dir.subdir("raw")?, &format!("{name}_pca"), &surf)?;
    Ok(Plane { pca, trajectory: tr })
}

/// Top eigenvalues (Lanczos), spectral density (SLQ, plotted) and trace (Hutch++) of the
/// Hessian at `centre`.
fn curvature(
    ctx: &RunContext,
    p: &LandscapeParams,
    name: &str,
    obj: &mut EmulatorObjective,
    centre: &[f64],
) -> Result<Curvature> {
    let th = Instant::now();
    let seed = derive_seed(p.seed, SPECTRUM_STREAM);
    let sp = ctx.stage(&format!("{name}-spectrum"), || spectrum(obj, centre, &p.spectrum_config(), seed))?;
    plot_density(
        &ctx.dir.file(&format!("{name}_spectrum"))?,
        &format!("{name}: Hessian eigenvalue density (SLQ)"),
        &sp.grid,
        &sp.density,
        &sp.top.values,
    )?;
    let hvps = sp.lanczos_cost.products + sp.trace_cost.products + sp.slq_cost.products;
    Ok(Curvature { spectrum: sp, hvps, seconds: th.elapsed().as_secs_f64() })
}

fn table_row(name: &str, t: &Trained, plane: &Plane, c: &Curvature, loss_c: f64) -> Vec<String> {
    let trace = c.spectrum.trace.as_ref();
    let gap = plane.trajectory.iter().map(|t| (t.loss_real - t.loss_projected).abs()).fold(0.0, f64::max);
    let ev = &plane.pca.explained_variance_ratio;
    vec![
        name.to_string(),
        format!("{:?}", t.cfg.head),
        fmt_num(loss_c, 5),
        c.spectrum.top.values.iter().map(|x| fmt_num(*x, 4)).collect::<Vec<_>>().join(", "),
        trace.map_or("—".into(), |t| format!("{} ± {}", fmt_num(t.trace, 4), fmt_num(t.std_error, 3))),
        format!("[{}, {}]", fmt_num(c.spectrum.range.0, 4), fmt_num(c.spectrum.range.1, 4)),
        format!("{:.1} / {:.1}", 100.0 * ev[0], 100.0 * ev.get(1).copied().unwrap_or(0.0)),
        fmt_num(gap, 4),
        format!("{:.0} / {:.0}", t.train_s, c.seconds),
    ]
}

fn summary_entry(name: &str, t: &Trained, plane: &Plane, c: &Curvature, loss_c: f64) -> serde_json::Value {
    serde_json::json!({
        "variant": name, "head": t.cfg.head, "loss_at_centre": loss_c, "top_eigenvalues": c.spectrum.top.values,
        "lanczos_converged": c.spectrum.top.converged, "residuals": c.spectrum.top.residuals, "trace": c.spectrum.trace,
        "slq_range": [c.spectrum.range.0, c.spectrum.range.1], "pca_explained": plane.pca.explained_variance_ratio, "hvps": c.hvps,
        "trajectory": plane.trajectory.iter().map(|t| serde_json::json!({"coords": t.projection.coords, "loss_real": t.loss_real, "loss_projected": t.loss_projected})).collect::<Vec<_>>(),
        "val_losses": t.val_losses, "train_s": t.train_s, "hessian_s": c.seconds,
    })
}

fn report_figures(report: &mut Report, name: &str) {
    report.figure(
        &format!("{name}: training loss on the PCA plane with the projected trajectory"),
        &format!("{name}_pca_contour.png"),
    );
    report.figure(&format!("{name}: 3-D surface"), &format!("{name}_pca_surface.png"));
    report
        .figure(&format!("{name}: Hessian spectral density with the top eigenvalues"), &format!("{name}_spectrum.png"));
}

fn write_tables(report: &mut Report, table: &[Vec<String>]) {
    report.heading("Curvature: plain vs completion head");
    report.table(
        &[
            "variant",
            "head",
            "loss at centre",
            "top eigenvalues",
            "trace (Hutch++)",
            "SLQ support",
            "PCA explained % (PC1 / PC2)",
            "max |L(real) − L(projected)|",
            "train / Hessian s",
        ],
        table,
    );
    report.paragraph(
        "The losses of the two variants are not the same function (the completion head replaces one tendency per species by minus \
         the sum of the others before the loss), so compare the shape (spectrum spread, ratio of top eigenvalue to trace) rather \
         than absolute values.",
    );
}
