//! The error type of the crate.

use std::path::PathBuf;

/// Errors returned by `gradlab-bayesopt`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value outside what is allowed: a search-space bound or choice list, a point's value,
    /// a configuration field, an argument. `field` names it (a config path such as
    /// `lag.every`, a parameter field such as `lr.low`, or an argument name), `value` is what
    /// was given, `allowed` what would have been accepted.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    Invalid { field: String, value: String, allowed: String },
    /// A name that is not a parameter of the space.
    #[error("unknown parameter `{name}` (known: {known})")]
    UnknownParameter { name: String, known: String },
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
    /// A trial id that the study does not know, or that is not pending.
    #[error("trial {id}: {problem}")]
    BadTrial { id: u64, problem: &'static str },
    /// Not enough completed observations to build a model (or to name a best point).
    #[error("need at least {need} completed observations, have {have}")]
    TooFewObservations { need: usize, have: usize },
    /// A study file does not match the requested search space.
    #[error("{path}: stored study has a different search space than the one given")]
    SpaceMismatch { path: PathBuf },
    /// A file, JSON or configuration error from `gradlab-core` (reading and writing studies,
    /// search spaces and histories, experiment plumbing).
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
}

impl Error {
    /// An invalid value with what is allowed.
    pub fn invalid(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
