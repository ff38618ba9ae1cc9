//! Step 1: mean particle properties and dry count-median radii (M7's `m7_averageproperties`).
//!
//! For each mode the dry volume and mass per cm³ of air are summed over its species; the dry
//! count-median radius follows from the mean particle volume V̄ = V/N of a log-normal mode:
//! r = (3V̄/4π)^(1/3) · exp(−1.5 ln²σ). A mode is *populated* when N > 1e-10 cm⁻³ and some
//! species mass exceeds 1e-15 (M7's `cmin_aernl`, `cmin_aerml`); otherwise its radius is 0.

use crate::config::Fidelity;
use crate::constants::{
    CMIN_MASS, CMIN_NUMBER, G_PER_MOLECULE_H2SO4, M_H2SO4, M_NA2SO4, M_NACL, Mode, N_MODES, RHO_NA2SO4, Species,
    UG_M3_TO_G_CM3, ram_to_cmr,
};
use crate::state::AerosolState;

/// Per-mode properties of one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModeProperties {
    /// Whether the mode holds enough particles and mass to be treated as present.
    pub populated: [bool; N_MODES],
    /// Dry mass \[g per cm³ of air\].
    pub dry_mass: [f64; N_MODES],
    /// Dry volume \[cm³ per cm³ of air\].
    pub dry_vol: [f64; N_MODES],
    /// Species-by-species volume Σ mᵢ/ρᵢ \[cm³ per cm³ of air\]: the dry volume before the
    /// Na2SO4 chemistry of AS/CS and without the CS accumulator quirk (M7's mode shift uses it).
    pub species_vol: [f64; N_MODES],
    /// Σ κᵢVᵢ \[cm³ per cm³ of air\] (volume-weighted hygroscopicity numerator).
    pub kappa_vol: [f64; N_MODES],
    /// H2SO4 in each soluble mode \[mol per cm³ of air\].
    pub so4_mol: [f64; 4],
    /// NaCl in each soluble mode \[mol per cm³ of air\] (AS, CS only); with sea salt and
    /// sulfate together this is what is left after Na2SO4 formation.
    pub nacl_mol: [f64; 4],
    /// Na2SO4 formed from sea salt and sulfate, 2 NaCl + H2SO4 → Na2SO4 + 2 HCl↑ \[mol per cm³
    /// of air\] (AS, CS only).
    pub na2so4_mol: [f64; 4],
    /// Dry count-median radius \[cm\].
    pub r_dry: [f64; N_MODES],
    /// Ambient (wet) count-median radius \[cm\].
    pub r_wet: [f64; N_MODES],
    /// Mean particle density including water \[g cm⁻³\].
    pub density: [f64; N_MODES],
    /// Aerosol water of the soluble modes \[g per cm³ of air\].
    pub water: [f64; 4],
}

/// Radius-independent constants: exp(−1.5 ln²σ) per mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModeConstants {
    pub ram2cmr: [f64; N_MODES],
}

impl ModeConstants {
    pub(crate) fn new() -> Self {
        let mut ram2cmr = [0.0; N_MODES];
        for m in Mode::ALL {
            ram2cmr[m.index()] = ram_to_cmr(m);
        }
        ModeConstants { ram2cmr }
    }
}

#[inline]
fn add(p: &mut ModeProperties, mode: usize, sp: Species, g: f64) {
    let v = g / sp.density();
    p.dry_mass[mode] += g;
    p.dry_vol[mode] += v;
    p.species_vol[mode] += v;
    p.kappa_vol[mode] += sp.kappa() * v;
}

/// Count-median radius \[cm\] of a mode with dry volume `vol` \[cm³ cm⁻³\] in `n` \[cm⁻³\]
/// particles, given ram2cmr = exp(−1.5 ln²σ).
#[inline]
pub fn count_median_radius(vol: f64, n: f64, ram2cmr: f64) -> f64 {
    let mean_vol = vol / n;
    ram2cmr * (mean_vol * (3.0 / (4.0 * std::f64::consts::PI))).cbrt()
}

/// Fills the dry properties of every mode; wet radius and density are set to their dry values
/// and water to zero (the water-uptake step overwrites them for soluble modes).
pub fn dry_properties(s: &AerosolState, out: &mut ModeProperties) {
    dry_properties_with(s, out, &ModeConstants::new(), Fidelity::default());
}

/// [`dry_properties`] with an explicit [`Fidelity`]: under [`Fidelity::EchamHam`] the CS
/// mode's dry volume and mass also hold the AS mode's BC, OC and dust (the Fortran's
/// non-electrolyte accumulator is not reset between the AS and CS modes).
pub fn dry_properties_fidelity(s: &AerosolState, out: &mut ModeProperties, fidelity: Fidelity) {
    dry_properties_with(s, out, &ModeConstants::new(), fidelity);
}

pub(crate) fn dry_properties_with(s: &AerosolState, p: &mut ModeProperties, k: &ModeConstants, fidelity: Fidelity) {
    *p = ModeProperties::default();
    let ug = UG_M3_TO_G_CM3;
    // Sulfate (as H2SO4), molecules → g.
    for i in 0..4 {
        add(p, i, Species::So4, s.so4[i] * G_PER_MOLECULE_H2SO4);
        p.so4_mol[i] = s.so4[i] / crate::constants::AVOGADRO;
    }
    // BC, OC in KS, AS, CS, KI.
    for (i, mode) in [1usize, 2, 3, 4].into_iter().enumerate() {
        add(p, mode, Species::Bc, s.bc[i] * ug);
        add(p, mode, Species::Oc, s.oc[i] * ug);
    }
    // Sea salt in AS, CS.
    for (i, mode) in [2usize, 3].into_iter().enumerate() {
        add(p, mode, Species::Ss, s.ss[i] * ug);
        p.nacl_mol[mode] = s.ss[i] * ug / M_NACL;
    }
    // Dust in AS, CS, AI, CI.
    for (i, mode) in [2usize, 3, 5, 6].into_iter().enumerate() {
        add(p, mode, Species::Du, s.du[i] * ug);
    }
    // AS, CS: sea salt and sulfate form Na2SO4 (Cl leaves as HCl), M7's `m7_equil`; the dry
    // volume and mass are those of H2SO4, Na2SO4 and NaCl left over plus the non-electrolytes.
    let mut carried = (0.0, 0.0);
    for (i, mode) in [2usize, 3].into_iter().enumerate() {
        let n_s = p.so4_mol[mode];
        let n_cl = p.nacl_mol[mode];
        let na2 = (0.5 * n_cl).min(n_s);
        let (h2so4, nacl) = (n_s - na2, n_cl - 2.0 * na2);
        p.so4_mol[mode] = h2so4;
        p.nacl_mol[mode] = nacl;
        p.na2so4_mol[mode] = na2;
        let el_mass = h2so4 * M_H2SO4 + na2 * M_NA2SO4 + nacl * M_NACL;
        let el_vol = h2so4 * M_H2SO4 / Species::So4.density()
            + na2 * M_NA2SO4 / RHO_NA2SO4
            + nacl * M_NACL / Species::Ss.density();
        let non_mass = (s.bc[i + 1] + s.oc[i + 1] + s.du[i]) * ug;
        let non_vol = (s.bc[i + 1] / Species::Bc.density()
            + s.oc[i + 1] / Species::Oc.density()
            + s.du[i] / Species::Du.density())
            * ug;
        if fidelity == Fidelity::EchamHam {
            carried.0 += non_mass;
            carried.1 += non_vol;
        } else {
            carried = (non_mass, non_vol);
        }
        p.dry_mass[mode] = el_mass + carried.0;
        p.dry_vol[mode] = el_vol + carried.1;
    }
    // Largest single-species mass per mode, in M7 units, for the presence threshold.
    let max_mass = [
        s.so4[0],
        s.so4[1].max(s.bc[0]).max(s.oc[0]),
        s.so4[2].max(s.bc[1]).max(s.oc[1]).max(s.ss[0]).max(s.du[0]),
        s.so4[3].max(s.bc[2]).max(s.oc[2]).max(s.ss[1]).max(s.du[1]),
        s.bc[3].max(s.oc[3]),
        s.du[2],
        s.du[3],
    ];
    for (m, &mass) in max_mass.iter().enumerate() {
        let populated = s.n[m] > CMIN_NUMBER && mass > CMIN_MASS && p.dry_vol[m] > 0.0;
        p.populated[m] = populated;
        if populated {
            let r = count_median_radius(p.dry_vol[m], s.n[m], k.ram2cmr[m]);
            p.r_dry[m] = r;
            p.r_wet[m] = r;
            p.density[m] = p.dry_mass[m] / p.dry_vol[m];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::{AVOGADRO, M_H2SO4, mean_volume};

    #[test]
    fn radius_reproduces_the_mean_volume_of_the_lognormal() {
        // A KS mode of pure sulfate: N particles of count-median radius r must hold
        // N · (4/3)π r³ exp(4.5 ln²σ) of volume.
        let r = 20e-7; // 20 nm
        let n = 1000.0;
        let vol = n * mean_volume(Mode::Ks, r);
        let molecules = vol * Species::So4.density() / (M_H2SO4 / AVOGADRO);
        let s = AerosolState {
            so4: [0.0, molecules, 0.0, 0.0],
            n: [0.0, n, 0.0, 0.0, 0.0, 0.0, 0.0],
            ..Default::default()
        };
        let mut p = ModeProperties::default();
        dry_properties(&s, &mut p);
        assert!(p.populated[1] && !p.populated[0] && !p.populated[4]);
        assert!((p.r_dry[1] / r - 1.0).abs() < 1e-12, "{}", p.r_dry[1]);
        assert!((p.density[1] - 1.841).abs() < 1e-12);
    }

    #[test]
    fn mixed_mode_density_is_volume_weighted() {
        // 1 µg m-3 BC + 1 µg m-3 dust in AS: density = 2 / (1/2 + 1/2.65).
        let s = AerosolState {
            bc: [0.0, 1.0, 0.0, 0.0],
            du: [1.0, 0.0, 0.0, 0.0],
            n: [0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0],
            ..Default::default()
        };
        let mut p = ModeProperties::default();
        dry_properties(&s, &mut p);
        let expect = 2.0 / (1.0 / 2.0 + 1.0 / 2.65);
        assert!((p.density[2] - expect).abs() < 1e-12);
        assert_eq!(p.kappa_vol[2], 0.0);
    }

    #[test]
    fn below_thresholds_a_mode_is_empty() {
        let s = AerosolState {
            so4: [1e-16, 0.0, 0.0, 0.0],
            n: [1.0, 1e-11, 0.0, 0.0, 0.0, 0.0, 0.0],
            bc: [1.0, 0.0, 0.0, 0.0],
            ..Default::default()
        };
        let mut p = ModeProperties::default();
        dry_properties(&s, &mut p);
        assert!(!p.populated[0] && !p.populated[1]);
        assert_eq!(p.r_dry[0], 0.0);
    }

    #[test]
    fn sea_salt_and_sulfate_form_sodium_sulfate() {
        // AS: 1 µmol NaCl and 0.25 µmol H2SO4 per cm³ → 0.25 Na2SO4 + 0.5 NaCl, no H2SO4 left.
        let nacl_ug_m3 = 1e-6 * M_NACL / UG_M3_TO_G_CM3;
        let so4 = 0.25e-6 * crate::constants::AVOGADRO;
        let s = AerosolState {
            so4: [0.0, 0.0, so4, 0.0],
            ss: [nacl_ug_m3, 0.0],
            bc: [0.0, 1.0, 0.0, 0.0],
            n: [0.0, 0.0, 10.0, 10.0, 0.0, 0.0, 0.0],
            du: [0.0, 1.0, 0.0, 0.0],
            ..Default::default()
        };
        let mut p = ModeProperties::default();
        dry_properties_fidelity(&s, &mut p, Fidelity::Clean);
        let el = 0.25e-6 * M_NA2SO4 / RHO_NA2SO4 + 0.5e-6 * M_NACL / Species::Ss.density();
        let bc = 1.0 * UG_M3_TO_G_CM3 / Species::Bc.density();
        assert!((p.dry_vol[2] / (el + bc) - 1.0).abs() < 1e-12);
        assert!((p.na2so4_mol[2] / 0.25e-6 - 1.0).abs() < 1e-12 && p.so4_mol[2] == 0.0);
        assert!((p.nacl_mol[2] / 0.5e-6 - 1.0).abs() < 1e-12);
        // CS holds only dust under `clean`; ECHAM-HAM carries AS's BC volume and mass into CS.
        let du = 1.0 * UG_M3_TO_G_CM3 / Species::Du.density();
        assert!((p.dry_vol[3] / du - 1.0).abs() < 1e-12);
        let mut q = ModeProperties::default();
        dry_properties_fidelity(&s, &mut q, Fidelity::EchamHam);
        assert!((q.dry_vol[3] / (du + bc) - 1.0).abs() < 1e-12);
        assert!((q.dry_mass[3] / (2.0 * UG_M3_TO_G_CM3) - 1.0).abs() < 1e-12);
        assert_eq!(q.dry_vol[2], p.dry_vol[2]);
    }
}
