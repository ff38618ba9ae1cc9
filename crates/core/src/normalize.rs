//! Column normalisers fitted on training data: z-score and signed log.
//!
//! * `ZScore`: `t = (v − μ) / σ` (σ = 1 for constant columns).
//! * `SignedLog`: `u = sign(v)·ln(1 + |v|/s)` with a per-column scale `s` (the mean of `|v|` on
//!   the training data unless given; 1 for all-zero columns), followed by a z-score of `u`.
//!
//! Both are exactly invertible (up to floating point), serialisable to JSON, and usable on
//! `ndarray` tables and on candle tensors (so that physical-unit constraints can be applied
//! inside a model after de-normalisation).

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use ndarray::{Array2, ArrayView2};
use std::path::Path;

/// Which transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// z-score per column.
    #[default]
    ZScore,
    /// signed log, then z-score.
    SignedLog,
}

/// A fitted per-column normaliser.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalizer {
    /// The transform.
    pub kind: NormKind,
    /// Signed-log scale per column (all 1 for `ZScore`).
    pub scale: Vec<f64>,
    /// Mean of the (log-transformed) column.
    pub mean: Vec<f64>,
    /// Standard deviation of the (log-transformed) column (1 where the column is constant).
    pub std: Vec<f64>,
}

fn slog(v: f64, s: f64) -> f64 {
    v.signum() * (v.abs() / s).ln_1p()
}

fn slog_inv(u: f64, s: f64) -> f64 {
    u.signum() * s * u.abs().exp_m1()
}

impl Normalizer {
    /// Fit on training data (rows = samples). Non-finite values are an error naming the column.
    pub fn fit(data: &ArrayView2<f32>, kind: NormKind) -> Result<Self> {
        let (n, c) = data.dim();
        if n == 0 {
            return Err(Error::invalid("normaliser training data rows", 0, "at least 1 row"));
        }
        let mut scale = vec![1.0; c];
        let mut mean = vec![0.0; c];
        let mut std = vec![1.0; c];
        for j in 0..c {
            let col = data.column(j);
            if let Some((i, v)) = col.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(Error::invalid(format!("normaliser data[{i}, {j}]"), v, "finite values"));
            }
            if kind == NormKind::SignedLog {
                let m = col.iter().map(|&v| (v as f64).abs()).sum::<f64>() / n as f64;
                scale[j] = if m > 0.0 { m } else { 1.0 };
            }
            let f = |v: f32| match kind {
                NormKind::ZScore => v as f64,
                NormKind::SignedLog => slog(v as f64, scale[j]),
            };
            let mu = col.iter().map(|&v| f(v)).sum::<f64>() / n as f64;
            let var = col.iter().map(|&v| (f(v) - mu).powi(2)).sum::<f64>() / n as f64;
            mean[j] = mu;
            std[j] = if var > 0.0 && var.sqrt() > 1e-12 * mu.abs() { var.sqrt() } else { 1.0 };
        }
        Ok(Normalizer { kind, scale, mean, std })
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.mean.len()
    }

    fn check(&self, c: usize) -> Result<()> {
        if c != self.columns() {
            return Err(Error::ShapeMismatch {
                what: "normaliser columns".into(),
                expected: vec![self.columns()],
                got: vec![c],
            });
        }
        Ok(())
    }

    /// Normalise one value of column `j`.
    pub fn forward_value(&self, j: usize, v: f64) -> f64 {
        let u = match self.kind {
            NormKind::ZScore => v,
            NormKind::SignedLog => slog(v, self.scale[j]),
        };
        (u - self.mean[j]) / self.std[j]
    }

    /// Invert one value of column `j`.
    pub fn inverse_value(&self, j: usize, t: f64) -> f64 {
        let u = t * self.std[j] + self.mean[j];
        match self.kind {
            NormKind::ZScore => u,
            NormKind::SignedLog => slog_inv(u, self.scale[j]),
        }
    }

    /// Normalise a table.
    pub fn transform(&self, data: &ArrayView2<f32>) -> Result<Array2<f32>> {
        self.check(data.ncols())?;
        let mut out = data.to_owned();
        for ((_, j), v) in out.indexed_iter_mut() {
            *v = self.forward_value(j, *v as f64) as f32;
        }
        Ok(out)
    }

    /// Invert a normalised table.
    pub fn inverse(&self, data: &ArrayView2<f32>) -> Result<Array2<f32>> {
        self.check(data.ncols())?;
        let mut out = data.to_owned();
        for ((_, j), v) in out.indexed_iter_mut() {
            *v = self.inverse_value(j, *v as f64) as f32;
        }
        Ok(out)
    }

    fn row(&self, v: &[f64], device: &Device, dtype: DType) -> Result<Tensor> {
        Ok(Tensor::from_slice(v, (1, v.len()), device)?.to_dtype(dtype)?)
    }

    /// Normalise a `[rows, cols]` tensor (differentiable).
    pub fn transform_tensor(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x.dim(1)?)?;
        let (dev, dt) = (x.device(), x.dtype());
        let u = match self.kind {
            NormKind::ZScore => x.clone(),
            NormKind::SignedLog => {
                let s = self.row(&self.scale, dev, dt)?;
                let a = x.abs()?.broadcast_div(&s)?.affine(1.0, 1.0)?.log()?;
                sign(x)?.mul(&a)?
            }
        };
        let m = self.row(&self.mean, dev, dt)?;
        let sd = self.row(&self.std, dev, dt)?;
        Ok(u.broadcast_sub(&m)?.broadcast_div(&sd)?)
    }

    /// Invert a normalised `[rows, cols]` tensor (differentiable).
    pub fn inverse_tensor(&self, t: &Tensor) -> Result<Tensor> {
        self.check(t.dim(1)?)?;
        let (dev, dt) = (t.device(), t.dtype());
        let m = self.row(&self.mean, dev, dt)?;
        let sd = self.row(&self.std, dev, dt)?;
        let u = t.broadcast_mul(&sd)?.broadcast_add(&m)?;
        Ok(match self.kind {
            NormKind::ZScore => u,
            NormKind::SignedLog => {
                let s = self.row(&self.scale, dev, dt)?;
                let mag = u.abs()?.exp()?.affine(1.0, -1.0)?.broadcast_mul(&s)?;
                sign(&u)?.mul(&mag)?
            }
        })
    }

    /// Save as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::write_json(path, self)
    }

    /// Load from JSON, checking internal consistency.
    pub fn load(path: &Path) -> Result<Self> {
        let n: Normalizer = crate::io::read_json(path)?;
        let c = n.mean.len();
        if n.std.len() != c || n.scale.len() != c {
            return Err(Error::config(path.display().to_string(), "mean/std/scale", "must all have the same length"));
        }
        if n.std.iter().chain(&n.scale).any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::config(path.display().to_string(), "std/scale", "must be finite and > 0"));
        }
        Ok(n)
    }
}

/// Elementwise sign (−1, 0, +1) as a tensor of the same dtype; its gradient is zero.
fn sign(x: &Tensor) -> Result<Tensor> {
    let pos = x.gt(0.0)?.to_dtype(x.dtype())?;
    let neg = x.lt(0.0)?.to_dtype(x.dtype())?;
    Ok(pos.sub(&neg)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{array_to_tensor, tensor_to_array};
    use crate::rng::{normal_vec, rng};

    fn data() -> Array2<f32> {
        let mut r = rng(0);
        let a = normal_vec(&mut r, 500, 3.0, 2.0);
        let b = normal_vec(&mut r, 500, 0.0, 1.0);
        let mut v = Vec::new();
        for i in 0..500 {
            // heavy-tailed signed column, a normal one, a constant one
            v.extend([(a[i] * a[i].abs().powi(3)) as f32, b[i] as f32, 7.0]);
        }
        Array2::from_shape_vec((500, 3), v).unwrap()
    }

    #[test]
    fn zscore_statistics_and_round_trip() {
        let d = data();
        let n = Normalizer::fit(&d.view(), NormKind::ZScore).unwrap();
        let t = n.transform(&d.view()).unwrap();
        for j in 0..2 {
            let c = t.column(j);
            let m = c.iter().map(|&v| v as f64).sum::<f64>() / 500.0;
            let s = (c.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / 500.0).sqrt();
            assert!(m.abs() < 1e-4 && (s - 1.0).abs() < 1e-4, "{m} {s}");
        }
        assert_eq!(n.std[2], 1.0);
        let back = n.inverse(&t.view()).unwrap();
        for (a, b) in back.iter().zip(d.iter()) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} {b}");
        }
    }

    #[test]
    fn signed_log_round_trip_and_closed_form() {
        let d = data();
        let n = Normalizer::fit(&d.view(), NormKind::SignedLog).unwrap();
        let t = n.transform(&d.view()).unwrap();
        let back = n.inverse(&t.view()).unwrap();
        for (a, b) in back.iter().zip(d.iter()) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} {b}");
        }
        // Closed form for one value: sign(v) ln(1 + |v|/s), then z-score.
        let v = -12.5f64;
        let expect = (-(1.0 + 12.5 / n.scale[0]).ln() - n.mean[0]) / n.std[0];
        assert!((n.forward_value(0, v) - expect).abs() < 1e-12);
    }

    #[test]
    fn tensor_paths_match_array_paths() {
        let d = data();
        for kind in [NormKind::ZScore, NormKind::SignedLog] {
            let n = Normalizer::fit(&d.view(), kind).unwrap();
            let x = array_to_tensor(&d.view(), &Device::Cpu).unwrap();
            let t = tensor_to_array(&n.transform_tensor(&x).unwrap()).unwrap();
            let ta = n.transform(&d.view()).unwrap();
            for (a, b) in t.iter().zip(ta.iter()) {
                assert!((a - b).abs() < 1e-4, "{kind:?} {a} {b}");
            }
            let tt = array_to_tensor(&ta.view(), &Device::Cpu).unwrap();
            let inv = tensor_to_array(&n.inverse_tensor(&tt).unwrap()).unwrap();
            for (a, b) in inv.iter().zip(d.iter()) {
                assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{kind:?} {a} {b}");
            }
        }
    }

    #[test]
    fn save_load_and_errors() {
        let d = data();
        let n = Normalizer::fit(&d.view(), NormKind::SignedLog).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("norm.json");
        n.save(&p).unwrap();
        assert_eq!(Normalizer::load(&p).unwrap(), n);
        assert!(n.transform(&Array2::<f32>::zeros((2, 4)).view()).is_err());
        let mut bad = d.clone();
        bad[[3, 1]] = f32::NAN;
        let e = Normalizer::fit(&bad.view(), NormKind::ZScore).unwrap_err().to_string();
        assert!(e.contains("[3, 1]"), "{e}");
        std::fs::write(&p, r#"{"kind":"z_score","scale":[1],"mean":[0],"std":[0]}"#).unwrap();
        assert!(Normalizer::load(&p).is_err());
    }
}
