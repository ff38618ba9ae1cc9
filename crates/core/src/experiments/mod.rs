//! The experiments of `gradlab-core`.

pub mod regression;

use crate::experiment::Experiment;

/// All experiments of this crate.
pub fn all() -> Vec<Experiment> {
    vec![Experiment {
        entry: "core.regression",
        description: "Train an MLP with the Trainer on a synthetic nonlinear regression problem; learning curve, predicted vs true, R²",
        run: regression::run,
        uses_ranks: false,
    }]
}
