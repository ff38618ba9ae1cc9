//! [`Objective`] adapter for candle models built on a [`VarMap`].
//!
//! The model is described by two functions: `build(VarBuilder) -> M` (creates the variables,
//! called once per replica) and `loss(&M, x, y) -> scalar` (mean loss of one batch, evaluated in
//! inference mode: call `forward_t(x, false)` for BatchNorm/dropout). The loss over the fixed
//! batches is the row-weighted mean of the batch losses, so the result equals the loss of the
//! concatenated data when the per-batch loss is a mean.
//!
//! Exact Hessian-vector products use double backward, which candle 0.11 only computes correctly
//! with `CANDLE_GRAD_DO_NOT_DETACH=1` in the environment **before the process starts** (the flag
//! is read once per thread); without it [`Objective::hvp_exact`] returns
//! [`Error::Unsupported`] instead of silently wrong numbers.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use gradlab_core::params::{ParamLayout, read_grads_f64, read_params_f64, sorted_vars, write_params_f64};

use crate::error::{Error, Result, check_len};
use crate::layout::Layout;
use crate::objective::{Objective, Replicate};

type BuildFn<M> = dyn Fn(VarBuilder) -> candle_core::Result<M> + Send + Sync;
type LossFn<M> = dyn Fn(&M, &Tensor, &Tensor) -> candle_core::Result<Tensor> + Send + Sync;

/// Whether double backward is exact in this process (`CANDLE_GRAD_DO_NOT_DETACH` set, not `0`).
pub fn double_backward_enabled() -> bool {
    std::env::var("CANDLE_GRAD_DO_NOT_DETACH").is_ok_and(|s| !s.is_empty() && s != "0")
}

/// A candle model with fixed batches as an [`Objective`].
pub struct CandleObjective<M> {
    varmap: VarMap,
    vars: Vec<(String, Var)>,
    model: M,
    layout: Layout,
    batches: Arc<Vec<(Tensor, Tensor)>>,
    weights: Arc<Vec<f64>>,
    build: Arc<BuildFn<M>>,
    loss: Arc<LossFn<M>>,
    dtype: DType,
    device: Device,
}

impl<M> std::fmt::Debug for CandleObjective<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleObjective")
            .field("params", &self.layout.total)
            .field("batches", &self.batches.len())
            .field("dtype", &self.dtype)
            .finish()
    }
}

impl<M: Send + Sync + 'static> CandleObjective<M> {
    /// Builds the model on a fresh `VarMap` (`dtype`, `device`) and fixes the batches `(x, y)`.
    pub fn new(
        build: impl Fn(VarBuilder) -> candle_core::Result<M> + Send + Sync + 'static,
        loss: impl Fn(&M, &Tensor, &Tensor) -> candle_core::Result<Tensor> + Send + Sync + 'static,
        batches: Vec<(Tensor, Tensor)>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if batches.is_empty() {
            return Err(Error::InvalidArgument {
                name: "batches",
                value: "0".into(),
                allowed: "at least one (x, y) batch",
            });
        }
        let rows: Vec<f64> = batches.iter().map(|(x, _)| x.dims().first().copied().unwrap_or(1) as f64).collect();
        let total: f64 = rows.iter().sum();
        let weights = rows.iter().map(|r| r / total).collect();
        Self::assemble(Arc::new(build), Arc::new(loss), Arc::new(batches), Arc::new(weights), dtype, device.clone())
    }

    fn assemble(
        build: Arc<BuildFn<M>>,
        loss: Arc<LossFn<M>>,
        batches: Arc<Vec<(Tensor, Tensor)>>,
        weights: Arc<Vec<f64>>,
        dtype: DType,
        device: Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let model = build(VarBuilder::from_varmap(&varmap, dtype, &device))?;
        let vars = sorted_vars(&varmap);
        let layout = Layout::from(&ParamLayout::of(&varmap)?);
        Ok(Self { varmap, vars, model, layout, batches, weights, build, loss, dtype, device })
    }

    /// The model's own `VarMap` (holds the parameters of the last evaluation).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }
    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }
    /// The flat layout (sorted by variable name, as `gradlab_core::params`).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// The current parameters as a flat vector.
    pub fn params(&self) -> Result<Vec<f64>> {
        Ok(read_params_f64(&self.varmap)?)
    }
    /// Writes a flat vector into the model.
    pub fn set_params(&self, theta: &[f64]) -> Result<()> {
        check_len("theta", self.layout.total, theta.len())?;
        Ok(write_params_f64(&self.varmap, theta)?)
    }
    /// Copies the parameters of another `VarMap` with the same variables (e.g. a trained model).
    pub fn load_from(&self, other: &VarMap) -> Result<Vec<f64>> {
        let p = read_params_f64(other)?;
        self.set_params(&p)?;
        Ok(p)
    }

    fn weighted_loss(&self) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for ((x, y), w) in self.batches.iter().zip(self.weights.iter()) {
            let l = (self.loss)(&self.model, x, y)?;
            let l = l.to_dtype(DType::F64)?.affine(*w, 0.0)?;
            total = Some(match total {
                None => l,
                Some(t) => (t + l)?,
            });
        }
        total.ok_or_else(|| Error::InvalidArgument {
            name: "batches",
            value: "0".into(),
            allowed: "at least one batch",
        })
    }
}

impl<M: Send + Sync + 'static> Objective for CandleObjective<M> {
    fn dim(&self) -> usize {
        self.layout.total
    }

    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        self.set_params(theta)?;
        let mut sum = 0.0;
        for ((x, y), w) in self.batches.iter().zip(self.weights.iter()) {
            let l = (self.loss)(&self.model, x, y)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            sum += w * l;
        }
        Ok(sum)
    }

    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        check_len("grad", self.layout.total, grad.len())?;
        self.set_params(theta)?;
        grad.fill(0.0);
        let mut sum = 0.0;
        // one backward per batch keeps only one batch's graph alive
        for ((x, y), w) in self.batches.iter().zip(self.weights.iter()) {
            let l = (self.loss)(&self.model, x, y)?.to_dtype(DType::F64)?.affine(*w, 0.0)?;
            sum += l.to_scalar::<f64>()?;
            let g = read_grads_f64(&self.varmap, &l.backward()?)?;
            for (a, b) in grad.iter_mut().zip(&g) {
                *a += b;
            }
        }
        Ok(sum)
    }

    fn hvp_exact(&mut self, theta: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        if !double_backward_enabled() {
            return Err(Error::Unsupported(
                "exact HVP needs CANDLE_GRAD_DO_NOT_DETACH=1 in the environment before the process starts \
                 (candle detaches gradients otherwise and double backward is silently wrong); \
                 or use HvpMethod::FiniteDifference"
                    .into(),
            ));
        }
        check_len("v", self.layout.total, v.len())?;
        check_len("out", self.layout.total, out.len())?;
        self.set_params(theta)?;
        let loss = self.weighted_loss()?;
        let grads = loss.backward()?;
        // gᵀv as a differentiable scalar, then its gradient is H v
        let mut gv: Option<Tensor> = None;
        for ((_, var), b) in self.vars.iter().zip(&self.layout.blocks) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let vt = Tensor::from_slice(&v[b.range()], b.shape.as_slice(), &self.device)?.to_dtype(g.dtype())?;
            let term = (g * vt)?.sum_all()?.to_dtype(DType::F64)?;
            gv = Some(match gv {
                None => term,
                Some(t) => (t + term)?,
            });
        }
        let Some(gv) = gv else {
            out.fill(0.0);
            return Ok(());
        };
        let h = read_grads_f64(&self.varmap, &gv.backward()?)?;
        out.copy_from_slice(&h);
        Ok(())
    }
}

impl<M: Send + Sync + 'static> Replicate for CandleObjective<M> {
    fn replicate(&self) -> Result<Self> {
        let r = Self::assemble(
            self.build.clone(),
            self.loss.clone(),
            self.batches.clone(),
            self.weights.clone(),
            self.dtype,
            self.device.clone(),
        )?;
        r.set_params(&self.params()?)?;
        Ok(r)
    }
}

/// A small tanh MLP used in tests, benches and examples: `sizes[0] → … → sizes[last]`, MSE loss.
pub mod mlp {
    use candle_core::{Module, Tensor};
    use candle_nn::VarBuilder;

    /// The MLP (gradlab-core's, with tanh activations).
    pub type Mlp = gradlab_core::nn::Mlp;

    /// Builds the MLP with variables `l0.*`, `l1.*`, ….
    pub fn build(sizes: &[usize], vb: VarBuilder) -> candle_core::Result<Mlp> {
        Mlp::new(sizes, gradlab_core::nn::Activation::Tanh, vb).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    /// Mean squared error of the MLP on one batch.
    pub fn mse(m: &Mlp, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        (m.forward(x)? - y)?.sqr()?.mean_all()
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
    use crate::hessian::{HessianOperator, HvpMethod, dense_matrix};
    use crate::surface::{Axis, SurfaceOptions, evaluate_surface};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A 3→4→2 tanh MLP in f64 on two fixed batches of sizes 5 and 3 (26 parameters).
    pub(crate) fn small_model(seed: u64) -> (CandleObjective<mlp::Mlp>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
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

    /// Dense Hessian from loss values only (4-point second differences): independent of backprop.
    pub(crate) fn hessian_from_losses<O: Objective>(obj: &mut O, theta: &[f64], h: f64) -> Vec<f64> {
        let n = theta.len();
        let mut hm = vec![0.0; n * n];
        let mut x = theta.to_vec();
        let mut f = |x: &[f64]| obj.loss(x).unwrap();
        for i in 0..n {
            for j in 0..=i {
                let mut acc = 0.0;
                for (si, sj, sign) in [(1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0)] {
                    x[i] += si * h;
                    x[j] += sj * h;
                    acc += sign * f(&x);
                    x[i] = theta[i];
                    x[j] = theta[j];
                }
                let v = acc / (4.0 * h * h);
                hm[i * n + j] = v;
                hm[j * n + i] = v;
            }
        }
        hm
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
        let (x, y): (Vec<_>, Vec<_>) = obj.batches.iter().cloned().unzip();
        let x = Tensor::cat(&x, 0).unwrap();
        let y = Tensor::cat(&y, 0).unwrap();
        obj.set_params(&theta).unwrap();
        let whole = mlp::mse(obj.model(), &x, &y).unwrap().to_scalar::<f64>().unwrap();
        assert!((whole - l).abs() < 1e-14, "{whole} vs {l}");
    }

    #[test]
    fn fd_hessian_of_a_small_model_matches_dense_reference() {
        let (mut obj, theta) = small_model(1);
        let reference = hessian_from_losses(&mut obj, &theta, 1e-4);
        let mut op = HessianOperator::new(&mut obj, &theta, HvpMethod::FiniteDifference { h: 1e-4 }).unwrap();
        let h = dense_matrix(&mut op).unwrap();
        // reference error ~ h² + ε/h² ≈ 1e-8 relative; FD-of-gradients error ~ 1e-9
        let e = rel_frob(&h, &reference);
        assert!(e < 1e-6, "relative Frobenius error {e}");
    }

    #[test]
    fn exact_hvp_refuses_without_the_environment_flag() {
        if double_backward_enabled() {
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
        let mut rng = StdRng::seed_from_u64(4);
        let d1 = crate::directions::gaussian(obj.dim(), &mut rng);
        let d2 = crate::directions::gaussian(obj.dim(), &mut rng);
        let ax = Axis::new(-0.5, 0.5, 5).unwrap();
        let s1 = evaluate_surface(
            &obj,
            &theta,
            &[&d1, &d2],
            ax,
            Some(ax),
            &SurfaceOptions { threads: 1, ..Default::default() },
        )
        .unwrap();
        let s2 = evaluate_surface(
            &obj,
            &theta,
            &[&d1, &d2],
            ax,
            Some(ax),
            &SurfaceOptions { threads: 2, ..Default::default() },
        )
        .unwrap();
        assert_eq!(s1.loss, s2.loss);
        let mut serial = obj.replicate().unwrap();
        assert_eq!(s1.at(2, 2), serial.loss(&theta).unwrap());
    }
}
