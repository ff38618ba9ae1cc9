//! Our side of the landscape comparison with PyTorch and PyHessian
//! (`scripts/compare/landscape_torch.sh`, issue 17). Writes the data, the parameters and the two
//! surface directions to `DIR` as `.npy` (flat vectors in the order of `layout.json`), times the
//! workloads and prints one JSON line per workload on stdout.
//!
//! Model: tanh MLP 32→128→128→28 (f32, 24,348 parameters, PyTorch's default initialisation
//! drawn from seed 7), MSE on 4,096 fixed samples (standard normal inputs and targets).
//! - `surface`: the loss on a 51×51 grid over `[-1, 1]²` along two filter-normalised random
//!   directions (2,601 losses), `threads` = `RAYON_NUM_THREADS` → points/s.
//! - `hessian_top3`: the 3 largest Hessian eigenvalues by Lanczos with exact (double-backward)
//!   Hessian-vector products, residual tolerance 10⁻³ → seconds, with the values and the number
//!   of products. A reference (f64 model, tolerance 10⁻⁹) is computed once, untimed, so that
//!   both sides' values can be checked against it.
//!
//! `cargo run --release -p gradlab-landscape --example landscape_peer -- DIR REPEATS [WORK,…]`

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use gradlab_core::io::write_npy_1d;
use gradlab_landscape::Objective;
use gradlab_landscape::candle::{CandleObjective, mlp};
use gradlab_landscape::directions::{Normalization, VectorParams, random_direction};
use gradlab_landscape::hessian::{HessianOperator, HvpMethod};
use gradlab_landscape::lanczos::{LanczosConfig, Which, lanczos};
use gradlab_landscape::surface::{Axis, SurfaceOptions, evaluate_surface};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 4_096;
const SIZES: [usize; 4] = [32, 128, 128, 28];
const WORKS: [&str; 2] = ["surface", "hessian_top3"];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rayon::current_num_threads)
}

fn line(work: &str, ms: f64, extra: serde_json::Value) {
    let mut v = serde_json::json!({"impl": "gradlab", "work": work, "threads": threads(), "median_ms": ms});
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    println!("{v}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn objective(x: &[f64], y: &[f64], dtype: DType) -> Res<CandleObjective<mlp::Mlp>> {
    let dev = Device::Cpu;
    let xt = Tensor::from_vec(x.to_vec(), (N, SIZES[0]), &dev)?.to_dtype(dtype)?;
    let yt = Tensor::from_vec(y.to_vec(), (N, SIZES[3]), &dev)?.to_dtype(dtype)?;
    Ok(CandleObjective::new(|vb| mlp::build(&SIZES, vb), mlp::mse, vec![(xt, yt)], dtype, &dev)?)
}

fn main() -> Res<()> {
    // Exact Hessian-vector products need this before any other thread starts.
    gradlab_core::grad::enable_exact_double_backward()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(2..=3).contains(&args.len()) {
        return Err("usage: landscape_peer DIR REPEATS [WORK,…]".into());
    }
    let works: Vec<&str> = args.get(2).map_or(WORKS.to_vec(), |w| w.split(',').collect());
    if let Some(w) = works.iter().find(|w| !WORKS.contains(w)) {
        return Err(format!("unknown workload {w}: allowed {}", WORKS.join(", ")).into());
    }
    let dir = PathBuf::from(&args[0]);
    let repeats: usize = args[1].parse().map_err(|e| format!("REPEATS: {e}"))?;
    if repeats == 0 {
        return Err("REPEATS must be ≥ 1".into());
    }
    std::fs::create_dir_all(&dir)?;

    let mut r = gradlab_core::rng::rng(23);
    let x = gradlab_core::rng::normal_vec(&mut r, N * SIZES[0], 0.0, 1.0);
    let y = gradlab_core::rng::normal_vec(&mut r, N * SIZES[3], 0.0, 1.0);
    let mut obj = objective(&x, &y, DType::F32)?;
    // The parameters: PyTorch's default initialisation of `nn.Linear`, seeded.
    gradlab_core::params::init(obj.varmap(), 7, gradlab_core::params::Init::TorchDefault)?;
    let theta = obj.params()?;
    let layout = obj.layout().clone();
    let d1 = random_direction(&theta, &layout, Normalization::Filter, VectorParams::Zero, &mut r)?;
    let d2 = random_direction(&theta, &layout, Normalization::Filter, VectorParams::Zero, &mut r)?;
    // Directions rounded to f32 here, so both sides step along the same vectors.
    let round = |v: &[f64]| v.iter().map(|&a| a as f32 as f64).collect::<Vec<f64>>();
    let (d1, d2) = (round(&d1), round(&d2));
    write_npy_1d(&dir.join("x.npy"), &x)?;
    write_npy_1d(&dir.join("y.npy"), &y)?;
    write_npy_1d(&dir.join("theta.npy"), &theta)?;
    write_npy_1d(&dir.join("d1.npy"), &d1)?;
    write_npy_1d(&dir.join("d2.npy"), &d2)?;
    let entries: Vec<_> = layout
        .entries
        .iter()
        .map(|e| serde_json::json!({"name": e.name, "shape": e.shape, "offset": e.offset, "len": e.len}))
        .collect();
    std::fs::write(dir.join("layout.json"), serde_json::to_string_pretty(&entries)?)?;

    if works.contains(&"surface") {
        let ax = Axis::new(-1.0, 1.0, 51)?;
        let opts = SurfaceOptions { threads: threads(), ..Default::default() };
        let mut times = Vec::new();
        let mut surf = None;
        for rep in 0..=repeats {
            let t = Instant::now();
            let s = evaluate_surface(&obj, &theta, &[&d1, &d2], ax, Some(ax), &opts)?;
            if rep > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
            surf = Some(s);
        }
        let s = surf.ok_or("no surface")?;
        let secs = median(times);
        line(
            "surface",
            1e3 * secs,
            serde_json::json!({"points_per_s": 2601.0 / secs, "loss_center": s.at(25, 25), "loss_sum": s.loss.iter().sum::<f64>()}),
        );
    }

    if works.contains(&"hessian_top3") {
        let cfg = LanczosConfig { max_steps: 100, tol: 1e-3, seed: 0 };
        let mut times = Vec::new();
        let mut last = None;
        for rep in 0..=repeats {
            let t = Instant::now();
            let mut op = HessianOperator::new(&mut obj, &theta, HvpMethod::Exact)?;
            let e = lanczos(&mut op, 3, Which::Largest, &cfg)?;
            if rep > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
            last = Some(e);
        }
        let e = last.ok_or("no eigenvalues")?;
        // Reference: the same parameters in an f64 model, tight tolerance (untimed).
        let mut obj64 = objective(&x, &y, DType::F64)?;
        obj64.set_params(&theta)?;
        let mut op = HessianOperator::new(&mut obj64, &theta, HvpMethod::Exact)?;
        let reference = lanczos(&mut op, 3, Which::Largest, &LanczosConfig { max_steps: 300, tol: 1e-9, seed: 1 })?;
        line(
            "hessian_top3",
            1e3 * median(times),
            serde_json::json!({"eigenvalues": e.values, "hvps": e.steps, "converged": e.converged,
                               "reference_f64": reference.values, "loss": obj.loss(&theta)?}),
        );
    }
    Ok(())
}
