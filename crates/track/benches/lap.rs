//! Linear assignment on rectangular n × 1.1n matrices with 80 % forbidden entries and uniform
//! costs, maximum-cardinality mode (the setting of the C++ `lap.lapjv` figures in
//! `docs/benchmarks-track-gnn.md`), plus the finite "no link" cost used for tracking.
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradlab_track::sparse_lap::{SparseCost, Unmatched, solve};
use rand::Rng;
use std::hint::black_box;

fn problem(rows: usize, cols: usize, seed: u64) -> SparseCost {
    let mut rng = gradlab_core::rng::rng(seed);
    let (mut r, mut c, mut w) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rows {
        for j in 0..cols {
            if rng.random::<f64>() < 0.2 {
                r.push(i as u32);
                c.push(j as u32);
                w.push(rng.random::<f64>());
            }
        }
    }
    SparseCost::from_triplets(rows, cols, &r, &c, &w).expect("valid problem")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("lap_80pct_forbidden");
    g.sample_size(10);
    for &(rows, cols) in &[(50, 55), (120, 140), (500, 560), (1000, 1100), (2000, 2200), (5000, 5500)] {
        let p = problem(rows, cols, 1);
        g.bench_with_input(BenchmarkId::new("max_cardinality", format!("{rows}x{cols}")), &p, |b, p| {
            b.iter(|| black_box(solve(p, Unmatched::Forbidden).expect("solvable")))
        });
        g.bench_with_input(BenchmarkId::new("no_link_cost_0.5", format!("{rows}x{cols}")), &p, |b, p| {
            b.iter(|| black_box(solve(p, Unmatched::Cost(0.5)).expect("solvable")))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
