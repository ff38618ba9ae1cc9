//! Our side of the shared-core comparison with PyTorch (`scripts/compare/torch_mlp.sh`, issue 17):
//! writes the data and the initial weights to `DIR` as `.npy`, times three workloads and prints
//! one JSON line per workload on stdout.
//!
//! - `train_relu`: MLP 32→128→128→28 (ReLU), MSE, Adam (lr 1e-3) through the core `Trainer`,
//!   batch 256, one epoch over 262,144 samples → samples/s.
//! - `infer_relu`: the same MLP, one forward over 571,392 rows (the training inputs repeated,
//!   row `i` = sample `i mod 262,144`) → rows/s.
//! - `grad_tanh`: MLP 32→128→128→28 (tanh), MSE on the first 4,096 samples: forward + backward →
//!   ms per gradient.
//!
//! The loss is the core's one-pass `gradlab_core::ops::mse`.
//!
//! `cargo run --release -p gradlab-core --example mlp_peer -- DIR REPEATS [WORK,…]` (threads:
//! `RAYON_NUM_THREADS`; the process uses mimalloc, as `xtask` does; `WORK` picks workloads, all
//! by default).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use gradlab_core::data::Table;
use gradlab_core::io::write_npy_2d;
use gradlab_core::nn::{Activation, Mlp};
use gradlab_core::train::{TrainConfig, Trainer, Validation};
use ndarray::Array2;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N_TRAIN: usize = 262_144;
const N_INFER: usize = 571_392;
const N_GRAD: usize = 4_096;
const SIZES: [usize; 4] = [32, 128, 128, 28];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| rayon::current_num_threads().to_string())
}

/// A fresh MLP (seeded initialisation) and its weights written as `{tag}_l{i}_{weight,bias}.npy`.
fn model(dir: &Path, tag: &str, act: Activation) -> Res<(VarMap, Mlp)> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let mlp = Mlp::new(&SIZES, act, vb)?;
    for (i, l) in mlp.layers().iter().enumerate() {
        let w = l.weight();
        let (r, c) = w.dims2()?;
        let v: Vec<f64> = w.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
        write_npy_2d(&dir.join(format!("{tag}_l{i}_weight.npy")), r, c, &v)?;
        let b = l.bias().ok_or("MLP layer without bias")?;
        let v: Vec<f64> = b.to_dtype(DType::F64)?.to_vec1()?;
        write_npy_2d(&dir.join(format!("{tag}_l{i}_bias.npy")), 1, v.len(), &v)?;
    }
    Ok((vm, mlp))
}

fn line(work: &str, unit: &str, value: f64, ms: f64) {
    let v = serde_json::json!({
        "impl": "gradlab", "work": work, "threads": threads(), "unit": unit, "value": value, "median_ms": ms
    });
    println!("{v}");
}

/// Median seconds of `repeats` calls of `f` after one warm-up call.
fn time(repeats: usize, mut f: impl FnMut() -> Res<()>) -> Res<f64> {
    let mut times = Vec::new();
    for rep in 0..=repeats {
        let t = Instant::now();
        f()?;
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(2..=3).contains(&args.len()) {
        return Err("usage: mlp_peer DIR REPEATS [WORK,…]".into());
    }
    let works: Vec<&str> =
        args.get(2).map_or(vec!["train_relu", "infer_relu", "grad_tanh"], |w| w.split(',').collect());
    if let Some(w) = works.iter().find(|w| !["train_relu", "infer_relu", "grad_tanh"].contains(w)) {
        return Err(format!("unknown workload {w}: allowed train_relu, infer_relu, grad_tanh").into());
    }
    let dir = PathBuf::from(&args[0]);
    let repeats: usize = args[1].parse().map_err(|e| format!("REPEATS: {e}"))?;
    if repeats == 0 {
        return Err("REPEATS must be ≥ 1".into());
    }
    std::fs::create_dir_all(&dir)?;
    let mut r = gradlab_core::rng::rng(17);
    let x = gradlab_core::rng::normal_vec(&mut r, N_TRAIN * SIZES[0], 0.0, 1.0);
    let y = gradlab_core::rng::normal_vec(&mut r, N_TRAIN * SIZES[3], 0.0, 1.0);
    write_npy_2d(&dir.join("x.npy"), N_TRAIN, SIZES[0], &x)?;
    write_npy_2d(&dir.join("y.npy"), N_TRAIN, SIZES[3], &y)?;
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let data = Table::new(
        Array2::from_shape_vec((N_TRAIN, SIZES[0]), f32s(&x))?,
        Array2::from_shape_vec((N_TRAIN, SIZES[3]), f32s(&y))?,
    )?;
    let dev = Device::Cpu;

    // train_relu: one epoch per call, the same model continuing.
    let (vm, mlp) = model(&dir, "relu", Activation::Relu)?;
    if works.contains(&"train_relu") {
        let s = time(repeats, || {
            Trainer::new(TrainConfig::new(1, 256), &vm)?.fit::<gradlab_core::Error, _, _>(
                N_TRAIN,
                |idx| {
                    let (x, y) = data.batch(idx, &dev)?;
                    Ok(gradlab_core::ops::mse(&mlp.forward(&x)?, &y)?)
                },
                || Ok(Validation::loss(0.0)),
            )?;
            Ok(())
        })?;
        line("train_relu", "samples/s", N_TRAIN as f64 / s, 1e3 * s);
    }

    // infer_relu (the time does not depend on the weights' values).
    let xt = Tensor::from_vec(f32s(&x), (N_TRAIN, SIZES[0]), &dev)?;
    let idx: Vec<u32> = (0..N_INFER).map(|i| (i % N_TRAIN) as u32).collect();
    let xb = xt.index_select(&Tensor::from_vec(idx, N_INFER, &dev)?, 0)?;
    if works.contains(&"infer_relu") {
        let s = time(repeats, || {
            std::hint::black_box(mlp.forward(&xb)?);
            Ok(())
        })?;
        line("infer_relu", "rows/s", N_INFER as f64 / s, 1e3 * s);
    }

    // grad_tanh: one MSE gradient on the first 4,096 samples.
    let (_vm, tanh) = model(&dir, "tanh", Activation::Tanh)?;
    let xg = xt.narrow(0, 0, N_GRAD)?;
    let yg = Tensor::from_vec(f32s(&y[..N_GRAD * SIZES[3]]), (N_GRAD, SIZES[3]), &dev)?;
    if works.contains(&"grad_tanh") {
        let s = time(repeats, || {
            std::hint::black_box(gradlab_core::ops::mse(&tanh.forward(&xg)?, &yg)?.backward()?);
            Ok(())
        })?;
        line("grad_tanh", "ms", 1e3 * s, 1e3 * s);
    }
    Ok(())
}
