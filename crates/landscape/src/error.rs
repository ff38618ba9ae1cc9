//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `gradlab-landscape`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two vectors (or a vector and a layout / objective) disagree in length.
    #[error("{what}: expected length {expected}, got {got}")]
    LengthMismatch {
        /// Which argument was wrong.
        what: &'static str,
        /// The length that was required.
        expected: usize,
        /// The length that was supplied.
        got: usize,
    },
    /// A user-supplied setting is outside its allowed range.
    #[error("invalid {name} = {value}: {allowed}")]
    InvalidArgument {
        /// Name of the parameter or config field.
        name: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What would have been accepted.
        allowed: &'static str,
    },
    /// The objective returned a non-finite value where a finite one is required.
    #[error("non-finite {what} ({value}) at {context}")]
    NonFinite {
        /// What quantity was non-finite.
        what: &'static str,
        /// The value.
        value: f64,
        /// Where it happened.
        context: String,
    },
    /// The operation is not supported by this objective (e.g. exact HVP on a closure).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A decomposition in faer failed.
    #[error("linear algebra failure in {0}")]
    LinearAlgebra(&'static str),
    /// A persisted file (directions, partial surface) does not match what is being computed.
    #[error("file {path} does not match: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// I/O with the file that failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// JSON (de)serialisation failed.
    #[error("json in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// Reading or writing an `.npy` file failed.
    #[error("npy file {path}: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// The underlying error, formatted.
        reason: String,
    },
    /// Drawing a figure failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The figure file.
        path: PathBuf,
        /// The underlying error, formatted.
        reason: String,
    },
    /// An error from candle (model evaluation, backprop).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from gradlab-core (parameters, plots, run directories).
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Json { path: path.into(), source }
    }
}

/// Checks that `got == expected`, naming the argument otherwise.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(Error::LengthMismatch { what, expected, got }) }
}
