#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod detector;
pub mod error;
pub mod follower;
pub mod graph;
pub mod physics;
pub mod sim;
pub mod tracks;

pub use error::{Error, Result};
