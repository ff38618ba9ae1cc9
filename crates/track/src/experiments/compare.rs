//! `track-compare`: PAT for every λ in `lambdas` (or `compare_lambda` alone when `lambdas` is
//! empty) vs PTT vs the score-threshold baseline vs the track follower on the test grid, beside
//! the paper, with timings.

use gradlab_core::experiment::{ExperimentResult, RunContext};

use super::tracking::{Params, run_variants, variant};
use crate::training::Method;

/// Run the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    let lambdas = if p.lambdas.is_empty() { vec![p.compare_lambda] } else { p.lambdas.clone() };
    let mut variants: Vec<_> =
        lambdas.iter().map(|&l| (format!("PAT λ={l}"), variant(&p, Method::Pat, Some(l)))).collect();
    variants.push(("PTT".into(), variant(&p, Method::Ptt, None)));
    run_variants(ctx, &p, variants, true, "track-compare: PAT vs PTT vs score threshold vs track follower")
}
