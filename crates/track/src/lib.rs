#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod dataset;
pub mod detector;
pub mod error;
pub mod experiments;
pub mod follower;
pub mod fused;
pub mod gnn;
pub mod graph;
pub mod image;
pub mod landscape_study;
pub mod layer_assign;
pub mod materials;
pub mod paper;
pub mod physics;
pub mod setup;
pub mod sim;
pub mod sparse_lap;
pub mod tracks;
pub mod training;

#[cfg(test)]
mod test_fixtures;

pub use error::{Error, Result};

/// The experiments of this crate, for the `cargo xtask experiment` runner.
pub fn experiments() -> Vec<gradlab_core::experiment::Experiment> {
    experiments::all()
}
