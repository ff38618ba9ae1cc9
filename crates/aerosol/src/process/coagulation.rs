//! Step 6: inter- and intra-modal coagulation (M7's `m7_coaset`, `m7_delcoa`).
//!
//! **Kernel.** Brownian coagulation in the transition regime after Fuchs (1964), in the form of
//! Seinfeld and Pandis (2006, Table 13.1), evaluated at the wet count-median radii and mean
//! densities of the two modes:
//!
//! K = 4π(D₁+D₂)R / ( R/(R + g₁₂) + 4(D₁+D₂)/(c̄₁₂ R) ),  R = r₁ + r₂,
//!
//! with Dᵢ = kT Cc/(6πμrᵢ) (Cunningham slip Cc = 1 + Kn(1.257 + 0.4 e^{−1.1/Kn}), Kn = λ/r),
//! c̄ᵢ = (8kT/πmᵢ)^½, c̄₁₂ = (c̄₁² + c̄₂²)^½, lᵢ = 8Dᵢ/(πc̄ᵢ),
//! gᵢ = ((2rᵢ+lᵢ)³ − (4rᵢ²+lᵢ²)^{3/2})/(6rᵢlᵢ) − 2rᵢ and g₁₂ = (g₁² + g₂²)^½; μ from Sutherland's
//! law and λ = 2μ/(p (8M/πRT)^½) (`clean`) or λ = 0.066 µm (101.325 kPa/p)(T/293.15 K)
//! (`echam_ham`, as measured against the Fortran; [`Air::with_fidelity`]).
//!
//! **Which pairs** (as in M7): intra-modal coagulation in NS, KS, AS and KI; NS particles are
//! lost to every larger mode, KS to AS, CS, AI, CI, KI to KS and AS. A product joins the soluble
//! mode of its larger partner (insoluble partners: their soluble counterpart), and the sulfate
//! that lands on insoluble particles is handed to the ageing step (it decides how many of them
//! are coated enough to become soluble).
//!
//! **Analytic solution.** Each losing mode obeys dN/dt = c − aN² − bN over the step, with
//! a = K_ii/2, b = Σⱼ K_ij Nⱼ(0) and c the nucleation rate (NS only). With disc = (b² + 4ac)^½,
//! roots r₁ = 2c/(b + disc) ≥ 0 > r₂ and q = (N₀ − r₁)/(N₀ − r₂), N(t) = r₁ + (r₁−r₂)qE/(1 − qE),
//! E = e^{−disc·t}, and ∫N dt = r₁t + a⁻¹ ln(1 + a(N₀−r₁)(1−E)/disc) (closed forms; the
//! M7 special cases c = 0 and b = 0 follow). Particles leave to partner j at rate K_ij Nⱼ, so the
//! number lost to j is K_ij Nⱼ ∫N dt. Mass is conserved by intra-modal coagulation and leaves at
//! the per-particle rate b, so dM/dt = s − bM with s the nucleated sulfate rate:
//! M(t) = M₀e^{−bt} + s(1 − e^{−bt})/b — split over partners in proportion to K_ij Nⱼ.

use super::properties::ModeProperties;
use crate::config::Fidelity;
use crate::constants::{BOLTZMANN, GAS_CONSTANT, M_AIR, Mode, N_MODES, Species};
use crate::state::{MODE_SLOTS, N_MASSES, destination_slot};
use std::f64::consts::PI;

/// Air properties for the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Air {
    /// Temperature \[K\].
    pub t: f64,
    /// Dynamic viscosity \[g cm⁻¹ s⁻¹\] (Sutherland).
    pub viscosity: f64,
    /// Mean free path of air molecules \[cm\].
    pub mean_free_path: f64,
}

impl Air {
    /// Air at pressure `p` \[Pa\] and temperature `t` \[K\], mean free path from kinetic theory.
    pub fn new(p: f64, t: f64) -> Self {
        let mu = 1.458e-5 * t * t.sqrt() / (t + 110.4);
        let p_cgs = 10.0 * p;
        let lambda = 2.0 * mu / (p_cgs * (8.0 * M_AIR / (PI * GAS_CONSTANT * t)).sqrt());
        Air { t, viscosity: mu, mean_free_path: lambda }
    }

    /// Air as the model of `fidelity` uses it. Under [`Fidelity::EchamHam`] the mean free path
    /// scales as T/p from Hinds' (1999) reference value, λ = 0.066 µm at 293.15 K and 101.325 kPa,
    /// without the Sutherland factor of [`Air::new`]: with it the reference's coagulation
    /// tendencies lose their trends in T and p (N_NS: ours/Fortran 0.965 at 250 K and 0.979 at
    /// 290 K with the kinetic-theory λ, flat at ≈ 0.985 with this one; `docs/results/m7-fidelity.md`).
    pub fn with_fidelity(p: f64, t: f64, fidelity: Fidelity) -> Self {
        let air = Air::new(p, t);
        match fidelity {
            Fidelity::Clean => air,
            Fidelity::EchamHam => Air { mean_free_path: 6.6e-6 * (101_325.0 / p) * (t / 293.15), ..air },
        }
    }

    /// Cunningham slip correction for radius `r` \[cm\].
    pub fn slip(&self, r: f64) -> f64 {
        let kn = self.mean_free_path / r;
        1.0 + kn * (1.257 + 0.4 * (-1.1 / kn).exp())
    }

    /// Brownian kinetics of a particle of radius `r` \[cm\] and density `rho` \[g cm⁻³\].
    pub fn particle(&self, r: f64, rho: f64) -> Kinetics {
        let kt = BOLTZMANN * self.t;
        let d = kt * self.slip(r) / (6.0 * PI * self.viscosity * r);
        let mass = rho * 4.0 / 3.0 * PI * r * r * r;
        let c2 = 8.0 * kt / (PI * mass);
        let l = 8.0 * d / (PI * c2.sqrt());
        let a = 2.0 * r + l;
        let b = 4.0 * r * r + l * l;
        let g = (a * a * a - b * b.sqrt()) / (6.0 * r * l) - 2.0 * r;
        Kinetics { r, diffusivity: d, speed2: c2, g }
    }
}

/// Per-particle Brownian quantities.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kinetics {
    /// Radius \[cm\].
    pub r: f64,
    /// Diffusivity \[cm² s⁻¹\].
    pub diffusivity: f64,
    /// Squared mean thermal speed \[cm² s⁻²\].
    pub speed2: f64,
    /// Fuchs' g \[cm\].
    pub g: f64,
}

/// Fuchs coagulation kernel \[cm³ s⁻¹\] between two particles.
pub fn kernel(p1: &Kinetics, p2: &Kinetics) -> f64 {
    let rsum = p1.r + p2.r;
    let dsum = p1.diffusivity + p2.diffusivity;
    let g12 = (p1.g * p1.g + p2.g * p2.g).sqrt();
    let c12 = (p1.speed2 + p2.speed2).sqrt();
    4.0 * PI * dsum * rsum / (rsum / (rsum + g12) + 4.0 * dsum / (c12 * rsum))
}

/// ln(1+z)/z, accurate near 0.
#[inline]
fn ln1p_over(z: f64) -> f64 {
    if z.abs() < 1e-8 { 1.0 - 0.5 * z } else { z.ln_1p() / z }
}

/// (1 − e^{−x})/x for x ≥ 0, accurate near 0.
#[inline]
fn one_minus_exp_over(x: f64) -> f64 {
    if x < 1e-8 { 1.0 - 0.5 * x } else { -(-x).exp_m1() / x }
}

/// Solves dN/dt = c − aN² − bN from `n0` over `t` (a, b, c ≥ 0). Returns (N(t), ∫₀ᵗ N dt).
pub fn riccati(n0: f64, a: f64, b: f64, c: f64, t: f64) -> (f64, f64) {
    if a <= 0.0 {
        // Linear: dN/dt = c − bN.
        if b <= 0.0 {
            return (n0 + c * t, n0 * t + 0.5 * c * t * t);
        }
        let eq = c / b;
        let f = one_minus_exp_over(b * t) * t; // (1 − e^{−bt})/b
        let n = eq + (n0 - eq) * (-b * t).exp();
        return (n.max(0.0), (eq * t + (n0 - eq) * f).max(0.0));
    }
    let disc = (b * b + 4.0 * a * c).sqrt();
    if disc <= 0.0 {
        // b = c = 0: N = N0/(1 + aN0 t).
        let x = a * n0 * t;
        return (n0 / (1.0 + x), n0 * t * ln1p_over(x));
    }
    let r1 = if c > 0.0 { 2.0 * c / (b + disc) } else { 0.0 };
    let e = (-disc * t).exp();
    let one_minus_e = -(-disc * t).exp_m1();
    let denom = 2.0 * a * n0 + b + disc; // 2a(N0 − r2)
    let q = 2.0 * a * (n0 - r1) / denom; // (N0 − r1)/(N0 − r2), |q| < 1
    let amp = 2.0 * disc * (n0 - r1) / denom; // (r1 − r2) q
    let n = r1 + amp * e / (1.0 - q * e);
    let z = a * (n0 - r1) * one_minus_e / disc;
    let integral = r1 * t + (n0 - r1) * one_minus_e / disc * ln1p_over(z);
    (n.max(0.0), integral.max(0.0))
}

/// Mass lost over `t` from dM/dt = s − bM starting at `m0`: M0 + s t − M(t).
#[inline]
fn mass_lost(m0: f64, s: f64, b: f64, t: f64) -> f64 {
    if b <= 0.0 {
        return 0.0;
    }
    let x = b * t;
    let f = -(-x).exp_m1(); // 1 − e^{−bt}
    // t − f/b = (x − f)/b; for small x use the series x²/2 − x³/6.
    let tail = if x < 1e-4 { t * x * (0.5 - x / 6.0) } else { (x - f) / b };
    m0 * f + s * tail
}

/// Sources from nucleation entering the NS mode during the step.
#[derive(Debug, Clone, Copy, Default)]
pub struct NucleationSource {
    /// New particles over the step \[cm⁻³\].
    pub particles: f64,
    /// Their sulfate \[molecules cm⁻³\].
    pub so4: f64,
}

/// Result of the coagulation step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Coagulated {
    /// Sulfate coagulated onto KI, AI, CI particles \[molecules cm⁻³\] (already moved into
    /// KS, AS, CS; counts towards their coating in the ageing step).
    pub so4_on_insoluble: [f64; 3],
    /// Particles removed by coagulation (intra + inter), net of nucleation \[cm⁻³\].
    pub particles_lost: f64,
}

/// Partners (larger modes) each losing mode coagulates into.
const PARTNERS: [(Mode, &[Mode]); 4] = [
    (Mode::Ns, &[Mode::Ks, Mode::As, Mode::Cs, Mode::Ki, Mode::Ai, Mode::Ci]),
    (Mode::Ks, &[Mode::As, Mode::Cs, Mode::Ai, Mode::Ci]),
    (Mode::As, &[]),
    (Mode::Ki, &[Mode::Ks, Mode::As]),
];

/// Radius \[cm\] of a pure-H2SO4 particle with `molecules` molecules.
pub fn sulfate_particle_radius(molecules: f64) -> f64 {
    let vol = molecules * crate::constants::G_PER_MOLECULE_H2SO4 / Species::So4.density();
    (3.0 * vol / (4.0 * PI)).cbrt()
}

/// Coagulates `masses` (flat M7 order) and numbers `n` over `dt` in `air`, using the radii and
/// densities in `props` (start of step) and the nucleation source.
pub fn coagulate(
    masses: &mut [f64; N_MASSES],
    n: &mut [f64; N_MODES],
    props: &ModeProperties,
    air: &Air,
    dt: f64,
    source: NucleationSource,
) -> Coagulated {
    let mut kin = [Kinetics::default(); N_MODES];
    let mut active = [false; N_MODES];
    for m in 0..N_MODES {
        if props.populated[m] && props.r_wet[m] > 0.0 && props.density[m] > 0.0 {
            kin[m] = air.particle(props.r_wet[m], props.density[m]);
            active[m] = true;
        }
    }
    let has_source = source.particles > 0.0;
    if !active[0] && has_source {
        let r = sulfate_particle_radius(source.so4 / source.particles);
        kin[0] = air.particle(r, Species::So4.density());
        active[0] = true;
    }
    let start_n = *n;
    let start_m = *masses;
    let mut gain = [0.0; N_MASSES];
    let mut out = Coagulated::default();
    let mut new_n = start_n;

    for (mode, partners) in PARTNERS {
        let i = mode.index();
        let is_ns = i == 0;
        let (c, s_rate) = if is_ns && has_source { (source.particles / dt, source.so4 / dt) } else { (0.0, 0.0) };
        if !active[i] || (start_n[i] <= 0.0 && c == 0.0) {
            if is_ns && has_source {
                // Cannot happen (source activates NS); kept for clarity.
                new_n[0] += source.particles;
                gain[0] += source.so4;
            }
            continue;
        }
        let a = 0.5 * kernel(&kin[i], &kin[i]);
        let mut bj = [0.0; 6];
        let mut b = 0.0;
        for (k, &pm) in partners.iter().enumerate() {
            let j = pm.index();
            if active[j] && start_n[j] > 0.0 {
                bj[k] = kernel(&kin[i], &kin[j]) * start_n[j];
                b += bj[k];
            }
        }
        let n0 = start_n[i];
        let (n_end, _integral) = riccati(n0, a, b, c, dt);
        let n_end = n_end.min(n0 + c * dt);
        new_n[i] = n_end;
        out.particles_lost += n0 + c * dt - n_end;
        if b <= 0.0 {
            if is_ns {
                gain[0] += source.so4;
            }
            continue;
        }
        for &slot in MODE_SLOTS[i] {
            let s = if is_ns { s_rate } else { 0.0 };
            let total = start_m[slot] + s * dt;
            let lost = mass_lost(start_m[slot], s, b, dt).clamp(0.0, total);
            // Remaining mass of this slot = total − lost (expressed as a gain on the start value).
            gain[slot] += s * dt - lost;
            for (k, &pm) in partners.iter().enumerate() {
                if bj[k] <= 0.0 {
                    continue;
                }
                let moved = lost * (bj[k] / b);
                let dest = pm.soluble_counterpart();
                gain[destination_slot(slot, dest)] += moved;
                if !pm.soluble() && slot < 4 {
                    out.so4_on_insoluble[pm.index() - 4] += moved;
                }
            }
        }
    }
    for k in 0..N_MASSES {
        masses[k] = (start_m[k] + gain[k]).max(0.0);
    }
    *n = new_n;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monodisperse(air: &Air, d_um: f64) -> f64 {
        let p = air.particle(0.5 * d_um * 1e-4, 1.0);
        kernel(&p, &p)
    }

    /// Reference: Hinds (1999), Aerosol Technology, 2nd ed., Table 12.1 — coagulation
    /// coefficients K₀ of monodisperse unit-density spheres at 293 K and 1 atm, defined by
    /// dN/dt = −K₀N²: 3.0e-16 (10 µm), 3.4e-16 (1 µm), 7.2e-16 m³/s (0.1 µm). Our kernel K is the
    /// collision rate coefficient between two particles (dN/dt = −½KN²), so K = 2K₀.
    #[test]
    fn kernel_matches_published_monodisperse_coefficients() {
        let air = Air::new(101_325.0, 293.15);
        for (d, k0) in [(10.0, 3.0e-10), (1.0, 3.4e-10), (0.1, 7.2e-10)] {
            let k = monodisperse(&air, d);
            assert!((k / (2.0 * k0) - 1.0).abs() < 0.1, "d={d} µm: K={k:e}");
        }
    }

    #[test]
    fn kernel_limits() {
        // Continuum, equal large spheres: K → 8kT·Cc/(3μ).
        let air = Air::new(101_325.0, 298.15);
        let r = 50e-4;
        let p = air.particle(r, 1.5);
        let expect = 8.0 * BOLTZMANN * 298.15 * air.slip(r) / (3.0 * air.viscosity);
        assert!((kernel(&p, &p) / expect - 1.0).abs() < 0.01);
        // Free-molecular: tiny particles at low pressure: K → π(r1+r2)² c̄12.
        let air = Air::new(10.0, 250.0);
        let (p1, p2) = (air.particle(1e-7, 1.8), air.particle(3e-7, 1.8));
        let fm = PI * (p1.r + p2.r).powi(2) * (p1.speed2 + p2.speed2).sqrt();
        assert!((kernel(&p1, &p2) / fm - 1.0).abs() < 0.02, "{} vs {fm}", kernel(&p1, &p2));
        // Symmetric, and small-large pairs coagulate faster than equal pairs.
        let air = Air::new(101_325.0, 288.15);
        let (s, l) = (air.particle(5e-7, 1.8), air.particle(5e-5, 1.8));
        assert_eq!(kernel(&s, &l), kernel(&l, &s));
        assert!(kernel(&s, &l) > 10.0 * kernel(&s, &s));
        // Mean free path of air at 298 K, 1 atm ≈ 0.0665 µm (Seinfeld & Pandis §9.1).
        let air = Air::new(101_325.0, 298.15);
        assert!((air.mean_free_path / 6.65e-6 - 1.0).abs() < 0.01);
    }

    fn rk4(n0: f64, a: f64, b: f64, c: f64, t: f64) -> (f64, f64) {
        let steps = 200_000;
        let h = t / steps as f64;
        let f = |n: f64| c - a * n * n - b * n;
        let (mut n, mut int) = (n0, 0.0);
        for _ in 0..steps {
            let k1 = f(n);
            let k2 = f(n + 0.5 * h * k1);
            let k3 = f(n + 0.5 * h * k2);
            let k4 = f(n + h * k3);
            let n_new = n + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
            // Simpson for the integral of N over the substep.
            int += h / 6.0 * (n + 4.0 * (n + 0.5 * h * k1 * 0.5 + 0.5 * h * k2 * 0.5) + n_new);
            n = n_new;
        }
        (n, int)
    }

    #[test]
    fn riccati_matches_fine_integration() {
        use rand::Rng;
        let mut rng = gradlab_core::rng::rng(0);
        for case in 0..60 {
            let n0 = 10f64.powf(rng.random_range(-2.0..5.0));
            let a = if case % 5 == 0 { 0.0 } else { 10f64.powf(rng.random_range(-11.0..-7.0)) };
            let b = if case % 4 == 0 { 0.0 } else { 10f64.powf(rng.random_range(-7.0..-2.0)) };
            let c = if case % 3 == 0 { 0.0 } else { 10f64.powf(rng.random_range(-2.0..3.0)) };
            let t = 720.0;
            let (n, int) = riccati(n0, a, b, c, t);
            let (n_ref, int_ref) = rk4(n0, a, b, c, t);
            assert!((n - n_ref).abs() <= 1e-6 * n_ref.max(1e-12), "case {case}: {n} vs {n_ref}");
            assert!((int - int_ref).abs() <= 1e-5 * int_ref.max(1e-12), "case {case}: {int} vs {int_ref}");
        }
        // The equilibrium is a fixed point.
        let (a, b, c): (f64, f64, f64) = (1e-9, 1e-4, 10.0);
        let eq = 2.0 * c / (b + (b * b + 4.0 * a * c).sqrt());
        let (n, _) = riccati(eq, a, b, c, 720.0);
        assert!((n / eq - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mass_loss_matches_closed_form() {
        let (m0, s, b, t): (f64, f64, f64, f64) = (3.0, 0.01, 2e-4, 720.0);
        let m_t = m0 * (-b * t).exp() + s / b * (1.0 - (-b * t).exp());
        assert!((mass_lost(m0, s, b, t) - (m0 + s * t - m_t)).abs() < 1e-12);
        let b: f64 = 1e-12; // series branch
        let m_t = m0 * (-b * t).exp() + s * t * (1.0 - 0.5 * b * t);
        assert!((mass_lost(m0, s, b, t) - (m0 + s * t - m_t)).abs() < 1e-12);
    }
}
