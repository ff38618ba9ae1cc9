//! The box model: one M7 step for one cell, and batched steps over many cells.

use crate::config::{Fidelity, M7Config};
use crate::constants::G_CM3_TO_KG_M3;
use crate::error::Result;
use crate::process::coagulation::{self, NucleationSource};
use crate::process::condensation::{SinkGas, condensation_sinks, produce_and_condense};
use crate::process::nucleation::{NucleationInput, nucleate};
use crate::process::properties::{ModeConstants, ModeProperties, dry_properties_with};
use crate::process::{ageing, mode_shift, water};
use crate::state::{AerosolState, Diagnostics, Environment};

/// What each process did in one step (for process-activity statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StepInfo {
    /// Total H2SO4 condensation sink at the start of the step \[s⁻¹\].
    pub condensation_sink: f64,
    /// H2SO4 condensed onto particles \[molecules cm⁻³\].
    pub condensed: f64,
    /// Nucleation rate in the cloud-free part \[cm⁻³ s⁻¹\].
    pub nucleation_rate: f64,
    /// New particles \[cm⁻³\].
    pub nucleated: f64,
    /// Particles removed by coagulation \[cm⁻³\].
    pub coagulated: f64,
    /// Insoluble particles aged into soluble modes \[cm⁻³\].
    pub aged: f64,
    /// Particles moved by mode shifting \[cm⁻³\].
    pub shifted: f64,
}

/// The M7 box model with a validated configuration.
#[derive(Debug, Clone)]
pub struct M7 {
    cfg: M7Config,
    k: ModeConstants,
}

impl M7 {
    /// Builds the model; fails if the configuration is invalid.
    pub fn new(cfg: M7Config) -> Result<Self> {
        cfg.validate()?;
        Ok(M7 { cfg, k: ModeConstants::new() })
    }

    /// The configuration.
    pub fn config(&self) -> &M7Config {
        &self.cfg
    }

    fn properties(&self, env: &Environment, s: &AerosolState, p: &mut ModeProperties) {
        dry_properties_with(s, p, &self.k, self.cfg.fidelity);
        if self.cfg.processes.water_uptake {
            water::water_uptake(p, &self.cfg, env.rh, env.temperature, &self.k.ram2cmr, &s.n);
        }
    }

    /// Mode diagnostics (radii, densities, water) of a state, as M7 returns them.
    pub fn diagnose(&self, env: &Environment, s: &AerosolState) -> Diagnostics {
        let mut p = ModeProperties::default();
        self.properties(env, s, &mut p);
        to_diagnostics(&p)
    }

    /// Advances `s` by one time step in `env`; returns the diagnostics after the step and what
    /// each process did. Inputs are assumed valid (see [`AerosolState::validate`],
    /// [`Environment::validate`]); the step itself never produces negative values.
    pub fn step(&self, env: &Environment, s: &mut AerosolState) -> (Diagnostics, StepInfo) {
        let cfg = &self.cfg;
        let proc = &cfg.processes;
        let dt = cfg.dt;
        let mut info = StepInfo::default();

        // 1–2. Properties and water uptake at the start of the step.
        let mut p = ModeProperties::default();
        self.properties(env, s, &mut p);

        // 3–4. Condensation sink and production + condensation.
        let mut cs_total = 0.0;
        let mut cond_insoluble = [0.0; 3];
        if proc.condensation {
            let gas = SinkGas::new(env.pressure, env.temperature);
            let (cs, total) = condensation_sinks(&gas, &s.n, &p.r_wet, &p.populated);
            cs_total = total;
            let c = produce_and_condense(s.h2so4, env.h2so4_production, &cs, total, env.cloud_cover, dt);
            s.h2so4 = c.h2so4;
            for i in 0..4 {
                s.so4[i] += c.per_mode[i];
            }
            cond_insoluble = [c.per_mode[4], c.per_mode[5], c.per_mode[6]];
            info.condensed = c.per_mode.iter().sum();
        } else if cfg.fidelity == Fidelity::Clean {
            // ECHAM-HAM applies the production only inside its condensation routine.
            s.h2so4 += env.h2so4_production * dt;
        }
        info.condensation_sink = cs_total;

        // 5. Nucleation.
        let mut source = NucleationSource::default();
        if proc.nucleation || proc.activation_nucleation {
            let out = nucleate(
                s.h2so4,
                &NucleationInput {
                    t: env.temperature,
                    rh: env.rh,
                    cloud: env.cloud_cover,
                    forest: env.forest_fraction,
                    boundary_layer: env.boundary_layer,
                    sink: cs_total,
                    dt,
                    binary: proc.nucleation,
                    activation: proc.activation_nucleation,
                },
                &cfg.nucleation,
            );
            s.h2so4 = out.h2so4;
            source = NucleationSource { particles: out.particles, so4: out.so4 };
            info.nucleation_rate = out.rate;
            info.nucleated = out.particles;
        }

        // 6. Coagulation (with the nucleation source in NS).
        let mut masses = s.masses();
        let mut coag_insoluble = [0.0; 3];
        if proc.coagulation {
            let c = coagulation::coagulate(
                &mut masses,
                &mut s.n,
                &p,
                &coagulation::Air::with_fidelity(env.pressure, env.temperature, cfg.fidelity),
                dt,
                source,
            );
            coag_insoluble = c.so4_on_insoluble;
            info.coagulated = c.particles_lost;
        } else {
            masses[0] += source.so4;
            s.n[0] += source.particles;
        }

        // 7. Ageing (condensed sulfate on insoluble modes joins the soluble counterpart).
        // ECHAM-HAM moves it (and ages) only in the routine it calls when coagulation or
        // nucleation runs; with condensation alone that sulfate is lost.
        let concoag = proc.coagulation || proc.nucleation || proc.activation_nucleation;
        if cfg.fidelity == Fidelity::EchamHam && !concoag {
            cond_insoluble = [0.0; 3];
        }
        let ageing_on = proc.ageing && (concoag || cfg.fidelity == Fidelity::Clean);
        info.aged = ageing::age(
            &mut masses,
            &mut s.n,
            cond_insoluble,
            coag_insoluble,
            &p.r_wet,
            cfg.ageing_monolayers,
            ageing_on,
        );
        s.set_masses(&masses);

        // 8. Mode shifting on the updated dry radii.
        if proc.mode_shift {
            dry_properties_with(s, &mut p, &self.k, cfg.fidelity);
            info.shifted = mode_shift::shift_with(s, &p, cfg.fidelity);
        }

        // Diagnostics after the step.
        self.properties(env, s, &mut p);
        (to_diagnostics(&p), info)
    }
}

fn to_diagnostics(p: &ModeProperties) -> Diagnostics {
    let mut d = Diagnostics { r_wet: p.r_wet, r_dry: p.r_dry, density: p.density, water: [0.0; 4] };
    for i in 0..4 {
        d.water[i] = p.water[i] * G_CM3_TO_KG_M3;
    }
    d
}
