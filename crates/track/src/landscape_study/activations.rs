//! Per-module activations of the interaction network (for CKA between seeds).
//!
//! The network's own forward pass does not expose its intermediate tensors, so this module
//! recomputes the inference-mode forward pass from the parameters in the `VarMap` (same
//! variable names, BatchNorm with running statistics) and keeps the output of every module.
//! A test checks that the final logits equal [`crate::gnn::InteractionNetwork::forward_t`].

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Tensor;
use candle_nn::VarMap;

use crate::error::{Error, Result};
use crate::gnn::{GraphInput, GraphKind, scatter_max};
use crate::training::Model;

/// Module names, in forward order.
pub const MODULES: [&str; 4] = ["relational (R1 messages)", "aggregation (max)", "object (O)", "edge scores (R2)"];

/// Activations of one frame: `(rows, columns, row-major values)` per entry of [`MODULES`].
pub type Activations = Vec<(usize, usize, Vec<f64>)>;

const BN_EPS: f64 = 1e-5;

struct Params(HashMap<String, Tensor>);

impl Params {
    fn of(vm: &VarMap) -> Self {
        let d = vm.data().lock().unwrap_or_else(|p| p.into_inner());
        Params(d.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect())
    }
    fn get(&self, name: &str) -> Result<&Tensor> {
        self.0.get(name).ok_or_else(|| {
            Error::invalid("network variable", name.to_string(), "the variables of the interaction network")
        })
    }
    fn linear(&self, x: &Tensor, p: &str) -> Result<Tensor> {
        let w = self.get(&format!("{p}.weight"))?;
        let b = self.get(&format!("{p}.bias"))?;
        Ok(x.matmul(&w.t()?)?.broadcast_add(b)?)
    }
    fn bn(&self, x: &Tensor, p: &str) -> Result<Tensor> {
        let m = self.get(&format!("{p}.running_mean"))?;
        let v = self.get(&format!("{p}.running_var"))?;
        let w = self.get(&format!("{p}.weight"))?;
        let b = self.get(&format!("{p}.bias"))?;
        let inv = (v + BN_EPS)?.sqrt()?.recip()?;
        Ok(x.broadcast_sub(m)?.broadcast_mul(&inv)?.broadcast_mul(w)?.broadcast_add(b)?)
    }
    /// BN → LeakyReLU → Linear → BN → LeakyReLU → Linear after the first linear layer.
    fn tail(&self, z: &Tensor, p: &str, slope: f64) -> Result<Tensor> {
        let a = candle_nn::ops::leaky_relu(&self.bn(z, &format!("{p}.bn1"))?, slope)?;
        let a = self.linear(&a, &format!("{p}.l2"))?;
        let a = candle_nn::ops::leaky_relu(&self.bn(&a, &format!("{p}.bn2"))?, slope)?;
        self.linear(&a, &format!("{p}.l3"))
    }
}

fn dump(t: &Tensor) -> Result<(usize, usize, Vec<f64>)> {
    let t = if t.rank() == 1 { t.unsqueeze(1)? } else { t.clone() };
    let (r, c) = t.dims2()?;
    Ok((r, c, t.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?))
}

/// The output of every module of `model` on one graph (inference mode).
pub fn activations(model: &Model, g: &GraphInput) -> Result<Activations> {
    let cfg = model.net.config();
    let slope = cfg.leaky_slope;
    let p = Params::of(&model.vm);
    let x_to = p.linear(&g.x, "r1.l1_to")?;
    let x_from = g.x.matmul(&p.get("r1.l1_from.weight")?.t()?)?;
    let e = g.attr.matmul(&p.get("r1.l1_attr.weight")?.t()?)?;
    let z = ((x_to.index_select(&g.to, 0)? + x_from.index_select(&g.from, 0)?)? + e.index_select(&g.attr_index, 0)?)?;
    let m = p.tail(&z, "r1", slope)?;
    let to_index = Arc::new(g.to.to_vec1::<u32>()?);
    let agg = scatter_max(&m, &to_index, g.n)?;
    let o_in = Tensor::cat(&[&g.x, &agg], 1)?;
    let xo = p.tail(&p.linear(&o_in, "object.l1")?, "object", slope)?;
    let head_in = match cfg.graph {
        GraphKind::Line => xo.clone(),
        GraphKind::Hit => Tensor::cat(&[&xo.index_select(&g.to, 0)?, &xo.index_select(&g.from, 0)?, &m], 1)?,
    };
    let logits = p.tail(&p.linear(&head_in, "r2.l1")?, "r2", slope)?;
    Ok(vec![dump(&m)?, dump(&agg)?, dump(&xo)?, dump(&logits)?])
}

/// Activations of many frames stacked row-wise per module.
pub fn stacked_activations(model: &Model, graphs: &[&GraphInput]) -> Result<Activations> {
    let mut out: Activations = MODULES.iter().map(|_| (0, 0, Vec::new())).collect();
    for g in graphs {
        for (acc, (r, c, v)) in out.iter_mut().zip(activations(model, g)?) {
            acc.0 += r;
            acc.1 = c;
            acc.2.extend(v);
        }
    }
    Ok(out)
}
