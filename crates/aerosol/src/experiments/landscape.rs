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
//! One seed per run: `seed` draws the data; the initialisation, the shuffling, the Lanczos start,
//! the SLQ probes and the Hutch++ probes are derived from it (a non-zero `train.seed`,
//! `lanczos.seed` or `slq.seed` is refused).

use crate::emulator::data::{DataParams, Splits, load_data};
use crate::emulator::train::{derive_seeds, train_emulator};
use crate::emulator::variant::variant_configs;
use crate::emulator::{Emulator, EmulatorConfig, EmulatorData, Variant};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use gradlab_core::data::array_to_tensor;
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::observe::TrajectoryObserver;
use gradlab_core::params::{read_grads_f64, read_params_f64, write_params_f64};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::rng::{derive_seed, stream_rng};
use gradlab_core::train::TrainConfig;
use gradlab_landscape::directions::{Pca, pca_directions};
use gradlab_landscape::hessian::{HessianOperator, HvpMethod};
use gradlab_landscape::lanczos::{LanczosConfig, Which, lanczos};
use gradlab_landscape::output::{plot_contour, plot_density, plot_surface3d, save_surface};
use gradlab_landscape::slq::{SlqConfig, slq};
use gradlab_landscape::surface::{Axis, SurfaceOptions, TrajectoryPoint, evaluate_surface, project_trajectory};
use gradlab_landscape::trace::hutch_pp;
use gradlab_landscape::{Objective, Replicate};
use ndarray::{Array2, Axis as NdAxis};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Stream of the run's seed for the Lanczos start vector.
const LANCZOS_STREAM: u64 = 0x1A2C;
/// Stream of the run's seed for the SLQ probes.
const SLQ_STREAM: u64 = 0x5109;
/// Stream of the run's seed for the Hutch++ probes.
const HUTCH_STREAM: u64 = 0x4C77;

/// One fixed batch: inputs, encoded targets, sign labels (log+sign output), weight.
type Batch = (Tensor, Tensor, Option<Tensor>, f64);

/// The emulator's training loss on fixed rows as a landscape [`Objective`].
pub struct EmulatorObjective {
    em: Emulator,
    cfg: EmulatorConfig,
    dt: f64,
    seed: u64,
    train: Arc<EmulatorData>,
    batches: Arc<Vec<Batch>>,
}

impl std::fmt::Debug for EmulatorObjective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorObjective")
            .field("params", &self.em.parameters())
            .field("batches", &self.batches.len())
            .finish()
    }
}

impl EmulatorObjective {
    /// An emulator built like [`Emulator::new`]`(cfg, dt, train, seed)` (normalisers fitted on
    /// `train`) whose loss is evaluated on `rows` of `train`, in batches of `batch` rows.
    pub fn new(
        cfg: EmulatorConfig,
        dt: f64,
        train: Arc<EmulatorData>,
        seed: u64,
        rows: &[usize],
        batch: usize,
    ) -> Result<Self> {
        if rows.is_empty() || batch == 0 {
            return Err(Error::invalid("landscape rows / batch", format!("{} / {batch}", rows.len()), "both ≥ 1"));
        }
        let em = Emulator::new(cfg.clone(), dt, &train, seed, &Device::Cpu)?;
        let sub = train.rows(rows);
        let (target, labels) = em.encode_targets(&sub.t.view())?;
        let dev = Device::Cpu;
        let mut batches = Vec::new();
        let n = rows.len();
        let mut s = 0;
        while s < n {
            let e = (s + batch).min(n);
            let idx: Vec<usize> = (s..e).collect();
            let t = |a: &Array2<f32>| array_to_tensor(&a.select(NdAxis(0), &idx).view(), &dev);
            let l = match &labels {
                Some(l) => Some(t(l)?),
                None => None,
            };
            batches.push((t(&sub.x)?, t(&target)?, l, (e - s) as f64 / n as f64));
            s = e;
        }
        Ok(EmulatorObjective { em, cfg, dt, seed, train, batches: Arc::new(batches) })
    }

    /// The emulator (holds the parameters of the last evaluation).
    pub fn emulator(&self) -> &Emulator {
        &self.em
    }

    fn set(&self, theta: &[f64]) -> gradlab_landscape::Result<()> {
        if theta.len() != self.dim() {
            return Err(gradlab_landscape::Error::LengthMismatch {
                what: "theta",
                expected: self.dim(),
                got: theta.len(),
            });
        }
        Ok(write_params_f64(self.em.varmap(), theta)?)
    }
}

impl Objective for EmulatorObjective {
    fn dim(&self) -> usize {
        self.em.parameters()
    }
    fn loss(&mut self, theta: &[f64]) -> gradlab_landscape::Result<f64> {
        self.set(theta)?;
        let mut s = 0.0;
        for (x, t, l, w) in self.batches.iter() {
            let v = self.em.loss(x, t, l.as_ref())?;
            s += w * v.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        }
        Ok(s)
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> gradlab_landscape::Result<f64> {
        self.set(theta)?;
        if grad.len() != self.dim() {
            return Err(gradlab_landscape::Error::LengthMismatch {
                what: "grad",
                expected: self.dim(),
                got: grad.len(),
            });
        }
        grad.fill(0.0);
        let mut s = 0.0;
        for (x, t, l, w) in self.batches.iter() {
            let v = self.em.loss(x, t, l.as_ref())?.to_dtype(candle_core::DType::F64)?.affine(*w, 0.0)?;
            s += v.to_scalar::<f64>()?;
            let g = read_grads_f64(self.em.varmap(), &v.backward()?)?;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        Ok(s)
    }
}

impl Replicate for EmulatorObjective {
    fn replicate(&self) -> gradlab_landscape::Result<Self> {
        let em = Emulator::new(self.cfg.clone(), self.dt, &self.train, self.seed, &Device::Cpu)?;
        write_params_f64(em.varmap(), &read_params_f64(self.em.varmap())?)?;
        Ok(EmulatorObjective {
            em,
            cfg: self.cfg.clone(),
            dt: self.dt,
            seed: self.seed,
            train: self.train.clone(),
            batches: self.batches.clone(),
        })
    }
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
    /// Lanczos (`lanczos.seed` is derived from `seed`).
    pub lanczos: LanczosConfig,
    /// SLQ (`slq.seed` is derived from `seed`).
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
    /// Checks the settings and fills in the derived seeds.
    fn checked(mut self) -> Result<Self> {
        if self.grid < 3 || self.eval_rows == 0 || self.top_k == 0 || !(self.hvp_step > 0.0) {
            return Err(Error::invalid(
                "grid / eval_rows / top_k / hvp_step",
                format!("{} / {} / {} / {}", self.grid, self.eval_rows, self.top_k, self.hvp_step),
                "grid ≥ 3, eval_rows ≥ 1, top_k ≥ 1, hvp_step > 0",
            ));
        }
        Error::check_derived_seed("lanczos.seed", self.lanczos.seed)?;
        Error::check_derived_seed("slq.seed", self.slq.seed)?;
        self.lanczos.seed = derive_seed(self.seed, LANCZOS_STREAM);
        self.slq.seed = derive_seed(self.seed, SLQ_STREAM);
        Ok(self)
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
    eig: gradlab_landscape::lanczos::Eigenpairs,
    range: (f64, f64),
    trace: gradlab_landscape::trace::TraceEstimate,
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
        let trained = train_with_trajectory(cfg, &data, &train_cfg, init_seed, &ck)?;
        let centre = read_params_f64(trained.em.varmap())?;
        let mut obj = EmulatorObjective::new(trained.cfg.clone(), data.dt, train.clone(), init_seed, &rows, 4096)?;
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
) -> Result<Trained> {
    let t = Instant::now();
    let em = Emulator::new(cfg.clone(), data.dt, &data.train, init_seed, &Device::Cpu)?;
    let mut traj = TrajectoryObserver::new(em.varmap());
    train_emulator(&em, train_cfg, &data.train, &data.val, checkpoints, vec![Box::new(&mut traj)])?;
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
    let opts = SurfaceOptions { threads: p.threads, progress: !ctx.quiet, ..Default::default() };
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
    let method = HvpMethod::FiniteDifference { h: p.hvp_step };
    let (eig, quad, trace, hvps) = {
        let mut op = HessianOperator::new(obj, centre, method)?;
        let eig = lanczos(&mut op, p.top_k, Which::Largest, &p.lanczos)?;
        let quad = slq(&mut op, &p.slq)?;
        let trace = hutch_pp(&mut op, p.trace_products, &mut stream_rng(p.seed, HUTCH_STREAM))?;
        (eig, quad, trace, op.products)
    };
    let (lo, hi) = quad.range();
    let width = (hi - lo).max(1e-12);
    let grid: Vec<f64> = (0..=400).map(|i| lo - 0.05 * width + 1.1 * width * i as f64 / 400.0).collect();
    let density = quad.density(&grid, 0.01 * width)?;
    plot_density(
        &ctx.dir.file(&format!("{name}_spectrum"))?,
        &format!("{name}: Hessian eigenvalue density (SLQ)"),
        &grid,
        &density,
        &eig.values,
    )?;
    Ok(Curvature { eig, range: (lo, hi), trace, hvps, seconds: th.elapsed().as_secs_f64() })
}

fn table_row(name: &str, t: &Trained, plane: &Plane, c: &Curvature, loss_c: f64) -> Vec<String> {
    let gap = plane.trajectory.iter().map(|t| (t.loss_real - t.loss_projected).abs()).fold(0.0, f64::max);
    let ev = &plane.pca.explained_variance_ratio;
    vec![
        name.to_string(),
        format!("{:?}", t.cfg.head),
        fmt_num(loss_c, 5),
        c.eig.values.iter().map(|x| fmt_num(*x, 4)).collect::<Vec<_>>().join(", "),
        format!("{} ± {}", fmt_num(c.trace.trace, 4), fmt_num(c.trace.std_error, 3)),
        format!("[{}, {}]", fmt_num(c.range.0, 4), fmt_num(c.range.1, 4)),
        format!("{:.1} / {:.1}", 100.0 * ev[0], 100.0 * ev.get(1).copied().unwrap_or(0.0)),
        fmt_num(gap, 4),
        format!("{:.0} / {:.0}", t.train_s, c.seconds),
    ]
}

fn summary_entry(name: &str, t: &Trained, plane: &Plane, c: &Curvature, loss_c: f64) -> serde_json::Value {
    serde_json::json!({
        "variant": name, "head": t.cfg.head, "loss_at_centre": loss_c, "top_eigenvalues": c.eig.values,
        "lanczos_converged": c.eig.converged, "residuals": c.eig.residuals, "trace": c.trace,
        "slq_range": [c.range.0, c.range.1], "pca_explained": plane.pca.explained_variance_ratio, "hvps": c.hvps,
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
