#![doc = include_str!("../README.md")]
// Index loops mirror the formulae; negated comparisons deliberately treat NaN as failure.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

pub mod acquisition;
pub mod chol;
pub mod dist;
pub mod error;
pub mod experiments;
pub mod gp;
pub mod kernel;
pub mod lbfgs;
pub mod minimize;
pub mod space;
pub mod study;
pub mod testfns;
#[cfg(test)]
mod testutil;
pub mod tune;

pub use error::{Error, Result};
pub use experiments::experiments;
pub use minimize::{MinimizeResult, Minimizer, minimize, minimize_f64};
pub use study::{Study, StudyConfig};
