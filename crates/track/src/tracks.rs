//! Tracks from selected edges, the paper's track filters, and purity/efficiency.
//!
//! Semantics follow the reference evaluation (`src/utils/eval.py` of SIVERT-pCT/e2e-tracking):
//! - selected hit-graph edges are followed from *roots* (hits with no selected edge towards a
//!   shallower layer — the front of a track) to *leaves* (hits with no selected edge coming from
//!   a deeper layer — the Bragg-peak end); every root-to-leaf path is a track, ordered
//!   shallow → deep;
//! - a track is kept when it has more than 4 hits and its last (deepest) hit deposits more than
//!   0.0625 MeV;
//! - per frame, only reconstructed tracks whose hits are all primary are considered; a considered
//!   track is *correct* when all its hits carry the same primary index;
//!   purity = correct / considered, efficiency = correct / (number of true tracks, i.e. primaries
//!   all of whose hits are primary). Both are 0 when nothing is considered (as in the reference).
//!   Metrics are averaged over frames.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::HitGraph;

/// A track: node indices of a hit graph, shallow → deep.
pub type Track = Vec<u32>;

/// The paper's track filter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackFilter {
    /// Keep tracks with strictly more hits than this (4).
    #[serde(default = "default_min_hits")]
    pub more_hits_than: usize,
    /// Keep tracks whose deepest hit deposits strictly more than this [MeV] (0.0625).
    #[serde(default = "default_last_edep")]
    pub last_hit_min_edep_mev: f32,
}

fn default_min_hits() -> usize {
    4
}
fn default_last_edep() -> f32 {
    0.0625
}

impl Default for TrackFilter {
    fn default() -> Self {
        TrackFilter { more_hits_than: default_min_hits(), last_hit_min_edep_mev: default_last_edep() }
    }
}

impl TrackFilter {
    /// Whether `t` passes.
    pub fn accepts(&self, g: &HitGraph, t: &[u32]) -> bool {
        t.len() > self.more_hits_than && t.last().is_some_and(|&n| g.edep[n as usize] > self.last_hit_min_edep_mev)
    }

    /// Keep the tracks that pass.
    pub fn apply(&self, g: &HitGraph, tracks: Vec<Track>) -> Vec<Track> {
        tracks.into_iter().filter(|t| self.accepts(g, t)).collect()
    }
}

/// All root-to-leaf paths of the selected edges (`selected[e]` for every hit-graph edge).
///
/// Fails with [`Error::TooManyPaths`] beyond `max_paths` (dense selections branch exponentially).
pub fn build_tracks(g: &HitGraph, selected: &[bool], max_paths: usize) -> Result<Vec<Track>> {
    if selected.len() != g.num_edges() {
        return Err(Error::invalid(
            "selected",
            format!("{} entries", selected.len()),
            format!("one per hit-graph edge ({})", g.num_edges()),
        ));
    }
    let n = g.num_nodes();
    // Deeper neighbours of each node via selected edges (CSR over dst).
    let mut has_shallower = vec![false; n];
    let mut deg = vec![0u32; n + 1];
    for e in (0..g.num_edges()).filter(|&e| selected[e]) {
        has_shallower[g.src[e] as usize] = true;
        deg[g.dst[e] as usize + 1] += 1;
    }
    for i in 0..n {
        deg[i + 1] += deg[i];
    }
    let mut fill = deg.clone();
    let mut deeper = vec![0u32; deg[n] as usize];
    for e in (0..g.num_edges()).filter(|&e| selected[e]) {
        let t = g.dst[e] as usize;
        deeper[fill[t] as usize] = g.src[e];
        fill[t] += 1;
    }
    let mut tracks = Vec::new();
    let mut path: Vec<u32> = Vec::new();
    // Iterative DFS: stack of (node, next child cursor).
    for root in 0..n {
        if has_shallower[root] {
            continue;
        }
        let mut stack: Vec<(u32, u32)> = vec![(root as u32, deg[root])];
        path.clear();
        path.push(root as u32);
        while let Some(&mut (v, ref mut cur)) = stack.last_mut() {
            let v = v as usize;
            if deg[v] == deg[v + 1] {
                // Leaf: a complete track (single isolated hits are tracks of length 1).
                tracks.push(path.clone());
                if tracks.len() > max_paths {
                    return Err(Error::TooManyPaths { limit: max_paths });
                }
                stack.pop();
                path.pop();
                continue;
            }
            if *cur < deg[v + 1] {
                let c = deeper[*cur as usize];
                *cur += 1;
                stack.push((c, deg[c as usize]));
                path.push(c);
            } else {
                stack.pop();
                path.pop();
            }
        }
    }
    Ok(tracks)
}

/// True tracks of a frame: for each primary all of whose hits are primary, its hits
/// (node indices) shallow → deep.
pub fn true_primary_tracks(g: &HitGraph) -> Vec<Track> {
    let mut ids: Vec<(u32, u32)> = (0..g.num_nodes() as u32).map(|i| (g.track[i as usize], i)).collect();
    ids.sort_unstable();
    let mut out = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j < ids.len() && ids[j].0 == ids[i].0 {
            j += 1;
        }
        if ids[i..j].iter().all(|&(_, n)| g.is_primary[n as usize]) {
            let mut t: Vec<u32> = ids[i..j].iter().map(|&(_, n)| n).collect();
            t.sort_by_key(|&n| g.layer[n as usize]);
            out.push(t);
        }
        i = j;
    }
    out
}

/// Metrics of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameMetrics {
    /// Reconstructed tracks after filtering.
    pub reconstructed: usize,
    /// Of those, tracks whose hits are all primary.
    pub considered: usize,
    /// Of those, tracks whose hits all belong to one primary.
    pub correct: usize,
    /// True all-primary tracks in the frame.
    pub true_tracks: usize,
    /// correct / considered (0 if none considered).
    pub purity: f64,
    /// correct / true_tracks (0 if none considered or no true tracks).
    pub efficiency: f64,
}

/// Purity and efficiency of (already filtered) `tracks` on frame graph `g`.
pub fn evaluate(g: &HitGraph, tracks: &[Track]) -> FrameMetrics {
    let considered: Vec<&Track> = tracks.iter().filter(|t| t.iter().all(|&n| g.is_primary[n as usize])).collect();
    let correct = considered
        .iter()
        .filter(|t| {
            let id = g.track[t[0] as usize];
            t.iter().all(|&n| g.track[n as usize] == id)
        })
        .count();
    let true_tracks = true_primary_tracks(g).len();
    let (purity, efficiency) = if considered.is_empty() {
        (0.0, 0.0)
    } else {
        (
            correct as f64 / considered.len() as f64,
            if true_tracks == 0 { 0.0 } else { correct as f64 / true_tracks as f64 },
        )
    };
    FrameMetrics { reconstructed: tracks.len(), considered: considered.len(), correct, true_tracks, purity, efficiency }
}

/// Frame-averaged purity and efficiency with their standard errors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanMetrics {
    /// Frames averaged.
    pub frames: usize,
    /// Mean purity.
    pub purity: f64,
    /// Standard error of the mean purity.
    pub purity_sem: f64,
    /// Mean efficiency.
    pub efficiency: f64,
    /// Standard error of the mean efficiency.
    pub efficiency_sem: f64,
}

/// Average per-frame metrics.
pub fn average(frames: &[FrameMetrics]) -> MeanMetrics {
    let n = frames.len();
    let stats = |f: &dyn Fn(&FrameMetrics) -> f64| -> (f64, f64) {
        if n == 0 {
            return (0.0, 0.0);
        }
        let m = frames.iter().map(f).sum::<f64>() / n as f64;
        if n < 2 {
            return (m, 0.0);
        }
        let v = frames.iter().map(|x| (f(x) - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        (m, (v / n as f64).sqrt())
    };
    let (purity, purity_sem) = stats(&|m| m.purity);
    let (efficiency, efficiency_sem) = stats(&|m| m.efficiency);
    MeanMetrics { frames: n, purity, purity_sem, efficiency, efficiency_sem }
}

/// Edge mask of the true edges between consecutive hits of each true track (an oracle
/// selection: perfect tracking up to missing layers).
pub fn oracle_selection(g: &HitGraph) -> Vec<bool> {
    (0..g.num_edges())
        .map(|e| g.edge_truth[e] && g.is_primary[g.src[e] as usize] && g.is_primary[g.dst[e] as usize])
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::graph::GraphConfig;
    use crate::sim::{Frame, Hit};

    pub(crate) fn h(layer: u16, x: f32, track: u32, primary: bool, edep: f32) -> Hit {
        let z = if layer < 2 { layer as f32 * 57.8 } else { 107.8 + (layer - 2) as f32 * 5.5 };
        Hit { layer, x, y: 0.0, z, edep, cluster: 4, track, primary }
    }

    /// Three straight tracks at x = 0, 20, 40 over layers 0..=7 (track 2 has a secondary hit
    /// in layer 3) and one short track 3 at x = −30 over layers 0..=2.
    pub(crate) fn hand_frame() -> Frame {
        let mut hits = Vec::new();
        for l in 0..8u16 {
            let bragg = if l == 7 { 0.2 } else { 0.02 };
            hits.push(h(l, 0.0, 0, true, bragg));
            hits.push(h(l, 20.0, 1, true, bragg));
            hits.push(h(l, 40.0, 2, l != 3, bragg));
        }
        for l in 0..3u16 {
            hits.push(h(l, -30.0, 3, true, 0.02));
        }
        Frame { hits, spot: [0.0, 0.0], primaries: 4 }
    }

    fn select(g: &HitGraph, f: impl Fn(usize, usize) -> bool) -> Vec<bool> {
        (0..g.num_edges()).map(|e| f(g.src[e] as usize, g.dst[e] as usize)).collect()
    }

    #[test]
    fn oracle_tracks_and_metrics_by_hand() {
        let g = HitGraph::build(&hand_frame(), &GraphConfig::default()).unwrap();
        // Straight tracks 20 mm apart: only true edges pass the cuts in the calorimeter, but in
        // the tracker (57.8 mm, 0.2 rad → 11.7 mm) they are also isolated.
        assert_eq!(g.num_edges(), g.num_true_edges());
        let sel = select(&g, |s, t| g.track[s] == g.track[t]);
        let tracks = build_tracks(&g, &sel, 1000).unwrap();
        assert_eq!(tracks.len(), 4);
        for t in &tracks {
            // shallow → deep
            assert!(t.windows(2).all(|w| g.layer[w[0] as usize] + 1 == g.layer[w[1] as usize]));
        }
        let kept = TrackFilter::default().apply(&g, tracks);
        // Track 3 has 3 hits → dropped.
        assert_eq!(kept.len(), 3);
        let m = evaluate(&g, &kept);
        // Track 2 contains a secondary hit → not considered; true tracks: 0, 1, 3.
        assert_eq!((m.considered, m.correct, m.true_tracks), (2, 2, 3));
        assert!((m.purity - 1.0).abs() < 1e-12 && (m.efficiency - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn wrong_links_and_branches() {
        let g = HitGraph::build(&hand_frame(), &GraphConfig::default()).unwrap();
        let trk = |n: usize| g.track[n];
        // Select true edges of tracks 0 and 1, then cut track 1 between layers 4 and 5.
        let mut sel = select(&g, |s, t| trk(s) == trk(t) && trk(s) < 2);
        for (e, s) in sel.iter_mut().enumerate() {
            if trk(g.src[e] as usize) == 1 && g.layer[g.src[e] as usize] == 5 {
                *s = false;
            }
        }
        let tracks = TrackFilter::default().apply(&g, build_tracks(&g, &sel, 1000).unwrap());
        // Track 1 split into layers 0..=4 (5 hits, last edep 0.02 → rejected) and 5..=7 (3 hits).
        assert_eq!(tracks.len(), 1);
        // A "mixed" track: hand-build one with hits of tracks 0 and 1.
        let n = |l: usize, t: u32| {
            (0..g.num_nodes()).find(|&i| g.layer[i] as usize == l && g.track[i] == t).unwrap() as u32
        };
        let mixed: Track = (0..8).map(|l| n(l, if l < 4 { 0 } else { 1 })).collect();
        let good: Track = (0..8).map(|l| n(l, 0)).collect();
        let m = evaluate(&g, &[mixed, good]);
        assert_eq!((m.considered, m.correct), (2, 1));
        assert!((m.purity - 0.5).abs() < 1e-12 && (m.efficiency - 1.0 / 3.0).abs() < 1e-12);
        // Nothing considered → both zero (reference behaviour).
        let m = evaluate(&g, &[]);
        assert_eq!((m.purity, m.efficiency), (0.0, 0.0));
    }

    #[test]
    fn branching_selection_gives_all_paths() {
        // Two hits in layer 1 both linked to one hit in layer 0 and one hit in layer 2:
        // a diamond → 2 root-to-leaf paths.
        let hits =
            vec![h(0, 0.0, 0, true, 0.1), h(1, 0.0, 0, true, 0.1), h(1, 1.0, 1, true, 0.1), h(2, 0.0, 0, true, 0.1)];
        let f = Frame { hits, spot: [0.0, 0.0], primaries: 2 };
        let g = HitGraph::build(&f, &GraphConfig::default()).unwrap();
        assert_eq!(g.num_edges(), 4);
        let sel = vec![true; 4];
        let tracks = build_tracks(&g, &sel, 10).unwrap();
        assert_eq!(tracks.len(), 2);
        assert!(tracks.iter().all(|t| t.len() == 3));
        assert!(matches!(build_tracks(&g, &sel, 1), Err(Error::TooManyPaths { .. })));
        assert!(build_tracks(&g, &sel[..3], 10).is_err());
    }

    #[test]
    fn averaging() {
        let mk = |p, e| FrameMetrics {
            reconstructed: 0,
            considered: 0,
            correct: 0,
            true_tracks: 0,
            purity: p,
            efficiency: e,
        };
        let a = average(&[mk(1.0, 0.5), mk(0.5, 0.5)]);
        assert!((a.purity - 0.75).abs() < 1e-12 && a.efficiency_sem == 0.0);
        assert!((a.purity_sem - 0.25).abs() < 1e-12);
    }
}
