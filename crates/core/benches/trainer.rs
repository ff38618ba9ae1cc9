//! The shared core's MLP rows of the PyTorch comparison (issue 17; `scripts/compare/torch_mlp.sh`
//! measures them beside PyTorch), on our side:
//! - `trainer`: samples per second for a 32→128→128→28 MLP (ReLU), batch 256, CPU, AdamW, one
//!   epoch of 8 batches per iteration (forward, backward, optimiser step, no validation cost
//!   beyond a constant);
//! - `infer_relu`: rows per second of the same network's forward over 571,392 rows (one global
//!   step of the emulator);
//! - `grad_tanh`: one MSE gradient of the tanh network 32→128→128→28 on 4,096 rows.
//!
//! Threads: rayon's (`RAYON_NUM_THREADS`). Run: `cargo bench -p gradlab-core --bench trainer`

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gradlab_core::data::Table;
use gradlab_core::nn::{Activation, Mlp};
use gradlab_core::train::{TrainConfig, Trainer, Validation};
use ndarray::Array2;

// As the `xtask` binary and the comparison examples: mimalloc (glibc's allocator returns large
// tensors to the OS and page-faults them back on every call).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let n = 2048;
    let mut r = gradlab_core::rng::rng(0);
    let x = gradlab_core::rng::normal_vec(&mut r, n * 32, 0.0, 1.0);
    let y = gradlab_core::rng::normal_vec(&mut r, n * 28, 0.0, 1.0);
    let data = Table::new(
        Array2::from_shape_vec((n, 32), x.iter().map(|&v| v as f32).collect()).unwrap(),
        Array2::from_shape_vec((n, 28), y.iter().map(|&v| v as f32).collect()).unwrap(),
    )
    .unwrap();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let model = Mlp::new(&[32, 128, 128, 28], Activation::Relu, vb).unwrap();
    let mut g = c.benchmark_group("trainer");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(20);
    g.bench_function("mlp_32_128_128_28_batch256_epoch", |b| {
        b.iter(|| {
            let cfg = TrainConfig::new(1, 256);
            Trainer::new(cfg, &vm)
                .unwrap()
                .fit::<gradlab_core::Error, _, _>(
                    n,
                    |idx| {
                        let (x, y) = data.batch(idx, &Device::Cpu)?;
                        Ok(gradlab_core::ops::mse(&model.forward(&x)?, &y)?)
                    },
                    || Ok(Validation::loss(0.0)),
                )
                .unwrap()
        })
    });
    g.finish();

    let rows = 571_392;
    let xb: Vec<f32> = (0..rows * 32).map(|i| x[i % (n * 32)] as f32).collect();
    let xb = Tensor::from_vec(xb, (rows, 32), &Device::Cpu).unwrap();
    let mut g = c.benchmark_group("infer_relu");
    g.throughput(Throughput::Elements(rows as u64)).sample_size(10);
    g.bench_function("mlp_32_128_128_28_rows_571392", |b| b.iter(|| std::hint::black_box(model.forward(&xb).unwrap())));
    g.finish();

    let vm = VarMap::new();
    let tanh = Mlp::new(&[32, 128, 128, 28], Activation::Tanh, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))
        .unwrap();
    let xg = Tensor::from_vec(x.iter().map(|&v| v as f32).collect::<Vec<_>>(), (n, 32), &Device::Cpu).unwrap();
    let xg = Tensor::cat(&[&xg, &xg], 0).unwrap(); // 4,096 rows
    let yg = Tensor::from_vec(y.iter().map(|&v| v as f32).collect::<Vec<_>>(), (n, 28), &Device::Cpu).unwrap();
    let yg = Tensor::cat(&[&yg, &yg], 0).unwrap();
    let mut g = c.benchmark_group("grad_tanh");
    g.sample_size(50);
    g.bench_function("mlp_32_128_128_28_rows_4096", |b| {
        b.iter(|| {
            std::hint::black_box(gradlab_core::ops::mse(&tanh.forward(&xg).unwrap(), &yg).unwrap().backward().unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
