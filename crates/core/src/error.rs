//! The crate error type.

use std::path::PathBuf;

/// Everything that can go wrong in `gradlab-core`.
///
/// Variants carry the offending value and, where it applies, the file and the field, so that a
/// message printed to a user says what is wrong and what is allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error raised by candle (tensor shapes, devices, kernels).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file could not be parsed or written.
    #[error("JSON error in `{path}`: {message}")]
    Json { path: PathBuf, message: String },

    /// A configuration value is invalid. `file` names the config file (or `<cli>` / `<code>`),
    /// `field` the dotted path of the offending field.
    #[error("invalid configuration in `{file}`, field `{field}`: {message}")]
    Config { file: String, field: String, message: String },

    /// A named value is outside its allowed range or set.
    #[error("invalid value for `{name}`: {value} (allowed: {allowed})")]
    InvalidValue { name: String, value: String, allowed: String },

    /// Two arrays that must agree in shape do not.
    #[error("shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch { what: String, expected: Vec<usize>, got: Vec<usize> },

    /// The training loss became NaN or infinite.
    #[error(
        "training diverged: loss is {value} at epoch {epoch}, optimiser step {step} \
         (lower the learning rate, enable gradient clipping, or check the inputs for NaN)"
    )]
    NonFiniteLoss { epoch: usize, step: usize, value: f64 },

    /// A checkpoint is missing, corrupt or does not fit the model.
    #[error("checkpoint `{path}`: {message}")]
    Checkpoint { path: PathBuf, message: String },

    /// An output already exists and overwriting was not requested.
    #[error("`{path}` already exists; refusing to overwrite it")]
    AlreadyExists { path: PathBuf },

    /// An `.npy` file could not be read or written.
    #[error("npy file `{path}`: {message}")]
    Npy { path: PathBuf, message: String },

    /// Drawing a figure failed.
    #[error("plot `{what}`: {message}")]
    Plot { what: String, message: String },

    /// A cargo feature needed for the request was not compiled in.
    #[error("`{what}` needs the cargo feature `{feature}` (build with `--features {feature}`)")]
    FeatureDisabled { what: String, feature: String },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An invalid value with what is allowed.
    pub fn invalid(name: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Error::InvalidValue { name: name.into(), value: value.to_string(), allowed: allowed.into() }
    }

    /// An invalid configuration field.
    pub fn config(file: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { file: file.into(), field: field.into(), message: message.into() }
    }
}
