//! Stochastic Lanczos quadrature (SLQ) for the eigenvalue density of a symmetric operator
//! (Ghorbani et al. 2019, PyHessian).
//!
//! For a unit probe `v`, `m` Lanczos steps give Ritz values `θ_j` and weights `τ_j = s_{0j}²`
//! (first components of the tridiagonal's eigenvectors); `Σ_j τ_j f(θ_j)` is the `m`-point Gauss
//! quadrature of `vᵀ f(A) v`, exact for polynomials of degree `≤ 2m − 1`. Averaging over probes
//! estimates the spectral measure `(1/n) Σ_i δ(λ − λ_i)`, smoothed with a Gaussian for plotting.

use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hessian::LinearOperator;
use crate::lanczos::lanczos_run;

/// Settings for [`slq`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlqConfig {
    /// Number of random probe vectors.
    pub probes: usize,
    /// Lanczos steps per probe (quadrature nodes).
    pub steps: usize,
    /// Seed of the probes.
    pub seed: u64,
}

impl Default for SlqConfig {
    fn default() -> Self {
        Self { probes: 4, steps: 60, seed: 0 }
    }
}

/// Gauss quadrature nodes and weights, one set per probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpectralQuadrature {
    /// Ritz values per probe.
    pub nodes: Vec<Vec<f64>>,
    /// Quadrature weights per probe (each set sums to 1).
    pub weights: Vec<Vec<f64>>,
}

impl SpectralQuadrature {
    /// Estimate of `(1/n) tr f(A)` (the mean of `f` over the spectrum).
    pub fn mean_of(&self, f: impl Fn(f64) -> f64) -> f64 {
        let p = self.nodes.len() as f64;
        self.nodes
            .iter()
            .zip(&self.weights)
            .map(|(ns, ws)| ns.iter().zip(ws).map(|(x, w)| w * f(*x)).sum::<f64>())
            .sum::<f64>()
            / p
    }

    /// Smallest and largest node over all probes.
    pub fn range(&self) -> (f64, f64) {
        self.nodes.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)))
    }

    /// Gaussian-smoothed density on `grid` with kernel width `sigma` (integrates to 1 over ℝ).
    pub fn density(&self, grid: &[f64], sigma: f64) -> Result<Vec<f64>> {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(Error::invalid("sigma", sigma.to_string(), "finite and > 0"));
        }
        let c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        Ok(grid.iter().map(|t| self.mean_of(|x| c * (-0.5 * ((t - x) / sigma).powi(2)).exp())).collect())
    }
}

/// Runs SLQ with `cfg.probes` Gaussian probes (normalised), seeded by `cfg.seed`.
pub fn slq<L: LinearOperator + ?Sized>(op: &mut L, cfg: &SlqConfig) -> Result<SpectralQuadrature> {
    if cfg.probes == 0 || cfg.steps == 0 {
        return Err(Error::invalid(
            "slq probes/steps",
            format!("probes {} steps {}", cfg.probes, cfg.steps),
            "both ≥ 1",
        ));
    }
    let n = op.dim();
    let mut rng = gradlab_core::rng::rng(cfg.seed);
    let probes: Vec<Vec<f64>> =
        (0..cfg.probes).map(|_| (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()).collect();
    slq_with_probes(op, &probes, cfg.steps)
}

/// SLQ with caller-supplied probe vectors (each normalised internally).
pub fn slq_with_probes<L: LinearOperator + ?Sized>(
    op: &mut L,
    probes: &[Vec<f64>],
    steps: usize,
) -> Result<SpectralQuadrature> {
    let mut nodes = Vec::with_capacity(probes.len());
    let mut weights = Vec::with_capacity(probes.len());
    for v in probes {
        let run = lanczos_run(op, v, steps, 0, false, |_| Ok(false))?;
        let (vals, s) = run.ritz()?;
        weights.push(s.iter().map(|si| si[0] * si[0]).collect());
        nodes.push(vals);
    }
    Ok(SpectralQuadrature { nodes, weights })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hessian::DenseOperator;
    use crate::testfns::Quadratic;
    use crate::vecops::{dot, norm};
    use rand::Rng;

    #[test]
    fn quadrature_is_exact_for_polynomials_up_to_degree_2m_minus_1() {
        let mut rng = gradlab_core::rng::rng(0);
        let n = 80;
        let eig: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..2.0)).collect();
        let (q, _) = Quadratic::with_spectrum(&eig, &mut rng);
        let mut op = DenseOperator::new(n, q.matrix().to_vec()).unwrap();
        let m = 6;
        let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        let quad = slq_with_probes(&mut op, std::slice::from_ref(&v), m).unwrap();
        assert!((quad.weights[0].iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // reference: vᵀ A^p v / vᵀv by repeated products
        let mut w = v.clone();
        let mut tmp = vec![0.0; n];
        let vv = dot(&v, &v);
        for p in 0..=(2 * m - 1) {
            let want = dot(&v, &w) / vv;
            let got = quad.mean_of(|x| x.powi(p as i32));
            assert!((got - want).abs() < 1e-10 * (1.0 + want.abs()), "p={p}: {got} vs {want}");
            op.apply(&w, &mut tmp).unwrap();
            std::mem::swap(&mut w, &mut tmp);
        }
        // degree 2m is generally not exact: the test above is not vacuous
        let want = dot(&v, &w) / vv;
        assert!((quad.mean_of(|x| x.powi(2 * m as i32)) - want).abs() > 1e-8);
        let _ = norm(&v);
    }

    #[test]
    fn density_integrates_to_one_and_matches_the_spectrum() {
        let mut rng = gradlab_core::rng::rng(1);
        let n = 200;
        // two clusters: 150 eigenvalues near 0, 50 near 5
        let eig: Vec<f64> =
            (0..n).map(|i| if i < 150 { rng.random_range(-0.2..0.2) } else { rng.random_range(4.8..5.2) }).collect();
        let (q, _) = Quadratic::with_spectrum(&eig, &mut rng);
        let mut op = DenseOperator::new(n, q.matrix().to_vec()).unwrap();
        let quad = slq(&mut op, &SlqConfig { probes: 20, steps: 40, seed: 3 }).unwrap();
        let grid: Vec<f64> = (0..=2000).map(|i| -3.0 + 11.0 * i as f64 / 2000.0).collect();
        let dens = quad.density(&grid, 0.1).unwrap();
        let dx = grid[1] - grid[0];
        let total: f64 = dens.iter().sum::<f64>() * dx;
        assert!((total - 1.0).abs() < 1e-3, "integral {total}");
        // mass of the upper cluster ≈ 50/200; the probe average has std ≈ sqrt(2·0.25·0.75/(n·P)) ≈ 0.0097
        let upper: f64 = grid.iter().zip(&dens).filter(|(t, _)| **t > 2.5).map(|(_, d)| d).sum::<f64>() * dx;
        assert!((upper - 0.25).abs() < 0.04, "upper mass {upper}");
        let (lo, hi) = quad.range();
        assert!(lo > -0.25 && hi < 5.25 && hi > 4.7, "range {lo}..{hi}");
    }
}
