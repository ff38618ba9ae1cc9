//! Print per-frame graph sizes and hits per primary for the three phantoms (development aid).
//! `cargo run --release -p gradlab-track --example graph_stats -- [gap_mm] [frames] [physics json]
//! [thicknesses json] [primaries json] [tracker-calorimeter gap mm] [beam json] [detected|incident]`
use gradlab_track::detector::DetectorConfig;
use gradlab_track::graph::{GraphConfig, HitGraph, LineGraph};
use gradlab_track::sim::{
    BeamConfig, DetectorSource, FramePrimaries, PhantomConfig, PhysicsConfig, SimConfig, Simulator,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gap: f64 = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(50.0);
    let frames: u64 = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(10);
    let physics: PhysicsConfig = args.get(3).map(|s| serde_json::from_str(s).unwrap()).unwrap_or_default();
    let thicks: Vec<f64> = args.get(4).map(|s| serde_json::from_str(s).unwrap()).unwrap_or(vec![100.0, 150.0, 200.0]);
    let ns: Vec<usize> = args.get(5).map(|s| serde_json::from_str(s).unwrap()).unwrap_or(vec![50, 100, 150]);
    let mut det = DetectorConfig::bergen_dtc();
    if let Some(cg) = args.get(6).map(|s| s.parse::<f64>().unwrap()) {
        let shift = cg - (det.stacks[1].first_z_mm - det.stacks[0].first_z_mm - det.stacks[0].pitch_mm);
        det.stacks[1].first_z_mm += shift;
        for p in det.passive.iter_mut().filter(|p| p.name == "calorimeter_front_cover") {
            p.z_mm += shift;
        }
    }
    let beam: BeamConfig = args.get(7).map(|s| serde_json::from_str(s).unwrap()).unwrap_or_default();
    let frame_primaries: FramePrimaries =
        args.get(8).map(|s| serde_json::from_str(&format!("\"{s}\"")).unwrap()).unwrap_or_default();
    for &thick in &thicks {
        for &n in &ns {
            let physics = physics.clone();
            let cfg = SimConfig {
                detector: DetectorSource::Inline(Box::new(det.clone())),
                phantom: PhantomConfig::slab("water", thick, gap),
                beam: beam.clone(),
                physics,
                primaries_per_frame: n,
                frame_primaries,
                drop_layers_after_gap: true,
            };
            let sim = Simulator::new(&cfg).unwrap();
            let (mut nodes, mut edges, mut lg, mut te, mut prim) = (0.0, 0.0, 0.0, 0.0, 0.0);
            let (mut p0, mut p1) = (0.0, 0.0);
            for f in 0..frames {
                let fr = sim.simulate_frame(1, f);
                let g = HitGraph::build(&fr, &GraphConfig::default()).unwrap();
                let l = LineGraph::build(&g);
                nodes += g.num_nodes() as f64;
                p0 += g.pair_range(0).len() as f64;
                p1 += g.pair_range(1).len() as f64;
                edges += g.num_edges() as f64;
                te += g.num_true_edges() as f64;
                lg += l.num_edges_undirected() as f64;
                prim += fr.hits.iter().filter(|h| h.primary).count() as f64;
            }
            let k = frames as f64;
            println!(
                "{thick} mm  N={n}: nodes {:.0} ({:.2}/p, prim {:.2}/p) edges {:.0} (true {:.0}) line {:.0} pair01 {:.0} pair12 {:.0}",
                nodes / k,
                nodes / k / n as f64,
                prim / k / n as f64,
                edges / k,
                te / k,
                lg / k,
                p0 / k,
                p1 / k
            );
        }
    }
}
