//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `gradlab-aerosol`.
///
/// Each variant carries the offending value and, where it helps, what would have been accepted.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field is outside its allowed range.
    #[error("invalid config field `{field}` = {value}: {allowed}")]
    InvalidConfig {
        /// Dotted path of the field, e.g. `nucleation.t_min`.
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
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn config(field: &str, value: impl std::fmt::Display, allowed: &str) -> Self {
        Error::InvalidConfig { field: field.to_string(), value: value.to_string(), allowed: allowed.to_string() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
