//! Reference numbers of the tracking paper (Kortus et al., TMLR 2025) that the experiments
//! print beside their own results.

/// Per-frame graph sizes, mean per frame (the paper's graph-size tables, `graph_sizes_{hg,lg}`
/// of the reference repository): (water thickness mm, primaries, nodes, edges, line-graph edges).
pub const GRAPH_SIZES: [(u32, u32, f64, f64, f64); 9] = [
    (100, 50, 1337.0, 4311.0, 68328.0),
    (100, 100, 2675.0, 14837.0, 493910.0),
    (100, 150, 4015.0, 31532.0, 1611761.0),
    (150, 50, 1074.0, 3079.0, 39584.0),
    (150, 100, 2148.0, 10397.0, 279974.0),
    (150, 150, 3224.0, 21906.0, 908953.0),
    (200, 50, 815.0, 2235.0, 24815.0),
    (200, 100, 1628.0, 7514.0, 172926.0),
    (200, 150, 2445.0, 15770.0, 552870.0),
];

/// The paper's graph sizes of a setting: (nodes, edges, line-graph edges).
pub fn graph_sizes(thickness_mm: f64, primaries: usize) -> Option<(f64, f64, f64)> {
    GRAPH_SIZES
        .iter()
        .find(|r| (r.0 as f64 - thickness_mm).abs() < 1e-9 && r.1 as usize == primaries)
        .map(|r| (r.2, r.3, r.4))
}

/// The track follower at 100 primaries (the paper's Table 2): (water thickness mm, purity %,
/// efficiency %).
pub const FOLLOWER_100: [(u32, f64, f64); 3] = [(100, 83.0, 74.6), (150, 86.5, 79.0), (200, 87.4, 80.3)];

/// PAT with λ = 50 on the line graph (the paper's Table 2): (water thickness mm, primaries,
/// purity %, efficiency %).
pub const PAT: [(u32, u32, f64, f64); 9] = [
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

/// "purity / efficiency" of the track follower at a setting, if the paper has it.
pub fn follower(thickness_mm: f64, primaries: usize) -> Option<String> {
    FOLLOWER_100
        .iter()
        .find(|r| primaries == 100 && (r.0 as f64 - thickness_mm).abs() < 1e-9)
        .map(|r| format!("{:.1} / {:.1}", r.1, r.2))
}

/// "purity / efficiency" of PAT λ = 50 at a setting, if the paper has it.
pub fn pat(thickness_mm: f64, primaries: usize) -> Option<String> {
    PAT.iter()
        .find(|r| r.1 as usize == primaries && (r.0 as f64 - thickness_mm).abs() < 1e-9)
        .map(|r| format!("{:.1} / {:.1}", r.2, r.3))
}

/// The paper's mode-connectivity ranges (its loss-landscape section): linear interpolation
/// max Hamming ≈ 0.23–0.35 and min TPR 63–75 %, Bézier max Hamming ≈ 0.008–0.015, TPR ≥ 98 %.
pub const CONNECTIVITY: &str = "linear: max Hamming ≈ 0.23–0.35, min TPR 63–75 %; \
                                Bézier: max Hamming ≈ 0.008–0.015, min TPR ≥ 98 %";
