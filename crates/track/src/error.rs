//! The crate's error type: one enum for the simulator, the graphs, the solver, training, the
//! experiments and the landscape study. Errors of other crates are kept whole as sources.

use std::path::PathBuf;

/// Everything that can go wrong in `gradlab-track`.
///
/// Variants carry the offending value and, where it helps, what would have been accepted.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value or an argument is out of its allowed range or set.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    Invalid {
        /// Dotted path of the config field (e.g. `calorimeter.pitch_mm`) or argument name.
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
    /// Track building would enumerate more root-to-leaf paths than allowed.
    #[error("too many root-to-leaf paths (> {limit}); the selected edge set is too dense")]
    TooManyPaths {
        /// The limit that was hit.
        limit: usize,
    },
    /// From gradlab-core (files, parameters, training, plots, run directories).
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
    /// From candle (tensors, the network, backprop).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// From gradlab-landscape (paths, Bézier curves, Lanczos, SLQ, surfaces).
    #[error(transparent)]
    Landscape(#[from] gradlab_landscape::Error),
}

/// Shorthand for `Result<T, gradlab_track::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Invalid`]: `field` was `value`, `allowed` says what would be accepted.
    pub fn invalid(field: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }

    /// The refusal of a seed field the run derives itself from its one `seed`: `Ok` when the
    /// field is 0 (unset).
    pub fn check_derived_seed(field: &str, value: u64) -> Result<()> {
        if value == 0 {
            Ok(())
        } else {
            Err(Error::invalid(field, value, "0 or absent: this seed is derived from the run's `seed` (named streams)"))
        }
    }
}

/// The landscape crate's objectives return its own error: a `gradlab-track` error crossing an
/// [`gradlab_landscape::Objective`] boundary keeps its source (landscape, core and candle
/// errors unwrapped, the rest as an external source).
impl From<Error> for gradlab_landscape::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Landscape(l) => l,
            Error::Core(c) => gradlab_landscape::Error::Core(c),
            Error::Candle(c) => gradlab_landscape::Error::Candle(c),
            other => gradlab_landscape::Error::Core(gradlab_core::Error::external("gradlab-track", other)),
        }
    }
}
