#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod dataset;
pub mod detector;
pub mod error;
pub mod experiments;
pub mod follower;
pub mod graph;
pub mod physics;
pub mod sim;
pub mod tracks;
#[cfg(feature = "wip-gnn")]
pub mod lap;
#[cfg(feature = "wip-gnn")]
pub mod gnn;
#[cfg(feature = "wip-gnn")]
pub mod assign;
#[cfg(feature = "wip-gnn")]
pub mod training;

pub use error::{Error, Result};

/// The experiments of this crate, for the `cargo xtask experiment` runner.
pub fn experiments() -> Vec<gradlab_core::experiment::Experiment> {
    experiments::all()
}
