//! The experiments of this crate, for the `cargo xtask experiment` runner: one file per
//! experiment, each reading its typed parameters and running as stages over library calls.
//!
//! - `track-simulate` ([`simulate`]): a dataset, graph statistics vs the paper, an event display
//!   and Bragg curves;
//! - `track-follower` ([`follower`]): purity/efficiency of the track-follower baseline;
//! - `track-pat` ([`pat`]), `track-ptt` ([`ptt`]), `track-compare` ([`compare`]): train the
//!   interaction network with PAT / PTT over replicate seeds and evaluate it on a grid of
//!   settings (shared stages in [`tracking`]);
//! - `track-landscape` ([`landscape`]): the loss-landscape and stability study;
//! - `track-image` ([`image`]): what tracking errors cost downstream (WEPL per track, a proton
//!   radiograph of a phantom with material inserts).
//!
//! Every run has one `seed` (the GNN studies also a `seeds` list of replicates); every other
//! seed is derived from it with named streams, and a derived seed field given non-zero in a
//! config is refused.

use gradlab_core::experiment::Experiment;

pub mod common;
pub mod compare;
pub mod follower;
pub mod image;
pub mod landscape;
pub mod pat;
pub mod ptt;
pub mod simulate;
pub mod tracking;

/// The experiments of this crate.
pub fn all() -> Vec<Experiment> {
    vec![
        Experiment {
            entry: "track.simulate",
            description: "Bergen DTC simulation: dataset, graph statistics vs the paper, event display, Bragg curves",
            run: simulate::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "track.follower",
            description: "Track-follower baseline: purity/efficiency for 50/100/150 primaries x 100/150/200 mm water",
            run: follower::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "track.pat",
            description: "PAT (end-to-end, blackbox LAP gradient) for several λ: purity/efficiency grid",
            run: pat::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "track.ptt",
            description: "PTT (BCE, LAP at inference): purity/efficiency grid",
            run: ptt::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "track.compare",
            description: "PAT λ=50 vs PTT vs score threshold vs track follower, beside the paper; timings",
            run: compare::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "track.landscape",
            description: "Loss-landscape study: linear vs Bézier mode connectivity between seeds (max Hamming, min TPR), \
                          Hessian spectrum and top-2 eigenvector slices (loss, purity), prediction instability \
                          (min-max disagreement, CKA) vs λ for PAT λ∈{25,50,75} and PTT",
            run: landscape::run,
            uses_ranks: false,
        },
        Experiment {
            entry: "track.image",
            description: "What tracking errors cost downstream: per-track WEPL and a proton radiograph of a \
                          CTP404-like phantom for the oracle, the track follower and trained PAT/PTT models",
            run: image::run,
            uses_ranks: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use crate::graph::{GraphConfig, HitGraph, LineGraph};
    use crate::paper::GRAPH_SIZES;
    use crate::sim::{SimConfig, Simulator};

    /// Per-frame graph sizes within 25 % of the paper's table, for every thickness and density,
    /// with the default simulator (12 frames per setting; the experiment `track-simulate`
    /// reports 100 frames).
    #[test]
    fn graph_sizes_within_25_percent_of_the_paper() {
        for &(t, n, nodes, edges, lg) in &GRAPH_SIZES {
            let sim = Simulator::new(&SimConfig::bergen(t as f64, n as usize)).unwrap();
            let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
            let frames = 12;
            for f in 0..frames {
                let g = HitGraph::build(&sim.simulate_frame(1, f), &GraphConfig::default()).unwrap();
                a += g.num_nodes() as f64;
                b += g.num_edges() as f64;
                c += LineGraph::build(&g).num_edges_undirected() as f64;
            }
            let k = frames as f64;
            for (what, ours, paper) in
                [("nodes", a / k, nodes), ("edges", b / k, edges), ("line-graph edges", c / k, lg)]
            {
                let rel = ours / paper - 1.0;
                assert!(rel.abs() < 0.25, "{t} mm, {n} p+: {what} {ours:.0} vs paper {paper} ({:+.0} %)", rel * 100.0);
            }
        }
    }
}
