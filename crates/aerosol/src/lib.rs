#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
// `!(x > 0.0)` is used on purpose: NaN must fail these range checks.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod box_model;
pub mod config;
pub mod constants;
pub mod dataset;
pub mod emulator;
pub mod error;
pub mod experiments;
pub mod layout;
pub mod process;
pub mod sampler;
pub mod state;
pub mod step_file;

pub use box_model::{M7, StepInfo};
pub use config::{Fidelity, M7Config, Processes, WaterScheme};
pub use error::{Error, Result};
pub use state::{AerosolState, Diagnostics, Environment};

/// The experiments of this crate, for the xtask runner.
pub fn experiments() -> Vec<gradlab_core::experiment::Experiment> {
    experiments::all()
}
