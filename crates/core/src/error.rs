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
    #[error("JSON error in `{path}`: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A line of a JSON-lines file could not be parsed.
    #[error("JSON error in `{path}`, line {line}: {source}")]
    JsonLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },

    /// A configuration value is invalid. `file` names the config file (or `<cli>` / `<code>`),
    /// `field` the dotted path of the offending field.
    #[error("invalid configuration in `{file}`, field `{field}`: {message}")]
    Config { file: String, field: String, message: String },

    /// A named value is outside its allowed range or set: `field` names it (a config path such
    /// as `train.epochs`, or an argument name), `value` is what was given, `allowed` what would
    /// have been accepted.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    Invalid { field: String, value: String, allowed: String },

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

    /// An error from another crate or a caller's callback, kept whole as the source.
    #[error("{context}: {source}")]
    External {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A cargo feature needed for the request was not compiled in.
    #[error("`{what}` needs the cargo feature `{feature}` (build with `--features {feature}`)")]
    FeatureDisabled { what: String, feature: String },

    /// Another rank of a distributed job failed (see [`crate::dist::agree`]); `message` is its
    /// error.
    #[error("rank {rank} failed: {message}")]
    Distributed { rank: usize, message: String },

    /// The run stopped itself after `saves` durable saves: the test hook
    /// [`crate::experiment::RunContext::stop_after_saves`], which leaves the run folder as a kill
    /// right after that save would.
    #[error("run interrupted by the test hook after {saves} saved stage(s)")]
    Interrupted { saves: usize },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An invalid value with what is allowed.
    pub fn invalid(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }

    /// Wrap another error (kept as the [`std::error::Error::source`]) with what was being done.
    pub fn external(context: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::External { context: context.into(), source: source.into() }
    }

    /// An invalid configuration field.
    pub fn config(file: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { file: file.into(), field: field.into(), message: message.into() }
    }
}
