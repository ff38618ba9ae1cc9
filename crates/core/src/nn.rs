//! Small building blocks shared by the toolkits' models.

use crate::ops::Act;
use crate::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Hidden-layer activation of an [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// tanh (smooth; what second-order analyses want).
    #[default]
    Tanh,
    /// max(0, x).
    Relu,
}

/// A fully connected network `sizes[0] → … → sizes[last]` with the activation between layers and
/// a linear output. Variables are named `l0.weight`, `l0.bias`, `l1.…` under the given
/// `VarBuilder`, so flat parameter vectors ([`crate::params`]) have a predictable layout.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
    act: Activation,
}

impl Mlp {
    /// Build the layers under `vb`. At least an input and an output size, all ≥ 1.
    pub fn new(sizes: &[usize], act: Activation, vb: VarBuilder) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::invalid("MLP layer sizes", format!("{sizes:?}"), "at least [in, out], every size >= 1"));
        }
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(format!("l{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Mlp { layers, act })
    }

    /// The linear layers.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let act = match self.act {
                _ if i == last => Act::Identity,
                Activation::Tanh => Act::Tanh,
                Activation::Relu => Act::Relu,
            };
            // Each layer is one fused op ([`crate::ops::linear`]: product, bias and activation;
            // candle's ops where it does not apply).
            h = match l.bias() {
                Some(b) => crate::ops::linear(&h, l.weight(), b, act)?,
                None => {
                    let z = l.forward(&h)?;
                    match act {
                        Act::Identity => z,
                        Act::Tanh => crate::ops::tanh(&z)?,
                        Act::Relu => z.relu()?,
                    }
                }
            };
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn forward_matches_hand_computation() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        let m = Mlp::new(&[2, 2, 1], Activation::Tanh, vb).unwrap();
        // l0: W = [[1, 2], [3, 4]], b = [0.5, -0.5]; l1: W = [[1, -1]], b = [0.25]  (sorted flat order:
        // l0.bias, l0.weight, l1.bias, l1.weight)
        crate::params::write_params_f64(&vm, &[0.5, -0.5, 1.0, 2.0, 3.0, 4.0, 0.25, 1.0, -1.0]).unwrap();
        let x = Tensor::new(&[[0.1f64, -0.2]], &Device::Cpu).unwrap();
        let y = m.forward(&x).unwrap().to_vec2::<f64>().unwrap()[0][0];
        let h0 = (0.1 - 0.4 + 0.5f64).tanh();
        let h1 = (0.3 - 0.8 - 0.5f64).tanh();
        assert!((y - (h0 - h1 + 0.25)).abs() < 1e-14);
        let relu =
            Mlp::new(&[2, 2, 1], Activation::Relu, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
        let y = relu.forward(&x).unwrap().to_vec2::<f64>().unwrap()[0][0];
        assert!((y - (0.2f64.max(0.0) - 0.0 + 0.25)).abs() < 1e-14);
        assert!(Mlp::new(&[3], Activation::Tanh, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).is_err());
    }
}
