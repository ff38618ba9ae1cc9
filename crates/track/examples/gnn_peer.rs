//! One simulated frame for the side-by-side timing of the tracking GNN against PyTorch
//! (`scripts/compare/track_gnn.sh`): writes the frame's line graph to `DIR` as `.npy` files
//! (raw node features `[N, 8]`, directed pairs `pred`/`succ`, angles, edge truth) and times our
//! train-mode forward + backward (PTT loss) on it, one JSON line on stdout.
//!
//! `cargo run --release -p gradlab-track --example gnn_peer -- DIR PRIMARIES THICKNESS_MM REPEATS`
//! (threads: `RAYON_NUM_THREADS`).

use std::path::PathBuf;
use std::time::Instant;

use gradlab_core::io::{write_npy_1d, write_npy_2d};
use gradlab_track::gnn::GnnConfig;
use gradlab_track::graph::{GraphConfig, HitGraph, LINE_NODE_FEATURES, LineGraph};
use gradlab_track::layer_assign::AssignConfig;
use gradlab_track::sim::{SimConfig, Simulator};
use gradlab_track::training::{FrameData, Method, Model, frame_loss};

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        return Err("usage: gnn_peer DIR PRIMARIES THICKNESS_MM REPEATS".into());
    }
    let dir = PathBuf::from(&args[0]);
    let primaries: usize = args[1].parse().map_err(|e| format!("PRIMARIES: {e}"))?;
    let thickness: f64 = args[2].parse().map_err(|e| format!("THICKNESS_MM: {e}"))?;
    let repeats: usize = args[3].parse().map_err(|e| format!("REPEATS: {e}"))?;
    if repeats == 0 {
        return Err("REPEATS must be ≥ 1".into());
    }
    std::fs::create_dir_all(&dir)?;
    let frame = Simulator::new(&SimConfig::bergen(thickness, primaries))?.simulate_frame(1, 0);
    let g = HitGraph::build(&frame, &GraphConfig::default())?;
    let lg = LineGraph::build(&g);
    let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let idx = |v: &[u32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    write_npy_2d(&dir.join("x.npy"), lg.num_nodes(), LINE_NODE_FEATURES, &f64s(&lg.node_features))?;
    write_npy_1d(&dir.join("pred.npy"), &idx(&lg.pred))?;
    write_npy_1d(&dir.join("succ.npy"), &idx(&lg.succ))?;
    write_npy_1d(&dir.join("angle.npy"), &f64s(&lg.angle))?;
    let truth: Vec<f64> = g.edge_truth.iter().map(|&t| if t { 1.0 } else { 0.0 }).collect();
    write_npy_1d(&dir.join("truth.npy"), &truth)?;

    let cfg = GnnConfig::default();
    let fd = FrameData::from_graph(g, &cfg, 3, &candle_core::Device::Cpu)?;
    let model = Model::new(&cfg, 1)?;
    let assign = AssignConfig::default();
    let mut ms = Vec::with_capacity(repeats);
    for _ in 0..=repeats {
        let t = Instant::now();
        let loss = frame_loss(&model, &fd, Method::Ptt, &assign, true)?;
        let _grads = loss.backward()?;
        ms.push(1e3 * t.elapsed().as_secs_f64());
    }
    ms.remove(0); // warm-up
    ms.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "impl": "gradlab",
        "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        "nodes": lg.num_nodes(),
        "messages": 2 * lg.num_pairs(),
        "median_ms": ms[ms.len() / 2],
        "min_ms": ms[0],
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
    Ok(())
}
