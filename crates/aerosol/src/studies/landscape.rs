//! `m7-landscape`: the loss landscape of the plain and the completion-head emulator.
//!
//! Each variant is trained with the core [`Trainer`] while its flat parameter vector is recorded
//! at every validation; then, on a fixed subset of the training rows (the training loss of the
//! variant, head included):
//! - the plane of the first two principal components of the trajectory (relative to the final
//!   point, [`gradlab_landscape::directions::pca_directions`]) with the projected trajectory,
//!   the loss at each checkpoint and at its projection;
//! - the top Hessian eigenvalues (Lanczos) and the spectral density (SLQ) over all parameters,
//!   and the Hutch++ trace — to see whether the hard mass constraint changes the curvature.

use super::{Result, StudyError, load_splits};
use crate::emulator::experiments::DataParams;
use crate::emulator::{Emulator, EmulatorConfig, EmulatorData, HeadKind};
use candle_core::{Device, Tensor};
use gradlab_core::data::array_to_tensor;
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::params::{read_grads_f64, read_params_f64, write_params_f64};
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::train::{TrainConfig, Trainer, Validation, load_weights};
use gradlab_landscape::directions::pca_directions;
use gradlab_landscape::hessian::{HessianOperator, HvpMethod};
use gradlab_landscape::lanczos::{LanczosConfig, Which, lanczos};
use gradlab_landscape::output::{plot_contour, plot_density, plot_surface3d, save_surface};
use gradlab_landscape::slq::{SlqConfig, slq};
use gradlab_landscape::surface::{Axis, SurfaceOptions, evaluate_surface, project_trajectory};
use gradlab_landscape::trace::hutch_pp;
use gradlab_landscape::{Objective, Replicate};
use ndarray::{Array2, Axis as NdAxis};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

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
            return Err(StudyError::Invalid {
                what: "landscape rows / batch",
                value: format!("{} / {batch}", rows.len()),
                allowed: "both ≥ 1",
            });
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

fn lerr(e: impl std::fmt::Display) -> gradlab_landscape::Error {
    gradlab_landscape::Error::Unsupported(format!("emulator: {e}"))
}

impl Objective for EmulatorObjective {
    fn dim(&self) -> usize {
        self.em.parameters()
    }
    fn loss(&mut self, theta: &[f64]) -> gradlab_landscape::Result<f64> {
        self.set(theta)?;
        let mut s = 0.0;
        for (x, t, l, w) in self.batches.iter() {
            let v = self.em.loss(x, t, l.as_ref()).map_err(lerr)?;
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
            let v = self.em.loss(x, t, l.as_ref()).map_err(lerr)?.to_dtype(candle_core::DType::F64)?.affine(*w, 0.0)?;
            s += v.to_scalar::<f64>()?;
            let g = read_grads_f64(self.em.varmap(), &v.backward()?)?;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        Ok(s)
    }
}

impl Replicate for EmulatorObjective {
    fn replicate(&self) -> gradlab_landscape::Result<Self> {
        let em = Emulator::new(self.cfg.clone(), self.dt, &self.train, self.seed, &Device::Cpu).map_err(lerr)?;
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

/// Trains an emulator with the core trainer, recording the flat parameters at every validation
/// (the first entry is the initialisation). The best weights (lowest validation loss) are loaded.
pub fn fit_with_trajectory(
    cfg: EmulatorConfig,
    dt: f64,
    tc: &TrainConfig,
    seed: u64,
    train: &EmulatorData,
    val: &EmulatorData,
    checkpoints: &std::path::Path,
) -> Result<(Emulator, Vec<Vec<f64>>, Vec<f64>)> {
    let dev = Device::Cpu;
    let em = Emulator::new(cfg, dt, train, seed, &dev)?;
    let (tt, tl) = em.encode_targets(&train.t.view())?;
    let (vt, vl) = em.encode_targets(&val.t.view())?;
    let vx = array_to_tensor(&val.x.view(), &dev)?;
    let vtt = array_to_tensor(&vt.view(), &dev)?;
    let vll = match &vl {
        Some(l) => Some(array_to_tensor(&l.view(), &dev)?),
        None => None,
    };
    let traj = RefCell::new(vec![read_params_f64(em.varmap())?]);
    let losses = RefCell::new(Vec::new());
    let to_core =
        |e: crate::emulator::EmulatorError| gradlab_core::Error::invalid("emulator", e, "a valid emulator batch");
    let report = Trainer::new(tc.clone(), em.varmap())?.checkpoint_to(checkpoints).fit::<gradlab_core::Error, _, _>(
        train.len(),
        |idx| {
            let t = |a: &Array2<f32>| array_to_tensor(&a.select(NdAxis(0), idx).view(), &dev);
            let l = match &tl {
                Some(l) => Some(t(l)?),
                None => None,
            };
            em.loss(&t(&train.x)?, &t(&tt)?, l.as_ref()).map_err(to_core)
        },
        || {
            let v = em
                .loss(&vx, &vtt, vll.as_ref())
                .map_err(to_core)?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            traj.borrow_mut().push(read_params_f64(em.varmap())?);
            losses.borrow_mut().push(v);
            Ok(Validation::loss(v))
        },
    )?;
    if let Some(best) = &report.best_checkpoint {
        load_weights(em.varmap(), best)?;
    }
    Ok((em, traj.into_inner(), losses.into_inner()))
}

/// One variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandscapeVariant {
    /// Name.
    pub name: String,
    /// Constraint head (active in training).
    pub head: HeadKind,
}

/// Parameters of `m7-landscape`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandscapeParams {
    /// Seed of data, initialisation, shuffling.
    pub seed: u64,
    /// Data (as `m7-emulator`).
    pub data: DataParams,
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Variants (plain and completion head).
    pub variants: Vec<LandscapeVariant>,
    /// Trainer settings (validate at least a few times: the trajectory is recorded there).
    pub train: TrainConfig,
    /// Training rows in the fixed landscape batches.
    pub eval_rows: usize,
    /// Points per axis of the PCA plane.
    pub grid: usize,
    /// Relative margin around the projected trajectory.
    pub margin: f64,
    /// Top eigenvalues.
    pub top_k: usize,
    /// Lanczos.
    pub lanczos: LanczosConfig,
    /// SLQ.
    pub slq: SlqConfig,
    /// Hutch++ matrix-vector products.
    pub trace_products: usize,
    /// Finite-difference step of the HVPs (f32 model: 1e-2).
    pub hvp_step: f64,
    /// Worker threads for the surface (0: all cores).
    #[serde(default)]
    pub threads: usize,
}

/// Runs `m7-landscape`.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: LandscapeParams = ctx.params()?;
    if p.variants.is_empty() || p.grid < 3 || p.eval_rows == 0 || p.top_k == 0 || !(p.hvp_step > 0.0) {
        return Err("variants non-empty, grid ≥ 3, eval_rows ≥ 1, top_k ≥ 1, hvp_step > 0 required".into());
    }
    let t0 = Instant::now();
    let data = load_splits(&p.data, p.seed)?;
    let train = Arc::new(data.train.clone());
    let rows: Vec<usize> = (0..p.eval_rows.min(train.len())).collect();
    let mut report = Report::new("m7-landscape: loss landscape of the plain and the completion-head emulator");
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&format!(
        "Data: {} ({} training rows). MLP hidden {:?}; training {} epochs, batch {}, {:?}. Landscape: the variant's training \
         loss (normalised MSE, head included) on the first {} training rows; HVPs by central differences of gradients (h = {}).",
        data.source, train.len(), p.hidden, p.train.epochs, p.train.batch_size, p.train.optimizer, rows.len(), p.hvp_step
    ));
    let mut rows_tab = Vec::new();
    let mut summary = Vec::new();
    for v in &p.variants {
        let tv = Instant::now();
        let cfg =
            EmulatorConfig { hidden: p.hidden.clone(), head: v.head, head_in_training: true, ..Default::default() };
        let ck = ctx.dir.subdir(&format!("checkpoints/{}", v.name))?;
        let mut tc = p.train.clone();
        tc.seed = p.seed;
        let (em, traj, val_losses) = fit_with_trajectory(cfg.clone(), data.dt, &tc, p.seed, &train, &data.val, &ck)?;
        let train_s = tv.elapsed().as_secs_f64();
        let centre = read_params_f64(em.varmap())?;
        let mut obj = EmulatorObjective::new(cfg, data.dt, train.clone(), p.seed, &rows, 4096)?;
        let pca = pca_directions(&traj, &centre, 2, false)?;
        let dirs: Vec<&[f64]> = pca.directions.iter().map(|d| d.as_slice()).collect();
        let tr = project_trajectory(&mut obj, &centre, &dirs, &traj)?;
        let (mut xa, mut xb, mut ya, mut yb) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for t in &tr {
            xa = xa.min(t.projection.coords[0]);
            xb = xb.max(t.projection.coords[0]);
            ya = ya.min(t.projection.coords[1]);
            yb = yb.max(t.projection.coords[1]);
        }
        let (mx, my) = (p.margin * (xb - xa).max(1e-3), p.margin * (yb - ya).max(1e-3));
        let opts = SurfaceOptions { threads: p.threads, progress: !ctx.quiet, ..Default::default() };
        let surf = evaluate_surface(
            &obj,
            &centre,
            &dirs,
            Axis::new(xa - mx, xb + mx, p.grid)?,
            Some(Axis::new(ya - my, yb + my, p.grid)?),
            &opts,
        )?;
        let path2: Vec<(f64, f64)> = tr.iter().map(|t| (t.projection.coords[0], t.projection.coords[1])).collect();
        let path3: Vec<(f64, f64, f64)> =
            tr.iter().map(|t| (t.projection.coords[0], t.projection.coords[1], t.loss_projected)).collect();
        let labels = ("PC 1", "PC 2");
        plot_contour(
            &ctx.dir.file(&format!("{}_pca_contour", v.name))?,
            &format!("{}: loss on the PCA plane", v.name),
            &surf,
            labels,
            Some(&path2),
            true,
        )?;
        plot_surface3d(
            &ctx.dir.file(&format!("{}_pca_surface", v.name))?,
            &format!("{}: loss surface (PCA plane)", v.name),
            &surf,
            labels,
            Some(&path3),
            true,
        )?;
        save_surface(&ctx.dir.subdir("raw")?, &format!("{}_pca", v.name), &surf)?;

        // Curvature.
        let th = Instant::now();
        let method = HvpMethod::FiniteDifference { h: p.hvp_step };
        let (eig, quad, trace, hvps) = {
            let mut op = HessianOperator::new(&mut obj, &centre, method)?;
            let eig = lanczos(&mut op, p.top_k, Which::Largest, &p.lanczos)?;
            let quad = slq(&mut op, &p.slq)?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(p.seed);
            let trace = hutch_pp(&mut op, p.trace_products, &mut rng)?;
            (eig, quad, trace, op.products)
        };
        let (lo, hi) = quad.range();
        let width = (hi - lo).max(1e-12);
        let grid: Vec<f64> = (0..=400).map(|i| lo - 0.05 * width + 1.1 * width * i as f64 / 400.0).collect();
        let density = quad.density(&grid, 0.01 * width)?;
        plot_density(
            &ctx.dir.file(&format!("{}_spectrum", v.name))?,
            &format!("{}: Hessian eigenvalue density (SLQ)", v.name),
            &grid,
            &density,
            &eig.values,
        )?;
        let hess_s = th.elapsed().as_secs_f64();
        let loss_c = obj.loss(&centre)?;
        let gap = tr.iter().map(|t| (t.loss_real - t.loss_projected).abs()).fold(0.0, f64::max);
        rows_tab.push(vec![
            v.name.clone(),
            format!("{:?}", v.head),
            fmt_num(loss_c, 5),
            eig.values.iter().map(|x| fmt_num(*x, 4)).collect::<Vec<_>>().join(", "),
            format!("{} ± {}", fmt_num(trace.trace, 4), fmt_num(trace.std_error, 3)),
            format!("[{}, {}]", fmt_num(lo, 4), fmt_num(hi, 4)),
            format!(
                "{:.1} / {:.1}",
                100.0 * pca.explained_variance_ratio[0],
                100.0 * pca.explained_variance_ratio.get(1).copied().unwrap_or(0.0)
            ),
            fmt_num(gap, 4),
            format!("{:.0} / {:.0}", train_s, hess_s),
        ]);
        summary.push(serde_json::json!({
            "variant": v.name, "head": v.head, "loss_at_centre": loss_c, "top_eigenvalues": eig.values, "lanczos_converged": eig.converged,
            "residuals": eig.residuals, "trace": trace, "slq_range": [lo, hi], "pca_explained": pca.explained_variance_ratio, "hvps": hvps,
            "trajectory": tr.iter().map(|t| serde_json::json!({"coords": t.projection.coords, "loss_real": t.loss_real, "loss_projected": t.loss_projected})).collect::<Vec<_>>(),
            "val_losses": val_losses, "train_s": train_s, "hessian_s": hess_s,
        }));
        report.figure(
            &format!("{}: training loss on the PCA plane with the projected trajectory", v.name),
            &format!("{}_pca_contour.png", v.name),
        );
        report.figure(&format!("{}: 3-D surface", v.name), &format!("{}_pca_surface.png", v.name));
        report.figure(
            &format!("{}: Hessian spectral density with the top eigenvalues", v.name),
            &format!("{}_spectrum.png", v.name),
        );
    }
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
        &rows_tab,
    );
    report.paragraph(
        "The losses of the two variants are not the same function (the completion head replaces one tendency per species by minus \
         the sum of the others before the loss), so compare the shape (spectrum spread, ratio of top eigenvalue to trace) rather \
         than absolute values.",
    );
    ctx.dir.write_summary(&serde_json::json!({"variants": summary, "total_s": t0.elapsed().as_secs_f64()}))?;
    report.write(&ctx.dir)?;
    Ok(())
}
