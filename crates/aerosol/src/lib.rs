#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod config;
pub mod constants;
pub mod error;
pub mod layout;
pub mod model;
pub mod process;
pub mod state;

pub use config::{M7Config, Processes, WaterScheme};
pub use error::{Error, Result};
pub use model::{M7, StepInfo};
pub use state::{AerosolState, Diagnostics, Environment};
