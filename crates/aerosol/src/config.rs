//! Box-model configuration with validation.

use crate::error::{Error, Result};

/// Which water-uptake scheme computes wet radii, densities and aerosol water.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaterScheme {
    /// ZSR mixing rule with the binary molalities of Jacobson et al. (1996), M7's `nwater = 0`.
    #[default]
    Zsr,
    /// κ-Köhler (Petters and Kreidenweis 2007) with the Kelvin term, solved directly per mode
    /// (M7's `nwater = 1` uses a lookup table instead).
    Kappa,
}

/// How closely the step follows the ECHAM6-HAM M7 Fortran where that code does something a
/// physically clean model would not (see `docs/results/m7-fidelity.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fidelity {
    /// Reproduce M7 as ECHAM-HAM runs it, quirks included (the reference the emulator paper's
    /// training data come from).
    #[default]
    EchamHam,
    /// The same physics without the Fortran's quirks (sulfur conserved in every process
    /// configuration, H2SO4 production applied without condensation, CS diagnostics from the CS
    /// contents alone).
    Clean,
}

/// Process switches; each process of the step can be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processes {
    /// Water uptake (off: wet radius = dry radius, no water).
    pub water_uptake: bool,
    /// H2SO4 condensation (off: production only accumulates in the gas phase).
    pub condensation: bool,
    /// Binary H2SO4–H2O nucleation (Vehkamäki et al. 2002).
    pub nucleation: bool,
    /// Activation nucleation J = A·\[H2SO4\]·forest fraction in the boundary layer
    /// (Kulmala et al. 2006).
    pub activation_nucleation: bool,
    /// Inter- and intra-modal coagulation.
    pub coagulation: bool,
    /// Ageing of insoluble particles once coated with sulfate.
    pub ageing: bool,
    /// Mode shifting to the next soluble mode.
    pub mode_shift: bool,
}

impl Default for Processes {
    fn default() -> Self {
        Processes {
            water_uptake: true,
            condensation: true,
            nucleation: true,
            activation_nucleation: false,
            coagulation: true,
            ageing: true,
            mode_shift: true,
        }
    }
}

/// Validity clamps and thresholds of the Vehkamäki et al. (2002) parameterisation as M7 applies
/// them (Vignati et al. 2004; the ECHAM-HAM M7 nucleation routine).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NucleationConfig {
    /// Lower temperature clamp \[K\].
    pub t_min: f64,
    /// Upper temperature clamp \[K\].
    pub t_max: f64,
    /// Lower RH clamp.
    pub rh_min: f64,
    /// Upper RH clamp.
    pub rh_max: f64,
    /// Lower H2SO4 clamp \[cm⁻³\].
    pub c_min: f64,
    /// Upper H2SO4 clamp \[cm⁻³\].
    pub c_max: f64,
    /// Rates below this are set to zero \[cm⁻³ s⁻¹\].
    pub j_min: f64,
    /// Rates are capped here \[cm⁻³ s⁻¹\].
    pub j_max: f64,
    /// Activation-nucleation coefficient A \[s⁻¹\] (Kulmala et al. 2006: 1e-7..1e-5).
    pub activation_coefficient: f64,
    /// H2SO4 molecules in a freshly activated cluster (≈ 1 nm diameter).
    pub activation_cluster_molecules: f64,
}

impl Default for NucleationConfig {
    fn default() -> Self {
        NucleationConfig {
            t_min: 190.15,
            t_max: 300.15,
            rh_min: 1e-4,
            rh_max: 1.0,
            c_min: 1e4,
            c_max: 1e11,
            j_min: 1e-7,
            j_max: 1e10,
            activation_coefficient: 1e-6,
            activation_cluster_molecules: 6.0,
        }
    }
}

/// Full box-model configuration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct M7Config {
    /// Time step \[s\] (M7 box model: 720 s).
    pub dt: f64,
    /// Water-uptake scheme.
    pub water: WaterScheme,
    /// Upper RH used for water uptake (the Köhler/ZSR water diverges at RH → 1).
    pub water_rh_max: f64,
    /// Process switches.
    pub processes: Processes,
    /// Nucleation clamps and constants.
    pub nucleation: NucleationConfig,
    /// Sulfate monolayers needed before an insoluble particle is aged.
    pub ageing_monolayers: f64,
    /// Faithfulness to the ECHAM-HAM Fortran's quirks.
    pub fidelity: Fidelity,
}

impl Default for M7Config {
    fn default() -> Self {
        M7Config {
            dt: 720.0,
            water: WaterScheme::Zsr,
            water_rh_max: 0.99,
            processes: Processes::default(),
            nucleation: NucleationConfig::default(),
            ageing_monolayers: 1.0,
            fidelity: Fidelity::default(),
        }
    }
}

fn finite_in(field: &str, v: f64, lo: f64, hi: f64, allowed: &str) -> Result<()> {
    if v.is_finite() && v >= lo && v <= hi { Ok(()) } else { Err(Error::invalid(field, v, allowed)) }
}

impl M7Config {
    /// Checks every field; returns the first problem with the field's path and allowed range.
    pub fn validate(&self) -> Result<()> {
        if !(self.dt.is_finite() && self.dt > 0.0 && self.dt <= 86_400.0) {
            return Err(Error::invalid("dt", self.dt, "0 < dt <= 86400 s"));
        }
        finite_in("water_rh_max", self.water_rh_max, 0.0, 0.999, "0 <= water_rh_max <= 0.999")?;
        finite_in("ageing_monolayers", self.ageing_monolayers, 1e-3, 100.0, "1e-3 <= monolayers <= 100")?;
        let n = &self.nucleation;
        finite_in("nucleation.t_min", n.t_min, 150.0, 350.0, "150..350 K")?;
        finite_in("nucleation.t_max", n.t_max, n.t_min, 350.0, "t_min..350 K")?;
        finite_in("nucleation.rh_min", n.rh_min, 1e-8, 1.0, "1e-8..1")?;
        finite_in("nucleation.rh_max", n.rh_max, n.rh_min, 1.0, "rh_min..1")?;
        finite_in("nucleation.c_min", n.c_min, 1.0, 1e12, "1..1e12 cm-3")?;
        finite_in("nucleation.c_max", n.c_max, n.c_min, 1e13, "c_min..1e13 cm-3")?;
        finite_in("nucleation.j_min", n.j_min, 0.0, 1e3, "0..1e3 cm-3 s-1")?;
        finite_in("nucleation.j_max", n.j_max, n.j_min, 1e15, "j_min..1e15 cm-3 s-1")?;
        finite_in("nucleation.activation_coefficient", n.activation_coefficient, 0.0, 1e-2, "0..1e-2 s-1")?;
        finite_in(
            "nucleation.activation_cluster_molecules",
            n.activation_cluster_molecules,
            1.0,
            1e4,
            "1..1e4 molecules",
        )?;
        Ok(())
    }

    /// Reads and validates a JSON config file (unknown fields are rejected).
    pub fn from_json_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: M7Config =
            serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), source })?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_matches_m7() {
        let c = M7Config::default();
        c.validate().unwrap();
        assert_eq!(c.dt, 720.0);
        assert_eq!(c.water, WaterScheme::Zsr);
    }

    #[test]
    fn rejects_bad_fields_with_their_path() {
        let c = M7Config { dt: -1.0, ..Default::default() };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`dt`"), "{e}");
        let mut c = M7Config::default();
        c.nucleation.t_max = 100.0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("nucleation.t_max"), "{e}");
    }

    #[test]
    fn json_rejects_unknown_fields_and_fills_defaults() {
        let c: M7Config = serde_json::from_str(r#"{"dt": 600, "processes": {"nucleation": false}}"#).unwrap();
        assert_eq!(c.dt, 600.0);
        assert!(!c.processes.nucleation);
        assert!(c.processes.coagulation);
        assert!(serde_json::from_str::<M7Config>(r#"{"dtt": 600}"#).is_err());
        let c: M7Config = serde_json::from_str(r#"{"water": "kappa"}"#).unwrap();
        assert_eq!(c.water, WaterScheme::Kappa);
    }
}
