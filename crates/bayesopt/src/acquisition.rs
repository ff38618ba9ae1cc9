//! Acquisition functions (for minimisation) with analytic gradients, and their
//! maximisation: quasi-random candidates (Latin hypercube plus perturbations of the best
//! observations; a study keeps the quasi-random pool between refits, its posterior updated in
//! `O(n·m)` per observation by [`PoolPosterior`]), then multi-start bounded L-BFGS from the best
//! candidates, parallel over starts (rayon); returns the `q` best distinct local maxima.
//!
//! All quantities are in the GP's standardised output units. With `u = (f* − μ − ξ)/σ`:
//! - EI `= σ h(u)`, `h(u) = u Φ(u) + φ(u)`;
//! - log-EI `= ln σ + ln h(u)`, with `ln h` evaluated without cancellation or underflow far
//!   in the tail (`u → −∞`, see [`log_h`]);
//! - UCB (a lower confidence bound for minimisation) `= −μ + κ σ`;
//! - PI `= Φ(u)`.

use crate::gp::{Gp, PoolPosterior};
use crate::lbfgs::{LbfgsOptions, minimize_box};
use gradlab_core::rng::{normal_vec, rng};
use gradlab_core::stats::{normal_cdf, normal_pdf};
use rand::Rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
const VAR_MIN: f64 = 1e-12;

/// `(ln h(u), d ln h/du)` with `h(u) = u Φ(u) + φ(u)`, accurate for all finite `u`.
///
/// For `u ≤ −1` it uses `h(u) = φ(u) (1 − t R(t))`, `t = −u`, with the Mills ratio
/// `R(t) = √(π/2) erfcx(t/√2)`; beyond `t = 20` both `R` and `1 − tR` come from their
/// asymptotic series (terms shrink by `(2k+1)/t²`, so 12 terms give full precision).
pub fn log_h(u: f64) -> (f64, f64) {
    if u > -1.0 {
        let cdf = normal_cdf(u);
        let h = u * cdf + normal_pdf(u);
        return (h.ln(), cdf / h);
    }
    let t = -u;
    let (r, one_minus_tr) = if t < 20.0 {
        let s = t / std::f64::consts::SQRT_2;
        let r = (std::f64::consts::PI / 2.0).sqrt() * (s * s).exp() * libm::erfc(s);
        (r, 1.0 - t * r)
    } else {
        // R(t) = 1/t Σ (−1)^k (2k−1)!!/t^{2k},  1 − tR = Σ_{k≥1} (−1)^{k+1} (2k−1)!!/t^{2k}
        let inv2 = 1.0 / (t * t);
        let mut term = 1.0;
        let mut r_sum = 1.0;
        let mut m_sum = 0.0;
        for k in 1..=12 {
            term *= -((2 * k - 1) as f64) * inv2;
            r_sum += term;
            m_sum -= term;
        }
        (r_sum / t, m_sum)
    };
    let log_h = -0.5 * t * t - LN_SQRT_2PI + one_minus_tr.ln();
    (log_h, r / one_minus_tr)
}

/// Acquisition function (maximised).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Acquisition {
    /// Expected improvement with exploration margin ξ.
    Ei {
        /// Margin ξ (standardised units).
        xi: f64,
    },
    /// Logarithm of expected improvement (same maximiser as EI, finite gradients far from
    /// the data).
    LogEi {
        /// Margin ξ (standardised units).
        xi: f64,
    },
    /// Lower confidence bound `μ − κσ`, maximised as `−μ + κσ`.
    Ucb {
        /// Exploration weight κ.
        kappa: f64,
    },
    /// Probability of improvement.
    Pi {
        /// Margin ξ (standardised units).
        xi: f64,
    },
    /// GP-Hedge (Hoffman, Brochu & de Freitas 2011; scikit-optimize's `gp_hedge`) over
    /// [`GP_HEDGE_MEMBERS`]: at each ask of a study every member proposes its maximiser and one
    /// is drawn with probability ∝ exp(η·gain); after the next observations each member's gain
    /// falls by the standardised posterior mean at its last proposal (scikit-optimize subtracts
    /// the mean in the objective's units, which makes η depend on the objective's scale).
    /// Evaluated directly (outside a study) it is EI with ξ = 0.01.
    GpHedge {
        /// Learning rate η of the softmax.
        eta: f64,
    },
}

/// The members of [`Acquisition::GpHedge`], as scikit-optimize's: EI and PI with ξ = 0.01,
/// the lower confidence bound with κ = 1.96.
pub const GP_HEDGE_MEMBERS: [Acquisition; 3] =
    [Acquisition::Ei { xi: 0.01 }, Acquisition::Pi { xi: 0.01 }, Acquisition::Ucb { kappa: 1.96 }];

impl Default for Acquisition {
    /// LogEI with ξ = 0.01, the single acquisition function; a [`crate::StudyConfig`] defaults
    /// to the portfolio [`STUDY_ACQUISITION`] instead.
    fn default() -> Self {
        Acquisition::LogEi { xi: 0.01 }
    }
}

/// The acquisition of a default [`crate::StudyConfig`]: GP-Hedge over EI, PI and LCB with
/// η = 0.1: screened against LogEI, LCB and η ∈ {0.03, 0.3} on tuning seeds 100–104, then chosen
/// over LogEI and η = 1 on seeds 100–119 of Branin, Hartmann-6, Levy-5 and Ackley-5
/// (docs/results/bayesopt.md, "Ablation on 20 tuning seeds").
pub const STUDY_ACQUISITION: Acquisition = Acquisition::GpHedge { eta: 0.1 };

impl Acquisition {
    pub(crate) fn check(&self) -> crate::Result<()> {
        let (field, v) = match *self {
            Acquisition::Ei { xi } | Acquisition::LogEi { xi } | Acquisition::Pi { xi } => ("acquisition.xi", xi),
            Acquisition::Ucb { kappa } => ("acquisition.kappa", kappa),
            Acquisition::GpHedge { eta } => ("acquisition.eta", eta),
        };
        if !(v.is_finite() && v >= 0.0) {
            return Err(crate::Error::invalid(field, v, "finite and >= 0"));
        }
        Ok(())
    }

    /// `(a, ∂a/∂μ, ∂a/∂σ)` at mean `mu`, standard deviation `sigma` and incumbent `best`.
    pub fn eval(&self, mu: f64, sigma: f64, best: f64) -> (f64, f64, f64) {
        match *self {
            Acquisition::GpHedge { .. } => GP_HEDGE_MEMBERS[0].eval(mu, sigma, best),
            Acquisition::Ei { xi } => {
                let u = (best - mu - xi) / sigma;
                let cdf = normal_cdf(u);
                let pdf = normal_pdf(u);
                (sigma * (u * cdf + pdf), -cdf, pdf)
            }
            Acquisition::LogEi { xi } => {
                let u = (best - mu - xi) / sigma;
                let (lh, r) = log_h(u);
                (sigma.ln() + lh, -r / sigma, (1.0 - u * r) / sigma)
            }
            Acquisition::Ucb { kappa } => (-mu + kappa * sigma, -1.0, kappa),
            Acquisition::Pi { xi } => {
                let u = (best - mu - xi) / sigma;
                let pdf = normal_pdf(u);
                (normal_cdf(u), -pdf / sigma, -u * pdf / sigma)
            }
        }
    }

    /// Value at `x` for a GP and incumbent `best` (standardised).
    pub fn value(&self, gp: &Gp, x: &[f64], best: f64) -> f64 {
        let (mu, var) = gp.predict_std(x);
        self.eval(mu, var.max(VAR_MIN).sqrt(), best).0
    }

    /// Value and gradient w.r.t. `x`.
    pub fn value_grad(&self, gp: &Gp, x: &[f64], best: f64, grad: &mut [f64]) -> f64 {
        let p = gp.predict_std_grad(x);
        let clamped = p.var < VAR_MIN;
        let sigma = p.var.max(VAR_MIN).sqrt();
        let (a, da_dmu, da_dsigma) = self.eval(p.mean, sigma, best);
        for m in 0..grad.len() {
            let dsigma = if clamped { 0.0 } else { p.dvar[m] / (2.0 * sigma) };
            grad[m] = da_dmu * p.dmean[m] + da_dsigma * dsigma;
        }
        a
    }

    /// Values at many points (`m × d` row-major).
    pub fn values(&self, gp: &Gp, xs: &[f64], best: f64) -> Vec<f64> {
        let (mu, var) = gp.predict_std_batch(xs);
        mu.iter().zip(&var).map(|(&m, &v)| self.eval(m, v.max(VAR_MIN).sqrt(), best).0).collect()
    }
}

/// Quasi-random design used for candidates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Latin hypercube.
    #[default]
    Lhs,
    /// Independent uniform.
    Random,
    /// Owen-scrambled Sobol points (`sobol_burley`; the scramble seed drawn from the stream):
    /// the first 2^k points put one point in each of the 2^k equal intervals of every
    /// coordinate. At most 2^16 points in at most 256 dimensions (the crate's limits; beyond
    /// them the points fall back to a Latin hypercube); f32 resolution (2^-24).
    Sobol,
}

/// The `sobol_burley` limits: points per sequence and dimensions.
const SOBOL_MAX_POINTS: usize = 1 << 16;
const SOBOL_MAX_DIMS: usize = 256;

/// `m` points in `[0, 1]^d` (row-major).
pub fn sample_unit<R: Rng + ?Sized>(sampler: Sampler, m: usize, d: usize, rng: &mut R) -> Vec<f64> {
    let mut out = vec![0.0; m * d];
    let sampler = match sampler {
        Sampler::Sobol if m > SOBOL_MAX_POINTS || d > SOBOL_MAX_DIMS => Sampler::Lhs,
        s => s,
    };
    match sampler {
        Sampler::Random => out.iter_mut().for_each(|v| *v = rng.random::<f64>()),
        Sampler::Sobol => {
            let seed = rng.random::<u32>();
            for i in 0..m {
                for j in 0..d {
                    out[i * d + j] = sobol_burley::sample(i as u32, j as u32, seed) as f64;
                }
            }
        }
        Sampler::Lhs => {
            let mut perm: Vec<usize> = (0..m).collect();
            for j in 0..d {
                perm.shuffle(rng);
                for i in 0..m {
                    out[i * d + j] = (perm[i] as f64 + rng.random::<f64>()) / m as f64;
                }
            }
        }
    }
    out
}

/// Options of the acquisition maximiser.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaximizeOptions {
    /// Number of quasi-random candidates.
    pub candidates: usize,
    /// Fraction of extra candidates drawn around the best observations (Gaussian, σ = 0.05).
    pub local_fraction: f64,
    /// Number of local optimisation starts (best candidates); a q-batch uses at least q.
    pub starts: usize,
    /// Local optimisation starts for the GP-Hedge members not drawn at an ask: their proposals
    /// only score them at the next ask ([`Acquisition::GpHedge`]). `None` (`null`): `starts`, like
    /// the drawn member; 0 is refused. Default 1: level regret with 25–30 % less overhead
    /// than `None` on tuning seeds 100–119 (docs/results/bayesopt.md).
    pub hedge_nominee_starts: Option<usize>,
    /// L-BFGS iterations per start.
    pub max_iter: usize,
    /// Candidate design.
    pub sampler: Sampler,
    /// Two points closer than this (max-norm, unit cube) are the same maximum.
    pub distinct_tol: f64,
    /// In a study, keep the quasi-random candidates from one hyperparameter refit to the next,
    /// their posterior updated in `O(n·m)` per observation ([`PoolPosterior`]) instead of
    /// solved afresh in `O(n²·m)` at every ask; `false` draws them afresh at every ask. The
    /// local candidates around the best observations are drawn afresh either way.
    pub keep_pool: bool,
}

impl Default for MaximizeOptions {
    fn default() -> Self {
        MaximizeOptions {
            candidates: 2000,
            local_fraction: 0.1,
            starts: 10,
            hedge_nominee_starts: Some(1),
            max_iter: 50,
            sampler: Sampler::Lhs,
            distinct_tol: 1e-3,
            keep_pool: true,
        }
    }
}

impl MaximizeOptions {
    pub(crate) fn check(&self) -> crate::Result<()> {
        if self.candidates == 0 && self.starts == 0 {
            return Err(crate::Error::invalid("maximize.candidates", "0", "candidates + starts > 0"));
        }
        if !(0.0..=10.0).contains(&self.local_fraction) {
            return Err(crate::Error::invalid("maximize.local_fraction", self.local_fraction, "in [0, 10]"));
        }
        if self.hedge_nominee_starts == Some(0) {
            return Err(crate::Error::invalid("maximize.hedge_nominee_starts", 0, "≥ 1, or null for maximize.starts"));
        }
        Ok(())
    }
}

/// A proposal from the maximiser.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// Unit-cube point (snapped).
    pub x: Vec<f64>,
    /// Acquisition value there.
    pub value: f64,
}

fn far_from(x: &[f64], others: &[f64], d: usize, tol: f64) -> bool {
    others.chunks(d).all(|o| o.iter().zip(x).any(|(a, b)| (a - b).abs() > tol))
}

/// Candidate points of one maximisation with their posterior: standardised means and latent
/// variances.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Candidates {
    /// Unit-cube points, row-major `m × d`.
    pub x: Vec<f64>,
    /// Posterior means (standardised).
    pub mean: Vec<f64>,
    /// Latent posterior variances (standardised).
    pub var: Vec<f64>,
    /// Rows of the kept pool's `L⁻¹K(X, X*)` computed for this draw (0 without a pool).
    pub pool_rows: usize,
}

impl Candidates {
    /// The candidates of one maximisation: the quasi-random pool (the kept `pool`, whose
    /// posterior follows the GP in `O(n·m)` per appended observation, or else
    /// `opts.candidates` fresh points from `rng`), then `opts.local_fraction` of that many
    /// points around the five best observations (Gaussian, σ = 0.05, clamped to the cube, from
    /// `rng`), all scored under `gp`.
    pub fn draw<R: Rng + ?Sized>(
        gp: &Gp,
        opts: &MaximizeOptions,
        pool: Option<&mut PoolPosterior>,
        rng: &mut R,
    ) -> crate::Result<Candidates> {
        let d = gp.dim();
        let mut pool_rows = 0;
        let (mut x, mut mean, mut var) = match pool {
            Some(p) => {
                pool_rows = p.sync(gp)?;
                let (m, v) = p.predict(gp)?;
                (p.points().to_vec(), m, v)
            }
            None => {
                let x = sample_unit(opts.sampler, opts.candidates, d, rng);
                let (m, v) = gp.predict_std_batch(&x);
                (x, m, v)
            }
        };
        let n_local = (opts.candidates as f64 * opts.local_fraction).round() as usize;
        if n_local > 0 && !gp.is_empty() {
            let mut order: Vec<usize> = (0..gp.len()).collect();
            order.sort_by(|&a, &b| gp.y()[a].total_cmp(&gp.y()[b]));
            let top = &order[..order.len().min(5)];
            let mut local = Vec::with_capacity(n_local * d);
            for k in 0..n_local {
                let i = top[k % top.len()];
                let z = normal_vec(rng, d, 0.0, 0.05);
                for m in 0..d {
                    local.push((gp.x()[i * d + m] + z[m]).clamp(0.0, 1.0));
                }
            }
            let (m, v) = gp.predict_std_batch(&local);
            x.extend(local);
            mean.extend(m);
            var.extend(v);
        }
        Ok(Candidates { x, mean, var, pool_rows })
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.mean.len()
    }

    /// True without candidates.
    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }
}

/// Maximises `acq` over `[0, 1]^d` and returns up to `q` distinct maxima, best first,
/// none within `distinct_tol` of a row of `exclude` (e.g. observed and pending points).
/// `snap` maps a point to the representative the objective sees (identity for continuous
/// spaces); distinctness is judged after snapping. Candidates are drawn afresh from `seed`
/// ([`Candidates::draw`] without a pool), then [`maximize_over`].
#[allow(clippy::too_many_arguments)]
pub fn maximize(
    acq: &Acquisition,
    gp: &Gp,
    best: f64,
    opts: &MaximizeOptions,
    q: usize,
    exclude: &[f64],
    snap: &(dyn Fn(&[f64]) -> Vec<f64> + Sync),
    seed: u64,
) -> Vec<Proposal> {
    let mut rng = rng(seed);
    let cand = Candidates::draw(gp, opts, None, &mut rng).expect("a pool-less draw cannot fail");
    maximize_over(acq, gp, best, opts, q, exclude, snap, &cand, &mut rng)
}

/// The indices of the `needed` highest finite values, highest first, ties by index: the prefix
/// of the full sort, found by selection and a sort of the selected only.
fn best_first(vals: &[f64], needed: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..vals.len()).filter(|&i| vals[i].is_finite()).collect();
    let order = |a: &usize, b: &usize| vals[*b].total_cmp(&vals[*a]).then(a.cmp(b));
    if needed == 0 {
        return Vec::new();
    }
    if idx.len() > needed {
        idx.select_nth_unstable_by(needed - 1, order);
        idx.truncate(needed);
    }
    idx.sort_by(order);
    idx
}

/// [`maximize`] from given candidates (several acquisition functions can share one set, as
/// GP-Hedge's members do): the best `max(opts.starts, q)` candidates start L-BFGS-B, the local
/// maxima and then the candidates themselves are taken best first while distinct; `rng`
/// draws random points only when still short (tiny discrete spaces).
#[allow(clippy::too_many_arguments)]
pub fn maximize_over<R: Rng + ?Sized>(
    acq: &Acquisition,
    gp: &Gp,
    best: f64,
    opts: &MaximizeOptions,
    q: usize,
    exclude: &[f64],
    snap: &(dyn Fn(&[f64]) -> Vec<f64> + Sync),
    cand: &Candidates,
    rng: &mut R,
) -> Vec<Proposal> {
    let d = gp.dim();
    let vals: Vec<f64> =
        cand.mean.iter().zip(&cand.var).map(|(&mu, &v)| acq.eval(mu, v.max(VAR_MIN).sqrt(), best).0).collect();
    let x = &cand.x;
    // Only the best few are ever read: the starts, then the fallback below, which stops after
    // `opts.starts + 4q + 65` proposals.
    let idx = best_first(&vals, opts.starts.max(q) + opts.starts + 4 * q + 65);
    let starts: Vec<Vec<f64>> = idx.iter().take(opts.starts.max(q)).map(|&i| x[i * d..(i + 1) * d].to_vec()).collect();
    let lo = vec![0.0; d];
    let hi = vec![1.0; d];
    let lopts = LbfgsOptions { max_iter: opts.max_iter, gtol: 1e-7, ftol: 1e-12, ..Default::default() };
    let mut local: Vec<Proposal> = starts
        .par_iter()
        .map(|s| {
            let r = minimize_box(
                |x, g| {
                    let v = acq.value_grad(gp, x, best, g);
                    g.iter_mut().for_each(|t| *t = -*t);
                    -v
                },
                s,
                &lo,
                &hi,
                lopts,
            );
            Proposal { x: r.x, value: -r.f }
        })
        .collect();
    let n_local_max = local.len();
    // Fall back to the candidates themselves after the local maxima.
    for &i in idx.iter() {
        local.push(Proposal { x: x[i * d..(i + 1) * d].to_vec(), value: vals[i] });
        if local.len() > opts.starts + 4 * q + 64 {
            break;
        }
    }
    local[..n_local_max].sort_by(|a, b| b.value.total_cmp(&a.value));
    let mut out: Vec<Proposal> = Vec::with_capacity(q);
    let mut taken: Vec<f64> = Vec::new();
    for p in local {
        if out.len() == q {
            break;
        }
        let xs = snap(&p.x);
        if !p.value.is_finite() && !out.is_empty() {
            continue;
        }
        if far_from(&xs, exclude, d, opts.distinct_tol) && far_from(&xs, &taken, d, opts.distinct_tol) {
            let value = if xs == p.x { p.value } else { acq.value(gp, &xs, best) };
            taken.extend_from_slice(&xs);
            out.push(Proposal { x: xs, value });
        }
    }
    // Still short (tiny discrete spaces): random distinct points, then anything.
    let mut tries = 0;
    while out.len() < q && tries < 1000 {
        tries += 1;
        let x: Vec<f64> = (0..d).map(|_| rng.random::<f64>()).collect();
        let xs = snap(&x);
        if (far_from(&xs, exclude, d, opts.distinct_tol) && far_from(&xs, &taken, d, opts.distinct_tol)) || tries > 900
        {
            let value = acq.value(gp, &xs, best);
            taken.extend_from_slice(&xs);
            out.push(Proposal { x: xs, value });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chol::JitterPolicy;
    use crate::kernel::{Hyper, KernelKind};
    use crate::testutil::central_difference;

    /// Reference: ln h(u) = −u²/2 − ln√(2π) + ln ∫_0^∞ w e^{uw − w²/2} dw, by composite
    /// Simpson quadrature (independent of erfc and of the series).
    fn log_h_quadrature(u: f64) -> f64 {
        let upper = (60.0 / u.abs().max(1.0)).min(12.0);
        let n = 200_000;
        let h = upper / n as f64;
        let f = |w: f64| w * (u * w - 0.5 * w * w).exp();
        let mut s = f(0.0) + f(upper);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        -0.5 * u * u - LN_SQRT_2PI + (s * h / 3.0).ln()
    }

    #[test]
    fn log_h_matches_quadrature_into_the_far_tail() {
        for &u in &[2.0f64, 0.5, -0.5, -1.0, -1.5, -3.0, -7.0, -15.0, -19.99, -20.01, -35.0, -150.0, -2000.0] {
            let (lh, _) = log_h(u);
            let reference = log_h_quadrature(u);
            assert!((lh - reference).abs() < 1e-9 * reference.abs().max(1.0), "u {u}: {lh} vs {reference}");
            assert!(lh.is_finite());
        }
        // Continuity across the branch points.
        for &b in &[-1.0, -20.0] {
            let a = log_h(b - 1e-9).0;
            let c = log_h(b + 1e-9).0;
            assert!((a - c).abs() < 1e-7 * a.abs().max(1.0), "branch {b}: {a} {c}");
        }
        // Plain EI underflows to 0 where log-EI is still finite and ordered.
        let ei = Acquisition::Ei { xi: 0.0 }.eval(0.0, 1.0, -40.0).0;
        assert_eq!(ei, 0.0);
        assert!(log_h(-40.0).0 < log_h(-39.0).0);
    }

    #[test]
    fn log_h_derivative_matches_finite_differences() {
        for &u in &[1.0f64, -0.9, -2.0, -10.0, -19.0, -25.0, -300.0] {
            let h = 1e-6 * u.abs().max(1.0);
            let fd = (log_h(u + h).0 - log_h(u - h).0) / (2.0 * h);
            let an = log_h(u).1;
            assert!((fd - an).abs() < 1e-6 * an.abs().max(1.0), "u {u}: fd {fd} an {an}");
        }
    }

    fn toy_gp() -> Gp {
        let mut rng = gradlab_core::rng::rng(5);
        let d = 3;
        let n = 25;
        let x: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>()).collect();
        let y: Vec<f64> = (0..n).map(|i| (5.0 * x[i * d]).sin() + x[i * d + 1] - x[i * d + 2] * x[i * d + 2]).collect();
        let mut g = Gp::new(
            KernelKind::Matern52,
            d,
            Hyper { log_ls: vec![-1.2, -1.0, -0.8], log_sf2: 0.0, log_sn2: -9.0 },
            JitterPolicy::default(),
        );
        g.set_data(x, y).unwrap();
        g.prepare();
        g
    }

    #[test]
    fn acquisition_gradients_match_finite_differences() {
        let g = toy_gp();
        let best = g.y().iter().map(|&y| g.standardise(y)).fold(f64::INFINITY, f64::min);
        let mut rng = gradlab_core::rng::rng(9);
        for acq in [
            Acquisition::Ei { xi: 0.01 },
            Acquisition::LogEi { xi: 0.01 },
            Acquisition::Ucb { kappa: 1.96 },
            Acquisition::Pi { xi: 0.01 },
        ] {
            for _ in 0..6 {
                let x: Vec<f64> = (0..3).map(|_| 0.05 + 0.9 * rng.random::<f64>()).collect();
                let mut grad = vec![0.0; 3];
                let v = acq.value_grad(&g, &x, best, &mut grad);
                assert!((v - acq.value(&g, &x, best)).abs() < 1e-12 * v.abs().max(1.0));
                for m in 0..3 {
                    let fd = central_difference(|x| acq.value(&g, x, best), &x, m, 1e-6);
                    assert!(
                        (fd - grad[m]).abs() < 1e-5 * grad[m].abs().max(1e-3),
                        "{acq:?} m {m}: fd {fd} an {}",
                        grad[m]
                    );
                }
            }
        }
    }

    #[test]
    fn maximizer_beats_dense_random_search_and_returns_distinct_points() {
        let g = toy_gp();
        let best = g.y().iter().map(|&y| g.standardise(y)).fold(f64::INFINITY, f64::min);
        let acq = Acquisition::LogEi { xi: 0.01 };
        let ident = |x: &[f64]| x.to_vec();
        let props = maximize(&acq, &g, best, &MaximizeOptions::default(), 5, g.x(), &ident, 1);
        assert_eq!(props.len(), 5);
        // Brute force reference: 200k random points.
        let mut rng = gradlab_core::rng::rng(2);
        let xs = sample_unit(Sampler::Random, 200_000, 3, &mut rng);
        let brute = acq.values(&g, &xs, best).into_iter().fold(f64::NEG_INFINITY, f64::max);
        assert!(props[0].value >= brute - 1e-9, "maximiser {} < brute force {}", props[0].value, brute);
        for i in 0..5 {
            assert!(props[i].x.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(props[i].value <= props[0].value + 1e-12);
            for j in 0..i {
                assert!(props[i].x.iter().zip(&props[j].x).any(|(a, b)| (a - b).abs() > 1e-3));
            }
        }
    }

    #[test]
    fn best_first_is_the_prefix_of_the_full_sort() {
        let mut rng = gradlab_core::rng::rng(3);
        for m in [0, 1, 5, 50, 400] {
            // few distinct values (ties) and some non-finite ones
            let vals: Vec<f64> = (0..m)
                .map(|i| match i % 17 {
                    3 => f64::NAN,
                    7 => f64::NEG_INFINITY,
                    _ => (rng.random::<f64>() * 8.0).floor(),
                })
                .collect();
            let mut full: Vec<usize> = (0..m).filter(|&i| vals[i].is_finite()).collect();
            full.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]).then(a.cmp(&b)));
            for needed in [0, 1, 3, 10, 399, 1000] {
                assert_eq!(best_first(&vals, needed), full[..needed.min(full.len())].to_vec(), "m {m} needed {needed}");
            }
        }
    }

    #[test]
    fn lhs_is_stratified() {
        let mut rng = gradlab_core::rng::rng(0);
        let m = 50;
        let xs = sample_unit(Sampler::Lhs, m, 4, &mut rng);
        for j in 0..4 {
            let mut bins = vec![0; m];
            for i in 0..m {
                bins[(xs[i * 4 + j] * m as f64) as usize] += 1;
            }
            assert!(bins.iter().all(|&b| b == 1));
        }
    }

    #[test]
    fn sobol_points_form_nets_and_depend_on_the_stream() {
        // (0, m, 1)-net property of every coordinate: the first 2^k points put one point in each
        // of the 2^k equal intervals; and pairs of coordinates 0/1 form a (0, 2k, 2)-net in the
        // first two dimensions of a Sobol sequence: 4^k points, one in each 2^-k × 2^-k square.
        let d = 6;
        let mut rng = gradlab_core::rng::rng(3);
        let xs = sample_unit(Sampler::Sobol, 256, d, &mut rng);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        for k in [3usize, 5, 8] {
            let m = 1 << k;
            for j in 0..d {
                let mut bins = vec![0; m];
                for i in 0..m {
                    bins[(xs[i * d + j] * m as f64) as usize] += 1;
                }
                assert!(bins.iter().all(|&b| b == 1), "k = {k}, coordinate {j}: {bins:?}");
            }
        }
        let mut squares = [[0; 16]; 16];
        for i in 0..256 {
            squares[(xs[i * d] * 16.0) as usize][(xs[i * d + 1] * 16.0) as usize] += 1;
        }
        assert!(squares.iter().flatten().all(|&c| c == 1), "{squares:?}");
        // Another stream, another scramble.
        let ys = sample_unit(Sampler::Sobol, 256, d, &mut gradlab_core::rng::rng(4));
        assert_ne!(xs, ys);
        // Beyond the crate's limits: a Latin hypercube instead of a panic.
        let zs = sample_unit(Sampler::Sobol, 4, 300, &mut rng);
        assert_eq!(zs.len(), 1200);
        assert!(zs.iter().all(|x| (0.0..1.0).contains(x)));
    }
}
