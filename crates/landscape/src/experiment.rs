//! `landscape-demo`: train a small classifier with the core Trainer, keep the trajectory, and
//! analyse the landscape around the final point: PCA plane with the projected trajectory,
//! filter-normalised random plane, top-2 Hessian eigenvector plane, 1-D lines, extreme
//! eigenvalues by Lanczos, trace by Hutchinson / Hutch++, spectral density by SLQ.
//!
//! Data: `classes` interleaved noisy spirals in 2-D (a problem whose decision boundary needs the
//! hidden layers). Model: tanh MLP `2 → hidden… → classes`, cross-entropy, trained in f32; the
//! landscape is evaluated in f64 on a fixed subset of the training data.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::observe::{JsonlObserver, ProgressObserver, progress_enabled};
use gradlab_core::params::read_params_f64;
use gradlab_core::report::{Report, fmt_num};
use gradlab_core::train::{TrainConfig, Trainer, Validation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::candle::{CandleObjective, cross_entropy, mlp};
use crate::connectivity::linear_path;
use crate::directions::{
    DirectionKind, DirectionSet, Normalization, VectorParams, orthogonalize, pca_directions, random_direction,
};
use crate::error::{Error, Result};
use crate::hessian::{HessianOperator, HvpMethod};
use crate::lanczos::{LanczosConfig, Which, lanczos};
use crate::layout::Layout;
use crate::objective::Objective;
use crate::output::{plot_contour, plot_density, plot_lines, plot_surface3d, save_surface, write_vtk};
use crate::slq::{SlqConfig, slq};
use crate::surface::{Axis, Surface, SurfaceOptions, evaluate_surface, project_trajectory};
use crate::trace::{hutch_pp, hutchinson};

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
    /// Seed of data, initialisation and random directions.
    pub seed: u64,
    /// Training data.
    pub data: SpiralConfig,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Training (core Trainer); the parameters are recorded at every evaluation.
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
    /// Hessian-vector products.
    pub hvp: HvpMethod,
    /// Largest eigenvalues to compute.
    pub top_k: usize,
    /// Smallest eigenvalues to compute.
    pub bottom_k: usize,
    /// Lanczos settings (steps, tolerance, seed).
    pub lanczos: LanczosConfig,
    /// SLQ settings.
    pub slq: SlqConfig,
    /// Operator products for each trace estimator.
    pub trace_products: usize,
    /// Worker threads for surfaces (0 = all cores).
    pub threads: usize,
    /// Colour contours by log10 loss.
    pub log_z: bool,
}

impl DemoParams {
    fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, value: String, allowed: &'static str| {
            Err(Error::InvalidArgument { name, value, allowed })
        };
        if self.data.classes < 2 || self.data.per_class < 2 {
            return bad(
                "data",
                format!("{} classes × {}", self.data.classes, self.data.per_class),
                "≥ 2 classes with ≥ 2 points each",
            );
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return bad("hidden", format!("{:?}", self.hidden), "one or more widths ≥ 1");
        }
        if self.grid < 3 || self.line_points < 3 {
            return bad("grid / line_points", format!("{} / {}", self.grid, self.line_points), "≥ 3");
        }
        if self.top_k < 2 {
            return bad("top_k", self.top_k.to_string(), "≥ 2 (two eigenvectors span the plane)");
        }
        if !(self.random_range > 0.0 && self.pca_margin >= 0.0 && self.hessian_rise > 0.0) {
            return bad(
                "random_range / pca_margin / hessian_rise",
                format!("{} / {} / {}", self.random_range, self.pca_margin, self.hessian_rise),
                "> 0, ≥ 0, > 0",
            );
        }
        self.hvp.check()
    }
}

/// `classes` noisy spirals: inputs `(n, 2)` f32 and labels `(n,)` u32.
pub fn spirals(cfg: &SpiralConfig, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(cfg.classes * cfg.per_class * 2);
    let mut y = Vec::with_capacity(cfg.classes * cfg.per_class);
    for c in 0..cfg.classes {
        for i in 0..cfg.per_class {
            let r = (i as f64 + 0.5) / cfg.per_class as f64;
            let phi = 2.0 * std::f64::consts::PI * (cfg.turns * r + c as f64 / cfg.classes as f64);
            let n1: f64 = rng.sample(StandardNormal);
            let n2: f64 = rng.sample(StandardNormal);
            x.push((2.0 * r * phi.cos() + cfg.noise * n1) as f32);
            x.push((2.0 * r * phi.sin() + cfg.noise * n2) as f32);
            y.push(c as u32);
        }
    }
    (x, y)
}

fn seeded_init(vm: &VarMap, seed: u64) -> Result<()> {
    // Glorot-uniform weights, zero biases, from our seed (candle's initialiser is not seeded)
    let layout = Layout::from(&gradlab_core::params::ParamLayout::of(vm)?);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut flat = vec![0.0; layout.total];
    for b in &layout.blocks {
        if b.shape.len() >= 2 {
            let fan_out = b.shape[0] as f64;
            let fan_in = b.len as f64 / fan_out;
            let a = (6.0 / (fan_in + fan_out)).sqrt();
            flat[b.range()].iter_mut().for_each(|v| *v = rng.random_range(-a..a));
        }
    }
    Ok(gradlab_core::params::write_params_f64(vm, &flat)?)
}

fn surface_table(name: &str, s: &Surface, secs: f64, center_loss: f64) -> Vec<String> {
    let (a, b, m) = s.min().unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let finite = s.loss.iter().filter(|v| v.is_finite());
    let max = finite.clone().copied().fold(f64::NEG_INFINITY, f64::max);
    vec![
        name.into(),
        format!("{}×{}", s.xs.len(), s.ys.len()),
        fmt_num(center_loss, 4),
        format!("{} at ({}, {})", fmt_num(m, 4), fmt_num(a, 3), fmt_num(b, 3)),
        fmt_num(max, 4),
        format!("{secs:.2}"),
        format!("{:.0}", s.loss.len() as f64 / secs),
    ]
}

/// Runs the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: DemoParams = ctx.params()?;
    p.validate()?;
    let t_start = Instant::now();
    let dev = Device::Cpu;
    let (xs, ys) = spirals(&p.data, p.seed);
    let n = ys.len();
    let x_all = Tensor::from_vec(xs.clone(), (n, 2), &dev)?;
    let y_all = Tensor::from_vec(ys.clone(), n, &dev)?;
    let mut sizes = vec![2];
    sizes.extend(&p.hidden);
    sizes.push(p.data.classes);

    // ---- training with the core Trainer, recording the trajectory --------------------------
    let vm = VarMap::new();
    let model = mlp::build(&sizes, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    seeded_init(&vm, p.seed)?;
    let mut trajectory: Vec<Vec<f64>> = vec![read_params_f64(&vm)?];
    let mut val_losses = vec![];
    let t0 = Instant::now();
    let train_report = {
        let metrics = ctx.dir.jsonl("metrics.jsonl")?;
        let mut trainer = Trainer::new(p.train.clone(), &vm)?
            .observe(ProgressObserver::new("landscape-demo train", ctx.quiet))
            .observe(JsonlObserver::new(metrics, 50))
            .checkpoint_to(ctx.dir.subdir("checkpoints")?);
        trainer.fit::<gradlab_core::Error, _, _>(
            n,
            |idx| {
                let idx_t = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), &dev)?;
                let x = x_all.index_select(&idx_t, 0)?;
                let y = y_all.index_select(&idx_t, 0)?;
                Ok(cross_entropy(&model, &x, &y)?)
            },
            || {
                let l = cross_entropy(&model, &x_all, &y_all)?.to_scalar::<f32>()? as f64;
                trajectory.push(read_params_f64(&vm)?);
                val_losses.push(l);
                Ok(Validation::loss(l))
            },
        )?
    };
    let train_secs = t0.elapsed().as_secs_f64();
    let theta_c = read_params_f64(&vm)?;
    // the last recorded point is the final one; PCA uses the checkpoints before it
    if trajectory.last() != Some(&theta_c) {
        trajectory.push(theta_c.clone());
    }
    {
        let traj_flat: Vec<f64> = trajectory.iter().flatten().copied().collect();
        crate::io::write_npy_2d(&ctx.dir.file("trajectory.npy")?, trajectory.len(), theta_c.len(), &traj_flat)?;
    }

    // ---- the objective: f64 model on a fixed subset of the training data --------------------
    let m = p.eval_samples.min(n);
    let mut order: Vec<usize> = (0..n).collect();
    {
        let mut rng = StdRng::seed_from_u64(p.seed ^ 0xE7A1);
        for i in (1..n).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
    }
    let sel: Vec<u32> = order[..m].iter().map(|&i| i as u32).collect();
    let sel = Tensor::from_vec(sel, m, &dev)?;
    let xb = x_all.index_select(&sel, 0)?.to_dtype(DType::F64)?;
    let yb = y_all.index_select(&sel, 0)?;
    let sizes_c = sizes.clone();
    let mut obj =
        CandleObjective::new(move |vb| mlp::build(&sizes_c, vb), cross_entropy, vec![(xb, yb)], DType::F64, &dev)?;
    obj.set_params(&theta_c)?;
    let layout = obj.layout().clone();
    let dim = obj.dim();
    let center_loss = obj.loss(&theta_c)?;
    let progress = progress_enabled(ctx.quiet);
    let sopts = SurfaceOptions { threads: p.threads, progress, ..Default::default() };
    let mut table_rows = vec![];
    let dirs_dir = ctx.dir.subdir("directions")?;
    let raw_dir = ctx.dir.subdir("raw")?;

    // ---- PCA plane with the projected trajectory --------------------------------------------
    let pca = pca_directions(&trajectory[..trajectory.len() - 1], &theta_c, 2, false)?;
    let (d1, d2) = (pca.directions[0].clone(), pca.directions[1].clone());
    let proj = project_trajectory(&mut obj, &theta_c, &[&d1, &d2], &trajectory)?;
    let (mut amin, mut amax, mut bmin, mut bmax) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for t in &proj {
        amin = amin.min(t.projection.coords[0]);
        amax = amax.max(t.projection.coords[0]);
        bmin = bmin.min(t.projection.coords[1]);
        bmax = bmax.max(t.projection.coords[1]);
    }
    let pad = |lo: f64, hi: f64| {
        let w = (hi - lo).max(1e-3);
        (lo - p.pca_margin * w, hi + p.pca_margin * w)
    };
    let ((ax0, ax1), (ay0, ay1)) = (pad(amin, amax), pad(bmin, bmax));
    let t = Instant::now();
    let s_pca = evaluate_surface(
        &obj,
        &theta_c,
        &[&d1, &d2],
        Axis::new(ax0, ax1, p.grid)?,
        Some(Axis::new(ay0, ay1, p.grid)?),
        &sopts,
    )?;
    let pca_secs = t.elapsed().as_secs_f64();
    table_rows.push(surface_table("PCA plane", &s_pca, pca_secs, center_loss));
    let traj2d: Vec<(f64, f64)> = proj.iter().map(|t| (t.projection.coords[0], t.projection.coords[1])).collect();
    let traj3d: Vec<(f64, f64, f64)> =
        proj.iter().map(|t| (t.projection.coords[0], t.projection.coords[1], t.loss_projected)).collect();
    let labels_pca = (
        format!("PC1 ({:.1} % of variance)", 100.0 * pca.explained_variance_ratio[0]),
        format!("PC2 ({:.1} % of variance)", 100.0 * pca.explained_variance_ratio[1]),
    );
    plot_contour(
        &ctx.dir.file("pca_contour")?,
        "Loss on the PCA plane with the training trajectory",
        &s_pca,
        (&labels_pca.0, &labels_pca.1),
        Some(&traj2d),
        p.log_z,
    )?;
    plot_surface3d(
        &ctx.dir.file("pca_surface3d")?,
        "Loss surface on the PCA plane",
        &s_pca,
        ("PC1", "PC2"),
        Some(&traj3d),
        p.log_z,
    )?;
    save_surface(&raw_dir, "pca_surface", &s_pca)?;
    write_vtk(&ctx.dir.file("pca_surface.vtk")?, &s_pca, 1.0)?;
    DirectionSet::new(
        DirectionKind::Pca { explained_variance_ratio: pca.explained_variance_ratio.clone() },
        theta_c.clone(),
        vec![d1.clone(), d2.clone()],
    )?
    .save(&dirs_dir, "pca")?;

    // ---- filter-normalised random plane --------------------------------------------------------
    let mut rng = StdRng::seed_from_u64(p.seed.wrapping_add(17));
    let r1 = random_direction(&theta_c, &layout, Normalization::Filter, VectorParams::Zero, &mut rng)?;
    let mut r2 = random_direction(&theta_c, &layout, Normalization::Filter, VectorParams::Zero, &mut rng)?;
    let cos_before = crate::directions::cosine(&r1, &r2);
    orthogonalize(&r1, &mut r2)?;
    let ra = Axis::new(-p.random_range, p.random_range, p.grid)?;
    let t = Instant::now();
    let s_rand = evaluate_surface(&obj, &theta_c, &[&r1, &r2], ra, Some(ra), &sopts)?;
    let rand_secs = t.elapsed().as_secs_f64();
    table_rows.push(surface_table("filter-normalised random plane", &s_rand, rand_secs, center_loss));
    plot_contour(
        &ctx.dir.file("random_contour")?,
        "Loss on a filter-normalised random plane",
        &s_rand,
        ("δ (filter-normalised)", "η (filter-normalised)"),
        None,
        p.log_z,
    )?;
    plot_surface3d(
        &ctx.dir.file("random_surface3d")?,
        "Loss surface, filter-normalised random plane",
        &s_rand,
        ("δ", "η"),
        None,
        p.log_z,
    )?;
    save_surface(&raw_dir, "random_surface", &s_rand)?;
    write_vtk(&ctx.dir.file("random_surface.vtk")?, &s_rand, 1.0)?;
    DirectionSet::new(
        DirectionKind::Random {
            normalization: Normalization::Filter,
            vectors: VectorParams::Zero,
            seed: p.seed.wrapping_add(17),
        },
        theta_c.clone(),
        vec![r1.clone(), r2.clone()],
    )?
    .save(&dirs_dir, "random")?;

    // ---- Hessian: extreme eigenpairs, trace, density -------------------------------------------
    let t = Instant::now();
    let (top, bottom, hvps_eig) = {
        let mut op = HessianOperator::new(&mut obj, &theta_c, p.hvp)?;
        let top = lanczos(&mut op, p.top_k, Which::Largest, &p.lanczos)?;
        let bottom =
            if p.bottom_k > 0 { Some(lanczos(&mut op, p.bottom_k, Which::Smallest, &p.lanczos)?) } else { None };
        (top, bottom, op.products)
    };
    let eig_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (tr_h, tr_pp) = {
        let mut op = HessianOperator::new(&mut obj, &theta_c, p.hvp)?;
        let mut rng = StdRng::seed_from_u64(p.seed.wrapping_add(29));
        (hutchinson(&mut op, p.trace_products, &mut rng)?, hutch_pp(&mut op, p.trace_products, &mut rng)?)
    };
    let trace_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let quad = {
        let mut op = HessianOperator::new(&mut obj, &theta_c, p.hvp)?;
        slq(&mut op, &p.slq)?
    };
    let slq_secs = t.elapsed().as_secs_f64();
    let slq_trace = dim as f64 * quad.mean_of(|x| x);
    let (lo, hi) = quad.range();
    let width = (hi - lo).max(1e-6);
    let sigma = 0.01 * width;
    let grid: Vec<f64> = (0..=1000).map(|i| lo - 0.05 * width + 1.1 * width * i as f64 / 1000.0).collect();
    let density = quad.density(&grid, sigma)?;
    let mut marks = top.values.clone();
    if let Some(b) = &bottom {
        marks.extend(&b.values);
    }
    plot_density(
        &ctx.dir.file("hessian_density")?,
        &format!("Hessian eigenvalue density (SLQ, {} probes × {} steps)", p.slq.probes, p.slq.steps),
        &grid,
        &density,
        &marks,
    )?;
    crate::io::write_npy_1d(&raw_dir.join("density_grid.npy"), &grid)?;
    crate::io::write_npy_1d(&raw_dir.join("density.npy"), &density)?;
    crate::io::write_json(&raw_dir.join("slq_quadrature.json"), &quad)?;

    // ---- top-2 eigenvector plane ---------------------------------------------------------------
    let (e1, e2) = (top.vectors[0].clone(), top.vectors[1].clone());
    let lam1 = top.values[0].abs().max(1e-12);
    let rr = (2.0 * p.hessian_rise / lam1).sqrt();
    let ea = Axis::new(-rr, rr, p.grid)?;
    let t = Instant::now();
    let s_eig = evaluate_surface(&obj, &theta_c, &[&e1, &e2], ea, Some(ea), &sopts)?;
    let eig_plane_secs = t.elapsed().as_secs_f64();
    table_rows.push(surface_table("top-2 Hessian eigenvector plane", &s_eig, eig_plane_secs, center_loss));
    plot_contour(
        &ctx.dir.file("hessian_contour")?,
        "Loss on the plane of the top-2 Hessian eigenvectors",
        &s_eig,
        (&format!("v1 (λ1 = {})", fmt_num(top.values[0], 4)), &format!("v2 (λ2 = {})", fmt_num(top.values[1], 4))),
        None,
        p.log_z,
    )?;
    plot_surface3d(
        &ctx.dir.file("hessian_surface3d")?,
        "Loss surface, top-2 Hessian eigenvector plane",
        &s_eig,
        ("v1", "v2"),
        None,
        p.log_z,
    )?;
    save_surface(&raw_dir, "hessian_surface", &s_eig)?;
    write_vtk(&ctx.dir.file("hessian_surface.vtk")?, &s_eig, 1.0)?;
    DirectionSet::new(
        DirectionKind::Hessian { eigenvalues: top.values[..2].to_vec() },
        theta_c.clone(),
        vec![e1.clone(), e2.clone()],
    )?
    .save(&dirs_dir, "hessian")?;
    // quadratic-model check along v1: L(θc + a v1) ≈ L(θc) + a gᵀv1 + ½ λ1 a²
    let quad_check = {
        let j = s_eig.ys.len() / 2;
        let i_edge = s_eig.xs.len() - 1;
        let (_, g) = crate::objective::gradient(&mut obj, &theta_c)?;
        let gv = crate::vecops::dot(&g, &e1);
        let a = s_eig.xs[i_edge];
        (s_eig.at(i_edge, j), center_loss + a * gv + 0.5 * top.values[0] * a * a)
    };

    // ---- 1-D lines -----------------------------------------------------------------------------
    let t = Instant::now();
    let interp = linear_path(&mut obj, &trajectory[0], &theta_c, p.line_points)?;
    let line = evaluate_surface(
        &obj,
        &theta_c,
        &[&r1],
        Axis::new(-p.random_range, p.random_range, p.line_points)?,
        None,
        &sopts,
    )?;
    let line_v1 = evaluate_surface(&obj, &theta_c, &[&e1], Axis::new(-rr, rr, p.line_points)?, None, &sopts)?;
    let line_secs = t.elapsed().as_secs_f64();
    plot_lines(
        &ctx.dir.file("line_interpolation")?,
        "Loss on the straight line from initialisation (t = 0) to the final point (t = 1)",
        "t",
        &[("(1 − t) θ0 + t θfinal", &interp.ts, &interp.losses)],
        true,
    )?;
    plot_lines(
        &ctx.dir.file("line_directions")?,
        "Loss along single directions through the final point",
        "step along the direction",
        &[
            ("filter-normalised random δ", &line.xs, &line.loss),
            ("top Hessian eigenvector v1", &line_v1.xs, &line_v1.loss),
        ],
        true,
    )?;
    save_surface(&raw_dir, "line_random", &line)?;
    save_surface(&raw_dir, "line_v1", &line_v1)?;

    // ---- summary and report --------------------------------------------------------------------
    let grid_pts = (s_pca.loss.len() + s_rand.loss.len() + s_eig.loss.len()) as f64;
    let surf_secs = pca_secs + rand_secs + eig_plane_secs;
    let summary = serde_json::json!({
        "parameters": dim,
        "train": { "seconds": train_secs, "steps": train_report.steps, "epochs": train_report.epochs_run, "final_loss_f32": val_losses.last(), "checkpoints": trajectory.len() },
        "eval_samples": m,
        "center_loss": center_loss,
        "pca": { "explained_variance_ratio": pca.explained_variance_ratio, "singular_values": pca.singular_values,
                 "max_relative_residual": proj.iter().map(|t| t.projection.relative_residual).fold(0.0, f64::max) },
        "random_plane": { "cosine_before_orthogonalisation": cos_before },
        "surfaces": { "points": grid_pts, "seconds": surf_secs, "points_per_second": grid_pts / surf_secs, "threads": p.threads },
        "hessian": {
            "hvp": p.hvp,
            "top": top.values, "top_residuals": top.residuals, "top_converged": top.converged, "top_steps": top.steps,
            "bottom": bottom.as_ref().map(|b| b.values.clone()), "bottom_residuals": bottom.as_ref().map(|b| b.residuals.clone()),
            "bottom_converged": bottom.as_ref().map(|b| b.converged),
            "lanczos_products": hvps_eig, "lanczos_seconds": eig_secs,
            "trace_hutchinson": tr_h, "trace_hutch_pp": tr_pp, "trace_slq": slq_trace, "trace_seconds": trace_secs,
            "slq_seconds": slq_secs, "slq_range": [lo, hi],
            "min_max_ratio": bottom.as_ref().map(|b| b.values[0] / top.values[0]),
            "quadratic_model_edge": { "loss": quad_check.0, "quadratic_prediction": quad_check.1 },
        },
        "linear_interpolation": { "barrier": interp.barrier, "t_max": interp.t_max, "loss_start": interp.losses[0], "loss_end": interp.losses.last() },
        "line_seconds": line_secs,
        "seconds_total": t_start.elapsed().as_secs_f64(),
    });
    ctx.dir.write_summary(&summary)?;
    ctx.metrics()?.log(&serde_json::json!({"phase": "done", "summary": summary}))?;

    let mut r = Report::new("landscape-demo: loss landscape and Hessian of a small classifier");
    r.code("sh", &ctx.command());
    r.paragraph(&format!(
        "{} interleaved spirals ({} points each, noise {}), tanh MLP {:?} ({} parameters), cross-entropy, trained with the core \
         Trainer for {} epochs ({} steps, {:.1} s); {} parameter snapshots (initialisation and every evaluation). The landscape is \
         evaluated in f64 on a fixed subset of {} training points around the final parameters θc (loss {}).",
        p.data.classes, p.data.per_class, p.data.noise, sizes, dim, train_report.epochs_run, train_report.steps, train_secs,
        trajectory.len(), m, fmt_num(center_loss, 5)
    ));
    r.heading("Surfaces");
    r.table(&["slice", "grid", "L(θc)", "min (at)", "max", "seconds", "points/s"], &table_rows);
    r.figure(
        "PCA plane: training trajectory projected by least squares (red), centre = final point",
        "pca_contour.png",
    );
    r.figure("PCA plane, 3-D surface with the trajectory", "pca_surface3d.png");
    r.figure("Filter-normalised random plane (Li et al. 2018)", "random_contour.png");
    r.figure("Filter-normalised random plane, 3-D", "random_surface3d.png");
    r.figure("Plane of the top-2 Hessian eigenvectors", "hessian_contour.png");
    r.figure("Top-2 eigenvector plane, 3-D", "hessian_surface3d.png");
    r.heading("Trajectory on the PCA plane");
    r.paragraph(&format!(
        "Explained variance of the two PCA directions: {:.1} % and {:.1} % (singular values {} and {}).",
        100.0 * pca.explained_variance_ratio[0],
        100.0 * pca.explained_variance_ratio[1],
        fmt_num(pca.singular_values[0], 4),
        fmt_num(pca.singular_values[1], 4)
    ));
    let step = (proj.len() / 12).max(1);
    let traj_rows: Vec<Vec<String>> = proj
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
    r.table(
        &["snapshot", "PC1", "PC2", "loss at checkpoint", "loss at projection", "off-plane part ‖r‖/‖θ−θc‖"],
        &traj_rows,
    );
    r.heading("Hessian at the final point");
    let mut eig_rows: Vec<Vec<String>> = top
        .values
        .iter()
        .zip(&top.residuals)
        .enumerate()
        .map(|(i, (v, res))| vec![format!("λ{} (largest)", i + 1), fmt_num(*v, 6), format!("{res:.1e}")])
        .collect();
    if let Some(b) = &bottom {
        eig_rows.extend(
            b.values
                .iter()
                .zip(&b.residuals)
                .enumerate()
                .map(|(i, (v, res))| vec![format!("smallest #{}", i + 1), fmt_num(*v, 6), format!("{res:.1e}")]),
        );
    }
    r.table(&["eigenvalue", "value", "residual ‖Hv − λv‖"], &eig_rows);
    r.paragraph(&format!(
        "Lanczos with full reorthogonalisation: {} Hessian-vector products ({:?}) in {:.2} s; top-{} converged: {}. \
         Trace: Hutchinson {} ± {} and Hutch++ {} ± {} ({} products each), SLQ n·mean = {}. \
         Ratio λmin/λmax = {} (Li et al.'s convexity indicator). Quadratic model at the edge of the eigenvector plane along v1: \
         loss {} vs ½λ₁a² prediction {}.",
        hvps_eig,
        p.hvp,
        eig_secs,
        p.top_k,
        top.converged,
        fmt_num(tr_h.trace, 5),
        fmt_num(tr_h.std_error, 2),
        fmt_num(tr_pp.trace, 5),
        fmt_num(tr_pp.std_error, 2),
        p.trace_products,
        fmt_num(slq_trace, 5),
        bottom.as_ref().map_or("n/a".into(), |b| fmt_num(b.values[0] / top.values[0], 4)),
        fmt_num(quad_check.0, 5),
        fmt_num(quad_check.1, 5),
    ));
    r.figure(
        "Hessian eigenvalue density by stochastic Lanczos quadrature; points: Lanczos extreme eigenvalues",
        "hessian_density.png",
    );
    r.heading("1-D lines");
    r.paragraph(&format!(
        "Straight line from the initialisation to the final point: barrier max_t L − max(L(0), L(1)) = {} at t = {:.2}.",
        fmt_num(interp.barrier, 4),
        interp.t_max
    ));
    r.figure("Linear interpolation from initialisation to the final point", "line_interpolation.png");
    r.figure("Loss along a filter-normalised random direction and along the top eigenvector", "line_directions.png");
    r.paragraph(
        "Raw data: `raw/*.npy` and `raw/*.json` (surfaces, density, quadrature), `directions/` (centre and directions, reloadable \
         with `DirectionSet::load`), `trajectory.npy`, and `*.vtk` (legacy VTK structured grids for ParaView).",
    );
    r.write(&ctx.dir)?;
    Ok(())
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
            "top_k=2",
            "bottom_k=1",
            "lanczos.max_steps=40",
            "slq.probes=1",
            "slq.steps=10",
            "trace_products=9",
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
