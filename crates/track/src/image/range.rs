//! Per-track residual range in the calorimeter and its conversion to the water-equivalent path
//! length (WEPL) of the phantom.
//!
//! A track's *range observable* is a water-equivalent depth in the detector [mm], measured from
//! its front face:
//! - [`RangeMethod::LastLayer`]: midway between the deepest layer the track reached and the next
//!   one (the proton stopped in between);
//! - [`RangeMethod::BraggFit`]: the range `R` of a Bragg–Kleeman depth–dose curve,
//!   dE/dx ∝ (R − d)^(1/p − 1) with p = 1.77 (Bortfeld 1997), fitted to the deposits the
//!   track's cluster sizes imply, with `R` between the last layer and the next (the approach of
//!   the Bergen DTC papers, e.g. Pettersen et al. 2019, which fit Bragg–Kleeman curves to
//!   cluster-size profiles).
//!
//! A [`Calibration`] made by simulating water slabs of known thickness maps the observable to
//! WEPL (piecewise linear in the robust mean observable per slab, [`robust_mean`]; linear extrapolation beyond the
//! thinnest/thickest slab, which [`Calibration::covers`] reports).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::physics::ClusterModel;

/// Bragg–Kleeman exponent p of R = α E^p in water (Bortfeld 1997).
pub const BRAGG_KLEEMAN_P: f64 = 1.77;

/// How a track's range is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeMethod {
    /// Midway between the last layer and the next.
    LastLayer,
    /// Bragg–Kleeman fit of the deposits.
    BraggFit,
}

impl RangeMethod {
    /// Both methods.
    pub const ALL: [RangeMethod; 2] = [RangeMethod::LastLayer, RangeMethod::BraggFit];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            RangeMethod::LastLayer => "last layer",
            RangeMethod::BraggFit => "Bragg-Kleeman fit",
        }
    }
}

/// Energy deposit [MeV] implied by a (floored, integer) cluster size: the inverse of
/// [`ClusterModel::cluster_size`] at the middle of the size's bin, `cs + 0.5`.
pub fn edep_from_cluster(cm: &ClusterModel, cluster: u16) -> f64 {
    let cs = cluster as f64 + 0.5;
    let x = ((cs - cm.c) / cm.a).max(0.0).powf(1.0 / cm.b);
    x * cm.epi_thickness_um / 1000.0
}

/// Relative Bragg–Kleeman stopping power at depth `d` for range `r` (both water-equivalent mm).
#[inline]
fn bragg_kleeman(r: f64, d: f64) -> f64 {
    (r - d).max(1e-3).powf(1.0 / BRAGG_KLEEMAN_P - 1.0)
}

/// Fit the range `R ∈ [lo, hi]` of a Bragg–Kleeman curve to deposits `edep` at depths `depth`
/// (water-equivalent mm). The deposits' relative deviations from the curve are minimised (their
/// spread grows with the deposit), the amplitude in closed form for every R, R on a grid of 0.05
/// mm refined by golden-section search.
pub fn bragg_fit(depth: &[f64], edep: &[f64], lo: f64, hi: f64) -> Result<f64> {
    if depth.len() != edep.len() || depth.is_empty() {
        return Err(Error::invalid(
            "bragg_fit deposits",
            format!("{} depths, {} deposits", depth.len(), edep.len()),
            "as many deposits as depths, at least one",
        ));
    }
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(Error::invalid("bragg_fit range bounds", format!("[{lo}, {hi}]"), "finite lo <= hi"));
    }
    // Σ (e/S − k)² with k = mean(e/S).
    let cost = |r: f64| -> f64 {
        let q: Vec<f64> = depth.iter().zip(edep).map(|(&d, &e)| e / bragg_kleeman(r, d)).collect();
        let k = q.iter().sum::<f64>() / q.len() as f64;
        q.iter().map(|v| (v / k - 1.0).powi(2)).sum()
    };
    let n = (((hi - lo) / 0.05).ceil() as usize).max(1);
    let step = (hi - lo) / n as f64;
    let (mut best, mut best_cost) = (lo, f64::INFINITY);
    for i in 0..=n {
        let r = lo + step * i as f64;
        let c = cost(r);
        if c < best_cost {
            best = r;
            best_cost = c;
        }
    }
    // Golden section in the neighbouring grid cells.
    let (mut a, mut b) = ((best - step).max(lo), (best + step).min(hi));
    let g = 0.5 * (5f64.sqrt() - 1.0);
    for _ in 0..30 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if cost(c) < cost(d) {
            b = d;
        } else {
            a = c;
        }
    }
    let r = 0.5 * (a + b);
    Ok(if cost(r) < best_cost { r } else { best })
}

/// The range observable of one track.
///
/// `layers`/`clusters`: the track's hits, shallow → deep; `layer_depth[l]`: water-equivalent depth
/// of layer `l` from the detector's front [mm] ([`crate::detector::Detector::layer_wet_mm`]).
/// `None` when the track's last layer is the detector's last (the proton may have left it).
pub fn range_observable(
    method: RangeMethod,
    layers: &[u16],
    clusters: &[u16],
    layer_depth: &[f64],
    cm: &ClusterModel,
) -> Option<f64> {
    let &last = layers.last()?;
    let last = last as usize;
    if last + 1 >= layer_depth.len() {
        return None;
    }
    let (d_last, d_next) = (layer_depth[last], layer_depth[last + 1]);
    match method {
        RangeMethod::LastLayer => Some(0.5 * (d_last + d_next)),
        RangeMethod::BraggFit => {
            let depth: Vec<f64> = layers.iter().map(|&l| layer_depth[l as usize]).collect();
            let edep: Vec<f64> = clusters.iter().map(|&c| edep_from_cluster(cm, c)).collect();
            bragg_fit(&depth, &edep, d_last, d_next).ok()
        }
    }
}

/// Observable → WEPL map from water slabs of known thickness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Range method the observable comes from.
    pub method: RangeMethod,
    /// (robust mean observable [mm] ([`robust_mean`]), slab thickness [mm], protons used), by
    /// increasing observable.
    pub points: Vec<(f64, f64, usize)>,
}

impl Calibration {
    /// Build from per-slab observables: `slabs[j] = (thickness, observables of its protons)`.
    /// Needs two slabs with distinct medians.
    pub fn fit(method: RangeMethod, slabs: &[(f64, Vec<f64>)]) -> Result<Self> {
        let mut points = Vec::new();
        for (t, obs) in slabs {
            let mut v: Vec<f64> = obs.iter().copied().filter(|x| x.is_finite()).collect();
            if v.is_empty() {
                return Err(Error::invalid(
                    "calibration slab",
                    format!("{t} mm with no measured track"),
                    "slabs thinner than the beam's range, each with protons that stop in the calorimeter",
                ));
            }
            v.sort_by(f64::total_cmp);
            let centre = robust_mean(&v, ROBUST_WINDOW_MM).expect("non-empty, finite");
            points.push((centre, *t, v.len()));
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if points.len() < 2 || points.windows(2).any(|w| w[1].0 - w[0].0 <= 1e-9) {
            return Err(Error::invalid(
                "calibration slabs",
                format!("{} slabs with medians {:?}", points.len(), points.iter().map(|p| p.0).collect::<Vec<_>>()),
                "at least two slabs whose median ranges differ",
            ));
        }
        Ok(Calibration { method, points })
    }

    /// WEPL [mm] of an observable (linear interpolation between the slabs, linear extrapolation
    /// beyond).
    pub fn wepl(&self, observable: f64) -> f64 {
        let p = &self.points;
        let k = p.partition_point(|q| q.0 <= observable).clamp(1, p.len() - 1);
        let (a, b) = (p[k - 1], p[k]);
        a.1 + (observable - a.0) * (b.1 - a.1) / (b.0 - a.0)
    }

    /// Whether `observable` lies within the calibrated span.
    pub fn covers(&self, observable: f64) -> bool {
        let p = &self.points;
        observable >= p[0].0 && observable <= p[p.len() - 1].0
    }
}

/// Smallest half-width [mm] of the window [`robust_mean`] averages over.
pub const ROBUST_WINDOW_MM: f64 = 10.0;

/// Mean of the values within median ± max(3 σ_MAD, `min_halfwidth`), σ_MAD = 1.4826 · median
/// absolute deviation (`None` when `v` has no finite value).
///
/// The median of a quantised observable (the last layer a proton reached) moves in steps of a
/// layer; the mean interpolates between layers through range straggling, and the window keeps
/// the tail of nuclear interactions and mis-tracked protons out of it. The floor keeps the window
/// open when more than half the values sit in one layer (σ_MAD = 0).
pub fn robust_mean(v: &[f64], min_halfwidth: f64) -> Option<f64> {
    let (lo, hi) = robust_window(v, min_halfwidth)?;
    let inside: Vec<f64> = v.iter().copied().filter(|x| (lo..=hi).contains(x)).collect();
    Some(inside.iter().sum::<f64>() / inside.len() as f64)
}

/// The window [median − w, median + w], w = max(3 σ_MAD, `min_halfwidth`), of [`robust_mean`]
/// over the finite values of `v` (`None` when there are none).
pub fn robust_window(v: &[f64], min_halfwidth: f64) -> Option<(f64, f64)> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let m = median_sorted(&s);
    let mut dev: Vec<f64> = s.iter().map(|x| (x - m).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let half = (3.0 * 1.4826 * median_sorted(&dev)).max(min_halfwidth);
    Some((m - half, m + half))
}

pub use gradlab_core::stats::median_sorted;

/// Median of any slice (`None` when empty).
pub fn median(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| gradlab_core::stats::median(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_inverse_round_trips() {
        let cm = ClusterModel::default();
        for edep in [0.005, 0.02, 0.1, 0.4] {
            let cs = cm.cluster_pixels(edep);
            let back = edep_from_cluster(&cm, cs as u16);
            // Back lies in the deposit bin of that cluster size.
            assert_eq!(cm.cluster_pixels(back), cs, "edep {edep}");
        }
    }

    #[test]
    fn bragg_fit_recovers_the_range_of_noise_free_deposits() {
        let depth: Vec<f64> = (0..30).map(|l| 20.0 + 8.17 * l as f64).collect();
        for true_r in [258.0, 262.0, 264.5] {
            let edep: Vec<f64> =
                depth.iter().filter(|&&d| d < true_r).map(|&d| 0.7 * bragg_kleeman(true_r, d)).collect();
            let d = &depth[..edep.len()];
            let last = *d.last().unwrap();
            let r = bragg_fit(d, &edep, last, last + 8.17).unwrap();
            assert!((r - true_r).abs() < 0.01, "{r} vs {true_r}");
        }
        assert!(bragg_fit(&[1.0], &[], 0.0, 1.0).is_err());
        assert!(bragg_fit(&[1.0], &[1.0], 2.0, 1.0).is_err());
    }

    #[test]
    fn calibration_interpolates_and_rejects_degenerate_slabs() {
        let c = Calibration::fit(
            RangeMethod::LastLayer,
            &[(100.0, vec![200.0, 201.0, 199.0]), (0.0, vec![300.0, 300.0]), (200.0, vec![100.0])],
        )
        .unwrap();
        assert_eq!(c.points.iter().map(|p| p.1).collect::<Vec<_>>(), vec![200.0, 100.0, 0.0]);
        assert!((c.wepl(250.0) - 50.0).abs() < 1e-12);
        assert!((c.wepl(150.0) - 150.0).abs() < 1e-12);
        assert!((c.wepl(50.0) - 250.0).abs() < 1e-12, "extrapolated");
        assert!(!c.covers(50.0) && c.covers(150.0));
        assert!(Calibration::fit(RangeMethod::LastLayer, &[(0.0, vec![1.0]), (10.0, vec![1.0])]).is_err());
        let e = Calibration::fit(RangeMethod::LastLayer, &[(0.0, vec![1.0]), (10.0, vec![])]).unwrap_err();
        assert!(e.to_string().contains("10 mm"), "{e}");
    }

    #[test]
    fn robust_mean_interpolates_quantised_values_and_drops_the_tail() {
        // 70 % in one layer, 30 % in the next, a far tail: the mean of the two layers.
        let mut v = vec![100.0; 70];
        v.extend([108.0; 30]);
        v.extend([20.0, 30.0, 40.0]);
        assert!((robust_mean(&v, 10.0).unwrap() - 102.4).abs() < 1e-12);
        assert_eq!(median(&v), Some(100.0));
        // A wide distribution: the window is 3 sigma_MAD, not the floor.
        let w: Vec<f64> = (0..101).map(|i| i as f64).collect();
        assert!((robust_mean(&w, 1.0).unwrap() - 50.0).abs() < 1e-12);
        assert_eq!(robust_mean(&[f64::NAN], 1.0), None);
    }
}
