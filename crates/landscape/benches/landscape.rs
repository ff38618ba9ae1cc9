//! Benchmarks of the landscape tools on the `landscape-demo` model (tanh MLP 2→32→32→3, 1251
//! parameters, f64, one fixed batch of 1200 spiral points):
//! * a 51×51 surface (2601 loss evaluations) with 1 and 2 worker threads (throughput = points/s);
//! * one gradient, one finite-difference HVP and one exact (double-backward) HVP;
//! * Lanczos for the top-10 eigenvalues (finite-difference HVPs).
//!
//! Run: `cargo bench -p gradlab-landscape --bench landscape` (turns exact double backward on
//! itself with `gradlab_core::grad::enable_exact_double_backward()`, before any thread starts).

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput};
use gradlab_landscape::Objective;
use gradlab_landscape::candle::{CandleObjective, cross_entropy, mlp};
use gradlab_landscape::directions::{Normalization, VectorParams, random_direction};
use gradlab_landscape::experiments::demo::{SpiralConfig, spirals};
use gradlab_landscape::hessian::{HessianOperator, HvpMethod, hvp};
use gradlab_landscape::lanczos::{LanczosConfig, Which, lanczos};
use gradlab_landscape::surface::{Axis, SurfaceOptions, evaluate_surface};
use std::hint::black_box;
use std::time::Duration;

fn model() -> (CandleObjective<mlp::Mlp>, Vec<f64>) {
    let cfg = SpiralConfig { classes: 3, per_class: 400, noise: 0.08, turns: 1.0 };
    let (x, y) = spirals(&cfg, 0);
    let n = y.len();
    let dev = Device::Cpu;
    let x = Tensor::from_vec(x, (n, 2), &dev).unwrap().to_dtype(DType::F64).unwrap();
    let y = Tensor::from_vec(y, n, &dev).unwrap();
    let obj = CandleObjective::new(|vb| mlp::build(&[2, 32, 32, 3], vb), cross_entropy, vec![(x, y)], DType::F64, &dev)
        .unwrap();
    let mut rng = gradlab_core::rng::rng(0);
    let theta: Vec<f64> =
        gradlab_landscape::directions::gaussian(obj.dim(), &mut rng).iter().map(|v| 0.3 * v).collect();
    (obj, theta)
}

fn bench_surface(c: &mut Criterion) {
    let (obj, theta) = model();
    let mut rng = gradlab_core::rng::rng(1);
    let d1 = random_direction(&theta, obj.layout(), Normalization::Filter, VectorParams::Zero, &mut rng).unwrap();
    let d2 = random_direction(&theta, obj.layout(), Normalization::Filter, VectorParams::Zero, &mut rng).unwrap();
    let ax = Axis::new(-1.0, 1.0, 51).unwrap();
    let mut g = c.benchmark_group("surface_51x51");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(51 * 51));
    for threads in [1usize, 2] {
        let opts = SurfaceOptions { threads, ..Default::default() };
        g.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, _| {
            b.iter(|| black_box(evaluate_surface(&obj, &theta, &[&d1, &d2], ax, Some(ax), &opts).unwrap()))
        });
    }
    g.finish();
}

fn bench_second_order(c: &mut Criterion) {
    let (mut obj, theta) = model();
    let mut rng = gradlab_core::rng::rng(2);
    let v = gradlab_landscape::directions::gaussian(obj.dim(), &mut rng);
    let mut out = vec![0.0; obj.dim()];
    let mut g = c.benchmark_group("second_order");
    g.sample_size(20);
    g.bench_function("loss", |b| b.iter(|| black_box(obj.loss(&theta).unwrap())));
    g.bench_function("gradient", |b| b.iter(|| black_box(obj.loss_grad(&theta, &mut out).unwrap())));
    g.bench_function("hvp_finite_difference", |b| {
        b.iter(|| hvp(&mut obj, &theta, &v, HvpMethod::FiniteDifference { h: 1e-3 }, &mut out).unwrap())
    });
    g.bench_function("hvp_exact_double_backward", |b| {
        b.iter(|| hvp(&mut obj, &theta, &v, HvpMethod::Exact, &mut out).unwrap())
    });
    g.sample_size(10);
    g.bench_function("lanczos_top10_fd", |b| {
        b.iter(|| {
            let mut op = HessianOperator::new(&mut obj, &theta, HvpMethod::FiniteDifference { h: 1e-3 }).unwrap();
            let cfg = LanczosConfig { max_steps: 100, tol: 1e-6, seed: 0 };
            black_box(lanczos(&mut op, 10, Which::Largest, &cfg).unwrap())
        })
    });
    g.finish();
}

fn main() {
    // before criterion or rayon start any thread: exact double backward for the exact HVP
    gradlab_core::grad::enable_exact_double_backward().expect("exact double backward");
    let mut c = Criterion::default().configure_from_args();
    bench_surface(&mut c);
    bench_second_order(&mut c);
    c.final_summary();
}
