//! The emulator's inference network with its normalisers and a linear head folded into the
//! weights, for [`super::Emulator::predict`] on the CPU.
//!
//! The trained network sees `xn = (u − μₓ)/σₓ` (with `u = x`, or the signed log of `x` for
//! `input_norm = signed_log`) and produces `raw`, decoded as `phys = raw·σ_y + μ_y`; the
//! completion head then maps `phys ↦ phys·A + (P·Δt)·e_c`. All of these are affine, so:
//! - the input z-score goes into the first layer: `W₀' = W₀·diag(1/σₓ)`, `b₀' = b₀ − W₀·(μₓ/σₓ)`;
//! - the output z-score and the completion matrix go into the last layer:
//!   `W_L' = Aᵀ·diag(σ_y)·W_L`, `b_L' = Aᵀ·(σ_y ⊙ b_L + μ_y)`, and the sulfur budget `P·Δt` is
//!   added to the closing column afterwards;
//! - the correction head (`Δ ← ReLU(x + Δ) − x`, water `ReLU`) is applied row by row after.
//!
//! Every layer is one fused op (`gradlab_core::ops::linear`). Rows are cut into tasks spread over
//! the rayon pool, each computed with the core's ops serial, so the threads work on separate
//! rows instead of splitting each small product. The folding is done in f64 and rounded to f32
//! once. Not folded (the caller falls back to the unfolded network): a signed-log or log-sign
//! output (not affine), a sign classifier, a device other than the CPU.

use super::heads::{HeadKind, N_ENV, N_STATE, N_X, N_Y, PRODUCTION_COLUMN, completion_matrix};
use crate::error::Result;
use candle_core::{Device, Tensor};
use gradlab_core::normalize::{NormKind, Normalizer};
use gradlab_core::ops::{Act, linear};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// One dense layer in f64: `w` row-major `[out, in]`, `b` `[out]`.
pub(crate) struct DenseF64 {
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub inputs: usize,
    pub outputs: usize,
}

/// The folded network, ready to run (see the module docs).
pub(crate) struct Folded {
    /// Signed-log scales of the inputs (applied before the first layer), for `signed_log` inputs.
    input_log: Option<Vec<f32>>,
    /// Weights `[out, in]` and biases of every layer, f32 on the CPU.
    layers: Vec<(Tensor, Tensor)>,
    head: Head,
}

/// What is left of the head after folding.
enum Head {
    Plain,
    /// The completion head's budget term: `out[column] += x[PRODUCTION_COLUMN]·dt`.
    Budget {
        column: usize,
        dt: f32,
    },
    Correction,
}

fn tensor(v: &[f64], shape: &[usize]) -> Result<Tensor> {
    let f: Vec<f32> = v.iter().map(|&a| a as f32).collect();
    Ok(Tensor::from_vec(f, shape, &Device::Cpu)?)
}

impl Folded {
    /// Folds the normalisers and the head into `layers` (the regression network, ReLU between
    /// layers); `None` where they are not affine (see the module docs).
    pub(crate) fn new(
        mut layers: Vec<DenseF64>,
        x_norm: &Normalizer,
        y_norm: &Normalizer,
        head: HeadKind,
        dt: f64,
        closing: &[usize; 4],
    ) -> Result<Option<Self>> {
        if y_norm.kind != NormKind::ZScore {
            return Ok(None);
        }
        // Input z-score into the first layer.
        let Some(first) = layers.first_mut() else { return Ok(None) };
        debug_assert_eq!(first.inputs, N_X);
        for o in 0..first.outputs {
            let row = &mut first.w[o * first.inputs..(o + 1) * first.inputs];
            let mut shift = 0.0;
            for (j, w) in row.iter_mut().enumerate() {
                *w /= x_norm.std[j];
                shift += *w * x_norm.mean[j];
            }
            first.b[o] -= shift;
        }
        // Output z-score, then the completion matrix, into the last layer.
        let Some(last) = layers.last_mut() else { return Ok(None) };
        debug_assert_eq!(last.outputs, N_Y);
        let k_in = last.inputs;
        for k in 0..N_Y {
            last.w[k * k_in..(k + 1) * k_in].iter_mut().for_each(|w| *w *= y_norm.std[k]);
            last.b[k] = last.b[k] * y_norm.std[k] + y_norm.mean[k];
        }
        let head = match head {
            HeadKind::Plain => Head::Plain,
            HeadKind::Correction => Head::Correction,
            HeadKind::Completion => {
                // out[c] = Σ_k A[k, c]·phys[k]: W'' = Aᵀ·W', b'' = Aᵀ·b'.
                let a = completion_matrix(closing);
                let (mut w, mut b) = (vec![0.0; N_Y * k_in], vec![0.0; N_Y]);
                for c in 0..N_Y {
                    for k in 0..N_Y {
                        let akc = a[k * N_Y + c] as f64;
                        if akc != 0.0 {
                            b[c] += akc * last.b[k];
                            let (src, dst) = (&last.w[k * k_in..(k + 1) * k_in], &mut w[c * k_in..(c + 1) * k_in]);
                            dst.iter_mut().zip(src).for_each(|(d, s)| *d += akc * s);
                        }
                    }
                }
                last.w = w;
                last.b = b;
                Head::Budget { column: closing[0], dt: dt as f32 }
            }
        };
        let layers = layers
            .iter()
            .map(|l| Ok((tensor(&l.w, &[l.outputs, l.inputs])?, tensor(&l.b, &[l.outputs])?)))
            .collect::<Result<Vec<_>>>()?;
        let input_log = (x_norm.kind == NormKind::SignedLog).then(|| x_norm.scale.iter().map(|&s| s as f32).collect());
        Ok(Some(Folded { input_log, layers, head }))
    }

    /// Physical outputs `[N, 28]` (head applied) of physical inputs `[N, 32]`.
    pub(crate) fn predict(&self, x: &ArrayView2<f32>) -> Result<Array2<f32>> {
        let n = x.nrows();
        let mut out = Array2::<f32>::zeros((n, N_Y));
        if n == 0 {
            return Ok(out);
        }
        // Enough tasks to balance the threads, each large enough to keep the products efficient.
        let rows = n.div_ceil(4 * rayon::current_num_threads()).clamp(256, 8192);
        let inputs: Vec<_> = x.axis_chunks_iter(Axis(0), rows).collect();
        let outputs: Vec<_> = out.axis_chunks_iter_mut(Axis(0), rows).collect();
        outputs
            .into_par_iter()
            .zip(inputs)
            .try_for_each(|(mut o, xs)| gradlab_core::ops::serial(|| self.rows(&xs, &mut o)))?;
        Ok(out)
    }

    fn rows(&self, x: &ArrayView2<f32>, out: &mut ndarray::ArrayViewMut2<f32>) -> Result<()> {
        let n = x.nrows();
        let mut input: Vec<f32> = x.iter().copied().collect();
        if let Some(scale) = &self.input_log {
            for row in input.chunks_exact_mut(N_X) {
                for (v, &s) in row.iter_mut().zip(scale) {
                    *v = v.signum() * (v.abs() / s).ln_1p();
                }
            }
        }
        let mut h = Tensor::from_vec(input, (n, N_X), &Device::Cpu)?;
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = linear(&h, w, b, if i == last { Act::Identity } else { Act::Relu })?;
        }
        let y = h.flatten_all()?.to_vec1::<f32>()?;
        for ((mut o, xr), yr) in out.rows_mut().into_iter().zip(x.rows()).zip(y.chunks_exact(N_Y)) {
            o.iter_mut().zip(yr).for_each(|(o, &y)| *o = y);
            match self.head {
                Head::Plain => {}
                Head::Budget { column, dt } => o[column] += xr[PRODUCTION_COLUMN] * dt,
                Head::Correction => {
                    for j in 0..N_STATE {
                        let s = xr[N_ENV + j];
                        o[j] = (s + o[j]).max(0.0) - s;
                    }
                    for j in N_STATE..N_Y {
                        o[j] = o[j].max(0.0);
                    }
                }
            }
        }
        Ok(())
    }
}
