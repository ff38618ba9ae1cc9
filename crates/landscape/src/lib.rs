#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod candle;
pub mod connectivity;
pub mod directions;
pub mod error;
pub mod experiments;
pub mod hessian;
pub mod lanczos;
pub mod objective;
pub mod output;
pub mod slq;
pub mod spectrum;
pub mod surface;
pub mod testfns;
pub mod trace;
pub mod varmap;
pub mod vecops;

pub use error::{Error, Result};
pub use experiments::experiments;
pub use objective::{FnObjective, Objective, Replicate, Subspace};
pub use spectrum::{Spectrum, SpectrumConfig, spectrum};
pub use varmap::VarMapObjective;
