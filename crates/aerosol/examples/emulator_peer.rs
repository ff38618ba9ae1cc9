//! `Emulator::predict` beside the plain-MLP inference of `scripts/compare/torch_mlp.sh`
//! (issue 17): reads the inputs `x.npy` `[262,144, 32]` and `y.npy` `[262,144, 28]` that
//! `gradlab-core`'s `mlp_peer` example wrote to `DIR`, builds a fresh emulator (the paper's
//! 32 → 128 → 128 → 28 ReLU network with the completion head, normalisers fitted on these rows,
//! `y` taken as the states after the step), and times one prediction of 571,392 rows (row `i` =
//! input `i mod 262,144`, as `infer_relu`) from a host array to a host array. One JSON line
//! (`work` = `infer_emulator`, rows/s).
//!
//! The emulator does more than the plain network PyTorch runs in `infer_relu` (input and output
//! normalisation, the completion head), folded into its first and last layers.
//!
//! `cargo run --release -p gradlab-aerosol --example emulator_peer -- DIR REPEATS`

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use gradlab_aerosol::emulator::{Emulator, EmulatorConfig, EmulatorData};
use gradlab_core::io::read_npy_2d;
use ndarray::Array2;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N_INFER: usize = 571_392;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 {
        return Err("usage: emulator_peer DIR REPEATS".into());
    }
    let dir = PathBuf::from(&args[0]);
    let repeats: usize = args[1].parse().map_err(|e| format!("REPEATS: {e}"))?;
    if repeats == 0 {
        return Err("REPEATS must be ≥ 1".into());
    }
    let (n, cx, x) = read_npy_2d(&dir.join("x.npy"))?;
    let (ny, cy, y) = read_npy_2d(&dir.join("y.npy"))?;
    if n != ny || cx != 32 || cy != 28 {
        return Err(format!("x.npy [{n}, {cx}] and y.npy [{ny}, {cy}]: want [N, 32] and [N, 28]").into());
    }
    let x = Array2::from_shape_vec((n, cx), x)?;
    let y = Array2::from_shape_vec((n, cy), y)?;
    let data = EmulatorData::from_xy(&x.view(), &y.view())?;
    let em = Emulator::new(EmulatorConfig::default(), 720.0, &data, 0, &Device::Cpu)?;
    let rows = Array2::from_shape_fn((N_INFER, cx), |(i, j)| x[[i % n, j]] as f32);
    let mut times = Vec::new();
    for rep in 0..=repeats {
        let t = Instant::now();
        std::hint::black_box(em.predict(&rows.view())?);
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let s = times[times.len() / 2];
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| rayon::current_num_threads().to_string());
    let v = serde_json::json!({
        "impl": "gradlab", "work": "infer_emulator", "threads": threads, "unit": "rows/s",
        "value": N_INFER as f64 / s, "median_ms": 1e3 * s
    });
    println!("{v}");
    Ok(())
}
