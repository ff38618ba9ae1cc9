#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![allow(missing_docs)] // field-level docs are not required everywhere; items are documented

pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod experiment;
pub mod experiments;
pub mod grad;
pub mod io;
pub mod metrics;
pub mod nn;
pub mod normalize;
pub mod observe;
pub mod ops;
pub mod optim;
pub mod params;
pub mod plot;
pub mod report;
pub mod rng;
pub mod run;
pub mod stats;
pub mod train;

pub use error::{Error, Result};

// Linked for its `x86-v4` feature only (AVX-512 kernels for candle's matmul; see Cargo.toml).
use gemm as _;

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
