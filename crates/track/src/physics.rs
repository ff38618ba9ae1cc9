//! Proton interaction physics: Bethe–Bloch stopping power, CSDA range tables, Bohr energy
//! straggling, Highland–Lynch–Dahl multiple Coulomb scattering and thin-layer (Landau/Moyal)
//! energy deposits.
//!
//! Units: energies in MeV, lengths in mm unless a name says `g_cm2` (areal density).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Proton rest energy [MeV].
pub const PROTON_MASS_MEV: f64 = 938.272;
/// Electron rest energy [MeV].
pub const ELECTRON_MASS_MEV: f64 = 0.510_998_95;
/// Bethe–Bloch constant K = 4π N_A r_e² m_e c² [MeV cm²/mol].
pub const BETHE_K: f64 = 0.307_075;
/// Highland constant [MeV].
pub const HIGHLAND_MEV: f64 = 13.6;

/// A homogeneous material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    /// Density [g/cm³].
    pub density_g_cm3: f64,
    /// Mean ratio of atomic number to atomic mass ⟨Z/A⟩ [mol/g].
    pub z_over_a: f64,
    /// Mean excitation energy I [eV].
    pub mean_excitation_ev: f64,
    /// Radiation length X0 [g/cm²].
    pub radiation_length_g_cm2: f64,
    /// Nuclear (inelastic) interaction length λ_I [g/cm²] for high-energy protons.
    pub nuclear_interaction_length_g_cm2: f64,
}

impl Material {
    /// Liquid water (PSTAR: I = 75 eV).
    pub fn water() -> Self {
        Material {
            density_g_cm3: 1.0,
            z_over_a: 0.555_087,
            mean_excitation_ev: 75.0,
            radiation_length_g_cm2: 36.08,
            nuclear_interaction_length_g_cm2: 83.3,
        }
    }

    /// Check that every field is physical.
    pub fn validate(&self, name: &str) -> Result<()> {
        let checks = [
            ("density_g_cm3", self.density_g_cm3, "a density > 0 g/cm³"),
            ("z_over_a", self.z_over_a, "0 < Z/A <= 1"),
            ("mean_excitation_ev", self.mean_excitation_ev, "I > 0 eV"),
            ("radiation_length_g_cm2", self.radiation_length_g_cm2, "X0 > 0 g/cm²"),
            ("nuclear_interaction_length_g_cm2", self.nuclear_interaction_length_g_cm2, "λ_I > 0 g/cm²"),
        ];
        for (field, v, allowed) in checks {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(format!("materials.{name}.{field}"), v, allowed));
            }
        }
        if self.z_over_a > 1.0 {
            return Err(Error::invalid(format!("materials.{name}.z_over_a"), self.z_over_a, "0 < Z/A <= 1"));
        }
        Ok(())
    }

    /// Radiation length in mm.
    pub fn radiation_length_mm(&self) -> f64 {
        self.radiation_length_g_cm2 / self.density_g_cm3 * 10.0
    }
}

/// Relativistic kinematics of a proton with kinetic energy `e` [MeV]: (β², γ, p·β·c [MeV]).
#[inline]
pub fn kinematics(e: f64) -> (f64, f64, f64) {
    let gamma = 1.0 + e / PROTON_MASS_MEV;
    let beta2 = 1.0 - 1.0 / (gamma * gamma);
    // pβc = E(E + 2m)/(E + m)
    let pbc = e * (e + 2.0 * PROTON_MASS_MEV) / (e + PROTON_MASS_MEV);
    (beta2, gamma, pbc)
}

/// Maximum energy transfer to a free electron in one collision [MeV].
#[inline]
pub fn t_max(e: f64) -> f64 {
    let (beta2, gamma, _) = kinematics(e);
    let r = ELECTRON_MASS_MEV / PROTON_MASS_MEV;
    2.0 * ELECTRON_MASS_MEV * beta2 * gamma * gamma / (1.0 + 2.0 * gamma * r + r * r)
}

/// Bethe–Bloch mass stopping power [MeV cm²/g] (no shell, Barkas or density corrections;
/// these change the CSDA range of 70–230 MeV protons in water by well under 1 %).
pub fn bethe_mass_stopping_power(m: &Material, e: f64) -> f64 {
    let (beta2, gamma, _) = kinematics(e);
    let i = m.mean_excitation_ev * 1e-6;
    let tm = t_max(e);
    let arg = 2.0 * ELECTRON_MASS_MEV * beta2 * gamma * gamma * tm / (i * i);
    BETHE_K * m.z_over_a / beta2 * (0.5 * arg.ln() - beta2)
}

/// CSDA range–energy table of one material, built by integrating 1/S(E) of Bethe–Bloch.
///
/// Below `E_LOW` (where Bethe–Bloch fails) the stopping power is continued as S ∝ √E, which
/// affects ranges by less than 0.05 mm of water.
#[derive(Debug, Clone)]
pub struct RangeTable {
    ln_e0: f64,
    d_ln_e: f64,
    /// ln of the CSDA range [g/cm²] at each grid energy.
    ln_r: Vec<f64>,
    /// Mass stopping power at each grid energy [MeV cm²/g].
    s: Vec<f64>,
    density: f64,
}

const E_MIN: f64 = 1e-3;
const E_MAX: f64 = 1000.0;
const E_LOW: f64 = 0.5;
const N_GRID: usize = 3000;

impl RangeTable {
    /// Build the table for `m`.
    pub fn new(m: &Material) -> Self {
        let ln_e0 = E_MIN.ln();
        let d_ln_e = (E_MAX.ln() - ln_e0) / (N_GRID - 1) as f64;
        let s_low = bethe_mass_stopping_power(m, E_LOW);
        let stopping = |e: f64| {
            if e >= E_LOW { bethe_mass_stopping_power(m, e) } else { s_low * (e / E_LOW).sqrt() }
        };
        let mut s = Vec::with_capacity(N_GRID);
        let mut r = Vec::with_capacity(N_GRID);
        // Exact range below E_MIN for S = c √E: R = 2E/S.
        let mut range = 2.0 * E_MIN / stopping(E_MIN);
        let mut prev_e = E_MIN;
        for k in 0..N_GRID {
            let e = (ln_e0 + d_ln_e * k as f64).exp();
            if k > 0 {
                // Simpson on [prev_e, e] of dE/S(E).
                let mid = 0.5 * (prev_e + e);
                range += (e - prev_e) / 6.0 * (1.0 / stopping(prev_e) + 4.0 / stopping(mid) + 1.0 / stopping(e));
            }
            s.push(stopping(e));
            r.push(range.ln());
            prev_e = e;
        }
        RangeTable { ln_e0, d_ln_e, ln_r: r, s, density: m.density_g_cm3 }
    }

    /// Density of the material [g/cm³].
    pub fn density(&self) -> f64 {
        self.density
    }

    #[inline]
    fn locate(&self, e: f64) -> (usize, f64) {
        let u = ((e.max(E_MIN).ln() - self.ln_e0) / self.d_ln_e).clamp(0.0, (N_GRID - 1) as f64 - 1e-9);
        let k = u as usize;
        (k, u - k as f64)
    }

    /// CSDA range [g/cm²] at energy `e` [MeV].
    #[inline]
    pub fn range_g_cm2(&self, e: f64) -> f64 {
        if e <= 0.0 {
            return 0.0;
        }
        if e < E_MIN {
            // S ∝ √E below the grid → R ∝ √E.
            return self.ln_r[0].exp() * (e / E_MIN).sqrt();
        }
        let (k, f) = self.locate(e);
        (self.ln_r[k] * (1.0 - f) + self.ln_r[k + 1] * f).exp()
    }

    /// CSDA range [mm] at energy `e` [MeV].
    #[inline]
    pub fn range_mm(&self, e: f64) -> f64 {
        self.range_g_cm2(e) / self.density * 10.0
    }

    /// Mass stopping power [MeV cm²/g] at `e` (interpolated in the table).
    #[inline]
    pub fn mass_stopping_power(&self, e: f64) -> f64 {
        let (k, f) = self.locate(e);
        self.s[k] * (1.0 - f) + self.s[k + 1] * f
    }

    /// Linear stopping power [MeV/mm].
    #[inline]
    pub fn stopping_power_mev_mm(&self, e: f64) -> f64 {
        self.mass_stopping_power(e) * self.density * 0.1
    }

    /// Kinetic energy [MeV] whose CSDA range is `r` [g/cm²] (inverse of [`range_g_cm2`](Self::range_g_cm2)).
    pub fn energy_from_range_g_cm2(&self, r: f64) -> f64 {
        if r <= 0.0 {
            return 0.0;
        }
        let lr = r.ln();
        if lr <= self.ln_r[0] {
            // R = 2E/S with S = c√E → R ∝ √E.
            return E_MIN * (r / self.ln_r[0].exp()).powi(2);
        }
        let n = self.ln_r.len();
        if lr >= self.ln_r[n - 1] {
            return E_MAX;
        }
        // Binary search for the bracketing interval.
        let k = self.ln_r.partition_point(|&v| v <= lr) - 1;
        let f = (lr - self.ln_r[k]) / (self.ln_r[k + 1] - self.ln_r[k]);
        (self.ln_e0 + self.d_ln_e * (k as f64 + f)).exp()
    }

    /// Mean energy after a path of `path_mm` from energy `e` (0 if the proton stops).
    #[inline]
    pub fn energy_after_mm(&self, e: f64, path_mm: f64) -> f64 {
        let r = self.range_g_cm2(e) - path_mm * 0.1 * self.density;
        self.energy_from_range_g_cm2(r)
    }
}

/// Bohr energy-loss straggling variance [MeV²] over `path_mm` of `m` at energy `e`
/// (with the relativistic factor (1 − β²/2)/(1 − β²)).
#[inline]
pub fn bohr_variance(m: &Material, e: f64, path_mm: f64) -> f64 {
    let (beta2, _, _) = kinematics(e);
    let x = m.density_g_cm3 * path_mm * 0.1; // g/cm²
    BETHE_K * ELECTRON_MASS_MEV * m.z_over_a * x * (1.0 - 0.5 * beta2) / (1.0 - beta2)
}

/// Highland–Lynch–Dahl projected RMS angle [rad] after `x_over_x0` radiation lengths at
/// fixed momentum with p·β·c = `pbc` [MeV].
#[inline]
pub fn highland_theta0(pbc: f64, x_over_x0: f64) -> f64 {
    if x_over_x0 <= 0.0 {
        return 0.0;
    }
    HIGHLAND_MEV / pbc * x_over_x0.sqrt() * (1.0 + 0.038 * x_over_x0.ln())
}

/// Accumulator for multiple Coulomb scattering along a path with varying momentum and
/// materials, following the Lynch–Dahl prescription: θ0² = 13.6² · [1 + 0.038 ln t]² · ∫ dt/(pβc)²
/// with t the total path in radiation lengths. Each step gets the *increment* of θ0², so the
/// result does not depend on the step size and reduces to Highland for one slab.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScatteringAccumulator {
    /// Total path in radiation lengths.
    pub t: f64,
    /// ∫ dt / (pβc)² [MeV⁻²].
    pub integral: f64,
}

impl ScatteringAccumulator {
    /// θ0² accumulated so far [rad²].
    #[inline]
    pub fn theta0_sq(&self) -> f64 {
        if self.t <= 0.0 {
            return 0.0;
        }
        let f = (1.0 + 0.038 * self.t.ln()).max(0.0);
        HIGHLAND_MEV * HIGHLAND_MEV * f * f * self.integral
    }

    /// Add a step of `dt` radiation lengths at p·β·c = `pbc`; returns the increment of θ0² [rad²].
    #[inline]
    pub fn step(&mut self, dt: f64, pbc: f64) -> f64 {
        let before = self.theta0_sq();
        self.t += dt;
        self.integral += dt / (pbc * pbc);
        (self.theta0_sq() - before).max(0.0)
    }
}

/// Landau-regime parameters of the energy deposit in a thin layer.
#[derive(Debug, Clone, Copy)]
pub struct ThinLayer {
    /// ξ = (K/2)(Z/A)(x/β²) [MeV].
    pub xi: f64,
    /// Most probable energy loss Δ_p (PDG eq. 34.12, no density correction) [MeV].
    pub most_probable: f64,
    /// κ = ξ / T_max; Landau regime for κ ≲ 0.05, Gaussian for κ ≳ 10.
    pub kappa: f64,
}

/// Thin-layer parameters for thickness `thickness_mm` of `m` at energy `e`.
pub fn thin_layer(m: &Material, e: f64, thickness_mm: f64) -> ThinLayer {
    let (beta2, gamma, _) = kinematics(e);
    let x = m.density_g_cm3 * thickness_mm * 0.1;
    let xi = 0.5 * BETHE_K * m.z_over_a * x / beta2;
    let i = m.mean_excitation_ev * 1e-6;
    let most_probable = xi * ((2.0 * ELECTRON_MASS_MEV * beta2 * gamma * gamma / i).ln() + (xi / i).ln() + 0.2 - beta2);
    ThinLayer { xi, most_probable, kappa: xi / t_max(e) }
}

/// Sample a standard Moyal variate λ (density exp(−(λ + e^{−λ})/2)/√(2π), mode 0), the usual
/// closed-form approximation of the Landau distribution: λ = −ln(Z²) for Z ~ N(0, 1).
#[inline]
pub fn moyal_from_normal(z: f64) -> f64 {
    -(z * z).max(1e-300).ln()
}

/// Cluster size model of the ALPIDE sensor (Pettersen et al.): CS = a·(edep[keV]/d[µm])^b + c.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterModel {
    /// Prefactor `a` (4.2267).
    #[serde(default = "default_cs_a")]
    pub a: f64,
    /// Exponent `b` (0.65).
    #[serde(default = "default_cs_b")]
    pub b: f64,
    /// Offset `c` (0.5).
    #[serde(default = "default_cs_c")]
    pub c: f64,
    /// Thickness of the epitaxial layer [µm] (25).
    #[serde(default = "default_cs_d")]
    pub epi_thickness_um: f64,
    /// Hits with a (floored, integer) cluster size below this are dropped (2).
    #[serde(default = "default_cs_min")]
    pub min_cluster_size: u32,
}

fn default_cs_a() -> f64 {
    4.2267
}
fn default_cs_b() -> f64 {
    0.65
}
fn default_cs_c() -> f64 {
    0.5
}
fn default_cs_d() -> f64 {
    25.0
}
fn default_cs_min() -> u32 {
    2
}

impl Default for ClusterModel {
    fn default() -> Self {
        ClusterModel {
            a: default_cs_a(),
            b: default_cs_b(),
            c: default_cs_c(),
            epi_thickness_um: default_cs_d(),
            min_cluster_size: default_cs_min(),
        }
    }
}

impl ClusterModel {
    /// Continuous cluster size for an energy deposit `edep_mev` [MeV].
    #[inline]
    pub fn cluster_size(&self, edep_mev: f64) -> f64 {
        self.a * (edep_mev.max(0.0) * 1000.0 / self.epi_thickness_um).powf(self.b) + self.c
    }

    /// Integer (floored, as in the reference pipeline) cluster size.
    #[inline]
    pub fn cluster_pixels(&self, edep_mev: f64) -> u32 {
        self.cluster_size(edep_mev).floor() as u32
    }

    /// Check the parameters.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [("a", self.a), ("b", self.b), ("epi_thickness_um", self.epi_thickness_um)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(format!("cluster_model.{field}"), v, "a finite value > 0"));
            }
        }
        if !self.c.is_finite() {
            return Err(Error::invalid("cluster_model.c", self.c, "a finite value"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PSTAR (NIST) CSDA ranges of protons in liquid water [g/cm²].
    const PSTAR_WATER: [(f64, f64); 6] =
        [(50.0, 2.227), (100.0, 7.718), (150.0, 15.77), (200.0, 25.96), (230.0, 32.95), (10.0, 0.1230)];

    #[test]
    fn water_range_matches_pstar_within_2_percent() {
        let t = RangeTable::new(&Material::water());
        for (e, r) in PSTAR_WATER {
            let ours = t.range_g_cm2(e);
            let rel = (ours - r).abs() / r;
            assert!(rel < 0.02, "E = {e} MeV: range {ours} vs PSTAR {r} (rel {rel})");
        }
    }

    #[test]
    fn water_stopping_power_matches_pstar() {
        // PSTAR electronic mass stopping power of water [MeV cm²/g].
        let t = RangeTable::new(&Material::water());
        for (e, s) in [(10.0, 45.67), (100.0, 7.289), (200.0, 4.492)] {
            let ours = t.mass_stopping_power(e);
            assert!((ours - s).abs() / s < 0.02, "E = {e}: S = {ours} vs {s}");
        }
    }

    #[test]
    fn range_inverse_roundtrip() {
        let t = RangeTable::new(&Material::water());
        for e in [0.0005, 0.01, 0.3, 1.0, 7.5, 50.0, 123.4, 230.0, 500.0] {
            let back = t.energy_from_range_g_cm2(t.range_g_cm2(e));
            assert!((back - e).abs() / e < 1e-6, "{e} → {back}");
        }
        // Energy after a path is consistent with the stopping power for short paths.
        let e = 150.0;
        let dx = 0.01;
        let de = e - t.energy_after_mm(e, dx);
        let s = t.stopping_power_mev_mm(e);
        assert!((de / dx - s).abs() / s < 1e-3, "{} vs {s}", de / dx);
    }

    #[test]
    fn highland_closed_form() {
        // 230 MeV: pβc = E(E+2m)/(E+m).
        let (_, _, pbc) = kinematics(230.0);
        assert!((pbc - 230.0 * (230.0 + 2.0 * 938.272) / (230.0 + 938.272)).abs() < 1e-9);
        let x = 0.1;
        let th = highland_theta0(pbc, x);
        let expected = 13.6 / pbc * 0.1f64.sqrt() * (1.0 + 0.038 * 0.1f64.ln());
        assert!((th - expected).abs() < 1e-12);
        // The accumulator telescopes: any step split gives Highland for one slab.
        let mut acc = ScatteringAccumulator::default();
        let mut tot = 0.0;
        for _ in 0..1000 {
            tot += acc.step(x / 1000.0, pbc);
        }
        assert!((tot.sqrt() - th).abs() / th < 1e-9);
    }

    #[test]
    fn bohr_and_thin_layer_are_sane() {
        // Bohr: Ω² = 0.1569 (Z/A) ρ x[cm] MeV² in the non-relativistic limit.
        let w = Material::water();
        let v = bohr_variance(&w, 1e-3, 10.0);
        assert!((v - 0.307075 * 0.51099895 * 0.555087 * 1.0).abs() / v < 1e-3);
        // 230 MeV in 25 µm Si: most probable loss ≈ 12 keV, Landau regime.
        let si = Material {
            density_g_cm3: 2.329,
            z_over_a: 0.49848,
            mean_excitation_ev: 173.0,
            radiation_length_g_cm2: 21.82,
            nuclear_interaction_length_g_cm2: 108.4,
        };
        let tl = thin_layer(&si, 230.0, 0.025);
        assert!(tl.kappa < 0.01, "kappa {}", tl.kappa);
        assert!((tl.most_probable - 0.0124).abs() < 0.0015, "Δp = {}", tl.most_probable);
    }

    #[test]
    fn cluster_size_reference_values() {
        let cm = ClusterModel::default();
        // 60 keV in 25 µm → 4.2267·2.4^0.65 + 0.5 ≈ 7.97 (the reference normalisation).
        assert!((cm.cluster_size(0.06) - 7.965).abs() < 0.01);
        assert_eq!(cm.cluster_pixels(0.06), 7);
        // Threshold: CS < 2 below ≈ 5.07 keV.
        assert!(cm.cluster_size(0.0050) < 2.0 && cm.cluster_size(0.0052) > 2.0);
    }
}
