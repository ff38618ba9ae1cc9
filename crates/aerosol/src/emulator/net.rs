//! The multilayer perceptron (ReLU) and its seeded initialisation.

use super::error::{EmulatorError, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// `sizes[0] → sizes[1] → … → sizes[last]` with ReLU between layers and a linear output.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Creates the layers under `vb` (names `l0`, `l1`, …).
    pub fn new(sizes: &[usize], vb: VarBuilder) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(EmulatorError::config(
                "layer sizes",
                format!("{sizes:?}"),
                "at least input and output size, all >= 1",
            ));
        }
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(format!("l{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Mlp { layers })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i < last {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

/// PyTorch's default `nn.Linear` initialisation, seeded: weights and biases uniform in
/// `±1/√fan_in`. Every `<prefix>.weight` of shape `[out, in]` and its `<prefix>.bias` are set,
/// visiting the variables sorted by name so the result depends only on `seed`.
pub fn init_linear_uniform(vm: &VarMap, seed: u64) -> Result<()> {
    let vars = gradlab_core::params::sorted_vars(vm);
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, var) in &vars {
        let dims = var.dims().to_vec();
        let fan_in = if let Some(prefix) = name.strip_suffix(".bias") {
            let w = vars.iter().find(|(n, _)| n == &format!("{prefix}.weight")).map(|(_, v)| v.dims()[1]);
            w.unwrap_or(dims[0])
        } else if dims.len() == 2 {
            dims[1]
        } else {
            dims[0]
        };
        let a = 1.0 / (fan_in.max(1) as f64).sqrt();
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-a..a) as f32).collect();
        let t = Tensor::from_vec(v, dims.as_slice(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn forward_matches_hand_computation_and_init_is_seeded() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let mlp = Mlp::new(&[3, 4, 2], vb).unwrap();
        init_linear_uniform(&vm, 5).unwrap();
        let a = gradlab_core::params::read_params_f64(&vm).unwrap();
        init_linear_uniform(&vm, 5).unwrap();
        assert_eq!(a, gradlab_core::params::read_params_f64(&vm).unwrap());
        init_linear_uniform(&vm, 6).unwrap();
        assert_ne!(a, gradlab_core::params::read_params_f64(&vm).unwrap());
        // Bounds: fan_in 3 for l0, 4 for l1.
        for (name, v) in gradlab_core::params::sorted_vars(&vm) {
            let bound = if name.starts_with("l0") { 1.0 / 3f64.sqrt() } else { 0.5 };
            let vals = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(vals.iter().all(|x| (x.abs() as f64) <= bound), "{name}");
        }
        // Hand-computed forward pass.
        let get = |n: &str| {
            let d = vm.data().lock().unwrap();
            d[n].as_tensor().clone()
        };
        let (w0, b0) = (get("l0.weight").to_vec2::<f32>().unwrap(), get("l0.bias").to_vec1::<f32>().unwrap());
        let (w1, b1) = (get("l1.weight").to_vec2::<f32>().unwrap(), get("l1.bias").to_vec1::<f32>().unwrap());
        let x = [0.3f32, -1.2, 2.0];
        let h: Vec<f32> = (0..4).map(|i| (b0[i] + (0..3).map(|j| w0[i][j] * x[j]).sum::<f32>()).max(0.0)).collect();
        let y: Vec<f32> = (0..2).map(|i| b1[i] + (0..4).map(|j| w1[i][j] * h[j]).sum::<f32>()).collect();
        let out = mlp.forward(&Tensor::new(&[x], &Device::Cpu).unwrap()).unwrap().to_vec2::<f32>().unwrap();
        for i in 0..2 {
            assert!((out[0][i] - y[i]).abs() < 1e-5, "{out:?} {y:?}");
        }
        assert!(Mlp::new(&[3], VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).is_err());
    }
}
