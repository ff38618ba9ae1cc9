//! `track-simulate`: generate a dataset, measure per-frame graph sizes against the paper's
//! table, draw an event display (x–z, y–z) and energy-deposit-vs-depth (Bragg) curves.

use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::plot::{LinePlot, Mark};
use gradlab_core::report::Report;
use serde::{Deserialize, Serialize};

use super::{SetupParams, paper_sizes};
use crate::dataset;
use crate::graph::{GraphSizes, HitGraph, LineGraph};
use crate::sim::Simulator;

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
    /// Seed of everything.
    pub seed: u64,
    /// Simulation setup.
    #[serde(default)]
    pub setup: SetupParams,
    /// Phantom thicknesses [mm].
    pub thicknesses_mm: Vec<f64>,
    /// Primaries per frame.
    pub primaries: Vec<usize>,
    /// Frames per (thickness, primaries) for the graph statistics.
    pub stats_frames: usize,
    /// The dataset.
    pub dataset: DatasetParams,
    /// Event display: (thickness, primaries).
    pub display: (f64, usize),
}

impl Default for SetupParams {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, s)
}

/// Run the experiment.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: Params = ctx.params()?;
    if p.stats_frames == 0 {
        return Err("stats_frames must be >= 1".into());
    }
    let det = p.setup.detector.load()?;
    let mut report = Report::new("track-simulate: Bergen DTC simulation and graph statistics");
    report.paragraph(&format!("Command: `{}`", ctx.command()));

    // 1. Graph statistics.
    let mut rows = Vec::new();
    let mut stats = Vec::new();
    for &t in &p.thicknesses_mm {
        for &n in &p.primaries {
            let sim = Simulator::new(&p.setup.sim_config(&det, t, n))?;
            let start = std::time::Instant::now();
            let frames = sim.simulate_frames(p.seed, 0, p.stats_frames as u64);
            let sim_s = start.elapsed().as_secs_f64();
            let mut sizes = Vec::new();
            let mut prim_hits = 0usize;
            for f in &frames {
                let g = HitGraph::build(f, &p.setup.graph)?;
                let lg = LineGraph::build(&g);
                sizes.push(GraphSizes::of(&g, &lg));
                prim_hits += f.hits.iter().filter(|h| h.primary).count();
            }
            let col =
                |f: &dyn Fn(&GraphSizes) -> usize| mean_sd(&sizes.iter().map(|s| f(s) as f64).collect::<Vec<_>>());
            let (nodes, nodes_sd) = col(&|s| s.nodes);
            let (edges, edges_sd) = col(&|s| s.edges);
            let (lines, lines_sd) = col(&|s| s.line_edges);
            let (te, _) = col(&|s| s.true_edges);
            let per = nodes / n as f64;
            let per_prim = prim_hits as f64 / (frames.len() * n) as f64;
            let paper = paper_sizes(t, n);
            let rel = |ours: f64, theirs: f64| format!("{:+.0}%", 100.0 * (ours / theirs - 1.0));
            rows.push(vec![
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
            ]);
            let rec = serde_json::json!({
                "thickness_mm": t, "primaries": n, "frames": frames.len(),
                "nodes": nodes, "nodes_sd": nodes_sd, "edges": edges, "edges_sd": edges_sd,
                "line_edges": lines, "line_edges_sd": lines_sd, "true_edges": te,
                "hits_per_primary": per, "primary_hits_per_primary": per_prim,
                "paper": paper.map(|q| serde_json::json!({"nodes": q.0, "edges": q.1, "line_edges": q.2})),
                "sim_seconds": sim_s,
            });
            ctx.metrics()?.log(&rec)?;
            stats.push(rec);
        }
    }
    report.heading("Per-frame graph sizes (mean ± sd) vs the paper");
    report.paragraph(&format!(
        "{} frames per setting, seed {}. Hit graph with polar-angle cuts {} rad (calorimeter) / {} rad (tracker); \
         line-graph edges counted undirected (both directions), as in the paper. Hits per primary: all hits \
         (primary hits only in brackets).",
        p.stats_frames, p.seed, p.setup.graph.calorimeter_max_theta_rad, p.setup.graph.tracker_max_theta_rad
    ));
    report.table(
        &[
            "water mm",
            "p+/frame",
            "nodes",
            "paper",
            "edges",
            "paper",
            "line-graph edges",
            "paper",
            "hits/primary",
            "true edges",
        ],
        &rows,
    );

    // 2. Dataset.
    let ds = &p.dataset;
    let ds_dir = match &ds.dir {
        Some(d) => std::path::PathBuf::from(d),
        None => ctx.dir.path().join("dataset"),
    };
    let manifest = dataset::generate(
        &ds_dir,
        &p.setup.sim_config(&det, ds.thickness_mm, ds.primaries),
        p.seed,
        &ds.splits,
        ds.overwrite,
        !ctx.quiet,
    )?;
    // Check the reload is exact on the first split.
    if let Some((name, info)) = manifest.splits.first() {
        let frames = dataset::load_split(&ds_dir, name)?;
        let sim = Simulator::new(&manifest.config)?;
        if let Some(f0) = frames.first()
            && *f0 != sim.simulate_frame(manifest.seed, info.first_frame)
        {
            return Err("dataset reload differs from a fresh simulation".into());
        }
    }
    report.heading("Dataset");
    report.paragraph(&format!(
        "Written to `{}`: {} mm water, {} primaries per frame, splits {}. Reloaded and compared with a fresh simulation.",
        ds_dir.display(),
        ds.thickness_mm,
        ds.primaries,
        manifest
            .splits
            .iter()
            .map(|(n, s)| format!("{n} = {} frames / {} hits", s.frames, s.hits))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // 3. Event display.
    let (dt, dn) = p.display;
    let sim = Simulator::new(&p.setup.sim_config(&det, dt, dn))?;
    let frame = sim.simulate_frame(p.seed, 0);
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

    // 4. Bragg curves: mean deposit per layer of primary hits, and single primaries.
    let mut bragg = LinePlot::new("Mean energy deposit per layer (primary hits)")
        .x_label("layer z [mm]")
        .y_label("mean edep [keV]");
    for &t in &p.thicknesses_mm {
        let sim = Simulator::new(&p.setup.sim_config(&det, t, 100))?;
        let frames = sim.simulate_frames(p.seed ^ 0xB4A6, 0, 3);
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
    let mut single = LinePlot::new(&format!("Energy deposit vs depth of single primaries ({dt:.0} mm water)"))
        .x_label("layer z [mm]")
        .y_label("edep [keV]");
    for track in 0..6u32 {
        let pts: Vec<(f64, f64)> = frame
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

    ctx.dir.write_summary(&serde_json::json!({
        "graph_stats": stats,
        "dataset": {"dir": ds_dir.display().to_string(), "splits": manifest.splits},
        "display_frame_hits": frame.hits.len(),
    }))?;
    report.write(&ctx.dir)?;
    Ok(())
}
