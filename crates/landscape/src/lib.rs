#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod candle;
pub mod connectivity;
pub mod directions;
pub mod error;
pub mod hessian;
pub mod io;
pub mod lanczos;
pub mod layout;
pub mod objective;
pub mod output;
pub mod slq;
pub mod surface;
pub mod testfns;
pub mod trace;
pub mod vecops;

pub use error::{Error, Result};
pub use layout::{Layout, ParamBlock};
pub use objective::{FnObjective, Objective, Replicate};

pub mod experiment;

/// The experiments of this crate, for the xtask runner (`configs/landscape-demo.json`).
pub fn experiments() -> Vec<gradlab_core::experiment::Experiment> {
    vec![gradlab_core::experiment::Experiment {
        entry: "landscape.demo",
        description: "Train a small classifier, then PCA-plane + trajectory, filter-normalised random plane, top-2 Hessian \
                      eigenvector plane, Lanczos extreme eigenvalues, Hutch++ trace and SLQ spectral density",
        run: experiment::run,
    }]
}
