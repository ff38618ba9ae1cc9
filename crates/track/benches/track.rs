//! Simulation and graph-construction throughput.
//!
//! `cargo bench -p gradlab-track --bench track`
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gradlab_track::graph::{GraphConfig, HitGraph, LineGraph};
use gradlab_track::sim::{SimConfig, Simulator};
use std::hint::black_box;

fn simulate(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulate_frame");
    group.sample_size(20);
    let sim = Simulator::new(&SimConfig::bergen(100.0, 100)).unwrap();
    group.throughput(Throughput::Elements(1));
    let mut f = 0u64;
    group.bench_function(BenchmarkId::new("all_threads", "100mm_100p"), |b| {
        b.iter(|| {
            f += 1;
            black_box(sim.simulate_frame(1, f))
        })
    });
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    group.bench_function(BenchmarkId::new("one_thread", "100mm_100p"), |b| {
        b.iter(|| {
            f += 1;
            pool.install(|| black_box(sim.simulate_frame(1, f)))
        })
    });
    group.finish();
}

fn graphs(c: &mut Criterion) {
    let cfg = GraphConfig::default();
    let mut group = c.benchmark_group("graph_build");
    group.sample_size(20);
    for n in [50usize, 100, 150] {
        let sim = Simulator::new(&SimConfig::bergen(100.0, n)).unwrap();
        let frame = sim.simulate_frame(3, 0);
        let g = HitGraph::build(&frame, &cfg).unwrap();
        group.bench_with_input(BenchmarkId::new("hit_graph", n), &frame, |b, fr| {
            b.iter(|| black_box(HitGraph::build(fr, &cfg).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("line_graph", n), &g, |b, g| b.iter(|| black_box(LineGraph::build(g))));
    }
    group.finish();
}

criterion_group!(benches, simulate, graphs);
criterion_main!(benches);
