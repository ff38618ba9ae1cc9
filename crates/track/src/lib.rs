#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod assign;
pub mod dataset;
pub mod detector;
pub mod error;
pub mod experiments;
pub mod follower;
pub mod gnn;
pub mod gnn_experiments;
pub mod graph;
pub mod landscape_study;
pub mod lap;
pub mod physics;
pub mod sim;
pub mod tracks;
pub mod training;

pub use error::{Error, Result};

/// The experiments of this crate, for the `cargo xtask experiment` runner.
pub fn experiments() -> Vec<gradlab_core::experiment::Experiment> {
    let mut v = experiments::all();
    v.extend(gnn_experiments::all());
    v.extend(landscape_study::experiments());
    v
}
