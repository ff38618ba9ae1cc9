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
    /// A value is outside its allowed range or set: `field` names it (a config path such as
    /// `spectrum.top_k`, or an argument name), `value` is what was given, `allowed` what would
    /// have been accepted.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    Invalid {
        /// Name of the argument or config field.
        field: String,
        /// The offending value, formatted.
        value: String,
        /// What would have been accepted.
        allowed: String,
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
    /// An error from a caller's closure (model builder, loss) or another crate, kept whole as the
    /// source.
    #[error("{context}: {source}")]
    External {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An error from candle (model evaluation, backprop).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from gradlab-core (files, parameters, plots, run directories).
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A bad value: `field` (argument or config path), the value given, what is allowed.
    pub fn invalid(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }

    /// Wraps an error from elsewhere (kept as the source) with what was being done. An error that
    /// already is this crate's, gradlab-core's or candle's is returned as itself (no wrapping).
    pub fn external(context: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let source = source.into();
        let source = match source.downcast::<Error>() {
            Ok(own) => return *own,
            Err(s) => s,
        };
        let source = match source.downcast::<gradlab_core::Error>() {
            Ok(core) => return Error::Core(*core),
            Err(s) => s,
        };
        match source.downcast::<candle_core::Error>() {
            Ok(c) => Error::Candle(*c),
            Err(source) => Error::External { context: context.into(), source },
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Core(gradlab_core::Error::Io { path: path.into(), source })
    }
    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Core(gradlab_core::Error::Json { path: path.into(), source })
    }
}

/// Checks that `got == expected`, naming the argument otherwise.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(Error::LengthMismatch { what, expected, got }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_keeps_known_errors_unwrapped_and_others_as_sources() {
        let own = Error::external("ctx", Error::Unsupported("x".into()));
        assert!(matches!(own, Error::Unsupported(_)));
        let core = Error::external("ctx", gradlab_core::Error::invalid("a", 1, "b"));
        assert!(matches!(core, Error::Core(gradlab_core::Error::Invalid { .. })));
        let io = Error::external("loss of batch 3", std::io::Error::other("disk"));
        assert!(matches!(&io, Error::External { context, .. } if context == "loss of batch 3"));
        assert!(std::error::Error::source(&io).is_some());
    }
}
