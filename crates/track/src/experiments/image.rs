//! `track-image`: what tracking errors cost downstream. A phantom with material inserts is
//! scanned with a pencil beam over a grid of spots; every frame's tracks are reconstructed by
//! each method (the truth "oracle", the track follower, and trained PAT/PTT models), each track's
//! residual range is turned into the phantom's water-equivalent path length (WEPL) with a
//! water-slab calibration the run makes itself, and the WEPL errors per track and of the
//! radiograph (robust mean WEPL per pixel at the phantom's exit plane) are compared. Models trained
//! with several seeds are grouped, and the seed-to-seed spread of each metric is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::plot::{HeatMap, LinePlot, Mark};
use gradlab_core::report::Report;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::follower::{FollowerConfig, follow};
use crate::graph::HitGraph;
use crate::image::phantom::PhantomShape;
use crate::image::range::{Calibration, RangeMethod};
use crate::image::{ErrorStats, MeasuredTrack, Radiograph, calibrate, measure_tracks, oracle_tracks};
use crate::setup::SetupParams;
use crate::sim::{Frame, PhantomConfig, PrimaryTruth, Simulator};
use crate::tracks::TrackFilter;
use crate::training::{MODEL_CARD_FILE, TrainedModel};
use gradlab_core::stats::mean_std;

mod pct;
pub use pct::{PathModel, PctParams};

/// First frame index (RNG stream) of the calibration frames.
pub const CALIBRATION_FIRST: u64 = 3_000_000;
/// First frame index of the phantom scan.
pub const SCAN_FIRST: u64 = 3_500_000;

/// Parameters of `track-image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The run's seed (simulation).
    pub seed: u64,
    /// Detector, beam, physics and graph cuts.
    #[serde(default)]
    pub setup: SetupParams,
    /// The phantom (material, thickness of its box along the beam, shape).
    pub phantom: PhantomParams,
    /// Primaries per readout frame.
    pub primaries: usize,
    /// The water-slab calibration.
    pub calibration: CalibrationParams,
    /// The scan and the radiograph.
    pub radiograph: RadiographParams,
    /// Trained models: folders holding `model.json` and weights, or folders of such folders
    /// (e.g. a `track-compare` run's `checkpoints/`). Labels are the folder names; models whose
    /// labels differ only in a `-seedN` suffix are grouped.
    #[serde(default)]
    pub models: Vec<String>,
    /// Track follower.
    #[serde(default)]
    pub follower: FollowerConfig,
    /// Track filter of the oracle and the follower (models use their card's).
    #[serde(default)]
    pub filter: TrackFilter,
    /// The pCT slice (needs a cylinder phantom; none: radiograph only).
    #[serde(default)]
    pub pct: Option<PctParams>,
}

/// The phantom of `track-image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhantomParams {
    /// Body material.
    #[serde(default = "water")]
    pub material: String,
    /// Extent along the beam [mm].
    pub thickness_mm: f64,
    /// Shape (default: the CTP404-like cylinder).
    #[serde(default = "PhantomShape::ctp404")]
    pub shape: PhantomShape,
}

fn water() -> String {
    "water".into()
}

/// The water-slab calibration of `track-image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationParams {
    /// Water thicknesses [mm].
    pub thicknesses_mm: Vec<f64>,
    /// Frames per thickness.
    pub frames: u64,
}

/// The scan and radiograph of `track-image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiographParams {
    /// Spot centres along x: [first, last, step] [mm].
    pub spots_x_mm: [f64; 3],
    /// Spot centres along y: [first, last, step] [mm].
    pub spots_y_mm: [f64; 3],
    /// Frames per spot.
    pub frames_per_spot: u64,
    /// Radiograph extent along x [mm].
    pub x_mm: [f64; 2],
    /// Radiograph extent along y [mm].
    pub y_mm: [f64; 2],
    /// Pixel size [mm].
    pub pixel_mm: f64,
    /// Pixels with fewer protons are left out.
    #[serde(default = "three")]
    pub min_count: usize,
    /// Range method of the radiograph.
    #[serde(default = "bragg")]
    pub range_method: RangeMethod,
}

fn three() -> usize {
    3
}
fn bragg() -> RangeMethod {
    RangeMethod::BraggFit
}

/// The spot centres of `[first, last, step]` (inclusive of `last` up to rounding).
fn spot_axis(field: &str, a: [f64; 3]) -> Result<Vec<f64>> {
    let [lo, hi, step] = a;
    if !(lo.is_finite() && hi.is_finite() && step.is_finite() && step > 0.0 && hi >= lo) {
        return Err(Error::invalid(field, format!("{a:?}"), "[first, last, step] with last >= first and step > 0"));
    }
    let n = ((hi - lo) / step + 1e-9).floor() as usize + 1;
    if n > 10_000 {
        return Err(Error::invalid(field, format!("{a:?}"), "at most 10,000 spots per axis"));
    }
    Ok((0..n).map(|k| lo + step * k as f64).collect())
}

impl Params {
    fn validate(&self) -> Result<()> {
        if self.primaries == 0 || self.primaries > 10_000 {
            return Err(Error::invalid("primaries", self.primaries, "1..=10000"));
        }
        if self.radiograph.frames_per_spot == 0 {
            return Err(Error::invalid("radiograph.frames_per_spot", 0, ">= 1"));
        }
        self.phantom.shape.validate(self.phantom.thickness_mm)?;
        if let Some(pc) = &self.pct {
            pc.validate(&self.phantom.shape)?;
        }
        self.follower.validate()
    }

    fn spots(&self) -> Result<Vec<[f64; 2]>> {
        let xs = spot_axis("radiograph.spots_x_mm", self.radiograph.spots_x_mm)?;
        let ys = spot_axis("radiograph.spots_y_mm", self.radiograph.spots_y_mm)?;
        Ok(ys.iter().flat_map(|&y| xs.iter().map(move |&x| [x, y])).collect())
    }
}

/// A reconstruction method of the comparison.
enum Method {
    Oracle,
    Follower,
    Model(Box<TrainedModel>),
}

/// Every model folder under the `models` entries, with its label.
fn model_dirs(entries: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in entries {
        let p = Path::new(e);
        if p.join(MODEL_CARD_FILE).is_file() {
            out.push((label_of(p), p.to_path_buf()));
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|err| Error::invalid("models", e, format!("a readable folder ({err})")))?
            .filter_map(|d| d.ok().map(|d| d.path()))
            .filter(|d| d.join(MODEL_CARD_FILE).is_file())
            .collect();
        if found.is_empty() {
            return Err(Error::invalid(
                "models",
                e,
                format!("a folder with {MODEL_CARD_FILE} (a trained model) or folders of them (a run's checkpoints/)"),
            ));
        }
        found.sort();
        out.extend(found.into_iter().map(|d| (label_of(&d), d)));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (l, _) in &out {
        if !seen.insert(l.clone()) {
            return Err(Error::invalid("models", l, "models with distinct folder names"));
        }
    }
    Ok(out)
}

fn label_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// The configuration a label belongs to (without its `-seedN` suffix).
fn group_of(label: &str) -> &str {
    match label.rfind("-seed") {
        Some(i) if label[i + 5..].chars().all(|c| c.is_ascii_digit()) && i + 5 < label.len() => &label[..i],
        _ => label,
    }
}

/// Where [`MethodResult::by_true_wepl`] splits the tracks [mm].
const WEPL_BAND_MM: f64 = 100.0;

/// Tracks in one band of true WEPL.
#[derive(Debug, Clone, Default, Serialize)]
struct Band {
    tracks: usize,
    /// Count per track kind.
    kinds: BTreeMap<String, usize>,
    /// Bragg-fit WEPL error of the band's tracks.
    error: Option<ErrorStats>,
    #[serde(skip)]
    errors: Vec<f64>,
}

/// Per-method results.
#[derive(Debug, Clone, Serialize)]
struct MethodResult {
    label: String,
    group: String,
    primaries: usize,
    tracks: usize,
    /// Tracks not starting in layers 0 and 1 (no position).
    unplaced: usize,
    /// WEPL error statistics per range method (est − truth of the track's first hit's primary).
    wepl_error: BTreeMap<String, Option<ErrorStats>>,
    /// The placed tracks by kind ([`crate::image::TrackKind`]: `primary`, `with_secondary`,
    /// `mixed`), with the Bragg-fit WEPL error of each kind, and `repeat`: a further track
    /// starting on a primary that already has one in the frame (counted in its kind too).
    breakdown: BTreeMap<String, (usize, Option<ErrorStats>)>,
    /// The placed tracks split by the true WEPL of their first hit's primary (below / at least
    /// [`WEPL_BAND_MM`]): the models were trained behind 100–200 mm of water.
    by_true_wepl: BTreeMap<String, Band>,
    /// Radiograph (robust mean per pixel) minus the true map: statistics over the pixels both cover.
    radiograph_error: Option<ErrorStats>,
    radiograph_pixels: usize,
    /// The same with the median per pixel (truth: the median true WEPL per pixel).
    radiograph_error_median: Option<ErrorStats>,
    seconds: f64,
    #[serde(skip)]
    map: Vec<f64>,
}

/// Run the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.validate()?;
    let spots = p.spots()?;
    let det = p.setup.detector.load()?;
    let models = model_dirs(&p.models)?;
    // Calibration on water slabs (oracle tracks: a calibration uses single, known protons).
    let t0 = std::time::Instant::now();
    let cal = calibrate(
        |t| p.setup.simulator(&det, t, p.primaries),
        &p.calibration.thicknesses_mm,
        p.calibration.frames,
        p.seed,
        CALIBRATION_FIRST,
        &p.setup.graph,
        &p.filter,
    )?;
    let cal_secs = t0.elapsed().as_secs_f64();
    ctx.metrics()?.log(&serde_json::json!({ "event": "calibration", "calibration": cal, "seconds": cal_secs }))?;
    // The scan.
    let mut cfg = p.setup.sim_config(&det, p.phantom.thickness_mm, p.primaries);
    cfg.phantom = PhantomConfig {
        material: p.phantom.material.clone(),
        thickness_mm: p.phantom.thickness_mm,
        gap_mm: p.setup.phantom_gap_mm,
        shape: p.phantom.shape.clone(),
    };
    cfg.beam.spots = spots.clone();
    let sim = Simulator::new(&cfg)?;
    let n_frames = spots.len() as u64 * p.radiograph.frames_per_spot;
    let t0 = std::time::Instant::now();
    let scan: Vec<(Frame, Vec<PrimaryTruth>)> =
        (SCAN_FIRST..SCAN_FIRST + n_frames).into_par_iter().map(|f| sim.simulate_frame_with_truth(p.seed, f)).collect();
    let sim_secs = t0.elapsed().as_secs_f64();
    let rp = &p.radiograph;
    let mut truth_map = Radiograph::new(rp.x_mm, rp.y_mm, rp.pixel_mm)?;
    for (_, truth) in &scan {
        for t in truth {
            if let Some([x, y, _, _]) = t.phantom_exit {
                truth_map.add(x, y, t.wepl_mm);
            }
        }
    }
    let truth_mean = truth_map.robust_mean_map(rp.min_count);
    let truth_median = truth_map.median_map(rp.min_count);
    let depth = sim.detector.layer_wet_mm(cfg.beam.energy_mev);
    let cm = sim.detector.config.cluster_model.clone();
    let exit_z = sim.detector.front_z() - cfg.phantom.gap_mm;
    let mut methods: Vec<(String, Method)> =
        vec![("oracle".into(), Method::Oracle), ("follower".into(), Method::Follower)];
    for (label, dir) in &models {
        methods.push((label.clone(), Method::Model(Box::new(TrainedModel::load(dir)?))));
    }
    let mut results = Vec::new();
    for (label, method) in &methods {
        let t0 = std::time::Instant::now();
        let reconstruct = |frame: &Frame| reconstruct_frame(method, frame, &p, &depth, &cm, exit_z);
        let per_frame: Vec<(Vec<MeasuredTrack>, usize)> = match method {
            Method::Model(_) => scan.iter().map(|(f, _)| reconstruct(f)).collect::<Result<_>>()?,
            _ => scan.par_iter().map(|(f, _)| reconstruct(f)).collect::<Result<_>>()?,
        };
        let res = score(label, &per_frame, &scan, &cal, rp, [&truth_mean, &truth_median], t0.elapsed().as_secs_f64())?;
        ctx.metrics()?.log(&serde_json::json!({ "event": "method", "result": &res }))?;
        results.push(res);
    }
    let seed_spread = seed_groups(&results);
    let mut figures = write_figures(ctx, &truth_map, &truth_mean, &results, &cal)?;
    let pct = match &p.pct {
        Some(pc) => {
            let t0 = std::time::Instant::now();
            let (slices, spreads, files, pct_sim) = pct::run_pct(ctx, &p, pc, &det, &methods, &cal, rp.range_method)?;
            figures.extend(files);
            Some((slices, spreads, pct_sim, t0.elapsed().as_secs_f64()))
        }
        None => None,
    };
    write_report(ctx, &p, &spots, &cal, &results, &seed_spread, n_frames, sim_secs, cal_secs, &figures, pct.as_ref())?;
    ctx.dir.write_summary(&serde_json::json!({
        "calibration": cal,
        "frames": n_frames,
        "spots": spots.len(),
        "methods": results,
        "groups": seed_spread,
        "pct": pct.as_ref().map(|(s, g, _, _)| serde_json::json!({ "slices": s, "groups": g })),
        "seconds": {
            "calibration": cal_secs,
            "scan_simulation": sim_secs,
            "pct_simulation": pct.as_ref().map(|x| x.2),
            "pct_total": pct.as_ref().map(|x| x.3),
        },
    }))?;
    Ok(())
}

/// One frame's tracks by `method`, as measurements.
fn reconstruct_frame(
    method: &Method,
    frame: &Frame,
    p: &Params,
    depth: &[f64],
    cm: &crate::physics::ClusterModel,
    exit_z: f64,
) -> Result<(Vec<MeasuredTrack>, usize)> {
    let (g, tracks) = match method {
        Method::Oracle => {
            let g = HitGraph::build(frame, &p.setup.graph)?;
            let t = oracle_tracks(&g, &p.filter)?;
            (g, t)
        }
        Method::Follower => {
            let g = HitGraph::build(frame, &p.setup.graph)?;
            let t = p.filter.apply(&g, follow(&g, &p.follower)?);
            (g, t)
        }
        Method::Model(m) => {
            let r = m.reconstruct(frame)?;
            (r.graph, r.tracks)
        }
    };
    Ok(measure_tracks(&g, frame, &tracks, depth, cm, exit_z))
}

fn score(
    label: &str,
    per_frame: &[(Vec<MeasuredTrack>, usize)],
    scan: &[(Frame, Vec<PrimaryTruth>)],
    cal: &[Calibration],
    rp: &RadiographParams,
    [truth_mean, truth_median]: [&[f64]; 2],
    seconds: f64,
) -> Result<MethodResult> {
    let mut errors = [Vec::new(), Vec::new()];
    let mut map = Radiograph::new(rp.x_mm, rp.y_mm, rp.pixel_mm)?;
    let k_map = RangeMethod::ALL.iter().position(|&m| m == rp.range_method).expect("in ALL");
    let (mut tracks, mut unplaced, mut primaries) = (0, 0, 0);
    let k_bragg = RangeMethod::ALL.iter().position(|&m| m == RangeMethod::BraggFit).expect("in ALL");
    let mut kinds: BTreeMap<String, (usize, Vec<f64>)> = BTreeMap::new();
    let mut bands: BTreeMap<String, Band> = BTreeMap::new();
    for ((measured, skipped), (_, truth)) in per_frame.iter().zip(scan) {
        tracks += measured.len() + skipped;
        unplaced += skipped;
        primaries += truth.len();
        let mut seen = std::collections::HashSet::new();
        for t in measured {
            let Some(tr) = truth.get(t.primary as usize) else { continue };
            let kind = t.kind.name();
            let repeat = !seen.insert(t.primary);
            let err = t.observable[k_bragg].map(|o| cal[k_bragg].wepl(o) - tr.wepl_mm);
            let band = if tr.wepl_mm < WEPL_BAND_MM {
                format!("true WEPL < {WEPL_BAND_MM} mm")
            } else {
                format!("true WEPL ≥ {WEPL_BAND_MM} mm")
            };
            let b = bands.entry(band).or_default();
            b.tracks += 1;
            *b.kinds.entry(kind.to_string()).or_default() += 1;
            b.errors.extend(err);
            for kd in std::iter::once(kind).chain(repeat.then_some("repeat")) {
                let e = kinds.entry(kd.to_string()).or_default();
                e.0 += 1;
                e.1.extend(err);
            }
            for (k, c) in cal.iter().enumerate() {
                if let Some(o) = t.observable[k] {
                    let w = c.wepl(o);
                    errors[k].push(w - tr.wepl_mm);
                    if k == k_map {
                        map.add(t.exit_xy[0], t.exit_xy[1], w);
                    }
                }
            }
        }
    }
    let breakdown = kinds.into_iter().map(|(k, (n, e))| (k, (n, ErrorStats::of(&e)))).collect();
    for b in bands.values_mut() {
        b.error = ErrorStats::of(&b.errors);
    }
    let est = map.robust_mean_map(rp.min_count);
    let diff: Vec<f64> = est.iter().zip(truth_mean).map(|(a, b)| a - b).filter(|d| d.is_finite()).collect();
    let diff_median: Vec<f64> =
        map.median_map(rp.min_count).iter().zip(truth_median).map(|(a, b)| a - b).filter(|d| d.is_finite()).collect();
    let wepl_error = RangeMethod::ALL
        .iter()
        .zip(&errors)
        .map(|(m, e)| (serde_json::to_value(m).unwrap().as_str().unwrap_or("?").to_string(), ErrorStats::of(e)))
        .collect();
    Ok(MethodResult {
        label: label.into(),
        group: group_of(label).into(),
        primaries,
        tracks,
        unplaced,
        wepl_error,
        breakdown,
        by_true_wepl: bands,
        radiograph_error: ErrorStats::of(&diff),
        radiograph_pixels: diff.len(),
        radiograph_error_median: ErrorStats::of(&diff_median),
        seconds,
        map: est,
    })
}

/// Seed-to-seed spread per model configuration.
#[derive(Debug, Clone, Serialize)]
struct GroupSpread {
    group: String,
    seeds: usize,
    /// (mean, std) over seeds of the per-track WEPL σ_MAD [mm] (Bragg fit).
    wepl_sigma: (f64, f64),
    /// (mean, std) over seeds of the per-track WEPL RMS error [mm].
    wepl_rms: (f64, f64),
    /// (mean, std) over seeds of the radiograph's RMS error [mm].
    radiograph_rms: (f64, f64),
    /// RMS over pixels of the difference between two seeds' radiographs [mm], per pair.
    seed_to_seed_rms: Vec<f64>,
}

fn seed_groups(results: &[MethodResult]) -> Vec<GroupSpread> {
    let mut groups: BTreeMap<&str, Vec<&MethodResult>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.group != r.label) {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(g, rs)| {
            let key = |r: &MethodResult| r.wepl_error.get("bragg_fit").copied().flatten();
            let stat = |f: &dyn Fn(&MethodResult) -> Option<f64>| {
                let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
                mean_std(&v)
            };
            let mut pairs = Vec::new();
            for (a, ra) in rs.iter().enumerate() {
                for rb in rs.iter().skip(a + 1) {
                    let d: Vec<f64> =
                        ra.map.iter().zip(&rb.map).map(|(x, y)| x - y).filter(|d| d.is_finite()).collect();
                    if !d.is_empty() {
                        pairs.push((d.iter().map(|v| v * v).sum::<f64>() / d.len() as f64).sqrt());
                    }
                }
            }
            GroupSpread {
                group: g.into(),
                seeds: rs.len(),
                wepl_sigma: stat(&|r| key(r).map(|s| s.sigma_mad)),
                wepl_rms: stat(&|r| key(r).map(|s| s.rms)),
                radiograph_rms: stat(&|r| r.radiograph_error.map(|s| s.rms)),
                seed_to_seed_rms: pairs,
            }
        })
        .collect()
}

fn grid_rows(r: &Radiograph, v: &[f64]) -> Vec<Vec<f64>> {
    (0..r.ny).map(|j| v[j * r.nx..(j + 1) * r.nx].to_vec()).collect()
}

fn write_figures(
    ctx: &RunContext,
    truth: &Radiograph,
    truth_mean: &[f64],
    results: &[MethodResult],
    cal: &[Calibration],
) -> Result<Vec<String>> {
    let dir = ctx.dir.path();
    let mut files = Vec::new();
    let (xs, ys) = (truth.xs(), truth.ys());
    HeatMap::new("true WEPL at the phantom's exit plane [mm]", xs.clone(), ys.clone(), grid_rows(truth, truth_mean))
        .x_label("x [mm]")
        .y_label("y [mm]")
        .z_label("WEPL [mm]")
        .save(&dir.join("radiograph_truth"))?;
    files.push("radiograph_truth.png".to_string());
    for r in results {
        let stem = format!("radiograph_{}", crate::experiments::common::stem(&r.label));
        HeatMap::new(
            &format!("{}: WEPL per pixel (robust mean) [mm]", r.label),
            xs.clone(),
            ys.clone(),
            grid_rows(truth, &r.map),
        )
        .x_label("x [mm]")
        .y_label("y [mm]")
        .z_label("WEPL [mm]")
        .save(&dir.join(&stem))?;
        let diff: Vec<f64> = r.map.iter().zip(truth_mean).map(|(a, b)| a - b).collect();
        HeatMap::new(&format!("{}: WEPL − truth [mm]", r.label), xs.clone(), ys.clone(), grid_rows(truth, &diff))
            .x_label("x [mm]")
            .y_label("y [mm]")
            .z_label("ΔWEPL [mm]")
            .save(&dir.join(format!("{stem}_diff")))?;
        files.push(format!("{stem}.png"));
        files.push(format!("{stem}_diff.png"));
    }
    // Profile along x through the row nearest y = 0.
    let j0 = ys.iter().enumerate().min_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).map(|(j, _)| j).unwrap_or(0);
    let row = |v: &[f64]| -> Vec<(f64, f64)> {
        (0..truth.nx).filter_map(|i| Some((xs[i], v[j0 * truth.nx + i])).filter(|p| p.1.is_finite())).collect()
    };
    let mut plot = LinePlot::new(&format!("WEPL profile at y = {:.1} mm", ys[j0]))
        .x_label("x [mm]")
        .y_label("WEPL [mm]")
        .line("truth", row(truth_mean));
    for r in results.iter().filter(|r| r.group == r.label || r.label.ends_with("seed1")) {
        plot = plot.series(&r.label, row(&r.map), Mark::Line);
    }
    plot.save(&dir.join("profile"))?;
    files.push("profile.png".into());
    let mut cplot = LinePlot::new("water-slab calibration")
        .x_label("range observable [mm WET in the detector]")
        .y_label("WEPL [mm]");
    for c in cal {
        cplot = cplot.series(c.method.name(), c.points.iter().map(|p| (p.0, p.1)).collect(), Mark::LinePoints);
    }
    cplot.save(&dir.join("calibration"))?;
    files.push("calibration.png".into());
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    ctx: &RunContext,
    p: &Params,
    spots: &[[f64; 2]],
    cal: &[Calibration],
    results: &[MethodResult],
    groups: &[GroupSpread],
    n_frames: u64,
    sim_secs: f64,
    cal_secs: f64,
    figures: &[String],
    pct: Option<&(Vec<pct::SliceResult>, Vec<pct::SliceSpread>, f64, f64)>,
) -> Result<()> {
    let mut report = Report::new("track-image: what tracking errors cost downstream (WEPL, radiograph)");
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&format!(
        "Phantom: {} box of {} mm along the beam, {}. Scan: {} spots × {} frames = {n_frames} frames of {} \
         primaries (simulated in {sim_secs:.1} s), seed {}. Calibration: water slabs {:?} mm, {} frames each, oracle \
         tracks ({cal_secs:.1} s). The WEPL of a track is its calibrated range; its error is taken against the true \
         WEPL of the primary of its first hit (so a track that starts on one proton and ends on another carries the \
         error a user would get). Radiograph: {} mm pixels at the phantom's exit plane, each track placed by straight \
         extrapolation of its two tracker hits (no most-likely path), robust mean per pixel (mean within median ± \
         max(3 σ_MAD, 10 mm)) with at least {} tracks, range by {}; the true map is the same statistic of the true \
         WEPL of the primaries at their true exit positions. Error columns: robust mean (the bias), median, σ_MAD, \
         RMS, and the share beyond 10 mm of the median.",
        p.phantom.material,
        p.phantom.thickness_mm,
        p.phantom.shape.describe(),
        spots.len(),
        p.radiograph.frames_per_spot,
        p.primaries,
        p.seed,
        p.calibration.thicknesses_mm,
        p.calibration.frames,
        p.radiograph.pixel_mm,
        p.radiograph.min_count,
        p.radiograph.range_method.name(),
    ));
    let f1 = |s: Option<ErrorStats>| {
        s.map(|s| {
            format!(
                "{:+.2} / {:+.2} / {:.2} / {:.2} / {:.1}",
                s.robust_mean,
                s.median,
                s.sigma_mad,
                s.rms,
                100.0 * s.tail_10mm
            )
        })
        .unwrap_or_else(|| "—".into())
    };
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.label.clone(),
                format!("{} / {} ({} unplaced)", r.tracks - r.unplaced, r.primaries, r.unplaced),
                f1(r.wepl_error.get("bragg_fit").copied().flatten()),
                f1(r.wepl_error.get("last_layer").copied().flatten()),
                r.radiograph_error
                    .map(|s| format!("{:+.2} / {:.2} ({} px)", s.mean, s.rms, r.radiograph_pixels))
                    .unwrap_or_else(|| "—".into()),
                r.radiograph_error_median
                    .map(|s| format!("{:+.2} / {:.2}", s.mean, s.rms))
                    .unwrap_or_else(|| "—".into()),
                format!("{:.1}", r.seconds),
            ]
        })
        .collect();
    report.heading("Per method");
    report.table(
        &[
            "method",
            "placed tracks / primaries",
            "WEPL error, Bragg fit: robust mean / median / σ_MAD / RMS [mm] / % beyond 10 mm",
            "WEPL error, last layer",
            "radiograph − truth: mean / RMS [mm]",
            "same, median per pixel",
            "s",
        ],
        &rows,
    );
    report.paragraph(
        "Placed tracks by kind, with the Bragg-fit WEPL error of each kind (count: robust mean / σ_MAD / RMS [mm] / \
         % beyond 10 mm). primary: every hit made by the primary of the first hit; with secondary: that primary's \
         hits and those of a secondary proton of its nuclear interaction (the range end is the secondary's); mixed: \
         hits of several primaries' histories; repeat: a further track starting on a primary that already has one \
         (also counted in its kind).",
    );
    let kinds = ["primary", "with_secondary", "mixed", "repeat"];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            std::iter::once(r.label.clone())
                .chain(kinds.iter().map(|k| match r.breakdown.get(*k) {
                    Some((n, Some(s))) => format!(
                        "{n}: {:+.1} / {:.1} / {:.1} / {:.0}",
                        s.robust_mean,
                        s.sigma_mad,
                        s.rms,
                        100.0 * s.tail_10mm
                    ),
                    Some((n, None)) => format!("{n}: —"),
                    None => "0".into(),
                }))
                .collect()
        })
        .collect();
    report.table(&["method", "primary", "with secondary", "mixed", "repeat"], &rows);
    report.paragraph(&format!(
        "By the true WEPL of the first hit's primary (the models were trained behind 100–200 mm of water; below \
         {WEPL_BAND_MM} mm is outside that range): tracks, % with a secondary, % mixed, Bragg-fit WEPL error (robust \
         mean / σ_MAD / RMS [mm] / % beyond 10 mm)."
    ));
    let mut rows = Vec::new();
    for r in results {
        for (band, b) in &r.by_true_wepl {
            let pct = |k: &str| 100.0 * *b.kinds.get(k).unwrap_or(&0) as f64 / b.tracks.max(1) as f64;
            rows.push(vec![
                r.label.clone(),
                band.clone(),
                b.tracks.to_string(),
                format!("{:.1}", pct("with_secondary")),
                format!("{:.1}", pct("mixed")),
                b.error
                    .map(|s| {
                        format!(
                            "{:+.1} / {:.1} / {:.1} / {:.0}",
                            s.robust_mean,
                            s.sigma_mad,
                            s.rms,
                            100.0 * s.tail_10mm
                        )
                    })
                    .unwrap_or_else(|| "—".into()),
            ]);
        }
    }
    report.table(&["method", "band", "tracks", "% with secondary", "% mixed", "WEPL error"], &rows);
    if !groups.is_empty() {
        report.heading("Across seeds");
        let ms = |v: (f64, f64)| format!("{:.2} ± {:.2}", v.0, v.1);
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                vec![
                    g.group.clone(),
                    g.seeds.to_string(),
                    ms(g.wepl_sigma),
                    ms(g.wepl_rms),
                    ms(g.radiograph_rms),
                    g.seed_to_seed_rms.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", "),
                ]
            })
            .collect();
        report.table(
            &[
                "configuration",
                "seeds",
                "WEPL σ_MAD [mm]",
                "WEPL RMS [mm]",
                "radiograph RMS [mm]",
                "seed-to-seed radiograph RMS difference [mm]",
            ],
            &rows,
        );
    }
    if let (Some((slices, spreads, pct_sim, _)), Some(pc)) = (pct, &p.pct) {
        pct::report(&mut report, pc, slices, spreads, *pct_sim);
    }
    report.heading("Calibration");
    for c in cal {
        report.paragraph(&format!(
            "{}: {}",
            c.method.name(),
            c.points
                .iter()
                .map(|p| format!("{:.1} mm → {:.0} mm ({} tracks)", p.0, p.1, p.2))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    report.heading("Figures");
    for f in figures {
        report.figure(f, f);
    }
    report.write(&ctx.dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The quick configuration end to end (with the committed PAT model of the quick config): the
    /// report, the figures and a summary whose oracle row is unbiased and beats the follower's.
    #[test]
    fn the_quick_configuration_runs_end_to_end() {
        let file = root().join("configs/track-image.json");
        let cfg = gradlab_core::experiment::ExperimentConfig::load(&file).unwrap();
        let mut params = cfg.resolve(true, &[]).unwrap();
        params["setup"]["detector"] = serde_json::json!(root().join("configs/detector-bergen-dtc.json"));
        let models: Vec<PathBuf> =
            params["models"].as_array().unwrap().iter().map(|m| root().join(m.as_str().unwrap())).collect();
        params["models"] = serde_json::json!(models);
        let tmp = tempfile::tempdir().unwrap();
        let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-image").unwrap();
        let mut ctx = RunContext::new("track-image", &file, &cfg.entry, params, true, true, dir).unwrap();
        run(&mut ctx).unwrap();
        let d = ctx.dir.path();
        let report = std::fs::read_to_string(d.join("report.md")).unwrap();
        for needle in ["| oracle |", "| follower |", "| PAT_lambda_50-seed1 |", "Bragg-Kleeman fit:", "profile.png"] {
            assert!(report.contains(needle), "report lacks {needle}");
        }
        for f in ["radiograph_truth.png", "radiograph_oracle_diff.png", "calibration.png"] {
            assert!(d.join(f).is_file(), "{f}");
        }
        let s: serde_json::Value = gradlab_core::io::read_json(&d.join("summary.json")).unwrap();
        let m = s["methods"].as_array().unwrap();
        let row = |l: &str| m.iter().find(|r| r["label"] == l).unwrap();
        let oracle = &row("oracle")["wepl_error"]["bragg_fit"];
        assert!(oracle["robust_mean"].as_f64().unwrap().abs() < 2.0, "{oracle}");
        assert!(oracle["sigma_mad"].as_f64().unwrap() < 6.0, "{oracle}");
        // Every placed track has one kind; the oracle's are all of one primary.
        for r in m {
            let b = &r["breakdown"];
            let n = |k: &str| b[k][0].as_u64().unwrap_or(0);
            let placed = r["tracks"].as_u64().unwrap() - r["unplaced"].as_u64().unwrap();
            assert_eq!(n("primary") + n("with_secondary") + n("mixed"), placed, "{r}");
        }
        assert_eq!(row("oracle")["breakdown"]["primary"][0], row("oracle")["tracks"]);
        let rms = |l: &str| row(l)["radiograph_error"]["rms"].as_f64().unwrap();
        assert!(rms("oracle") < rms("follower"), "{} vs {}", rms("oracle"), rms("follower"));
    }

    #[test]
    fn groups_strip_only_a_numeric_seed_suffix() {
        assert_eq!(group_of("PAT_lambda_50-seed12"), "PAT_lambda_50");
        assert_eq!(group_of("PTT-seed"), "PTT-seed");
        assert_eq!(group_of("PTT-seedx"), "PTT-seedx");
        assert_eq!(group_of("follower"), "follower");
    }

    #[test]
    fn spot_axes_are_inclusive_and_checked() {
        assert_eq!(spot_axis("f", [-10.0, 10.0, 10.0]).unwrap(), vec![-10.0, 0.0, 10.0]);
        assert_eq!(spot_axis("f", [0.0, 0.0, 1.0]).unwrap(), vec![0.0]);
        let e = spot_axis("radiograph.spots_x_mm", [0.0, -1.0, 1.0]).unwrap_err().to_string();
        assert!(e.contains("radiograph.spots_x_mm"), "{e}");
        assert!(spot_axis("f", [0.0, 1.0, 0.0]).is_err());
    }

    #[test]
    fn model_folders_must_hold_models() {
        let dir = std::env::temp_dir().join(format!("gradlab-image-models-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = model_dirs(&[dir.display().to_string()]).unwrap_err().to_string();
        assert!(e.contains(MODEL_CARD_FILE), "{e}");
        let e = model_dirs(&["/no/such/folder".into()]).unwrap_err().to_string();
        assert!(e.contains("/no/such/folder"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
