//! Lanczos with full reorthogonalisation for extreme eigenpairs of a symmetric operator.
//!
//! Every new Lanczos vector is orthogonalised twice against the whole basis, so the basis stays
//! orthonormal to machine precision and no spurious copies of converged Ritz values appear. The
//! price is `O(n m)` memory and `O(n m²)` work for `m` steps, fine for `m` up to a few hundred.
//! On an invariant subspace (β ≈ 0) the iteration restarts with a random vector orthogonal to the
//! basis, so with `m = n` steps it returns the complete spectrum, exact to rounding.

use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use gradlab_core::rng::{SeededRng, stream_rng};

use crate::error::{Error, Result, check_len};
use crate::hessian::{LinearOperator, dense_symmetric_eigen};
use crate::vecops::{axpy, dot, norm, orthogonalize_against, scale};

/// Which end of the spectrum to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// The `k` largest (algebraic) eigenvalues, descending.
    Largest,
    /// The `k` smallest (algebraic) eigenvalues, ascending.
    Smallest,
}

/// Settings for [`lanczos`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LanczosConfig {
    /// Maximum number of Lanczos steps (operator applications), capped at the dimension.
    pub max_steps: usize,
    /// Convergence: stop when every wanted Ritz pair has residual `‖A y − θ y‖ ≤ tol · max(|θ|, ‖T‖)`.
    pub tol: f64,
    /// Seed of the random start vector (and restart vectors).
    pub seed: u64,
}

impl Default for LanczosConfig {
    fn default() -> Self {
        Self { max_steps: 100, tol: 1e-10, seed: 0 }
    }
}

/// Eigenpairs returned by [`lanczos`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Eigenpairs {
    /// Eigenvalue estimates (Ritz values), ordered as requested by [`Which`].
    pub values: Vec<f64>,
    /// Unit eigenvector estimates (Ritz vectors), `vectors[i]` for `values[i]`.
    pub vectors: Vec<Vec<f64>>,
    /// Residual norms `‖A y_i − θ_i y_i‖` (exact under full reorthogonalisation).
    pub residuals: Vec<f64>,
    /// Lanczos steps taken (= operator applications).
    pub steps: usize,
    /// Whether every requested pair met the tolerance.
    pub converged: bool,
}

/// The tridiagonal matrix of a Lanczos run and its orthonormal basis.
#[derive(Debug, Clone)]
pub struct LanczosRun {
    /// Diagonal α.
    pub alpha: Vec<f64>,
    /// Off-diagonal β (`beta[j]` couples steps `j` and `j+1`; the last one is the residual norm).
    pub beta: Vec<f64>,
    /// Orthonormal Lanczos vectors (one per step).
    pub basis: Vec<Vec<f64>>,
}

impl LanczosRun {
    /// Eigen-decomposition of the `m × m` tridiagonal matrix: ascending Ritz values and the
    /// eigenvectors `s` (`s[i]` for value `i`, length `m`).
    pub fn ritz(&self) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let m = self.alpha.len();
        let mut t = vec![0.0; m * m];
        for j in 0..m {
            t[j * m + j] = self.alpha[j];
            if j + 1 < m {
                t[j * m + j + 1] = self.beta[j];
                t[(j + 1) * m + j] = self.beta[j];
            }
        }
        dense_symmetric_eigen(m, &t)
    }
}

/// Stream of `seed` for the restart vectors after a breakdown (the start vector uses `seed` itself).
const RESTART_STREAM: u64 = 1;

fn random_unit(n: usize, rng: &mut SeededRng, basis: &[Vec<f64>]) -> Vec<f64> {
    loop {
        let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
        let r = orthogonalize_against(basis, &mut v);
        if r > 1e-8 {
            return v;
        }
    }
}

/// One Lanczos run of (up to) `steps` steps from the start vector `v0` (normalised here), with
/// full reorthogonalisation. `stop(run)` is asked after every step whether to stop early.
pub fn lanczos_run<L: LinearOperator + ?Sized>(
    op: &mut L,
    v0: &[f64],
    steps: usize,
    seed: u64,
    restart_on_breakdown: bool,
    mut stop: impl FnMut(&LanczosRun) -> Result<bool>,
) -> Result<LanczosRun> {
    let n = op.dim();
    check_len("start vector", n, v0.len())?;
    let steps = steps.min(n);
    let mut rng = stream_rng(seed, RESTART_STREAM);
    let mut v = v0.to_vec();
    let nv = norm(&v);
    if !(nv.is_finite() && nv > 0.0) {
        return Err(Error::invalid("start vector", format!("norm {nv}"), "a finite non-zero vector"));
    }
    scale(1.0 / nv, &mut v);
    let mut run = LanczosRun { alpha: Vec::new(), beta: Vec::new(), basis: Vec::new() };
    let mut w = vec![0.0; n];
    let mut anorm = 0.0f64;
    for j in 0..steps {
        op.apply(&v, &mut w)?;
        if let Some(bad) = w.iter().find(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                what: "operator product",
                value: *bad,
                context: format!("Lanczos step {j}"),
            });
        }
        let a = dot(&w, &v);
        axpy(-a, &v, &mut w);
        if let (Some(prev), Some(b)) = (run.basis.last(), run.beta.last()) {
            axpy(-*b, prev, &mut w);
        }
        run.basis.push(std::mem::take(&mut v));
        run.alpha.push(a);
        anorm = anorm.max(a.abs());
        // full reorthogonalisation (twice)
        let b = {
            for _ in 0..2 {
                for q in &run.basis {
                    let c = dot(q, &w);
                    axpy(-c, q, &mut w);
                }
            }
            norm(&w)
        };
        anorm = anorm.max(b);
        let breakdown = b <= 1e-12 * anorm.max(f64::MIN_POSITIVE);
        if breakdown {
            run.beta.push(0.0);
        } else {
            run.beta.push(b);
        }
        if j + 1 == steps {
            break;
        }
        if breakdown {
            // An invariant subspace: its Ritz pairs are exact, but eigenvalues outside it (or
            // further copies of repeated ones) are still missing, so restart rather than stop.
            if !restart_on_breakdown {
                break;
            }
            v = random_unit(n, &mut rng, &run.basis);
            continue;
        }
        if stop(&run)? {
            break;
        }
        v = w.clone();
        scale(1.0 / b, &mut v);
    }
    Ok(run)
}

/// The `k` extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation.
///
/// Convergence is checked every step once `k` steps have been taken (the check costs an
/// `m × m` eigendecomposition, negligible next to an operator product on a network).
pub fn lanczos<L: LinearOperator + ?Sized>(
    op: &mut L,
    k: usize,
    which: Which,
    cfg: &LanczosConfig,
) -> Result<Eigenpairs> {
    let n = op.dim();
    if k == 0 || k > n {
        return Err(Error::invalid("k", k.to_string(), "1 ≤ k ≤ dimension of the operator"));
    }
    if cfg.max_steps < k {
        return Err(Error::invalid("max_steps", cfg.max_steps.to_string(), "at least k (typically 2k–4k + 20)"));
    }
    if !(cfg.tol.is_finite() && cfg.tol > 0.0) {
        return Err(Error::invalid("tol", cfg.tol.to_string(), "finite and > 0"));
    }
    let mut rng = gradlab_core::rng::rng(cfg.seed);
    let v0 = random_unit(n, &mut rng, &[]);
    let wanted = |vals: &[f64]| -> Vec<usize> {
        let m = vals.len();
        match which {
            Which::Largest => (0..k.min(m)).map(|i| m - 1 - i).collect(),
            Which::Smallest => (0..k.min(m)).collect(),
        }
    };
    let residuals_of = |run: &LanczosRun, s: &[Vec<f64>], idx: &[usize]| -> Vec<f64> {
        let m = run.alpha.len();
        let b = run.beta[m - 1];
        idx.iter().map(|&i| (b * s[i][m - 1]).abs()).collect()
    };
    let tol = cfg.tol;
    let run = lanczos_run(op, &v0, cfg.max_steps, cfg.seed, true, |run| {
        if run.alpha.len() < k {
            return Ok(false);
        }
        let (vals, s) = run.ritz()?;
        let idx = wanted(&vals);
        let scale_t = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let res = residuals_of(run, &s, &idx);
        Ok(res.iter().all(|r| *r <= tol * scale_t.max(f64::MIN_POSITIVE)))
    })?;
    let (vals, s) = run.ritz()?;
    let idx = wanted(&vals);
    let residuals = residuals_of(&run, &s, &idx);
    let scale_t = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let converged = residuals.iter().all(|r| *r <= tol * scale_t.max(f64::MIN_POSITIVE));
    let mut vectors = Vec::with_capacity(idx.len());
    for &i in &idx {
        let mut y = vec![0.0; n];
        for (c, q) in s[i].iter().zip(&run.basis) {
            axpy(*c, q, &mut y);
        }
        let ny = norm(&y);
        scale(1.0 / ny, &mut y);
        vectors.push(y);
    }
    Ok(Eigenpairs {
        values: idx.iter().map(|&i| vals[i]).collect(),
        vectors,
        residuals,
        steps: run.alpha.len(),
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hessian::{DenseOperator, HessianOperator, HvpMethod};
    use crate::testfns::Quadratic;
    use rand::Rng;

    fn spectrum(n: usize, rng: &mut gradlab_core::rng::SeededRng) -> Vec<f64> {
        // a bulk near zero (both signs) plus a few separated outliers, like a network Hessian
        let mut e: Vec<f64> = (0..n).map(|_| rng.random_range(-0.5..1.0)).collect();
        e[0] = 50.0;
        e[1] = 20.0;
        e[2] = 10.0;
        e[3] = -8.0;
        e[4] = -3.0;
        e
    }

    #[test]
    fn full_run_recovers_every_eigenvalue_of_a_quadratic() {
        let mut rng = gradlab_core::rng::rng(0);
        for n in [1usize, 2, 7, 40] {
            let eig = spectrum(n.max(5), &mut rng);
            let eig = &eig[..n];
            let (mut q, _) = Quadratic::with_spectrum(eig, &mut rng);
            let x = vec![0.3; n];
            let mut h = HessianOperator::new(&mut q, &x, HvpMethod::Exact).unwrap();
            let cfg = LanczosConfig { max_steps: n, tol: 1e-14, seed: 3 };
            let r = lanczos(&mut h, n, Which::Smallest, &cfg).unwrap();
            let mut want = eig.to_vec();
            want.sort_by(f64::total_cmp);
            for (a, b) in r.values.iter().zip(&want) {
                assert!((a - b).abs() < 1e-8, "n={n}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn top_and_bottom_k_match_dense_eigendecomposition() {
        let mut rng = gradlab_core::rng::rng(1);
        let n = 300;
        let eig = spectrum(n, &mut rng);
        let (q, _) = Quadratic::with_spectrum(&eig, &mut rng);
        let (dvals, dvecs) = dense_symmetric_eigen(n, q.matrix()).unwrap();
        let mut op = DenseOperator::new(n, q.matrix().to_vec()).unwrap();
        let cfg = LanczosConfig { max_steps: 150, tol: 1e-10, seed: 7 };
        for (which, k) in [(Which::Largest, 3usize), (Which::Smallest, 2)] {
            let r = lanczos(&mut op, k, which, &cfg).unwrap();
            assert!(r.converged, "{which:?}: residuals {:?} after {} steps", r.residuals, r.steps);
            assert!(r.steps < 150);
            for i in 0..k {
                let j = match which {
                    Which::Largest => n - 1 - i,
                    Which::Smallest => i,
                };
                assert!((r.values[i] - dvals[j]).abs() < 1e-8, "{which:?} {i}: {} vs {}", r.values[i], dvals[j]);
                let overlap = dot(&r.vectors[i], &dvecs[j]).abs();
                assert!((overlap - 1.0).abs() < 1e-8, "{which:?} {i}: |<y, u>| = {overlap}");
                // stated residual is the true residual
                let mut ay = vec![0.0; n];
                op.apply(&r.vectors[i], &mut ay).unwrap();
                axpy(-r.values[i], &r.vectors[i], &mut ay);
                assert!((norm(&ay) - r.residuals[i]).abs() < 1e-8);
            }
        }
    }

    #[test]
    fn repeated_eigenvalues_are_found_with_their_multiplicity() {
        let mut rng = gradlab_core::rng::rng(2);
        let mut eig = vec![5.0, 5.0, 5.0, 2.0, 2.0];
        eig.extend((0..25).map(|i| i as f64 * 0.01));
        let (q, _) = Quadratic::with_spectrum(&eig, &mut rng);
        let mut op = DenseOperator::new(eig.len(), q.matrix().to_vec()).unwrap();
        let cfg = LanczosConfig { max_steps: eig.len(), tol: 1e-12, seed: 0 };
        let r = lanczos(&mut op, 5, Which::Largest, &cfg).unwrap();
        for (a, b) in r.values.iter().zip([5.0, 5.0, 5.0, 2.0, 2.0]) {
            assert!((a - b).abs() < 1e-8, "{:?}", r.values);
        }
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let mut op = DenseOperator::new(2, vec![1.0, 0.0, 0.0, 2.0]).unwrap();
        let cfg = LanczosConfig::default();
        assert!(matches!(lanczos(&mut op, 0, Which::Largest, &cfg), Err(Error::Invalid { field, .. }) if field == "k"));
        assert!(matches!(lanczos(&mut op, 3, Which::Largest, &cfg), Err(Error::Invalid { field, .. }) if field == "k"));
        let cfg = LanczosConfig { max_steps: 1, ..cfg };
        assert!(matches!(
            lanczos(&mut op, 2, Which::Largest, &cfg),
            Err(Error::Invalid { field, .. }) if field == "max_steps"
        ));
    }
}
