//! Step 2: water uptake of the soluble modes — both of M7's options.
//!
//! * **ZSR** (M7 `nwater = 0`): Zdanovskii–Stokes–Robinson mixing, W = Σₑ nₑ / mₑ(a_w), with
//!   a_w = RH and the binary-solution molalities mₑ(a_w) = (Σₖ Yₖ a_wᵏ)² of Jacobson, Tabazadeh
//!   and Turco (1996, JGR 101, 9079, Table 2) for H2SO4 and NaCl. Sulfate is treated as H2SO4,
//!   sea salt as NaCl; NaCl takes up water only above M7's crystallisation RH of 0.45. (M7 also
//!   forms Na2SO4 from sea salt and sulfate; its Jacobson fit is not monotone below a_w ≈ 0.55, so
//!   the clean model keeps the two binary electrolytes; `echam_ham` adds Na2SO4 as M7 does.) No Kelvin term, as in M7's `m7_equil`.
//! * **κ-Köhler** (M7 `nwater = 1`): the growth factor g of the count-median particle solves
//!   RH = (g³ − 1)/(g³ − 1 + κ) · exp(A / (r_d g)), A = 2σ_w M_w /(R T ρ_w), with the mode's
//!   volume-weighted κ (Petters and Kreidenweis 2007, eq. 11). M7 tabulates g; we solve it
//!   directly with a bracketed Newton iteration.
//!
//! * **M7 as ECHAM-HAM runs it** (`Fidelity::EchamHam`, ZSR): the Fortran's pure-sulfate modes
//!   NS and KS take up water by a fit in T, RH and the H2SO4 molecules per particle (Kelvin-like:
//!   small particles hold less) and a solution density, both with unpublished coefficients; we use
//!   [`m7_sulfate_solution`], fitted to the Fortran's own output by
//!   `scripts/m7/fit_sulfate_water.py` (held-out median error 5e-5 for the water, 4e-6 for the
//!   density). Modes holding sea salt (AS, CS) are dry below the crystallisation RH, as the reference
//!   data show (their water is 0 there, sulfate included); above it their ZSR water also counts
//!   the Na2SO4 formed from sea salt and sulfate ([`molality_na2so4`]). RH is clipped to
//!   \[0.05, 0.9\] as in the Fortran.
//!
//! Both give the water per cm³ of air, the wet count-median radius (growth applied uniformly to
//! the mode) and the mean particle density including water.

use super::properties::ModeProperties;
use super::sulfate_water_fit as fit;
use crate::config::{Fidelity, M7Config, WaterScheme};
use crate::constants::{AVOGADRO, GAS_CONSTANT, M_H2SO4, M_WATER, N_SOLUBLE, RHO_WATER, SIGMA_WATER, Species};

/// RH below which sea salt (NaCl) holds no water (M7's `crh`).
pub const NACL_CRYSTALLISATION_RH: f64 = 0.45;

/// Jacobson et al. (1996) Table 2 coefficients Y₀..Y₇ for √m(a_w) of binary H2SO4 solutions.
const Y_H2SO4: [f64; 8] =
    [5.611895, -1.387446e1, 1.750682e1, 7.138146e1, -3.109173e2, 4.662288e2, -3.128612e2, 7.76097e1];
/// Jacobson et al. (1996) Table 2 coefficients for binary NaCl solutions.
const Y_NACL: [f64; 8] =
    [-1.918004e2, 2.001540e3, -8.557205e3, 1.987670e4, -2.717192e4, 2.187103e4, -9.591577e3, 1.763672e3];

#[inline]
fn poly7(y: &[f64; 8], x: f64) -> f64 {
    let mut acc = y[7];
    for k in (0..7).rev() {
        acc = acc * x + y[k];
    }
    acc
}

/// Molality \[mol kg⁻¹\] of a binary H2SO4 solution in equilibrium with water activity `aw`.
pub fn molality_h2so4(aw: f64) -> f64 {
    let s = poly7(&Y_H2SO4, aw);
    s * s
}

/// Molality \[mol kg⁻¹\] of a binary NaCl solution at water activity `aw` (valid 0.45..1).
pub fn molality_nacl(aw: f64) -> f64 {
    let s = poly7(&Y_NACL, aw);
    s * s
}

/// The sulfate solution of a particle of M7's NS or KS mode, as ECHAM-HAM's M7 computes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SulfateSolution {
    /// Water molecules per H2SO4 molecule.
    pub water_per_h2so4: f64,
    /// Density of the H2SO4–water solution \[g cm⁻³\].
    pub density: f64,
}

/// Water uptake and solution density of a sulfate particle of `n` H2SO4 molecules at temperature
/// `t` \[K\] and relative humidity `rh`, as ECHAM-HAM's M7 computes them for its NS and KS modes.
///
/// The Fortran's fits are not published; these are polynomials in ln T, ln RH and ln n fitted to
/// the Fortran's output on the even-numbered reference cells (`scripts/m7/fit_sulfate_water.py`,
/// coefficients in `sulfate_water_fit.rs`; held-out errors there). Inputs are clipped to the
/// range the reference covers — T ∈ \[240, 305\] K (the Fortran clips T ≥ 240 K itself),
/// RH ∈ \[0.2, 0.9\] (the Fortran clips to \[0.05, 0.9\]; below 0.2 we hold the value at 0.2 rather
/// than extrapolate a polynomial), n ∈ \[2, 5·10⁵\] (above, the Kelvin term is below 0.1 %).
pub fn m7_sulfate_solution(t: f64, rh: f64, n: f64) -> SulfateSolution {
    // Within a step T and RH are fixed and only n changes, so the polynomials are collapsed to
    // their coefficients in ln n once per (T, RH) (per thread) and then evaluated in ln n alone.
    thread_local! {
        static COLLAPSED: std::cell::Cell<Option<Collapsed>> = const { std::cell::Cell::new(None) };
    }
    let (x0, x1) = (scaled_log(t, fit::T_RANGE), scaled_log(rh, fit::RH_RANGE));
    let c = COLLAPSED.with(|cell| match cell.get() {
        Some(c) if c.key == (x0, x1) => c,
        _ => {
            let c = Collapsed::new(x0, x1);
            cell.set(Some(c));
            c
        }
    });
    let x2 = scaled_log(n, fit::N_RANGE);
    let horner = |coef: &[f64; D1]| coef.iter().rev().fold(0.0, |acc, &ck| acc * x2 + ck);
    SulfateSolution { water_per_h2so4: 1.0 / horner(&c.water), density: horner(&c.density) }
}

const D1: usize = fit::MAX_DEGREE + 1;

/// The fits at fixed (T', RH'): their coefficients in powers of ln n'.
#[derive(Clone, Copy)]
struct Collapsed {
    key: (f64, f64),
    water: [f64; D1],
    density: [f64; D1],
}

impl Collapsed {
    fn new(x0: f64, x1: f64) -> Self {
        Collapsed {
            key: (x0, x1),
            water: collapse(&fit::WATER_TERMS, x0, x1),
            density: collapse(&fit::DENSITY_TERMS, x0, x1),
        }
    }
}

/// Σ over (i, j) of c·x₀ⁱ·x₁ʲ, per power k of the third variable.
fn collapse(terms: &[(u8, u8, u8, f64)], x0: f64, x1: f64) -> [f64; D1] {
    let powers = |v: f64| {
        let mut p = [1.0; D1];
        for k in 1..D1 {
            p[k] = p[k - 1] * v;
        }
        p
    };
    let (p0, p1) = (powers(x0), powers(x1));
    let mut out = [0.0; D1];
    for &(i, j, k, c) in terms {
        out[k as usize] += c * p0[i as usize] * p1[j as usize];
    }
    out
}

/// ln v, with v clipped to `r`, mapped linearly from \[ln r.0, ln r.1\] onto \[−1, 1\].
#[inline]
fn scaled_log(v: f64, r: (f64, f64)) -> f64 {
    let (lo, hi) = (r.0.ln(), r.1.ln());
    (2.0 * v.clamp(r.0, r.1).ln() - lo - hi) / (hi - lo)
}

/// Molality \[mol kg⁻¹\] of a binary Na2SO4 solution at water activity `aw` (0.45..0.9), in
/// Jacobson et al.'s (1996) form √m = Σₖ Yₖ a_wᵏ with the coefficients the M7 Fortran uses,
/// recovered from the reference's AS/CS water (`scripts/m7/fit_sulfate_water.py`; held-out
/// error 9e-8). Not monotone below a_w ≈ 0.55, so only the `echam_ham` fidelity uses it.
pub fn molality_na2so4(aw: f64) -> f64 {
    let s = poly7(&fit::Y_NA2SO4, aw);
    s * s
}

/// Kelvin length A = 2σ_w M_w/(R T ρ_w) \[cm\] for the Köhler exponent exp(A/r).
pub fn kelvin_length(t: f64) -> f64 {
    2.0 * SIGMA_WATER * M_WATER / (GAS_CONSTANT * t * RHO_WATER)
}

/// κ-Köhler growth factor g = r_wet/r_dry of a particle with dry radius `r_dry` \[cm\] at
/// relative humidity `rh` (< 1) with Kelvin length `a_kelvin` \[cm\] (0 disables the Kelvin term).
///
/// Solves ln((g³−1)/(g³−1+κ)) + A/(r_d g) = ln RH on the stable branch g ∈ (1, g₀], where
/// g₀ = (1 + κ RH/(1−RH))^(1/3) is the flat-surface solution.
pub fn kappa_growth_factor(kappa: f64, r_dry: f64, rh: f64, a_kelvin: f64) -> f64 {
    if kappa <= 1e-8 || rh <= 0.0 || r_dry <= 0.0 {
        return 1.0;
    }
    let ln_rh = rh.ln();
    let g0 = (1.0 + kappa * rh / (1.0 - rh)).cbrt();
    if a_kelvin == 0.0 {
        return g0;
    }
    let a = a_kelvin / r_dry;
    // f(g) increasing on (1, g0]; f(1+) = −∞, f(g0) = a/g0 > 0.
    let f = |g: f64| {
        let g3m1 = g * g * g - 1.0;
        (g3m1 / (g3m1 + kappa)).ln() + a / g - ln_rh
    };
    let df = |g: f64| {
        let g3m1 = g * g * g - 1.0;
        3.0 * g * g * (1.0 / g3m1 - 1.0 / (g3m1 + kappa)) - a / (g * g)
    };
    let (mut lo, mut hi) = (1.0, g0);
    let mut g = g0;
    for _ in 0..60 {
        let fg = f(g);
        if fg > 0.0 {
            hi = g;
        } else {
            lo = g;
        }
        let d = df(g);
        let mut next = g - fg / d;
        if !(d > 0.0 && next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if (next - g).abs() <= 1e-13 * g || hi - lo <= 1e-13 * hi {
            return next;
        }
        g = next;
    }
    g
}

/// Applies water uptake to the soluble modes of `p` (which must hold dry properties) with the
/// water scheme, fidelity and RH cap (`water_rh_max`) of `cfg`.
pub fn water_uptake(p: &mut ModeProperties, cfg: &M7Config, rh: f64, t: f64, ram2cmr: &[f64], numbers: &[f64]) {
    let fidelity = cfg.fidelity;
    let aw = rh.clamp(0.0, cfg.water_rh_max);
    match cfg.water {
        WaterScheme::Zsr => {
            // The Fortran clips the RH of its water-uptake fits to [0.05, 0.9] (`description.json`
            // of the reference data); the clean model uses the RH as given (up to `water_rh_max`).
            let aw = if fidelity == Fidelity::EchamHam { aw.clamp(0.05, 0.9) } else { aw };
            let m_so4 = molality_h2so4(aw.max(0.01));
            let m_nacl = if aw >= NACL_CRYSTALLISATION_RH { molality_nacl(aw) } else { f64::INFINITY };
            for m in 0..N_SOLUBLE {
                if !p.populated[m] {
                    continue;
                }
                let holds_sea_salt = p.nacl_mol[m] > 0.0 || p.na2so4_mol[m] > 0.0;
                match fidelity {
                    // NS, KS: the Fortran's size-dependent sulfate water and solution density.
                    Fidelity::EchamHam if m < 2 && numbers[m] > 0.0 && p.so4_mol[m] > 0.0 => {
                        let sol = m7_sulfate_solution(t, aw, p.so4_mol[m] * AVOGADRO / numbers[m]);
                        let water = p.so4_mol[m] * sol.water_per_h2so4 * M_WATER;
                        let so4 = p.so4_mol[m] * M_H2SO4;
                        let wet_vol = p.dry_vol[m] - so4 / Species::So4.density() + (so4 + water) / sol.density;
                        finish_mode_vol(p, m, water, wet_vol, ram2cmr[m], numbers[m]);
                    }
                    // AS, CS: dry below the crystallisation RH when they hold sea salt.
                    Fidelity::EchamHam if holds_sea_salt && aw < NACL_CRYSTALLISATION_RH => {
                        finish_mode(p, m, 0.0, ram2cmr[m], numbers[m]);
                    }
                    // AS, CS above it: ZSR over H2SO4, NaCl and the Na2SO4 they formed.
                    Fidelity::EchamHam => {
                        let na2so4 = if p.na2so4_mol[m] > 0.0 { p.na2so4_mol[m] / molality_na2so4(aw) } else { 0.0 };
                        let w = 1e3 * (p.so4_mol[m] / m_so4 + p.nacl_mol[m] / m_nacl + na2so4);
                        finish_mode(p, m, w, ram2cmr[m], numbers[m]);
                    }
                    // kg of water per cm³ of air → g.
                    _ => {
                        let w = 1e3 * (p.so4_mol[m] / m_so4 + p.nacl_mol[m] / m_nacl);
                        finish_mode(p, m, w, ram2cmr[m], numbers[m]);
                    }
                }
            }
        }
        WaterScheme::Kappa => {
            let a = kelvin_length(t);
            for m in 0..N_SOLUBLE {
                if !p.populated[m] || p.dry_vol[m] <= 0.0 {
                    continue;
                }
                let kappa = p.kappa_vol[m] / p.dry_vol[m];
                let g = kappa_growth_factor(kappa, p.r_dry[m], aw, a);
                let w = p.dry_vol[m] * (g * g * g - 1.0) * RHO_WATER;
                p.water[m] = w;
                p.r_wet[m] = p.r_dry[m] * g;
                p.density[m] = (p.dry_mass[m] + w) / (p.dry_vol[m] + w / RHO_WATER);
            }
        }
    }
}

fn finish_mode(p: &mut ModeProperties, m: usize, water_g: f64, ram2cmr: f64, n: f64) {
    finish_mode_vol(p, m, water_g, p.dry_vol[m] + water_g / RHO_WATER, ram2cmr, n);
}

fn finish_mode_vol(p: &mut ModeProperties, m: usize, water_g: f64, wet_vol: f64, ram2cmr: f64, n: f64) {
    p.water[m] = water_g;
    p.r_wet[m] = super::properties::count_median_radius(wet_vol, n, ram2cmr);
    p.density[m] = (p.dry_mass[m] + water_g) / wet_vol;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapsed_evaluation_equals_the_term_by_term_sum() {
        // The fits are evaluated by collapsing T and RH first and caching per thread; checked
        // against the plain sum of c·x₀ⁱx₁ʲx₂ᵏ at points across the box, twice per (T, RH) so
        // the cached path is taken too.
        let plain = |terms: &[(u8, u8, u8, f64)], x: [f64; 3]| -> f64 {
            terms.iter().map(|&(i, j, k, c)| c * x[0].powi(i as i32) * x[1].powi(j as i32) * x[2].powi(k as i32)).sum()
        };
        for &(t, rh) in &[(240.0, 0.2), (263.0, 0.55), (305.0, 0.9), (281.5, 0.31)] {
            for &n in &[2.0, 47.0, 3.1e3, 5e5, 2.0] {
                let x = [scaled_log(t, fit::T_RANGE), scaled_log(rh, fit::RH_RANGE), scaled_log(n, fit::N_RANGE)];
                let sol = m7_sulfate_solution(t, rh, n);
                let (w, d) = (1.0 / plain(&fit::WATER_TERMS, x), plain(&fit::DENSITY_TERMS, x));
                assert!((sol.water_per_h2so4 / w - 1.0).abs() < 1e-12, "{t} {rh} {n}: {} vs {w}", sol.water_per_h2so4);
                assert!((sol.density / d - 1.0).abs() < 1e-12, "{t} {rh} {n}: {} vs {d}", sol.density);
            }
        }
    }

    #[test]
    fn nacl_molality_matches_robinson_stokes() {
        // Robinson & Stokes (1959), Electrolyte Solutions, App. 8.10: NaCl at 3.0 mol/kg has
        // osmotic coefficient φ = 1.045, so ln a_w = −2·3.0·1.045·M_w/1000 → a_w = 0.8932.
        let aw = (-2.0f64 * 3.0 * 1.045 * 18.015e-3).exp();
        let m = molality_nacl(aw);
        assert!((m / 3.0 - 1.0).abs() < 0.05, "m({aw}) = {m}");
        // 1.0 mol/kg: φ = 0.936 → a_w = 0.9668.
        let aw = (-2.0f64 * 1.0 * 0.936 * 18.015e-3).exp();
        let m = molality_nacl(aw);
        assert!((m / 1.0 - 1.0).abs() < 0.1, "m({aw}) = {m}");
    }

    #[test]
    fn molalities_fall_with_water_activity_over_their_range() {
        let mut prev = f64::INFINITY;
        for i in 0..=98 {
            let aw = 0.01 + 0.01 * i as f64;
            let m = molality_h2so4(aw);
            assert!(m > 0.0 && m < prev, "h2so4 aw={aw}: {m}");
            prev = m;
        }
        let mut prev = f64::INFINITY;
        for i in 0..=54 {
            let aw = 0.45 + 0.01 * i as f64;
            let m = molality_nacl(aw);
            assert!(m > 0.0 && m < prev, "nacl aw={aw}: {m}");
            prev = m;
        }
    }

    #[test]
    fn kappa_without_kelvin_is_the_closed_form() {
        for &(k, rh) in &[(0.6, 0.5), (1.12, 0.9), (0.06, 0.3), (0.6, 0.99)] {
            let g = kappa_growth_factor(k, 1e-5, rh, 0.0);
            let expect: f64 = (1.0 + k * rh / (1.0 - rh)).cbrt();
            assert!((g - expect).abs() < 1e-14);
        }
    }

    #[test]
    fn kappa_solution_satisfies_koehler_and_kelvin_shrinks_small_particles() {
        let a = kelvin_length(288.0);
        // A = 2σM/(RTρ) ≈ 1.08 nm at 288 K (σ = 72 dyn/cm).
        assert!((a - 1.08e-7).abs() < 0.05e-7, "{a}");
        for &r in &[1e-7, 5e-7, 2e-6, 2e-5, 1e-4] {
            for &(k, rh) in &[(0.6, 0.3), (0.6, 0.8), (1.12, 0.95), (0.06, 0.9), (0.3, 0.99)] {
                let g = kappa_growth_factor(k, r, rh, a);
                let g3m1 = g * g * g - 1.0;
                let s = g3m1 / (g3m1 + k) * (a / (r * g)).exp();
                assert!((s - rh).abs() < 1e-10, "r={r} k={k} rh={rh}: S={s}");
                let flat = kappa_growth_factor(k, r, rh, 0.0);
                assert!(g > 1.0 && g < flat);
            }
        }
        // Large particles approach the flat-surface limit.
        let g = kappa_growth_factor(0.6, 1e-3, 0.8, a);
        let flat = kappa_growth_factor(0.6, 1e-3, 0.8, 0.0);
        assert!((g / flat - 1.0).abs() < 1e-3);
    }
}
