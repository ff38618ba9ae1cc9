//! Step 7: ageing of insoluble particles (M7's `m7_concoag`, `m7_coat`).
//!
//! Sulfate that condensed on, or coagulated onto, the insoluble modes KI, AI, CI is moved into
//! their soluble counterparts KS, AS, CS (M7 keeps no sulfate in insoluble modes). A particle
//! becomes soluble once coated with `monolayers` layers of H2SO4; one molecule covers
//! 2.39e-15 cm², so a mode-average particle needs n* = L·4π r_s²/2.39e-15 molecules, with r_s the
//! radius of average surface r·exp(ln²σ). Of N insoluble particles min(N, S/n*) move to the
//! soluble mode, with the same fraction of each species' mass.

use crate::constants::{H2SO4_CROSS_SECTION, Mode, N_MODES, cmr_to_ras};
use crate::state::{MODE_SLOTS, N_MASSES, destination_slot};

/// H2SO4 molecules needed to coat the average particle of `mode` with count-median radius `r`
/// \[cm\] in `monolayers` layers.
pub fn coating_molecules(mode: Mode, r: f64, monolayers: f64) -> f64 {
    let rs = r * cmr_to_ras(mode);
    monolayers * 4.0 * std::f64::consts::PI * rs * rs / H2SO4_CROSS_SECTION
}

/// Ages the insoluble modes. `condensed` and `coagulated` are the sulfate \[molecules cm⁻³\]
/// that reached KI, AI, CI by condensation (not yet stored anywhere) and by coagulation
/// (already stored in KS, AS, CS); `radii` are the modes' count-median radii at the start of
/// the step. Returns the number of particles aged \[cm⁻³\].
pub fn age(
    masses: &mut [f64; N_MASSES],
    n: &mut [f64; N_MODES],
    condensed: [f64; 3],
    coagulated: [f64; 3],
    radii: &[f64; N_MODES],
    monolayers: f64,
    enabled: bool,
) -> f64 {
    let mut aged_total = 0.0;
    for (k, mode) in [Mode::Ki, Mode::Ai, Mode::Ci].into_iter().enumerate() {
        let to = mode.soluble_counterpart();
        // Condensed sulfate always joins the soluble counterpart, as in M7.
        masses[to.index()] += condensed[k];
        if !enabled {
            continue;
        }
        let i = mode.index();
        let sulfate = condensed[k] + coagulated[k];
        let need = coating_molecules(mode, radii[i], monolayers);
        if n[i] < crate::constants::CMIN_NUMBER || !(need > 0.0) || sulfate <= 0.0 {
            continue;
        }
        let aged = n[i].min(sulfate / need);
        let f = (aged / n[i]).min(1.0);
        let moved_n = if f >= 1.0 { n[i] } else { f * n[i] };
        n[i] -= moved_n;
        n[to.index()] += moved_n;
        for &slot in MODE_SLOTS[i] {
            let moved = if f >= 1.0 { masses[slot] } else { f * masses[slot] };
            masses[slot] -= moved;
            masses[destination_slot(slot, to)] += moved;
        }
        aged_total += moved_n;
    }
    aged_total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_monolayer_on_a_10nm_particle() {
        // r_s = r exp(ln²1.59); 4π r_s² / 2.39e-15 cm² per molecule.
        let r = 10e-7;
        let rs = r * (1.59f64.ln().powi(2)).exp();
        let expect = 4.0 * std::f64::consts::PI * rs * rs / 2.39e-15;
        assert!((coating_molecules(Mode::Ki, r, 1.0) / expect - 1.0).abs() < 1e-14);
        assert!((coating_molecules(Mode::Ki, r, 2.0) / expect - 2.0).abs() < 1e-14);
    }

    #[test]
    fn ageing_moves_the_coated_fraction_and_conserves_mass() {
        let mut masses = [0.0; N_MASSES];
        masses[7] = 2.0; // BC in KI
        masses[11] = 1.0; // OC in KI
        let mut n = [0.0; N_MODES];
        n[4] = 1000.0;
        let mut radii = [0.0; N_MODES];
        radii[4] = 20e-7;
        let need = coating_molecules(Mode::Ki, radii[4], 1.0);
        // Enough sulfate for a quarter of the particles, half of it condensed.
        let s = 0.25 * 1000.0 * need;
        let before: f64 = masses.iter().sum();
        let aged = age(&mut masses, &mut n, [0.5 * s, 0.0, 0.0], [0.5 * s, 0.0, 0.0], &radii, 1.0, true);
        assert!((aged - 250.0).abs() < 1e-9);
        assert!((n[4] - 750.0).abs() < 1e-9 && (n[1] - 250.0).abs() < 1e-9);
        assert!((masses[4] - 0.5).abs() < 1e-12 && (masses[7] - 1.5).abs() < 1e-12);
        assert!((masses[8] - 0.25).abs() < 1e-12 && (masses[11] - 0.75).abs() < 1e-12);
        // Only the condensed half is new sulfate; the coagulated half was already in KS.
        assert!((masses[1] - 0.5 * s).abs() < 1e-6);
        let after: f64 = masses.iter().sum();
        assert!((after - before - 0.5 * s).abs() < 1e-6);
        // Plenty of sulfate: all particles move, nothing negative.
        let mut n2 = [0.0; N_MODES];
        n2[5] = 10.0;
        let mut m2 = [0.0; N_MASSES];
        m2[16] = 3.0;
        radii[5] = 100e-7;
        age(&mut m2, &mut n2, [0.0, 1e12, 0.0], [0.0; 3], &radii, 1.0, true);
        assert_eq!(n2[5], 0.0);
        assert_eq!(m2[16], 0.0);
        assert_eq!(m2[14], 3.0);
        assert_eq!(n2[2], 10.0);
    }
}
