//! Hit graph and line graph.
//!
//! **Hit graph.** Nodes are the hits of a frame, sorted by layer (ascending) — layer `l` owns
//! nodes `layer_ptr[l]..layer_ptr[l + 1]`. Edges join hits of adjacent layers and point from the
//! deeper hit (layer l + 1, the *source*) to the shallower one (layer l, the *target*), as in the
//! reference implementation. An edge is kept when the polar angle of the segment to the beam
//! axis is below the cut (0.4 rad in the calorimeter, 0.2 rad for edges whose source lies in the
//! first `tracker_source_layers` layers, i.e. tracker–tracker and calorimeter–tracker edges).
//!
//! Edges are sorted by source node, so the out-edges of node `n` are
//! `out_ptr[n]..out_ptr[n + 1]` (CSR) and the edges between layers l and l + 1 are one
//! contiguous block, [`HitGraph::pair_edges`], with local indices `row` (hit of layer l) and
//! `col` (hit of layer l + 1) — the cost-matrix layout of the per-layer assignment.
//!
//! Features are contiguous row-major `Vec<f32>` with a known width, ready to become tensors:
//! nodes `[cluster/7.97, x − spot_x, y − spot_y, z]`, edges `[ρ, atan2(Δy, Δx), acos(Δz/ρ)]` of
//! the vector source − target (the reference's `SphericalInverse` without normalisation; the
//! third entry is the polar angle the cut acts on).
//!
//! **Line graph.** Each hit-graph edge becomes a node with features
//! `[edep_src, edep_dst, pos_src(3), pos_dst(3)]`; two edges are linked when the first one's
//! target is the second one's source (consecutive segments). Pairs are built with CSR index
//! arithmetic — for edge e, its successors are exactly `out_ptr[dst(e)]..out_ptr[dst(e) + 1]` —
//! and stored once (directed, `e → e'`); the undirected graph of the paper has twice as many
//! edges. The line-graph edge attribute is the angle between the two segments; its sinusoidal
//! encoding is produced on demand by [`encode_angles`] (128 floats per edge would be 800 MB at
//! 150 primaries).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sim::Frame;

/// Width of the hit-graph node features.
pub const NODE_FEATURES: usize = 4;
/// Width of the hit-graph edge features.
pub const EDGE_FEATURES: usize = 3;
/// Width of the line-graph node features.
pub const LINE_NODE_FEATURES: usize = 8;
/// Cluster-size normalisation: CS(60 keV in 25 µm) = 4.2267·2.4^0.65 + 0.5 ≈ 7.97.
pub const CLUSTER_NORM: f32 = 7.97;

/// Graph construction parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    /// Polar-angle cut between calorimeter layers [rad] (0.4).
    #[serde(default = "default_cal_cut")]
    pub calorimeter_max_theta_rad: f64,
    /// Polar-angle cut for edges whose source is in the first `tracker_source_layers` [rad] (0.2).
    #[serde(default = "default_trk_cut")]
    pub tracker_max_theta_rad: f64,
    /// Edges whose source layer index is below this use the tracker cut (3: edges 1→0 and 2→1).
    #[serde(default = "default_trk_layers")]
    pub tracker_source_layers: u16,
}

fn default_cal_cut() -> f64 {
    0.4
}
fn default_trk_cut() -> f64 {
    0.2
}
fn default_trk_layers() -> u16 {
    3
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            calorimeter_max_theta_rad: default_cal_cut(),
            tracker_max_theta_rad: default_trk_cut(),
            tracker_source_layers: default_trk_layers(),
        }
    }
}

impl GraphConfig {
    /// Check the cuts.
    pub fn validate(&self) -> Result<()> {
        for (f, v) in [
            ("graph.calorimeter_max_theta_rad", self.calorimeter_max_theta_rad),
            ("graph.tracker_max_theta_rad", self.tracker_max_theta_rad),
        ] {
            if !(v.is_finite() && v > 0.0 && v < std::f64::consts::FRAC_PI_2) {
                return Err(Error::invalid(f, v, "0 < θ < π/2 rad"));
            }
        }
        Ok(())
    }
}

/// The hit graph of one frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HitGraph {
    /// Number of layers spanned (`layer_ptr.len() − 1`).
    pub num_layers: usize,
    /// Node offsets per layer (length `num_layers + 1`).
    pub layer_ptr: Vec<u32>,
    /// Index in the frame's `hits` of each node (nodes are sorted by layer, then x).
    pub hit: Vec<u32>,
    /// Layer of each node.
    pub layer: Vec<u16>,
    /// Positions, row-major `[n, 3]` (absolute, mm).
    pub pos: Vec<f32>,
    /// Energy deposit of each node [MeV].
    pub edep: Vec<f32>,
    /// Primary index of each node (the reference's `eventID`).
    pub track: Vec<u32>,
    /// Whether each node was made by the primary itself.
    pub is_primary: Vec<bool>,
    /// Node features, row-major `[n, NODE_FEATURES]`.
    pub node_features: Vec<f32>,
    /// Source (deeper) node of each edge; edges sorted by source.
    pub src: Vec<u32>,
    /// Target (shallower) node of each edge.
    pub dst: Vec<u32>,
    /// CSR offsets of out-edges per node (length n + 1).
    pub out_ptr: Vec<u32>,
    /// Edge features, row-major `[m, EDGE_FEATURES]`.
    pub edge_features: Vec<f32>,
    /// Truth: both ends belong to the same primary.
    pub edge_truth: Vec<bool>,
}

/// Edges between layer `l` (rows) and layer `l + 1` (columns).
#[derive(Debug, Clone, PartialEq)]
pub struct PairEdges {
    /// Global edge indices `range` (contiguous).
    pub range: std::ops::Range<usize>,
    /// Hits in layer l.
    pub rows: usize,
    /// Hits in layer l + 1.
    pub cols: usize,
    /// Local row (hit of layer l, the edge target) of each edge in `range`.
    pub row: Vec<u32>,
    /// Local column (hit of layer l + 1, the edge source) of each edge in `range`.
    pub col: Vec<u32>,
}

impl HitGraph {
    /// Build the hit graph of `frame` (hits in any order).
    pub fn build(frame: &Frame, cfg: &GraphConfig) -> Result<Self> {
        cfg.validate()?;
        let mut order: Vec<u32> = (0..frame.hits.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (ha, hb) = (&frame.hits[a as usize], &frame.hits[b as usize]);
            (ha.layer, ha.x).partial_cmp(&(hb.layer, hb.x)).unwrap_or(std::cmp::Ordering::Equal)
        });
        let n = order.len();
        let num_layers = frame.hits.iter().map(|h| h.layer as usize + 1).max().unwrap_or(0);
        let mut g = HitGraph {
            num_layers,
            layer_ptr: vec![0; num_layers + 1],
            hit: order.clone(),
            layer: Vec::with_capacity(n),
            pos: Vec::with_capacity(3 * n),
            edep: Vec::with_capacity(n),
            track: Vec::with_capacity(n),
            is_primary: Vec::with_capacity(n),
            node_features: Vec::with_capacity(NODE_FEATURES * n),
            ..Default::default()
        };
        for &i in &order {
            let h = &frame.hits[i as usize];
            if !(h.x.is_finite() && h.y.is_finite() && h.z.is_finite()) {
                return Err(Error::invalid(
                    "frame.hits",
                    format!("hit {i} at ({}, {}, {})", h.x, h.y, h.z),
                    "finite positions",
                ));
            }
            g.layer_ptr[h.layer as usize + 1] += 1;
            g.layer.push(h.layer);
            g.pos.extend_from_slice(&[h.x, h.y, h.z]);
            g.edep.push(h.edep);
            g.track.push(h.track);
            g.is_primary.push(h.primary);
            g.node_features.extend_from_slice(&[
                h.cluster as f32 / CLUSTER_NORM,
                h.x - frame.spot[0],
                h.y - frame.spot[1],
                h.z,
            ]);
        }
        for l in 0..num_layers {
            g.layer_ptr[l + 1] += g.layer_ptr[l];
        }
        g.build_edges(cfg);
        Ok(g)
    }

    fn build_edges(&mut self, cfg: &GraphConfig) {
        let n = self.layer.len();
        self.out_ptr = vec![0; n + 1];
        let tan_cal = cfg.calorimeter_max_theta_rad.tan();
        let tan_trk = cfg.tracker_max_theta_rad.tan();
        // Nodes are sorted by (layer, x): a window search in x per source node.
        for src_layer in 1..self.num_layers {
            let tgt = self.layer_ptr[src_layer - 1] as usize..self.layer_ptr[src_layer] as usize;
            let tan = if (src_layer as u16) < cfg.tracker_source_layers { tan_trk } else { tan_cal };
            let tgt_x: Vec<f32> = tgt.clone().map(|j| self.pos[3 * j]).collect();
            let (zmin, zmax) = tgt.clone().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), j| {
                (a.min(self.pos[3 * j + 2]), b.max(self.pos[3 * j + 2]))
            });
            let cut = if (src_layer as u16) < cfg.tracker_source_layers {
                cfg.tracker_max_theta_rad
            } else {
                cfg.calorimeter_max_theta_rad
            };
            for s in self.layer_ptr[src_layer] as usize..self.layer_ptr[src_layer + 1] as usize {
                let (sx, sy, sz) = (self.pos[3 * s], self.pos[3 * s + 1], self.pos[3 * s + 2]);
                // Transverse distance allowed by the cut, padded for rounding.
                let dz_max = (sz - zmin).abs().max((sz - zmax).abs()) as f64;
                let r = (dz_max * tan) as f32 * 1.0001 + 1e-4;
                let lo = tgt_x.partition_point(|&x| x < sx - r);
                let hi = tgt_x.partition_point(|&x| x <= sx + r);
                for j in tgt.start + lo..tgt.start + hi {
                    let (dx, dy, dz) = (
                        (sx - self.pos[3 * j]) as f64,
                        (sy - self.pos[3 * j + 1]) as f64,
                        (sz - self.pos[3 * j + 2]) as f64,
                    );
                    let rho = (dx * dx + dy * dy + dz * dz).sqrt();
                    if rho == 0.0 {
                        continue;
                    }
                    let theta = (dz / rho).clamp(-1.0, 1.0).acos();
                    if theta < cut {
                        self.src.push(s as u32);
                        self.dst.push(j as u32);
                        self.edge_features.extend_from_slice(&[rho as f32, dy.atan2(dx) as f32, theta as f32]);
                        self.edge_truth.push(self.track[s] == self.track[j]);
                    }
                }
                self.out_ptr[s + 1] = self.src.len() as u32;
            }
        }
        // Nodes without out-edges (layer 0) inherit the running offset.
        for i in 1..=n {
            if self.out_ptr[i] < self.out_ptr[i - 1] {
                self.out_ptr[i] = self.out_ptr[i - 1];
            }
        }
    }

    /// Number of nodes.
    pub fn num_nodes(&self) -> usize {
        self.layer.len()
    }

    /// Number of (directed) edges.
    pub fn num_edges(&self) -> usize {
        self.src.len()
    }

    /// Node range of layer `l`.
    pub fn layer_nodes(&self, l: usize) -> std::ops::Range<usize> {
        if l >= self.num_layers {
            return 0..0;
        }
        self.layer_ptr[l] as usize..self.layer_ptr[l + 1] as usize
    }

    /// Edge range of the layer pair (l, l + 1): edges whose source is in layer l + 1.
    pub fn pair_range(&self, l: usize) -> std::ops::Range<usize> {
        if l + 1 >= self.num_layers {
            return 0..0;
        }
        let a = self.layer_ptr[l + 1] as usize;
        let b = self.layer_ptr[l + 2] as usize;
        self.out_ptr[a] as usize..self.out_ptr[b] as usize
    }

    /// The edges between layers `l` and `l + 1` with local row/column indices.
    pub fn pair_edges(&self, l: usize) -> Result<PairEdges> {
        if l + 1 >= self.num_layers.max(1) {
            return Err(Error::invalid("layer", l.to_string(), format!("0..{}", self.num_layers.saturating_sub(1))));
        }
        let range = self.pair_range(l);
        let r0 = self.layer_ptr[l];
        let c0 = self.layer_ptr[l + 1];
        Ok(PairEdges {
            rows: self.layer_nodes(l).len(),
            cols: self.layer_nodes(l + 1).len(),
            row: range.clone().map(|e| self.dst[e] - r0).collect(),
            col: range.clone().map(|e| self.src[e] - c0).collect(),
            range,
        })
    }

    /// Out-edges (towards the shallower layer) of node `n`.
    pub fn out_edges(&self, n: usize) -> std::ops::Range<usize> {
        self.out_ptr[n] as usize..self.out_ptr[n + 1] as usize
    }

    /// Position of node `n`.
    #[inline]
    pub fn position(&self, n: usize) -> [f32; 3] {
        [self.pos[3 * n], self.pos[3 * n + 1], self.pos[3 * n + 2]]
    }

    /// Number of true edges.
    pub fn num_true_edges(&self) -> usize {
        self.edge_truth.iter().filter(|&&t| t).count()
    }
}

/// The line graph of a hit graph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineGraph {
    /// Node features, row-major `[m, LINE_NODE_FEATURES]` (m = hit-graph edges).
    pub node_features: Vec<f32>,
    /// First hit-graph edge of each directed pair (its target is `succ`'s source).
    pub pred: Vec<u32>,
    /// Second hit-graph edge of each directed pair.
    pub succ: Vec<u32>,
    /// Angle between the two segments [rad], one per pair.
    pub angle: Vec<f32>,
}

impl LineGraph {
    /// Build with CSR index arithmetic (no per-edge allocation).
    pub fn build(g: &HitGraph) -> Self {
        let m = g.num_edges();
        let mut node_features = Vec::with_capacity(m * LINE_NODE_FEATURES);
        // Unit direction of every segment (source − target).
        let mut dir = Vec::with_capacity(3 * m);
        for e in 0..m {
            let (s, t) = (g.src[e] as usize, g.dst[e] as usize);
            let ps = g.position(s);
            let pt = g.position(t);
            node_features.extend_from_slice(&[g.edep[s], g.edep[t], ps[0], ps[1], ps[2], pt[0], pt[1], pt[2]]);
            let d = [ps[0] - pt[0], ps[1] - pt[1], ps[2] - pt[2]];
            let norm = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(f32::MIN_POSITIVE);
            dir.extend_from_slice(&[d[0] / norm, d[1] / norm, d[2] / norm]);
        }
        // Count first, then fill: successors of e are the out-edges of dst(e).
        let total: usize = (0..m)
            .map(|e| {
                let t = g.dst[e] as usize;
                (g.out_ptr[t + 1] - g.out_ptr[t]) as usize
            })
            .sum();
        let mut pred = Vec::with_capacity(total);
        let mut succ = Vec::with_capacity(total);
        let mut angle = Vec::with_capacity(total);
        for e in 0..m {
            let t = g.dst[e] as usize;
            let (a, b) = (g.out_ptr[t], g.out_ptr[t + 1]);
            let de = &dir[3 * e..3 * e + 3];
            for f in a..b {
                let df = &dir[3 * f as usize..3 * f as usize + 3];
                let c = (de[0] * df[0] + de[1] * df[1] + de[2] * df[2]).clamp(-1.0, 1.0);
                pred.push(e as u32);
                succ.push(f);
                angle.push(c.acos());
            }
        }
        LineGraph { node_features, pred, succ, angle }
    }

    /// Number of line-graph nodes (= hit-graph edges).
    pub fn num_nodes(&self) -> usize {
        self.node_features.len() / LINE_NODE_FEATURES
    }

    /// Number of directed consecutive-segment pairs.
    pub fn num_pairs(&self) -> usize {
        self.pred.len()
    }

    /// Number of edges of the undirected line graph as counted by the paper (both directions).
    pub fn num_edges_undirected(&self) -> usize {
        2 * self.pred.len()
    }

    /// Edge index of the undirected line graph: `(from, to)` with both directions, pairs first.
    pub fn undirected_edge_index(&self) -> (Vec<u32>, Vec<u32>) {
        let mut from = Vec::with_capacity(2 * self.pred.len());
        let mut to = Vec::with_capacity(2 * self.pred.len());
        from.extend_from_slice(&self.pred);
        from.extend_from_slice(&self.succ);
        to.extend_from_slice(&self.succ);
        to.extend_from_slice(&self.pred);
        (from, to)
    }
}

/// Sinusoidal encoding of √angle (reference `SimilarityPE`): row-major `[len, d]` with
/// `pe[2i] = sin(√θ·ω_i)`, `pe[2i+1] = cos(√θ·ω_i)`, `ω_i = scaling^(−2i/d)`.
pub fn encode_angles(angles: &[f32], d: usize, scaling: f32) -> Result<Vec<f32>> {
    if d == 0 || !d.is_multiple_of(2) {
        return Err(Error::invalid("d", d, "an even number > 0"));
    }
    let omega: Vec<f32> = (0..d / 2).map(|i| (-(2.0 * i as f32) * scaling.ln() / d as f32).exp()).collect();
    let mut out = Vec::with_capacity(angles.len() * d);
    for &a in angles {
        let r = a.max(0.0).sqrt();
        for &w in &omega {
            out.push((r * w).sin());
            out.push((r * w).cos());
        }
    }
    Ok(out)
}

/// Per-frame graph sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GraphSizes {
    /// Hit-graph nodes.
    pub nodes: usize,
    /// Hit-graph edges.
    pub edges: usize,
    /// True hit-graph edges.
    pub true_edges: usize,
    /// Undirected line-graph edges (paper's count).
    pub line_edges: usize,
}

impl GraphSizes {
    /// Sizes of a frame's graphs.
    pub fn of(g: &HitGraph, lg: &LineGraph) -> Self {
        GraphSizes {
            nodes: g.num_nodes(),
            edges: g.num_edges(),
            true_edges: g.num_true_edges(),
            line_edges: lg.num_edges_undirected(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Hit;
    use rand::Rng;

    fn hit(layer: u16, x: f32, y: f32, z: f32, track: u32) -> Hit {
        Hit { layer, x, y, z, edep: 0.01 * (layer as f32 + 1.0), cluster: 4, track, primary: true }
    }

    fn random_frame(seed: u64, n_layers: u16, per_layer: usize, spread: f32) -> Frame {
        let mut rng = gradlab_core::rng::rng(seed);
        let mut hits = Vec::new();
        for l in 0..n_layers {
            let z = if l < 2 { l as f32 * 57.8 } else { 110.0 + (l - 2) as f32 * 5.5 };
            for t in 0..per_layer {
                hits.push(hit(l, rng.random_range(-spread..spread), rng.random_range(-spread..spread), z, t as u32));
            }
        }
        // Shuffle to check that order does not matter.
        for i in (1..hits.len()).rev() {
            let j = rng.random_range(0..=i);
            hits.swap(i, j);
        }
        Frame { hits, spot: [0.5, -0.5], primaries: per_layer as u32 }
    }

    /// Brute force: all pairs of adjacent-layer hits passing the polar-angle cut.
    fn brute_edges(f: &Frame, cfg: &GraphConfig) -> Vec<([u32; 2], [u32; 2])> {
        let mut out = Vec::new();
        for a in &f.hits {
            for b in &f.hits {
                if a.layer == b.layer + 1 {
                    let (dx, dy, dz) = ((a.x - b.x) as f64, (a.y - b.y) as f64, (a.z - b.z) as f64);
                    let th = (dz / (dx * dx + dy * dy + dz * dz).sqrt()).acos();
                    let cut = if a.layer < cfg.tracker_source_layers {
                        cfg.tracker_max_theta_rad
                    } else {
                        cfg.calorimeter_max_theta_rad
                    };
                    if th < cut {
                        out.push(([a.layer as u32, a.x.to_bits()], [b.layer as u32, b.x.to_bits()]));
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn hit_graph_edges_match_brute_force() {
        let cfg = GraphConfig::default();
        for seed in 0..5 {
            let f = random_frame(seed, 12, 30, 15.0);
            let g = HitGraph::build(&f, &cfg).unwrap();
            let mut ours: Vec<_> = (0..g.num_edges())
                .map(|e| {
                    let (s, t) = (g.src[e] as usize, g.dst[e] as usize);
                    ([g.layer[s] as u32, g.pos[3 * s].to_bits()], [g.layer[t] as u32, g.pos[3 * t].to_bits()])
                })
                .collect();
            ours.sort();
            assert_eq!(ours, brute_edges(&f, &cfg), "seed {seed}");
            // CSR and pair blocks are consistent.
            for e in 0..g.num_edges() {
                let s = g.src[e] as usize;
                assert!(g.out_edges(s).contains(&e));
                assert_eq!(g.layer[s], g.layer[g.dst[e] as usize] + 1);
            }
            let mut total = 0;
            for l in 0..g.num_layers - 1 {
                let p = g.pair_edges(l).unwrap();
                total += p.range.len();
                for (k, e) in p.range.clone().enumerate() {
                    assert_eq!(g.dst[e], g.layer_ptr[l] + p.row[k]);
                    assert_eq!(g.src[e], g.layer_ptr[l + 1] + p.col[k]);
                    assert!((p.row[k] as usize) < p.rows && (p.col[k] as usize) < p.cols);
                }
            }
            assert_eq!(total, g.num_edges());
            assert!(g.pair_edges(g.num_layers - 1).is_err());
        }
    }

    #[test]
    fn features_and_truth() {
        let f = Frame {
            hits: vec![hit(0, 1.0, 2.0, 0.0, 7), hit(1, 1.5, 2.0, 57.8, 7), hit(1, -3.0, 2.0, 57.8, 8)],
            spot: [1.0, 1.0],
            primaries: 2,
        };
        let g = HitGraph::build(&f, &GraphConfig::default()).unwrap();
        assert_eq!(g.num_nodes(), 3);
        // Layer 1 → 0: (1.5 − 1) over 57.8 passes 0.2 rad; (−3 − 1) = −4 passes too (0.069 rad).
        assert_eq!(g.num_edges(), 2);
        assert_eq!(g.num_true_edges(), 1);
        assert_eq!(&g.node_features[..4], &[4.0 / CLUSTER_NORM, 0.0, 1.0, 0.0]);
        let e = (0..2).find(|&e| g.edge_truth[e]).unwrap();
        let [rho, az, polar] = [g.edge_features[3 * e], g.edge_features[3 * e + 1], g.edge_features[3 * e + 2]];
        assert!((rho - (0.25f32 + 57.8 * 57.8).sqrt()).abs() < 1e-4);
        assert!(az.abs() < 1e-6);
        assert!((polar - (0.5f32 / 57.8).atan()).abs() < 1e-5);
    }

    #[test]
    fn line_graph_matches_brute_force() {
        let f = random_frame(11, 10, 25, 12.0);
        let g = HitGraph::build(&f, &GraphConfig::default()).unwrap();
        let lg = LineGraph::build(&g);
        let mut brute = Vec::new();
        for e in 0..g.num_edges() {
            for f2 in 0..g.num_edges() {
                if g.dst[e] == g.src[f2] {
                    brute.push((e as u32, f2 as u32));
                }
            }
        }
        let mut ours: Vec<_> = lg.pred.iter().zip(&lg.succ).map(|(&a, &b)| (a, b)).collect();
        ours.sort();
        assert_eq!(ours, brute);
        assert_eq!(lg.num_nodes(), g.num_edges());
        assert_eq!(lg.num_edges_undirected(), 2 * brute.len());
        // Angle: independent computation via atan2 of cross and dot products.
        for k in (0..lg.num_pairs()).step_by(7) {
            let (e, f2) = (lg.pred[k] as usize, lg.succ[k] as usize);
            let v = |e: usize| {
                let (s, t) = (g.position(g.src[e] as usize), g.position(g.dst[e] as usize));
                [(s[0] - t[0]) as f64, (s[1] - t[1]) as f64, (s[2] - t[2]) as f64]
            };
            let (a, b) = (v(e), v(f2));
            let cross = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
            let cn = (cross.iter().map(|c| c * c).sum::<f64>()).sqrt();
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let expected = cn.atan2(dot);
            assert!((lg.angle[k] as f64 - expected).abs() < 2e-3, "{} vs {expected}", lg.angle[k]);
        }
        let (from, to) = lg.undirected_edge_index();
        assert_eq!(from.len(), 2 * lg.num_pairs());
        assert_eq!(from[lg.num_pairs()], to[0]);
    }

    #[test]
    fn angle_encoding_matches_formula() {
        let enc = encode_angles(&[0.0, 0.04], 8, 5000.0).unwrap();
        assert_eq!(enc.len(), 16);
        assert_eq!(&enc[..2], &[0.0, 1.0]);
        let w1 = (-(2.0f64) * 5000f64.ln() / 8.0).exp();
        assert!((enc[8 + 2] as f64 - (0.2 * w1).sin()).abs() < 1e-6);
        assert!((enc[8 + 3] as f64 - (0.2 * w1).cos()).abs() < 1e-6);
        assert!(encode_angles(&[0.1], 3, 1.0).is_err());
    }

    #[test]
    fn empty_frame_gives_empty_graph() {
        let g = HitGraph::build(&Frame::default(), &GraphConfig::default()).unwrap();
        assert_eq!((g.num_nodes(), g.num_edges()), (0, 0));
        assert_eq!(LineGraph::build(&g).num_pairs(), 0);
    }
}
