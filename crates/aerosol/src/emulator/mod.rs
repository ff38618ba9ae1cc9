//! The physics-constrained neural emulator of M7 (Harder et al. 2022).
//!
//! An MLP (default 32 → 128 → 128 → 28, ReLU) maps the 8 environment inputs and the 24 states
//! before a step to the 24 tendencies and the 4 water contents. Inputs and targets are
//! normalised by normalisers fitted on the training data and saved with the model
//! ([`model::OutputKind`]: z-score, signed log, or log-magnitude + sign classifier). Constraint
//! heads act in physical units after de-normalisation ([`heads`]): completion (mass
//! conservation by construction), correction (positivity), soft penalties.
//!
//! * [`model::Emulator`]: build, train ([`train::fit`]), save, `Emulator::load(dir)?.step(&env, &state)`.
//! * [`eval`]: R², R² of log|Δ|, mass bias/RMSE, negativity.
//! * [`rollout`]: the emulator in place of the box model for K consecutive steps.
//! * [`speed`]: throughput against the box model on the same cells.

pub mod error;
pub mod eval;
pub mod experiments;
pub mod heads;
pub mod model;
pub mod net;
pub mod rollout;
pub mod speed;
pub mod train;

pub use error::{EmulatorError, Result};
pub use heads::{HeadKind, Penalties};
pub use model::{Emulator, EmulatorConfig, EmulatorData, EmulatorStep, OutputKind};

#[cfg(test)]
mod tests;
