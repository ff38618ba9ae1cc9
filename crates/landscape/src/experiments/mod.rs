//! The experiments of this crate, run by the xtask runner from `configs/`.
//!
//! | entry | config | what |
//! |---|---|---|
//! | `landscape.demo` | `configs/landscape-demo.json` | [`demo`]: a small spiral classifier's loss landscape and Hessian spectrum |

pub mod demo;

/// The experiments of this crate, for the xtask runner.
pub fn experiments() -> Vec<gradlab_core::experiment::Experiment> {
    vec![gradlab_core::experiment::Experiment {
        entry: "landscape.demo",
        description: "Train a small classifier, then PCA-plane + trajectory, filter-normalised random plane, top-2 Hessian \
                      eigenvector plane, Lanczos extreme eigenvalues, Hutch++ trace and SLQ spectral density",
        run: demo::run,
        uses_ranks: true,
    }]
}
