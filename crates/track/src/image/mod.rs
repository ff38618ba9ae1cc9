//! What tracking errors cost downstream: phantoms with materials, per-track range → WEPL,
//! proton radiographs and pCT slices.
//!
//! - [`phantom`]: phantom shapes (slab, step, cylinder with inserts) the simulator transports
//!   protons through, recording each primary's true water-equivalent path length (WEPL);
//! - [`range`]: a track's residual range in the calorimeter and the water-slab calibration that
//!   turns it into WEPL;
//! - this module: tracks → measured protons (WEPL estimate, position at the phantom's exit
//!   plane), the calibration run, radiograph binning;
//! - [`recon`]: SART reconstruction of a relative-stopping-power slice from line integrals.

pub mod phantom;
pub mod range;
pub mod recon;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{GraphConfig, HitGraph};
use crate::sim::{Frame, Simulator};
use crate::tracks::{Track, TrackFilter, build_tracks, oracle_selection};
use range::{Calibration, RangeMethod, range_observable};

/// Most root-to-leaf paths an oracle selection may produce per frame.
const MAX_PATHS: usize = 1_000_000;

/// One reconstructed track as a pCT measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasuredTrack {
    /// Primary (within its frame) of the track's first hit: whose truth the track is compared to.
    pub primary: u32,
    /// Position (x, y) at the phantom's exit plane [mm], extrapolated along the direction of the
    /// track's hits in the first two tracker layers.
    pub exit_xy: [f64; 2],
    /// Direction (dx/dz, dy/dz) from the two tracker hits.
    pub exit_slope: [f64; 2],
    /// Range observable by each method of [`RangeMethod::ALL`] (None: not measurable, e.g. the
    /// track reaches the last layer).
    pub observable: [Option<f64>; 2],
    /// What the track is made of.
    pub kind: TrackKind,
}

/// What a reconstructed track is made of, against the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Every hit made by `primary` itself.
    Primary,
    /// Hits of `primary` and of secondaries of its nuclear interactions (same history, but the
    /// range end is not the primary's).
    WithSecondary,
    /// Hits of several primaries' histories.
    Mixed,
}

impl TrackKind {
    /// Name in reports and summaries.
    pub fn name(self) -> &'static str {
        match self {
            TrackKind::Primary => "primary",
            TrackKind::WithSecondary => "with_secondary",
            TrackKind::Mixed => "mixed",
        }
    }
}

/// Turn tracks (graph node indices, shallow → deep) into measurements. Tracks that do not start
/// with hits in layers 0 and 1 give no position and are skipped (returned count).
pub fn measure_tracks(
    g: &HitGraph,
    frame: &Frame,
    tracks: &[Track],
    layer_depth: &[f64],
    cm: &crate::physics::ClusterModel,
    exit_z: f64,
) -> (Vec<MeasuredTrack>, usize) {
    let mut out = Vec::with_capacity(tracks.len());
    let mut skipped = 0;
    for t in tracks {
        if t.len() < 2 || g.layer[t[0] as usize] != 0 || g.layer[t[1] as usize] != 1 {
            skipped += 1;
            continue;
        }
        let pos = |n: u32| -> [f64; 3] {
            let i = n as usize * 3;
            [g.pos[i] as f64, g.pos[i + 1] as f64, g.pos[i + 2] as f64]
        };
        let (a, b) = (pos(t[0]), pos(t[1]));
        let slope = [(b[0] - a[0]) / (b[2] - a[2]), (b[1] - a[1]) / (b[2] - a[2])];
        let exit_xy = [a[0] + (exit_z - a[2]) * slope[0], a[1] + (exit_z - a[2]) * slope[1]];
        let layers: Vec<u16> = t.iter().map(|&n| g.layer[n as usize]).collect();
        let clusters: Vec<u16> = t.iter().map(|&n| frame.hits[g.hit[n as usize] as usize].cluster).collect();
        let observable = RangeMethod::ALL.map(|m| range_observable(m, &layers, &clusters, layer_depth, cm));
        let primary = g.track[t[0] as usize];
        let kind = if t.iter().any(|&n| g.track[n as usize] != primary) {
            TrackKind::Mixed
        } else if t.iter().all(|&n| g.is_primary[n as usize]) {
            TrackKind::Primary
        } else {
            TrackKind::WithSecondary
        };
        out.push(MeasuredTrack { primary, exit_xy, exit_slope: slope, observable, kind });
    }
    (out, skipped)
}

/// The true tracks of a frame as the oracle selection gives them (every true edge of a primary,
/// root-to-leaf paths, then `filter`).
pub fn oracle_tracks(g: &HitGraph, filter: &TrackFilter) -> Result<Vec<Track>> {
    Ok(filter.apply(g, build_tracks(g, &oracle_selection(g), MAX_PATHS)?))
}

/// Water-slab calibration of every range method: for each thickness, `frames` frames simulated
/// by `simulator(thickness)`, oracle tracks, their observables; the robust mean per slab.
pub fn calibrate(
    simulator: impl Fn(f64) -> Result<Simulator> + Sync,
    thicknesses_mm: &[f64],
    frames: u64,
    seed: u64,
    first_frame: u64,
    graph: &GraphConfig,
    filter: &TrackFilter,
) -> Result<Vec<Calibration>> {
    if thicknesses_mm.len() < 2 {
        return Err(Error::invalid(
            "calibration.thicknesses_mm",
            format!("{thicknesses_mm:?}"),
            "at least two water thicknesses",
        ));
    }
    if frames == 0 {
        return Err(Error::invalid("calibration.frames", frames, ">= 1"));
    }
    let per_slab: Vec<[Vec<f64>; 2]> = thicknesses_mm
        .iter()
        .map(|&t| {
            let sim = simulator(t)?;
            let depth = sim.detector.layer_wet_mm(sim.config.beam.energy_mev);
            let cm = sim.detector.config.cluster_model.clone();
            let exit_z = sim.detector.front_z() - sim.config.phantom.gap_mm;
            let obs: Vec<[Vec<f64>; 2]> = (first_frame..first_frame + frames)
                .into_par_iter()
                .map(|f| {
                    let frame = sim.simulate_frame(seed, f);
                    let g = HitGraph::build(&frame, graph)?;
                    let tracks = oracle_tracks(&g, filter)?;
                    let (m, _) = measure_tracks(&g, &frame, &tracks, &depth, &cm, exit_z);
                    Ok([0, 1].map(|k| m.iter().filter_map(|t| t.observable[k]).collect()))
                })
                .collect::<Result<_>>()?;
            Ok([0, 1].map(|k| obs.iter().flat_map(|o| o[k].iter().copied()).collect()))
        })
        .collect::<Result<_>>()?;
    RangeMethod::ALL
        .iter()
        .enumerate()
        .map(|(k, &m)| {
            let slabs: Vec<(f64, Vec<f64>)> =
                thicknesses_mm.iter().zip(&per_slab).map(|(&t, o)| (t, o[k].clone())).collect();
            Calibration::fit(m, &slabs)
        })
        .collect()
}

/// A pixel grid at the phantom's exit plane collecting WEPL values per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Radiograph {
    /// Lower x edge [mm].
    pub x0: f64,
    /// Lower y edge [mm].
    pub y0: f64,
    /// Pixel size [mm].
    pub pixel_mm: f64,
    /// Pixels along x.
    pub nx: usize,
    /// Pixels along y.
    pub ny: usize,
    /// Values per pixel (row-major `j * nx + i`).
    pub values: Vec<Vec<f64>>,
}

impl Radiograph {
    /// An empty radiograph over `[x0, x1] × [y0, y1]` with square pixels.
    pub fn new(x: [f64; 2], y: [f64; 2], pixel_mm: f64) -> Result<Self> {
        if !(pixel_mm.is_finite() && pixel_mm > 0.0) {
            return Err(Error::invalid("radiograph.pixel_mm", pixel_mm, "> 0 mm"));
        }
        for (f, r) in [("radiograph.x_mm", x), ("radiograph.y_mm", y)] {
            if !(r[0].is_finite() && r[1].is_finite() && r[1] > r[0]) {
                return Err(Error::invalid(f, format!("{r:?}"), "[lo, hi] with lo < hi"));
            }
        }
        let nx = ((x[1] - x[0]) / pixel_mm).round().max(1.0) as usize;
        let ny = ((y[1] - y[0]) / pixel_mm).round().max(1.0) as usize;
        if nx * ny > 4_000_000 {
            return Err(Error::invalid("radiograph pixels", nx * ny, "at most 4,000,000 pixels"));
        }
        Ok(Radiograph { x0: x[0], y0: y[0], pixel_mm, nx, ny, values: vec![Vec::new(); nx * ny] })
    }

    /// Pixel of (x, y), if inside.
    pub fn pixel(&self, x: f64, y: f64) -> Option<usize> {
        let i = ((x - self.x0) / self.pixel_mm).floor();
        let j = ((y - self.y0) / self.pixel_mm).floor();
        (i >= 0.0 && j >= 0.0 && (i as usize) < self.nx && (j as usize) < self.ny)
            .then(|| j as usize * self.nx + i as usize)
    }

    /// Add a value at (x, y) (ignored outside the grid; returns whether it landed).
    pub fn add(&mut self, x: f64, y: f64, v: f64) -> bool {
        match self.pixel(x, y) {
            Some(p) if v.is_finite() => {
                self.values[p].push(v);
                true
            }
            _ => false,
        }
    }

    /// Median per pixel (NaN where fewer than `min_count` values).
    pub fn median_map(&self, min_count: usize) -> Vec<f64> {
        self.map(min_count, range::median)
    }

    /// Robust mean per pixel ([`range::robust_mean`] with a [`range::ROBUST_WINDOW_MM`] floor;
    /// NaN where fewer than `min_count` values): the pixel estimate of the radiographs.
    pub fn robust_mean_map(&self, min_count: usize) -> Vec<f64> {
        self.map(min_count, |v| range::robust_mean(v, range::ROBUST_WINDOW_MM))
    }

    fn map(&self, min_count: usize, f: impl Fn(&[f64]) -> Option<f64>) -> Vec<f64> {
        self.values
            .iter()
            .map(|v| if v.len() >= min_count.max(1) { f(v).unwrap_or(f64::NAN) } else { f64::NAN })
            .collect()
    }

    /// Pixel centres along x.
    pub fn xs(&self) -> Vec<f64> {
        (0..self.nx).map(|i| self.x0 + (i as f64 + 0.5) * self.pixel_mm).collect()
    }

    /// Pixel centres along y.
    pub fn ys(&self) -> Vec<f64> {
        (0..self.ny).map(|j| self.y0 + (j as f64 + 0.5) * self.pixel_mm).collect()
    }
}

/// Error statistics of WEPL estimates against truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    /// Number of values.
    pub n: usize,
    /// Median error [mm].
    pub median: f64,
    /// Mean error [mm].
    pub mean: f64,
    /// Robust mean error [mm] ([`range::robust_mean`], [`range::ROBUST_WINDOW_MM`] floor): the
    /// bias of a pixel's estimate.
    pub robust_mean: f64,
    /// Root-mean-square error [mm].
    pub rms: f64,
    /// Robust spread 1.4826 · median absolute deviation [mm].
    pub sigma_mad: f64,
    /// Fraction with |error − median| > 10 mm.
    pub tail_10mm: f64,
}

impl ErrorStats {
    /// Statistics of `errors` (finite values only; None when there are none).
    pub fn of(errors: &[f64]) -> Option<Self> {
        let e: Vec<f64> = errors.iter().copied().filter(|v| v.is_finite()).collect();
        if e.is_empty() {
            return None;
        }
        let n = e.len();
        let median = range::median(&e)?;
        let mean = e.iter().sum::<f64>() / n as f64;
        let rms = (e.iter().map(|v| v * v).sum::<f64>() / n as f64).sqrt();
        let dev: Vec<f64> = e.iter().map(|v| (v - median).abs()).collect();
        let sigma_mad = 1.4826 * range::median(&dev)?;
        let tail_10mm = dev.iter().filter(|&&d| d > 10.0).count() as f64 / n as f64;
        let robust_mean = range::robust_mean(&e, range::ROBUST_WINDOW_MM)?;
        Some(ErrorStats { n, median, mean, robust_mean, rms, sigma_mad, tail_10mm })
    }
}

#[cfg(test)]
mod tests;
