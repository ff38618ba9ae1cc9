//! Trainer throughput: samples per second for a 32→128→128→28 MLP (ReLU), batch 256, CPU,
//! AdamW, one epoch of 8 batches per iteration (forward, backward, optimiser step, no validation
//! cost beyond a constant).
//!
//! Run: `cargo bench -p gradlab-core --bench trainer`

use candle_core::{DType, Device, Module};
use candle_nn::{VarBuilder, VarMap};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gradlab_core::data::Table;
use gradlab_core::nn::{Activation, Mlp};
use gradlab_core::train::{TrainConfig, Trainer, Validation};
use ndarray::Array2;

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
                        Ok(model.forward(&x)?.sub(&y)?.sqr()?.mean_all()?)
                    },
                    || Ok(Validation::loss(0.0)),
                )
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
