//! Offline evaluation in physical units, as in Harder et al. (2022) and their reference code:
//!
//! * R² per output (24 tendencies + 4 water) and the uniform average (scikit-learn);
//! * R² of `ln(|v| + 1e-8)` (the reference's "R² log");
//! * per species the mass bias `mean(ΣΔ − budget)` and RMSE `√mean((ΣΔ − budget)²)`, both divided
//!   by the species' mean concentration (mean over the training X of all its state columns;
//!   sulfur includes gas-phase H2SO4), budget `P·Δt` for sulfur and 0 otherwise;
//! * the fraction of negative predicted concentrations `x + Δ` (24 states) and of negative water,
//!   and the reference's "negative mean": per state variable the sum of the negative predicted
//!   concentrations over N, divided by the mean true concentration after the step, averaged.

use super::emulator_model::check_cols;
use super::heads::{CONSERVED_SPECIES, N_ENV, N_STATE, N_X, N_Y, PRODUCTION_COLUMN};
use crate::error::Result;
use gradlab_core::metrics;
use gradlab_core::stats::median;
use ndarray::{Array2, ArrayView2};

/// The metrics of one variant on one data set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// R² per output (28).
    pub r2: Vec<f64>,
    /// Uniform average of `r2` (the paper's headline metric).
    pub r2_mean: f64,
    /// Median of `r2`: a summary that a few heavy-tailed outputs cannot dominate.
    pub r2_median: f64,
    /// R² of `ln(|v| + 1e-8)` per output.
    pub r2_log: Vec<f64>,
    /// Uniform average of `r2_log`.
    pub r2_log_mean: f64,
    /// Mass bias per species (sulfur, BC, OC, dust), relative to the mean concentration.
    pub mass_bias: [f64; 4],
    /// Mass-violation RMSE per species, relative to the mean concentration.
    pub mass_rmse: [f64; 4],
    /// Largest |ΣΔ − budget| per species, relative to the mean concentration.
    pub mass_max: [f64; 4],
    /// Fraction of negative predicted concentrations over all 24 state variables.
    pub negative_fraction: f64,
    /// Fraction of negative predicted concentrations per state variable.
    pub negative_fraction_per_variable: Vec<f64>,
    /// Fraction of negative predicted water contents.
    pub negative_water_fraction: f64,
    /// The reference's "negative mean" (see the module docs).
    pub negative_mean: f64,
}

/// Mean concentration per species over the rows of X (`[N, 32]`), for the mass metrics.
pub fn species_means(x: &ArrayView2<f32>) -> Result<[f64; 4]> {
    check_cols("X", x.dim(), N_X)?;
    let mut out = [0.0; 4];
    for (k, s) in CONSERVED_SPECIES.iter().enumerate() {
        let mut sum = 0.0;
        for &j in s.columns {
            sum += x.column(N_ENV + j).iter().map(|&v| v as f64).sum::<f64>();
        }
        out[k] = sum / (s.columns.len() * x.nrows().max(1)) as f64;
    }
    Ok(out)
}

fn to64(a: &ArrayView2<f32>) -> Array2<f64> {
    a.mapv(|v| v as f64)
}

/// Evaluates predictions `pred` against `truth` (both `[N, 28]` physical: tendencies and water)
/// for inputs `x` `[N, 32]`; `dt` is the box model's step, `means` from [`species_means`] on the
/// training inputs.
pub fn evaluate(
    x: &ArrayView2<f32>,
    truth: &ArrayView2<f32>,
    pred: &ArrayView2<f32>,
    dt: f64,
    means: &[f64; 4],
) -> Result<Evaluation> {
    check_cols("X", x.dim(), N_X)?;
    check_cols("truth", truth.dim(), N_Y)?;
    check_cols("prediction", pred.dim(), N_Y)?;
    let (t, p) = (to64(truth), to64(pred));
    let r2 = metrics::r2_per_column(&t.view(), &p.view())?;
    let lg = |a: &Array2<f64>| a.mapv(|v| (v.abs() + 1e-8).ln());
    let r2_log = metrics::r2_per_column(&lg(&t).view(), &lg(&p).view())?;
    let n = x.nrows();
    let mut mass_bias = [0.0; 4];
    let mut mass_rmse = [0.0; 4];
    let mut mass_max = [0.0f64; 4];
    for (k, s) in CONSERVED_SPECIES.iter().enumerate() {
        let (mut sum, mut sq) = (0.0, 0.0);
        for i in 0..n {
            let budget = if s.production { x[[i, PRODUCTION_COLUMN]] as f64 * dt } else { 0.0 };
            let v = s.columns.iter().map(|&j| p[[i, j]]).sum::<f64>() - budget;
            sum += v;
            sq += v * v;
            mass_max[k] = mass_max[k].max(v.abs());
        }
        let m = if means[k] > 0.0 { means[k] } else { 1.0 };
        mass_bias[k] = sum / n as f64 / m;
        mass_rmse[k] = (sq / n as f64).sqrt() / m;
        mass_max[k] /= m;
    }
    let mut neg_per = vec![0.0; N_STATE];
    let mut neg_mean = 0.0;
    for (j, frac) in neg_per.iter_mut().enumerate() {
        let (mut count, mut neg_sum, mut true_sum) = (0usize, 0.0, 0.0);
        for i in 0..n {
            let xs = x[[i, N_ENV + j]] as f64;
            let next = xs + p[[i, j]];
            true_sum += xs + t[[i, j]];
            if next < 0.0 {
                count += 1;
                neg_sum += next;
            }
        }
        *frac = count as f64 / n as f64;
        let mean_true = true_sum / n as f64;
        if mean_true > 0.0 {
            neg_mean += neg_sum / n as f64 / mean_true;
        }
    }
    let water_neg = p.slice(ndarray::s![.., N_STATE..]).iter().filter(|&&v| v < 0.0).count();
    Ok(Evaluation {
        r2_mean: r2.iter().sum::<f64>() / r2.len() as f64,
        r2_median: median(&r2),
        r2,
        r2_log_mean: r2_log.iter().sum::<f64>() / r2_log.len() as f64,
        r2_log,
        mass_bias,
        mass_rmse,
        mass_max,
        negative_fraction: neg_per.iter().sum::<f64>() / N_STATE as f64,
        negative_fraction_per_variable: neg_per,
        negative_water_fraction: water_neg as f64 / (n * (N_Y - N_STATE)).max(1) as f64,
        negative_mean: neg_mean / N_STATE as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn hand_computed_mass_and_negativity() {
        // Two rows. X: production 1 in row 0 and 0 in row 1; all states 1.
        let mut x = Array2::<f32>::zeros((2, N_X));
        x.slice_mut(ndarray::s![.., N_ENV..]).fill(1.0);
        x[[0, PRODUCTION_COLUMN]] = 1.0;
        let truth = Array2::<f32>::zeros((2, N_Y));
        let mut pred = Array2::<f32>::zeros((2, N_Y));
        // Sulfur: row 0 sums to 10 (budget 1·dt = 10 → violation 0); row 1 sums to 4 (budget 0).
        pred[[0, 0]] = 4.0;
        pred[[0, 4]] = 6.0;
        pred[[1, 2]] = 4.0;
        // BC: row 0 −2 (one state at 1 − 2 = −1 < 0); row 1 0.
        pred[[0, 5]] = -2.0;
        // A negative water content.
        pred[[1, 25]] = -1.0;
        let means = [2.0, 1.0, 1.0, 1.0];
        let e = evaluate(&x.view(), &truth.view(), &pred.view(), 10.0, &means).unwrap();
        assert!((e.mass_bias[0] - (0.0 + 4.0) / 2.0 / 2.0).abs() < 1e-12);
        assert!((e.mass_rmse[0] - (16.0f64 / 2.0).sqrt() / 2.0).abs() < 1e-12);
        assert!((e.mass_max[0] - 2.0).abs() < 1e-12);
        assert!((e.mass_bias[1] + 1.0).abs() < 1e-12);
        assert!((e.mass_rmse[1] - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(e.mass_bias[2], 0.0);
        // One negative concentration among 2 × 24.
        assert!((e.negative_fraction - 1.0 / 48.0).abs() < 1e-12);
        assert_eq!(e.negative_fraction_per_variable[5], 0.5);
        assert!((e.negative_water_fraction - 1.0 / 8.0).abs() < 1e-12);
        // Negative mean: variable 5 has sum −1 over N = 2, mean true next state 1 → −0.5; / 24.
        assert!((e.negative_mean + 0.5 / 24.0).abs() < 1e-12);
        // Truth has constant (zero) columns: R² is 1 where predicted exactly, else 0.
        assert_eq!(e.r2[1], 1.0);
        assert_eq!(e.r2[0], 0.0);
        let m = species_means(&x.view()).unwrap();
        assert_eq!(m, [1.0; 4]);
        assert!(evaluate(&x.view(), &truth.view(), &pred.slice(ndarray::s![.., ..27]), 1.0, &means).is_err());
    }
}
