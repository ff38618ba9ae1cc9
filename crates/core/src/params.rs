//! Flat parameter vectors.
//!
//! Every trainable parameter of a [`VarMap`] read into one vector and written back, in a stable,
//! documented order: **variables sorted by name** (the `vb.pp("…")` path, e.g. `l0.bias` before
//! `l0.weight`), each flattened row-major (the last index fastest). [`ParamLayout`] records where
//! each tensor starts, its length and shape, so that per-layer or per-filter operations
//! (filter-normalised directions, per-module statistics) can be done on the flat vector.
//!
//! The order matters when weights come from elsewhere: a PyTorch `state_dict` saved as
//! safetensors has the same names as a candle model built with the same `vb.pp(…)` paths
//! (`l0.weight` is `[out, in]` in both), so [`load_named`] loads it by name, never by position.
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
    /// Whether this is a bias-like tensor (a scalar or 1-D).
    pub fn is_vector(&self) -> bool {
        self.shape.len() <= 1
    }

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
        Self::from_shapes(vars.iter().map(|(name, v)| (name.clone(), v.dims().to_vec())))
    }

    /// A layout of `(name, shape)` tensors laid out one after another in the given order (for
    /// flat vectors that do not come from a `VarMap`, e.g. analytic test objectives).
    pub fn from_shapes<S: Into<String>>(shapes: impl IntoIterator<Item = (S, Vec<usize>)>) -> Self {
        let mut entries = Vec::new();
        let mut offset = 0;
        for (name, shape) in shapes {
            let len = shape.iter().product::<usize>();
            entries.push(ParamEntry { name: name.into(), shape, offset, len });
            offset += len;
        }
        ParamLayout { entries, total: offset }
    }

    /// A layout with one 1-D tensor `x` of `n` scalars.
    pub fn flat(n: usize) -> Self {
        Self::from_shapes([("x", vec![n])])
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

/// A seeded initialisation scheme for [`init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Glorot (Xavier) uniform for every tensor with ≥ 2 dimensions (fan-out = first dimension,
    /// fan-in = the rest): `U(±√(6 / (fan_in + fan_out)))`; biases zero.
    Glorot,
    /// PyTorch's default for `nn.Linear`: weights and biases `U(±1/√fan_in)`, where a bias
    /// `<p>.bias` takes the fan-in of its `<p>.weight`.
    TorchDefault,
    /// PyTorch's weight bound `U(±1/√fan_in)` with zero biases.
    TorchWeightsZeroBias,
}

/// Initialise every parameter of `vm` from `seed` (candle's own initialisers are not seeded).
///
/// Variables are visited sorted by name and drawn from one ChaCha8 stream, so the result depends
/// only on the model's variables, the scheme and the seed. Whatever the scheme, normalisation
/// layers get their usual start: 1-D `…weight` tensors (BatchNorm/LayerNorm scales) and
/// `…running_var` are set to 1, their `…bias` shifts and `…running_mean` to 0.
pub fn init(vm: &VarMap, seed: u64, scheme: Init) -> Result<()> {
    use rand::Rng;
    let layout = ParamLayout::of(vm)?;
    let mut r = crate::rng::rng(seed);
    let mut flat = vec![0.0f64; layout.total];
    let fan_in_of = |e: &ParamEntry| -> usize {
        match e.shape.len() {
            0 => 1,
            1 => e
                .name
                .strip_suffix("bias")
                .and_then(|p| layout.get(&format!("{p}weight")))
                .filter(|w| w.shape.len() >= 2)
                .map_or(e.len, |w| w.len / w.shape[0].max(1)),
            _ => e.len / e.shape[0].max(1),
        }
    };
    for e in &layout.entries {
        let vals = &mut flat[e.range()];
        if e.is_vector() && (e.name.ends_with("running_var") || e.name.ends_with("weight")) {
            vals.fill(1.0);
            continue;
        }
        let norm_shift = e.name.strip_suffix("bias").and_then(|p| layout.get(&format!("{p}weight"))).is_some_and(|w| w.is_vector());
        if e.name.ends_with("running_mean") || norm_shift {
            continue;
        }
        let bound = match (scheme, e.is_vector()) {
            (Init::Glorot, false) => {
                let fan_out = e.shape[0] as f64;
                (6.0 / (e.len as f64 / fan_out + fan_out)).sqrt()
            }
            (Init::TorchDefault, _) | (Init::TorchWeightsZeroBias, false) => 1.0 / (fan_in_of(e).max(1) as f64).sqrt(),
            (Init::Glorot, true) | (Init::TorchWeightsZeroBias, true) => continue,
        };
        for v in vals {
            *v = r.random_range(-bound..bound);
        }
    }
    write_params_f64(vm, &flat)
}

/// Load tensors into `vm` by variable name (e.g. a PyTorch `state_dict` saved as safetensors and
/// read with `candle_core::safetensors::load`). Every variable of the model must be present with
/// its shape; names the model does not have are an error too (they usually mean a naming
/// mismatch), listed in the message. Values are converted to each variable's dtype.
pub fn load_named(vm: &VarMap, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
    let vars = sorted_vars(vm);
    let missing: Vec<&str> =
        vars.iter().filter(|(n, _)| !tensors.contains_key(n)).map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<&str> =
        tensors.keys().filter(|k| !vars.iter().any(|(n, _)| n == *k)).map(|k| k.as_str()).collect();
    extra.sort_unstable();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(Error::invalid(
            "tensor names",
            format!("missing {missing:?}, not in the model {extra:?}"),
            format!("exactly the model's variables {:?}", vars.iter().map(|(n, _)| n).collect::<Vec<_>>()),
        ));
    }
    for (name, v) in &vars {
        let src = &tensors[name];
        if src.dims() != v.dims() {
            return Err(Error::ShapeMismatch {
                what: format!("tensor `{name}`"),
                expected: v.dims().to_vec(),
                got: src.dims().to_vec(),
            });
        }
        v.set(&src.to_device(v.device())?.to_dtype(v.dtype())?)?;
    }
    Ok(())
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
        init(&vm, 3, Init::Glorot).unwrap();
        let a = read_params_f64(&vm).unwrap();
        init(&vm, 3, Init::Glorot).unwrap();
        assert_eq!(a, read_params_f64(&vm).unwrap());
        init(&vm, 4, Init::Glorot).unwrap();
        assert_ne!(a, read_params_f64(&vm).unwrap());
        let l = ParamLayout::of(&vm).unwrap();
        assert!(a[l.get("l0.bias").unwrap().range()].iter().all(|&v| v == 0.0));
        let bound = (6.0f64 / (3.0 + 5.0)).sqrt();
        let w = &a[l.get("l0.weight").unwrap().range()];
        assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn torch_default_bounds_and_norm_layers() {
        let vm = VarMap::new();
        mlp(&vm, DType::F64);
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        candle_nn::batch_norm(5, candle_nn::BatchNormConfig::default(), vb.pp("bn")).unwrap();
        let l = ParamLayout::of(&vm).unwrap();
        for (scheme, zero_bias) in [(Init::TorchDefault, false), (Init::TorchWeightsZeroBias, true)] {
            init(&vm, 9, scheme).unwrap();
            let a = read_params_f64(&vm).unwrap();
            // fan-in 3 for l0 (weight [5, 3] and its bias), 5 for l1.
            for (name, fan_in) in [("l0.weight", 3.0), ("l0.bias", 3.0), ("l1.weight", 5.0), ("l1.bias", 5.0)] {
                let v = &a[l.get(name).unwrap().range()];
                let bound = 1.0 / f64::sqrt(fan_in);
                assert!(v.iter().all(|x| x.abs() <= bound), "{name}");
                if name.ends_with("bias") && zero_bias {
                    assert!(v.iter().all(|&x| x == 0.0), "{name}");
                } else {
                    // Uniform on ±bound: the largest of ≥ 2 draws is well away from 0.
                    assert!(v.iter().any(|x| x.abs() > 0.05 * bound), "{name}");
                }
            }
            assert!(a[l.get("bn.weight").unwrap().range()].iter().all(|&x| x == 1.0));
            assert!(a[l.get("bn.running_var").unwrap().range()].iter().all(|&x| x == 1.0));
            assert!(a[l.get("bn.running_mean").unwrap().range()].iter().all(|&x| x == 0.0));
            assert!(a[l.get("bn.bias").unwrap().range()].iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn load_named_checks_names_and_shapes() {
        let src = VarMap::new();
        mlp(&src, DType::F32);
        init(&src, 1, Init::TorchDefault).unwrap();
        let named: std::collections::HashMap<String, Tensor> =
            sorted_vars(&src).into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
        let dst = VarMap::new();
        mlp(&dst, DType::F64);
        load_named(&dst, &named).unwrap();
        let (a, b) = (read_params_f64(&src).unwrap(), read_params_f64(&dst).unwrap());
        assert_eq!(a, b);
        let mut bad = named.clone();
        bad.insert("l2.weight".into(), Tensor::zeros((1, 1), DType::F32, &Device::Cpu).unwrap());
        bad.remove("l0.bias");
        let e = load_named(&dst, &bad).unwrap_err().to_string();
        assert!(e.contains("l0.bias") && e.contains("l2.weight"), "{e}");
        let mut bad = named;
        bad.insert("l0.bias".into(), Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap());
        assert!(matches!(load_named(&dst, &bad).unwrap_err(), Error::ShapeMismatch { .. }));
    }

    #[test]
    fn layout_from_shapes() {
        let l = ParamLayout::from_shapes([("a", vec![2, 3]), ("b", vec![4])]);
        assert_eq!(l.total, 10);
        assert_eq!(l.entries[1].range(), 6..10);
        assert!(l.entries[1].is_vector() && !l.entries[0].is_vector());
        assert_eq!(ParamLayout::flat(7).total, 7);
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
