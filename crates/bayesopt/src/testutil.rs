//! Helpers shared by the unit tests.

/// Central difference `(f(x + h eₘ) − f(x − h eₘ)) / 2h` of `f` along coordinate `m`.
pub(crate) fn central_difference(mut f: impl FnMut(&[f64]) -> f64, x: &[f64], m: usize, h: f64) -> f64 {
    let mut xp = x.to_vec();
    xp[m] += h;
    let mut xm = x.to_vec();
    xm[m] -= h;
    (f(&xp) - f(&xm)) / (2.0 * h)
}
