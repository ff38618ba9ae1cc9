//! Stationary ARD kernels: `k(x, x') = σ_f² κ(r²)`, `r² = Σ_m (x_m − x'_m)² / ℓ_m²`.

use serde::{Deserialize, Serialize};

/// Kernel family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelKind {
    /// Matérn ν = 5/2: `(1 + √5 r + 5r²/3) exp(−√5 r)`.
    #[default]
    Matern52,
    /// Squared exponential: `exp(−r²/2)`.
    Rbf,
}

impl KernelKind {
    /// `(κ(r²), dκ/d(r²))` for the unit-variance kernel.
    #[inline]
    pub fn eval_r2(self, r2: f64) -> (f64, f64) {
        match self {
            KernelKind::Matern52 => {
                let s = (5.0 * r2).sqrt();
                let e = (-s).exp();
                ((1.0 + s + s * s / 3.0) * e, -5.0 / 6.0 * (1.0 + s) * e)
            }
            KernelKind::Rbf => {
                let k = (-0.5 * r2).exp();
                (k, -0.5 * k)
            }
        }
    }
}

/// Kernel hyperparameters, stored as logarithms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyper {
    /// `ln ℓ_m`, one per input dimension (ARD).
    pub log_ls: Vec<f64>,
    /// `ln σ_f²` (signal variance, on standardised outputs).
    pub log_sf2: f64,
    /// `ln σ_n²` (noise variance, on standardised outputs).
    pub log_sn2: f64,
}

impl Hyper {
    /// Defaults for a `d`-dimensional unit cube: ℓ = 0.3, σ_f² = 1, σ_n² = 1e-4.
    pub fn default_for(d: usize) -> Hyper {
        Hyper { log_ls: vec![0.3f64.ln(); d], log_sf2: 0.0, log_sn2: 1e-4f64.ln() }
    }

    /// Flattened `[ln ℓ_1..ln ℓ_d, ln σ_f², ln σ_n²]`.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = self.log_ls.clone();
        v.push(self.log_sf2);
        v.push(self.log_sn2);
        v
    }

    /// Inverse of [`Hyper::to_vec`].
    pub fn from_vec(v: &[f64]) -> Hyper {
        let d = v.len() - 2;
        Hyper { log_ls: v[..d].to_vec(), log_sf2: v[d], log_sn2: v[d + 1] }
    }

    /// `1/ℓ_m²`.
    pub fn inv_ls2(&self) -> Vec<f64> {
        self.log_ls.iter().map(|l| (-2.0 * l).exp()).collect()
    }

    /// σ_f².
    pub fn sf2(&self) -> f64 {
        self.log_sf2.exp()
    }

    /// σ_n².
    pub fn sn2(&self) -> f64 {
        self.log_sn2.exp()
    }
}

/// Bounds of the hyperparameters on their natural scale (fitting works on logs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HyperBounds {
    /// Length-scale range (unit-cube inputs).
    pub length_scale: (f64, f64),
    /// Signal-variance range (standardised outputs).
    pub signal_variance: (f64, f64),
    /// Noise-variance range (standardised outputs).
    pub noise_variance: (f64, f64),
}

impl Default for HyperBounds {
    fn default() -> Self {
        HyperBounds { length_scale: (0.01, 20.0), signal_variance: (0.01, 100.0), noise_variance: (1e-6, 1.0) }
    }
}

impl HyperBounds {
    /// Lower and upper bounds of the flattened log vector for `d` inputs.
    pub fn log_box(&self, d: usize) -> (Vec<f64>, Vec<f64>) {
        let mut lo = vec![self.length_scale.0.ln(); d];
        let mut hi = vec![self.length_scale.1.ln(); d];
        lo.push(self.signal_variance.0.ln());
        hi.push(self.signal_variance.1.ln());
        lo.push(self.noise_variance.0.ln());
        hi.push(self.noise_variance.1.ln());
        (lo, hi)
    }

    pub(crate) fn check(&self) -> crate::Result<()> {
        for (field, (a, b)) in [
            ("fit.bounds.length_scale", self.length_scale),
            ("fit.bounds.signal_variance", self.signal_variance),
            ("fit.bounds.noise_variance", self.noise_variance),
        ] {
            if !(a > 0.0 && b > a && b.is_finite()) {
                return Err(crate::Error::invalid(field, format!("({a}, {b})"), "0 < low < high < inf"));
            }
        }
        Ok(())
    }
}

/// Scaled squared distance `r²` between two points.
#[inline]
pub fn r2(a: &[f64], b: &[f64], inv_ls2: &[f64]) -> f64 {
    let mut s = 0.0;
    for m in 0..a.len() {
        let t = a[m] - b[m];
        s += t * t * inv_ls2[m];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivative_matches_finite_difference() {
        for kind in [KernelKind::Matern52, KernelKind::Rbf] {
            for &r2 in &[1e-3, 0.1, 0.7, 2.0, 9.0] {
                let h = 1e-6 * r2;
                let fd = (kind.eval_r2(r2 + h).0 - kind.eval_r2(r2 - h).0) / (2.0 * h);
                let an = kind.eval_r2(r2).1;
                assert!((fd - an).abs() < 1e-7 * an.abs().max(1e-3), "{kind:?} r2 {r2}: {fd} vs {an}");
            }
            assert!((kind.eval_r2(0.0).0 - 1.0).abs() < 1e-15);
        }
        // Matérn-5/2 at r = 1: (1 + √5 + 5/3) e^{−√5}.
        let s5 = 5f64.sqrt();
        assert!((KernelKind::Matern52.eval_r2(1.0).0 - (1.0 + s5 + 5.0 / 3.0) * (-s5).exp()).abs() < 1e-15);
    }
}
