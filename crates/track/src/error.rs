//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `gradlab-track`.
///
/// Variants carry the offending value and, where it helps, what would have been accepted.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of its allowed range.
    #[error("invalid config value `{field}` = {value}: {allowed}")]
    InvalidConfig {
        /// Dotted path of the field, e.g. `calorimeter.pitch_mm`.
        field: String,
        /// The offending value, rendered as text.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },
    /// A material name is used but not defined.
    #[error("unknown material `{name}` used in {used_in}; defined materials: {known:?}")]
    UnknownMaterial {
        /// The missing material.
        name: String,
        /// Where it was used.
        used_in: String,
        /// Materials that are defined.
        known: Vec<String>,
    },
    /// Two volumes of the detector overlap along the beam axis.
    #[error(
        "volumes overlap along z: `{first}` ends at {first_end_mm} mm but `{second}` starts at {second_start_mm} mm"
    )]
    Overlap {
        /// Upstream volume.
        first: String,
        /// Where it ends.
        first_end_mm: f64,
        /// Downstream volume.
        second: String,
        /// Where it starts.
        second_start_mm: f64,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("cannot parse JSON {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// An npy array could not be read or written.
    #[error("npy error on {path}: {message}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A dataset already exists where a new one was to be written.
    #[error("dataset already exists at {path}; pass overwrite = true to replace it")]
    AlreadyExists {
        /// The existing folder.
        path: PathBuf,
    },
    /// A dataset on disk does not match its manifest or is internally inconsistent.
    #[error("dataset at {path} is corrupt or mismatched: {message}")]
    CorruptDataset {
        /// The offending file or folder.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// An argument is out of range (e.g. a layer index beyond the detector).
    #[error("invalid argument `{name}` = {value}: {allowed}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// The offending value.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },
    /// Track building would enumerate more root-to-leaf paths than allowed.
    #[error("too many root-to-leaf paths (> {limit}); the selected edge set is too dense")]
    TooManyPaths {
        /// The limit that was hit.
        limit: usize,
    },
}

/// Shorthand for `Result<T, gradlab_track::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Build an [`Error::InvalidConfig`].
    pub fn config(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Error::InvalidConfig { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }
}
