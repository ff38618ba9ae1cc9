//! `track-pat`: predict-and-track (Hamming loss through the per-layer assignment with the
//! blackbox gradient) for every λ in `lambdas`, evaluated on the test grid.

use gradlab_core::experiment::{ExperimentResult, RunContext};

use super::tracking::{Params, run_variants, variant};
use crate::error::Error;
use crate::training::Method;

/// Run the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    if p.lambdas.is_empty() {
        return Err(Error::invalid("lambdas", "[]", "at least one λ for track-pat").into());
    }
    let variants = p.lambdas.iter().map(|&l| (format!("PAT λ={l}"), variant(&p, Method::Pat, Some(l)))).collect();
    run_variants(ctx, &p, variants, false, "track-pat: predict-and-track with the blackbox assignment gradient")
}
