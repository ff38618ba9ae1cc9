#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![allow(missing_docs)] // field-level docs are not required everywhere; items are documented

pub mod data;
pub mod device;
pub mod error;
pub mod experiment;
pub mod grad;
pub mod experiments;
pub mod metrics;
pub mod nn;
pub mod normalize;
pub mod observe;
pub mod optim;
pub mod params;
pub mod io;
pub mod plot;
pub mod report;
pub mod rng;
pub mod stats;
pub mod run;
pub mod train;

pub use error::{Error, Result};

/// The experiments this crate exports (see [`experiment`]).
pub fn experiments() -> Vec<experiment::Experiment> {
    experiments::all()
}

#[cfg(test)]
mod autotraits {
    fn send_sync<T: Send + Sync>() {}
    #[test]
    fn public_types_are_send_sync() {
        send_sync::<crate::Error>();
        send_sync::<crate::normalize::Normalizer>();
        send_sync::<crate::params::ParamLayout>();
        send_sync::<crate::train::TrainConfig>();
        send_sync::<crate::run::RunDir>();
    }
}
