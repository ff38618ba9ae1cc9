//! `track-simulate`: generate a dataset, measure per-frame graph sizes against the paper's
//! table, draw an event display (x–z, y–z) and energy-deposit-vs-depth (Bragg) curves.

use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::plot::{LinePlot, Mark};
use gradlab_core::report::Report;
use gradlab_core::rng::derive_seed;
use serde::{Deserialize, Serialize};

use super::common::mean_std;
use crate::dataset::{self, Manifest};
use crate::detector::DetectorConfig;
use crate::error::{Error, Result};
use crate::graph::{GraphSizes, HitGraph, LineGraph};
use crate::paper;
use crate::setup::{Grid, SetupParams};
use crate::sim::{Frame, Simulator};

/// Named stream of the frames of the mean Bragg curves.
const STREAM_BRAGG: u64 = 0xB4A6;

/// Dataset to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetParams {
    /// Phantom thickness [mm].
    pub thickness_mm: f64,
    /// Primaries per frame.
    pub primaries: usize,
    /// (split, frames) in order.
    pub splits: Vec<(String, usize)>,
    /// Folder; default `<run dir>/dataset`.
    #[serde(default)]
    pub dir: Option<String>,
    /// Replace an existing dataset in `dir`.
    #[serde(default)]
    pub overwrite: bool,
}

/// Parameters of `track-simulate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The run's seed: statistics frames, dataset, event display (the Bragg frames use a
    /// stream derived from it).
    pub seed: u64,
    /// Simulation setup.
    #[serde(default)]
    pub setup: SetupParams,
    /// Settings and frames per setting of the graph statistics.
    pub grid: Grid,
    /// The dataset.
    pub dataset: DatasetParams,
    /// Event display: (thickness, primaries).
    pub display: (f64, usize),
}

/// Run the experiment: graph statistics → dataset → event display → Bragg curves → report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    p.grid.validate("grid")?;
    let det = p.setup.detector.load()?;
    let mut report = Report::new("track-simulate: Bergen DTC simulation and graph statistics");
    report.paragraph(&format!("Command: `{}`", ctx.command()));
    let stats = graph_statistics(ctx, &p, &det, &mut report)?;
    let (ds_dir, manifest) = write_dataset(ctx, &p, &det, &mut report)?;
    let display = event_display(ctx, &p, &det, &mut report)?;
    bragg_curves(ctx, &p, &det, &display, &mut report)?;
    ctx.dir.write_summary(&serde_json::json!({
        "graph_stats": stats,
        "dataset": {"dir": ds_dir.display().to_string(), "splits": manifest.splits},
        "display_frame_hits": display.hits.len(),
    }))?;
    report.write(&ctx.dir)?;
    Ok(())
}

/// Per-frame graph sizes of every setting beside the paper's table.
fn graph_statistics(
    ctx: &mut RunContext,
    p: &Params,
    det: &DetectorConfig,
    report: &mut Report,
) -> Result<Vec<serde_json::Value>> {
    let mut rows = Vec::new();
    let mut stats = Vec::new();
    for &t in &p.grid.thicknesses_mm {
        for &n in &p.grid.primaries {
            let (row, rec) = setting_statistics(p, det, t, n)?;
            ctx.metrics()?.log(&rec)?;
            rows.push(row);
            stats.push(rec);
        }
    }
    report.heading("Per-frame graph sizes (mean ± sd) vs the paper");
    report.paragraph(&format!(
        "{} frames per setting, seed {}. Hit graph with polar-angle cuts {} rad (calorimeter) / {} rad (tracker); \
         line-graph edges counted undirected (both directions), as in the paper. Hits per primary: all hits \
         (primary hits only in brackets).",
        p.grid.frames, p.seed, p.setup.graph.calorimeter_max_theta_rad, p.setup.graph.tracker_max_theta_rad
    ));
    let header = ["water mm", "p+/frame", "nodes", "paper", "edges", "paper", "line-graph edges", "paper"];
    let mut header = header.to_vec();
    header.extend(["hits/primary", "true edges"]);
    report.table(&header, &rows);
    Ok(stats)
}

/// Graph sizes of one setting: its table row and its metrics record.
fn setting_statistics(p: &Params, det: &DetectorConfig, t: f64, n: usize) -> Result<(Vec<String>, serde_json::Value)> {
    let sim = p.setup.simulator(det, t, n)?;
    let start = std::time::Instant::now();
    let frames = sim.simulate_frames(p.seed, 0, p.grid.frames as u64);
    let sim_s = start.elapsed().as_secs_f64();
    let mut sizes = Vec::new();
    let mut prim_hits = 0usize;
    for f in &frames {
        let g = HitGraph::build(f, &p.setup.graph)?;
        sizes.push(GraphSizes::of(&g, &LineGraph::build(&g)));
        prim_hits += f.hits.iter().filter(|h| h.primary).count();
    }
    let col = |f: &dyn Fn(&GraphSizes) -> usize| mean_std(&sizes.iter().map(|s| f(s) as f64).collect::<Vec<_>>());
    let (nodes, nodes_sd) = col(&|s| s.nodes);
    let (edges, edges_sd) = col(&|s| s.edges);
    let (lines, lines_sd) = col(&|s| s.line_edges);
    let (te, _) = col(&|s| s.true_edges);
    let per = nodes / n as f64;
    let per_prim = prim_hits as f64 / (frames.len() * n) as f64;
    let paper = paper::graph_sizes(t, n);
    let rel = |ours: f64, theirs: f64| format!("{:+.0}%", 100.0 * (ours / theirs - 1.0));
    let row = vec![
        format!("{t:.0}"),
        n.to_string(),
        format!("{nodes:.0} ± {nodes_sd:.0}"),
        paper.map_or("—".into(), |q| format!("{:.0} ({})", q.0, rel(nodes, q.0))),
        format!("{edges:.0} ± {edges_sd:.0}"),
        paper.map_or("—".into(), |q| format!("{:.0} ({})", q.1, rel(edges, q.1))),
        format!("{lines:.0} ± {lines_sd:.0}"),
        paper.map_or("—".into(), |q| format!("{:.0} ({})", q.2, rel(lines, q.2))),
        format!("{per:.2} ({per_prim:.2})"),
        format!("{:.1}%", 100.0 * te / edges.max(1.0)),
    ];
    let rec = serde_json::json!({
        "thickness_mm": t, "primaries": n, "frames": frames.len(),
        "nodes": nodes, "nodes_sd": nodes_sd, "edges": edges, "edges_sd": edges_sd,
        "line_edges": lines, "line_edges_sd": lines_sd, "true_edges": te,
        "hits_per_primary": per, "primary_hits_per_primary": per_prim,
        "paper": paper.map(|q| serde_json::json!({"nodes": q.0, "edges": q.1, "line_edges": q.2})),
        "sim_seconds": sim_s,
    });
    Ok((row, rec))
}

/// Write the dataset and check that its first frame reloads exactly.
fn write_dataset(
    ctx: &RunContext,
    p: &Params,
    det: &DetectorConfig,
    report: &mut Report,
) -> Result<(std::path::PathBuf, Manifest)> {
    let ds = &p.dataset;
    let ds_dir = match &ds.dir {
        Some(d) => std::path::PathBuf::from(d),
        None => ctx.dir.path().join("dataset"),
    };
    let cfg = p.setup.sim_config(det, ds.thickness_mm, ds.primaries);
    let manifest = dataset::generate(&ds_dir, &cfg, p.seed, &ds.splits, ds.overwrite, !ctx.quiet)?;
    if let Some((name, info)) = manifest.splits.first() {
        let frames = dataset::load_split(&ds_dir, name)?;
        let sim = Simulator::new(&manifest.config)?;
        if let Some(f0) = frames.first()
            && *f0 != sim.simulate_frame(manifest.seed, info.first_frame)
        {
            return Err(Error::CorruptDataset {
                path: ds_dir.clone(),
                message: "the reloaded first frame differs from a fresh simulation".into(),
            });
        }
    }
    let splits: Vec<String> =
        manifest.splits.iter().map(|(n, s)| format!("{n} = {} frames / {} hits", s.frames, s.hits)).collect();
    report.heading("Dataset");
    report.paragraph(&format!(
        "Written to `{}`: {} mm water, {} primaries per frame, splits {}. Reloaded and compared with a fresh simulation.",
        ds_dir.display(),
        ds.thickness_mm,
        ds.primaries,
        splits.join(", ")
    ));
    Ok((ds_dir, manifest))
}

/// Event display (x–z and y–z) of one frame; returns the frame.
fn event_display(ctx: &RunContext, p: &Params, det: &DetectorConfig, report: &mut Report) -> Result<Frame> {
    let (dt, dn) = p.display;
    let frame = p.setup.simulator(det, dt, dn)?.simulate_frame(p.seed, 0);
    for (axis, name) in [(0usize, "x"), (1usize, "y")] {
        let coord = |h: &crate::sim::Hit| if axis == 0 { h.x as f64 } else { h.y as f64 };
        let prim: Vec<(f64, f64)> = frame.hits.iter().filter(|h| h.primary).map(|h| (h.z as f64, coord(h))).collect();
        let sec: Vec<(f64, f64)> = frame.hits.iter().filter(|h| !h.primary).map(|h| (h.z as f64, coord(h))).collect();
        let mut plot = LinePlot::new(&format!("Event display: {dn} primaries, {dt:.0} mm water ({name}-z)"))
            .x_label("z [mm]")
            .y_label(&format!("{name} [mm]"))
            .series("primary hits", prim, Mark::Points)
            .series("secondary hits", sec, Mark::Points);
        for track in 0..4u32 {
            let pts: Vec<(f64, f64)> =
                frame.hits.iter().filter(|h| h.track == track && h.primary).map(|h| (h.z as f64, coord(h))).collect();
            if pts.len() > 1 {
                plot = plot.line(&format!("true track {track}"), pts);
            }
        }
        plot.save(&ctx.dir.path().join(format!("event_display_{name}z")))?;
        report.figure(&format!("Event display ({name}–z)"), &format!("event_display_{name}z.png"));
    }
    Ok(frame)
}

/// Mean deposit per layer of primary hits for every thickness, and single primaries of the
/// display frame.
fn bragg_curves(
    ctx: &RunContext,
    p: &Params,
    det: &DetectorConfig,
    display: &Frame,
    report: &mut Report,
) -> Result<()> {
    let mut bragg = LinePlot::new("Mean energy deposit per layer (primary hits)")
        .x_label("layer z [mm]")
        .y_label("mean edep [keV]");
    for &t in &p.grid.thicknesses_mm {
        let sim = p.setup.simulator(det, t, 100)?;
        let frames = sim.simulate_frames(derive_seed(p.seed, STREAM_BRAGG), 0, 3);
        let mut sum = vec![0.0f64; sim.detector.num_layers()];
        let mut cnt = vec![0usize; sim.detector.num_layers()];
        for h in frames.iter().flat_map(|f| &f.hits).filter(|h| h.primary) {
            sum[h.layer as usize] += h.edep as f64 * 1e3;
            cnt[h.layer as usize] += 1;
        }
        let pts: Vec<(f64, f64)> = (0..sum.len())
            .filter(|&l| cnt[l] >= 5)
            .map(|l| (sim.detector.layer_z[l], sum[l] / cnt[l] as f64))
            .collect();
        bragg = bragg.series(&format!("{t:.0} mm water"), pts, Mark::LinePoints);
    }
    bragg.save(&ctx.dir.path().join("bragg_mean"))?;
    let mut single =
        LinePlot::new(&format!("Energy deposit vs depth of single primaries ({:.0} mm water)", p.display.0))
            .x_label("layer z [mm]")
            .y_label("edep [keV]");
    for track in 0..6u32 {
        let pts: Vec<(f64, f64)> = display
            .hits
            .iter()
            .filter(|h| h.track == track && h.primary)
            .map(|h| (h.z as f64, h.edep as f64 * 1e3))
            .collect();
        if pts.len() > 2 {
            single = single.series(&format!("primary {track}"), pts, Mark::LinePoints);
        }
    }
    single.save(&ctx.dir.path().join("bragg_single"))?;
    report.figure("Mean deposit per layer", "bragg_mean.png");
    report.figure("Single primaries", "bragg_single.png");
    Ok(())
}
