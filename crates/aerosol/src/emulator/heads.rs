//! Output heads in physical units: plain, **completion** (mass conservation by construction),
//! **correction** (positivity), the soft penalties, and the sign + log-magnitude encoding.
//!
//! All heads act on the emulator's physical output `[N, 28]` (24 tendencies Δ = state after −
//! state before, then 4 water contents) together with the physical input `[N, 32]` (8 environment
//! columns, then the 24 states before the step), in the reference column order of
//! [`crate::layout`]. They are differentiable tensor operations, so they can be active in training
//! (inside the loss) and in inference.
//!
//! * **Completion** (Harder et al. 2022): per species one tendency is replaced by the budget minus
//!   the sum of the others — SO4 CS gets `P·Δt − ΔH2SO4 − ΔSO4(NS, KS, AS)`, BC CS, OC CS and DU AS
//!   get minus the sum of their other modes — so `Σ Δ = P·Δt` for sulfur and `0` for BC, OC and
//!   dust hold up to float round-off. Implemented as `Δ·A + (P·Δt)·e_c` with a fixed 28×28 matrix.
//!   Those are the paper's closing columns ([`Closing::Paper`]); [`Closing::MaxVariance`] closes
//!   each species on its tendency with the largest training variance instead (on our data the
//!   paper's columns are near-always zero, so completion puts every error where there is no
//!   signal; see docs/results/aerosol.md).
//! * **Correction**: the next state is `ReLU(x + Δ)`, i.e. `Δ ← ReLU(x + Δ) − x`; water `← ReLU(w)`.
//! * **Penalties**: the squared mass-budget violation per species and the squared negative part of
//!   `x + Δ` (and of the water), each divided by the natural scale of the training tendencies so the
//!   weights are dimensionless.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};

/// Environment columns of X.
pub const N_ENV: usize = 8;
/// State columns (in X after the environment, and the tendencies in y).
pub const N_STATE: usize = 24;
/// Water columns of y.
pub const N_WATER: usize = 4;
/// Columns of X.
pub const N_X: usize = N_ENV + N_STATE;
/// Columns of the emulator output (24 tendencies + 4 water).
pub const N_Y: usize = N_STATE + N_WATER;
/// X column of the H2SO4 production rate.
pub const PRODUCTION_COLUMN: usize = 3;

/// One conserved species: its state columns, the column that completion computes, and whether
/// its budget is `P·Δt` (sulfur) rather than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConservedSpecies {
    /// Short name.
    pub name: &'static str,
    /// State (tendency) columns of the species.
    pub columns: &'static [usize],
    /// The column set by completion.
    pub completed: usize,
    /// Whether the budget is the H2SO4 production times the time step.
    pub production: bool,
}

/// The four conserved species of the 24-state layout. Harder et al. (2022) complete SO4 CS,
/// BC CS, OC CS and DU AS from the other columns of their species.
pub const CONSERVED_SPECIES: [ConservedSpecies; 4] = [
    ConservedSpecies { name: "sulfur", columns: &[0, 1, 2, 3, 4], completed: 4, production: true },
    ConservedSpecies { name: "bc", columns: &[5, 6, 7, 8], completed: 7, production: false },
    ConservedSpecies { name: "oc", columns: &[9, 10, 11, 12], completed: 11, production: false },
    ConservedSpecies { name: "du", columns: &[13, 14, 15, 16], completed: 13, production: false },
];

/// Which constraint layer sits on the network's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// No constraint.
    #[default]
    Plain,
    /// Mass conservation by construction.
    Completion,
    /// Positivity of the next state and of the water.
    Correction,
}

/// Weights of the soft constraints added to the loss (0 = off).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Penalties {
    /// Weight of the mean squared (scaled) mass-budget violation, summed over species.
    pub mass: f64,
    /// Weight of the mean squared (scaled) negative part of the next state and water.
    pub positivity: f64,
}

impl Penalties {
    /// Whether any penalty is on.
    pub fn any(&self) -> bool {
        self.mass > 0.0 || self.positivity > 0.0
    }
}

/// Which tendency of each species completion computes from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closing {
    /// The paper's choice: SO4 CS, BC CS, OC CS, DU AS ([`ConservedSpecies::completed`]).
    #[default]
    Paper,
    /// Per species the column with the largest variance of the training tendencies, so the
    /// summed errors of the other columns land where they are smallest relative to the signal.
    MaxVariance,
}

/// The paper's closing columns, one per species of [`CONSERVED_SPECIES`].
pub const PAPER_CLOSING: [usize; 4] = [
    CONSERVED_SPECIES[0].completed,
    CONSERVED_SPECIES[1].completed,
    CONSERVED_SPECIES[2].completed,
    CONSERVED_SPECIES[3].completed,
];

/// The closing column per species for `kind`; `t` are the physical training targets `[N, 28]`
/// (used by [`Closing::MaxVariance`]).
pub fn closing_columns(kind: Closing, t: &ndarray::ArrayView2<f32>) -> [usize; 4] {
    match kind {
        Closing::Paper => PAPER_CLOSING,
        Closing::MaxVariance => {
            let var = |j: usize| {
                let c = t.column(j);
                let n = c.len().max(1) as f64;
                let m = c.iter().map(|&v| v as f64).sum::<f64>() / n;
                c.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n
            };
            let mut out = PAPER_CLOSING;
            for (k, s) in CONSERVED_SPECIES.iter().enumerate() {
                let mut best = (s.completed, var(s.completed));
                for &j in s.columns {
                    let v = var(j);
                    if v > best.1 {
                        best = (j, v);
                    }
                }
                out[k] = best.0;
            }
            out
        }
    }
}

/// Checks that `closing[k]` is a column of species `k`.
pub fn check_closing(closing: &[usize; 4]) -> Result<()> {
    for (k, s) in CONSERVED_SPECIES.iter().enumerate() {
        if !s.columns.contains(&closing[k]) {
            return Err(crate::Error::invalid(
                "closing",
                format!("{closing:?}"),
                format!("for {} one of the columns {:?}", s.name, s.columns),
            ));
        }
    }
    Ok(())
}

/// The completion matrix `A` (28×28) for the closing columns `closing` (one per species):
/// identity, except that each closing column holds −1 in the rows of its species' other columns
/// and 0 on its own row.
pub fn completion_matrix(closing: &[usize; 4]) -> Vec<f32> {
    let mut a = vec![0f32; N_Y * N_Y];
    for i in 0..N_Y {
        a[i * N_Y + i] = 1.0;
    }
    for (k, s) in CONSERVED_SPECIES.iter().enumerate() {
        let c = closing[k];
        a[c * N_Y + c] = 0.0;
        for &j in s.columns {
            if j != c {
                a[j * N_Y + c] = -1.0;
            }
        }
    }
    a
}

/// Completion: `out = phys·A + (P·Δt)·e_c` for the sulfur closing column `c`. `phys` is
/// `[N, 28]`, `x` the physical input `[N, 32]`, `closing` from [`closing_columns`].
pub fn complete(phys: &Tensor, x: &Tensor, dt: f64, closing: &[usize; 4]) -> Result<Tensor> {
    let dev = phys.device();
    let a = Tensor::from_vec(completion_matrix(closing), (N_Y, N_Y), dev)?.to_dtype(phys.dtype())?;
    let mut e = vec![0f32; N_Y];
    e[closing[0]] = 1.0;
    let e = Tensor::from_vec(e, (1, N_Y), dev)?.to_dtype(phys.dtype())?;
    let p = x.narrow(1, PRODUCTION_COLUMN, 1)?.affine(dt, 0.0)?;
    Ok(phys.matmul(&a)?.add(&p.broadcast_mul(&e)?)?)
}

/// Correction: `Δ ← ReLU(x + Δ) − x` on the 24 tendencies, `w ← ReLU(w)` on the water.
pub fn correct(phys: &Tensor, x: &Tensor) -> Result<Tensor> {
    let state = x.narrow(1, N_ENV, N_STATE)?;
    let d = phys.narrow(1, 0, N_STATE)?;
    let d = state.add(&d)?.relu()?.sub(&state)?;
    let w = phys.narrow(1, N_STATE, N_WATER)?.relu()?;
    Ok(Tensor::cat(&[&d, &w], 1)?)
}

/// Applies `head` to the physical output.
pub fn apply(head: HeadKind, phys: &Tensor, x: &Tensor, dt: f64, closing: &[usize; 4]) -> Result<Tensor> {
    match head {
        HeadKind::Plain => Ok(phys.clone()),
        HeadKind::Completion => complete(phys, x, dt, closing),
        HeadKind::Correction => correct(phys, x),
    }
}

/// Per-species mass-budget violation `Σ_species Δ − budget`, `[N, 4]`.
pub fn mass_violation(phys: &Tensor, x: &Tensor, dt: f64) -> Result<Tensor> {
    let dev = phys.device();
    let mut m = vec![0f32; N_Y * CONSERVED_SPECIES.len()];
    for (k, s) in CONSERVED_SPECIES.iter().enumerate() {
        for &j in s.columns {
            m[j * CONSERVED_SPECIES.len() + k] = 1.0;
        }
    }
    let m = Tensor::from_vec(m, (N_Y, CONSERVED_SPECIES.len()), dev)?.to_dtype(phys.dtype())?;
    let mut e = vec![0f32; CONSERVED_SPECIES.len()];
    e[0] = 1.0;
    let e = Tensor::from_vec(e, (1, CONSERVED_SPECIES.len()), dev)?.to_dtype(phys.dtype())?;
    let budget = x.narrow(1, PRODUCTION_COLUMN, 1)?.affine(dt, 0.0)?.broadcast_mul(&e)?;
    Ok(phys.matmul(&m)?.sub(&budget)?)
}

/// Scales that make the penalties dimensionless, from the training targets' standard
/// deviations `std[j]` (28 columns): per species `√Σ_j std_j²`, per column `std_j`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PenaltyScales {
    /// Per species (4).
    pub species: Vec<f64>,
    /// Per output column (28).
    pub columns: Vec<f64>,
}

impl PenaltyScales {
    /// From the per-column standard deviations of the physical training targets.
    pub fn from_std(std: &[f64]) -> Self {
        let columns: Vec<f64> = std.iter().map(|&s| if s > 0.0 && s.is_finite() { s } else { 1.0 }).collect();
        let species = CONSERVED_SPECIES
            .iter()
            .map(|s| s.columns.iter().map(|&j| columns[j].powi(2)).sum::<f64>().sqrt())
            .collect();
        PenaltyScales { species, columns }
    }
}

fn row(v: &[f64], dev: &Device, dt: DType) -> Result<Tensor> {
    Ok(Tensor::from_slice(v, (1, v.len()), dev)?.to_dtype(dt)?)
}

/// The soft-constraint loss `λ_mass·Σ_s mean((v_s/σ_s)²) + λ_pos·mean over all 28 columns of
/// (ReLU(−next_j)/σ_j)²`, where next is `x + Δ` for the states and the water itself.
pub fn penalty(p: &Penalties, s: &PenaltyScales, phys: &Tensor, x: &Tensor, dt: f64) -> Result<Option<Tensor>> {
    if !p.any() {
        return Ok(None);
    }
    let (dev, dty) = (phys.device(), phys.dtype());
    let mut total: Option<Tensor> = None;
    let mut add = |t: Tensor| -> Result<()> {
        total = Some(match total.take() {
            None => t,
            Some(a) => a.add(&t)?,
        });
        Ok(())
    };
    if p.mass > 0.0 {
        let v = mass_violation(phys, x, dt)?.broadcast_div(&row(&s.species, dev, dty)?)?;
        let l = v.sqr()?.mean(0)?.sum_all()?.affine(p.mass, 0.0)?;
        add(l)?;
    }
    if p.positivity > 0.0 {
        let state = x.narrow(1, N_ENV, N_STATE)?;
        let next = state.add(&phys.narrow(1, 0, N_STATE)?)?;
        let all = Tensor::cat(&[&next, &phys.narrow(1, N_STATE, N_WATER)?], 1)?;
        let neg = all.neg()?.relu()?.broadcast_div(&row(&s.columns, dev, dty)?)?;
        add(neg.sqr()?.mean_all()?.affine(p.positivity, 0.0)?)?;
    }
    Ok(total)
}

/// The sign + log-magnitude encoding of the targets: `m_j = ln(|v_j| + ε_j)` (then z-scored by a
/// core normaliser), with `ε_j = eps_rel · mean|v_j|` on the training data; the sign of columns
/// whose training values never change sign is fixed, the others get a classifier output.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogSign {
    /// ε per column.
    pub eps: Vec<f64>,
    /// Fixed sign per column (+1 or −1), or `None` where the classifier decides.
    pub fixed: Vec<Option<f64>>,
    /// Per column the range `[min, max]` of `ln(|v| + ε)` on the training data; decoded log
    /// magnitudes are clamped to it, so `exp` of a wild prediction cannot leave the training
    /// range (empty = no clamp, for emulators saved before the clamp existed).
    #[serde(default)]
    pub range: Vec<[f64; 2]>,
}

impl LogSign {
    /// Fits ε and the fixed signs on physical training targets (rows = samples).
    pub fn fit(t: &ndarray::ArrayView2<f32>, eps_rel: f64) -> Self {
        let mut eps = Vec::with_capacity(t.ncols());
        let mut fixed = Vec::with_capacity(t.ncols());
        let mut range = Vec::with_capacity(t.ncols());
        for col in t.columns() {
            let n = col.len().max(1) as f64;
            let m = col.iter().map(|v| (*v as f64).abs()).sum::<f64>() / n;
            let e = if m > 0.0 { eps_rel * m } else { 1.0 };
            eps.push(e);
            let (lo, hi) = col.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                let l = ((v as f64).abs() + e).ln();
                (lo.min(l), hi.max(l))
            });
            range.push(if lo <= hi { [lo, hi] } else { [e.ln(), e.ln()] });
            let pos = col.iter().any(|&v| v > 0.0);
            let neg = col.iter().any(|&v| v < 0.0);
            fixed.push(match (pos, neg) {
                (true, true) => None,
                (false, true) => Some(-1.0),
                _ => Some(1.0),
            });
        }
        LogSign { eps, fixed, range }
    }

    /// Columns whose sign the classifier predicts.
    pub fn variable(&self) -> Vec<usize> {
        (0..self.fixed.len()).filter(|&j| self.fixed[j].is_none()).collect()
    }

    /// `ln(|v| + ε)` of a table.
    pub fn magnitude(&self, t: &ndarray::ArrayView2<f32>) -> ndarray::Array2<f32> {
        let mut out = t.to_owned();
        for ((_, j), v) in out.indexed_iter_mut() {
            *v = ((*v as f64).abs() + self.eps[j]).ln() as f32;
        }
        out
    }

    /// Classifier labels (1 where the value is positive) of the variable columns.
    pub fn labels(&self, t: &ndarray::ArrayView2<f32>) -> ndarray::Array2<f32> {
        let var = self.variable();
        ndarray::Array2::from_shape_fn((t.nrows(), var.len()), |(i, k)| if t[[i, var[k]]] > 0.0 { 1.0 } else { 0.0 })
    }

    /// Physical values from log magnitudes `m` `[N, 28]` and classifier logits `[N, n_var]`:
    /// `sign · max(exp(clamp(m, range)) − ε, 0)`.
    pub fn decode(&self, m: &Tensor, logits: Option<&Tensor>) -> Result<Tensor> {
        let (dev, dty) = (m.device(), m.dtype());
        let eps = row(&self.eps, dev, dty)?;
        let m = if self.range.len() == self.eps.len() {
            let lo: Vec<f64> = self.range.iter().map(|r| r[0]).collect();
            let hi: Vec<f64> = self.range.iter().map(|r| r[1]).collect();
            m.broadcast_maximum(&row(&lo, dev, dty)?)?.broadcast_minimum(&row(&hi, dev, dty)?)?
        } else {
            m.clone()
        };
        let mag = m.exp()?.broadcast_sub(&eps)?.relu()?;
        let fixed: Vec<f64> = self.fixed.iter().map(|f| f.unwrap_or(0.0)).collect();
        let mut sign = row(&fixed, dev, dty)?.broadcast_as(mag.shape())?.contiguous()?;
        let var = self.variable();
        if let (Some(l), false) = (logits, var.is_empty()) {
            let mut sel = vec![0f32; var.len() * self.fixed.len()];
            for (k, &j) in var.iter().enumerate() {
                sel[k * self.fixed.len() + j] = 1.0;
            }
            let sel = Tensor::from_vec(sel, (var.len(), self.fixed.len()), dev)?.to_dtype(dty)?;
            let s = l.gt(0.0)?.to_dtype(dty)?.affine(2.0, -1.0)?;
            sign = sign.add(&s.matmul(&sel)?)?;
        }
        Ok(mag.mul(&sign)?)
    }
}

/// Mean binary cross-entropy of logits `z` against labels `y` (numerically stable form
/// `max(z, 0) − z·y + ln(1 + e^{−|z|})`).
pub fn bce_with_logits(z: &Tensor, y: &Tensor) -> Result<Tensor> {
    let a = z.relu()?.sub(&z.mul(y)?)?;
    let b = z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok(a.add(&b)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::Rng;

    /// Synthetic physical inputs and outputs in the reference layout with realistic magnitudes:
    /// H2SO4/SO4 ~1e6..1e10 molecules cm⁻³, masses ~1e-3..10 µg m⁻³, numbers ~1..1e4 cm⁻³.
    fn synthetic(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
        let mut r = gradlab_core::rng::rng(seed);
        let x = Array2::from_shape_fn((n, N_X), |(_, j)| match j {
            PRODUCTION_COLUMN => 10f32.powf(r.random_range(2.0..5.5)),
            0..=7 => r.random_range(0.0..1.0),
            8..=12 => 10f32.powf(r.random_range(6.0..10.0)),
            13..=24 => 10f32.powf(r.random_range(-3.0..1.0)),
            _ => 10f32.powf(r.random_range(0.0..4.0)),
        });
        // Tendencies of either sign comparable to the state (so many next states go negative).
        let y = Array2::from_shape_fn((n, N_Y), |(i, j)| {
            let scale = if j < N_STATE { x[[i, N_ENV + j]] } else { 1e-9 };
            scale * r.random_range(-1.5f32..1.0)
        });
        (x, y)
    }

    fn t(a: &Array2<f32>) -> Tensor {
        gradlab_core::data::array_to_tensor(&a.view(), &Device::Cpu).unwrap()
    }

    #[test]
    fn completion_closes_every_budget_to_round_off() {
        let dt = 720.0;
        let (x, y) = synthetic(500, 1);
        // The paper's closing columns, the largest-variance ones, and an arbitrary other choice.
        let maxvar = closing_columns(Closing::MaxVariance, &y.view());
        assert_ne!(maxvar, PAPER_CLOSING, "the synthetic data must pick other columns");
        for closing in [PAPER_CLOSING, maxvar, [0, 5, 12, 16]] {
            check_closing(&closing).unwrap();
            let out = complete(&t(&y), &t(&x), dt, &closing).unwrap().to_vec2::<f32>().unwrap();
            for (i, o) in out.iter().enumerate() {
                for (k, s) in CONSERVED_SPECIES.iter().enumerate() {
                    let budget = if s.production { x[[i, PRODUCTION_COLUMN]] as f64 * dt } else { 0.0 };
                    let sum: f64 = s.columns.iter().map(|&j| o[j] as f64).sum();
                    // Float round-off of the f32 sums: a few ulps of the largest term.
                    let scale: f64 = s.columns.iter().map(|&j| (o[j] as f64).abs()).sum::<f64>() + budget.abs();
                    assert!(
                        (sum - budget).abs() <= 8.0 * f32::EPSILON as f64 * scale,
                        "{closing:?} {} row {i}: {sum} vs {budget}",
                        s.name
                    );
                    // The other columns are untouched.
                    for &j in s.columns {
                        if j != closing[k] {
                            assert_eq!(o[j], y[[i, j]]);
                        }
                    }
                }
                for j in [17, 20, 23, 24, 27] {
                    assert_eq!(o[j], y[[i, j]]);
                }
            }
        }
        // The raw input violates the budgets by far more than round-off (the test can fail).
        let v = mass_violation(&t(&y), &t(&x), dt).unwrap().abs().unwrap().max_keepdim(0).unwrap();
        assert!(v.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|&m| m > 1e-6));
        // A closing column outside its species is refused.
        assert!(check_closing(&[5, 5, 11, 13]).is_err());
    }

    #[test]
    fn max_variance_closing_picks_the_widest_column() {
        let mut y = Array2::<f32>::zeros((4, N_Y));
        // BC: column 6 varies most; dust: column 15; sulfur and OC keep the paper's column
        // when it ties (all constant) — strict improvement is needed to move.
        for (i, v) in [1.0f32, -1.0, 2.0, -2.0].iter().enumerate() {
            y[[i, 6]] = *v;
            y[[i, 5]] = 0.1 * v;
            y[[i, 15]] = 3.0 * v;
            y[[i, 13]] = 1.0 + 0.0 * v; // constant offset: zero variance
        }
        assert_eq!(closing_columns(Closing::MaxVariance, &y.view()), [4, 6, 11, 15]);
        assert_eq!(closing_columns(Closing::Paper, &y.view()), PAPER_CLOSING);
    }

    #[test]
    fn correction_leaves_no_negative_concentration() {
        let (x, y) = synthetic(500, 2);
        let yt = t(&y);
        let before = (0..500)
            .flat_map(|i| (0..N_STATE).map(move |j| (i, j)))
            .filter(|&(i, j)| x[[i, N_ENV + j]] + y[[i, j]] < 0.0)
            .count();
        assert!(before > 1000, "the synthetic data must contain negative next states ({before})");
        let out = correct(&yt, &t(&x)).unwrap().to_vec2::<f32>().unwrap();
        for (i, o) in out.iter().enumerate() {
            for j in 0..N_STATE {
                let xs = x[[i, N_ENV + j]];
                let next = xs + o[j];
                assert!(next >= 0.0, "row {i} col {j}: {next}");
                // Where the raw next state is positive, the tendency is unchanged up to round-off.
                if xs + y[[i, j]] > 0.0 {
                    assert!((o[j] - y[[i, j]]).abs() <= 2.0 * f32::EPSILON * (xs.abs() + y[[i, j]].abs()));
                } else {
                    assert_eq!(next, 0.0);
                }
            }
            for j in N_STATE..N_Y {
                assert_eq!(o[j], y[[i, j]].max(0.0));
            }
        }
    }

    #[test]
    fn penalties_match_direct_computation_and_vanish_when_satisfied() {
        let dt = 720.0;
        let (x, y) = synthetic(64, 3);
        let std: Vec<f64> = (0..N_Y).map(|j| 1.0 + j as f64).collect();
        let sc = PenaltyScales::from_std(&std);
        let p = Penalties { mass: 2.0, positivity: 0.0 };
        let got = penalty(&p, &sc, &t(&y), &t(&x), dt).unwrap().unwrap().to_scalar::<f32>().unwrap() as f64;
        let mut want = 0.0;
        for (k, s) in CONSERVED_SPECIES.iter().enumerate() {
            let mut acc = 0.0;
            for i in 0..64 {
                let b = if s.production { x[[i, 3]] as f64 * dt } else { 0.0 };
                let v = s.columns.iter().map(|&j| y[[i, j]] as f64).sum::<f64>() - b;
                acc += (v / sc.species[k]).powi(2);
            }
            want += 2.0 * acc / 64.0;
        }
        assert!((got - want).abs() <= 1e-4 * want, "{got} {want}");
        let p = Penalties { mass: 0.0, positivity: 3.0 };
        let got = penalty(&p, &sc, &t(&y), &t(&x), dt).unwrap().unwrap().to_scalar::<f32>().unwrap() as f64;
        let mut want = 0.0;
        for i in 0..64 {
            for j in 0..N_Y {
                let next = if j < N_STATE { x[[i, N_ENV + j]] as f64 + y[[i, j]] as f64 } else { y[[i, j]] as f64 };
                want += ((-next).max(0.0) / std[j]).powi(2);
            }
        }
        want *= 3.0 / (64.0 * N_Y as f64);
        assert!((got - want).abs() <= 1e-3 * want, "{got} {want}");
        // Satisfied constraints cost nothing.
        let yc = correct(&complete(&t(&y), &t(&x), dt, &PAPER_CLOSING).unwrap(), &t(&x)).unwrap();
        let p = Penalties { mass: 0.0, positivity: 1.0 };
        assert_eq!(penalty(&p, &sc, &yc, &t(&x), dt).unwrap().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        assert!(penalty(&Penalties::default(), &sc, &yc, &t(&x), dt).unwrap().is_none());
    }

    #[test]
    fn log_sign_round_trips_and_bce_matches_formula() {
        let (_, y) = synthetic(300, 4);
        let mut y = y;
        y.column_mut(2).mapv_inplace(|v| v.abs()); // a fixed-sign positive column
        y.column_mut(5).mapv_inplace(|v| -v.abs() - 1.0); // fixed negative
        let ls = LogSign::fit(&y.view(), 1e-6);
        assert_eq!(ls.fixed[2], Some(1.0));
        assert_eq!(ls.fixed[5], Some(-1.0));
        assert!(ls.fixed[0].is_none());
        let m = ls.magnitude(&y.view());
        let labels = ls.labels(&y.view());
        // Perfect logits: ±10 from the labels.
        let logits = t(&labels.mapv(|l| if l > 0.5 { 10.0 } else { -10.0 }));
        let back = ls.decode(&t(&m), Some(&logits)).unwrap().to_vec2::<f32>().unwrap();
        for i in 0..300 {
            for j in 0..N_Y {
                let v = y[[i, j]] as f64;
                let rel = (back[i][j] as f64 - v).abs() / (v.abs() + ls.eps[j]);
                assert!(rel < 1e-4, "{i} {j}: {} vs {v}", back[i][j]);
            }
        }
        // Wild log magnitudes are clamped to the training range per column: the decoded values
        // stay within the training maxima instead of overflowing.
        let wild = t(&m.mapv(|v| v + 200.0));
        let back = ls.decode(&wild, Some(&logits)).unwrap().to_vec2::<f32>().unwrap();
        for j in 0..N_Y {
            let max_train = y.column(j).iter().fold(0f64, |a, &v| a.max((v as f64).abs()));
            for row in &back {
                assert!(row[j].is_finite() && (row[j] as f64).abs() <= max_train * (1.0 + 1e-4), "{j}: {}", row[j]);
            }
            // Without the clamp the same input overflows (the test can fail).
        }
        let unclamped = LogSign { range: vec![], ..ls.clone() };
        let raw = unclamped.decode(&wild, Some(&logits)).unwrap().to_vec2::<f32>().unwrap();
        assert!(raw.iter().flatten().any(|v| !v.is_finite()));
        let z = Tensor::new(&[[0.5f32, -2.0], [3.0, 0.0]], &Device::Cpu).unwrap();
        let l = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let want = -((sig(0.5)).ln() + (1.0 - sig(-2.0)).ln() + (1.0 - sig(3.0)).ln() + sig(0.0).ln()) / 4.0;
        let got = bce_with_logits(&z, &l).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-6, "{got} {want}");
    }
}
