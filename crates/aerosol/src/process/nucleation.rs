//! Step 5: nucleation (M7's `m7_nuck`).
//!
//! Binary H2SO4–H2O nucleation follows the closed-form parameterisation of Vehkamäki et al.
//! (2002, JGR 107(D22), 4622): the H2SO4 mole fraction x* of the critical cluster (eq. 11), the
//! rate J = exp(a + b lnRH + … + j ln³N) with coefficients cubic in T plus a 1/x* term
//! (eq. 12), the total number of molecules in the cluster (eq. 13) and its radius (eq. 14).
//! Inputs are clamped to the validity range M7 uses (T 190.15–300.15 K, RH 1e-4–1,
//! H2SO4 ≤ 1e11 cm⁻³; below 1e4 cm⁻³ the rate is zero); J < 1e-7 cm⁻³ s⁻¹ is set to zero and
//! J is capped at 1e10 cm⁻³ s⁻¹.
//!
//! Optional activation nucleation in the boundary layer (Kulmala et al. 2006, ACP 6, 787):
//! J = A·\[H2SO4\], scaled here by the forest fraction.
//!
//! Nucleation acts on the cloud-free part of the cell, \[H2SO4\]_cf = \[H2SO4\]/(1 − cloud),
//! and the gas after the step is \[H2SO4\]_cf − Δt·L/(1 + Δt·CS) with L = Σ n·J the H2SO4 loss
//! rate (M7's semi-implicit form), so gas + nucleated sulfate is conserved exactly.

use crate::config::NucleationConfig;

/// Output of the Vehkamäki et al. (2002) parameterisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vehkamaki {
    /// Nucleation rate \[cm⁻³ s⁻¹\] after thresholds and cap.
    pub rate: f64,
    /// Mole fraction of H2SO4 in the critical cluster.
    pub x: f64,
    /// Total number of molecules in the critical cluster.
    pub n_total: f64,
    /// Radius of the critical cluster \[nm\].
    pub radius_nm: f64,
}

impl Vehkamaki {
    /// H2SO4 molecules per new particle, x*·n_tot (at least 1).
    pub fn acid_molecules(&self) -> f64 {
        (self.x * self.n_total).max(1.0)
    }
}

/// Coefficients (c₀, c₁, c₂, c₃, c₄) of each of a..j in eq. 12: c₀ + c₁T + c₂T² + c₃T³ + c₄/x*.
const RATE_COEFFS: [[f64; 5]; 10] = [
    [0.14309, 2.21956, -0.0273911, 0.0000722811, 5.91822],
    [0.117489, 0.462532, -0.0118059, 0.0000404196, 15.7963],
    [-0.215554, -0.0810269, 0.00143581, -4.7758e-6, -2.91297],
    [-3.58856, 0.049508, -0.00021382, 3.10801e-7, -0.0293333],
    [1.14598, -0.600796, 0.00864245, -0.0000228947, -8.44985],
    [2.15855, 0.0808121, -0.000407382, -4.01957e-7, 0.721326],
    [1.6241, -0.0160106, 0.0000377124, 3.21794e-8, -0.0113255],
    [9.71682, -0.115048, 0.000157098, 4.00914e-7, 0.71186],
    [-1.05611, 0.00903378, -0.0000198417, 2.46048e-8, -0.0579087],
    [-0.148712, 0.00283508, -9.24619e-6, 5.00427e-9, -0.0127081],
];

/// Coefficients of eq. 13 (total molecules in the critical cluster), same structure.
const NTOT_COEFFS: [[f64; 5]; 10] = [
    [-0.00295413, -0.0976834, 0.00102485, -2.18646e-6, -0.101717],
    [-0.00205064, -0.00758504, 0.000192654, -6.7043e-7, -0.255774],
    [0.00322308, 0.000852637, -0.0000154757, 5.66661e-8, 0.0338444],
    [0.0474323, -0.000625104, 2.65066e-6, -3.67471e-9, -0.000267251],
    [-0.0125211, 0.00580655, -0.000101674, 2.88195e-7, 0.0942243],
    [-0.038546, -0.000672316, 2.60288e-6, 1.19416e-8, -0.00851515],
    [-0.0183749, 0.000172072, -3.71766e-7, -5.14875e-10, 0.00026866],
    [-0.0619974, 0.000906958, -9.11728e-7, -5.36796e-9, -0.00774234],
    [0.0121827, -0.00010665, 2.5346e-7, -3.63519e-10, 0.000610065],
    [0.000320184, -0.0000174762, 6.06504e-8, -1.42177e-11, 0.000135751],
];

/// Mole fraction x* of H2SO4 in the critical cluster (eq. 11), unclamped inputs.
pub fn critical_mole_fraction(t: f64, rh: f64, c: f64) -> f64 {
    let lc = c.ln();
    let lr = rh.ln();
    0.740997 - 0.00266379 * t - 0.00349998 * lc + 0.0000504022 * t * lc + 0.00201048 * lr - 0.000183289 * t * lr
        + 0.00157407 * lr * lr
        - 0.0000179059 * t * lr * lr
        + 0.000184403 * lr * lr * lr
        - 1.50345e-6 * t * lr * lr * lr
}

#[inline]
fn eq12_form(coeffs: &[[f64; 5]; 10], t: f64, inv_x: f64, lr: f64, lc: f64) -> f64 {
    let mut k = [0.0; 10];
    for (i, c) in coeffs.iter().enumerate() {
        k[i] = c[0] + t * (c[1] + t * (c[2] + t * c[3])) + c[4] * inv_x;
    }
    k[0] + k[1] * lr
        + k[2] * lr * lr
        + k[3] * lr * lr * lr
        + k[4] * lc
        + k[5] * lr * lc
        + k[6] * lr * lr * lc
        + k[7] * lc * lc
        + k[8] * lr * lc * lc
        + k[9] * lc * lc * lc
}

/// ln J \[ln(cm⁻³ s⁻¹)\] of eq. 12 without clamps or thresholds.
pub fn ln_rate_unclamped(t: f64, rh: f64, c: f64) -> f64 {
    let x = critical_mole_fraction(t, rh, c);
    eq12_form(&RATE_COEFFS, t, 1.0 / x, rh.ln(), c.ln())
}

/// H2SO4 concentration \[cm⁻³\] at which J = 1 cm⁻³ s⁻¹ (Vehkamäki et al. 2002, eq. 15), an
/// independent fit in the same paper.
pub fn threshold_concentration(t: f64, rh: f64) -> f64 {
    let lr = rh.ln();
    (-279.243 + 11.7344 * rh + 22700.9 / t - 1088.64 * rh / t + 1.14436 * t
        - 0.0302331 * rh * t
        - 0.00130254 * t * t
        - 6.38697 * lr
        + 854.98 * lr / t
        + 0.00879662 * t * lr)
        .exp()
}

/// The Vehkamäki et al. (2002) rate with M7's clamps and thresholds.
pub fn vehkamaki(t: f64, rh: f64, c: f64, cfg: &NucleationConfig) -> Vehkamaki {
    let zero = Vehkamaki { rate: 0.0, x: 0.0, n_total: 0.0, radius_nm: 0.0 };
    if !(c >= cfg.c_min) {
        return zero;
    }
    let t = t.clamp(cfg.t_min, cfg.t_max);
    let rh = rh.clamp(cfg.rh_min, cfg.rh_max);
    let c = c.min(cfg.c_max);
    let x = critical_mole_fraction(t, rh, c);
    if !(x > 0.0) {
        return zero;
    }
    let (lr, lc) = (rh.ln(), c.ln());
    let inv_x = 1.0 / x;
    let ln_j = eq12_form(&RATE_COEFFS, t, inv_x, lr, lc);
    let mut rate = ln_j.min(700.0).exp();
    if !(rate >= cfg.j_min) {
        return zero;
    }
    rate = rate.min(cfg.j_max);
    let n_total = eq12_form(&NTOT_COEFFS, t, inv_x, lr, lc).exp();
    let radius_nm = (-1.6524245 + 0.42316402 * x + 0.3346648 * n_total.ln()).exp();
    Vehkamaki { rate, x, n_total, radius_nm }
}

/// Outcome of the nucleation step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Nucleated {
    /// New particles over the step \[cm⁻³\].
    pub particles: f64,
    /// H2SO4 moved from the gas into the new particles \[molecules cm⁻³\].
    pub so4: f64,
    /// Gas-phase H2SO4 after nucleation \[molecules cm⁻³\].
    pub h2so4: f64,
    /// Total nucleation rate in the cloud-free part \[cm⁻³ s⁻¹\].
    pub rate: f64,
}

/// Inputs of [`nucleate`] beyond the gas concentration.
#[derive(Debug, Clone, Copy)]
pub struct NucleationInput {
    /// Temperature \[K\].
    pub t: f64,
    /// Relative humidity.
    pub rh: f64,
    /// Cloud cover.
    pub cloud: f64,
    /// Forest fraction.
    pub forest: f64,
    /// Boundary-layer flag.
    pub boundary_layer: bool,
    /// Total condensation sink \[s⁻¹\].
    pub sink: f64,
    /// Time step \[s\].
    pub dt: f64,
    /// Binary nucleation on.
    pub binary: bool,
    /// Activation nucleation on.
    pub activation: bool,
}

/// Nucleates from gas-phase H2SO4 `gas` \[cm⁻³\].
pub fn nucleate(gas: f64, inp: &NucleationInput, cfg: &NucleationConfig) -> Nucleated {
    let none = Nucleated { h2so4: gas, ..Default::default() };
    let cc = inp.cloud.clamp(0.0, 1.0);
    if cc >= 1.0 || gas <= 0.0 {
        return none;
    }
    let c0 = gas / (1.0 - cc);
    let (mut j_b, mut n_b) = (0.0, 0.0);
    if inp.binary {
        let v = vehkamaki(inp.t, inp.rh, c0, cfg);
        j_b = v.rate;
        n_b = if v.rate > 0.0 { v.acid_molecules() } else { 0.0 };
    }
    let mut j_a = 0.0;
    let n_a = cfg.activation_cluster_molecules;
    if inp.activation && inp.boundary_layer {
        j_a = cfg.activation_coefficient * inp.forest.clamp(0.0, 1.0) * c0;
    }
    let j = j_b + j_a;
    let loss = n_b * j_b + n_a * j_a;
    if !(j > f64::EPSILON) || !(loss > 0.0) {
        return none;
    }
    let c1 = (c0 - inp.dt * loss / (1.0 + inp.dt * inp.sink)).clamp(0.0, c0);
    let so4 = ((c0 - c1) * (1.0 - cc)).min(gas);
    Nucleated { particles: so4 * j / loss, so4, h2so4: gas - so4, rate: j }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unclamped() -> NucleationConfig {
        NucleationConfig { j_min: 0.0, j_max: f64::INFINITY, ..Default::default() }
    }

    /// Reference: Vehkamäki et al. (2002), eq. 15 gives the H2SO4 concentration at which the
    /// rate (eq. 12) equals 1 cm⁻³ s⁻¹; the paper fits both to the same classical-theory
    /// rates, so eq. 12 evaluated at the eq. 15 concentration must be close to 1. We accept
    /// a factor 10 (the paper quotes the threshold fit to within that over its range).
    #[test]
    fn rate_is_one_at_the_published_threshold_concentration() {
        let mut worst: f64 = 0.0;
        for t in [240.0, 250.0, 260.0, 270.0, 280.0, 290.0, 298.0] {
            for rh in [0.1, 0.3, 0.5, 0.7, 0.9] {
                let c = threshold_concentration(t, rh);
                if !(1e4..=1e11).contains(&c) {
                    continue;
                }
                let j = ln_rate_unclamped(t, rh, c).exp();
                worst = worst.max(j.ln().abs());
                assert!(j > 0.1 && j < 10.0, "T={t} RH={rh} C={c:e}: J={j:e}");
            }
        }
        assert!(worst < 10f64.ln());
    }

    #[test]
    fn rate_grows_with_acid_and_humidity_and_falls_with_temperature() {
        let cfg = unclamped();
        let j = |t, rh, c| vehkamaki(t, rh, c, &cfg).rate;
        assert!(j(273.0, 0.5, 1e9) > j(273.0, 0.5, 1e8));
        assert!(j(273.0, 0.8, 1e8) > j(273.0, 0.4, 1e8));
        assert!(j(250.0, 0.5, 1e8) > j(290.0, 0.5, 1e8));
    }

    #[test]
    fn clamps_and_thresholds() {
        let cfg = NucleationConfig::default();
        // Below the H2SO4 validity bound: no nucleation.
        assert_eq!(vehkamaki(250.0, 0.5, 9e3, &cfg).rate, 0.0);
        // Temperature above the clamp behaves like the clamp.
        let a = vehkamaki(320.0, 0.9, 1e10, &cfg);
        let b = vehkamaki(300.15, 0.9, 1e10, &cfg);
        assert_eq!(a, b);
        // Acid above 1e11 behaves like 1e11.
        assert_eq!(vehkamaki(230.0, 0.5, 1e13, &cfg), vehkamaki(230.0, 0.5, 1e11, &cfg));
        // The cap.
        assert_eq!(vehkamaki(200.0, 1.0, 1e11, &cfg).rate, cfg.j_max);
        // The lower threshold: a warm, dry, clean cell.
        assert_eq!(vehkamaki(298.0, 0.1, 1e5, &cfg).rate, 0.0);
        // Sane cluster: x* in (0, 1), 4..200 molecules, radius 0.2..2 nm.
        let v = vehkamaki(260.0, 0.5, 1e8, &cfg);
        assert!(v.rate > 0.0 && v.x > 0.0 && v.x < 1.0, "{v:?}");
        assert!(v.n_total > 4.0 && v.n_total < 200.0, "{v:?}");
        assert!(v.radius_nm > 0.2 && v.radius_nm < 2.0, "{v:?}");
    }

    #[test]
    fn nucleation_conserves_sulfur_and_respects_cloud() {
        let cfg = NucleationConfig::default();
        let inp = NucleationInput {
            t: 250.0,
            rh: 0.7,
            cloud: 0.0,
            forest: 0.0,
            boundary_layer: false,
            sink: 1e-3,
            dt: 720.0,
            binary: true,
            activation: false,
        };
        let gas = 5e8;
        let out = nucleate(gas, &inp, &cfg);
        assert!(out.particles > 0.0 && out.so4 > 0.0);
        assert!((out.h2so4 + out.so4 - gas).abs() <= 1e-15 * gas);
        assert!(out.h2so4 >= 0.0);
        let full = nucleate(gas, &NucleationInput { cloud: 1.0, ..inp }, &cfg);
        assert_eq!(full.particles, 0.0);
        assert_eq!(full.h2so4, gas);
        // Activation nucleation only in the boundary layer and with forest.
        let act = NucleationInput { binary: false, activation: true, forest: 0.5, t: 290.0, rh: 0.3, ..inp };
        assert_eq!(nucleate(1e7, &act, &cfg).particles, 0.0);
        let bl = nucleate(1e7, &NucleationInput { boundary_layer: true, ..act }, &cfg);
        // J = 1e-6 · 0.5 · 1e7 = 5 cm-3 s-1; M7's semi-implicit loss divides the 720 s of
        // nucleation by (1 + CS·Δt) = 1.72: 5 · 720 / 1.72 particles.
        assert!((bl.rate - 5.0).abs() < 1e-9);
        assert!((bl.particles / (3600.0 / 1.72) - 1.0).abs() < 1e-9, "{bl:?}");
    }
}
