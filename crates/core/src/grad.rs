//! Second-order gradients with candle: turning exact double backward on, and checking it.
//!
//! candle 0.11 computes a second backward pass (a Hessian-vector product by differentiating a
//! gradient) correctly only when the environment variable `CANDLE_GRAD_DO_NOT_DETACH` is set
//! (non-empty, not `0`) **before a thread's first backward pass**: candle reads it once per
//! thread and caches it. Without it, double backward runs and returns silently wrong numbers.
//!
//! - [`enable_exact_double_backward`] sets the variable from inside the program, safely: only
//!   while the process has a single thread (so nothing can read the environment concurrently),
//!   and it then checks that the calling thread really computes exact second derivatives. Call it
//!   first thing in `main`. Setting the variable on the command line
//!   (`CANDLE_GRAD_DO_NOT_DETACH=1 cargo …`) is the alternative that always works.
//! - [`double_backward_is_exact`] is the guard: it differentiates `x³` twice on the calling thread
//!   (as products) and compares with `6x`, so it detects a thread that read the variable before it was set.

use crate::{Error, Result};
use candle_core::{Device, Var};

/// The environment variable candle reads.
pub const DO_NOT_DETACH_VAR: &str = "CANDLE_GRAD_DO_NOT_DETACH";

/// Whether the variable is set to a value that turns exact double backward on.
pub fn double_backward_requested() -> bool {
    std::env::var(DO_NOT_DETACH_VAR).is_ok_and(|s| !s.is_empty() && s != "0")
}

/// Whether a second backward pass on the **calling thread** gives exact derivatives: computes
/// d²(x·x·x)/dx² at x = 1.5 by double backward and compares it with 9 (candle's default gives 6).
pub fn double_backward_is_exact() -> Result<bool> {
    let x = Var::new(&[1.5f64], &Device::Cpu)?;
    let t = x.as_tensor();
    // x·x·x as products: candle's default detaching gets this one wrong (6x → 4x).
    let y = t.mul(t)?.mul(t)?.sum_all()?;
    let g = y.backward()?;
    let dy = g.get(x.as_tensor()).ok_or_else(|| Error::invalid("double-backward probe", "no gradient", "a gradient"))?;
    let g2 = dy.sum_all()?.backward()?;
    let d2 = match g2.get(x.as_tensor()) {
        Some(t) => t.to_vec1::<f64>()?[0],
        None => return Ok(false),
    };
    Ok((d2 - 9.0).abs() < 1e-9)
}

fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

/// Turn exact double backward on for this process (see the module docs) and check it on the
/// calling thread.
///
/// If the variable is already set, only the check runs. Otherwise it is set when the process has
/// exactly one thread (read from `/proc/self/task`; elsewhere it refuses); with more threads it
/// returns an error that says to set it on the command line instead. The check fails if this
/// thread already ran a backward pass before the variable was set.
pub fn enable_exact_double_backward() -> Result<()> {
    if !double_backward_requested() {
        match thread_count() {
            Some(1) => {
                // SAFETY: the process has one thread (this one), so no other thread can read or
                // write the environment while it is modified.
                unsafe { std::env::set_var(DO_NOT_DETACH_VAR, "1") };
            }
            n => {
                return Err(Error::invalid(
                    "CANDLE_GRAD_DO_NOT_DETACH",
                    format!("unset, and the process has {} threads", n.map_or("an unknown number of".into(), |n| n.to_string())),
                    "call enable_exact_double_backward() first in main, before any thread starts, \
                     or set CANDLE_GRAD_DO_NOT_DETACH=1 in the environment",
                ));
            }
        }
    }
    if double_backward_is_exact()? {
        Ok(())
    } else {
        Err(Error::invalid(
            "CANDLE_GRAD_DO_NOT_DETACH",
            "set, but this thread ran a backward pass before it was set (candle caches it per thread)",
            "set it before the first backward pass: first thing in main, or in the environment",
        ))
    }
}
