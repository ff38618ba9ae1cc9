//! Incremental Cholesky factorisation on faer.
//!
//! [`IncrementalCholesky`] holds the lower factor `L` of `A + D` (A symmetric positive
//! semi-definite, `D` a diagonal jitter) in a matrix with spare capacity, so that appending
//! one row costs one triangular solve (`O(n²)`) and the storage grows in place (amortised
//! doubling), never copying the factor per append. A block of `b` rows costs `O(n² b)`.
//!
//! Jitter: a full factorisation first tries `A` as it is; when a pivot is not positive it
//! retries with `rel · mean(diag A)` added to the diagonal, `rel` escalating ×10 from
//! `JitterPolicy::first_rel` for `max_tries` tries, then returns
//! [`Error::NotPositiveDefinite`]. The successful jitter is kept and added to every appended
//! diagonal entry. An appended pivot `d² ≤ min_pivot_rel · c` gets extra jitter on its own
//! diagonal entry (recorded in [`IncrementalCholesky::diag_shift`]) with the same
//! escalation, or the append fails with the typed error and the factor is left unchanged.

use crate::error::{Error, Result};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::triangular_solve::{solve_lower_triangular_in_place, solve_upper_triangular_in_place};
use faer::{Mat, MatMut, MatRef, Par};
use serde::{Deserialize, Serialize};

/// How jitter escalates when a matrix is not numerically positive definite.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JitterPolicy {
    /// First relative jitter tried after a failure (relative to the mean diagonal).
    pub first_rel: f64,
    /// Multiplier between tries.
    pub factor: f64,
    /// Number of jittered tries before giving up.
    pub max_tries: usize,
    /// An appended pivot `d²` must exceed `min_pivot_rel · c` (c: its diagonal entry).
    pub min_pivot_rel: f64,
}

impl Default for JitterPolicy {
    fn default() -> Self {
        JitterPolicy { first_rel: 1e-6, factor: 10.0, max_tries: 6, min_pivot_rel: 1e-10 }
    }
}

/// Cholesky factor `L` (lower) that grows by rows in `O(n²)` per row.
#[derive(Clone, Debug)]
pub struct IncrementalCholesky {
    l: Mat<f64>,
    cap: usize,
    /// Uniform jitter added to the diagonal (absolute).
    jitter: f64,
    /// Per-index extra diagonal shift from appends whose pivot needed it.
    extra: Vec<f64>,
    policy: JitterPolicy,
    par: Par,
}

impl IncrementalCholesky {
    /// Empty factor with room for `capacity` rows.
    pub fn with_capacity(capacity: usize, policy: JitterPolicy) -> Self {
        let mut l = Mat::<f64>::zeros(0, 0);
        l.reserve(capacity, capacity);
        IncrementalCholesky { l, cap: capacity, jitter: 0.0, extra: Vec::new(), policy, par: Par::Seq }
    }

    /// Factorises `a` (only its lower triangle is read) from scratch.
    pub fn factor(a: MatRef<'_, f64>, policy: JitterPolicy) -> Result<Self> {
        let mut c = Self::with_capacity(a.nrows(), policy);
        c.refactor(a)?;
        Ok(c)
    }

    /// Parallelism used by full factorisations and block appends (default sequential).
    pub fn set_par(&mut self, par: Par) {
        self.par = par;
    }

    /// Dimension `n` of the factor.
    pub fn dim(&self) -> usize {
        self.l.nrows()
    }

    /// Allocated row capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The factor `L` (n × n, lower triangular).
    #[allow(non_snake_case)]
    pub fn L(&self) -> MatRef<'_, f64> {
        self.l.as_ref()
    }

    /// Uniform absolute jitter in use.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The diagonal shift actually factorised: `L Lᵀ = A + diag(shift)`.
    pub fn diag_shift(&self) -> Vec<f64> {
        self.extra.iter().map(|e| e + self.jitter).collect()
    }

    /// `log det(A + D) = 2 Σ log L_ii`.
    pub fn log_det(&self) -> f64 {
        2.0 * (0..self.dim()).map(|i| self.l[(i, i)].ln()).sum::<f64>()
    }

    fn grow_to(&mut self, n: usize) {
        if n > self.cap {
            let cap = n.max(2 * self.cap).max(16);
            self.l.reserve(cap, cap);
            self.cap = cap;
        }
        self.l.resize_with(n, n, |_, _| 0.0);
    }

    /// Drops all rows after the first `n` (exact: the leading block of a Cholesky factor is
    /// the factor of the leading block).
    pub fn truncate(&mut self, n: usize) {
        assert!(n <= self.dim(), "truncate to {n} > dim {}", self.dim());
        self.l.truncate(n, n);
        self.extra.truncate(n);
    }

    /// Factorises `a` from scratch into the existing storage, with jitter escalation.
    pub fn refactor(&mut self, a: MatRef<'_, f64>) -> Result<()> {
        assert_eq!(a.nrows(), a.ncols(), "refactor needs a square matrix");
        let n = a.nrows();
        let mean_diag = if n == 0 { 1.0 } else { (0..n).map(|i| a[(i, i)]).sum::<f64>() / n as f64 };
        let scale = if mean_diag.is_finite() && mean_diag > 0.0 { mean_diag } else { 1.0 };
        let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(n, self.par, Default::default()));
        let mut rel = 0.0;
        let mut last_pivot = 0;
        for attempt in 0..=self.policy.max_tries {
            if attempt > 0 {
                rel = if attempt == 1 { self.policy.first_rel } else { rel * self.policy.factor };
            }
            let jitter = rel * scale;
            self.l.truncate(0, 0);
            self.grow_to(n);
            for j in 0..n {
                for i in j..n {
                    self.l[(i, j)] = a[(i, j)];
                }
                self.l[(j, j)] += jitter;
            }
            let stack = MemStack::new(&mut mem);
            match cholesky_in_place(self.l.as_mut(), Default::default(), self.par, stack, Default::default()) {
                Ok(_) => {
                    for j in 0..n {
                        for i in 0..j {
                            self.l[(i, j)] = 0.0;
                        }
                    }
                    if (0..n).all(|i| self.l[(i, i)].is_finite() && self.l[(i, i)] > 0.0) {
                        self.jitter = jitter;
                        self.extra.clear();
                        self.extra.resize(n, 0.0);
                        return Ok(());
                    }
                    last_pivot = (0..n).find(|&i| !(self.l[(i, i)] > 0.0)).unwrap_or(0);
                }
                Err(faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index }) => {
                    last_pivot = index;
                }
            }
        }
        self.l.truncate(0, 0);
        self.extra.clear();
        Err(Error::NotPositiveDefinite { pivot: last_pivot, dim: n, jitter: rel, tries: self.policy.max_tries })
    }

    /// Appends one row: `p = A[n, 0..n]`, `c = A[n, n]` (without jitter). `O(n²)`.
    /// Returns the new pivot `L[n, n]`. On error the factor is unchanged.
    pub fn append_row(&mut self, p: &[f64], c: f64) -> Result<f64> {
        let n = self.dim();
        assert_eq!(p.len(), n, "append_row: p has length {} but the factor is {n}", p.len());
        if !c.is_finite() {
            return Err(Error::NonFinite { what: "appended diagonal entry", value: c });
        }
        let mut q = Mat::<f64>::zeros(n, 1);
        for i in 0..n {
            q[(i, 0)] = p[i];
        }
        solve_lower_triangular_in_place(self.l.as_ref(), q.as_mut(), Par::Seq);
        let qq: f64 = (0..n).map(|i| q[(i, 0)] * q[(i, 0)]).sum();
        let base = c + self.jitter;
        let (d, extra) = self.pivot(base - qq, c.abs().max(f64::MIN_POSITIVE), n)?;
        self.grow_to(n + 1);
        for j in 0..n {
            self.l[(n, j)] = q[(j, 0)];
        }
        self.l[(n, n)] = d;
        self.extra.push(extra);
        Ok(d)
    }

    fn pivot(&self, d2: f64, c: f64, index: usize) -> Result<(f64, f64)> {
        let tol = self.policy.min_pivot_rel * c;
        if d2.is_finite() && d2 > tol {
            return Ok((d2.sqrt(), 0.0));
        }
        let mut rel = self.policy.first_rel;
        for _ in 0..self.policy.max_tries {
            let extra = rel * c;
            if d2 + extra > tol {
                return Ok(((d2 + extra).sqrt(), extra));
            }
            rel *= self.policy.factor;
        }
        Err(Error::NotPositiveDefinite { pivot: index, dim: index + 1, jitter: rel, tries: self.policy.max_tries })
    }

    /// Appends `b` rows: `p = A[0..n, n..n+b]` (n × b), `c = A[n..n+b, n..n+b]` (b × b,
    /// lower triangle read). `O(n² b)`. On error the factor is unchanged.
    pub fn append_block(&mut self, p: MatRef<'_, f64>, c: MatRef<'_, f64>) -> Result<()> {
        let n = self.dim();
        let b = c.nrows();
        assert_eq!(p.nrows(), n, "append_block: p rows");
        assert_eq!(p.ncols(), b, "append_block: p cols");
        assert_eq!(c.ncols(), b, "append_block: c must be square");
        let mut x = p.to_owned();
        solve_lower_triangular_in_place(self.l.as_ref(), x.as_mut(), self.par);
        // Schur complement S = C + jitter − Xᵀ X, factorised row by row (with per-pivot jitter).
        let xtx = x.transpose() * &x;
        let mut s = Mat::<f64>::zeros(b, b);
        let mut extras = vec![0.0; b];
        for i in 0..b {
            for j in 0..=i {
                s[(i, j)] = c[(i, j)] - xtx[(i, j)];
            }
            s[(i, i)] += self.jitter;
        }
        // Row-wise (left-looking) Cholesky of S with pivot checks.
        let mut ls = Mat::<f64>::zeros(b, b);
        for i in 0..b {
            for j in 0..i {
                let mut v = s[(i, j)];
                for k in 0..j {
                    v -= ls[(i, k)] * ls[(j, k)];
                }
                ls[(i, j)] = v / ls[(j, j)];
            }
            let mut d2 = s[(i, i)];
            for k in 0..i {
                d2 -= ls[(i, k)] * ls[(i, k)];
            }
            let (d, e) = self.pivot(d2, c[(i, i)].abs().max(f64::MIN_POSITIVE), n + i)?;
            ls[(i, i)] = d;
            extras[i] = e;
        }
        self.grow_to(n + b);
        for i in 0..b {
            for j in 0..n {
                self.l[(n + i, j)] = x[(j, i)];
            }
            for j in 0..=i {
                self.l[(n + i, n + j)] = ls[(i, j)];
            }
        }
        self.extra.extend(extras);
        Ok(())
    }

    /// `rhs ← L⁻¹ rhs`.
    pub fn solve_lower_in_place(&self, rhs: MatMut<'_, f64>, par: Par) {
        solve_lower_triangular_in_place(self.l.as_ref(), rhs, par);
    }

    /// `rhs ← L⁻ᵀ rhs`.
    pub fn solve_upper_in_place(&self, rhs: MatMut<'_, f64>, par: Par) {
        solve_upper_triangular_in_place(self.l.as_ref().transpose(), rhs, par);
    }

    /// `rhs ← (L Lᵀ)⁻¹ rhs`.
    pub fn solve_in_place(&self, mut rhs: MatMut<'_, f64>, par: Par) {
        self.solve_lower_in_place(rhs.as_mut(), par);
        self.solve_upper_in_place(rhs, par);
    }

    /// `(L Lᵀ)⁻¹`, lower triangle only (the strict upper triangle is unspecified).
    /// `2n³/3` flops: triangular inverse, then a triangular product.
    pub fn inverse_lower(&self, par: Par) -> Mat<f64> {
        let n = self.dim();
        let mut out = Mat::<f64>::zeros(n, n);
        let mut mem = MemBuffer::new(faer::linalg::cholesky::llt::inverse::inverse_scratch::<f64>(n, par));
        faer::linalg::cholesky::llt::inverse::inverse(out.as_mut(), self.l.as_ref(), par, MemStack::new(&mut mem));
        out
    }

    /// `L⁻¹ v` for a vector.
    pub fn solve_lower_vec(&self, v: &[f64]) -> Vec<f64> {
        let mut m = Mat::from_fn(v.len(), 1, |i, _| v[i]);
        self.solve_lower_in_place(m.as_mut(), Par::Seq);
        (0..v.len()).map(|i| m[(i, 0)]).collect()
    }

    /// `L⁻ᵀ v` for a vector.
    pub fn solve_upper_vec(&self, v: &[f64]) -> Vec<f64> {
        let mut m = Mat::from_fn(v.len(), 1, |i, _| v[i]);
        self.solve_upper_in_place(m.as_mut(), Par::Seq);
        (0..v.len()).map(|i| m[(i, 0)]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlab_core::rng::{SeededRng, rng};
    use rand::Rng;

    /// Random SPD matrix A = B Bᵀ / m + 1e-3 I.
    fn spd(n: usize, rng: &mut SeededRng) -> Mat<f64> {
        let m = n + 3;
        let b = Mat::from_fn(n, m, |_, _| rng.random::<f64>() * 2.0 - 1.0);
        let mut a = &b * b.transpose();
        for i in 0..n {
            for j in 0..n {
                a[(i, j)] /= m as f64;
            }
            a[(i, i)] += 1e-3;
        }
        a
    }

    fn rel_diff(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
        let mut num: f64 = 0.0;
        let mut den: f64 = 0.0;
        for j in 0..a.ncols() {
            for i in 0..a.nrows() {
                num = num.max((a[(i, j)] - b[(i, j)]).abs());
                den = den.max(b[(i, j)].abs());
            }
        }
        num / den
    }

    #[test]
    fn append_rows_equals_scratch_for_many_sizes() {
        let mut rng = rng(0);
        for trial in 0..30 {
            let n = rng.random_range(1..120);
            let n0 = rng.random_range(0..n);
            let a = spd(n, &mut rng);
            let mut inc =
                IncrementalCholesky::factor(a.as_ref().submatrix(0, 0, n0, n0), JitterPolicy::default()).unwrap();
            for k in n0..n {
                let p: Vec<f64> = (0..k).map(|j| a[(k, j)]).collect();
                inc.append_row(&p, a[(k, k)]).unwrap();
            }
            let full = a.llt(faer::Side::Lower).unwrap();
            let r = rel_diff(inc.L(), full.L());
            assert!(r < 1e-10, "trial {trial} n {n} n0 {n0}: rel diff {r:e}");
            assert!(inc.capacity() >= n);
            let ld: f64 = 2.0 * (0..n).map(|i| full.L()[(i, i)].ln()).sum::<f64>();
            assert!((inc.log_det() - ld).abs() < 1e-9 * ld.abs().max(1.0));
        }
    }

    #[test]
    fn append_blocks_equals_scratch() {
        let mut rng = rng(1);
        for trial in 0..20 {
            let n = rng.random_range(2..150);
            let a = spd(n, &mut rng);
            let mut inc = IncrementalCholesky::with_capacity(4, JitterPolicy::default());
            let mut k = 0;
            while k < n {
                let b = rng.random_range(1..=(n - k).min(17));
                inc.append_block(a.as_ref().submatrix(0, k, k, b), a.as_ref().submatrix(k, k, b, b)).unwrap();
                k += b;
            }
            let full = a.llt(faer::Side::Lower).unwrap();
            let r = rel_diff(inc.L(), full.L());
            assert!(r < 1e-10, "trial {trial} n {n}: rel diff {r:e}");
        }
    }

    #[test]
    fn solves_match_dense() {
        let mut rng = rng(2);
        let n = 40;
        let a = spd(n, &mut rng);
        let c = IncrementalCholesky::factor(a.as_ref(), JitterPolicy::default()).unwrap();
        let b = Mat::from_fn(n, 3, |_, _| rng.random::<f64>());
        let mut x = b.clone();
        c.solve_in_place(x.as_mut(), Par::Seq);
        let back = &a * &x;
        assert!(rel_diff(back.as_ref(), b.as_ref()) < 1e-10);
        let inv = c.inverse_lower(Par::Seq);
        let mut dense = Mat::<f64>::identity(n, n);
        c.solve_in_place(dense.as_mut(), Par::Seq);
        for j in 0..n {
            for i in j..n {
                assert!((inv[(i, j)] - dense[(i, j)]).abs() < 1e-9 * dense[(j, j)].abs());
            }
        }
    }

    #[test]
    fn truncate_then_append_is_exact() {
        let mut rng = rng(3);
        let n = 30;
        let a = spd(n, &mut rng);
        let mut c = IncrementalCholesky::factor(a.as_ref(), JitterPolicy::default()).unwrap();
        let l_before = c.L().to_owned();
        c.truncate(20);
        for k in 20..n {
            let p: Vec<f64> = (0..k).map(|j| a[(k, j)]).collect();
            c.append_row(&p, a[(k, k)]).unwrap();
        }
        assert!(rel_diff(c.L(), l_before.as_ref()) < 1e-13);
    }

    #[test]
    fn singular_matrix_gets_jitter_then_typed_error() {
        // Rank-1 matrix: needs jitter, which the policy supplies.
        let n = 5;
        let a = Mat::from_fn(n, n, |_, _| 1.0);
        let c = IncrementalCholesky::factor(a.as_ref(), JitterPolicy::default()).unwrap();
        assert!(c.jitter() > 0.0);
        // L Lᵀ reproduces A + jitter I.
        let llt = c.L() * c.L().transpose();
        for i in 0..n {
            for j in 0..n {
                let want = a[(i, j)] + if i == j { c.jitter() } else { 0.0 };
                assert!((llt[(i, j)] - want).abs() < 1e-9);
            }
        }
        // An indefinite matrix cannot be fixed by small jitter: typed error, no panic.
        let mut b = Mat::<f64>::identity(n, n);
        b[(2, 2)] = -1.0;
        let e = IncrementalCholesky::factor(b.as_ref(), JitterPolicy::default()).unwrap_err();
        assert!(matches!(e, Error::NotPositiveDefinite { tries: 6, .. }), "{e}");
        // Appending a duplicate row to a noise-free factor needs per-pivot jitter.
        let mut c = IncrementalCholesky::factor(Mat::<f64>::identity(2, 2).as_ref(), JitterPolicy::default()).unwrap();
        let d = c.append_row(&[1.0, 0.0], 1.0).unwrap();
        assert!(d > 0.0 && c.diag_shift()[2] > 0.0);
        // Appending an indefinite row fails and leaves the factor unchanged.
        let e = c.append_row(&[0.0, 0.0, 0.0], -1.0).unwrap_err();
        assert!(matches!(e, Error::NotPositiveDefinite { .. }));
        assert_eq!(c.dim(), 3);
    }
}
