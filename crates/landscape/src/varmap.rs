//! [`VarMapObjective`]: any candle model whose variables live in a [`VarMap`], as an
//! [`Objective`] on fixed batches.
//!
//! The model is described by closures:
//! - a **builder** `() -> (M, VarMap)` that creates the model on a fresh `VarMap` (called once
//!   per replica; [`on_fresh_varmap`] turns a `VarBuilder` constructor into one);
//! - either a **per-batch loss** `(&M, i) -> scalar Tensor` (the loss of fixed batch `i`; the
//!   batches live in the closure) with one weight per batch, so that the objective is
//!   `Σ_i w_i L_i`; or a **value** `&M -> f64` for a measure without a gradient (accuracy,
//!   purity): [`Objective::loss`] works, the gradient and Hessian products return
//!   [`Error::Unsupported`].
//!
//! The flat vector is every variable of the `VarMap` in `gradlab_core::params` order (sorted by
//! name). Variables that are in the `VarMap` but not trained (BatchNorm running statistics) can be
//! marked [`frozen`](VarMapObjective::frozen): they stay in the flat vector (so interpolating two
//! models interpolates them, and the loss depends on them), but their gradient and
//! Hessian-product entries are zero. To take curvature over the trained entries only, wrap the
//! objective in [`crate::objective::Subspace`] with [`VarMapObjective::trainable_indices`].
//!
//! Gradients come from one backward pass per batch. Exact Hessian-vector products
//! ([`Objective::hvp_exact`]) use double backward, `∇(gᵀv)`, per batch; candle computes those
//! correctly only with `CANDLE_GRAD_DO_NOT_DETACH` set before the thread's first backward pass
//! (see `gradlab_core::grad`). Every thread is checked once with
//! `gradlab_core::grad::double_backward_is_exact` (a probe that also catches a thread that read
//! the variable before it was set); where the probe fails, `hvp_exact` returns
//! [`Error::Unsupported`] instead of silently wrong numbers, and
//! `HvpMethod::FiniteDifference` (central differences of gradients) is the way to go. The probe
//! covers candle's own ops, not the model's: a custom op whose backward is computed outside the
//! graph (not itself differentiable) drops terms from double backward just as silently. So the
//! first exact product of every objective (and replica) is also compared with central
//! differences of the gradient along the same vector ([`HVP_CHECK_TOLERANCE`]), and a mismatch
//! is an [`Error::Unsupported`] that names the likely cause.

use std::cell::Cell;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use gradlab_core::params::{ParamLayout, read_grads_f64, read_params_f64, sorted_vars, write_params_f64};

use crate::error::{Error, Result, check_len};
use crate::objective::{Objective, Replicate};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BuildFn<M> = dyn Fn() -> Result<(M, VarMap)> + Send + Sync;
type BatchLossFn<M> = dyn Fn(&M, usize) -> Result<Tensor> + Send + Sync;
type ValueFn<M> = dyn Fn(&M) -> Result<f64> + Send + Sync;

enum Evaluation<M> {
    Batches { loss: Arc<BatchLossFn<M>>, weights: Arc<Vec<f64>> },
    Value(Arc<ValueFn<M>>),
}

impl<M> Clone for Evaluation<M> {
    fn clone(&self) -> Self {
        match self {
            Evaluation::Batches { loss, weights } => {
                Evaluation::Batches { loss: loss.clone(), weights: weights.clone() }
            }
            Evaluation::Value(v) => Evaluation::Value(v.clone()),
        }
    }
}

/// A model builder on a fresh `VarMap` from a `VarBuilder` constructor (`dtype`, `device`), for
/// [`VarMapObjective::new`].
pub fn on_fresh_varmap<M, E>(
    build: impl Fn(VarBuilder) -> std::result::Result<M, E> + Send + Sync + 'static,
    dtype: DType,
    device: &Device,
) -> impl Fn() -> std::result::Result<(M, VarMap), E> + Send + Sync + 'static {
    let device = device.clone();
    move || {
        let vm = VarMap::new();
        let m = build(VarBuilder::from_varmap(&vm, dtype, &device))?;
        Ok((m, vm))
    }
}

fn no_gradient() -> Error {
    Error::Unsupported("this objective is a measure without a gradient (VarMapObjective::with_value)".into())
}

thread_local! {
    static EXACT_DOUBLE_BACKWARD: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether double backward is exact on the calling thread (probed once per thread: candle caches
/// its setting per thread at the first backward pass, which the probe itself performs).
fn exact_on_this_thread() -> Result<bool> {
    if let Some(b) = EXACT_DOUBLE_BACKWARD.with(Cell::get) {
        return Ok(b);
    }
    let b = gradlab_core::grad::double_backward_is_exact()?;
    EXACT_DOUBLE_BACKWARD.with(|c| c.set(Some(b)));
    Ok(b)
}

/// A candle model held in a `VarMap`, on fixed batches, as an [`Objective`] (see the module
/// docs).
pub struct VarMapObjective<M> {
    model: M,
    varmap: VarMap,
    vars: Vec<(String, Var)>,
    layout: ParamLayout,
    /// Per variable (sorted order): frozen (a buffer, not trained).
    frozen: Arc<Vec<bool>>,
    eval: Evaluation<M>,
    build: Arc<BuildFn<M>>,
    /// For a single batch: the parameters (as read back from the model) and, per variable, the
    /// gradient graph at them, reused by the next exact Hessian-vector products at the same
    /// point (each then costs one backward pass through the gradient, as in PyHessian).
    hvp_graph: Option<(Vec<f64>, Vec<Option<Tensor>>)>,
    /// Whether an exact Hessian-vector product of this objective was checked against central
    /// differences of the gradient ([`Objective::hvp_exact`] does it at its first product).
    hvp_verified: bool,
}

impl<M> std::fmt::Debug for VarMapObjective<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let batches = match &self.eval {
            Evaluation::Batches { weights, .. } => Some(weights.len()),
            Evaluation::Value(_) => None,
        };
        f.debug_struct("VarMapObjective")
            .field("params", &self.layout.total)
            .field("batches", &batches)
            .field("frozen_vars", &self.frozen.iter().filter(|f| **f).count())
            .finish()
    }
}

fn wrap_build<M, E: Into<BoxError>>(
    build: impl Fn() -> std::result::Result<(M, VarMap), E> + Send + Sync + 'static,
) -> Arc<BuildFn<M>> {
    Arc::new(move || build().map_err(|e| Error::external("building the model", e)))
}

fn batch_evaluation<M, E: Into<BoxError>>(
    loss: impl Fn(&M, usize) -> std::result::Result<Tensor, E> + Send + Sync + 'static,
    weights: Vec<f64>,
) -> Result<Evaluation<M>> {
    if weights.is_empty() || weights.iter().any(|w| !w.is_finite()) {
        return Err(Error::invalid("weights", format!("{weights:?}"), "one finite weight per batch, at least one"));
    }
    let loss: Arc<BatchLossFn<M>> =
        Arc::new(move |m: &M, i: usize| loss(m, i).map_err(|e| Error::external(format!("loss of batch {i}"), e)));
    Ok(Evaluation::Batches { loss, weights: Arc::new(weights) })
}

fn value_evaluation<M, E: Into<BoxError>>(
    value: impl Fn(&M) -> std::result::Result<f64, E> + Send + Sync + 'static,
) -> Evaluation<M> {
    Evaluation::Value(Arc::new(move |m: &M| value(m).map_err(|e| Error::external("the measure", e))))
}

impl<M: Send + Sync + 'static> VarMapObjective<M> {
    /// The objective `Σ_i weights[i] · loss(model, i)` over `weights.len()` fixed batches.
    ///
    /// `build` creates the model on a fresh `VarMap`; `loss(model, i)` returns the loss of batch
    /// `i` as a scalar tensor (any float dtype), evaluated in inference mode (no dropout,
    /// BatchNorm with running statistics) so that the objective is deterministic. Errors of
    /// either closure are kept whole ([`Error::external`]).
    pub fn new<E1: Into<BoxError>, E2: Into<BoxError>>(
        build: impl Fn() -> std::result::Result<(M, VarMap), E1> + Send + Sync + 'static,
        loss: impl Fn(&M, usize) -> std::result::Result<Tensor, E2> + Send + Sync + 'static,
        weights: Vec<f64>,
    ) -> Result<Self> {
        Self::assemble(wrap_build(build), batch_evaluation(loss, weights)?, None)
    }

    /// A measure without a gradient: `value(model)` (e.g. an accuracy over fixed data).
    /// [`Objective::loss`] returns it; gradients and Hessian products are unsupported.
    pub fn with_value<E1: Into<BoxError>, E2: Into<BoxError>>(
        build: impl Fn() -> std::result::Result<(M, VarMap), E1> + Send + Sync + 'static,
        value: impl Fn(&M) -> std::result::Result<f64, E2> + Send + Sync + 'static,
    ) -> Result<Self> {
        Self::assemble(wrap_build(build), value_evaluation(value), None)
    }

    fn assemble(build: Arc<BuildFn<M>>, eval: Evaluation<M>, frozen: Option<Arc<Vec<bool>>>) -> Result<Self> {
        let (model, varmap) = build()?;
        let vars = sorted_vars(&varmap);
        let layout = ParamLayout::of(&varmap)?;
        let frozen = match frozen {
            Some(f) => {
                check_len("frozen mask (variables)", vars.len(), f.len())?;
                f
            }
            None => Arc::new(vec![false; vars.len()]),
        };
        Ok(Self { model, varmap, vars, layout, frozen, eval, build, hvp_graph: None, hvp_verified: false })
    }

    /// Marks the variables whose name satisfies `is_buffer` as frozen (e.g. BatchNorm running
    /// statistics: `|n| n.ends_with("running_mean") || n.ends_with("running_var")`): they stay in
    /// the flat vector, their gradient and Hessian-product entries are zero.
    #[must_use]
    pub fn frozen(mut self, is_buffer: impl Fn(&str) -> bool) -> Self {
        self.frozen = Arc::new(self.vars.iter().map(|(n, _)| is_buffer(n)).collect());
        self
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
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    /// The batch weights (`None` for a measure made with [`VarMapObjective::with_value`]).
    pub fn weights(&self) -> Option<&[f64]> {
        match &self.eval {
            Evaluation::Batches { weights, .. } => Some(weights),
            Evaluation::Value(_) => None,
        }
    }
    /// Per flat entry: whether it belongs to a frozen variable (a buffer).
    pub fn frozen_mask(&self) -> Vec<bool> {
        let mut mask = vec![false; self.layout.total];
        for (e, f) in self.layout.entries.iter().zip(self.frozen.iter()) {
            mask[e.range()].fill(*f);
        }
        mask
    }
    /// The flat indices of the trained (not frozen) entries, for [`crate::objective::Subspace`].
    pub fn trainable_indices(&self) -> Vec<usize> {
        self.frozen_mask().iter().enumerate().filter(|(_, f)| !**f).map(|(i, _)| i).collect()
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
    /// The same model (a fresh replica with the current parameters and frozen variables)
    /// evaluating another per-batch loss, e.g. another measure on the same network.
    pub fn same_model_with_loss<E: Into<BoxError>>(
        &self,
        loss: impl Fn(&M, usize) -> std::result::Result<Tensor, E> + Send + Sync + 'static,
        weights: Vec<f64>,
    ) -> Result<Self> {
        self.same_model(batch_evaluation(loss, weights)?)
    }

    /// The same model (a fresh replica with the current parameters and frozen variables)
    /// evaluating a measure without a gradient.
    pub fn same_model_with_value<E: Into<BoxError>>(
        &self,
        value: impl Fn(&M) -> std::result::Result<f64, E> + Send + Sync + 'static,
    ) -> Result<Self> {
        self.same_model(value_evaluation(value))
    }

    fn same_model(&self, eval: Evaluation<M>) -> Result<Self> {
        let r = Self::assemble(self.build.clone(), eval, Some(self.frozen.clone()))?;
        r.set_params(&self.params()?)?;
        Ok(r)
    }

    fn batches(&self) -> Result<(&BatchLossFn<M>, &[f64])> {
        match &self.eval {
            Evaluation::Batches { loss, weights } => Ok((loss.as_ref(), weights.as_slice())),
            Evaluation::Value(_) => Err(no_gradient()),
        }
    }

    /// `w · loss(model, i)` as an f64 scalar tensor.
    fn weighted_batch_loss(&self, loss: &BatchLossFn<M>, i: usize, w: f64) -> Result<Tensor> {
        Ok(loss(&self.model, i)?.to_dtype(DType::F64)?.affine(w, 0.0)?)
    }

    fn zero_frozen(&self, out: &mut [f64]) {
        for (e, f) in self.layout.entries.iter().zip(self.frozen.iter()) {
            if *f {
                out[e.range()].fill(0.0);
            }
        }
    }
}

impl<M: Send + Sync + 'static> Objective for VarMapObjective<M> {
    fn dim(&self) -> usize {
        self.layout.total
    }

    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        self.set_params(theta)?;
        match &self.eval {
            Evaluation::Value(value) => value(&self.model),
            Evaluation::Batches { loss, weights } => {
                let mut sum = 0.0;
                for (i, w) in weights.iter().enumerate() {
                    sum += w * loss(&self.model, i)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                }
                Ok(sum)
            }
        }
    }

    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        check_len("grad", self.layout.total, grad.len())?;
        let (loss, weights) = self.batches()?;
        self.set_params(theta)?;
        grad.fill(0.0);
        let mut sum = 0.0;
        // one backward per batch keeps only one batch's graph alive
        for (i, w) in weights.iter().enumerate() {
            let l = self.weighted_batch_loss(loss, i, *w)?;
            sum += l.to_scalar::<f64>()?;
            let g = read_grads_f64(&self.varmap, &l.backward()?)?;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        self.zero_frozen(grad);
        Ok(sum)
    }

    fn hvp_exact(&mut self, theta: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        // Owned handles: the gradient graph below is stored in `self`.
        let (loss, weights) = match &self.eval {
            Evaluation::Batches { loss, weights } => (Arc::clone(loss), Arc::clone(weights)),
            Evaluation::Value(_) => return Err(no_gradient()),
        };
        if !exact_on_this_thread()? {
            return Err(Error::Unsupported(
                "exact HVP needs exact double backward on this thread: call \
                 gradlab_core::grad::enable_exact_double_backward() first in main (or set CANDLE_GRAD_DO_NOT_DETACH=1 \
                 in the environment before the process starts); or use HvpMethod::FiniteDifference"
                    .into(),
            ));
        }
        check_len("v", self.layout.total, v.len())?;
        check_len("out", self.layout.total, out.len())?;
        self.set_params(theta)?;
        out.fill(0.0);
        if let [w] = weights[..] {
            // One batch: keep its gradient graph for the next products at the same parameters.
            // Valid while the model holds exactly the parameters it was built at (compared as
            // read back, so a write through `varmap()` is noticed too).
            let current = read_params_f64(&self.varmap)?;
            if !matches!(&self.hvp_graph, Some((p, _)) if *p == current) {
                self.hvp_graph = None;
                let grads = self.weighted_batch_loss(loss.as_ref(), 0, w)?.backward()?;
                let per_var = self.vars.iter().map(|(_, var)| grads.get(var.as_tensor()).cloned()).collect();
                self.hvp_graph = Some((current, per_var));
            }
            let per_var = self.hvp_graph.as_ref().map(|(_, g)| g.as_slice()).unwrap_or_default();
            self.add_gradient_of_gv(per_var, v, out)?;
        } else {
            for (i, w) in weights.iter().enumerate() {
                let grads = self.weighted_batch_loss(loss.as_ref(), i, *w)?.backward()?;
                let per_var: Vec<Option<Tensor>> =
                    self.vars.iter().map(|(_, var)| grads.get(var.as_tensor()).cloned()).collect();
                self.add_gradient_of_gv(&per_var, v, out)?;
            }
        }
        self.zero_frozen(out);
        if !self.hvp_verified {
            self.verify_exact_hvp(theta, v, out)?;
            self.hvp_verified = true;
        }
        Ok(())
    }
}

/// Relative tolerance of the check of the first exact Hessian-vector product against central
/// differences of the gradient: (f64 models, f32 models).
pub const HVP_CHECK_TOLERANCE: (f64, f64) = (1e-4, 5e-2);

impl<M: Send + Sync + 'static> VarMapObjective<M> {
    /// Compares the exact product `exact = Hv` with central differences of the gradient along
    /// `v` (its trained entries), step `h = ε^{1/3}·max(1, ‖θ‖∞)/‖v‖∞` for the model's dtype.
    /// The probe of `gradlab_core::grad` covers candle's own ops; this covers the model: a custom
    /// op whose backward is not itself differentiable (computed outside the graph) makes double
    /// backward silently drop terms.
    fn verify_exact_hvp(&mut self, theta: &[f64], v: &[f64], exact: &[f64]) -> Result<()> {
        let f32_model = self.vars.iter().any(|(_, var)| var.dtype() != DType::F64);
        let (eps, tol) = if f32_model {
            (f32::EPSILON as f64, HVP_CHECK_TOLERANCE.1)
        } else {
            (f64::EPSILON, HVP_CHECK_TOLERANCE.0)
        };
        let mask = self.frozen_mask();
        let v: Vec<f64> = v.iter().zip(&mask).map(|(x, f)| if *f { 0.0 } else { *x }).collect();
        let v_max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if v_max == 0.0 {
            return Ok(());
        }
        let h = eps.cbrt() * theta.iter().fold(1.0f64, |m, x| m.max(x.abs())) / v_max;
        let n = theta.len();
        let (mut gp, mut gm) = (vec![0.0; n], vec![0.0; n]);
        let at = |s: f64| theta.iter().zip(&v).map(|(t, d)| t + s * d).collect::<Vec<f64>>();
        self.loss_grad(&at(h), &mut gp)?;
        self.loss_grad(&at(-h), &mut gm)?;
        // Back at θ: the kept gradient graph of a single batch is valid again.
        self.set_params(theta)?;
        let fd: Vec<f64> = gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * h)).collect();
        let norm = |x: &mut dyn Iterator<Item = f64>| x.map(|a| a * a).sum::<f64>().sqrt();
        let diff = norm(&mut exact.iter().zip(&fd).map(|(a, b)| a - b));
        let scale = norm(&mut fd.iter().copied()).max(norm(&mut exact.iter().copied()));
        if diff > tol * scale {
            return Err(Error::Unsupported(format!(
                "the exact Hessian-vector product disagrees with central differences of the gradient at its first \
                 product: relative difference {:.1e} (allowed {tol:.0e} for an {} model, step {h:.1e}). A custom op \
                 whose backward is not itself differentiable (a detached backward) makes double backward drop terms \
                 silently; a kink of the loss within the step can also cause it. Use HvpMethod::FiniteDifference",
                diff / scale,
                if f32_model { "f32" } else { "f64" }
            )));
        }
        Ok(())
    }
}

impl<M> VarMapObjective<M> {
    /// Adds `∇(gᵀv)` to `out`, `g` given per variable (sorted order) as differentiable tensors.
    fn add_gradient_of_gv(&self, per_var: &[Option<Tensor>], v: &[f64], out: &mut [f64]) -> Result<()> {
        // gᵀv over the trained variables as a differentiable scalar; its gradient is H v
        let mut gv: Option<Tensor> = None;
        for (((g, (_, var)), e), frozen) in
            per_var.iter().zip(&self.vars).zip(&self.layout.entries).zip(self.frozen.iter())
        {
            let Some(g) = g.as_ref().filter(|_| !frozen) else { continue };
            let vt = Tensor::from_slice(&v[e.range()], e.shape.as_slice(), var.device())?.to_dtype(g.dtype())?;
            let term = (g * vt)?.sum_all()?.to_dtype(DType::F64)?;
            gv = Some(match gv {
                None => term,
                Some(t) => (t + term)?,
            });
        }
        if let Some(gv) = gv {
            let h = read_grads_f64(&self.varmap, &gv.backward()?)?;
            out.iter_mut().zip(&h).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }
}

impl<M: Send + Sync + 'static> Replicate for VarMapObjective<M> {
    fn replicate(&self) -> Result<Self> {
        self.same_model(self.eval.clone())
    }
}
