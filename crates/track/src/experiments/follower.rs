//! `track-follower`: purity and efficiency of the track-follower baseline (and of the truth
//! "oracle" selection, an upper bound set by the filters) on independent test frames.

use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::report::Report;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::SetupParams;
use crate::follower::{FollowerConfig, follow};
use crate::graph::HitGraph;
use crate::sim::Simulator;
use crate::tracks::{FrameMetrics, TrackFilter, average, build_tracks, evaluate, oracle_selection};

/// Parameters of `track-follower`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Seed.
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
    /// Phantom thicknesses [mm].
    pub thicknesses_mm: Vec<f64>,
    /// Primaries per frame.
    pub primaries: Vec<usize>,
    /// Test frames per setting.
    pub frames: usize,
    /// First frame index (RNG stream) of the test frames, disjoint from training data.
    #[serde(default = "default_first")]
    pub first_frame: u64,
}

fn default_first() -> u64 {
    1_000_000
}

/// Paper (Kortus et al. 2025, Table 2): track follower at 100 primaries, purity/efficiency [%].
pub const PAPER_FOLLOWER_100: [(u32, f64, f64); 3] = [(100, 83.0, 74.6), (150, 86.5, 79.0), (200, 87.4, 80.3)];
/// Paper: PAT λ = 50 on the line graph, (thickness, primaries, purity, efficiency) [%].
pub const PAPER_PAT: [(u32, u32, f64, f64); 9] = [
    (100, 50, 95.0, 83.9),
    (150, 50, 96.3, 87.1),
    (200, 50, 96.5, 89.0),
    (100, 100, 87.4, 75.1),
    (150, 100, 92.0, 82.4),
    (200, 100, 92.5, 84.6),
    (100, 150, 76.8, 64.4),
    (150, 150, 85.1, 75.5),
    (200, 150, 88.1, 80.6),
];

/// Run the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    if p.frames == 0 {
        return Err("frames must be >= 1".into());
    }
    p.follower.validate()?;
    let det = p.setup.detector.load()?;
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for &n in &p.primaries {
        for &t in &p.thicknesses_mm {
            let sim = Simulator::new(&p.setup.sim_config(&det, t, n))?;
            let start = std::time::Instant::now();
            let per: Vec<Result<(FrameMetrics, FrameMetrics), crate::Error>> = (p.first_frame
                ..p.first_frame + p.frames as u64)
                .into_par_iter()
                .map(|f| {
                    let frame = sim.simulate_frame(p.seed, f);
                    let g = HitGraph::build(&frame, &p.setup.graph)?;
                    let tf = p.filter.apply(&g, follow(&g, &p.follower)?);
                    let to = p.filter.apply(&g, build_tracks(&g, &oracle_selection(&g), 1_000_000)?);
                    Ok((evaluate(&g, &tf), evaluate(&g, &to)))
                })
                .collect();
            let per: Vec<(FrameMetrics, FrameMetrics)> = per.into_iter().collect::<Result<_, _>>()?;
            let secs = start.elapsed().as_secs_f64();
            let fol = average(&per.iter().map(|x| x.0).collect::<Vec<_>>());
            let ora = average(&per.iter().map(|x| x.1).collect::<Vec<_>>());
            let paper_f = PAPER_FOLLOWER_100
                .iter()
                .find(|r| n == 100 && (r.0 as f64 - t).abs() < 1e-9)
                .map(|r| format!("{:.1} / {:.1}", r.1, r.2))
                .unwrap_or_else(|| "—".into());
            let paper_pat = PAPER_PAT
                .iter()
                .find(|r| r.1 as usize == n && (r.0 as f64 - t).abs() < 1e-9)
                .map(|r| format!("{:.1} / {:.1}", r.2, r.3))
                .unwrap_or_else(|| "—".into());
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
                paper_f,
                format!("{:.1} / {:.1}", 100.0 * ora.purity, 100.0 * ora.efficiency),
                paper_pat,
            ]);
            let rec = serde_json::json!({
                "primaries": n, "thickness_mm": t, "frames": p.frames,
                "follower": fol, "oracle": ora, "seconds": secs,
            });
            ctx.metrics()?.log(&rec)?;
            out.push(rec);
        }
    }
    let mut report = Report::new("track-follower: purity / efficiency of the track-follower baseline");
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    report.paragraph(&format!(
        "{} test frames per setting (frame indices from {}), seed {}. Filters: more than {} hits, last hit edep > {} MeV. \
         Purity and efficiency in % (mean ± standard error over frames), computed per frame over all-primary tracks as in \
         the reference code. The oracle keeps exactly the true edges of primaries: its efficiency is the ceiling the filters allow.",
        p.frames, p.first_frame, p.seed, p.filter.more_hits_than, p.filter.last_hit_min_edep_mev
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
        &rows,
    );
    ctx.dir.write_summary(&serde_json::json!({ "results": out }))?;
    report.write(&ctx.dir)?;
    Ok(())
}
