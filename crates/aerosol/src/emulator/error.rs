//! The emulator's error type (folded into the crate's [`crate::Error`] family by `From`).

use std::path::PathBuf;

/// Everything that can go wrong while building, training, saving, loading or running the
/// emulator. Variants carry the offending value and what is allowed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// An error of the box model, the sampler or the dataset reader.
    #[error(transparent)]
    Aerosol(#[from] crate::Error),
    /// An error of gradlab-core (normalisers, trainer, plots, run directories).
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A setting is outside its allowed range.
    #[error("invalid emulator setting `{field}` = {value}: {allowed}")]
    InvalidConfig {
        /// Dotted field path, e.g. `hidden`.
        field: String,
        /// The rejected value, formatted.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// An input array has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which array.
        what: String,
        /// The expected shape, in words.
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A saved emulator directory is missing a file or is inconsistent.
    #[error("emulator directory {path}: {detail}")]
    Saved {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias of the emulator module.
pub type Result<T> = std::result::Result<T, EmulatorError>;

impl EmulatorError {
    pub(crate) fn config(field: &str, value: impl std::fmt::Display, allowed: &str) -> Self {
        EmulatorError::InvalidConfig { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }
}
