//! The pCT slice of `track-image`: the phantom is turned through `angles` projections over 360°,
//! each scanned with a row of pencil-beam spots at y = 0; every method's tracks give one
//! line integral (the calibrated WEPL) per proton along a straight path; an RSP slice is
//! reconstructed with SART ([`crate::image::recon`]) and each insert's mean RSP is compared with
//! the material's true RSP.
//!
//! The cylinder and its inserts are uniform along y, so every proton of a projection measures the
//! same 2-D slice whatever its y; scattering in y only lengthens its path slightly.

use std::collections::BTreeMap;

use gradlab_core::experiment::RunContext;
use gradlab_core::plot::HeatMap;
use gradlab_core::stats::mean_std;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Method, Params, reconstruct_frame, spot_axis};
use crate::error::{Error, Result};
use crate::image::phantom::PhantomShape;
use crate::image::range::{Calibration, ROBUST_WINDOW_MM, RangeMethod, robust_window};
use crate::image::recon::{ImageGrid, SartConfig, SystemMatrix, sart};
use crate::sim::{Frame, PrimaryTruth, Simulator};

/// First frame index (RNG stream) of the pCT projections.
pub const PCT_FIRST: u64 = 4_000_000;

/// Regions whose true RSP is below this (air) get no relative error.
pub const MIN_RELATIVE_RSP: f64 = 0.1;

/// Settings of the pCT slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PctParams {
    /// Projection angles, evenly over 360° (≥ 2).
    pub angles: usize,
    /// Spot centres along x at y = 0: [first, last, step] [mm].
    pub spots_x_mm: [f64; 3],
    /// Frames per spot and angle.
    pub frames_per_spot: u64,
    /// Pixels per side of the square reconstruction grid.
    pub pixels: usize,
    /// Side of the grid [mm], centred on the cylinder's axis.
    pub fov_mm: f64,
    /// SART settings.
    #[serde(default)]
    pub sart: SartConfig,
    /// Path models to reconstruct with (each gives its own slice per method).
    #[serde(default = "default_paths")]
    pub paths: Vec<PathModel>,
    /// An insert's region of interest is the disc of its radius minus this [mm].
    #[serde(default = "default_margin")]
    pub roi_margin_mm: f64,
    /// Energy [MeV] at which a material's true RSP (stopping power relative to water) is taken.
    #[serde(default = "default_rsp_energy")]
    pub rsp_energy_mev: f64,
}

fn default_paths() -> Vec<PathModel> {
    vec![PathModel::SpotToExit, PathModel::ExitLine]
}
fn default_margin() -> f64 {
    2.0
}
fn default_rsp_energy() -> f64 {
    200.0
}

/// How a proton's path through the phantom is modelled (both straight lines; no most-likely path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PathModel {
    /// From the beam spot's centre at the phantom's entry plane to the track's position at the
    /// exit plane (the entry position is unknown without a front tracker).
    SpotToExit,
    /// Through the exit position along the track's tracker-layer direction, back to the entry
    /// plane.
    ExitLine,
}

impl PathModel {
    fn name(self) -> &'static str {
        match self {
            PathModel::SpotToExit => "spot → exit",
            PathModel::ExitLine => "exit line",
        }
    }
}

impl PctParams {
    /// Check the settings against the phantom; returns the spot centres.
    pub(super) fn validate(&self, shape: &PhantomShape) -> Result<Vec<f64>> {
        let PhantomShape::Cylinder { half_height_mm, inserts, .. } = shape else {
            return Err(Error::invalid("pct", "a non-cylinder phantom", "phantom.shape.kind = \"cylinder\""));
        };
        // The slice model needs a phantom uniform along y over the beam's extent.
        for (k, ins) in inserts.iter().enumerate() {
            if let Some(h) = ins.half_height_mm.filter(|h| h < half_height_mm) {
                return Err(Error::invalid(
                    format!("phantom.shape.inserts[{k}].half_height_mm"),
                    h,
                    format!(
                        "unset or ≥ the cylinder's {half_height_mm} mm for a pCT slice (the slice assumes inserts uniform along y)"
                    ),
                ));
            }
        }
        if !(2..=3600).contains(&self.angles) {
            return Err(Error::invalid("pct.angles", self.angles, "2..=3600 projections over 360°"));
        }
        if self.frames_per_spot == 0 {
            return Err(Error::invalid("pct.frames_per_spot", 0, ">= 1"));
        }
        if !(8..=1024).contains(&self.pixels) {
            return Err(Error::invalid("pct.pixels", self.pixels, "8..=1024"));
        }
        if !(self.fov_mm.is_finite() && self.fov_mm > 0.0) {
            return Err(Error::invalid("pct.fov_mm", self.fov_mm, "> 0 mm"));
        }
        if self.paths.is_empty() {
            return Err(Error::invalid("pct.paths", "[]", "one or more of \"spot_to_exit\", \"exit_line\""));
        }
        if !(self.roi_margin_mm.is_finite() && self.roi_margin_mm >= 0.0) {
            return Err(Error::invalid("pct.roi_margin_mm", self.roi_margin_mm, ">= 0 mm"));
        }
        if !(self.rsp_energy_mev.is_finite() && self.rsp_energy_mev > 1.0) {
            return Err(Error::invalid("pct.rsp_energy_mev", self.rsp_energy_mev, "> 1 MeV"));
        }
        self.sart.validate()?;
        let spots = spot_axis("pct.spots_x_mm", self.spots_x_mm)?;
        rois(shape, self)?;
        Ok(spots)
    }
}

/// One proton of a projection as the reconstruction sees it (world frame at its angle).
#[derive(Debug, Clone, Copy)]
struct Ray {
    angle: u32,
    spot_x: f64,
    exit_x: f64,
    slope_x: f64,
    wepl: f64,
}

/// Region of interest: name, centre (u, w), radius, true RSP.
#[derive(Debug, Clone, Serialize)]
struct Roi {
    name: String,
    centre: [f64; 2],
    radius_mm: f64,
    true_rsp: f64,
}

/// One reconstructed slice.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SliceResult {
    label: String,
    group: String,
    path: String,
    protons: usize,
    /// Protons dropped by the per-bin robust window.
    cut: usize,
    /// Mean reconstructed RSP per region (inserts, then "water").
    rsp: BTreeMap<String, f64>,
    /// Relative error per region [%] (regions whose true RSP is at least [`MIN_RELATIVE_RSP`];
    /// air's relative error is meaningless, its RSP is in `rsp`).
    error_pct: BTreeMap<String, f64>,
    /// Mean |error| over the inserts with a relative error [%].
    mean_abs_insert_error_pct: f64,
    /// Largest |error| over the inserts [%].
    max_abs_insert_error_pct: f64,
    seconds: f64,
    #[serde(skip)]
    image: Vec<f64>,
}

/// Seed-to-seed spread of the slices of one model configuration and path model.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SliceSpread {
    group: String,
    path: String,
    seeds: usize,
    /// (mean, std) over seeds of the mean |insert error| [%].
    mean_abs_insert_error_pct: (f64, f64),
    /// Per region, (mean, std) over seeds of the error [%].
    error_pct: BTreeMap<String, (f64, f64)>,
    /// RMS RSP difference between two seeds' slices inside the cylinder, per pair.
    seed_to_seed_rms: Vec<f64>,
}

fn true_rsp(name: &str, e: f64) -> Result<f64> {
    Ok(crate::materials::relative_stopping_power(&crate::materials::by_name(name)?, e))
}

fn rois(shape: &PhantomShape, pct: &PctParams) -> Result<Vec<Roi>> {
    let PhantomShape::Cylinder { inserts, .. } = shape else { unreachable!("validated") };
    let mut out = Vec::new();
    for ins in inserts {
        out.push(Roi {
            name: ins.material.clone(),
            centre: [ins.u_mm, ins.w_mm],
            radius_mm: ins.radius_mm - pct.roi_margin_mm,
            true_rsp: true_rsp(&ins.material, pct.rsp_energy_mev)?,
        });
    }
    // Water: a central disc clear of the inserts.
    let clear = inserts.iter().map(|i| i.u_mm.hypot(i.w_mm) - i.radius_mm).fold(f64::INFINITY, f64::min);
    let r = (clear.min(40.0) - pct.roi_margin_mm).max(0.0);
    out.push(Roi { name: "water".into(), centre: [0.0, 0.0], radius_mm: r, true_rsp: 1.0 });
    for roi in &out {
        if roi.radius_mm <= 0.0 {
            return Err(Error::invalid(
                "pct.roi_margin_mm",
                pct.roi_margin_mm,
                format!("less than the radius of region {} ", roi.name),
            ));
        }
    }
    Ok(out)
}

/// Straight path of a ray in the phantom frame, given the phantom's extent along z `[-h, h]`
/// about its centre and the rotation (cos θ, sin θ).
fn path_of(r: &Ray, model: Option<PathModel>, h: f64, (c, s): (f64, f64), truth: Option<(f64, f64)>) -> [[f64; 2]; 2] {
    let (x_in, x_out) = match (model, truth) {
        (Some(PathModel::SpotToExit), _) => (r.spot_x, r.exit_x),
        (Some(PathModel::ExitLine), _) => (r.exit_x - 2.0 * h * r.slope_x, r.exit_x),
        (None, Some(t)) => t,
        (None, None) => unreachable!("truth rays carry their entry and exit"),
    };
    // World (x, dz) → phantom frame (u, w) = (c x + s dz, −s x + c dz).
    let to = |x: f64, dz: f64| [c * x + s * dz, -s * x + c * dz];
    [to(x_in, -h), to(x_out, h)]
}

/// Keep the rays inside the robust window of their (angle, exit-x bin) group.
fn robust_cut(rays: &[Ray], bin_mm: f64) -> Vec<bool> {
    let mut groups: BTreeMap<(u32, i64), Vec<usize>> = BTreeMap::new();
    for (i, r) in rays.iter().enumerate() {
        groups.entry((r.angle, (r.exit_x / bin_mm).floor() as i64)).or_default().push(i);
    }
    let mut keep = vec![true; rays.len()];
    for idx in groups.values() {
        let v: Vec<f64> = idx.iter().map(|&i| rays[i].wepl).collect();
        if let Some((lo, hi)) = robust_window(&v, ROBUST_WINDOW_MM) {
            for &i in idx {
                keep[i] = (lo..=hi).contains(&rays[i].wepl);
            }
        }
    }
    keep
}

fn roi_mean(grid: &ImageGrid, img: &[f64], roi: &Roi) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for k in 0..grid.nz {
        for i in 0..grid.nx {
            let [x, z] = grid.centre(i, k);
            if (x - roi.centre[0]).hypot(z - roi.centre[1]) <= roi.radius_mm {
                sum += img[grid.index(i, k)];
                n += 1;
            }
        }
    }
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// What [`run_pct`] returns: the slices, their seed spreads, the figure files and the seconds
/// spent simulating.
pub(super) type PctOutput = (Vec<SliceResult>, Vec<SliceSpread>, Vec<String>, f64);

/// Run the pCT part.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_pct(
    ctx: &RunContext,
    p: &Params,
    pct: &PctParams,
    det: &crate::detector::DetectorConfig,
    methods: &[(String, Method)],
    cal: &[Calibration],
    range_method: RangeMethod,
) -> Result<PctOutput> {
    let spots_x = pct.validate(&p.phantom.shape)?;
    let grid = ImageGrid::centred(pct.pixels, pct.fov_mm)?;
    let rois = rois(&p.phantom.shape, pct)?;
    let k_cal = RangeMethod::ALL.iter().position(|&m| m == range_method).expect("in ALL");
    let cal = &cal[k_cal];
    let per_angle = spots_x.len() as u64 * pct.frames_per_spot;
    let h = 0.5 * p.phantom.thickness_mm;
    // Rays per method (index into `methods`), and the truth rays (true entry/exit, true WEPL).
    let mut rays: Vec<Vec<Ray>> = vec![Vec::new(); methods.len()];
    let mut truth_rays: Vec<(Ray, (f64, f64))> = Vec::new();
    let mut seconds = vec![0.0; methods.len()];
    let mut sim_secs = 0.0;
    for a in 0..pct.angles {
        let deg = 360.0 * a as f64 / pct.angles as f64;
        let mut cfg = p.setup.sim_config(det, p.phantom.thickness_mm, p.primaries);
        cfg.phantom.material = p.phantom.material.clone();
        cfg.phantom.shape = p.phantom.shape.clone();
        if let PhantomShape::Cylinder { rotation_deg, .. } = &mut cfg.phantom.shape {
            *rotation_deg = deg;
        }
        cfg.beam.spots = spots_x.iter().map(|&x| [x, 0.0]).collect();
        let sim = Simulator::new(&cfg)?;
        let depth = sim.detector.layer_wet_mm(cfg.beam.energy_mev);
        let cm = sim.detector.config.cluster_model.clone();
        let exit_z = sim.detector.front_z() - cfg.phantom.gap_mm;
        let first = PCT_FIRST + a as u64 * per_angle;
        let t0 = std::time::Instant::now();
        let frames: Vec<(u64, (Frame, Vec<PrimaryTruth>))> =
            (first..first + per_angle).into_par_iter().map(|f| (f, sim.simulate_frame_with_truth(p.seed, f))).collect();
        sim_secs += t0.elapsed().as_secs_f64();
        for (f, (_, truth)) in &frames {
            let spot_x = spots_x[(*f % spots_x.len() as u64) as usize];
            for t in truth {
                if let (Some(e), Some(x)) = (t.phantom_entry, t.phantom_exit) {
                    let r = Ray { angle: a as u32, spot_x, exit_x: x[0], slope_x: x[2], wepl: t.wepl_mm };
                    truth_rays.push((r, (e[0], x[0])));
                }
            }
        }
        for (m, (_, method)) in methods.iter().enumerate() {
            let t0 = std::time::Instant::now();
            let one = |(f, (frame, _)): &(u64, (Frame, Vec<PrimaryTruth>))| -> Result<Vec<Ray>> {
                let spot_x = spots_x[(*f % spots_x.len() as u64) as usize];
                let (measured, _) = reconstruct_frame(method, frame, p, &depth, &cm, exit_z)?;
                Ok(measured
                    .iter()
                    .filter_map(|t| {
                        t.observable[k_cal].map(|o| Ray {
                            angle: a as u32,
                            spot_x,
                            exit_x: t.exit_xy[0],
                            slope_x: t.exit_slope[0],
                            wepl: cal.wepl(o),
                        })
                    })
                    .collect())
            };
            let got: Vec<Vec<Ray>> = match method {
                Method::Model(_) => frames.iter().map(one).collect::<Result<_>>()?,
                _ => frames.par_iter().map(one).collect::<Result<_>>()?,
            };
            rays[m].extend(got.into_iter().flatten());
            seconds[m] += t0.elapsed().as_secs_f64();
        }
    }
    // Reconstructions.
    let mut results = Vec::new();
    let reconstruct = |label: &str,
                       path: &str,
                       paths: Vec<[[f64; 2]; 2]>,
                       values: Vec<f64>,
                       cut: usize,
                       secs: f64|
     -> Result<SliceResult> {
        let t0 = std::time::Instant::now();
        let a = SystemMatrix::from_paths(&grid, &paths)?;
        let image = sart(&a, &values, &pct.sart, None)?;
        let mut rsp = BTreeMap::new();
        let mut error_pct = BTreeMap::new();
        for roi in &rois {
            let m = roi_mean(&grid, &image, roi);
            rsp.insert(roi.name.clone(), m);
            if roi.true_rsp >= MIN_RELATIVE_RSP {
                error_pct.insert(roi.name.clone(), 100.0 * (m - roi.true_rsp) / roi.true_rsp);
            }
        }
        let ins: Vec<f64> =
            rois.iter().filter(|r| r.name != "water").filter_map(|r| error_pct.get(&r.name)).map(|e| e.abs()).collect();
        Ok(SliceResult {
            label: label.into(),
            group: super::group_of(label).into(),
            path: path.into(),
            protons: values.len(),
            cut,
            rsp,
            error_pct,
            mean_abs_insert_error_pct: ins.iter().sum::<f64>() / ins.len().max(1) as f64,
            max_abs_insert_error_pct: ins.iter().copied().fold(0.0, f64::max),
            seconds: secs + t0.elapsed().as_secs_f64(),
            image,
        })
    };
    let rot = |a: u32| {
        let th = (360.0 * a as f64 / pct.angles as f64).to_radians();
        (th.cos(), th.sin())
    };
    {
        let rs: Vec<Ray> = truth_rays.iter().map(|r| r.0).collect();
        let paths = truth_rays.iter().map(|(r, t)| path_of(r, None, h, rot(r.angle), Some(*t))).collect();
        results.push(reconstruct("truth", "true entry → exit", paths, rs.iter().map(|r| r.wepl).collect(), 0, 0.0)?);
    }
    for (m, (label, _)) in methods.iter().enumerate() {
        let keep = robust_cut(&rays[m], grid.pixel_mm);
        let kept: Vec<Ray> = rays[m].iter().zip(&keep).filter(|(_, k)| **k).map(|(r, _)| *r).collect();
        let cut = rays[m].len() - kept.len();
        for &model in &pct.paths {
            let paths = kept.iter().map(|r| path_of(r, Some(model), h, rot(r.angle), None)).collect();
            results.push(reconstruct(
                label,
                model.name(),
                paths,
                kept.iter().map(|r| r.wepl).collect(),
                cut,
                seconds[m],
            )?);
        }
    }
    let spread = spreads(&results, &grid, &p.phantom.shape);
    let figures = figures(ctx, &grid, &results, &rois)?;
    Ok((results, spread, figures, sim_secs))
}

fn spreads(results: &[SliceResult], grid: &ImageGrid, shape: &PhantomShape) -> Vec<SliceSpread> {
    let PhantomShape::Cylinder { radius_mm, .. } = shape else { return Vec::new() };
    let inside: Vec<usize> = (0..grid.nz)
        .flat_map(|k| (0..grid.nx).map(move |i| (i, k)))
        .filter(|&(i, k)| {
            let [x, z] = grid.centre(i, k);
            x.hypot(z) <= *radius_mm
        })
        .map(|(i, k)| grid.index(i, k))
        .collect();
    let mut groups: BTreeMap<(&str, &str), Vec<&SliceResult>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.group != r.label) {
        groups.entry((r.group.as_str(), r.path.as_str())).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((g, path), rs)| {
            let mut pairs = Vec::new();
            for (a, ra) in rs.iter().enumerate() {
                for rb in rs.iter().skip(a + 1) {
                    let ss: f64 = inside.iter().map(|&j| (ra.image[j] - rb.image[j]).powi(2)).sum();
                    pairs.push((ss / inside.len().max(1) as f64).sqrt());
                }
            }
            let mut error_pct = BTreeMap::new();
            for name in rs[0].error_pct.keys() {
                let v: Vec<f64> = rs.iter().map(|r| r.error_pct[name]).collect();
                error_pct.insert(name.clone(), mean_std(&v));
            }
            let v: Vec<f64> = rs.iter().map(|r| r.mean_abs_insert_error_pct).collect();
            SliceSpread {
                group: g.into(),
                path: path.into(),
                seeds: rs.len(),
                mean_abs_insert_error_pct: mean_std(&v),
                error_pct,
                seed_to_seed_rms: pairs,
            }
        })
        .collect()
}

fn figures(ctx: &RunContext, grid: &ImageGrid, results: &[SliceResult], rois: &[Roi]) -> Result<Vec<String>> {
    let xs: Vec<f64> = (0..grid.nx).map(|i| grid.centre(i, 0)[0]).collect();
    let zs: Vec<f64> = (0..grid.nz).map(|k| grid.centre(0, k)[1]).collect();
    // Pixels outside the scanned disc (corners that only some projections cross) are left blank.
    let r_fov = 0.5 * (grid.nx as f64 * grid.pixel_mm).min(grid.nz as f64 * grid.pixel_mm);
    let rows = |img: &[f64]| -> Vec<Vec<f64>> {
        (0..grid.nz)
            .map(|k| {
                (0..grid.nx)
                    .map(|i| {
                        let [x, z] = grid.centre(i, k);
                        if x.hypot(z) <= r_fov { img[grid.index(i, k)] } else { f64::NAN }
                    })
                    .collect()
            })
            .collect()
    };
    let mut files = Vec::new();
    for r in results {
        let stem = format!(
            "pct_{}_{}",
            crate::experiments::common::stem(&r.label),
            crate::experiments::common::stem(&r.path.replace('→', "to"))
        );
        let mut h = HeatMap::new(&format!("{} ({}): RSP", r.label, r.path), xs.clone(), zs.clone(), rows(&r.image))
            .x_label("u [mm]")
            .y_label("w [mm]")
            .z_label("RSP");
        for roi in rois.iter().filter(|r| r.name != "water") {
            h = h.marker(&roi.name, (roi.centre[0], roi.centre[1]));
        }
        h.save(&ctx.dir.path().join(&stem))?;
        files.push(format!("{stem}.png"));
    }
    Ok(files)
}

/// Report tables of the pCT part.
pub(super) fn report(
    report: &mut gradlab_core::report::Report,
    pct: &PctParams,
    results: &[SliceResult],
    spreads: &[SliceSpread],
    sim_secs: f64,
) {
    report.heading("pCT slice");
    report.paragraph(&format!(
        "{} projections over 360°, {} frames per spot over spots {:?} mm (y = 0), simulated in {sim_secs:.1} s; \
         {}×{} pixels over {} mm; SART {} iterations × {} subsets, relaxation {}, non-negative {}. Values: the \
         calibrated WEPL of each track; per (angle, 1-pixel exit-x bin) a robust window (median ± max(3 σ_MAD, 10 \
         mm)) drops outliers (column \"cut\"). Paths are straight lines: \"truth\" uses each primary's true entry and \
         exit and its true WEPL (the path-model floor); \"spot → exit\" the beam spot's centre at entry; \"exit line\" \
         the exit position and tracker direction. Regions: insert radius − {} mm; water: a central disc. True RSP: \
         Bethe stopping power relative to water at {} MeV.",
        pct.angles,
        pct.frames_per_spot,
        pct.spots_x_mm,
        pct.pixels,
        pct.pixels,
        pct.fov_mm,
        pct.sart.iterations,
        pct.sart.subsets,
        pct.sart.relaxation,
        pct.sart.non_negative,
        pct.roi_margin_mm,
        pct.rsp_energy_mev,
    ));
    let names: Vec<String> = results.first().map(|r| r.rsp.keys().cloned().collect()).unwrap_or_default();
    let mut header =
        vec!["method".to_string(), "path".into(), "protons (cut)".into(), "mean / max |insert error| %".into()];
    header.extend(names.iter().map(|n| format!("{n}: RSP (error %)")));
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let mut row = vec![
                r.label.clone(),
                r.path.clone(),
                format!("{} ({})", r.protons, r.cut),
                format!("{:.2} / {:.2}", r.mean_abs_insert_error_pct, r.max_abs_insert_error_pct),
            ];
            row.extend(names.iter().map(|n| match r.error_pct.get(n) {
                Some(e) => format!("{:.3} ({e:+.2})", r.rsp[n]),
                None => format!("{:.3}", r.rsp[n]),
            }));
            row
        })
        .collect();
    let h: Vec<&str> = header.iter().map(String::as_str).collect();
    report.table(&h, &rows);
    if !spreads.is_empty() {
        report.paragraph("Across seeds (mean ± std over seeds; seed-to-seed RMS RSP difference inside the cylinder):");
        let names: Vec<String> = spreads[0].error_pct.keys().cloned().collect();
        let rows: Vec<Vec<String>> = spreads
            .iter()
            .map(|s| {
                vec![
                    s.group.clone(),
                    s.path.clone(),
                    s.seeds.to_string(),
                    format!("{:.2} ± {:.2}", s.mean_abs_insert_error_pct.0, s.mean_abs_insert_error_pct.1),
                    s.seed_to_seed_rms.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(", "),
                ]
                .into_iter()
                .chain(names.iter().map(|n| {
                    s.error_pct.get(n).map(|e| format!("{:+.2} ± {:.2}", e.0, e.1)).unwrap_or_else(|| "—".into())
                }))
                .collect()
            })
            .collect();
        let mut header: Vec<String> =
            ["configuration", "path", "seeds", "mean |insert error| %", "seed-to-seed RMS [RSP]"]
                .map(String::from)
                .to_vec();
        header.extend(names.iter().map(|n| format!("{n} error %")));
        let h: Vec<&str> = header.iter().map(String::as_str).collect();
        report.table(&h, &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PctParams {
        serde_json::from_value(serde_json::json!({
            "angles": 4, "spots_x_mm": [-10.0, 10.0, 10.0], "frames_per_spot": 1, "pixels": 16, "fov_mm": 40.0
        }))
        .unwrap()
    }

    #[test]
    fn bad_settings_are_refused_by_name_before_any_work() {
        let cyl = PhantomShape::ctp404();
        assert_eq!(params().validate(&cyl).unwrap(), vec![-10.0, 0.0, 10.0]);
        let e = params().validate(&PhantomShape::Slab).unwrap_err().to_string();
        assert!(e.contains("cylinder"), "{e}");
        for (field, edit) in [
            ("pct.angles", Box::new(|p: &mut PctParams| p.angles = 1) as Box<dyn Fn(&mut PctParams)>),
            ("pct.angles", Box::new(|p: &mut PctParams| p.angles = 100_000)),
            ("pct.pixels", Box::new(|p: &mut PctParams| p.pixels = 4096)),
            ("pct.fov_mm", Box::new(|p: &mut PctParams| p.fov_mm = f64::NAN)),
            ("pct.frames_per_spot", Box::new(|p: &mut PctParams| p.frames_per_spot = 0)),
            ("pct.paths", Box::new(|p: &mut PctParams| p.paths.clear())),
            ("pct.spots_x_mm", Box::new(|p: &mut PctParams| p.spots_x_mm = [10.0, -10.0, 1.0])),
            ("sart.relaxation", Box::new(|p: &mut PctParams| p.sart.relaxation = 3.0)),
        ] {
            let mut p = params();
            edit(&mut p);
            let e = p.validate(&cyl).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        // Inserts shorter than the cylinder break the slice's uniformity along y.
        let mut short = cyl.clone();
        if let PhantomShape::Cylinder { inserts, .. } = &mut short {
            inserts[2].half_height_mm = Some(5.0);
        }
        let e = params().validate(&short).unwrap_err().to_string();
        assert!(e.contains("inserts[2].half_height_mm"), "{e}");
        // A margin that leaves an insert no region.
        let mut p = params();
        p.roi_margin_mm = 7.0;
        let e = p.validate(&cyl).unwrap_err().to_string();
        assert!(e.contains("pct.roi_margin_mm"), "{e}");
    }

    #[test]
    fn paths_rotate_into_the_phantom_frame() {
        let r = Ray { angle: 0, spot_x: 1.0, exit_x: 3.0, slope_x: 0.01, wepl: 0.0 };
        // θ = 0: the world frame.
        assert_eq!(path_of(&r, Some(PathModel::SpotToExit), 80.0, (1.0, 0.0), None), [[1.0, -80.0], [3.0, 80.0]]);
        let p = path_of(&r, Some(PathModel::ExitLine), 80.0, (1.0, 0.0), None);
        assert!((p[0][0] - (3.0 - 1.6)).abs() < 1e-12 && p[1] == [3.0, 80.0]);
        // θ = 90°: u = dz, w = −x (the geometry's convention, `Geometry::material_at`).
        let p = path_of(&r, Some(PathModel::SpotToExit), 80.0, (0.0, 1.0), None);
        assert_eq!(p, [[-80.0, -1.0], [80.0, -3.0]]);
    }
}
