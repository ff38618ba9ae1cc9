//! Throughput of the emulator against the box model on the same cells.

use super::emulator_model::Emulator;
use super::heads::{N_ENV, N_X};
use crate::box_model::M7;
use crate::error::{Error, Result};
use crate::layout;
use crate::state::{AerosolState, Environment};
use ndarray::Array2;
use rayon::prelude::*;
use std::time::Instant;

/// Cells as dataset X rows `[N, 32]` (f32, the emulator's input).
pub fn cells_to_x(cells: &[(Environment, AerosolState)]) -> Array2<f32> {
    let mut x = Array2::<f32>::zeros((cells.len(), N_X));
    let mut buf = [0.0f64; N_X];
    for (i, (e, s)) in cells.iter().enumerate() {
        layout::write_env(e, &mut buf[..N_ENV]);
        layout::write_state(s, false, &mut buf[N_ENV..]);
        for j in 0..N_X {
            x[[i, j]] = buf[j] as f32;
        }
    }
    x
}

/// Refuses zero repeats (a best of no runs).
fn check_repeats(repeats: usize) -> Result<()> {
    if repeats == 0 {
        return Err(Error::invalid("repeats", repeats, "at least 1 (the time is the best of `repeats` runs)"));
    }
    Ok(())
}

/// Best-of-`repeats` throughput (cells/s) of one box-model step over `cells`, parallel over
/// the rayon pool (chunks of 1024 cells). `repeats` = 0 is refused.
pub fn box_model_throughput(m7: &M7, cells: &[(Environment, AerosolState)], repeats: usize) -> Result<f64> {
    check_repeats(repeats)?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        let acc: f64 = cells
            .par_chunks(1024)
            .map(|c| {
                let mut a = 0.0;
                for (e, s) in c {
                    let mut s = *s;
                    let (d, _) = m7.step(e, &mut s);
                    a += s.n[1] + d.water[2];
                }
                a
            })
            .sum();
        std::hint::black_box(acc);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(cells.len() as f64 / best)
}

/// Best-of-`repeats` throughput (cells/s) of [`Emulator::predict`] on the rows of `x`
/// (host array in, host array out: normalisation, network, head and transfers included).
/// `repeats` = 0 is refused.
pub fn emulator_throughput(em: &Emulator, x: &Array2<f32>, repeats: usize) -> Result<f64> {
    check_repeats(repeats)?;
    // One warm-up call (allocations, CUDA kernels).
    std::hint::black_box(em.predict(&x.slice(ndarray::s![..x.nrows().min(1024), ..]))?);
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        std::hint::black_box(em.predict(&x.view())?);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(x.nrows() as f64 / best)
}
