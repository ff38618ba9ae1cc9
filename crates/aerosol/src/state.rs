//! The one-cell state, environment and diagnostics, in M7's own units and order.
//!
//! | quantity | unit |
//! |---|---|
//! | pressure | Pa |
//! | temperature | K |
//! | relative humidity | fraction, 0..1 |
//! | H2SO4 gas, sulfate masses | molecules cm⁻³ (H2SO4 molecules) |
//! | BC, OC, sea salt, dust masses | µg m⁻³ |
//! | numbers | cm⁻³ |
//! | H2SO4 production | molecules cm⁻³ s⁻¹ |
//! | ionisation rate | ion pairs cm⁻³ s⁻¹ |
//! | radii | cm (count-median) |
//! | particle densities | g cm⁻³ |
//! | aerosol water | kg m⁻³ (as M7's `pww`) |
//!
//! ## Physical bounds
//!
//! [`Environment::validate`] and [`AerosolState::validate`] (and with them the `m7-step` file
//! interface) refuse a value outside these bounds, naming the row, the column and the range.
//! The caps are set far above anything the atmosphere, the M7 reference cells
//! (`shared/data/m7-reference`, 1500 cells: input and output maxima in the third column) or this
//! crate's [`sampler`](crate::sampler) produce, so that they only catch values that are not
//! physical (a unit mix-up, an uninitialised or overflowed number): inside them the box model's
//! outputs stay finite.
//!
//! | column | allowed | largest in the reference cells |
//! |---|---|---|
//! | pressure | 0 < p ≤ 1.2e5 Pa | 1.01e5 |
//! | temperature | 150 ≤ T ≤ 350 K | 305 |
//! | RH, cloud cover, forest fraction | 0 … 1 | 0.9, 1, 1 |
//! | H2SO4 production | 0 … [`MAX_H2SO4_PRODUCTION`] = 1e9 cm⁻³ s⁻¹ (the sampler's own upper limit, `production_log10` < 9) | 1.0e5 |
//! | ionisation | 0 … [`MAX_IONISATION`] = 1e4 cm⁻³ s⁻¹ (atmospheric rates are 2–50) | 20 |
//! | H2SO4 gas | 0 … [`MAX_H2SO4_GAS`] = 1e13 molecules cm⁻³ (100 × the upper validity limit 1e11 of the Vehkamäki et al. 2002 nucleation fit) | 1.2e8 |
//! | sulfate masses | 0 … [`MAX_SULFATE`] = 1e17 molecules cm⁻³ (≈ 1.6e7 µg m⁻³) | 1.9e14 (≈ 3.1e4 µg m⁻³) |
//! | BC, OC, sea-salt, dust masses | 0 … [`MAX_MASS`] = 1e7 µg m⁻³ (10 g m⁻³, ~1 % of the air's own mass) | 3.9e4 |
//! | numbers | 0 … [`MAX_NUMBER`] = 1e10 cm⁻³ | 7.9e6 (N_NS after nucleation) |
//!
//! Every value must also be finite. The bounds are per column: a large mass on a tiny but
//! populated number (N just above M7's 1e-10 cm⁻³) still gives a large mean radius.

use crate::constants::{Mode, N_MODES, N_SOLUBLE, Species};
use crate::error::{Error, Result};

/// Non-aerosol inputs of one cell.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Environment {
    /// Pressure \[Pa\].
    pub pressure: f64,
    /// Temperature \[K\].
    pub temperature: f64,
    /// Relative humidity over water, a fraction in \[0, 1\].
    pub rh: f64,
    /// Gas-phase H2SO4 production rate \[molecules cm⁻³ s⁻¹\].
    pub h2so4_production: f64,
    /// Ionisation (ion-pair production) rate \[cm⁻³ s⁻¹\]. Carried for M7 compatibility; the
    /// Vehkamäki scheme does not use it.
    pub ionisation: f64,
    /// Cloud cover \[0, 1\].
    pub cloud_cover: f64,
    /// Forest fraction of the column \[0, 1\] (scales activation nucleation).
    pub forest_fraction: f64,
    /// Whether the cell lies in the planetary boundary layer.
    pub boundary_layer: bool,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            pressure: 101_325.0,
            temperature: 288.15,
            rh: 0.5,
            h2so4_production: 0.0,
            ionisation: 2.0,
            cloud_cover: 0.0,
            forest_fraction: 0.0,
            boundary_layer: false,
        }
    }
}

/// Aerosol and H2SO4 gas state of one cell, M7 species placement.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct AerosolState {
    /// Gas-phase H2SO4 \[molecules cm⁻³\].
    pub h2so4: f64,
    /// Sulfate in NS, KS, AS, CS \[molecules cm⁻³\].
    pub so4: [f64; 4],
    /// Black carbon in KS, AS, CS, KI \[µg m⁻³\].
    pub bc: [f64; 4],
    /// Organic carbon in KS, AS, CS, KI \[µg m⁻³\].
    pub oc: [f64; 4],
    /// Sea salt in AS, CS \[µg m⁻³\].
    pub ss: [f64; 2],
    /// Dust in AS, CS, AI, CI \[µg m⁻³\].
    pub du: [f64; 4],
    /// Number concentrations NS, KS, AS, CS, KI, AI, CI \[cm⁻³\].
    pub n: [f64; 7],
}

/// Diagnosed mode properties, as M7 returns them.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Diagnostics {
    /// Ambient (wet) count-median radius per mode \[cm\]; equals the dry radius for insoluble modes.
    pub r_wet: [f64; 7],
    /// Dry count-median radius per mode \[cm\].
    pub r_dry: [f64; 7],
    /// Mean particle density per mode, water included \[g cm⁻³\].
    pub density: [f64; 7],
    /// Aerosol water of the soluble modes NS, KS, AS, CS \[kg m⁻³\].
    pub water: [f64; 4],
}

/// Largest accepted H2SO4 production rate \[molecules cm⁻³ s⁻¹\] (see the module docs).
pub const MAX_H2SO4_PRODUCTION: f64 = 1e9;
/// Largest accepted ionisation rate \[ion pairs cm⁻³ s⁻¹\].
pub const MAX_IONISATION: f64 = 1e4;
/// Largest accepted gas-phase H2SO4 \[molecules cm⁻³\].
pub const MAX_H2SO4_GAS: f64 = 1e13;
/// Largest accepted sulfate mass of a mode \[molecules cm⁻³\].
pub const MAX_SULFATE: f64 = 1e17;
/// Largest accepted BC, OC, sea-salt or dust mass of a mode \[µg m⁻³\].
pub const MAX_MASS: f64 = 1e7;
/// Largest accepted number concentration of a mode \[cm⁻³\].
pub const MAX_NUMBER: f64 = 1e10;

/// Where a species' mass sits: `(slot in its array, mode)`.
pub const SO4_MODES: [Mode; 4] = [Mode::Ns, Mode::Ks, Mode::As, Mode::Cs];
/// Modes of the BC slots.
pub const BC_MODES: [Mode; 4] = [Mode::Ks, Mode::As, Mode::Cs, Mode::Ki];
/// Modes of the OC slots.
pub const OC_MODES: [Mode; 4] = [Mode::Ks, Mode::As, Mode::Cs, Mode::Ki];
/// Modes of the sea-salt slots.
pub const SS_MODES: [Mode; 2] = [Mode::As, Mode::Cs];
/// Modes of the dust slots.
pub const DU_MODES: [Mode; 4] = [Mode::As, Mode::Cs, Mode::Ai, Mode::Ci];

/// The 18 mass tracers in M7's order: each species with the modes it lives in.
pub const MASS_TRACERS: [(Species, &[Mode]); 5] = [
    (Species::So4, &SO4_MODES),
    (Species::Bc, &BC_MODES),
    (Species::Oc, &OC_MODES),
    (Species::Ss, &SS_MODES),
    (Species::Du, &DU_MODES),
];

/// Names of the 18 masses in M7's order (`so4_ns`, …, `du_ci`).
pub fn mass_names() -> Vec<String> {
    MASS_TRACERS
        .iter()
        .flat_map(|(sp, modes)| modes.iter().map(move |m| format!("{}_{}", sp.name(), m.name())))
        .collect()
}

/// Number of aerosol mass tracers (18).
pub const N_MASSES: usize = 18;
/// Number of state variables including sea salt: H2SO4 + 18 masses + 7 numbers.
pub const N_STATE_FULL: usize = 1 + N_MASSES + N_MODES;

/// Slot index of `mode` in a species array, if the species lives there.
pub fn slot(modes: &[Mode], mode: Mode) -> Option<usize> {
    modes.iter().position(|&m| m == mode)
}

impl AerosolState {
    /// The 18 masses in M7's order: SO4(NS,KS,AS,CS), BC(KS,AS,CS,KI), OC(KS,AS,CS,KI),
    /// SS(AS,CS), DU(AS,CS,AI,CI).
    pub fn masses(&self) -> [f64; N_MASSES] {
        let mut m = [0.0; N_MASSES];
        m[0..4].copy_from_slice(&self.so4);
        m[4..8].copy_from_slice(&self.bc);
        m[8..12].copy_from_slice(&self.oc);
        m[12..14].copy_from_slice(&self.ss);
        m[14..18].copy_from_slice(&self.du);
        m
    }

    /// Sets the 18 masses from M7's order.
    pub fn set_masses(&mut self, m: &[f64]) {
        self.so4.copy_from_slice(&m[0..4]);
        self.bc.copy_from_slice(&m[4..8]);
        self.oc.copy_from_slice(&m[8..12]);
        self.ss.copy_from_slice(&m[12..14]);
        self.du.copy_from_slice(&m[14..18]);
    }

    /// Total sulfur (gas + aerosol) \[molecules cm⁻³\].
    pub fn total_sulfur(&self) -> f64 {
        self.h2so4 + self.so4.iter().sum::<f64>()
    }

    /// Checks that every entry is finite, non-negative and at most its cap ([`MAX_H2SO4_GAS`],
    /// [`MAX_SULFATE`], [`MAX_MASS`], [`MAX_NUMBER`]; see the module docs); `row` is reported
    /// in the error.
    pub fn validate(&self, row: usize) -> Result<()> {
        let check = |name: &str, v: f64, max: f64, unit: &str| -> Result<()> {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return Err(Error::NonPhysical {
                    row,
                    column: name.to_string(),
                    value: v,
                    allowed: format!("finite, 0 <= value <= {max:e} {unit}"),
                });
            }
            Ok(())
        };
        check("h2so4", self.h2so4, MAX_H2SO4_GAS, "molecules cm-3")?;
        let names = mass_names();
        for ((v, name), sp) in self.masses().iter().zip(names.iter()).zip(SLOT_SPECIES) {
            let max = if sp == Species::So4 { MAX_SULFATE } else { MAX_MASS };
            check(name, *v, max, sp.unit())?;
        }
        for (m, v) in Mode::ALL.iter().zip(self.n.iter()) {
            check(&format!("n_{}", m.name()), *v, MAX_NUMBER, "cm-3")?;
        }
        Ok(())
    }
}

impl Environment {
    /// Checks physical ranges: pressure in (0, 1.2e5] Pa, temperature in \[150, 350\] K,
    /// RH in \[0, 1\], H2SO4 production in \[0, [`MAX_H2SO4_PRODUCTION`]\], ionisation in
    /// \[0, [`MAX_IONISATION`]\], cloud cover and forest fraction in \[0, 1\] (see the module
    /// docs).
    pub fn validate(&self, row: usize) -> Result<()> {
        let bad = |col: &str, v: f64, allowed: &str| Error::NonPhysical {
            row,
            column: col.to_string(),
            value: v,
            allowed: allowed.to_string(),
        };
        let in_range = |v: f64, lo: f64, hi: f64| v.is_finite() && v >= lo && v <= hi;
        if !(self.pressure.is_finite() && self.pressure > 0.0 && self.pressure <= 1.2e5) {
            return Err(bad("pressure", self.pressure, "0 < p <= 1.2e5 Pa"));
        }
        if !in_range(self.temperature, 150.0, 350.0) {
            return Err(bad("temperature", self.temperature, "150 K <= T <= 350 K"));
        }
        if !in_range(self.rh, 0.0, 1.0) {
            return Err(bad("rh", self.rh, "0 <= RH <= 1 (a fraction, not percent)"));
        }
        if !in_range(self.h2so4_production, 0.0, MAX_H2SO4_PRODUCTION) {
            let allowed = format!("0 <= production <= {MAX_H2SO4_PRODUCTION:e} molecules cm-3 s-1");
            return Err(bad("h2so4_production", self.h2so4_production, &allowed));
        }
        if !in_range(self.ionisation, 0.0, MAX_IONISATION) {
            return Err(bad("ionisation", self.ionisation, &format!("0 <= ionisation <= {MAX_IONISATION:e} cm-3 s-1")));
        }
        if !in_range(self.cloud_cover, 0.0, 1.0) {
            return Err(bad("cloud_cover", self.cloud_cover, "0 <= cloud cover <= 1"));
        }
        if !in_range(self.forest_fraction, 0.0, 1.0) {
            return Err(bad("forest_fraction", self.forest_fraction, "0 <= forest fraction <= 1"));
        }
        Ok(())
    }
}

impl Diagnostics {
    /// Water per soluble mode as an array indexed like [`SO4_MODES`].
    pub fn water_soluble(&self) -> [f64; N_SOLUBLE] {
        self.water
    }
}

/// Species of each of the 18 flat mass slots (M7 order, see [`AerosolState::masses`]).
pub const SLOT_SPECIES: [Species; N_MASSES] = {
    use crate::constants::Species::*;
    [So4, So4, So4, So4, Bc, Bc, Bc, Bc, Oc, Oc, Oc, Oc, Ss, Ss, Du, Du, Du, Du]
};

/// Flat mass slots of each mode (indices into [`AerosolState::masses`]).
pub const MODE_SLOTS: [&[usize]; N_MODES] =
    [&[0], &[1, 4, 8], &[2, 5, 9, 12, 14], &[3, 6, 10, 13, 15], &[7, 11], &[16], &[17]];

/// The flat slot holding `species` in `mode`, if M7 places that species there.
pub const fn slot_of(species: Species, mode: Mode) -> Option<usize> {
    use crate::constants::Species::*;
    let m = mode as usize;
    match species {
        So4 => {
            if m < 4 {
                Some(m)
            } else {
                None
            }
        }
        Bc | Oc => {
            let base = if matches!(species, Bc) { 4 } else { 8 };
            match m {
                1 => Some(base),
                2 => Some(base + 1),
                3 => Some(base + 2),
                4 => Some(base + 3),
                _ => None,
            }
        }
        Ss => match m {
            2 => Some(12),
            3 => Some(13),
            _ => None,
        },
        Du => match m {
            2 => Some(14),
            3 => Some(15),
            5 => Some(16),
            6 => Some(17),
            _ => None,
        },
    }
}

/// For each slot of mode `from`, the slot of the same species in mode `to`.
///
/// # Panics
/// If `to` lacks one of `from`'s species (never the case for M7's transfers).
#[track_caller]
pub fn destination_slot(slot: usize, to: Mode) -> usize {
    slot_of(SLOT_SPECIES[slot], to).expect("M7 transfers only between modes holding the species")
}
