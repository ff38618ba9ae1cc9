//! Experiments of `gradlab-aerosol`, run by `cargo xtask experiment <name>`: the registry and one
//! module per experiment. They orchestrate library calls (box model, sampler, dataset, emulator).

pub mod emulator;
pub mod generate;
pub mod hpo;
pub mod landscape;
pub mod speed;

#[cfg(test)]
mod tests;

use gradlab_core::experiment::Experiment;

/// All experiments of this crate.
pub fn all() -> Vec<Experiment> {
    vec![
        Experiment {
            entry: "aerosol.m7_generate",
            description: "M7 box-model training data: spun-up atmospheric cells, one step each; dataset in the reference layout, distributions, zero-tendency shares, process activity, throughput",
            run: generate::run,
            uses_ranks: true,
        },
        Experiment {
            entry: "aerosol.m7_emulator",
            description: "Train the M7 emulator with every head variant (plain, completion, correction, soft penalties, log+sign); R², mass violation, negativity, scatter plots, K-step rollouts vs the box model",
            run: emulator::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "aerosol.m7_speed",
            description: "Emulator inference throughput vs the M7 box model on the same cells, batch sizes up to one global step (571,392 cells)",
            run: speed::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "aerosol.m7_hpo",
            description: "Tune lr, weight decay, width, depth, batch size of the M7 emulator for validation R²: lazy BO (lag ∞, 3) vs classic (lag 1) vs random search, q = 4 concurrent evaluations, persisted and resumable",
            run: hpo::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "aerosol.m7_landscape",
            description: "Loss landscape of the plain and the completion-head emulator: PCA-plane surface with the training trajectory, Hessian top eigenvalues and spectral density",
            run: landscape::run,
            uses_ranks: false,
        },
    ]
}
