//! Gaussian-process regression with an incrementally growing Cholesky factor.
//!
//! Outputs are standardised (`ys = (y − mean) / std`) with the mean and std frozen at the
//! last (re)fit, so that appending a point keeps every earlier quantity valid: the factor
//! grows by one row, `z = L⁻¹ ys` by one entry, the log marginal likelihood by one term.
//! For an appended point with `q = L⁻¹ k(X, x)` and pivot `d`, `qᵀz` is the predictive mean,
//! `d²` the predictive variance (with noise) and `z_new = (ys − qᵀz)/d` the standardised
//! residual, which the adaptive lazy policy watches.

use crate::chol::{IncrementalCholesky, JitterPolicy};
use crate::error::{Error, Result};
use crate::kernel::{Hyper, HyperBounds, KernelKind, r2};
use crate::lbfgs::{Lbfgs, LbfgsOptions, LbfgsResult, minimize_box};
use faer::{Mat, Par};
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// A normal prior `N(loc, scale²)` on one log-hyperparameter (a log-normal prior on the
/// hyperparameter itself).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogNormal {
    /// Mean of the logarithm.
    pub loc: f64,
    /// Standard deviation of the logarithm (> 0).
    pub scale: f64,
}

impl LogNormal {
    /// `(−ln p(θ) up to a constant, d/dθ)` for `θ` the logarithm.
    fn neg_log_density(&self, theta: f64) -> (f64, f64) {
        let z = (theta - self.loc) / self.scale;
        (0.5 * z * z, z / self.scale)
    }

    fn check(&self, field: &str) -> Result<()> {
        if !(self.loc.is_finite() && self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::invalid(field, format!("{self:?}"), "finite loc, finite scale > 0"));
        }
        Ok(())
    }
}

/// Priors of the MAP hyperparameter fit ([`Gp::fit`] maximises log likelihood + log prior).
///
/// The default is a dimension-scaled log-normal prior on the length scales of unit-cube inputs
/// as Hvarfner, Hellsten & Nardi (2024) scale it, `ln ℓ ~ N(−1 + ½ ln d, 3)` (median
/// `e⁻¹·√d`), and BoTorch's `ln σ_n² ~ N(−4, 1)` on the noise of standardised outputs; the
/// signal variance gets the weak `ln σ_f² ~ N(0, 2²)`. Priors are on the log-parameters the fit
/// works on. BoTorch (≥ 0.12) centres the length scales at `√2 + ½ ln d` (median `4.1·√d`,
/// [`HyperPrior::botorch`]); the lower centre was chosen on tuning seeds 100–119 of Branin,
/// Hartmann-6, Levy-5 and Ackley-5 (docs/results/bayesopt.md): Ackley-5 2.58 against 4.15,
/// Hartmann-6 −3.289 against −3.255, Levy-5 0.64 against 0.33 (not significant, two seeds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HyperPrior {
    /// Length scales: `ln ℓ ~ N(ls_loc + ½ ln d, ls_scale²)` (`None`: flat).
    pub length_scale: Option<LogNormal>,
    /// `ln σ_f²` (`None`: flat).
    pub signal_variance: Option<LogNormal>,
    /// `ln σ_n²` (`None`: flat).
    pub noise_variance: Option<LogNormal>,
}

impl Default for HyperPrior {
    fn default() -> Self {
        HyperPrior { length_scale: Some(LogNormal { loc: -1.0, scale: 3f64.sqrt() }), ..HyperPrior::botorch() }
    }
}

impl HyperPrior {
    /// BoTorch's priors (≥ 0.12; Hvarfner et al. 2024): `ln ℓ ~ N(√2 + ½ ln d, 3)`,
    /// `ln σ_n² ~ N(−4, 1)`, and here the weak `ln σ_f² ~ N(0, 2²)`; the default before
    /// 2026-12-07's tuning of the length-scale centre.
    pub fn botorch() -> HyperPrior {
        HyperPrior {
            length_scale: Some(LogNormal { loc: std::f64::consts::SQRT_2, scale: 3f64.sqrt() }),
            signal_variance: Some(LogNormal { loc: 0.0, scale: 2.0 }),
            noise_variance: Some(LogNormal { loc: -4.0, scale: 1.0 }),
        }
    }

    /// No prior: plain maximum likelihood.
    pub fn flat() -> HyperPrior {
        HyperPrior { length_scale: None, signal_variance: None, noise_variance: None }
    }

    pub(crate) fn check(&self) -> Result<()> {
        for (field, p) in [
            ("fit.prior.length_scale", self.length_scale),
            ("fit.prior.signal_variance", self.signal_variance),
            ("fit.prior.noise_variance", self.noise_variance),
        ] {
            if let Some(p) = p {
                p.check(field)?;
            }
        }
        Ok(())
    }

    /// Adds `−ln p(θ)` (up to a constant) to `f` and its gradient to `grad`, for the flattened
    /// log vector `θ = [ln ℓ (d), ln σ_f², ln σ_n²]`.
    pub fn add_neg_log_prior(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let d = theta.len() - 2;
        let mut f = 0.0;
        if let Some(p) = self.length_scale {
            let p = LogNormal { loc: p.loc + 0.5 * (d as f64).ln(), scale: p.scale };
            for m in 0..d {
                let (v, g) = p.neg_log_density(theta[m]);
                f += v;
                grad[m] += g;
            }
        }
        for (i, p) in [(d, self.signal_variance), (d + 1, self.noise_variance)] {
            if let Some(p) = p {
                let (v, g) = p.neg_log_density(theta[i]);
                f += v;
                grad[i] += g;
            }
        }
        f
    }
}

/// Options of [`Gp::fit`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitOptions {
    /// Random restarts in addition to the warm start from the current hyperparameters.
    pub restarts: usize,
    /// Raw samples screened for the restarts: with `raw_samples` > 0, that many points are drawn
    /// uniformly in the log box, the negative log posterior is evaluated at each (one
    /// factorisation, no gradient) and the `restarts` best start L-BFGS (BoTorch's raw-sample
    /// initialisation, applied to the fit); 0: the restarts are uniform draws themselves.
    pub raw_samples: usize,
    /// L-BFGS iterations per start.
    pub max_iter: usize,
    /// Screening of the starts: with `screen_iter` > 0, every start (the warm start and the
    /// restarts) first runs `screen_iter` L-BFGS iterations, and only the `screen_keep` with the
    /// lowest negative log posterior then go on to `max_iter`, with their curvature memory. A
    /// kept start's path is the unscreened one, bit for bit, so the fit equals the unscreened
    /// fit whenever the unscreened winner is among the kept (up to exact ties in value, where
    /// the lower-indexed start wins). 0: every start runs to `max_iter`.
    pub screen_iter: usize,
    /// Starts kept after screening (≥ 1; only read when `screen_iter` > 0).
    pub screen_keep: usize,
    /// Hyperparameter bounds.
    pub bounds: HyperBounds,
    /// Priors of the MAP fit ([`HyperPrior::flat`] for maximum likelihood).
    pub prior: HyperPrior,
    /// Also fit by maximum likelihood (flat prior, the same starts) and keep whichever
    /// hyperparameters give the higher leave-one-out log predictive density
    /// ([`Gp::loo_log_predictive`]; Rasmussen & Williams 2006, §5.4.2). Doubles the fit's cost.
    pub loo_select_flat: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            restarts: 4,
            raw_samples: 0,
            max_iter: 60,
            screen_iter: 0,
            screen_keep: 2,
            bounds: HyperBounds::default(),
            prior: HyperPrior::default(),
            loo_select_flat: false,
        }
    }
}

impl FitOptions {
    pub(crate) fn check(&self) -> Result<()> {
        if self.raw_samples > 0 && self.raw_samples < self.restarts {
            return Err(Error::invalid(
                "fit.raw_samples",
                self.raw_samples,
                format!("0 (off) or ≥ fit.restarts = {}", self.restarts),
            ));
        }
        if self.screen_iter > 0 && self.screen_keep == 0 {
            return Err(Error::invalid("fit.screen_keep", 0, "≥ 1 when fit.screen_iter > 0".to_string()));
        }
        if self.screen_iter > 0 && self.screen_iter >= self.max_iter {
            return Err(Error::invalid(
                "fit.screen_iter",
                self.screen_iter,
                format!("0 (off) or below fit.max_iter = {}", self.max_iter),
            ));
        }
        self.bounds.check()?;
        self.prior.check()
    }
}

/// What a hyperparameter fit did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitReport {
    /// Log marginal likelihood at the chosen hyperparameters (standardised outputs).
    pub lml: f64,
    /// Total likelihood evaluations.
    pub evaluations: usize,
    /// True if [`FitOptions::loo_select_flat`] kept the maximum-likelihood hyperparameters.
    #[serde(default)]
    pub flat: bool,
}

/// A prediction in the original output units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Posterior mean.
    pub mean: f64,
    /// Posterior variance of the latent function (noise excluded).
    pub var: f64,
}

/// Prediction with gradients w.r.t. the unit-cube input, in standardised units.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionGrad {
    /// Mean.
    pub mean: f64,
    /// Latent variance.
    pub var: f64,
    /// ∂mean/∂x.
    pub dmean: Vec<f64>,
    /// ∂var/∂x.
    pub dvar: Vec<f64>,
}

/// Result of appending one observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppendInfo {
    /// Standardised residual `(ys − μ)/σ_pred` of the new point under the model before it.
    pub std_residual: f64,
    /// Its log predictive density (the increment of the log marginal likelihood).
    pub lml_increment: f64,
}

/// Gaussian process on unit-cube inputs.
#[derive(Clone, Debug)]
pub struct Gp {
    kind: KernelKind,
    hyper: Hyper,
    inv_ls2: Vec<f64>,
    d: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    y_mean: f64,
    y_std: f64,
    chol: IncrementalCholesky,
    z: Vec<f64>,
    zz: f64,
    sum_log_diag: f64,
    alpha: Option<Vec<f64>>,
    jitter: JitterPolicy,
    /// An id per row of the factor, new whenever the row is (re)computed, so that a
    /// [`PoolPosterior`] can tell which of its rows are still valid.
    row_ids: Vec<u64>,
    next_row_id: u64,
    /// Rows that came from the last full factorisation (the rest were appended).
    factored_rows: usize,
}

impl Gp {
    /// Empty GP on `d` inputs.
    pub fn new(kind: KernelKind, d: usize, hyper: Hyper, jitter: JitterPolicy) -> Gp {
        assert_eq!(hyper.log_ls.len(), d, "hyperparameters for {} inputs, GP has {d}", hyper.log_ls.len());
        Gp {
            kind,
            inv_ls2: hyper.inv_ls2(),
            hyper,
            d,
            x: Vec::new(),
            y: Vec::new(),
            y_mean: 0.0,
            y_std: 1.0,
            chol: IncrementalCholesky::with_capacity(64, jitter),
            z: Vec::new(),
            zz: 0.0,
            sum_log_diag: 0.0,
            alpha: None,
            jitter,
            row_ids: Vec::new(),
            next_row_id: 0,
            factored_rows: 0,
        }
    }

    /// Input dimension.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Number of observations.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True without observations.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Kernel family.
    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    /// Current hyperparameters.
    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// Frozen output standardisation `(mean, std)`.
    pub fn standardisation(&self) -> (f64, f64) {
        (self.y_mean, self.y_std)
    }

    /// Inputs, row-major `n × d`.
    pub fn x(&self) -> &[f64] {
        &self.x
    }

    /// Outputs in original units.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// The Cholesky factor of `K + σ_n² I (+ jitter)`.
    pub fn cholesky(&self) -> &IncrementalCholesky {
        &self.chol
    }

    /// Sets faer parallelism for full factorisations.
    pub fn set_par(&mut self, par: Par) {
        self.chol.set_par(par);
    }

    fn ys(&self, y: f64) -> f64 {
        (y - self.y_mean) / self.y_std
    }

    /// Standardised value of a raw output (with the frozen standardisation).
    pub fn standardise(&self, y: f64) -> f64 {
        self.ys(y)
    }

    /// Recomputes mean and std of the outputs (used at refits).
    fn restandardise(&mut self) {
        let n = self.y.len();
        if n == 0 {
            self.y_mean = 0.0;
            self.y_std = 1.0;
            return;
        }
        let m = self.y.iter().sum::<f64>() / n as f64;
        let v = self.y.iter().map(|y| (y - m).powi(2)).sum::<f64>() / n as f64;
        let s = v.sqrt();
        self.y_mean = m;
        self.y_std = if s.is_finite() && s > 1e-12 * m.abs().max(1.0) { s } else { 1.0 };
    }

    /// Sets explicit standardisation (e.g. when restoring a saved model).
    pub fn set_standardisation(&mut self, mean: f64, std: f64) {
        self.y_mean = mean;
        self.y_std = std;
    }

    fn kernel_matrix(&self, hyper: &Hyper) -> Mat<f64> {
        self.kernel_matrix_and_slopes(hyper, false).0
    }

    /// `K + σ_n² I` for `hyper` and, if `slopes`, `(κ(r²), κ'(r²))` of every pair below the
    /// diagonal (row-major by `i`, then `j < i`), for the likelihood gradient. Each pair's kernel
    /// is evaluated once and mirrored (`r²` is symmetric to the bit).
    fn kernel_matrix_and_slopes(&self, hyper: &Hyper, slopes: bool) -> (Mat<f64>, Vec<(f64, f64)>) {
        let n = self.len();
        let d = self.d;
        let inv = hyper.inv_ls2();
        let sf2 = hyper.sf2();
        let sn2 = hyper.sn2();
        let mut k = Mat::<f64>::zeros(n, n);
        let mut dk = Vec::with_capacity(if slopes { n * n.saturating_sub(1) / 2 } else { 0 });
        for i in 0..n {
            let xi = &self.x[i * d..(i + 1) * d];
            for j in 0..i {
                let (kv, dv) = self.kind.eval_r2(r2(xi, &self.x[j * d..(j + 1) * d], &inv));
                k[(i, j)] = sf2 * kv;
                k[(j, i)] = sf2 * kv;
                if slopes {
                    dk.push((kv, dv));
                }
            }
            k[(i, i)] = sf2 + sn2;
        }
        (k, dk)
    }

    /// Replaces the data, keeps the hyperparameters, recomputes the standardisation and
    /// factorises from scratch.
    pub fn set_data(&mut self, x: Vec<f64>, y: Vec<f64>) -> Result<()> {
        if x.len() != y.len() * self.d {
            return Err(Error::DimensionMismatch { what: "GP inputs", expected: y.len() * self.d, got: x.len() });
        }
        self.x = x;
        self.y = y;
        self.restandardise();
        self.refactor()
    }

    /// Replaces the data with a given standardisation and hyperparameters, factorises from
    /// scratch (restoring a saved model state).
    pub fn restore(&mut self, x: Vec<f64>, y: Vec<f64>, hyper: Hyper, mean: f64, std: f64) -> Result<()> {
        if x.len() != y.len() * self.d {
            return Err(Error::DimensionMismatch { what: "GP inputs", expected: y.len() * self.d, got: x.len() });
        }
        self.x = x;
        self.y = y;
        self.set_hyper(hyper);
        self.y_mean = mean;
        self.y_std = std;
        self.refactor()
    }

    fn set_hyper(&mut self, hyper: Hyper) {
        self.inv_ls2 = hyper.inv_ls2();
        self.hyper = hyper;
    }

    /// Full refactorisation with the current hyperparameters and standardisation.
    pub fn refactor(&mut self) -> Result<()> {
        let k = self.kernel_matrix(&self.hyper);
        self.chol.refactor(k.as_ref())?;
        let ys: Vec<f64> = self.y.iter().map(|&y| self.ys(y)).collect();
        self.z = self.chol.solve_lower_vec(&ys);
        self.zz = self.z.iter().map(|v| v * v).sum();
        self.sum_log_diag = 0.5 * self.chol.log_det();
        self.alpha = None;
        let n = self.len() as u64;
        self.row_ids = (self.next_row_id..self.next_row_id + n).collect();
        self.next_row_id += n;
        self.factored_rows = self.len();
        Ok(())
    }

    /// Kernel vector `k(X, x)` and, optionally, its derivative factor `σ_f² κ'(r²)`.
    fn kvec(&self, x: &[f64], out: &mut [f64], dk: Option<&mut [f64]>) {
        let n = self.len();
        let d = self.d;
        let sf2 = self.hyper.sf2();
        match dk {
            Some(dk) => {
                for i in 0..n {
                    let (k, dr) = self.kind.eval_r2(r2(x, &self.x[i * d..(i + 1) * d], &self.inv_ls2));
                    out[i] = sf2 * k;
                    dk[i] = sf2 * dr;
                }
            }
            None => {
                for i in 0..n {
                    out[i] = sf2 * self.kind.eval_r2(r2(x, &self.x[i * d..(i + 1) * d], &self.inv_ls2)).0;
                }
            }
        }
    }

    /// Appends one observation in `O(n²)` with the current hyperparameters and frozen
    /// standardisation.
    pub fn append(&mut self, x: &[f64], y: f64) -> Result<AppendInfo> {
        if x.len() != self.d {
            return Err(Error::DimensionMismatch { what: "GP input", expected: self.d, got: x.len() });
        }
        if !y.is_finite() {
            return Err(Error::NonFinite { what: "observation", value: y });
        }
        let n = self.len();
        let mut p = vec![0.0; n];
        self.kvec(x, &mut p, None);
        let c = self.hyper.sf2() + self.hyper.sn2();
        let d = self.chol.append_row(&p, c)?;
        let l = self.chol.L();
        let mut qz = 0.0;
        for j in 0..n {
            qz += l[(n, j)] * self.z[j];
        }
        let zn = (self.ys(y) - qz) / d;
        self.x.extend_from_slice(x);
        self.y.push(y);
        self.z.push(zn);
        self.zz += zn * zn;
        self.sum_log_diag += d.ln();
        self.alpha = None;
        self.row_ids.push(self.next_row_id);
        self.next_row_id += 1;
        Ok(AppendInfo { std_residual: zn, lml_increment: -0.5 * zn * zn - d.ln() - 0.5 * LN_2PI })
    }

    /// Drops the observations after the first `n` (exact; used to remove fantasies).
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len() {
            return;
        }
        self.chol.truncate(n);
        self.x.truncate(n * self.d);
        self.y.truncate(n);
        self.z.truncate(n);
        self.row_ids.truncate(n);
        self.factored_rows = self.factored_rows.min(n);
        self.zz = self.z.iter().map(|v| v * v).sum();
        self.sum_log_diag = 0.5 * self.chol.log_det();
        self.alpha = None;
    }

    /// Log marginal likelihood of the standardised outputs (maintained incrementally).
    pub fn lml(&self) -> f64 {
        -0.5 * self.zz - self.sum_log_diag - 0.5 * self.len() as f64 * LN_2PI
    }

    fn alpha(&mut self) -> &[f64] {
        if self.alpha.is_none() {
            self.alpha = Some(self.chol.solve_upper_vec(&self.z));
        }
        self.alpha.as_deref().unwrap_or(&[])
    }

    /// Makes sure `K⁻¹ ys` is computed (so `&self` predictions can run in parallel).
    pub fn prepare(&mut self) {
        let _ = self.alpha();
    }

    fn alpha_ref(&self) -> std::borrow::Cow<'_, [f64]> {
        match &self.alpha {
            Some(a) => std::borrow::Cow::Borrowed(a),
            None => std::borrow::Cow::Owned(self.chol.solve_upper_vec(&self.z)),
        }
    }

    /// Mean and latent variance at `x`, standardised units.
    pub fn predict_std(&self, x: &[f64]) -> (f64, f64) {
        let n = self.len();
        let sf2 = self.hyper.sf2();
        if n == 0 {
            return (0.0, sf2);
        }
        let mut k = vec![0.0; n];
        self.kvec(x, &mut k, None);
        let alpha = self.alpha_ref();
        let mean: f64 = k.iter().zip(alpha.iter()).map(|(a, b)| a * b).sum();
        let v = self.chol.solve_lower_vec(&k);
        let var = (sf2 - v.iter().map(|t| t * t).sum::<f64>()).max(0.0);
        (mean, var)
    }

    /// Mean, latent variance and their gradients at `x`, standardised units.
    pub fn predict_std_grad(&self, x: &[f64]) -> PredictionGrad {
        let n = self.len();
        let d = self.d;
        let sf2 = self.hyper.sf2();
        if n == 0 {
            return PredictionGrad { mean: 0.0, var: sf2, dmean: vec![0.0; d], dvar: vec![0.0; d] };
        }
        let mut k = vec![0.0; n];
        let mut dk = vec![0.0; n];
        self.kvec(x, &mut k, Some(&mut dk));
        let alpha = self.alpha_ref();
        let mean: f64 = k.iter().zip(alpha.iter()).map(|(a, b)| a * b).sum();
        let v = self.chol.solve_lower_vec(&k);
        let var_raw = sf2 - v.iter().map(|t| t * t).sum::<f64>();
        let w = self.chol.solve_upper_vec(&v);
        let mut dmean = vec![0.0; d];
        let mut dvar = vec![0.0; d];
        // ∂k_i/∂x_m = σ_f² κ'(r²) · 2 (x_m − X_im) / ℓ_m²
        for i in 0..n {
            let xi = &self.x[i * d..(i + 1) * d];
            let ca = alpha[i] * dk[i] * 2.0;
            let cw = -2.0 * w[i] * dk[i] * 2.0;
            for m in 0..d {
                let t = (x[m] - xi[m]) * self.inv_ls2[m];
                dmean[m] += ca * t;
                dvar[m] += cw * t;
            }
        }
        if var_raw <= 0.0 {
            dvar.iter_mut().for_each(|g| *g = 0.0);
        }
        PredictionGrad { mean, var: var_raw.max(0.0), dmean, dvar }
    }

    /// Means and latent variances at many points (`m × d` row-major), standardised units.
    /// Batched triangular solves, parallel over chunks.
    pub fn predict_std_batch(&self, xs: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let d = self.d;
        let m = xs.len() / d;
        let n = self.len();
        let sf2 = self.hyper.sf2();
        if n == 0 {
            return (vec![0.0; m], vec![sf2; m]);
        }
        let alpha = self.alpha_ref();
        const CHUNK: usize = 128;
        let chunks: Vec<(Vec<f64>, Vec<f64>)> = xs
            .par_chunks(CHUNK * d)
            .map(|c| {
                let b = c.len() / d;
                let mut k = Mat::<f64>::zeros(n, b);
                let mut buf = vec![0.0; n];
                for j in 0..b {
                    self.kvec(&c[j * d..(j + 1) * d], &mut buf, None);
                    for i in 0..n {
                        k[(i, j)] = buf[i];
                    }
                }
                let mean: Vec<f64> = (0..b).map(|j| (0..n).map(|i| k[(i, j)] * alpha[i]).sum::<f64>()).collect();
                self.chol.solve_lower_in_place(k.as_mut(), Par::Seq);
                let var: Vec<f64> =
                    (0..b).map(|j| (sf2 - (0..n).map(|i| k[(i, j)] * k[(i, j)]).sum::<f64>()).max(0.0)).collect();
                (mean, var)
            })
            .collect();
        let mut mean = Vec::with_capacity(m);
        let mut var = Vec::with_capacity(m);
        for (a, b) in chunks {
            mean.extend(a);
            var.extend(b);
        }
        (mean, var)
    }

    /// Prediction in original units.
    pub fn predict(&self, x: &[f64]) -> Prediction {
        let (m, v) = self.predict_std(x);
        Prediction { mean: self.y_mean + self.y_std * m, var: v * self.y_std * self.y_std }
    }

    /// Negative log marginal likelihood and its gradient w.r.t. the flattened log
    /// hyperparameters `[ln ℓ, ln σ_f², ln σ_n²]`, from scratch (`O(n³)`).
    /// Returns `+∞` if the kernel matrix cannot be factorised.
    pub fn neg_lml_grad(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let n = self.len();
        let d = self.d;
        let hyper = Hyper::from_vec(theta);
        let (kmat, slopes) = self.kernel_matrix_and_slopes(&hyper, true);
        let Some((chol, z, lml)) = self.factor_lml(&kmat) else {
            grad.iter_mut().for_each(|g| *g = 0.0);
            return f64::INFINITY;
        };
        let alpha = chol.solve_upper_vec(&z);
        let kinv = chol.inverse_lower(Par::Seq);
        // W = ααᵀ − K⁻¹; ∂lml/∂θ = ½ Σ_ij W_ij ∂K_ij/∂θ.
        let inv = hyper.inv_ls2();
        let sf2 = hyper.sf2();
        let sn2 = hyper.sn2();
        let mut g_ls = vec![0.0; d];
        let mut g_sf = 0.0;
        let mut g_sn = 0.0;
        let mut pair = 0;
        for i in 0..n {
            let wii = alpha[i] * alpha[i] - kinv[(i, i)];
            g_sf += 0.5 * wii * sf2;
            g_sn += 0.5 * wii * sn2;
            let xi = &self.x[i * d..(i + 1) * d];
            for j in 0..i {
                let wij = alpha[i] * alpha[j] - kinv[(i, j)];
                let xj = &self.x[j * d..(j + 1) * d];
                // κ and κ' as computed for the matrix entry.
                let (k, dk) = slopes[pair];
                pair += 1;
                // symmetric pair counted twice, times ½
                g_sf += wij * sf2 * k;
                let c = wij * sf2 * dk * -2.0;
                for m in 0..d {
                    let t = xi[m] - xj[m];
                    g_ls[m] += c * t * t * inv[m];
                }
            }
        }
        for m in 0..d {
            grad[m] = -g_ls[m];
        }
        grad[d] = -g_sf;
        grad[d + 1] = -g_sn;
        -lml
    }

    /// Negative log posterior (up to a constant) `−lml(θ) − ln p(θ)` without its gradient: one
    /// factorisation (`+∞` where the kernel matrix cannot be factorised).
    pub fn neg_log_posterior(&self, theta: &[f64], prior: &HyperPrior) -> f64 {
        let kmat = self.kernel_matrix(&Hyper::from_vec(theta));
        let Some((_, _, lml)) = self.factor_lml(&kmat) else {
            return f64::INFINITY;
        };
        let mut scratch = vec![0.0; theta.len()];
        -lml + prior.add_neg_log_prior(theta, &mut scratch)
    }

    /// The factor of `kmat` (`K + σ_n² I`), `z = L⁻¹ ys` and the log marginal likelihood of the
    /// standardised outputs; `None` where `kmat` cannot be factorised.
    fn factor_lml(&self, kmat: &Mat<f64>) -> Option<(IncrementalCholesky, Vec<f64>, f64)> {
        let chol = IncrementalCholesky::factor(kmat.as_ref(), self.jitter).ok()?;
        let ys: Vec<f64> = self.y.iter().map(|&y| self.ys(y)).collect();
        let z = chol.solve_lower_vec(&ys);
        let n = self.len() as f64;
        let lml = -0.5 * z.iter().map(|v| v * v).sum::<f64>() - 0.5 * chol.log_det() - 0.5 * n * LN_2PI;
        Some((chol, z, lml))
    }

    /// Negative log posterior (up to a constant) `−lml(θ) − ln p(θ)` and its gradient.
    pub fn neg_log_posterior_grad(&self, theta: &[f64], prior: &HyperPrior, grad: &mut [f64]) -> f64 {
        let f = self.neg_lml_grad(theta, grad);
        if !f.is_finite() {
            return f;
        }
        f + prior.add_neg_log_prior(theta, grad)
    }

    /// Fits hyperparameters by maximising the marginal likelihood plus the log prior (MAP;
    /// multi-start projected L-BFGS on log-parameters, starts in parallel), re-standardising
    /// the outputs first, then refactorises.
    pub fn fit(&mut self, opts: &FitOptions, seed: u64) -> Result<FitReport> {
        opts.check()?;
        if self.is_empty() {
            return Err(Error::TooFewObservations { need: 1, have: 0 });
        }
        self.restandardise();
        let d = self.d;
        let (lo, hi) = opts.bounds.log_box(d);
        let mut starts = vec![self.hyper.to_vec()];
        let mut rng = gradlab_core::rng::rng(seed);
        let draws = if opts.raw_samples > 0 { opts.raw_samples } else { opts.restarts };
        let mut draws: Vec<Vec<f64>> =
            (0..draws).map(|_| (0..d + 2).map(|i| lo[i] + rng.random::<f64>() * (hi[i] - lo[i])).collect()).collect();
        if opts.raw_samples > 0 && opts.restarts > 0 {
            let values: Vec<f64> = draws.par_iter().map(|t| self.neg_log_posterior(t, &opts.prior)).collect();
            let mut order: Vec<usize> = (0..draws.len()).collect();
            // NaN (a failed factorisation gives +∞, never NaN) sorts last
            order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
            draws = order.iter().take(opts.restarts).map(|&i| draws[i].clone()).collect();
        } else if opts.raw_samples > 0 {
            draws.clear();
        }
        starts.extend(draws);
        let lopts = LbfgsOptions { max_iter: opts.max_iter, gtol: 1e-5, ftol: 1e-9, ..Default::default() };
        let screen = (opts.screen_iter > 0).then_some((opts.screen_iter, opts.screen_keep));
        let (evaluations, found) = self.fit_from(&starts, &lo, &hi, lopts, &opts.prior, screen);
        if found {
            self.refactor()?;
        }
        let flat = HyperPrior::flat();
        if !opts.loo_select_flat || opts.prior == flat {
            if !found {
                self.refactor()?;
            }
            return Ok(FitReport { lml: self.lml(), evaluations, flat: false });
        }
        // The maximum-likelihood fit from the same starts; keep the better by LOO.
        let map_hyper = self.hyper.clone();
        let map_loo = if found { self.loo_log_predictive() } else { f64::NEG_INFINITY };
        let (more, found_ml) = self.fit_from(&starts, &lo, &hi, lopts, &flat, screen);
        let ml_loo = if found_ml && self.refactor().is_ok() { self.loo_log_predictive() } else { f64::NEG_INFINITY };
        let keep_ml = ml_loo > map_loo;
        if !keep_ml {
            self.set_hyper(map_hyper);
            self.refactor()?;
        }
        Ok(FitReport { lml: self.lml(), evaluations: evaluations + more, flat: keep_ml })
    }

    /// Multi-start L-BFGS on the log posterior under `prior`; sets the best hyperparameters found
    /// (without refactorising) and returns the evaluations and whether a finite optimum was found.
    /// With `screen = Some((k, keep))` every start runs `k` iterations first and only the `keep`
    /// best go on ([`FitOptions::screen_iter`]).
    fn fit_from(
        &mut self,
        starts: &[Vec<f64>],
        lo: &[f64],
        hi: &[f64],
        lopts: LbfgsOptions,
        prior: &HyperPrior,
        screen: Option<(usize, usize)>,
    ) -> (usize, bool) {
        let this = &*self;
        let objective = |t: &[f64], g: &mut [f64]| this.neg_log_posterior_grad(t, prior, g);
        let results: Vec<LbfgsResult> = match screen {
            Some((k, keep)) => {
                let mut runs: Vec<Lbfgs> = starts
                    .par_iter()
                    .map(|s| {
                        let mut f = objective;
                        let mut run = Lbfgs::new(&mut f, s, lo, hi, lopts);
                        run.advance(&mut f, lo, hi, k);
                        run
                    })
                    .collect();
                let mut order: Vec<usize> = (0..runs.len()).collect();
                // Lowest value first; a non-finite value (a failed start; NaN and −∞ included)
                // sorts last; ties by index (stable sort).
                let key = |i: usize| {
                    let v = runs[i].value();
                    if v.is_finite() { v } else { f64::INFINITY }
                };
                order.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
                let kept: Vec<usize> = order.into_iter().take(keep).collect();
                let advanced: Vec<(usize, Lbfgs)> = kept
                    .par_iter()
                    .map(|&i| {
                        let mut f = objective;
                        let mut run = runs[i].clone();
                        run.advance(&mut f, lo, hi, lopts.max_iter);
                        (i, run)
                    })
                    .collect();
                for (i, run) in advanced {
                    runs[i] = run;
                }
                runs.iter().map(Lbfgs::result).collect()
            }
            None => starts.par_iter().map(|s| minimize_box(objective, s, lo, hi, lopts)).collect(),
        };
        let evaluations = results.iter().map(|r| r.evaluations).sum();
        let mut best = 0;
        for (i, r) in results.iter().enumerate() {
            if r.f < results[best].f || !results[best].f.is_finite() {
                best = i;
            }
        }
        let found = results[best].f.is_finite();
        if found {
            self.set_hyper(Hyper::from_vec(&results[best].x));
        }
        (evaluations, found)
    }

    /// Leave-one-out log predictive density of the standardised outputs under the current
    /// hyperparameters, `Σᵢ ln N(yᵢ; μ₋ᵢ, σ₋ᵢ²)` with `μ₋ᵢ = yᵢ − αᵢ/[K⁻¹]ᵢᵢ` and
    /// `σ₋ᵢ² = 1/[K⁻¹]ᵢᵢ` (Rasmussen & Williams 2006, eq. 5.10–5.12; `K` with the noise), from the
    /// current factor in `O(n³)`.
    pub fn loo_log_predictive(&self) -> f64 {
        let n = self.len();
        if n == 0 {
            return 0.0;
        }
        let kinv = self.chol.inverse_lower(Par::Seq);
        let alpha = self.alpha_ref();
        (0..n)
            .map(|i| {
                let p = kinv[(i, i)];
                // yᵢ − μ₋ᵢ = αᵢ / p, σ₋ᵢ² = 1/p.
                let r = alpha[i] / p;
                -0.5 * (LN_2PI - p.ln()) - 0.5 * r * r * p
            })
            .sum()
    }

    /// Sets hyperparameters and refactorises (standardisation unchanged).
    pub fn set_hyperparameters(&mut self, hyper: Hyper) -> Result<()> {
        if hyper.log_ls.len() != self.d {
            return Err(Error::DimensionMismatch { what: "length scales", expected: self.d, got: hyper.log_ls.len() });
        }
        self.set_hyper(hyper);
        self.refactor()
    }
}

/// The posterior of a fixed pool of points, kept in step with a [`Gp`] as observations are
/// appended (the lazy GP's acquisition pool, issue 22).
///
/// It holds `V = L⁻¹ K(X, X*)` for the pool `X*` (`m` points): an appended observation adds
/// one row, `V[n, j] = (k(xₙ, x*ⱼ) − Σᵢ L[n, i] V[i, j]) / L[n, n]` — forward substitution one
/// row at a time, `O(n·m)` instead of the `O(n²·m)` of solving for every point afresh. The mean
/// is `Vᵀz` and the latent variance `σ_f² − Σᵢ V[i, j]²` (`O(n·m)`). Each row remembers the
/// [`Gp`] row it was computed from; rows the GP no longer has (after [`Gp::truncate`] and new
/// appends, or a refactorisation) are recomputed from there on. Built from scratch, the rows of
/// the GP's last full factorisation come from one blocked triangular solve and the appended
/// ones from the row update, so a pool rebuilt after a reload (the GP restored at its last refit,
/// the later observations appended) equals the kept one bit for bit.
#[derive(Clone, Debug)]
pub struct PoolPosterior {
    d: usize,
    xs: Vec<f64>,
    v: Vec<f64>,
    ids: Vec<u64>,
}

impl PoolPosterior {
    /// A pool of `xs.len() / d` points (`m × d` row-major) in `d` inputs.
    pub fn new(d: usize, xs: Vec<f64>) -> Result<PoolPosterior> {
        if d == 0 || !xs.len().is_multiple_of(d) {
            return Err(Error::DimensionMismatch { what: "pool points", expected: d, got: xs.len() });
        }
        Ok(PoolPosterior { d, xs, v: Vec::new(), ids: Vec::new() })
    }

    /// Input dimension.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Number of pool points.
    pub fn len(&self) -> usize {
        self.xs.len() / self.d
    }

    /// True for an empty pool.
    pub fn is_empty(&self) -> bool {
        self.xs.is_empty()
    }

    /// The pool's points, row-major `m × d`.
    pub fn points(&self) -> &[f64] {
        &self.xs
    }

    /// Brings `V` in step with `gp`: keeps the rows whose GP row is unchanged, recomputes the
    /// rest. Returns the number of rows computed.
    pub fn sync(&mut self, gp: &Gp) -> Result<usize> {
        if gp.dim() != self.d {
            return Err(Error::DimensionMismatch { what: "pool points", expected: gp.dim(), got: self.d });
        }
        let m = self.len();
        let keep = self.ids.iter().zip(&gp.row_ids).take_while(|(a, b)| a == b).count();
        self.ids.truncate(keep);
        self.v.truncate(keep * m);
        let n = gp.len();
        let l = gp.chol.L();
        if l.nrows() != n {
            // A refactorisation failed and left the GP without a factor.
            return Err(Error::invalid(
                "pool posterior",
                format!("a GP of {n} observations with a factor of {} rows", l.nrows()),
                "a GP whose last (re)factorisation succeeded",
            ));
        }
        let sf2 = gp.hyper.sf2();
        let d = self.d;
        // From scratch: the rows of the last full factorisation in one blocked triangular solve
        // (a reloaded study's GP has the same split, so it rebuilds the same bits), the appended
        // rows one at a time below.
        let bulk = if keep == 0 { gp.factored_rows } else { 0 };
        if bulk > 0 {
            let mut k = Mat::<f64>::zeros(bulk, m);
            for (j, xj) in self.xs.chunks(d).enumerate() {
                for i in 0..bulk {
                    k[(i, j)] = sf2 * gp.kind.eval_r2(r2(&gp.x[i * d..(i + 1) * d], xj, &gp.inv_ls2)).0;
                }
            }
            faer::linalg::triangular_solve::solve_lower_triangular_in_place(
                l.submatrix(0, 0, bulk, bulk),
                k.as_mut(),
                Par::Seq,
            );
            self.v.resize(bulk * m, 0.0);
            for i in 0..bulk {
                for j in 0..m {
                    self.v[i * m + j] = k[(i, j)];
                }
            }
            self.ids.extend_from_slice(&gp.row_ids[..bulk]);
        }
        let kept = keep;
        let keep = keep.max(bulk);
        for r in keep..n {
            let xr = &gp.x[r * d..(r + 1) * d];
            let mut row: Vec<f64> =
                self.xs.chunks(d).map(|xj| sf2 * gp.kind.eval_r2(r2(xr, xj, &gp.inv_ls2)).0).collect();
            for i in 0..r {
                let a = l[(r, i)];
                let vi = &self.v[i * m..(i + 1) * m];
                row.iter_mut().zip(vi).for_each(|(t, &b)| *t -= a * b);
            }
            let inv = 1.0 / l[(r, r)];
            row.iter_mut().for_each(|t| *t *= inv);
            self.v.extend_from_slice(&row);
            self.ids.push(gp.row_ids[r]);
        }
        Ok(n - kept)
    }

    /// Means and latent variances of the pool points under `gp` (standardised units, as
    /// [`Gp::predict_std_batch`]), after [`PoolPosterior::sync`].
    pub fn predict(&mut self, gp: &Gp) -> Result<(Vec<f64>, Vec<f64>)> {
        self.sync(gp)?;
        let m = self.len();
        let mut mean = vec![0.0; m];
        let mut ss = vec![0.0; m];
        for (i, &zi) in gp.z.iter().enumerate() {
            let vi = &self.v[i * m..(i + 1) * m];
            for ((mu, s), &b) in mean.iter_mut().zip(ss.iter_mut()).zip(vi) {
                *mu += zi * b;
                *s += b * b;
            }
        }
        let sf2 = gp.hyper.sf2();
        let var = ss.into_iter().map(|s| (sf2 - s).max(0.0)).collect();
        Ok((mean, var))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::central_difference;

    fn toy(n: usize, d: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = gradlab_core::rng::rng(seed);
        let x: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>()).collect();
        let y = (0..n)
            .map(|i| {
                let p = &x[i * d..(i + 1) * d];
                (3.0 * p[0]).sin() + p.iter().map(|v| v * v).sum::<f64>() + 0.01 * rng.random::<f64>()
            })
            .collect();
        (x, y)
    }

    fn gp(kind: KernelKind, n: usize, d: usize) -> Gp {
        let (x, y) = toy(n, d, 7);
        let mut h = Hyper::default_for(d);
        h.log_ls = (0..d).map(|m| (0.2 + 0.15 * m as f64).ln()).collect();
        h.log_sf2 = 0.3;
        h.log_sn2 = -5.0;
        let mut g = Gp::new(kind, d, h, JitterPolicy::default());
        g.set_data(x, y).unwrap();
        g
    }

    #[test]
    fn lml_gradient_matches_finite_differences() {
        for kind in [KernelKind::Matern52, KernelKind::Rbf] {
            let g = gp(kind, 25, 3);
            let theta = g.hyper().to_vec();
            let mut grad = vec![0.0; theta.len()];
            let f0 = g.neg_lml_grad(&theta, &mut grad);
            assert!((f0 + g.lml()).abs() < 1e-8 * f0.abs(), "{f0} vs {}", -g.lml());
            let mut scratch = grad.clone();
            for i in 0..theta.len() {
                let fd = central_difference(|t| g.neg_lml_grad(t, &mut scratch), &theta, i, 1e-5);
                assert!((fd - grad[i]).abs() < 1e-5 * grad[i].abs().max(1.0), "{kind:?} θ{i}: fd {fd} an {}", grad[i]);
            }
        }
    }

    #[test]
    fn log_posterior_gradient_matches_finite_differences() {
        let g = gp(KernelKind::Matern52, 20, 4);
        let prior = HyperPrior::default();
        let mut rng = gradlab_core::rng::rng(4);
        for _ in 0..3 {
            let theta: Vec<f64> = g.hyper().to_vec().iter().map(|t| t + 0.5 * (rng.random::<f64>() - 0.5)).collect();
            let mut grad = vec![0.0; theta.len()];
            let f = g.neg_log_posterior_grad(&theta, &prior, &mut grad);
            // The prior term alone, by the closed form: Σ (θ_i − μ_i)² / (2 s_i²).
            let mut lik = vec![0.0; theta.len()];
            let mu_ls = -1.0 + 0.5 * 4f64.ln();
            let by_hand = theta[..4].iter().map(|t| (t - mu_ls).powi(2) / 6.0).sum::<f64>()
                + theta[4].powi(2) / 8.0
                + (theta[5] + 4.0).powi(2) / 2.0;
            assert!((f - g.neg_lml_grad(&theta, &mut lik) - by_hand).abs() < 1e-9 * f.abs().max(1.0));
            let mut scratch = grad.clone();
            for i in 0..theta.len() {
                let fd = central_difference(|t| g.neg_log_posterior_grad(t, &prior, &mut scratch), &theta, i, 1e-5);
                assert!((fd - grad[i]).abs() < 1e-5 * grad[i].abs().max(1.0), "θ{i}: fd {fd} an {}", grad[i]);
            }
        }
        // A flat prior is the likelihood.
        let theta = g.hyper().to_vec();
        let (mut a, mut b) = (vec![0.0; 6], vec![0.0; 6]);
        assert_eq!(g.neg_log_posterior_grad(&theta, &HyperPrior::flat(), &mut a), g.neg_lml_grad(&theta, &mut b));
        assert_eq!(a, b);
        // Bad priors are refused with the field named.
        let bad = FitOptions {
            prior: HyperPrior { noise_variance: Some(LogNormal { loc: 0.0, scale: 0.0 }), ..HyperPrior::default() },
            ..FitOptions::default()
        };
        let mut g2 = g.clone();
        match g2.fit(&bad, 0) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "fit.prior.noise_variance"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn prediction_gradients_match_finite_differences() {
        let mut rng = gradlab_core::rng::rng(3);
        for kind in [KernelKind::Matern52, KernelKind::Rbf] {
            let g = gp(kind, 30, 4);
            for _ in 0..5 {
                let x: Vec<f64> = (0..4).map(|_| rng.random::<f64>()).collect();
                let p = g.predict_std_grad(&x);
                let (m0, v0) = g.predict_std(&x);
                assert!((p.mean - m0).abs() < 1e-12 && (p.var - v0).abs() < 1e-12);
                for m in 0..4 {
                    let fdm = central_difference(|x| g.predict_std(x).0, &x, m, 1e-6);
                    let fdv = central_difference(|x| g.predict_std(x).1, &x, m, 1e-6);
                    assert!(
                        (fdm - p.dmean[m]).abs() < 1e-6 * p.dmean[m].abs().max(1.0),
                        "{kind:?} dmean {fdm} {}",
                        p.dmean[m]
                    );
                    assert!(
                        (fdv - p.dvar[m]).abs() < 1e-6 * p.dvar[m].abs().max(1e-2),
                        "{kind:?} dvar {fdv} {}",
                        p.dvar[m]
                    );
                }
            }
        }
    }

    #[test]
    fn predictions_match_dense_formulae_and_batch() {
        let g = gp(KernelKind::Matern52, 20, 2);
        let n = g.len();
        let h = g.hyper().clone();
        let kind = g.kind();
        let inv = h.inv_ls2();
        let kmat = Mat::from_fn(n, n, |i, j| {
            h.sf2() * kind.eval_r2(r2(&g.x()[2 * i..2 * i + 2], &g.x()[2 * j..2 * j + 2], &inv)).0
                + if i == j { h.sn2() + g.cholesky().jitter() } else { 0.0 }
        });
        let (ym, ysd) = g.standardisation();
        use faer::linalg::solvers::DenseSolveCore;
        let kinv = kmat.llt(faer::Side::Lower).unwrap().inverse();
        let xs = [0.3, 0.4, 0.9, 0.1, 0.5, 0.5];
        let (bm, bv) = g.predict_std_batch(&xs);
        for (t, x) in xs.chunks(2).enumerate() {
            let k: Vec<f64> = (0..n).map(|i| h.sf2() * kind.eval_r2(r2(x, &g.x()[2 * i..2 * i + 2], &inv)).0).collect();
            let mut mean = 0.0;
            let mut q = 0.0;
            for i in 0..n {
                for j in 0..n {
                    mean += k[i] * kinv[(i, j)] * (g.y()[j] - ym) / ysd;
                    q += k[i] * kinv[(i, j)] * k[j];
                }
            }
            let (m, v) = g.predict_std(x);
            assert!((m - mean).abs() < 1e-9 && (v - (h.sf2() - q)).abs() < 1e-9);
            assert!((bm[t] - m).abs() < 1e-12 && (bv[t] - v).abs() < 1e-12);
        }
    }

    #[test]
    fn append_matches_refactor_and_lml() {
        let (x, y) = toy(60, 3, 11);
        let h = gp(KernelKind::Matern52, 5, 3).hyper().clone();
        // Build incrementally from 10 points.
        let mut inc = Gp::new(KernelKind::Matern52, 3, h.clone(), JitterPolicy::default());
        inc.restore(x[..30].to_vec(), y[..10].to_vec(), h.clone(), 0.5, 2.0).unwrap();
        let mut lml = inc.lml();
        for i in 10..60 {
            let before = inc.predict_std(&x[i * 3..i * 3 + 3]);
            let info = inc.append(&x[i * 3..i * 3 + 3], y[i]).unwrap();
            let sd = (before.1 + h.sn2() + inc.cholesky().jitter()).sqrt();
            assert!((info.std_residual - ((y[i] - 0.5) / 2.0 - before.0) / sd).abs() < 1e-8);
            lml += info.lml_increment;
        }
        let mut full = Gp::new(KernelKind::Matern52, 3, h.clone(), JitterPolicy::default());
        full.restore(x.clone(), y.clone(), h, 0.5, 2.0).unwrap();
        assert!((inc.lml() - full.lml()).abs() < 1e-9 * full.lml().abs());
        assert!((lml - full.lml()).abs() < 1e-9 * full.lml().abs());
        let p = [0.2, 0.7, 0.4];
        let (a, b) = (inc.predict_std(&p), full.predict_std(&p));
        assert!((a.0 - b.0).abs() < 1e-10 && (a.1 - b.1).abs() < 1e-10);
        // Truncate back is exact.
        inc.truncate(10);
        assert_eq!(inc.len(), 10);
    }

    #[test]
    fn fit_improves_likelihood_and_finds_smooth_scale() {
        let mut g = gp(KernelKind::Matern52, 40, 2);
        g.set_hyperparameters(Hyper { log_ls: vec![0.01f64.ln(); 2], log_sf2: 0.0, log_sn2: -2.0 }).unwrap();
        let before = g.lml();
        let rep = g.fit(&FitOptions::default(), 0).unwrap();
        assert!(rep.lml > before + 10.0, "{before} -> {}", rep.lml);
        // The toy function is smooth: fitted length scales are far above the start 0.01.
        assert!(g.hyper().log_ls.iter().all(|l| l.exp() > 0.1), "{:?}", g.hyper());
        // A local optimum check: the gradient is small or at a bound.
        let theta = g.hyper().to_vec();
        let mut grad = vec![0.0; theta.len()];
        g.neg_log_posterior_grad(&theta, &HyperPrior::default(), &mut grad);
        let (lo, hi) = FitOptions::default().bounds.log_box(2);
        for i in 0..theta.len() {
            let at_bound = (theta[i] - lo[i]).abs() < 1e-6 || (theta[i] - hi[i]).abs() < 1e-6;
            assert!(at_bound || grad[i].abs() < 1e-2, "θ{i} = {} grad {}", theta[i], grad[i]);
        }
    }

    #[test]
    fn pool_posterior_follows_appends_truncations_and_refits_like_a_fresh_solve() {
        let d = 3;
        let (x, y) = toy(40, d, 11);
        let mut g = gp(KernelKind::Matern52, 25, d);
        let mut rng = gradlab_core::rng::rng(5);
        let pts: Vec<f64> = (0..300 * d).map(|_| rng.random::<f64>()).collect();
        let mut pool = PoolPosterior::new(d, pts.clone()).unwrap();
        // Against the batched dense triangular solve (an independent route to the same numbers).
        let check = |pool: &mut PoolPosterior, g: &Gp| {
            let (m, v) = pool.predict(g).unwrap();
            let (m0, v0) = g.predict_std_batch(&pts);
            for j in 0..m.len() {
                assert!((m[j] - m0[j]).abs() < 1e-9 * m0[j].abs().max(1.0), "mean {j}: {} vs {}", m[j], m0[j]);
                assert!((v[j] - v0[j]).abs() < 1e-9 * g.hyper().sf2(), "var {j}: {} vs {}", v[j], v0[j]);
            }
        };
        check(&mut pool, &g);
        assert_eq!(pool.sync(&g).unwrap(), 0, "in step: nothing to compute");
        // One append computes one row.
        g.append(&x[25 * d..26 * d], y[25]).unwrap();
        assert_eq!(pool.sync(&g).unwrap(), 1);
        check(&mut pool, &g);
        // Fantasies: append two, truncate, append two others — the stale rows are recomputed.
        g.append(&x[26 * d..27 * d], y[26]).unwrap();
        g.append(&x[27 * d..28 * d], y[27]).unwrap();
        check(&mut pool, &g);
        g.truncate(26);
        g.append(&x[30 * d..31 * d], y[30]).unwrap();
        g.append(&x[31 * d..32 * d], y[31]).unwrap();
        assert_eq!(pool.sync(&g).unwrap(), 2);
        check(&mut pool, &g);
        // A pool built afresh on the same GP equals the kept one bit for bit (reload).
        let mut fresh = PoolPosterior::new(d, pts.clone()).unwrap();
        assert_eq!(fresh.predict(&g).unwrap(), pool.predict(&g).unwrap());
        // New hyperparameters refactorise: every row is recomputed.
        let mut h = g.hyper().clone();
        h.log_sf2 += 0.4;
        h.log_ls[0] -= 0.3;
        g.set_hyperparameters(h).unwrap();
        assert_eq!(pool.sync(&g).unwrap(), g.len());
        check(&mut pool, &g);
        // Bad input is refused by name.
        assert!(PoolPosterior::new(d, vec![0.0; 4]).is_err());
        assert!(PoolPosterior::new(2, vec![0.0; 4]).unwrap().sync(&g).is_err());
    }

    #[test]
    fn loo_log_predictive_matches_refitting_without_each_point_and_selects_the_better_fit() {
        let d = 2;
        let g = gp(KernelKind::Matern52, 18, d);
        // Brute force: drop point i, same hyperparameters and standardisation, predict it (with
        // the noise variance added).
        let (m, s) = g.standardisation();
        let sn2 = g.hyper().sn2();
        let mut brute = 0.0;
        for i in 0..g.len() {
            let keep: Vec<usize> = (0..g.len()).filter(|&j| j != i).collect();
            let x: Vec<f64> = keep.iter().flat_map(|&j| g.x()[j * d..(j + 1) * d].to_vec()).collect();
            let y: Vec<f64> = keep.iter().map(|&j| g.y()[j]).collect();
            let mut h = Gp::new(g.kind(), d, g.hyper().clone(), JitterPolicy::default());
            h.restore(x, y, g.hyper().clone(), m, s).unwrap();
            let (mu, var) = h.predict_std(&g.x()[i * d..(i + 1) * d]);
            let v = var + sn2;
            let r = g.standardise(g.y()[i]) - mu;
            brute += -0.5 * (LN_2PI + v.ln()) - 0.5 * r * r / v;
        }
        let loo = g.loo_log_predictive();
        assert!((loo - brute).abs() < 1e-7 * brute.abs().max(1.0), "{loo} vs {brute}");
        // The selection keeps whichever of the MAP and ML fits has the higher LOO density.
        let (x, y) = toy(30, 3, 4);
        let fit_with = |opts: &FitOptions| {
            let mut g = Gp::new(KernelKind::Matern52, 3, Hyper::default_for(3), JitterPolicy::default());
            g.set_data(x.clone(), y.clone()).unwrap();
            let rep = g.fit(opts, 7).unwrap();
            (g.loo_log_predictive(), g.hyper().clone(), rep)
        };
        let (loo_map, h_map, _) = fit_with(&FitOptions::default());
        let (loo_ml, h_ml, _) = fit_with(&FitOptions { prior: HyperPrior::flat(), ..Default::default() });
        let (loo_sel, h_sel, rep) = fit_with(&FitOptions { loo_select_flat: true, ..Default::default() });
        assert_ne!(h_map, h_ml, "the prior must change the fit for this test to mean anything");
        assert_eq!(rep.flat, loo_ml > loo_map);
        assert_eq!(h_sel, if rep.flat { h_ml } else { h_map });
        assert_eq!(loo_sel, loo_ml.max(loo_map));
    }

    #[test]
    fn raw_sample_restarts_are_the_best_draws_by_the_value_only_posterior() {
        let (x, y) = toy(30, 3, 5);
        let mut g = Gp::new(KernelKind::Matern52, 3, Hyper::default_for(3), JitterPolicy::default());
        g.set_data(x, y).unwrap();
        // the value-only negative log posterior is the value of the gradient version
        let (lo, hi) = HyperBounds::default().log_box(3);
        let mut r = gradlab_core::rng::rng(3);
        let mut grad = vec![0.0; 5];
        for prior in [HyperPrior::default(), HyperPrior::flat()] {
            for _ in 0..20 {
                let t: Vec<f64> = (0..5).map(|i| lo[i] + r.random::<f64>() * (hi[i] - lo[i])).collect();
                let (a, b) = (g.neg_log_posterior(&t, &prior), g.neg_log_posterior_grad(&t, &prior, &mut grad));
                assert!((a - b).abs() <= 1e-10 * b.abs().max(1.0), "{a} vs {b} at {t:?}");
            }
        }
        // the fit with raw samples = the fit started from the warm start and the `restarts` best
        // of the same uniform draws (brute force: every draw evaluated, sorted)
        let opts = FitOptions { restarts: 2, raw_samples: 16, ..Default::default() };
        let mut fitted = g.clone();
        fitted.fit(&opts, 11).unwrap();
        let mut reference = g.clone();
        reference.restandardise();
        let mut rng = gradlab_core::rng::rng(11);
        let draws: Vec<Vec<f64>> =
            (0..16).map(|_| (0..5).map(|i| lo[i] + rng.random::<f64>() * (hi[i] - lo[i])).collect()).collect();
        let mut scored: Vec<(f64, Vec<f64>)> =
            draws.into_iter().map(|t| (reference.neg_log_posterior(&t, &opts.prior), t)).collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(scored[0].0 < scored[15].0, "the draws must differ for the check to say anything");
        let mut starts = vec![reference.hyper().to_vec()];
        starts.extend(scored.into_iter().take(2).map(|s| s.1));
        let lopts = LbfgsOptions { max_iter: opts.max_iter, gtol: 1e-5, ftol: 1e-9, ..Default::default() };
        let (_, found) = reference.fit_from(&starts, &lo, &hi, lopts, &opts.prior, None);
        assert!(found);
        assert_eq!(fitted.hyper(), reference.hyper());
        // fewer raw samples than restarts is refused, naming the field
        let bad = FitOptions { restarts: 4, raw_samples: 2, ..Default::default() };
        let e = g.clone().fit(&bad, 1).unwrap_err().to_string();
        assert!(e.contains("fit.raw_samples") && e.contains("restarts"), "{e}");
    }

    #[test]
    fn screened_fit_continues_the_best_starts_after_k_iterations() {
        let (x, y) = toy(30, 3, 2);
        let mut g = Gp::new(KernelKind::Matern52, 3, Hyper::default_for(3), JitterPolicy::default());
        g.set_data(x, y).unwrap();
        g.restandardise();
        let (lo, hi) = HyperBounds::default().log_box(3);
        let mut r = gradlab_core::rng::rng(7);
        let mut starts = vec![g.hyper().to_vec()];
        starts
            .extend((0..6).map(|_| (0..5).map(|i| lo[i] + r.random::<f64>() * (hi[i] - lo[i])).collect::<Vec<f64>>()));
        let prior = HyperPrior::default();
        let lopts = LbfgsOptions { max_iter: 60, gtol: 1e-5, ftol: 1e-9, ..Default::default() };
        let objective = |t: &[f64], gr: &mut [f64]| g.neg_log_posterior_grad(t, &prior, gr);
        let full: Vec<LbfgsResult> = starts.iter().map(|s| minimize_box(objective, s, &lo, &hi, lopts)).collect();
        let k = 4;
        let at_k: Vec<f64> = starts
            .iter()
            .map(|s| minimize_box(objective, s, &lo, &hi, LbfgsOptions { max_iter: k, ..lopts }).f)
            .collect();
        let best_of = |idx: &[usize]| {
            let i = *idx.iter().min_by(|&&a, &&b| full[a].f.total_cmp(&full[b].f)).unwrap();
            full[i].x.clone()
        };
        let mut order: Vec<usize> = (0..starts.len()).collect();
        order.sort_by(|&a, &b| at_k[a].total_cmp(&at_k[b]));
        for keep in [1, 2, 3, 7, 9] {
            let mut h = g.clone();
            let (evals, found) = h.fit_from(&starts, &lo, &hi, lopts, &prior, Some((k, keep)));
            assert!(found);
            // brute force: the best full run among the `keep` best after k iterations
            assert_eq!(h.hyper().to_vec(), best_of(&order[..keep.min(starts.len())]), "keep {keep}");
            if keep < starts.len() {
                let all: usize = full.iter().map(|r| r.evaluations).sum();
                assert!(evals < all, "keep {keep}: {evals} evaluations, unscreened {all}");
            }
        }
        // every start kept: the unscreened fit, bit for bit
        let mut a = g.clone();
        let mut b = g.clone();
        let ea = a.fit_from(&starts, &lo, &hi, lopts, &prior, None);
        let eb = b.fit_from(&starts, &lo, &hi, lopts, &prior, Some((k, starts.len())));
        assert_eq!((a.hyper(), ea), (b.hyper(), eb));
        // for the test to mean anything, keeping one start must lose the unscreened winner
        let winner = (0..starts.len()).min_by(|&a, &b| full[a].f.total_cmp(&full[b].f)).unwrap();
        assert_ne!(order[0], winner, "after {k} iterations {order:?}; unscreened winner {winner}");
        assert_ne!(best_of(&order[..1]), a.hyper().to_vec());
        // invalid settings are refused, naming the field
        let e = FitOptions { screen_iter: 5, screen_keep: 0, ..Default::default() }.check().unwrap_err().to_string();
        assert!(e.contains("fit.screen_keep"), "{e}");
        let e = FitOptions { screen_iter: 60, ..Default::default() }.check().unwrap_err().to_string();
        assert!(e.contains("fit.screen_iter") && e.contains("max_iter"), "{e}");
    }
}
