//! Box-model throughput: one M7 step (720 s) over spun-up atmospheric cells, on one thread and
//! on all threads. Criterion reports elements/s = cells/s.
//!
//! `cargo bench -p gradlab-aerosol --bench box_model`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gradlab_aerosol::sampler::{SamplerConfig, sample_cells};
use gradlab_aerosol::{AerosolState, Environment, M7, M7Config, WaterScheme};
use rayon::prelude::*;
use std::hint::black_box;

fn cells(n: usize) -> Vec<(Environment, AerosolState)> {
    sample_cells(&M7Config::default(), &SamplerConfig::default(), 2024, 0, n)
        .expect("valid defaults")
        .into_iter()
        .map(|s| (s.env, s.before))
        .collect()
}

fn step_all(model: &M7, cells: &[(Environment, AerosolState)]) -> f64 {
    let mut acc = 0.0;
    for (env, s) in cells {
        let mut s = *s;
        let (d, _) = model.step(env, &mut s);
        acc += s.n[1] + d.water[2];
    }
    acc
}

fn bench(c: &mut Criterion) {
    let n = 16_384;
    let data = cells(n);
    let mut group = c.benchmark_group("m7_step");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(20);
    for (name, water) in [("zsr", WaterScheme::Zsr), ("kappa", WaterScheme::Kappa)] {
        let model = M7::new(M7Config { water, ..M7Config::default() }).expect("valid");
        group.bench_with_input(BenchmarkId::new(format!("{name}/1-thread"), n), &data, |b, d| {
            b.iter(|| black_box(step_all(&model, d)))
        });
        let threads = rayon::current_num_threads();
        group.bench_with_input(BenchmarkId::new(format!("{name}/{threads}-threads"), n), &data, |b, d| {
            b.iter(|| black_box(d.par_chunks(1024).map(|chunk| step_all(&model, chunk)).sum::<f64>()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
