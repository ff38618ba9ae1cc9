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
