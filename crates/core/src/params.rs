//! Flat parameter vectors.
//!
//! Every trainable parameter of a [`VarMap`] read into one vector and written back, in a stable,
//! documented order: **variables sorted by name** (the `vb.pp("…")` path, e.g. `l0.bias` before
//! `l0.weight`), each flattened row-major (the last index fastest). [`ParamLayout`] records where
//! each tensor starts, its length and shape, so that per-layer or per-filter operations
//! (filter-normalised directions, per-module statistics) can be done on the flat vector.
//!
//! `VarMap::all_vars()` returns hash-map order, which changes from run to run; never rely on it
//! for flat vectors.

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;

/// One tensor in a flat parameter vector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParamEntry {
    /// The variable's name in the `VarMap`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Index of its first element in the flat vector.
    pub offset: usize,
    /// Number of elements (product of `shape`).
    pub len: usize,
}

impl ParamEntry {
    /// The index range of this tensor in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The layout of a flat parameter vector: tensors sorted by name, with offsets.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ParamLayout {
    /// The tensors, in flat order.
    pub entries: Vec<ParamEntry>,
    /// Total number of scalars.
    pub total: usize,
}

impl ParamLayout {
    /// The layout of all variables of `vm`.
    pub fn of(vm: &VarMap) -> Result<Self> {
        Ok(Self::from_vars(&sorted_vars(vm)))
    }

    fn from_vars(vars: &[(String, Var)]) -> Self {
        let mut entries = Vec::with_capacity(vars.len());
        let mut offset = 0;
        for (name, v) in vars {
            let shape = v.dims().to_vec();
            let len = v.elem_count();
            entries.push(ParamEntry { name: name.clone(), shape, offset, len });
            offset += len;
        }
        ParamLayout { entries, total: offset }
    }

    /// The entry with this name.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    fn check_len(&self, got: usize) -> Result<()> {
        if got != self.total {
            return Err(Error::ShapeMismatch {
                what: "flat parameter vector".into(),
                expected: vec![self.total],
                got: vec![got],
            });
        }
        Ok(())
    }
}

/// The variables of `vm`, sorted by name.
pub fn sorted_vars(vm: &VarMap) -> Vec<(String, Var)> {
    let data = vm.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// All parameters of `vm` as one `f64` vector (see the module docs for the order).
pub fn read_params_f64(vm: &VarMap) -> Result<Vec<f64>> {
    let vars = sorted_vars(vm);
    let mut out = Vec::new();
    for (_, v) in &vars {
        out.extend(v.as_tensor().flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// All parameters of `vm` as one `f32` vector.
pub fn read_params_f32(vm: &VarMap) -> Result<Vec<f32>> {
    let vars = sorted_vars(vm);
    let mut out = Vec::new();
    for (_, v) in &vars {
        out.extend(v.as_tensor().flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    }
    Ok(out)
}

fn write_impl<T: candle_core::WithDType>(vm: &VarMap, flat: &[T]) -> Result<()> {
    let vars = sorted_vars(vm);
    let layout = ParamLayout::from_vars(&vars);
    layout.check_len(flat.len())?;
    for ((_, var), e) in vars.iter().zip(&layout.entries) {
        let t = Tensor::from_slice(&flat[e.range()], e.shape.as_slice(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// Write a flat `f64` vector back into `vm` (converted to each variable's dtype).
pub fn write_params_f64(vm: &VarMap, flat: &[f64]) -> Result<()> {
    write_impl(vm, flat)
}

/// Write a flat `f32` vector back into `vm`.
pub fn write_params_f32(vm: &VarMap, flat: &[f32]) -> Result<()> {
    write_impl(vm, flat)
}

/// The gradients in `grads` of every variable of `vm`, flattened in the same order as
/// [`read_params_f64`]; a variable without a gradient contributes zeros.
pub fn read_grads_f64(vm: &VarMap, grads: &GradStore) -> Result<Vec<f64>> {
    let vars = sorted_vars(vm);
    let mut out = Vec::new();
    for (_, v) in &vars {
        match grads.get(v.as_tensor()) {
            Some(g) => out.extend(g.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?),
            None => out.extend(std::iter::repeat_n(0.0, v.elem_count())),
        }
    }
    Ok(out)
}

/// Seeded initialisation: Glorot-uniform for every tensor with ≥ 2 dimensions (fan-out = first
/// dimension, fan-in = the rest), zeros for 1-D tensors (biases, norms' shifts). candle's own
/// initialisers are not seeded; use this when runs must be reproducible. Note that it also sets
/// 1-D scale parameters (e.g. BatchNorm weights) to zero — re-set those afterwards if the model has any.
pub fn init_glorot_uniform(vm: &VarMap, seed: u64) -> Result<()> {
    use rand::Rng;
    let layout = ParamLayout::of(vm)?;
    let mut r = crate::rng::rng(seed);
    let mut flat = vec![0.0f64; layout.total];
    for e in &layout.entries {
        if e.shape.len() >= 2 {
            let fan_out = e.shape[0] as f64;
            let fan_in = e.len as f64 / fan_out;
            let a = (6.0 / (fan_in + fan_out)).sqrt();
            for v in &mut flat[e.range()] {
                *v = r.random_range(-a..a);
            }
        }
    }
    write_params_f64(vm, &flat)
}

/// Number of scalar parameters in `vm`.
pub fn count_params(vm: &VarMap) -> usize {
    sorted_vars(vm).iter().map(|(_, v)| v.elem_count()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};
    use candle_nn::VarBuilder;

    fn mlp(vm: &VarMap, dtype: DType) -> (candle_nn::Linear, candle_nn::Linear) {
        let vb = VarBuilder::from_varmap(vm, dtype, &Device::Cpu);
        let a = candle_nn::linear(3, 5, vb.pp("l0")).unwrap();
        let b = candle_nn::linear(5, 2, vb.pp("l1")).unwrap();
        (a, b)
    }

    #[test]
    fn layout_is_sorted_with_offsets() {
        let vm = VarMap::new();
        mlp(&vm, DType::F32);
        let l = ParamLayout::of(&vm).unwrap();
        let names: Vec<_> = l.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["l0.bias", "l0.weight", "l1.bias", "l1.weight"]);
        assert_eq!(l.total, 5 + 15 + 2 + 10);
        assert_eq!(l.get("l0.weight").unwrap().offset, 5);
        assert_eq!(l.get("l0.weight").unwrap().shape, vec![5, 3]);
        assert_eq!(count_params(&vm), l.total);
    }

    #[test]
    fn round_trip_is_exact() {
        for dtype in [DType::F32, DType::F64] {
            let vm = VarMap::new();
            mlp(&vm, dtype);
            let p = read_params_f64(&vm).unwrap();
            let q: Vec<f64> = p.iter().enumerate().map(|(i, x)| x * 0.5 + i as f64 * 0.25).collect();
            write_params_f64(&vm, &q).unwrap();
            let r = read_params_f64(&vm).unwrap();
            if dtype == DType::F64 {
                assert_eq!(q, r);
            } else {
                let q32: Vec<f64> = q.iter().map(|&x| x as f32 as f64).collect();
                assert_eq!(q32, r);
            }
            let f = read_params_f32(&vm).unwrap();
            write_params_f32(&vm, &f).unwrap();
            assert_eq!(read_params_f32(&vm).unwrap(), f);
        }
    }

    #[test]
    fn element_order_matches_tensor_layout() {
        let vm = VarMap::new();
        mlp(&vm, DType::F64);
        let flat: Vec<f64> = (0..32).map(|i| i as f64).collect();
        write_params_f64(&vm, &flat).unwrap();
        let data = vm.data().lock().unwrap();
        let w = data["l0.weight"].as_tensor().to_vec2::<f64>().unwrap();
        // l0.bias occupies 0..5; l0.weight[r][c] = 5 + 3r + c.
        assert_eq!(w[1][2], 5.0 + 3.0 + 2.0);
    }

    #[test]
    fn glorot_init_is_seeded_and_bounded() {
        let vm = VarMap::new();
        mlp(&vm, DType::F32);
        init_glorot_uniform(&vm, 3).unwrap();
        let a = read_params_f64(&vm).unwrap();
        init_glorot_uniform(&vm, 3).unwrap();
        assert_eq!(a, read_params_f64(&vm).unwrap());
        let l = ParamLayout::of(&vm).unwrap();
        assert!(a[l.get("l0.bias").unwrap().range()].iter().all(|&v| v == 0.0));
        let bound = (6.0f64 / (3.0 + 5.0)).sqrt();
        let w = &a[l.get("l0.weight").unwrap().range()];
        assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn wrong_length_is_an_error() {
        let vm = VarMap::new();
        mlp(&vm, DType::F32);
        let e = write_params_f64(&vm, &[0.0; 3]).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    }

    #[test]
    fn gradients_follow_the_same_order() {
        let vm = VarMap::new();
        let (a, b) = mlp(&vm, DType::F64);
        let x = Tensor::new(&[[1.0f64, -2.0, 0.5]], &Device::Cpu).unwrap();
        let loss = b.forward(&a.forward(&x).unwrap()).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        let flat = read_grads_f64(&vm, &g).unwrap();
        let layout = ParamLayout::of(&vm).unwrap();
        // d(sum)/d(l1.bias) = 1 for each of the two outputs.
        assert_eq!(&flat[layout.get("l1.bias").unwrap().range()], &[1.0, 1.0]);
        // Finite-difference check of one weight of l0.
        let p = read_params_f64(&vm).unwrap();
        let k = layout.get("l0.weight").unwrap().offset + 4;
        let f = |p: &[f64]| {
            write_params_f64(&vm, p).unwrap();
            b.forward(&a.forward(&x).unwrap()).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let mut pp = p.clone();
        pp[k] += 1e-6;
        let mut pm = p.clone();
        pm[k] -= 1e-6;
        let fd = (f(&pp) - f(&pm)) / 2e-6;
        assert!((fd - flat[k]).abs() < 1e-8, "{fd} vs {}", flat[k]);
    }
}
