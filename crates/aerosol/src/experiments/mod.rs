//! Experiments of `gradlab-aerosol`, run by `cargo xtask experiment <name>`.

pub mod generate;

use gradlab_core::experiment::Experiment;

/// All experiments of this crate.
pub fn all() -> Vec<Experiment> {
    let mut v = vec![Experiment {
        entry: "aerosol.m7_generate",
        description: "M7 box-model training data: spun-up atmospheric cells, one step each; dataset in the reference layout, distributions, zero-tendency shares, process activity, throughput",
        run: generate::run,
    }];
    v.extend(crate::emulator::experiments::experiments());
    v.extend(crate::studies::experiments());
    v
}
