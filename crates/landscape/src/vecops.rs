//! Small dense-vector helpers on `&[f64]` (the crate's parameter representation).

/// Dot product. Panics (debug) on length mismatch: callers check lengths at the API boundary.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm.
#[inline]
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `y += alpha * x`.
#[inline]
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `x *= alpha`.
#[inline]
pub fn scale(alpha: f64, x: &mut [f64]) {
    for xi in x.iter_mut() {
        *xi *= alpha;
    }
}

/// `a - b` as a new vector.
pub fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// `c + sum_i coeffs[i] * dirs[i]` written into `out`.
pub fn combine(center: &[f64], coeffs: &[f64], dirs: &[&[f64]], out: &mut [f64]) {
    out.copy_from_slice(center);
    for (c, d) in coeffs.iter().zip(dirs) {
        if *c != 0.0 {
            axpy(*c, d, out);
        }
    }
}

/// Orthonormalises `v` against the (orthonormal) `basis` with two passes of Gram–Schmidt
/// ("twice is enough") and normalises it. Returns the norm after projection (before
/// normalisation); if it is tiny relative to the input the vector was (numerically) in the span.
pub fn orthogonalize_against(basis: &[Vec<f64>], v: &mut [f64]) -> f64 {
    for _ in 0..2 {
        for b in basis {
            let c = dot(b, v);
            axpy(-c, b, v);
        }
    }
    let n = norm(v);
    if n > 0.0 {
        scale(1.0 / n, v);
    }
    n
}

/// Orthonormal basis of the span of `vectors` (modified Gram–Schmidt, twice), dropping vectors whose
/// residual norm is below `rel_tol` times their original norm.
pub fn orthonormal_basis(vectors: &[Vec<f64>], rel_tol: f64) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(vectors.len());
    for v in vectors {
        let n0 = norm(v);
        let mut w = v.clone();
        let r = orthogonalize_against(&basis, &mut w);
        if n0 > 0.0 && r > rel_tol * n0 {
            basis.push(w);
        }
    }
    basis
}
