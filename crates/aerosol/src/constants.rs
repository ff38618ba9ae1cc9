//! Physical constants and M7's mode and species tables (Vignati et al. 2004; ECHAM-HAM M7).
//!
//! Units are cgs (cm, g, s, erg) unless a name says otherwise, because M7 states radii in cm,
//! densities in g cm⁻³ and number concentrations in cm⁻³.

/// Avogadro constant \[mol⁻¹\].
pub const AVOGADRO: f64 = 6.022_140_76e23;
/// Boltzmann constant \[erg K⁻¹\].
pub const BOLTZMANN: f64 = 1.380_649e-16;
/// Molar gas constant \[erg mol⁻¹ K⁻¹\].
pub const GAS_CONSTANT: f64 = 8.314_462_618e7;
/// Molar mass of dry air \[g mol⁻¹\].
pub const M_AIR: f64 = 28.9647;
/// Molar mass of H2SO4 \[g mol⁻¹\] (M7 keeps sulfate as H2SO4 molecules).
pub const M_H2SO4: f64 = 98.0734;
/// Molar mass of NaCl \[g mol⁻¹\] (sea salt).
pub const M_NACL: f64 = 58.443;
/// Density of Na2SO4 \[g cm⁻³\].
pub const RHO_NA2SO4: f64 = 2.68;
/// Molar mass of Na2SO4 \[g mol⁻¹\].
pub const M_NA2SO4: f64 = 142.043;
/// Molar mass of water \[g mol⁻¹\].
pub const M_WATER: f64 = 18.015;
/// Density of liquid water \[g cm⁻³\].
pub const RHO_WATER: f64 = 1.0;
/// Surface tension of water used in the Kelvin term \[erg cm⁻² = dyn cm⁻¹\].
pub const SIGMA_WATER: f64 = 72.0;
/// Cross-section of one adsorbed H2SO4 molecule \[cm²\] (M7's `csurf_molec`).
pub const H2SO4_CROSS_SECTION: f64 = 2.39e-15;
/// Minimum aerosol mass M7 treats as present (mode-species units).
pub const CMIN_MASS: f64 = 1e-15;
/// Minimum aerosol number M7 treats as present \[cm⁻³\].
pub const CMIN_NUMBER: f64 = 1e-10;
/// Grams of H2SO4 per molecule.
pub const G_PER_MOLECULE_H2SO4: f64 = M_H2SO4 / AVOGADRO;
/// µg m⁻³ → g cm⁻³.
pub const UG_M3_TO_G_CM3: f64 = 1e-12;
/// g cm⁻³ (of air) → kg m⁻³.
pub const G_CM3_TO_KG_M3: f64 = 1e3;

/// Aerosol species of M7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Species {
    /// Sulfate, carried as H2SO4 molecules \[molecules cm⁻³\].
    So4,
    /// Black carbon \[µg m⁻³\].
    Bc,
    /// Organic carbon \[µg m⁻³\].
    Oc,
    /// Sea salt (NaCl) \[µg m⁻³\].
    Ss,
    /// Mineral dust \[µg m⁻³\].
    Du,
}

impl Species {
    /// All species in M7's order.
    pub const ALL: [Species; 5] = [Species::So4, Species::Bc, Species::Oc, Species::Ss, Species::Du];

    /// Bulk density \[g cm⁻³\] (the values of M7, Vignati et al. 2004, as in the ECHAM-HAM M7 code).
    pub const fn density(self) -> f64 {
        match self {
            Species::So4 => 1.841,
            Species::Bc => 2.0,
            Species::Oc => 2.0,
            Species::Ss => 2.165,
            Species::Du => 2.65,
        }
    }

    /// Hygroscopicity κ (Petters and Kreidenweis 2007) as used by M7's κ-Köhler option.
    pub const fn kappa(self) -> f64 {
        match self {
            Species::So4 => 0.60,
            Species::Bc => 0.0,
            Species::Oc => 0.06,
            Species::Ss => 1.12,
            Species::Du => 0.0,
        }
    }

    /// Short lowercase name.
    pub const fn name(self) -> &'static str {
        match self {
            Species::So4 => "so4",
            Species::Bc => "bc",
            Species::Oc => "oc",
            Species::Ss => "ss",
            Species::Du => "du",
        }
    }

    /// Unit of the species' concentration at the M7 interface.
    pub const fn unit(self) -> &'static str {
        match self {
            Species::So4 => "molecules cm-3",
            _ => "ug m-3",
        }
    }
}

/// The seven log-normal modes of M7, in M7's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Nucleation, soluble.
    Ns = 0,
    /// Aitken, soluble.
    Ks = 1,
    /// Accumulation, soluble.
    As = 2,
    /// Coarse, soluble.
    Cs = 3,
    /// Aitken, insoluble.
    Ki = 4,
    /// Accumulation, insoluble.
    Ai = 5,
    /// Coarse, insoluble.
    Ci = 6,
}

/// Number of modes.
pub const N_MODES: usize = 7;
/// Number of soluble modes (the first four).
pub const N_SOLUBLE: usize = 4;

impl Mode {
    /// All modes in M7's order.
    pub const ALL: [Mode; 7] = [Mode::Ns, Mode::Ks, Mode::As, Mode::Cs, Mode::Ki, Mode::Ai, Mode::Ci];

    /// Index 0..7.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether the mode is soluble (internally mixed with sulfate).
    pub const fn soluble(self) -> bool {
        (self as usize) < N_SOLUBLE
    }

    /// Geometric standard deviation σ.
    pub const fn sigma(self) -> f64 {
        match self {
            Mode::Cs | Mode::Ci => 2.0,
            _ => 1.59,
        }
    }

    /// Lower and upper boundary of the count-median radius range \[cm\] (0.5, 5, 50, 500 nm).
    pub const fn bounds(self) -> (f64, f64) {
        match self {
            Mode::Ns => (0.5e-7, 5e-7),
            Mode::Ks | Mode::Ki => (5e-7, 50e-7),
            Mode::As | Mode::Ai => (50e-7, 500e-7),
            Mode::Cs | Mode::Ci => (500e-7, f64::INFINITY),
        }
    }

    /// H2SO4 mass accommodation coefficient (1.0 soluble, 0.3 insoluble).
    pub const fn accommodation(self) -> f64 {
        if self.soluble() { 1.0 } else { 0.3 }
    }

    /// The soluble mode an insoluble mode's particles join once coated (KI→KS, AI→AS, CI→CS);
    /// soluble modes map to themselves.
    pub const fn soluble_counterpart(self) -> Mode {
        match self {
            Mode::Ki => Mode::Ks,
            Mode::Ai => Mode::As,
            Mode::Ci => Mode::Cs,
            m => m,
        }
    }

    /// Lowercase name, e.g. `"ks"`.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Ns => "ns",
            Mode::Ks => "ks",
            Mode::As => "as",
            Mode::Cs => "cs",
            Mode::Ki => "ki",
            Mode::Ai => "ai",
            Mode::Ci => "ci",
        }
    }
}

/// ln σ per mode.
pub fn ln_sigma(mode: Mode) -> f64 {
    mode.sigma().ln()
}

/// Ratio count-median radius / radius of average mass, exp(−1.5 ln²σ).
pub fn ram_to_cmr(mode: Mode) -> f64 {
    let l = ln_sigma(mode);
    (-1.5 * l * l).exp()
}

/// Ratio radius of average surface / count-median radius, exp(ln²σ).
pub fn cmr_to_ras(mode: Mode) -> f64 {
    let l = ln_sigma(mode);
    (l * l).exp()
}

/// Mean particle volume of a log-normal mode with count-median radius `r` \[cm\]:
/// (4/3)π r³ exp(4.5 ln²σ).
pub fn mean_volume(mode: Mode, r: f64) -> f64 {
    let l = ln_sigma(mode);
    4.0 / 3.0 * std::f64::consts::PI * r * r * r * (4.5 * l * l).exp()
}
