//! Step 8: mode shifting (M7's `m7_dconc`).
//!
//! When a soluble mode (NS, KS, AS) has grown so that its dry count-median radius exceeds the
//! geometric centre of its range, √(r_lo r_hi) (equivalently, M7's test that the mean particle
//! mass exceeds that of a particle at the centre), the part of the log-normal above the upper
//! boundary r_hi moves to the next soluble mode:
//!
//! number fraction above = 1 − Φ(t), mass fraction above = 1 − Φ(t − 3 ln σ),
//! t = ln(r_hi/r)/ln σ,
//!
//! (the volume distribution of a log-normal is log-normal with median r·e^{3ln²σ}). As in M7,
//! a mode grown beyond 10·r_hi moves entirely. All fractions come from the state before the
//! shift and are applied together.

use super::properties::{ModeConstants, ModeProperties, dry_properties_with};
use crate::config::Fidelity;
use crate::constants::{Mode, N_MODES, ln_sigma, mean_volume};
use crate::state::{AerosolState, MODE_SLOTS, destination_slot};
use gradlab_core::stats::normal_cdf;

/// Number and mass fractions of a mode with dry count-median radius `r` that lie above `r_hi`.
pub fn fractions_above(mode: Mode, r: f64, r_hi: f64) -> (f64, f64) {
    if r > 10.0 * r_hi {
        return (1.0, 1.0);
    }
    let ls = ln_sigma(mode);
    let t = (r_hi / r).ln() / ls;
    (1.0 - normal_cdf(t), 1.0 - normal_cdf(t - 3.0 * ls))
}

/// M7's renaming fractions (ECHAM-HAM `m7_dconc`, as measured against the Fortran): the
/// particles above `r_hi` move, 1 − Φ(t) of the number with t = ln(r_hi/r)/ln σ, and the
/// particles that stay keep the volume of a mean particle at the centre of the mode,
/// r_c = √(r_lo r_hi): the mass fraction moved is 1 − (1 − f_N)·V̄(r_c)/V̄, with V̄ the mode's mean
/// particle volume. That volume is the species-by-species one, Σ mᵢ/ρᵢ (`ModeProperties::species_vol`;
/// in AS it differs from the dry volume of the Na2SO4 chemistry that sets r) — measured on the
/// AS→CS shift of the reference, where the retained particles sit at V̄(r_c) in that volume
/// (median ratio 0.998) and not in the dry one.
pub fn fractions_echam_ham(mode: Mode, r: f64, mean_species_volume: f64) -> (f64, f64) {
    let (lo, hi) = mode.bounds();
    if r > 10.0 * hi {
        return (1.0, 1.0);
    }
    let ls = ln_sigma(mode);
    let t = (hi / r).ln() / ls;
    let f_n = 1.0 - normal_cdf(t);
    let kept = mean_volume(mode, (lo * hi).sqrt()) / mean_species_volume;
    (f_n, (1.0 - (1.0 - f_n) * kept).clamp(0.0, 1.0))
}

/// Shifts NS→KS, KS→AS, AS→CS where due. Returns the number of particles moved \[cm⁻³\].
pub fn shift(s: &mut AerosolState) -> f64 {
    let mut p = ModeProperties::default();
    dry_properties_with(s, &mut p, &ModeConstants::new(), Fidelity::Clean);
    shift_with(s, &p, Fidelity::Clean)
}

pub(crate) fn shift_with(s: &mut AerosolState, p: &ModeProperties, fidelity: Fidelity) -> f64 {
    let mut frac = [(0.0, 0.0); 3];
    for (k, mode) in [Mode::Ns, Mode::Ks, Mode::As].into_iter().enumerate() {
        let i = mode.index();
        let (lo, hi) = mode.bounds();
        if p.populated[i] && p.r_dry[i] > (lo * hi).sqrt() {
            frac[k] = match fidelity {
                Fidelity::EchamHam => fractions_echam_ham(mode, p.r_dry[i], p.species_vol[i] / s.n[i]),
                Fidelity::Clean => fractions_above(mode, p.r_dry[i], hi),
            };
        }
    }
    if frac.iter().all(|&(fn_, fm)| fn_ == 0.0 && fm == 0.0) {
        return 0.0;
    }
    let start_n = s.n;
    let start_m = s.masses();
    let mut masses = start_m;
    let mut moved_total = 0.0;
    for (k, mode) in [Mode::Ns, Mode::Ks, Mode::As].into_iter().enumerate() {
        let (fn_, fm) = frac[k];
        if fn_ == 0.0 && fm == 0.0 {
            continue;
        }
        let i = mode.index();
        let to = Mode::ALL[i + 1];
        let dn = if fn_ >= 1.0 { start_n[i] } else { fn_ * start_n[i] };
        s.n[i] -= dn;
        s.n[to.index()] += dn;
        moved_total += dn;
        for &slot in MODE_SLOTS[i] {
            let dm = if fm >= 1.0 { start_m[slot] } else { fm * start_m[slot] };
            masses[slot] -= dm;
            masses[destination_slot(slot, to)] += dm;
        }
    }
    for v in masses.iter_mut() {
        *v = v.max(0.0);
    }
    for v in s.n.iter_mut().take(N_MODES) {
        *v = v.max(0.0);
    }
    s.set_masses(&masses);
    moved_total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::{AVOGADRO, M_H2SO4, Species};

    #[test]
    fn normal_cdf_values() {
        // The Φ the mode shift uses (gradlab-core's):
        // Φ(0) = 0.5, Φ(1) = 0.841344746, Φ(−2) = 0.022750132 (standard tables).
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
        assert!((normal_cdf(1.0) - 0.841_344_746_068_543).abs() < 1e-12);
        assert!((normal_cdf(-2.0) - 0.022_750_131_948_179).abs() < 1e-12);
    }

    #[test]
    fn fractions_match_numerical_integration_of_the_lognormal() {
        let mode = Mode::Ks;
        let ls = ln_sigma(mode);
        let (r, hi) = (30e-7, 50e-7);
        let (fn_, fm) = fractions_above(mode, r, hi);
        // Trapezoid over ln r.
        let (mut num_above, mut num, mut vol_above, mut vol) = (0.0, 0.0, 0.0, 0.0);
        let k = 200_000;
        for j in 0..k {
            let z = -12.0 + 24.0 * (j as f64 + 0.5) / k as f64;
            let lr = r.ln() + z * ls;
            let w = (-0.5 * z * z).exp();
            let v = w * (3.0 * lr).exp();
            num += w;
            vol += v;
            if lr > hi.ln() {
                num_above += w;
                vol_above += v;
            }
        }
        assert!((fn_ - num_above / num).abs() < 1e-4);
        assert!((fm - vol_above / vol).abs() < 1e-4);
        assert!(fm > fn_);
    }

    #[test]
    fn grown_aitken_mode_sheds_its_tail_and_conserves_everything() {
        let r = 30e-7; // > √(5·50) nm ≈ 15.8 nm
        let n = 500.0;
        let so4 = n * mean_volume(Mode::Ks, r) * Species::So4.density() / (M_H2SO4 / AVOGADRO);
        let mut s =
            AerosolState { so4: [0.0, so4, 0.0, 0.0], n: [0.0, n, 0.0, 0.0, 0.0, 0.0, 0.0], ..Default::default() };
        let before = s;
        let moved = shift(&mut s);
        let (fn_, fm) = fractions_above(Mode::Ks, r, 50e-7);
        assert!((moved - fn_ * n).abs() < 1e-9 * n);
        assert!((s.so4[2] - fm * so4).abs() < 1e-9 * so4);
        assert!((s.n.iter().sum::<f64>() - n).abs() < 1e-9);
        assert!((s.total_sulfur() - before.total_sulfur()).abs() < 1e-6);
        // A small mode (below the centre of its range) does not shift.
        let mut small = before;
        small.so4[1] = so4 / 1000.0; // r/10
        assert_eq!(shift(&mut small), 0.0);
    }

    #[test]
    fn echam_ham_as_shift_keeps_the_species_volume_of_a_centre_particle() {
        // AS with sulfate and sea salt: r (which sets the number moved) comes from the dry volume
        // after the Na2SO4 chemistry, while the particles kept hold the species-by-species volume
        // of a mean particle at √(r_lo r_hi).
        let n = 20.0;
        let mut s = AerosolState { n: [0.0, 0.0, n, 0.0, 0.0, 0.0, 0.0], ..Default::default() };
        s.so4[2] = 4e9;
        s.ss[0] = 2.0;
        s.du[0] = 1.5;
        let mut p = ModeProperties::default();
        dry_properties_with(&s, &mut p, &ModeConstants::new(), Fidelity::EchamHam);
        let (lo, hi) = Mode::As.bounds();
        assert!(p.r_dry[2] > (lo * hi).sqrt() && p.na2so4_mol[2] > 0.0, "the test needs a shifting mixed mode");
        let before = s;
        let moved = shift_with(&mut s, &p, Fidelity::EchamHam);
        let (f_n, _) = fractions_above(Mode::As, p.r_dry[2], hi);
        assert!((moved / (f_n * n) - 1.0).abs() < 1e-12);
        let mut q = ModeProperties::default();
        dry_properties_with(&s, &mut q, &ModeConstants::new(), Fidelity::EchamHam);
        let kept = q.species_vol[2] / s.n[2];
        // The same volume from the masses left in AS (sulfate as H2SO4, sea salt, dust).
        let by_hand = s.so4[2] * M_H2SO4 / AVOGADRO / 1.841 + (s.ss[0] / 2.165 + s.du[0] / 2.65) * 1e-12;
        assert!((q.species_vol[2] / by_hand - 1.0).abs() < 1e-12);
        assert!((kept / mean_volume(Mode::As, (lo * hi).sqrt()) - 1.0).abs() < 1e-12, "{kept}");
        assert!((s.total_sulfur() / before.total_sulfur() - 1.0).abs() < 1e-14);
        assert!(((s.ss[0] + s.ss[1]) / before.ss[0] - 1.0).abs() < 1e-14);
    }

    #[test]
    fn echam_ham_shift_leaves_the_mode_at_its_centre_radius() {
        let r = 30e-7;
        let n = 500.0;
        let so4 = n * mean_volume(Mode::Ks, r) * Species::So4.density() / (M_H2SO4 / AVOGADRO);
        let mut s =
            AerosolState { so4: [0.0, so4, 0.0, 0.0], n: [0.0, n, 0.0, 0.0, 0.0, 0.0, 0.0], ..Default::default() };
        let before = s;
        let mut p = ModeProperties::default();
        dry_properties_with(&s, &mut p, &ModeConstants::new(), Fidelity::EchamHam);
        let moved = shift_with(&mut s, &p, Fidelity::EchamHam);
        // The number above 50 nm moves, as in the clean scheme.
        let (f_n, _) = fractions_above(Mode::Ks, r, 50e-7);
        assert!((moved / (f_n * n) - 1.0).abs() < 1e-12);
        // The particles left in KS have the count-median radius √(5 nm · 50 nm).
        let mut q = ModeProperties::default();
        dry_properties_with(&s, &mut q, &ModeConstants::new(), Fidelity::EchamHam);
        assert!((q.r_dry[1] / (5e-7f64 * 50e-7).sqrt() - 1.0).abs() < 1e-12, "{}", q.r_dry[1]);
        assert!((s.total_sulfur() / before.total_sulfur() - 1.0).abs() < 1e-14);
        assert!((s.n.iter().sum::<f64>() / n - 1.0).abs() < 1e-14);
        // Below the centre nothing moves.
        let mut small = before;
        small.so4[1] = so4 / 1000.0;
        dry_properties_with(&small, &mut p, &ModeConstants::new(), Fidelity::EchamHam);
        assert_eq!(shift_with(&mut small, &p, Fidelity::EchamHam), 0.0);
    }
}
