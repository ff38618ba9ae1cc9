//! The M7 processes, one module each, in the order M7 applies them within a step.

pub mod ageing;
pub mod coagulation;
pub mod condensation;
pub mod mode_shift;
pub mod nucleation;
pub mod properties;
mod sulfate_water_fit;
pub mod water;
