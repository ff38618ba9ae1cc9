//! Benchmarks of the landscape tools on the `landscape-demo` model (tanh MLP 2→32→32→3, 1251
//! parameters, f64, one fixed batch of 1200 spiral points):
//! * a 51×51 surface (2601 loss evaluations) with 1 and 2 worker threads (throughput = points/s);
//! * one gradient, one finite-difference HVP and one exact (double-backward) HVP;
//! * Lanczos for the top-10 eigenvalues (finite-difference HVPs).
//!
//!
//! and the rows of the PyTorch / PyHessian comparison (issue 17; `scripts/compare/landscape_torch.sh`
//! measures them beside the peers) on their model, tanh MLP 32→128→128→28 in f32 with PyTorch's
//! default initialisation, MSE on 4,096 fixed rows:
//! * `peer_surface`: an 11×11 filter-normalised surface (121 losses; the comparison's 51×51 grid
//!   takes 2,601) with 1 and 2 worker threads;
//! * `peer_hessian`: the top-3 eigenvalues by Lanczos with exact products, tolerance 10⁻³.
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

// As the `xtask` binary and the comparison examples: mimalloc (glibc's allocator returns large
// tensors to the OS and page-faults them back on every call).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn peer_model() -> (CandleObjective<mlp::Mlp>, Vec<f64>) {
    let (n, dev) = (4096, Device::Cpu);
    let mut r = gradlab_core::rng::rng(23);
    let x = gradlab_core::rng::normal_vec(&mut r, n * 32, 0.0, 1.0);
    let y = gradlab_core::rng::normal_vec(&mut r, n * 28, 0.0, 1.0);
    let x = Tensor::from_vec(x, (n, 32), &dev).unwrap().to_dtype(DType::F32).unwrap();
    let y = Tensor::from_vec(y, (n, 28), &dev).unwrap().to_dtype(DType::F32).unwrap();
    let obj = CandleObjective::new(|vb| mlp::build(&[32, 128, 128, 28], vb), mlp::mse, vec![(x, y)], DType::F32, &dev)
        .unwrap();
    gradlab_core::params::init(obj.varmap(), 7, gradlab_core::params::Init::TorchDefault).unwrap();
    let theta = obj.params().unwrap();
    (obj, theta)
}

fn bench_peer_rows(c: &mut Criterion) {
    let (mut obj, theta) = peer_model();
    let mut rng = gradlab_core::rng::rng(1);
    let d1 = random_direction(&theta, obj.layout(), Normalization::Filter, VectorParams::Zero, &mut rng).unwrap();
    let d2 = random_direction(&theta, obj.layout(), Normalization::Filter, VectorParams::Zero, &mut rng).unwrap();
    let ax = Axis::new(-1.0, 1.0, 11).unwrap();
    let mut g = c.benchmark_group("peer_surface_11x11");
    g.sample_size(10).throughput(Throughput::Elements(121));
    for threads in [1usize, 2] {
        let opts = SurfaceOptions { threads, ..Default::default() };
        g.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, _| {
            b.iter(|| black_box(evaluate_surface(&obj, &theta, &[&d1, &d2], ax, Some(ax), &opts).unwrap()))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("peer_hessian");
    g.sample_size(10);
    g.bench_function("lanczos_top3_exact_tol1e-3", |b| {
        b.iter(|| {
            let mut op = HessianOperator::new(&mut obj, &theta, HvpMethod::Exact).unwrap();
            let cfg = LanczosConfig { max_steps: 100, tol: 1e-3, seed: 0 };
            black_box(lanczos(&mut op, 3, Which::Largest, &cfg).unwrap())
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
    bench_peer_rows(&mut c);
    c.final_summary();
}
