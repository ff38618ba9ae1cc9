//! Hessian-vector products and the Hessian as a linear operator.
//!
//! Two methods: central finite differences of gradients,
//! `Hv ≈ ‖v‖ (g(θ + h v̂) − g(θ − h v̂)) / 2h` (two gradients, relative error ~ h² + ε_mach/h),
//! and the objective's exact product ([`Objective::hvp_exact`], e.g. candle double backward).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_len};
use crate::objective::Objective;
use crate::vecops::{dot, norm};

/// How Hessian-vector products are computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HvpMethod {
    /// Central differences of gradients along the unit vector `v/‖v‖` with step `h`.
    /// `h = 1e-3` suits f64 models (relative error ~1e-8), `h = 1e-2` f32 models (~1e-5).
    FiniteDifference {
        /// Step length along the unit direction.
        h: f64,
    },
    /// The objective's exact product (double backward); errors if unsupported.
    Exact,
}

impl Default for HvpMethod {
    fn default() -> Self {
        HvpMethod::FiniteDifference { h: 1e-3 }
    }
}

impl HvpMethod {
    /// Checks the step of the finite-difference variant.
    pub fn check(&self) -> Result<()> {
        if let HvpMethod::FiniteDifference { h } = *self
            && !(h.is_finite() && h > 0.0)
        {
            return Err(Error::invalid(
                "hvp.h",
                h.to_string(),
                "a finite step > 0 (typically 1e-3 for f64, 1e-2 for f32 models)",
            ));
        }
        Ok(())
    }
}

/// `H(theta) v` into `out`.
pub fn hvp<O: Objective + ?Sized>(
    obj: &mut O,
    theta: &[f64],
    v: &[f64],
    method: HvpMethod,
    out: &mut [f64],
) -> Result<()> {
    let n = obj.dim();
    check_len("theta", n, theta.len())?;
    check_len("v", n, v.len())?;
    check_len("out", n, out.len())?;
    method.check()?;
    match method {
        HvpMethod::Exact => obj.hvp_exact(theta, v, out),
        HvpMethod::FiniteDifference { h } => {
            let vn = norm(v);
            if vn == 0.0 {
                out.fill(0.0);
                return Ok(());
            }
            let step = h / vn;
            let mut x: Vec<f64> = theta.iter().zip(v).map(|(t, d)| t + step * d).collect();
            obj.loss_grad(&x, out)?;
            for ((xi, t), d) in x.iter_mut().zip(theta).zip(v) {
                *xi = t - step * d;
            }
            let mut gm = vec![0.0; n];
            obj.loss_grad(&x, &mut gm)?;
            let inv = 1.0 / (2.0 * step);
            for (o, m) in out.iter_mut().zip(&gm) {
                *o = (*o - m) * inv;
            }
            Ok(())
        }
    }
}

/// A symmetric linear operator `v ↦ A v` (the Hessian, or a dense test matrix).
pub trait LinearOperator {
    /// Dimension `n` of the (square) operator.
    fn dim(&self) -> usize;
    /// `out = A v`.
    fn apply(&mut self, v: &[f64], out: &mut [f64]) -> Result<()>;
}

/// The Hessian of an objective at a fixed point, as a [`LinearOperator`]. Counts its products.
#[derive(Debug)]
pub struct HessianOperator<'a, O: Objective + ?Sized> {
    obj: &'a mut O,
    theta: Vec<f64>,
    method: HvpMethod,
    /// Number of Hessian-vector products computed so far.
    pub products: usize,
}

impl<'a, O: Objective + ?Sized> HessianOperator<'a, O> {
    /// Hessian of `obj` at `theta`.
    pub fn new(obj: &'a mut O, theta: &[f64], method: HvpMethod) -> Result<Self> {
        check_len("theta", obj.dim(), theta.len())?;
        method.check()?;
        Ok(Self { obj, theta: theta.to_vec(), method, products: 0 })
    }
}

impl<O: Objective + ?Sized> LinearOperator for HessianOperator<'_, O> {
    fn dim(&self) -> usize {
        self.theta.len()
    }
    fn apply(&mut self, v: &[f64], out: &mut [f64]) -> Result<()> {
        self.products += 1;
        hvp(self.obj, &self.theta, v, self.method, out)
    }
}

/// A dense symmetric matrix as an operator (tests, small problems).
#[derive(Debug, Clone)]
pub struct DenseOperator {
    n: usize,
    a: Vec<f64>,
}

impl DenseOperator {
    /// From a row-major `n × n` matrix.
    pub fn new(n: usize, a: Vec<f64>) -> Result<Self> {
        check_len("dense matrix (n*n)", n * n, a.len())?;
        Ok(Self { n, a })
    }
    /// Row-major entries.
    pub fn data(&self) -> &[f64] {
        &self.a
    }
}

impl LinearOperator for DenseOperator {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&mut self, v: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("v", self.n, v.len())?;
        check_len("out", self.n, out.len())?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(&self.a[i * self.n..(i + 1) * self.n], v);
        }
        Ok(())
    }
}

/// Dense `n × n` matrix of an operator by applying it to the unit vectors (row-major; the
/// returned matrix is symmetrised, `(A + Aᵀ)/2`). Costs `n` products: small problems only.
pub fn dense_matrix<L: LinearOperator + ?Sized>(op: &mut L) -> Result<Vec<f64>> {
    let n = op.dim();
    let mut a = vec![0.0; n * n];
    let mut e = vec![0.0; n];
    let mut col = vec![0.0; n];
    for j in 0..n {
        e[j] = 1.0;
        op.apply(&e, &mut col)?;
        e[j] = 0.0;
        for i in 0..n {
            a[i * n + j] = col[i];
        }
    }
    for i in 0..n {
        for j in 0..i {
            let s = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = s;
            a[j * n + i] = s;
        }
    }
    Ok(a)
}

/// Dense `n × n` Hessian (row-major) from loss values alone, by 4-point second differences with
/// step `h`: `(f(+h,+h) − f(+h,−h) − f(−h,+h) + f(−h,−h)) / 4h²`. Independent of gradients and
/// backprop, so a reference for both HVP methods; error ~ `h² + ε/h²` relative. Costs `2n(n+1)`
/// loss evaluations: small problems only.
pub fn dense_hessian_from_losses<O: Objective + ?Sized>(obj: &mut O, theta: &[f64], h: f64) -> Result<Vec<f64>> {
    let n = obj.dim();
    check_len("theta", n, theta.len())?;
    let mut hm = vec![0.0; n * n];
    let mut x = theta.to_vec();
    for i in 0..n {
        for j in 0..=i {
            let mut acc = 0.0;
            for (si, sj, sign) in [(1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0)] {
                x[i] += si * h;
                x[j] += sj * h;
                acc += sign * obj.loss(&x)?;
                x[i] = theta[i];
                x[j] = theta[j];
            }
            hm[i * n + j] = acc / (4.0 * h * h);
            hm[j * n + i] = hm[i * n + j];
        }
    }
    Ok(hm)
}

/// Eigenvalues (ascending) and eigenvectors (`vectors[i]` for `values[i]`) of a dense symmetric
/// row-major matrix, via faer. The reference for the iterative methods.
pub fn dense_symmetric_eigen(n: usize, a: &[f64]) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    check_len("dense matrix (n*n)", n * n, a.len())?;
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let evd =
        m.self_adjoint_eigen(faer::Side::Lower).map_err(|_| Error::LinearAlgebra("self-adjoint eigendecomposition"))?;
    let s = evd.S();
    let u = evd.U();
    let values: Vec<f64> = (0..n).map(|i| s[i]).collect();
    let vectors: Vec<Vec<f64>> = (0..n).map(|j| (0..n).map(|i| u[(i, j)]).collect()).collect();
    Ok((values, vectors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::FnObjective;
    use crate::testfns::Quadratic;
    use rand::Rng;

    /// f(x) = Σ log cosh(x_i) + ¼ (Σ x_i)⁴; H = diag(sech² x_i) + 3 (Σx)² 11ᵀ.
    fn logcosh_quartic(n: usize) -> FnObjective {
        FnObjective::new(n, |x: &[f64], g: Option<&mut [f64]>| {
            let s: f64 = x.iter().sum();
            if let Some(g) = g {
                for (gi, xi) in g.iter_mut().zip(x) {
                    *gi = xi.tanh() + s.powi(3);
                }
            }
            x.iter().map(|v| v.cosh().ln()).sum::<f64>() + 0.25 * s.powi(4)
        })
        .with_hvp(|x, v, out| {
            let s: f64 = x.iter().sum();
            let sv: f64 = v.iter().sum();
            for ((o, xi), vi) in out.iter_mut().zip(x).zip(v) {
                *o = vi / xi.cosh().powi(2) + 3.0 * s * s * sv;
            }
        })
    }

    fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
        num / norm(b).max(1e-300)
    }

    #[test]
    fn fd_hvp_matches_exact_on_nonlinear_function() {
        let mut rng = gradlab_core::rng::rng(0);
        for n in [1usize, 5, 30] {
            let mut f = logcosh_quartic(n);
            let x: Vec<f64> = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut exact = vec![0.0; n];
            let mut fd = vec![0.0; n];
            hvp(&mut f, &x, &v, HvpMethod::Exact, &mut exact).unwrap();
            // central differences: truncation error ∝ h² (third derivative of the quartic term)
            hvp(&mut f, &x, &v, HvpMethod::FiniteDifference { h: 1e-3 }, &mut fd).unwrap();
            let e3 = rel_err(&fd, &exact);
            hvp(&mut f, &x, &v, HvpMethod::FiniteDifference { h: 1e-4 }, &mut fd).unwrap();
            let e4 = rel_err(&fd, &exact);
            assert!(e4 < 1e-6, "n={n}: relative error {e4} (h=1e-4)");
            let ratio = e3 / e4;
            assert!((80.0..120.0).contains(&ratio), "n={n}: error ratio {ratio} for h ×10 (expected ≈ 100)");
        }
    }

    #[test]
    fn dense_hessian_by_fd_matches_quadratic_matrix() {
        let mut rng = gradlab_core::rng::rng(1);
        let eig: Vec<f64> = (0..12).map(|i| i as f64 - 4.0).collect();
        let (mut q, _) = Quadratic::with_spectrum(&eig, &mut rng);
        let a = q.matrix().to_vec();
        let x: Vec<f64> = (0..12).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut op = HessianOperator::new(&mut q, &x, HvpMethod::FiniteDifference { h: 1e-2 }).unwrap();
        let h = dense_matrix(&mut op).unwrap();
        assert_eq!(op.products, 12);
        let e = rel_err(&h, &a);
        assert!(e < 1e-12, "relative error {e}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut f = logcosh_quartic(3);
        let mut out = vec![0.0; 3];
        assert!(matches!(
            hvp(&mut f, &[0.0; 2], &[0.0; 3], HvpMethod::Exact, &mut out),
            Err(Error::LengthMismatch { what: "theta", expected: 3, got: 2 })
        ));
        assert!(matches!(
            hvp(&mut f, &[0.0; 3], &[1.0; 3], HvpMethod::FiniteDifference { h: -1.0 }, &mut out),
            Err(Error::Invalid { field, .. }) if field == "hvp.h"
        ));
        let mut plain = FnObjective::new(1, |x: &[f64], _g: Option<&mut [f64]>| x[0]);
        assert!(matches!(plain.hvp_exact(&[0.0], &[1.0], &mut [0.0]), Err(Error::Unsupported(_))));
    }

    #[test]
    fn dense_eigen_reconstructs_matrix() {
        let mut rng = gradlab_core::rng::rng(2);
        let eig = [3.0, -1.0, 0.5, 2.0, 2.0];
        let (q, _) = Quadratic::with_spectrum(&eig, &mut rng);
        let (vals, _vecs) = dense_symmetric_eigen(5, q.matrix()).unwrap();
        let mut want = eig.to_vec();
        want.sort_by(f64::total_cmp);
        for (a, b) in vals.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{vals:?} vs {want:?}");
        }
    }
}
