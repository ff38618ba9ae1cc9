//! Steps 3–4: the H2SO4 condensation sink of each mode and the analytic production +
//! condensation solution (M7's `m7_h2so4_cs`, `m7_prod_cond`).
//!
//! **Sink.** The flux to one particle of radius r follows Fuchs (1959) flux matching: diffusion
//! outside a sphere of radius r + Δ and kinetic transfer inside it,
//!
//! β(r) = 4πDr / ( 4D/(c̄ r α) + r/(r + Δ) ),  Δ = ((r+ξ)³ − (r²+ξ²)^{3/2})/(3rξ) − r,  ξ = 8D/(πc̄),
//!
//! with D = 0.073 (1000 hPa/p) (T/298.15)^1.5 cm² s⁻¹, c̄ = (8RT/πM)^½ and accommodation α
//! (1 soluble, 0.3 insoluble). It tends to 4πDr (continuum) for r ≫ ξ and πr²c̄α (kinetic) for
//! r ≪ ξ. The mode sink is CSᵢ = Nᵢ β(r_wet,i), evaluated at the count-median radius as M7 does.
//!
//! **Production + condensation.** With a constant production P and sink CS,
//! dC/dt = P − CS·C integrates to C(Δt) = (C₀ − P/CS) e^{−CS Δt} + P/CS in the cloud-free part
//! of the cell. In the cloudy part (fraction c) all H2SO4 is taken up by the cloud/largest mode
//! (Kazil's correction in M7). The condensed amount C₀ + PΔt − C(Δt) is split over the modes in
//! proportion to CSᵢ/CS, so ΔC + ΣΔSO4 = PΔt exactly.

use crate::constants::{GAS_CONSTANT, M_H2SO4, Mode, N_MODES};

/// H2SO4 diffusivity in air \[cm² s⁻¹\] at pressure `p` \[Pa\] and temperature `t` \[K\].
pub fn h2so4_diffusivity(p: f64, t: f64) -> f64 {
    0.073 * (1000.0 / (p / 100.0)) * (t / 298.15).powf(1.5)
}

/// Mean thermal speed of H2SO4 molecules \[cm s⁻¹\].
pub fn h2so4_mean_speed(t: f64) -> f64 {
    (8.0 * GAS_CONSTANT * t / (std::f64::consts::PI * M_H2SO4)).sqrt()
}

/// Gas-kinetic constants of one cell for the sink.
#[derive(Debug, Clone, Copy)]
pub struct SinkGas {
    /// Diffusivity D \[cm² s⁻¹\].
    pub diffusivity: f64,
    /// Mean speed c̄ \[cm s⁻¹\].
    pub speed: f64,
    /// Fuchs length ξ = 8D/(πc̄) \[cm\].
    pub xi: f64,
}

impl SinkGas {
    /// Constants at pressure `p` \[Pa\] and temperature `t` \[K\].
    pub fn new(p: f64, t: f64) -> Self {
        let d = h2so4_diffusivity(p, t);
        let c = h2so4_mean_speed(t);
        SinkGas { diffusivity: d, speed: c, xi: 8.0 * d / (std::f64::consts::PI * c) }
    }

    /// Condensation coefficient β of one particle of radius `r` \[cm\] with accommodation
    /// `alpha` \[cm³ s⁻¹\].
    pub fn particle(&self, r: f64, alpha: f64) -> f64 {
        let (d, c, xi) = (self.diffusivity, self.speed, self.xi);
        let a = r + xi;
        let b = r * r + xi * xi;
        let delta = (a * a * a - b * b.sqrt()) / (3.0 * r * xi) - r;
        4.0 * std::f64::consts::PI * d * r / (4.0 * d / (c * r * alpha) + r / (r + delta))
    }
}

/// Sink per mode \[s⁻¹\] and their sum, for numbers `n` and radii `r` (0 for empty modes).
pub fn condensation_sinks(
    gas: &SinkGas,
    n: &[f64; N_MODES],
    r: &[f64; N_MODES],
    populated: &[bool; N_MODES],
) -> ([f64; N_MODES], f64) {
    let mut cs = [0.0; N_MODES];
    let mut total = 0.0;
    for m in Mode::ALL {
        let i = m.index();
        if populated[i] && r[i] > 0.0 {
            cs[i] = n[i] * gas.particle(r[i], m.accommodation());
            total += cs[i];
        }
    }
    (cs, total)
}

/// Result of production + condensation over one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condensed {
    /// Gas-phase H2SO4 after the step \[molecules cm⁻³\].
    pub h2so4: f64,
    /// H2SO4 condensed onto each mode \[molecules cm⁻³\].
    pub per_mode: [f64; N_MODES],
}

/// Sinks smaller than this (s⁻¹) count as no sink (M7: 1e-10).
pub const MIN_SINK: f64 = 1e-10;

/// Production + condensation over `dt` from gas `c0` with production `p`, mode sinks `cs`
/// (total `cs_total`) and cloud cover `cloud`.
pub fn produce_and_condense(c0: f64, p: f64, cs: &[f64; N_MODES], cs_total: f64, cloud: f64, dt: f64) -> Condensed {
    let mut per_mode = [0.0; N_MODES];
    if cs_total <= MIN_SINK {
        return Condensed { h2so4: c0 + p * dt, per_mode };
    }
    let cc = cloud.clamp(0.0, 1.0);
    let eq = p / cs_total;
    let c1_free = ((c0 - eq) * (-cs_total * dt).exp() + eq).max(0.0);
    let h2so4 = (1.0 - cc) * c1_free;
    let cond_free = (1.0 - cc) * (c0 - c1_free + p * dt);
    let cond_cloud = cc * (c0 + p * dt);
    for i in 0..N_MODES {
        per_mode[i] = cs[i] / cs_total * cond_free;
    }
    if cond_cloud > 0.0 {
        // The cloudy part's H2SO4 goes to the largest mode with a sink: CS, AS, KS, NS, CI, AI, KI.
        const ORDER: [usize; 7] = [3, 2, 1, 0, 6, 5, 4];
        if let Some(&m) = ORDER.iter().find(|&&m| cs[m] > 0.0) {
            per_mode[m] += cond_cloud;
        }
    }
    Condensed { h2so4, per_mode }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_has_the_continuum_and_kinetic_limits() {
        let g = SinkGas::new(101_325.0, 293.15);
        // Mean free path of H2SO4 is O(0.1 µm); ξ = 8D/(πc̄).
        assert!(g.xi > 1e-6 && g.xi < 1e-4, "{}", g.xi);
        let r = 1e-2; // 100 µm ≫ ξ: continuum, 4πDr.
        let cont = 4.0 * std::f64::consts::PI * g.diffusivity * r;
        assert!((g.particle(r, 1.0) / cont - 1.0).abs() < 1e-3);
        let r = 1e-8; // 0.1 nm ≪ ξ: kinetic, πr²c̄α.
        for alpha in [1.0, 0.3] {
            let kin = std::f64::consts::PI * r * r * g.speed * alpha;
            assert!((g.particle(r, alpha) / kin - 1.0).abs() < 1e-3);
        }
    }

    #[test]
    fn diffusivity_and_speed_at_reference_conditions() {
        // D(1000 hPa, 298.15 K) = 0.073 cm² s⁻¹ by construction; c̄ of H2SO4 at 298 K ≈ 254 m/s.
        assert!((h2so4_diffusivity(1e5, 298.15) - 0.073).abs() < 1e-15);
        assert!((h2so4_mean_speed(298.15) / 2.54e4 - 1.0).abs() < 0.01);
    }

    #[test]
    fn analytic_solution_matches_fine_time_stepping_and_conserves_sulfur() {
        let cs = [1e-4, 2e-3, 5e-3, 1e-3, 2e-4, 1e-4, 0.0];
        let tot: f64 = cs.iter().sum();
        let (c0, p, dt) = (3e7, 2e4, 720.0);
        let out = produce_and_condense(c0, p, &cs, tot, 0.0, dt);
        // Reference: forward Euler with 1e6 substeps.
        let k = 1_000_000;
        let h = dt / k as f64;
        let mut c = c0;
        let mut cond = [0.0; 7];
        for _ in 0..k {
            for i in 0..7 {
                cond[i] += h * cs[i] * c;
            }
            c += h * (p - tot * c);
        }
        assert!((out.h2so4 / c - 1.0).abs() < 1e-4, "{} vs {c}", out.h2so4);
        for (got, want) in out.per_mode.iter().zip(cond.iter()).take(6) {
            assert!((got / want - 1.0).abs() < 1e-4);
        }
        for cloud in [0.0, 0.3, 1.0] {
            let out = produce_and_condense(c0, p, &cs, tot, cloud, dt);
            let budget = out.h2so4 - c0 + out.per_mode.iter().sum::<f64>();
            assert!((budget - p * dt).abs() < 1e-12 * (c0 + p * dt), "cloud {cloud}");
        }
    }

    #[test]
    fn no_sink_means_production_only() {
        let out = produce_and_condense(1e6, 1e3, &[0.0; 7], 0.0, 0.5, 720.0);
        assert_eq!(out.h2so4, 1e6 + 720.0 * 1e3);
        assert_eq!(out.per_mode, [0.0; 7]);
    }
}
