//! Optimisers with inspectable state: AdamW, SGD with momentum, RMSprop.
//!
//! All three implement candle-nn's [`Optimizer`] trait, so they drop into any candle training
//! code. gradlab has its own AdamW rather than candle-nn's because exact checkpoint-resume needs
//! the moment estimates, which candle-nn keeps private; a test checks that ours takes the same
//! steps as candle-nn's. RMSprop (absent from candle-nn) follows PyTorch's `torch.optim.RMSprop`.
//!
//! State is exported as named tensors (`state_tensors`) and restored with `load_state`, where the
//! variables are identified by their position in the list given at construction (the
//! [`crate::train::Trainer`] passes them sorted by name).

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::Optimizer;
use std::collections::HashMap;

/// Hyper-parameters of AdamW (decoupled weight decay; `weight_decay = 0` is Adam).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Hyper-parameters of SGD (PyTorch semantics: `b = μb + g`, `θ −= lr·b`; L2 weight decay).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdParams {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Default for SgdParams {
    fn default() -> Self {
        SgdParams { lr: 1e-2, momentum: 0.0, weight_decay: 0.0 }
    }
}

/// Hyper-parameters of RMSprop (PyTorch semantics).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmsPropParams {
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    pub eps: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Divide by the centred second moment (variance estimate).
    pub centered: bool,
}

impl Default for RmsPropParams {
    fn default() -> Self {
        RmsPropParams { lr: 1e-2, alpha: 0.99, eps: 1e-8, momentum: 0.0, weight_decay: 0.0, centered: false }
    }
}

/// An optimiser choice as written in configs: `{"kind": "adamw", "lr": 1e-3, ...}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// AdamW (Adam with `weight_decay = 0`).
    #[serde(alias = "adam")]
    Adamw(AdamWParams),
    /// SGD with optional momentum.
    Sgd(SgdParams),
    /// RMSprop.
    Rmsprop(RmsPropParams),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adamw(AdamWParams::default())
    }
}

impl OptimizerConfig {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Adamw(p) => p.lr,
            OptimizerConfig::Sgd(p) => p.lr,
            OptimizerConfig::Rmsprop(p) => p.lr,
        }
    }

    /// Check the hyper-parameters.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 { Ok(()) } else { Err(Error::invalid(name, v, "a finite number > 0")) }
        };
        let unit = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) { Ok(()) } else { Err(Error::invalid(name, v, "a number in [0, 1)")) }
        };
        let nonneg = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 { Ok(()) } else { Err(Error::invalid(name, v, "a finite number >= 0")) }
        };
        match self {
            OptimizerConfig::Adamw(p) => {
                pos("optimizer.lr", p.lr)?;
                unit("optimizer.beta1", p.beta1)?;
                unit("optimizer.beta2", p.beta2)?;
                pos("optimizer.eps", p.eps)?;
                nonneg("optimizer.weight_decay", p.weight_decay)
            }
            OptimizerConfig::Sgd(p) => {
                pos("optimizer.lr", p.lr)?;
                unit("optimizer.momentum", p.momentum)?;
                nonneg("optimizer.weight_decay", p.weight_decay)
            }
            OptimizerConfig::Rmsprop(p) => {
                pos("optimizer.lr", p.lr)?;
                unit("optimizer.alpha", p.alpha)?;
                pos("optimizer.eps", p.eps)?;
                unit("optimizer.momentum", p.momentum)?;
                nonneg("optimizer.weight_decay", p.weight_decay)
            }
        }
    }

    /// Build the optimiser over `vars` (pass them in a stable order, e.g. sorted by name).
    pub fn build(&self, vars: Vec<Var>) -> Result<AnyOptimizer> {
        self.validate()?;
        Ok(match self {
            OptimizerConfig::Adamw(p) => AnyOptimizer::AdamW(AdamW::new(vars, p.clone())?),
            OptimizerConfig::Sgd(p) => AnyOptimizer::Sgd(Sgd::new(vars, p.clone())?),
            OptimizerConfig::Rmsprop(p) => AnyOptimizer::RmsProp(RmsProp::new(vars, p.clone())?),
        })
    }
}

/// Optimiser state that can be saved and restored.
pub trait StatefulOptimizer {
    /// Named state tensors (`"<slot>.<index>"`) plus the step counter.
    fn state_tensors(&self) -> Result<(Vec<(String, Tensor)>, usize)>;
    /// Restore state saved by `state_tensors`.
    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: usize) -> Result<()>;
}

fn zeros_like(v: &Var) -> Result<Var> {
    Ok(Var::zeros(v.shape(), v.dtype(), v.device())?)
}

fn export(slots: &[(&str, &[Var])]) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (name, vs) in slots {
        for (i, v) in vs.iter().enumerate() {
            out.push((format!("{name}.{i}"), v.as_tensor().clone()));
        }
    }
    out
}

fn import(slot: &str, vs: &[Var], t: &HashMap<String, Tensor>) -> Result<()> {
    for (i, v) in vs.iter().enumerate() {
        let key = format!("{slot}.{i}");
        let src = t.get(&key).ok_or_else(|| Error::Checkpoint {
            path: "optimizer state".into(),
            message: format!("missing tensor `{key}`"),
        })?;
        if src.dims() != v.dims() {
            return Err(Error::ShapeMismatch {
                what: format!("optimizer state `{key}`"),
                expected: v.dims().to_vec(),
                got: src.dims().to_vec(),
            });
        }
        v.set(&src.to_dtype(v.dtype())?.to_device(v.device())?)?;
    }
    Ok(())
}

/// AdamW.
#[derive(Debug)]
pub struct AdamW {
    vars: Vec<Var>,
    m: Vec<Var>,
    v: Vec<Var>,
    t: usize,
    p: AdamWParams,
}

impl Optimizer for AdamW {
    type Config = AdamWParams;

    fn new(vars: Vec<Var>, p: AdamWParams) -> candle_core::Result<Self> {
        let vars: Vec<Var> = vars.into_iter().filter(|v| v.dtype().is_float()).collect();
        let m =
            vars.iter().map(|v| Var::zeros(v.shape(), v.dtype(), v.device())).collect::<candle_core::Result<_>>()?;
        let v =
            vars.iter().map(|v| Var::zeros(v.shape(), v.dtype(), v.device())).collect::<candle_core::Result<_>>()?;
        Ok(AdamW { vars, m, v, t: 0, p })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.t += 1;
        let p = &self.p;
        let sm = 1.0 / (1.0 - p.beta1.powi(self.t as i32));
        let sv = 1.0 / (1.0 - p.beta2.powi(self.t as i32));
        for ((theta, m), v) in self.vars.iter().zip(&self.m).zip(&self.v) {
            if let Some(g) = grads.get(theta) {
                let nm = ((m.as_tensor() * p.beta1)? + (g * (1.0 - p.beta1))?)?;
                let nv = ((v.as_tensor() * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
                let upd = ((&nm * sm)? / ((&nv * sv)?.sqrt()? + p.eps)?)?;
                let nt = ((theta.as_tensor() * (1.0 - p.lr * p.weight_decay))? - (upd * p.lr)?)?;
                m.set(&nm)?;
                v.set(&nv)?;
                theta.set(&nt)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.p.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.p.lr = lr;
    }
}

impl StatefulOptimizer for AdamW {
    fn state_tensors(&self) -> Result<(Vec<(String, Tensor)>, usize)> {
        Ok((export(&[("m", &self.m), ("v", &self.v)]), self.t))
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        import("m", &self.m, t)?;
        import("v", &self.v, t)?;
        self.t = step;
        Ok(())
    }
}

/// SGD with momentum.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    buf: Vec<Var>,
    t: usize,
    p: SgdParams,
}

impl Optimizer for Sgd {
    type Config = SgdParams;

    fn new(vars: Vec<Var>, p: SgdParams) -> candle_core::Result<Self> {
        let vars: Vec<Var> = vars.into_iter().filter(|v| v.dtype().is_float()).collect();
        let buf =
            vars.iter().map(|v| Var::zeros(v.shape(), v.dtype(), v.device())).collect::<candle_core::Result<_>>()?;
        Ok(Sgd { vars, buf, t: 0, p })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let p = &self.p;
        for (theta, b) in self.vars.iter().zip(&self.buf) {
            if let Some(g) = grads.get(theta) {
                let g = if p.weight_decay > 0.0 { (g + (theta.as_tensor() * p.weight_decay)?)? } else { g.clone() };
                let d = if p.momentum > 0.0 {
                    let nb = if self.t == 0 { g } else { ((b.as_tensor() * p.momentum)? + g)? };
                    b.set(&nb)?;
                    nb
                } else {
                    g
                };
                theta.set(&(theta.as_tensor() - (d * p.lr)?)?)?;
            }
        }
        self.t += 1;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.p.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.p.lr = lr;
    }
}

impl StatefulOptimizer for Sgd {
    fn state_tensors(&self) -> Result<(Vec<(String, Tensor)>, usize)> {
        Ok((export(&[("momentum", &self.buf)]), self.t))
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        import("momentum", &self.buf, t)?;
        self.t = step;
        Ok(())
    }
}

/// RMSprop (PyTorch semantics):
/// `v = αv + (1−α)g²`; centred: `ḡ = αḡ + (1−α)g`, `v̂ = v − ḡ²`;
/// `b = μb + g/(√v̂ + ε)`, `θ −= lr·b` (without momentum: `θ −= lr·g/(√v̂ + ε)`).
#[derive(Debug)]
pub struct RmsProp {
    vars: Vec<Var>,
    sq: Vec<Var>,
    avg: Vec<Var>,
    buf: Vec<Var>,
    t: usize,
    p: RmsPropParams,
}

impl Optimizer for RmsProp {
    type Config = RmsPropParams;

    fn new(vars: Vec<Var>, p: RmsPropParams) -> candle_core::Result<Self> {
        let vars: Vec<Var> = vars.into_iter().filter(|v| v.dtype().is_float()).collect();
        let mk = |vars: &[Var]| {
            vars.iter().map(|v| Var::zeros(v.shape(), v.dtype(), v.device())).collect::<candle_core::Result<Vec<_>>>()
        };
        Ok(RmsProp { sq: mk(&vars)?, avg: mk(&vars)?, buf: mk(&vars)?, vars, t: 0, p })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let p = &self.p;
        for i in 0..self.vars.len() {
            let theta = &self.vars[i];
            if let Some(g) = grads.get(theta) {
                let g = if p.weight_decay > 0.0 { (g + (theta.as_tensor() * p.weight_decay)?)? } else { g.clone() };
                let nsq = ((self.sq[i].as_tensor() * p.alpha)? + (g.sqr()? * (1.0 - p.alpha))?)?;
                self.sq[i].set(&nsq)?;
                let denom_sq = if p.centered {
                    let navg = ((self.avg[i].as_tensor() * p.alpha)? + (&g * (1.0 - p.alpha))?)?;
                    self.avg[i].set(&navg)?;
                    (&nsq - navg.sqr()?)?
                } else {
                    nsq
                };
                let step = (&g / (denom_sq.sqrt()? + p.eps)?)?;
                let d = if p.momentum > 0.0 {
                    let nb = ((self.buf[i].as_tensor() * p.momentum)? + step)?;
                    self.buf[i].set(&nb)?;
                    nb
                } else {
                    step
                };
                theta.set(&(theta.as_tensor() - (d * p.lr)?)?)?;
            }
        }
        self.t += 1;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.p.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.p.lr = lr;
    }
}

impl StatefulOptimizer for RmsProp {
    fn state_tensors(&self) -> Result<(Vec<(String, Tensor)>, usize)> {
        Ok((export(&[("square_avg", &self.sq), ("grad_avg", &self.avg), ("momentum", &self.buf)]), self.t))
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        import("square_avg", &self.sq, t)?;
        import("grad_avg", &self.avg, t)?;
        import("momentum", &self.buf, t)?;
        self.t = step;
        Ok(())
    }
}

/// One of the optimisers, chosen at run time from an [`OptimizerConfig`].
#[derive(Debug)]
pub enum AnyOptimizer {
    AdamW(AdamW),
    Sgd(Sgd),
    RmsProp(RmsProp),
}

impl AnyOptimizer {
    /// One update with the given gradients.
    pub fn step(&mut self, g: &GradStore) -> Result<()> {
        match self {
            AnyOptimizer::AdamW(o) => o.step(g)?,
            AnyOptimizer::Sgd(o) => o.step(g)?,
            AnyOptimizer::RmsProp(o) => o.step(g)?,
        }
        Ok(())
    }
    /// Current learning rate.
    pub fn learning_rate(&self) -> f64 {
        match self {
            AnyOptimizer::AdamW(o) => o.learning_rate(),
            AnyOptimizer::Sgd(o) => o.learning_rate(),
            AnyOptimizer::RmsProp(o) => o.learning_rate(),
        }
    }
    /// Set the learning rate (schedules).
    pub fn set_learning_rate(&mut self, lr: f64) {
        match self {
            AnyOptimizer::AdamW(o) => o.set_learning_rate(lr),
            AnyOptimizer::Sgd(o) => o.set_learning_rate(lr),
            AnyOptimizer::RmsProp(o) => o.set_learning_rate(lr),
        }
    }
}

impl StatefulOptimizer for AnyOptimizer {
    fn state_tensors(&self) -> Result<(Vec<(String, Tensor)>, usize)> {
        match self {
            AnyOptimizer::AdamW(o) => o.state_tensors(),
            AnyOptimizer::Sgd(o) => o.state_tensors(),
            AnyOptimizer::RmsProp(o) => o.state_tensors(),
        }
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        match self {
            AnyOptimizer::AdamW(o) => o.load_state(t, step),
            AnyOptimizer::Sgd(o) => o.load_state(t, step),
            AnyOptimizer::RmsProp(o) => o.load_state(t, step),
        }
    }
}

/// Learning-rate schedule over optimiser steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` steps.
    Step { every: usize, gamma: f64 },
    /// Multiply by `gamma` every step.
    Exponential { gamma: f64 },
    /// Linear warm-up over `warmup` steps, then cosine decay to `min_lr` at the last step.
    Cosine {
        #[serde(default)]
        warmup: usize,
        #[serde(default)]
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The rate at optimiser step `step` (0-based) of `total` for base rate `base`.
    pub fn lr_at(&self, base: f64, step: usize, total: usize) -> f64 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Step { every, gamma } => base * gamma.powi((step / every.max(1)) as i32),
            LrSchedule::Exponential { gamma } => base * gamma.powi(step as i32),
            LrSchedule::Cosine { warmup, min_lr } => {
                if step < warmup {
                    base * (step + 1) as f64 / warmup as f64
                } else {
                    let span = total.saturating_sub(warmup).max(1) as f64;
                    let t = ((step - warmup) as f64 / span).min(1.0);
                    min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
                }
            }
        }
    }

    /// Check the schedule's parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Step { every, gamma } => {
                if every == 0 {
                    return Err(Error::invalid("schedule.every", every, "at least 1"));
                }
                if !(gamma > 0.0 && gamma.is_finite()) {
                    return Err(Error::invalid("schedule.gamma", gamma, "a finite number > 0"));
                }
            }
            LrSchedule::Exponential { gamma } => {
                if !(gamma > 0.0 && gamma.is_finite()) {
                    return Err(Error::invalid("schedule.gamma", gamma, "a finite number > 0"));
                }
            }
            LrSchedule::Cosine { min_lr, .. } => {
                if !(min_lr >= 0.0 && min_lr.is_finite()) {
                    return Err(Error::invalid("schedule.min_lr", min_lr, "a finite number >= 0"));
                }
            }
            LrSchedule::Constant => {}
        }
        Ok(())
    }
}

/// A zeroed copy of each variable (for callers that need optimiser-like buffers).
pub fn zeros_like_vars(vars: &[Var]) -> Result<Vec<Var>> {
    vars.iter().map(zeros_like).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn quad_loss(x: &Var) -> Tensor {
        // f(x) = Σ (x − c)² with c = [1, −2, 3]
        let c = Tensor::new(&[1.0f64, -2.0, 3.0], &Device::Cpu).unwrap();
        x.as_tensor().sub(&c).unwrap().sqr().unwrap().sum_all().unwrap()
    }

    #[test]
    fn adamw_matches_candle_nn() {
        let init = [0.5f64, 0.1, -0.3];
        let a = Var::new(&init, &Device::Cpu).unwrap();
        let b = Var::new(&init, &Device::Cpu).unwrap();
        let p = AdamWParams { lr: 0.05, weight_decay: 0.01, ..Default::default() };
        let mut ours = AdamW::new(vec![a.clone()], p.clone()).unwrap();
        let mut theirs = candle_nn::AdamW::new(
            vec![b.clone()],
            candle_nn::ParamsAdamW {
                lr: p.lr,
                beta1: p.beta1,
                beta2: p.beta2,
                eps: p.eps,
                weight_decay: p.weight_decay,
            },
        )
        .unwrap();
        for _ in 0..20 {
            ours.backward_step(&quad_loss(&a)).unwrap();
            theirs.backward_step(&quad_loss(&b)).unwrap();
        }
        let (x, y) = (a.to_vec1::<f64>().unwrap(), b.to_vec1::<f64>().unwrap());
        for (u, v) in x.iter().zip(&y) {
            assert!((u - v).abs() < 1e-14, "{x:?} vs {y:?}");
        }
    }

    #[test]
    fn rmsprop_closed_form() {
        // Scalar f = x², g = 2x. From x0 = 1, α = 0.9, lr = 0.1, ε = 0:
        // step 1: v = 0.1·4 = 0.4, x1 = 1 − 0.1·2/√0.4
        // step 2: g = 2x1, v = 0.9·0.4 + 0.1·g², x2 = x1 − 0.1·g/√v
        let x = Var::new(&[1.0f64], &Device::Cpu).unwrap();
        let p = RmsPropParams { lr: 0.1, alpha: 0.9, eps: 0.0, ..Default::default() };
        let mut o = RmsProp::new(vec![x.clone()], p).unwrap();
        for _ in 0..2 {
            o.backward_step(&x.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
        }
        let x1 = 1.0 - 0.1 * 2.0 / 0.4f64.sqrt();
        let g = 2.0 * x1;
        let v = 0.9 * 0.4 + 0.1 * g * g;
        let x2 = x1 - 0.1 * g / v.sqrt();
        assert!((x.to_vec1::<f64>().unwrap()[0] - x2).abs() < 1e-14);
    }

    #[test]
    fn rmsprop_centered_momentum_closed_form() {
        let x = Var::new(&[1.0f64], &Device::Cpu).unwrap();
        let p = RmsPropParams { lr: 0.1, alpha: 0.9, eps: 0.0, momentum: 0.5, centered: true, ..Default::default() };
        let mut o = RmsProp::new(vec![x.clone()], p).unwrap();
        o.backward_step(&x.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
        // g = 2, v = 0.4, ḡ = 0.2, v̂ = 0.4 − 0.04 = 0.36, b = 2/0.6, x = 1 − 0.1·b
        let x1 = 1.0 - 0.1 * (2.0 / 0.36f64.sqrt());
        assert!((x.to_vec1::<f64>().unwrap()[0] - x1).abs() < 1e-14);
    }

    #[test]
    fn sgd_momentum_closed_form() {
        let x = Var::new(&[1.0f64], &Device::Cpu).unwrap();
        let mut o = Sgd::new(vec![x.clone()], SgdParams { lr: 0.1, momentum: 0.9, weight_decay: 0.0 }).unwrap();
        for _ in 0..2 {
            o.backward_step(&x.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
        }
        // x1 = 1 − 0.1·2 = 0.8; b2 = 0.9·2 + 1.6 = 3.4; x2 = 0.8 − 0.34 = 0.46
        assert!((x.to_vec1::<f64>().unwrap()[0] - 0.46).abs() < 1e-14);
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let run = |split: bool| -> Vec<f64> {
            let x = Var::new(&[0.5f64, 0.1, -0.3], &Device::Cpu).unwrap();
            let cfg = OptimizerConfig::Rmsprop(RmsPropParams {
                lr: 0.01,
                momentum: 0.9,
                centered: true,
                ..Default::default()
            });
            let mut o = cfg.build(vec![x.clone()]).unwrap();
            for _ in 0..5 {
                o.step(&quad_loss(&x).backward().unwrap()).unwrap();
            }
            if split {
                let (st, t) = o.state_tensors().unwrap();
                let map: HashMap<String, Tensor> = st.into_iter().map(|(k, v)| (k, v.copy().unwrap())).collect();
                let saved = x.as_tensor().copy().unwrap();
                let x2 = Var::from_tensor(&saved).unwrap();
                let mut o2 = cfg.build(vec![x2.clone()]).unwrap();
                o2.load_state(&map, t).unwrap();
                for _ in 0..5 {
                    o2.step(&quad_loss(&x2).backward().unwrap()).unwrap();
                }
                return x2.to_vec1().unwrap();
            }
            for _ in 0..5 {
                o.step(&quad_loss(&x).backward().unwrap()).unwrap();
            }
            x.to_vec1().unwrap()
        };
        assert_eq!(run(false), run(true));
    }

    #[test]
    fn config_parsing_and_validation() {
        let c: OptimizerConfig = serde_json::from_str(r#"{"kind": "rmsprop", "lr": 0.001}"#).unwrap();
        assert_eq!(c.lr(), 0.001);
        let c: OptimizerConfig = serde_json::from_str(r#"{"kind": "adam", "lr": 0.01}"#).unwrap();
        assert!(matches!(c, OptimizerConfig::Adamw(_)));
        assert!(serde_json::from_str::<OptimizerConfig>(r#"{"kind": "lbfgs"}"#).is_err());
        assert!(serde_json::from_str::<OptimizerConfig>(r#"{"kind": "sgd", "lr": 0.1, "nesterov": true}"#).is_err());
        let bad = OptimizerConfig::Sgd(SgdParams { lr: -1.0, ..Default::default() });
        assert!(bad.validate().unwrap_err().to_string().contains("optimizer.lr"));
        let _ = DType::F32;
    }

    #[test]
    fn schedules() {
        let s = LrSchedule::Step { every: 10, gamma: 0.5 };
        assert_eq!(s.lr_at(1.0, 9, 100), 1.0);
        assert_eq!(s.lr_at(1.0, 10, 100), 0.5);
        let c = LrSchedule::Cosine { warmup: 10, min_lr: 0.0 };
        assert!((c.lr_at(1.0, 4, 110) - 0.5).abs() < 1e-12);
        assert!((c.lr_at(1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(1.0, 60, 110) - 0.5).abs() < 1e-12);
        assert!(c.lr_at(1.0, 110, 110).abs() < 1e-12);
        assert!(LrSchedule::Step { every: 0, gamma: 0.5 }.validate().is_err());
    }
}
