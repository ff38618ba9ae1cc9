//! Error type of the crate.

use std::path::PathBuf;

/// Errors returned by `gradlab-bayesopt`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter's range is empty or reversed (`low >= high`).
    #[error("parameter `{name}`: empty range [{low}, {high}] (need low < high)")]
    EmptyRange { name: String, low: f64, high: f64 },
    /// A bound is NaN or infinite.
    #[error("parameter `{name}`: bound `{which}` is {value}, must be finite")]
    NonFiniteBound { name: String, which: &'static str, value: f64 },
    /// A log-scaled parameter has a non-positive lower bound.
    #[error("parameter `{name}`: log scale needs low > 0, got {low}")]
    NonPositiveLogBound { name: String, low: f64 },
    /// A categorical parameter has no choices or duplicate choices.
    #[error("parameter `{name}`: categorical choices {problem}")]
    BadChoices { name: String, problem: String },
    /// Two parameters share a name, or a name is empty.
    #[error("parameter name `{name}` is {problem}")]
    BadName { name: String, problem: &'static str },
    /// The search space has no parameters.
    #[error("the search space has no parameters")]
    EmptySpace,
    /// A name that is not a parameter of the space.
    #[error("unknown parameter `{name}` (known: {known})")]
    UnknownParameter { name: String, known: String },
    /// A value outside its parameter's domain or of the wrong kind.
    #[error("parameter `{name}`: value {value} is not allowed ({allowed})")]
    BadValue { name: String, value: String, allowed: String },
    /// A vector of the wrong length.
    #[error("{what}: expected length {expected}, got {got}")]
    DimensionMismatch { what: &'static str, expected: usize, got: usize },
    /// The kernel matrix could not be made positive definite by escalating jitter.
    #[error(
        "matrix not positive definite at pivot {pivot} of {dim} even with relative jitter {jitter:e} after {tries} tries"
    )]
    NotPositiveDefinite { pivot: usize, dim: usize, jitter: f64, tries: usize },
    /// A numeric value that must be finite was not.
    #[error("{what} is not finite ({value})")]
    NonFinite { what: &'static str, value: f64 },
    /// A configuration value out of its allowed range.
    #[error("config `{field}` = {value}: {allowed}")]
    BadConfig { field: &'static str, value: String, allowed: &'static str },
    /// A trial id that the study does not know, or that is not pending.
    #[error("trial {id}: {problem}")]
    BadTrial { id: u64, problem: &'static str },
    /// Not enough completed observations to build a model.
    #[error("need at least {need} completed observations, have {have}")]
    TooFewObservations { need: usize, have: usize },
    /// I/O error with the file it concerns.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// JSON error with the file it concerns.
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    /// A study file does not match the requested search space.
    #[error("{path}: stored study has a different search space than the one given")]
    SpaceMismatch { path: PathBuf },
    /// A command run by `tune` could not be started.
    #[error("command `{command}`: {problem}")]
    Command { command: String, problem: String },
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
