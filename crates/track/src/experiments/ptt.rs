//! `track-ptt`: predict-then-track (binary cross-entropy on the edge probabilities, the
//! assignment at inference only), evaluated on the test grid.

use gradlab_core::experiment::{ExperimentResult, RunContext};

use super::tracking::{Params, run_variants, variant};
use crate::training::Method;

/// Run the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    let variants = vec![("PTT".to_string(), variant(&p, Method::Ptt, None))];
    run_variants(ctx, &p, variants, false, "track-ptt: predict-then-track (BCE, assignment at inference)")
}
