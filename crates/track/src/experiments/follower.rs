//! `track-follower`: purity and efficiency of the track-follower baseline (and of the truth
//! "oracle" selection, an upper bound set by the filters) on independent test frames.

use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::report::Report;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::detector::DetectorConfig;
use crate::error::Result;
use crate::follower::{FollowerConfig, follow};
use crate::graph::HitGraph;
use crate::paper;
use crate::setup::{Grid, SetupParams, TEST_FIRST};
use crate::tracks::{FrameMetrics, MeanMetrics, TrackFilter, average, build_tracks, evaluate, oracle_selection};

/// Parameters of `track-follower`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The run's seed (simulation).
    pub seed: u64,
    /// Simulation setup.
    #[serde(default)]
    pub setup: SetupParams,
    /// Follower parameters.
    #[serde(default)]
    pub follower: FollowerConfig,
    /// Track filter.
    #[serde(default)]
    pub filter: TrackFilter,
    /// Test settings and frames per setting.
    pub grid: Grid,
    /// First frame index (RNG stream) of the test frames, disjoint from training data.
    #[serde(default = "default_first")]
    pub first_frame: u64,
}

fn default_first() -> u64 {
    TEST_FIRST
}

/// Run the experiment: every setting (follower and oracle on the same frames) → report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.grid.validate("grid")?;
    p.follower.validate()?;
    let det = p.setup.detector.load()?;
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (n, t) in p.grid.settings() {
        let start = std::time::Instant::now();
        let (fol, ora) = setting(&p, &det, n, t)?;
        let secs = start.elapsed().as_secs_f64();
        rows.push(vec![
            n.to_string(),
            format!("{t:.0}"),
            format!(
                "{:.1} ± {:.1} / {:.1} ± {:.1}",
                100.0 * fol.purity,
                100.0 * fol.purity_sem,
                100.0 * fol.efficiency,
                100.0 * fol.efficiency_sem
            ),
            paper::follower(t, n).unwrap_or_else(|| "—".into()),
            format!("{:.1} / {:.1}", 100.0 * ora.purity, 100.0 * ora.efficiency),
            paper::pat(t, n).unwrap_or_else(|| "—".into()),
        ]);
        let rec = serde_json::json!({
            "primaries": n, "thickness_mm": t, "frames": p.grid.frames,
            "follower": fol, "oracle": ora, "seconds": secs,
        });
        ctx.metrics()?.log(&rec)?;
        out.push(rec);
    }
    write_report(ctx, &p, &rows)?;
    ctx.dir.write_summary(&serde_json::json!({ "results": out }))?;
    Ok(())
}

/// Follower and oracle metrics of one setting, averaged over its frames.
fn setting(p: &Params, det: &DetectorConfig, n: usize, t: f64) -> Result<(MeanMetrics, MeanMetrics)> {
    let sim = p.setup.simulator(det, t, n)?;
    let per: Vec<(FrameMetrics, FrameMetrics)> = (p.first_frame..p.first_frame + p.grid.frames as u64)
        .into_par_iter()
        .map(|f| {
            let frame = sim.simulate_frame(p.seed, f);
            let g = HitGraph::build(&frame, &p.setup.graph)?;
            let tf = p.filter.apply(&g, follow(&g, &p.follower)?);
            let to = p.filter.apply(&g, build_tracks(&g, &oracle_selection(&g), 1_000_000)?);
            Ok((evaluate(&g, &tf), evaluate(&g, &to)))
        })
        .collect::<Result<_>>()?;
    let fol = average(&per.iter().map(|x| x.0).collect::<Vec<_>>());
    let ora = average(&per.iter().map(|x| x.1).collect::<Vec<_>>());
    Ok((fol, ora))
}

fn write_report(ctx: &RunContext, p: &Params, rows: &[Vec<String>]) -> Result<()> {
    let mut report = Report::new("track-follower: purity / efficiency of the track-follower baseline");
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&format!(
        "{} test frames per setting (frame indices from {}), seed {}. Filters: more than {} hits, last hit edep > {} MeV. \
         Purity and efficiency in % (mean ± standard error over frames), computed per frame over all-primary tracks as in \
         the reference code. The oracle keeps exactly the true edges of primaries: its efficiency is the ceiling the filters allow.",
        p.grid.frames, p.first_frame, p.seed, p.filter.more_hits_than, p.filter.last_hit_min_edep_mev
    ));
    report.table(
        &[
            "p+/frame",
            "water mm",
            "follower (ours) pur / eff",
            "follower (paper)",
            "oracle pur / eff",
            "PAT λ=50 (paper)",
        ],
        rows,
    );
    report.write(&ctx.dir)?;
    Ok(())
}
