//! Errors of the landscape study.

/// Result with [`StudyError`].
pub type Result<T> = std::result::Result<T, StudyError>;

/// What can go wrong in the landscape study.
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
    /// From the tracking crate.
    #[error(transparent)]
    Track(#[from] crate::Error),
    /// From the landscape crate.
    #[error(transparent)]
    Landscape(#[from] gradlab_landscape::Error),
    /// From the core crate.
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<StudyError> for gradlab_landscape::Error {
    fn from(e: StudyError) -> Self {
        match e {
            StudyError::Landscape(l) => l,
            other => gradlab_landscape::Error::Unsupported(other.to_string()),
        }
    }
}
