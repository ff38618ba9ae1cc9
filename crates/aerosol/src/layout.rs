//! Column layouts: the `m7-step` file (M7 interface order) and the emulator dataset (reference
//! layout of Harder et al. 2022).

use crate::constants::{Mode, Species};
use crate::state::{AerosolState, Environment, MASS_TRACERS, SO4_MODES};

/// A named column with its unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Column {
    /// Column name, e.g. `so4_ks`.
    pub name: String,
    /// Unit, e.g. `molecules cm-3`.
    pub unit: String,
}

fn col(name: impl Into<String>, unit: &str) -> Column {
    Column { name: name.into(), unit: unit.to_string() }
}

fn mass_columns(include_sea_salt: bool) -> Vec<Column> {
    let mut v = Vec::new();
    for (sp, modes) in MASS_TRACERS {
        if sp == Species::Ss && !include_sea_salt {
            continue;
        }
        for m in modes {
            v.push(col(format!("{}_{}", sp.name(), m.name()), sp.unit()));
        }
    }
    v
}

fn number_columns() -> Vec<Column> {
    Mode::ALL.iter().map(|m| col(format!("n_{}", m.name()), "cm-3")).collect()
}

/// Columns of an `m7-step` input file: the M7 interface order (33 columns), optionally followed
/// by a 34th boundary-layer flag column.
pub fn step_input_columns() -> Vec<Column> {
    let mut v: Vec<Column> = STEP_HEAD
        .iter()
        .map(|k| match k {
            Some(k) => col(ENV[*k].0, ENV[*k].1),
            None => col("h2so4", "molecules cm-3"),
        })
        .collect();
    v.extend(mass_columns(true));
    v.extend(number_columns());
    v
}

/// Number of columns of an `m7-step` input row without the optional boundary-layer flag.
pub const STEP_INPUT_COLS: usize = 33;

/// Columns of an `m7-step` output file: the 33 input columns after the step, then wet radii (7),
/// dry radii (7), densities (7) and water (4) — 58 columns.
pub fn step_output_columns() -> Vec<Column> {
    let mut v = step_input_columns();
    v.extend(diagnostic_columns());
    v
}

/// The 25 diagnostic columns: r_wet ×7, r_dry ×7, density ×7, water ×4.
pub fn diagnostic_columns() -> Vec<Column> {
    let mut v = Vec::new();
    for m in Mode::ALL {
        v.push(col(format!("r_wet_{}", m.name()), "cm"));
    }
    for m in Mode::ALL {
        v.push(col(format!("r_dry_{}", m.name()), "cm"));
    }
    for m in Mode::ALL {
        v.push(col(format!("density_{}", m.name()), "g cm-3"));
    }
    v.extend(water_columns());
    v
}

/// The four water columns (soluble modes).
pub fn water_columns() -> Vec<Column> {
    SO4_MODES.iter().map(|m| col(format!("water_{}", m.name()), "kg m-3")).collect()
}

/// Number of columns of an `m7-step` output row.
pub const STEP_OUTPUT_COLS: usize = 58;

/// The environment in the dataset's order (the reference layout): name and unit.
const ENV: [(&str, &str); 8] = [
    ("pressure", "Pa"),
    ("temperature", "K"),
    ("rh", "1"),
    ("h2so4_production", "molecules cm-3 s-1"),
    ("ionisation", "cm-3 s-1"),
    ("cloud_cover", "1"),
    ("forest_fraction", "1"),
    ("boundary_layer", "1"),
];

/// The first 8 columns of an `m7-step` row (M7 interface order): `Some(k)` is environment
/// column `k` of [`ENV`], `None` the H2SO4 gas of the state.
const STEP_HEAD: [Option<usize>; 8] = [Some(0), Some(1), Some(2), Some(4), Some(3), None, Some(5), Some(6)];

/// Column of the H2SO4 gas in an `m7-step` row.
const STEP_H2SO4: usize = 5;

/// The 8 environment columns of the dataset's X, in the reference order.
pub fn env_columns() -> Vec<Column> {
    ENV.iter().map(|(name, unit)| col(*name, unit)).collect()
}

/// State columns of the dataset: H2SO4, the masses (without sea salt unless requested) and the
/// 7 numbers — 24 columns (26 with sea salt).
pub fn state_columns(include_sea_salt: bool) -> Vec<Column> {
    let mut v = vec![col("h2so4", "molecules cm-3")];
    v.extend(mass_columns(include_sea_salt));
    v.extend(number_columns());
    v
}

/// Dataset X columns: 8 environment + state (32, or 34 with sea salt).
pub fn x_columns(include_sea_salt: bool) -> Vec<Column> {
    let mut v = env_columns();
    v.extend(state_columns(include_sea_salt));
    v
}

/// Dataset y columns: state after the step + 4 water (28, or 30 with sea salt).
pub fn y_columns(include_sea_salt: bool) -> Vec<Column> {
    let mut v = state_columns(include_sea_salt);
    v.extend(water_columns());
    v
}

/// Writes the environment in dataset order into `out[0..8]`.
pub fn write_env(env: &Environment, out: &mut [f64]) {
    out[0] = env.pressure;
    out[1] = env.temperature;
    out[2] = env.rh;
    out[3] = env.h2so4_production;
    out[4] = env.ionisation;
    out[5] = env.cloud_cover;
    out[6] = env.forest_fraction;
    out[7] = if env.boundary_layer { 1.0 } else { 0.0 };
}

/// Reads the environment from dataset order.
pub fn read_env(x: &[f64]) -> Environment {
    Environment {
        pressure: x[0],
        temperature: x[1],
        rh: x[2],
        h2so4_production: x[3],
        ionisation: x[4],
        cloud_cover: x[5],
        forest_fraction: x[6],
        boundary_layer: x[7] >= 0.5,
    }
}

/// Writes the state in dataset order (24 or 26 values) into `out`.
pub fn write_state(s: &AerosolState, include_sea_salt: bool, out: &mut [f64]) {
    let mut k = 0;
    let mut push = |v: f64| {
        out[k] = v;
        k += 1;
    };
    push(s.h2so4);
    s.so4.iter().for_each(|&v| push(v));
    s.bc.iter().for_each(|&v| push(v));
    s.oc.iter().for_each(|&v| push(v));
    if include_sea_salt {
        s.ss.iter().for_each(|&v| push(v));
    }
    s.du.iter().for_each(|&v| push(v));
    s.n.iter().for_each(|&v| push(v));
}

/// Reads a state from dataset order; sea salt is zero when the layout has none.
pub fn read_state(x: &[f64], include_sea_salt: bool) -> AerosolState {
    let mut s = AerosolState { h2so4: x[0], ..Default::default() };
    s.so4.copy_from_slice(&x[1..5]);
    s.bc.copy_from_slice(&x[5..9]);
    s.oc.copy_from_slice(&x[9..13]);
    let mut k = 13;
    if include_sea_salt {
        s.ss.copy_from_slice(&x[13..15]);
        k = 15;
    }
    s.du.copy_from_slice(&x[k..k + 4]);
    s.n.copy_from_slice(&x[k + 4..k + 11]);
    s
}

/// Reads one `m7-step` input row (33 or 34 columns).
pub fn read_step_row(row: &[f64]) -> (Environment, AerosolState) {
    let mut e = [0.0; 8];
    for (i, k) in STEP_HEAD.iter().enumerate() {
        if let Some(k) = k {
            e[*k] = row[i];
        }
    }
    e[7] = if row.len() > STEP_INPUT_COLS { row[STEP_INPUT_COLS] } else { 0.0 };
    let mut s = AerosolState { h2so4: row[STEP_H2SO4], ..Default::default() };
    s.set_masses(&row[8..26]);
    s.n.copy_from_slice(&row[26..33]);
    (read_env(&e), s)
}

/// Writes one `m7-step` row (33 columns) for `env` and `s`.
pub fn write_step_row(env: &Environment, s: &AerosolState, out: &mut [f64]) {
    let mut e = [0.0; 8];
    write_env(env, &mut e);
    for (i, k) in STEP_HEAD.iter().enumerate() {
        out[i] = k.map_or(s.h2so4, |k| e[k]);
    }
    out[8..26].copy_from_slice(&s.masses());
    out[26..33].copy_from_slice(&s.n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_counts_match_reference_layout() {
        assert_eq!(x_columns(false).len(), 32);
        assert_eq!(y_columns(false).len(), 28);
        assert_eq!(x_columns(true).len(), 34);
        assert_eq!(y_columns(true).len(), 30);
        assert_eq!(step_input_columns().len(), STEP_INPUT_COLS);
        assert_eq!(step_output_columns().len(), STEP_OUTPUT_COLS);
        let names: Vec<String> = state_columns(false).into_iter().map(|c| c.name).collect();
        // The reference layout of Harder et al. (2022): 0 H2SO4; 1–4 SO4; 5–8 BC; 9–12 OC; 13–16 DU; 17–23 numbers.
        assert_eq!(names[0], "h2so4");
        assert_eq!(names[1], "so4_ns");
        assert_eq!(names[5], "bc_ks");
        assert_eq!(names[8], "bc_ki");
        assert_eq!(names[12], "oc_ki");
        assert_eq!(names[13], "du_as");
        assert_eq!(names[16], "du_ci");
        assert_eq!(names[17], "n_ns");
        assert_eq!(names[23], "n_ci");
    }

    #[test]
    fn state_round_trips_through_both_layouts() {
        let mut s = AerosolState::default();
        let vals: Vec<f64> = (0..26).map(|i| i as f64 + 0.5).collect();
        s.h2so4 = vals[0];
        s.set_masses(&vals[1..19]);
        s.n.copy_from_slice(&vals[19..26]);
        for ss in [false, true] {
            let mut buf = [0.0; 26];
            write_state(&s, ss, &mut buf);
            let back = read_state(&buf, ss);
            let mut expect = s;
            if !ss {
                expect.ss = [0.0; 2];
            }
            assert_eq!(back, expect);
        }
        let env = Environment { boundary_layer: true, ..Default::default() };
        let mut row = [0.0; 34];
        write_step_row(&env, &s, &mut row);
        row[33] = 1.0;
        let (e2, s2) = read_step_row(&row);
        assert_eq!(e2, env);
        assert_eq!(s2, s);
    }
}
