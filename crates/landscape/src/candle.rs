//! [`CandleObjective`]: a candle model built from a `VarBuilder`, with fixed `(x, y)` batches, as
//! an [`Objective`] — a thin use of [`VarMapObjective`].
//!
//! The model is described by two functions: `build(VarBuilder) -> M` (creates the variables,
//! called once per replica) and `loss(&M, x, y) -> scalar` (mean loss of one batch, evaluated in
//! inference mode: call `forward_t(x, false)` for BatchNorm/dropout). The loss over the fixed
//! batches is the row-weighted mean of the batch losses, so the result equals the loss of the
//! concatenated data when the per-batch loss is a mean.
//!
//! Exact Hessian-vector products use double backward, which candle 0.11 only computes correctly
//! with `CANDLE_GRAD_DO_NOT_DETACH` set before the thread's first backward pass; call
//! `gradlab_core::grad::enable_exact_double_backward()` first in `main`. Without it
//! [`Objective::hvp_exact`] returns [`Error::Unsupported`] instead of silently wrong numbers
//! (see [`crate::varmap`]).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::objective::{Objective, Replicate};
use crate::varmap::{VarMapObjective, on_fresh_varmap};

/// A candle model with fixed `(x, y)` batches as an [`Objective`]. Dereferences to its
/// [`VarMapObjective`] (`varmap()`, `model()`, `layout()`, `params()`, `set_params()`, …).
pub struct CandleObjective<M> {
    inner: VarMapObjective<M>,
    batches: Arc<Vec<(Tensor, Tensor)>>,
}

impl<M> std::fmt::Debug for CandleObjective<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleObjective").field("inner", &self.inner).finish()
    }
}

impl<M> std::ops::Deref for CandleObjective<M> {
    type Target = VarMapObjective<M>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<M: Send + Sync + 'static> CandleObjective<M> {
    /// Builds the model on a fresh `VarMap` (`dtype`, `device`) and fixes the batches `(x, y)`,
    /// weighted by their number of rows.
    pub fn new<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        build: impl Fn(VarBuilder) -> std::result::Result<M, E> + Send + Sync + 'static,
        loss: impl Fn(&M, &Tensor, &Tensor) -> candle_core::Result<Tensor> + Send + Sync + 'static,
        batches: Vec<(Tensor, Tensor)>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if batches.is_empty() {
            return Err(Error::invalid("batches", 0, "at least one (x, y) batch"));
        }
        let rows: Vec<f64> = batches.iter().map(|(x, _)| x.dims().first().copied().unwrap_or(1) as f64).collect();
        let total: f64 = rows.iter().sum();
        let weights = rows.iter().map(|r| r / total).collect();
        let batches = Arc::new(batches);
        let data = batches.clone();
        let inner = VarMapObjective::new(
            on_fresh_varmap(build, dtype, device),
            move |m: &M, i: usize| {
                let (x, y) = &data[i];
                loss(m, x, y)
            },
            weights,
        )?;
        Ok(Self { inner, batches })
    }

    /// The fixed batches.
    pub fn batches(&self) -> &[(Tensor, Tensor)] {
        &self.batches
    }
}

impl<M: Send + Sync + 'static> Objective for CandleObjective<M> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        self.inner.loss(theta)
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        self.inner.loss_grad(theta, grad)
    }
    fn hvp_exact(&mut self, theta: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        self.inner.hvp_exact(theta, v, out)
    }
}

impl<M: Send + Sync + 'static> Replicate for CandleObjective<M> {
    fn replicate(&self) -> Result<Self> {
        Ok(Self { inner: self.inner.replicate()?, batches: self.batches.clone() })
    }
}

/// A small tanh MLP used in tests, benches and examples: `sizes[0] → … → sizes[last]`, MSE loss.
pub mod mlp {
    use candle_core::{Module, Tensor};
    use candle_nn::VarBuilder;

    /// The MLP (gradlab-core's, with tanh activations).
    pub type Mlp = gradlab_core::nn::Mlp;

    /// Builds the MLP with variables `l0.*`, `l1.*`, ….
    pub fn build(sizes: &[usize], vb: VarBuilder) -> gradlab_core::Result<Mlp> {
        Mlp::new(sizes, gradlab_core::nn::Activation::Tanh, vb)
    }

    /// Mean squared error of the MLP on one batch (the core's one-pass op,
    /// `gradlab_core::ops::mse`).
    pub fn mse(m: &Mlp, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        gradlab_core::ops::mse(&m.forward(x)?, y)
    }
}

/// Mean cross-entropy of the MLP's logits against `u32` class labels.
pub fn cross_entropy(m: &mlp::Mlp, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::Module;
    candle_nn::loss::cross_entropy(&m.forward(x)?, y)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hessian::{HessianOperator, HvpMethod, dense_hessian_from_losses, dense_matrix};
    use crate::surface::{Axis, SurfaceOptions, evaluate_surface};
    use rand::Rng;

    /// A 3→4→2 tanh MLP in f64 on two fixed batches of sizes 5 and 3 (26 parameters).
    pub(crate) fn small_model(seed: u64) -> (CandleObjective<mlp::Mlp>, Vec<f64>) {
        let mut rng = gradlab_core::rng::rng(seed);
        let dev = Device::Cpu;
        let mut batch = |rows: usize| {
            let x: Vec<f64> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
            let y: Vec<f64> = (0..rows * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
            (Tensor::from_vec(x, (rows, 3), &dev).unwrap(), Tensor::from_vec(y, (rows, 2), &dev).unwrap())
        };
        let batches = vec![batch(5), batch(3)];
        let obj = CandleObjective::new(|vb| mlp::build(&[3, 4, 2], vb), mlp::mse, batches, DType::F64, &dev).unwrap();
        let theta: Vec<f64> = (0..obj.dim()).map(|_| rng.random_range(-1.0..1.0)).collect();
        (obj, theta)
    }

    pub(crate) fn rel_frob(a: &[f64], b: &[f64]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
        d / b.iter().map(|y| y * y).sum::<f64>().sqrt()
    }

    #[test]
    fn loss_and_gradient_match_finite_differences_and_batching() {
        let (mut obj, theta) = small_model(0);
        assert_eq!(obj.dim(), 3 * 4 + 4 + 4 * 2 + 2);
        let mut g = vec![0.0; obj.dim()];
        let l = obj.loss_grad(&theta, &mut g).unwrap();
        assert!((l - obj.loss(&theta).unwrap()).abs() < 1e-14);
        let h = 1e-6;
        for k in 0..obj.dim() {
            let mut p = theta.clone();
            p[k] += h;
            let fp = obj.loss(&p).unwrap();
            p[k] -= 2.0 * h;
            let fm = obj.loss(&p).unwrap();
            assert!(((fp - fm) / (2.0 * h) - g[k]).abs() < 1e-8, "k={k}");
        }
        // row-weighted batch mean equals the loss on the concatenated data
        let (x, y): (Vec<_>, Vec<_>) = obj.batches().iter().cloned().unzip();
        let x = Tensor::cat(&x, 0).unwrap();
        let y = Tensor::cat(&y, 0).unwrap();
        obj.set_params(&theta).unwrap();
        let whole = mlp::mse(obj.model(), &x, &y).unwrap().to_scalar::<f64>().unwrap();
        assert!((whole - l).abs() < 1e-14, "{whole} vs {l}");
    }

    #[test]
    fn fd_hessian_of_a_small_model_matches_dense_reference() {
        let (mut obj, theta) = small_model(1);
        let reference = dense_hessian_from_losses(&mut obj, &theta, 1e-4).unwrap();
        let mut op = HessianOperator::new(&mut obj, &theta, HvpMethod::FiniteDifference { h: 1e-4 }).unwrap();
        let h = dense_matrix(&mut op).unwrap();
        // reference error ~ h² + ε/h² ≈ 1e-8 relative; FD-of-gradients error ~ 1e-9
        let e = rel_frob(&h, &reference);
        assert!(e < 1e-6, "relative Frobenius error {e}");
    }

    #[test]
    fn exact_hvp_refuses_without_the_environment_flag() {
        if gradlab_core::grad::double_backward_is_exact().unwrap() {
            return; // covered by tests/double_backward.rs
        }
        let (mut obj, theta) = small_model(2);
        let mut out = vec![0.0; obj.dim()];
        assert!(matches!(obj.hvp_exact(&theta, &theta.clone(), &mut out), Err(Error::Unsupported(_))));
    }

    #[test]
    fn replicas_are_independent_and_surfaces_work_in_parallel() {
        let (obj, theta) = small_model(3);
        obj.set_params(&theta).unwrap();
        let mut rep = obj.replicate().unwrap();
        assert_eq!(rep.params().unwrap(), theta);
        let other: Vec<f64> = theta.iter().map(|t| t * 0.5).collect();
        rep.loss(&other).unwrap();
        assert_eq!(obj.params().unwrap(), theta, "evaluating a replica must not touch the original");
        let mut rng = gradlab_core::rng::rng(4);
        let d1 = crate::directions::gaussian(obj.dim(), &mut rng);
        let d2 = crate::directions::gaussian(obj.dim(), &mut rng);
        let ax = Axis::new(-0.5, 0.5, 5).unwrap();
        let [s1, s2] = [1, 2].map(|threads| {
            let opts = SurfaceOptions { threads, ..Default::default() };
            evaluate_surface(&obj, &theta, &[&d1, &d2], ax, Some(ax), &opts).unwrap()
        });
        assert_eq!(s1.loss, s2.loss);
        let mut serial = obj.replicate().unwrap();
        assert_eq!(s1.at(2, 2), serial.loss(&theta).unwrap());
    }
}
