#![doc = include_str!("../README.md")]

pub mod chol;
pub mod error;
pub mod gp;
pub mod kernel;
pub mod lbfgs;
pub mod space;

pub use error::{Error, Result};
