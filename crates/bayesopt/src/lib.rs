#![doc = include_str!("../README.md")]

pub mod acquisition;
pub mod chol;
pub mod error;
pub mod gp;
pub mod kernel;
pub mod lbfgs;
pub mod minimize;
pub mod space;
pub mod study;
pub mod testfns;
pub mod tune;

pub use error::{Error, Result};
pub use minimize::{MinimizeResult, Minimizer, minimize};
pub use study::{Study, StudyConfig};
