//! Cross-toolkit studies of the emulator: hyperparameter optimisation with lazy Bayesian
//! optimisation (`m7-hpo`, [`hpo`], on `gradlab-bayesopt`) and the emulator's loss landscape
//! (`m7-landscape`, [`landscape`], on `gradlab-landscape`).

pub mod hpo;
pub mod landscape;

#[cfg(test)]
mod tests;

use crate::emulator::experiments::DataParams;
use gradlab_core::experiment::Experiment;

/// Errors of the studies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StudyError {
    /// A bad argument or configuration value.
    #[error("{what} = {value}: allowed: {allowed}")]
    Invalid {
        /// What was wrong.
        what: &'static str,
        /// The bad value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// From the emulator.
    #[error(transparent)]
    Emulator(#[from] crate::emulator::EmulatorError),
    /// From the box model / dataset code.
    #[error(transparent)]
    Aerosol(#[from] crate::Error),
    /// From Bayesian optimisation.
    #[error(transparent)]
    Bayesopt(#[from] gradlab_bayesopt::Error),
    /// From the landscape toolkit.
    #[error(transparent)]
    Landscape(#[from] gradlab_landscape::Error),
    /// From the core crate.
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// File I/O.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`StudyError`].
pub type Result<T> = std::result::Result<T, StudyError>;

/// The experiments of the studies.
pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment {
            entry: "aerosol.m7_hpo",
            description: "Tune lr, weight decay, width, depth, batch size of the M7 emulator for validation R²: lazy BO (lag ∞, 3) vs classic (lag 1) vs random search, q = 4 concurrent evaluations, persisted and resumable",
            run: hpo::run,
        },
        Experiment {
            entry: "aerosol.m7_landscape",
            description: "Loss landscape of the plain and the completion-head emulator: PCA-plane surface with the training trajectory, Hessian top eigenvalues and spectral density",
            run: landscape::run,
        },
    ]
}

pub use crate::emulator::experiments::Splits;

/// Loads a dataset directory or samples cells with the box model, exactly as `m7-emulator` does.
pub fn load_splits(p: &DataParams, seed: u64) -> Result<Splits> {
    Ok(crate::emulator::experiments::load_data(p, seed)?)
}
