//! Track-follower baseline in the style of Pettersen et al. (NIM A 860, 2017), run backwards
//! from the Bragg-peak end as in the Bergen pCT reconstruction.
//!
//! Layers are processed from the deepest to the shallowest. Every hit not yet on a track starts
//! a seed. Each open track proposes its continuations into the next shallower layer among the
//! hit graph's candidate edges (so the follower and the GNN see the same candidates):
//! - a track with ≥ 2 hits scores a candidate by the scattering angle between its last segment
//!   and the new one, and accepts it below `max_scatter_rad`;
//! - a seed (1 hit) scores a candidate by the polar angle of the segment to the beam axis
//!   (i.e. the nearest hit for a fixed layer gap), below `max_seed_theta_rad`.
//!
//! Conflicts (two tracks wanting one hit) are resolved greedily: established tracks first, each
//! group by ascending score, each hit used once. A track that finds no free candidate ends.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::HitGraph;
use crate::tracks::Track;

/// Parameters of the track follower.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowerConfig {
    /// Largest accepted angle between consecutive segments [rad].
    #[serde(default = "default_scatter")]
    pub max_scatter_rad: f64,
    /// Largest accepted polar angle of a seed's first segment [rad].
    #[serde(default = "default_seed")]
    pub max_seed_theta_rad: f64,
}

fn default_scatter() -> f64 {
    0.25
}
fn default_seed() -> f64 {
    0.4
}

impl Default for FollowerConfig {
    fn default() -> Self {
        FollowerConfig { max_scatter_rad: default_scatter(), max_seed_theta_rad: default_seed() }
    }
}

impl FollowerConfig {
    /// Check the angles.
    pub fn validate(&self) -> Result<()> {
        for (f, v) in [
            ("follower.max_scatter_rad", self.max_scatter_rad),
            ("follower.max_seed_theta_rad", self.max_seed_theta_rad),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= std::f64::consts::PI) {
                return Err(Error::invalid(f, v, "0 < angle <= π rad"));
            }
        }
        Ok(())
    }
}

fn unit(g: &HitGraph, from: usize, to: usize) -> [f64; 3] {
    let (a, b) = (g.position(from), g.position(to));
    let d = [(b[0] - a[0]) as f64, (b[1] - a[1]) as f64, (b[2] - a[2]) as f64];
    let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(f64::MIN_POSITIVE);
    [d[0] / n, d[1] / n, d[2] / n]
}

/// Run the follower on a hit graph; returns tracks shallow → deep (like [`crate::tracks::build_tracks`]).
pub fn follow(g: &HitGraph, cfg: &FollowerConfig) -> Result<Vec<Track>> {
    cfg.validate()?;
    let n = g.num_nodes();
    let mut used = vec![false; n];
    // Tracks deep → shallow while growing.
    let mut tracks: Vec<Vec<u32>> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for l in (0..g.num_layers).rev() {
        // Seeds: free hits of this layer.
        for v in g.layer_nodes(l) {
            if !used[v] {
                used[v] = true;
                tracks.push(vec![v as u32]);
                open.push(tracks.len() - 1);
            }
        }
        if l == 0 {
            break;
        }
        // Proposals (group, score, track, candidate): group 0 = established, 1 = seeds.
        let mut props: Vec<(u8, f64, usize, u32)> = Vec::new();
        for &t in &open {
            let tr = &tracks[t];
            let end = *tr.last().expect("non-empty") as usize;
            for e in g.out_edges(end) {
                let c = g.dst[e] as usize;
                if used[c] {
                    continue;
                }
                if tr.len() >= 2 {
                    let prev = tr[tr.len() - 2] as usize;
                    let a = unit(g, prev, end);
                    let b = unit(g, end, c);
                    let cos = (a[0] * b[0] + a[1] * b[1] + a[2] * b[2]).clamp(-1.0, 1.0);
                    let ang = cos.acos();
                    if ang < cfg.max_scatter_rad {
                        props.push((0, ang, t, c as u32));
                    }
                } else {
                    let theta = g.edge_features[3 * e + 2] as f64;
                    if theta < cfg.max_seed_theta_rad {
                        props.push((1, theta, t, c as u32));
                    }
                }
            }
        }
        props.sort_by(|a, b| {
            (a.0, a.1, a.2, a.3).partial_cmp(&(b.0, b.1, b.2, b.3)).unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut extended = vec![false; tracks.len()];
        let mut next_open = Vec::new();
        for (_, _, t, c) in props {
            if extended[t] || used[c as usize] {
                continue;
            }
            extended[t] = true;
            used[c as usize] = true;
            tracks[t].push(c);
            next_open.push(t);
        }
        open = next_open;
    }
    Ok(tracks
        .into_iter()
        .map(|mut t| {
            t.reverse();
            t
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphConfig;
    use crate::sim::Frame;
    use crate::tracks::tests::{h, hand_frame};
    use crate::tracks::{TrackFilter, evaluate};

    #[test]
    fn follows_straight_tracks() {
        let g = HitGraph::build(&hand_frame(), &GraphConfig::default()).unwrap();
        let tracks = TrackFilter::default().apply(&g, follow(&g, &FollowerConfig::default()).unwrap());
        assert_eq!(tracks.len(), 3);
        let m = evaluate(&g, &tracks);
        assert_eq!((m.considered, m.correct, m.true_tracks), (2, 2, 3));
    }

    #[test]
    fn prefers_the_straighter_continuation_and_resolves_conflicts() {
        // Two tracks that cross in the calorimeter: A straight at x = 0, B with slope 0.1 starting
        // at x = −2 (0.2 mm from A in layer 6). Nearest-hit following would swap them at the
        // crossing; the scattering-angle score keeps both correct.
        let mut hits = Vec::new();
        for l in 2..12u16 {
            let z = 107.8 + (l - 2) as f32 * 5.5;
            let bragg = if l == 11 { 0.2 } else { 0.02 };
            let mut a = h(l, 0.0, 0, true, bragg);
            a.z = z;
            let mut b = h(l, -2.0 + 0.55 * (l - 2) as f32, 1, true, bragg);
            b.z = z;
            hits.push(a);
            hits.push(b);
        }
        let f = Frame { hits, spot: [0.0, 0.0], primaries: 2 };
        let g = HitGraph::build(&f, &GraphConfig::default()).unwrap();
        let tracks = TrackFilter::default().apply(&g, follow(&g, &FollowerConfig::default()).unwrap());
        let m = evaluate(&g, &tracks);
        assert_eq!((m.considered, m.correct), (2, 2), "{tracks:?}");
        // Every hit is used at most once.
        let mut all: Vec<u32> = tracks.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), tracks.iter().map(|t| t.len()).sum::<usize>());
    }

    #[test]
    fn rejects_bad_config() {
        let g = HitGraph::build(&hand_frame(), &GraphConfig::default()).unwrap();
        let cfg = FollowerConfig { max_scatter_rad: -1.0, ..Default::default() };
        assert!(follow(&g, &cfg).unwrap_err().to_string().contains("max_scatter_rad"));
    }
}
