//! Rust errors → Python exceptions: a bad value or shape is `ValueError` (the message names the
//! field and what is allowed), a missing file `FileNotFoundError`, another I/O failure `OSError`,
//! anything else `RuntimeError`.

use pyo3::PyErr;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};

/// An I/O error anywhere in the source chain of `e`.
fn io_source<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// Converts an error, `invalid_input` saying whether it is a bad value, shape or file content.
fn convert(e: &(dyn std::error::Error + 'static), invalid_input: bool) -> PyErr {
    let msg = e.to_string();
    if let Some(io) = io_source(e) {
        return match io.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            _ => PyOSError::new_err(msg),
        };
    }
    if invalid_input { PyValueError::new_err(msg) } else { PyRuntimeError::new_err(msg) }
}

fn core_is_input(e: &gradlab_core::Error) -> bool {
    use gradlab_core::Error as E;
    matches!(
        e,
        E::Json { .. }
            | E::JsonLine { .. }
            | E::Config { .. }
            | E::Invalid { .. }
            | E::ShapeMismatch { .. }
            | E::Npy { .. }
            | E::AlreadyExists { .. }
            | E::Checkpoint { .. }
    )
}

pub fn track(e: gradlab_track::Error) -> PyErr {
    use gradlab_track::Error as E;
    let input = match &e {
        E::Core(c) => core_is_input(c),
        E::Candle(_) | E::Landscape(_) => false,
        _ => true,
    };
    convert(&e, input)
}

pub fn aerosol(e: gradlab_aerosol::Error) -> PyErr {
    use gradlab_aerosol::Error as E;
    let input = match &e {
        E::Core(c) => core_is_input(c),
        E::Candle(_) | E::Landscape(_) | E::Bayesopt(_) => false,
        _ => true,
    };
    convert(&e, input)
}

pub fn bayesopt(e: gradlab_bayesopt::Error) -> PyErr {
    use gradlab_bayesopt::Error as E;
    let input = match &e {
        E::Core(c) => core_is_input(c),
        E::NotPositiveDefinite { .. } => false,
        _ => true,
    };
    convert(&e, input)
}

pub fn landscape(e: gradlab_landscape::Error) -> PyErr {
    use gradlab_landscape::Error as E;
    let input = match &e {
        E::Core(c) => core_is_input(c),
        E::Candle(_) | E::LinearAlgebra(_) | E::External { .. } => false,
        _ => true,
    };
    convert(&e, input)
}
