//! The [`Objective`] trait: loss (and gradient) of a model at a flat parameter vector.
//!
//! Everything in this crate works on flat `&[f64]` parameter vectors. An objective evaluates the
//! loss on a *fixed* set of batches so that repeated evaluations at the same point give the same
//! number (no dropout, BatchNorm in eval mode, no reshuffling).

use std::sync::Arc;

use crate::error::{Error, Result, check_len};

/// Loss and gradient at a flat parameter vector, deterministic.
///
/// Methods take `&mut self` so implementations may keep scratch buffers or write the parameters
/// into a model they own. Parallel code asks for one replica per worker through [`Replicate`].
pub trait Objective: Send {
    /// Number of parameters.
    fn dim(&self) -> usize;

    /// Loss at `theta` (`theta.len() == self.dim()`).
    fn loss(&mut self, theta: &[f64]) -> Result<f64>;

    /// Loss at `theta`; the gradient is written into `grad`.
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64>;

    /// Exact Hessian-vector product `H(theta) v` written into `out`, for objectives that can
    /// differentiate twice (double backward, analytic Hessians). The default says unsupported;
    /// [`crate::hessian::hvp`] falls back to finite differences of gradients when asked to.
    fn hvp_exact(&mut self, theta: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        let _ = (theta, v, out);
        Err(Error::Unsupported(
            "this objective has no exact Hessian-vector product; use HvpMethod::FiniteDifference".into(),
        ))
    }
}

/// Make an independent copy of an objective for another worker thread (a model replica with its
/// own parameter storage). For closures this is a cheap clone.
pub trait Replicate: Sized {
    /// A fresh, independent replica that computes the same function.
    fn replicate(&self) -> Result<Self>;
}

impl<O: Objective + ?Sized> Objective for &mut O {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        (**self).loss(theta)
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        (**self).loss_grad(theta, grad)
    }
    fn hvp_exact(&mut self, theta: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        (**self).hvp_exact(theta, v, out)
    }
}

type LossGradFn = dyn Fn(&[f64], Option<&mut [f64]>) -> f64 + Send + Sync;
type HvpFn = dyn Fn(&[f64], &[f64], &mut [f64]) + Send + Sync;

/// An objective made of plain closures (analytic test functions, toy problems).
///
/// The main closure returns the loss and, when given `Some(grad)`, writes the gradient.
/// Cheap to clone and to replicate.
///
/// ```
/// use gradlab_landscape::objective::{FnObjective, Objective};
/// // f(x) = sum x_i^2 / 2, gradient x
/// let mut f = FnObjective::new(3, |x: &[f64], g: Option<&mut [f64]>| {
///     if let Some(g) = g { g.copy_from_slice(x); }
///     0.5 * x.iter().map(|v| v * v).sum::<f64>()
/// });
/// assert_eq!(f.loss(&[1.0, 2.0, 2.0]).unwrap(), 4.5);
/// ```
#[derive(Clone)]
pub struct FnObjective {
    dim: usize,
    f: Arc<LossGradFn>,
    hvp: Option<Arc<HvpFn>>,
}

impl std::fmt::Debug for FnObjective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnObjective").field("dim", &self.dim).field("exact_hvp", &self.hvp.is_some()).finish()
    }
}

impl FnObjective {
    /// Objective of dimension `dim` from a loss-and-optional-gradient closure.
    pub fn new(dim: usize, f: impl Fn(&[f64], Option<&mut [f64]>) -> f64 + Send + Sync + 'static) -> Self {
        Self { dim, f: Arc::new(f), hvp: None }
    }

    /// Adds an exact Hessian-vector product `h(theta, v, out)`.
    #[must_use]
    pub fn with_hvp(mut self, h: impl Fn(&[f64], &[f64], &mut [f64]) + Send + Sync + 'static) -> Self {
        self.hvp = Some(Arc::new(h));
        self
    }
}

impl Objective for FnObjective {
    fn dim(&self) -> usize {
        self.dim
    }
    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        check_len("theta", self.dim, theta.len())?;
        Ok((self.f)(theta, None))
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        check_len("theta", self.dim, theta.len())?;
        check_len("grad", self.dim, grad.len())?;
        Ok((self.f)(theta, Some(grad)))
    }
    fn hvp_exact(&mut self, theta: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("theta", self.dim, theta.len())?;
        check_len("v", self.dim, v.len())?;
        check_len("out", self.dim, out.len())?;
        match &self.hvp {
            Some(h) => {
                h(theta, v, out);
                Ok(())
            }
            None => {
                Err(Error::Unsupported("FnObjective without with_hvp(..) has no exact Hessian-vector product".into()))
            }
        }
    }
}

impl Replicate for FnObjective {
    fn replicate(&self) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Gradient of `obj` at `theta` as a new vector, with the loss.
pub fn gradient<O: Objective + ?Sized>(obj: &mut O, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
    let mut g = vec![0.0; obj.dim()];
    let l = obj.loss_grad(theta, &mut g)?;
    Ok((l, g))
}

/// An objective restricted to some of its coordinates: `φ ↦ f(base with base[index] = φ)`.
///
/// Used to take Hessians over the trained parameters only when the flat vector also holds
/// buffers (see [`crate::VarMapObjective::trainable_indices`]). Gradients and exact Hessian
/// products are those of the full objective restricted to `index` (directions are zero outside).
#[derive(Debug)]
pub struct Subspace<O> {
    inner: O,
    base: Vec<f64>,
    index: Vec<usize>,
    full: Vec<f64>,
    full_grad: Vec<f64>,
    full_v: Vec<f64>,
}

impl<O: Objective> Subspace<O> {
    /// Restricts `inner` to the coordinates `index` (distinct, inside `base`) around `base`.
    pub fn new(inner: O, base: Vec<f64>, index: Vec<usize>) -> Result<Self> {
        check_len("base", inner.dim(), base.len())?;
        let mut seen = vec![false; base.len()];
        let distinct_inside = index.iter().all(|&i| i < base.len() && !std::mem::replace(&mut seen[i], true));
        if index.is_empty() || !distinct_inside {
            return Err(Error::invalid(
                "subspace index",
                format!("{} indices into a base of {}", index.len(), base.len()),
                "at least one index, distinct, each < the objective's dimension",
            ));
        }
        let n = base.len();
        Ok(Subspace { inner, full: base.clone(), base, index, full_grad: vec![0.0; n], full_v: vec![0.0; n] })
    }
    /// The restricted coordinates of a full vector.
    pub fn restrict(&self, full: &[f64]) -> Vec<f64> {
        self.index.iter().map(|&i| full[i]).collect()
    }
    /// A full vector: the base with the restricted coordinates replaced by `phi`.
    pub fn embed(&self, phi: &[f64]) -> Vec<f64> {
        let mut f = self.base.clone();
        self.index.iter().zip(phi).for_each(|(&i, v)| f[i] = *v);
        f
    }
    /// A direction of the subspace as a full vector (zeros outside it).
    pub fn embed_direction(&self, d: &[f64]) -> Vec<f64> {
        let mut f = vec![0.0; self.base.len()];
        self.index.iter().zip(d).for_each(|(&i, v)| f[i] = *v);
        f
    }
    /// The full objective.
    pub fn inner(&self) -> &O {
        &self.inner
    }
    fn fill(&mut self, phi: &[f64]) -> Result<()> {
        check_len("phi", self.index.len(), phi.len())?;
        self.index.iter().zip(phi).for_each(|(&i, v)| self.full[i] = *v);
        Ok(())
    }
}

impl<O: Objective> Objective for Subspace<O> {
    fn dim(&self) -> usize {
        self.index.len()
    }
    fn loss(&mut self, phi: &[f64]) -> Result<f64> {
        self.fill(phi)?;
        self.inner.loss(&self.full)
    }
    fn loss_grad(&mut self, phi: &[f64], grad: &mut [f64]) -> Result<f64> {
        check_len("grad", self.index.len(), grad.len())?;
        self.fill(phi)?;
        let l = self.inner.loss_grad(&self.full, &mut self.full_grad)?;
        grad.iter_mut().zip(&self.index).for_each(|(g, &i)| *g = self.full_grad[i]);
        Ok(l)
    }
    fn hvp_exact(&mut self, phi: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("v", self.index.len(), v.len())?;
        check_len("out", self.index.len(), out.len())?;
        self.fill(phi)?;
        self.full_v.fill(0.0);
        self.index.iter().zip(v).for_each(|(&i, x)| self.full_v[i] = *x);
        self.inner.hvp_exact(&self.full, &self.full_v, &mut self.full_grad)?;
        out.iter_mut().zip(&self.index).for_each(|(o, &i)| *o = self.full_grad[i]);
        Ok(())
    }
}

impl<O: Objective + Replicate> Replicate for Subspace<O> {
    fn replicate(&self) -> Result<Self> {
        let mut r = Subspace::new(self.inner.replicate()?, self.base.clone(), self.index.clone())?;
        r.full.copy_from_slice(&self.full);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hessian::{HessianOperator, HvpMethod, dense_matrix};
    use crate::testfns::Quadratic;

    #[test]
    fn subspace_restricts_loss_gradient_and_hessian() {
        let (q, _) = Quadratic::with_spectrum(&[4.0, 3.0, 2.0, 1.0, 0.5], &mut gradlab_core::rng::rng(0));
        let a = q.matrix().to_vec();
        let base = vec![0.1, -0.2, 0.3, 0.4, -0.5];
        let index = vec![3, 0, 2];
        let mut sub = Subspace::new(q.clone(), base.clone(), index.clone()).unwrap();
        let phi = sub.restrict(&base);
        assert_eq!(phi, vec![0.4, 0.1, 0.3]);
        let mut full = q.clone();
        assert_eq!(sub.loss(&phi).unwrap(), full.loss(&base).unwrap());
        let (_, g_full) = gradient(&mut full, &base).unwrap();
        let (_, g) = gradient(&mut sub, &phi).unwrap();
        assert_eq!(g, sub.restrict(&g_full));
        for method in [HvpMethod::Exact, HvpMethod::FiniteDifference { h: 1e-3 }] {
            let mut op = HessianOperator::new(&mut sub, &phi, method).unwrap();
            let h = dense_matrix(&mut op).unwrap();
            for (r, &i) in index.iter().enumerate() {
                for (c, &j) in index.iter().enumerate() {
                    assert!((h[r * 3 + c] - a[i * 5 + j]).abs() < 1e-9, "{method:?} ({i}, {j})");
                }
            }
        }
        let d = sub.embed_direction(&[1.0, 2.0, 3.0]);
        assert_eq!(d, vec![2.0, 0.0, 3.0, 1.0, 0.0]);
        assert_eq!(sub.embed(&[9.0, 8.0, 7.0]), vec![8.0, -0.2, 7.0, 9.0, -0.5]);
        assert!(Subspace::new(q.clone(), base.clone(), vec![0, 0]).is_err());
        assert!(Subspace::new(q, base, vec![5]).is_err());
    }
}
