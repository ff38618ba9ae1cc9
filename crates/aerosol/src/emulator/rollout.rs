//! Iterated (online-style) use: the emulator replaces the box model for K consecutive steps from
//! the same starting cells, and the totals of each species' mass and of the particle number are
//! compared with the box model's trajectory.

use super::emulator_model::Emulator;
use crate::box_model::M7;
use crate::error::Result;
use crate::state::{AerosolState, Environment};
use rayon::prelude::*;

/// The quantities whose totals are tracked: sulfur (gas + sulfate), BC, OC, dust, number.
pub const TRACKED: [&str; 5] = ["sulfur", "bc", "oc", "du", "number"];

/// Totals over cells of the tracked quantities.
pub fn totals(states: &[AerosolState]) -> [f64; 5] {
    let mut t = [0.0; 5];
    for s in states {
        t[0] += s.total_sulfur();
        t[1] += s.bc.iter().sum::<f64>();
        t[2] += s.oc.iter().sum::<f64>();
        t[3] += s.du.iter().sum::<f64>();
        t[4] += s.n.iter().sum::<f64>();
    }
    t
}

/// One step of a rollout.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RolloutStep {
    /// Steps done (1-based).
    pub step: usize,
    /// Relative drift of the emulated totals from the box model's, `(E − B)/B`, per tracked
    /// quantity (0 where the box-model total is 0).
    pub drift: [f64; 5],
    /// Fraction of negative entries among the emulated states (24 values per cell).
    pub negative_fraction: f64,
    /// Cells whose emulated state has a non-finite entry.
    pub nonfinite_cells: usize,
}

fn entries(s: &AerosolState) -> impl Iterator<Item = f64> + '_ {
    std::iter::once(s.h2so4).chain(s.so4).chain(s.bc).chain(s.oc).chain(s.du).chain(s.n)
}

/// Runs the box model and the emulator side by side for `steps` steps from `start` in the
/// (constant) environments `env`.
pub fn rollout(
    em: &Emulator,
    m7: &M7,
    env: &[Environment],
    start: &[AerosolState],
    steps: usize,
) -> Result<Vec<RolloutStep>> {
    let mut boxed: Vec<AerosolState> = start.to_vec();
    let mut emu: Vec<AerosolState> = start.to_vec();
    let mut out = Vec::with_capacity(steps);
    for k in 1..=steps {
        boxed.par_iter_mut().zip(env.par_iter()).for_each(|(s, e)| {
            m7.step(e, s);
        });
        emu = em.step(env, &emu)?.states;
        let (b, e) = (totals(&boxed), totals(&emu));
        let mut drift = [0.0; 5];
        for i in 0..5 {
            drift[i] = if b[i] != 0.0 { (e[i] - b[i]) / b[i] } else { 0.0 };
        }
        let neg = emu.iter().flat_map(entries).filter(|v| *v < 0.0).count();
        let nonfinite_cells = emu.iter().filter(|s| entries(s).any(|v| !v.is_finite())).count();
        out.push(RolloutStep {
            step: k,
            drift,
            negative_fraction: neg as f64 / (24 * emu.len().max(1)) as f64,
            nonfinite_cells,
        });
    }
    Ok(out)
}
