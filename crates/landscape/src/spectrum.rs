//! The Hessian spectrum of an objective at a point in one call: extreme eigenvalues by Lanczos
//! (top-k, optionally bottom-k), the trace by Hutch++ (optionally also plain Hutchinson), and the
//! eigenvalue density by stochastic Lanczos quadrature, smoothed on a grid for plotting.
//!
//! All randomness comes from one seed: Lanczos start vectors, trace probes and SLQ probes use
//! the streams [`LANCZOS_STREAM`], [`TRACE_STREAM`] and [`SLQ_STREAM`] of it
//! (`gradlab_core::rng::derive_seed`), so `lanczos.seed` and `slq.seed` must be left at 0.

use std::time::Instant;

use gradlab_core::rng::{derive_seed, stream_rng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_len};
use crate::hessian::{HessianOperator, HvpMethod};
use crate::lanczos::{Eigenpairs, LanczosConfig, Which, lanczos};
use crate::objective::Objective;
use crate::slq::{SlqConfig, SpectralQuadrature, slq};
use crate::trace::{TraceEstimate, hutch_pp, hutchinson};

/// Stream of the run's seed for the Lanczos start vectors.
pub const LANCZOS_STREAM: u64 = 0x4c41_4e43;
/// Stream of the run's seed for the trace probes.
pub const TRACE_STREAM: u64 = 0x5452_4143;
/// Stream of the run's seed for the SLQ probes.
pub const SLQ_STREAM: u64 = 0x534c_5100;

/// What [`spectrum`] computes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpectrumConfig {
    /// How Hessian-vector products are computed.
    pub hvp: HvpMethod,
    /// Largest eigenvalues (with eigenvectors), ≥ 1.
    pub top_k: usize,
    /// Smallest eigenvalues (0: none).
    pub bottom_k: usize,
    /// Lanczos steps and tolerance (its `seed` must be 0: derived from the run's seed).
    pub lanczos: LanczosConfig,
    /// Operator products of the Hutch++ trace estimate (0: no trace estimate; else ≥ 6).
    pub trace_products: usize,
    /// Also estimate the trace by plain Hutchinson with the same number of products.
    pub hutchinson: bool,
    /// SLQ probes and steps (its `seed` must be 0: derived from the run's seed).
    pub slq: SlqConfig,
    /// Points of the density grid (spans the SLQ node range with 5 % margins), ≥ 2.
    pub density_points: usize,
    /// Width of the Gaussian kernel of the density as a fraction of the SLQ node range.
    pub density_sigma: f64,
}

impl Default for SpectrumConfig {
    fn default() -> Self {
        Self {
            hvp: HvpMethod::default(),
            top_k: 5,
            bottom_k: 0,
            lanczos: LanczosConfig::default(),
            trace_products: 60,
            hutchinson: false,
            slq: SlqConfig::default(),
            density_points: 401,
            density_sigma: 0.01,
        }
    }
}

impl SpectrumConfig {
    /// Checks the settings (`field`s are named relative to this struct).
    pub fn check(&self) -> Result<()> {
        self.hvp.check()?;
        if self.top_k == 0 {
            return Err(Error::invalid("top_k", self.top_k, "≥ 1"));
        }
        if self.trace_products != 0 && self.trace_products < 6 {
            return Err(Error::invalid("trace_products", self.trace_products, "0 (no trace) or ≥ 6"));
        }
        if self.density_points < 2 || !(self.density_sigma.is_finite() && self.density_sigma > 0.0) {
            return Err(Error::invalid(
                "density_points / density_sigma",
                format!("{} / {}", self.density_points, self.density_sigma),
                "≥ 2 points and a finite width > 0",
            ));
        }
        for (field, seed) in [("lanczos.seed", self.lanczos.seed), ("slq.seed", self.slq.seed)] {
            if seed != 0 {
                return Err(Error::invalid(field, seed, "0: the seed is derived from the run's `seed`"));
            }
        }
        Ok(())
    }
}

/// Hessian-vector products and seconds spent per part of [`spectrum`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Hessian-vector products.
    pub products: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What [`spectrum`] returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spectrum {
    /// The `top_k` largest eigenpairs (descending).
    pub top: Eigenpairs,
    /// The `bottom_k` smallest eigenpairs (ascending), when asked for.
    pub bottom: Option<Eigenpairs>,
    /// Hutch++ trace estimate, when `trace_products > 0`.
    pub trace: Option<TraceEstimate>,
    /// Plain Hutchinson trace estimate, when asked for.
    pub trace_hutchinson: Option<TraceEstimate>,
    /// SLQ nodes and weights.
    pub quadrature: SpectralQuadrature,
    /// Smallest and largest SLQ node.
    pub range: (f64, f64),
    /// `n · (mean eigenvalue by SLQ)`: a third trace estimate.
    pub slq_trace: f64,
    /// Density grid.
    pub grid: Vec<f64>,
    /// Smoothed eigenvalue density on `grid` (integrates to 1).
    pub density: Vec<f64>,
    /// Kernel width used for `density`.
    pub sigma: f64,
    /// Cost of the Lanczos runs (top and bottom).
    pub lanczos_cost: Cost,
    /// Cost of the trace estimates.
    pub trace_cost: Cost,
    /// Cost of SLQ.
    pub slq_cost: Cost,
}

impl Spectrum {
    /// `λmin / λmax` from the Lanczos extremes (Li et al.'s convexity indicator), when the
    /// bottom eigenvalues were computed.
    pub fn min_max_ratio(&self) -> Option<f64> {
        self.bottom.as_ref().map(|b| b.values[0] / self.top.values[0])
    }
    /// The Lanczos eigenvalues (top, then bottom), e.g. to mark on a density plot.
    pub fn extreme_values(&self) -> Vec<f64> {
        let mut v = self.top.values.clone();
        if let Some(b) = &self.bottom {
            v.extend(&b.values);
        }
        v
    }
}

/// Lanczos top-k (and bottom-k), Hutch++ (and Hutchinson) trace and SLQ density of the Hessian of
/// `obj` at `theta`, all randomness from `seed` (see the module docs).
pub fn spectrum<O: Objective + ?Sized>(
    obj: &mut O,
    theta: &[f64],
    cfg: &SpectrumConfig,
    seed: u64,
) -> Result<Spectrum> {
    cfg.check()?;
    check_len("theta", obj.dim(), theta.len())?;
    let n = theta.len();
    let mut op = HessianOperator::new(obj, theta, cfg.hvp)?;

    let t = Instant::now();
    let lcfg = LanczosConfig { seed: derive_seed(seed, LANCZOS_STREAM), ..cfg.lanczos.clone() };
    let top = lanczos(&mut op, cfg.top_k, Which::Largest, &lcfg)?;
    let bottom = if cfg.bottom_k > 0 { Some(lanczos(&mut op, cfg.bottom_k, Which::Smallest, &lcfg)?) } else { None };
    let lanczos_cost = Cost { products: op.products, seconds: t.elapsed().as_secs_f64() };

    let (t, p0) = (Instant::now(), op.products);
    let mut rng = stream_rng(seed, TRACE_STREAM);
    let trace = if cfg.trace_products > 0 { Some(hutch_pp(&mut op, cfg.trace_products, &mut rng)?) } else { None };
    let trace_hutchinson = if cfg.hutchinson && cfg.trace_products > 0 {
        Some(hutchinson(&mut op, cfg.trace_products, &mut rng)?)
    } else {
        None
    };
    let trace_cost = Cost { products: op.products - p0, seconds: t.elapsed().as_secs_f64() };

    let (t, p0) = (Instant::now(), op.products);
    let quadrature = slq(&mut op, &SlqConfig { seed: derive_seed(seed, SLQ_STREAM), ..cfg.slq.clone() })?;
    let slq_cost = Cost { products: op.products - p0, seconds: t.elapsed().as_secs_f64() };

    let range = quadrature.range();
    let width = (range.1 - range.0).max(1e-12);
    let sigma = cfg.density_sigma * width;
    let last = (cfg.density_points - 1) as f64;
    let grid: Vec<f64> =
        (0..cfg.density_points).map(|i| range.0 - 0.05 * width + 1.1 * width * i as f64 / last).collect();
    let density = quadrature.density(&grid, sigma)?;
    let slq_trace = n as f64 * quadrature.mean_of(|x| x);
    Ok(Spectrum {
        top,
        bottom,
        trace,
        trace_hutchinson,
        quadrature,
        range,
        slq_trace,
        grid,
        density,
        sigma,
        lanczos_cost,
        trace_cost,
        slq_cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testfns::Quadratic;

    #[test]
    fn spectrum_of_a_quadratic_with_known_eigenvalues() {
        let n = 60;
        // separated outliers on top of a decaying positive bulk, two negative ones at the bottom
        let mut eig: Vec<f64> = (1..=n).map(|i| 10.0 / (i as f64).powi(2)).collect();
        eig[0] = 40.0;
        eig[1] = 25.0;
        eig[2] = 18.0;
        eig[n - 1] = -3.0;
        eig[n - 2] = -1.5;
        let (mut q, _) = Quadratic::with_spectrum(&eig, &mut gradlab_core::rng::rng(5));
        let theta = vec![0.2; n];
        let cfg = SpectrumConfig {
            hvp: HvpMethod::Exact,
            top_k: 3,
            bottom_k: 2,
            lanczos: LanczosConfig { max_steps: n, tol: 1e-10, seed: 0 },
            trace_products: 45,
            hutchinson: true,
            slq: SlqConfig { probes: 6, steps: 30, seed: 0 },
            density_points: 2001,
            density_sigma: 0.01,
        };
        let s = spectrum(&mut q, &theta, &cfg, 11).unwrap();
        for (got, want) in s.top.values.iter().zip([40.0, 25.0, 18.0]) {
            assert!((got - want).abs() < 1e-8, "top {:?}", s.top.values);
        }
        let b = s.bottom.as_ref().unwrap();
        for (got, want) in b.values.iter().zip([-3.0, -1.5]) {
            assert!((got - want).abs() < 1e-8, "bottom {:?}", b.values);
        }
        assert!((s.min_max_ratio().unwrap() + 3.0 / 40.0).abs() < 1e-9);
        let tr: f64 = eig.iter().sum();
        let pp = s.trace.unwrap();
        assert_eq!(pp.products, 45);
        assert!((pp.trace - tr).abs() < 4.0 * pp.std_error + 1e-12 * tr, "{} vs {tr} ± {}", pp.trace, pp.std_error);
        let h = s.trace_hutchinson.unwrap();
        assert!((h.trace - tr).abs() < 4.0 * h.std_error, "{} vs {tr} ± {}", h.trace, h.std_error);
        assert_eq!(s.trace_cost.products, 90);
        assert_eq!(s.slq_cost.products, 6 * 30);
        let dx = s.grid[1] - s.grid[0];
        let total: f64 = s.density.iter().sum::<f64>() * dx;
        assert!((total - 1.0).abs() < 1e-3, "density integrates to {total}");
        assert!(s.range.0 >= -3.0 - 1e-8 && s.range.1 <= 40.0 + 1e-8);
        assert_eq!(s.extreme_values().len(), 5);
        // the seed decides everything: same seed, same numbers
        let again = spectrum(&mut q, &theta, &cfg, 11).unwrap();
        assert_eq!(again.density, s.density);
        assert_eq!(again.trace.unwrap().trace, pp.trace);
    }

    #[test]
    fn settings_are_checked() {
        let mut q = Quadratic::new(vec![1.0], vec![0.0]).unwrap();
        let bad = |cfg: SpectrumConfig, field: &str| {
            let e = spectrum(&mut Quadratic::new(vec![1.0], vec![0.0]).unwrap(), &[0.0], &cfg, 0).unwrap_err();
            assert!(matches!(&e, Error::Invalid { field: f, .. } if f == field), "{field}: {e}");
        };
        bad(SpectrumConfig { top_k: 0, ..Default::default() }, "top_k");
        bad(SpectrumConfig { trace_products: 3, ..Default::default() }, "trace_products");
        bad(
            SpectrumConfig { lanczos: LanczosConfig { seed: 4, ..Default::default() }, ..Default::default() },
            "lanczos.seed",
        );
        bad(SpectrumConfig { slq: SlqConfig { seed: 4, ..Default::default() }, ..Default::default() }, "slq.seed");
        assert!(spectrum(&mut q, &[0.0, 1.0], &SpectrumConfig::default(), 0).is_err());
    }
}
