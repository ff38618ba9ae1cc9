//! The crate's error type: one enum for the box model, the dataset files, the emulator and the
//! experiments.

use std::path::PathBuf;

/// Everything that can go wrong in `gradlab-aerosol`.
///
/// Each variant carries the offending value and, where it helps, what would have been accepted.
/// Errors of other crates are kept whole as the [`std::error::Error::source`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field or argument is outside its allowed range or set.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    Invalid {
        /// Dotted config path or argument name, e.g. `nucleation.t_min` or `hidden`.
        field: String,
        /// The rejected value, formatted.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A physical input (environment or state) is non-physical.
    #[error("row {row}: column `{column}` = {value} is non-physical ({allowed})")]
    NonPhysical {
        /// Row (cell) index in the input, 0 for single-cell calls.
        row: usize,
        /// Column name.
        column: String,
        /// The rejected value.
        value: f64,
        /// The allowed range.
        allowed: String,
    },
    /// An array has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which array (file name or role).
        what: String,
        /// The expected shape, in words (e.g. `[N, 32]`).
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// An `.npy` file has an unsupported element type.
    #[error("{path}: unsupported dtype ({detail}); expected little-endian float32 or float64")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// What the reader reported.
        detail: String,
    },
    /// Reading or writing an `.npy` file failed.
    #[error("{path}: {detail}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The dataset manifest does not match the arrays.
    #[error("dataset {path}: {detail}")]
    Manifest {
        /// The dataset directory.
        path: PathBuf,
        /// What does not match.
        detail: String,
    },
    /// A saved emulator directory is missing a file or is inconsistent.
    #[error("emulator directory {path}: {detail}")]
    SavedEmulator {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An error of gradlab-core (normalisers, trainer, plots, run directories).
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// An error of the landscape toolkit (`m7-landscape`).
    #[error(transparent)]
    Landscape(#[from] gradlab_landscape::Error),
    /// An error of Bayesian optimisation (`m7-hpo`).
    #[error(transparent)]
    Bayesopt(#[from] gradlab_bayesopt::Error),
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A bad value: `field` (config path or argument name), the value given, what is allowed.
    pub fn invalid(field: impl Into<String>, value: impl std::fmt::Display, allowed: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A seed field that the run derives from its one top-level `seed`: refused when the user gave
    /// it a non-zero value (it would be silently overwritten otherwise).
    pub fn check_derived_seed(field: &str, value: u64) -> Result<()> {
        if value != 0 {
            return Err(Error::invalid(field, value, "0 or absent: this seed is derived from the top-level `seed`"));
        }
        Ok(())
    }
}

/// For the landscape toolkit's callbacks ([`gradlab_landscape::Objective`]): core, candle and
/// landscape errors pass through as themselves; any other is kept whole as the source of a core
/// `External` error.
impl From<Error> for gradlab_landscape::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(c) => c.into(),
            Error::Candle(c) => c.into(),
            Error::Landscape(l) => l,
            other => gradlab_core::Error::external("emulator", other).into(),
        }
    }
}
