//! The physics-constrained neural emulator of M7 (Harder et al. 2022).
//!
//! An MLP (default 32 → 128 → 128 → 28, ReLU; [`gradlab_core::nn::Mlp`]) maps the 8 environment
//! inputs and the 24 states before a step to the 24 tendencies and the 4 water contents. Inputs
//! and targets are normalised by normalisers fitted on the training data and saved with the model
//! ([`emulator_model::OutputKind`]: z-score, signed log, or log-magnitude + sign classifier).
//! Constraint heads act in physical units after de-normalisation ([`heads`]): completion (mass
//! conservation by construction), correction (positivity), soft penalties.
//!
//! * [`data`]: the train / validation / test splits from a dataset directory or sampled here.
//! * [`emulator_model::Emulator`]: build, train ([`train::fit`]), save,
//!   `Emulator::load(dir)?.step(&env, &state)`.
//! * [`eval`]: R², R² of log|Δ|, mass bias/RMSE, negativity.
//! * [`rollout`]: the emulator in place of the box model for K consecutive steps.
//! * [`speed`]: throughput against the box model on the same cells.
//! * [`variant`]: named variants as partial overrides of one base [`EmulatorConfig`].

pub mod data;
pub mod emulator_model;
pub mod eval;
mod folded;
pub mod heads;
pub mod rollout;
pub mod speed;
pub mod train;
pub mod variant;

pub use data::{DataParams, Splits, load_data};
pub use emulator_model::{Emulator, EmulatorConfig, EmulatorData, EmulatorStep, OutputKind};
pub use heads::{HeadKind, Penalties};
pub use variant::Variant;

#[cfg(test)]
mod tests;
