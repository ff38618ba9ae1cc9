//! Fused CPU kernels for the interaction network's message path (issue 14).
//!
//! [`FusedTail`] is one candle custom op computing, for rows `k` of a batch,
//!
//! ```text
//! z1_k = source row k                       (gathered: P_to[to_k] + P_from[from_k] + e_k, or given)
//! a1   = LeakyReLU(BN1(z1))                 (BN over the K rows: batch statistics in train mode)
//! z2   = a1 W2ᵀ + b2
//! a2   = LeakyReLU(BN2(z2))
//! m    = a2 W3ᵀ + b3
//! out  = scatter-max of m by `to` (keeping its argmax), or m itself
//! ```
//!
//! in row tiles parallelised with rayon, with a hand-written backward. It stores `z1` and `z2`
//! (`[K, H]` each) and the argmax; everything else is recomputed per tile. The backward makes
//! three passes over the rows (one sparse pass through the scatter-max and BN2's reductions, one
//! through layer 2 and BN1's reductions, one scattering `dz1`), with one `[K, H]` scratch array.
//!
//! Edge attributes of the line graph are never tabulated per pair: `e_k = enc(u_k)·Wᵀ` is a
//! cubic Hermite interpolation of the grid tables `T_j = enc(u_j)·Wᵀ` and `D_j = h·enc'(u_j)·Wᵀ`
//! on a uniform `u` grid of spacing `h = 0.1/ω_max` ([`EncodingGrid`]). The grid tables are
//! computed by candle from the constant `[2G, d]` grid, so the gradient to `W` is the exact
//! gradient of what the forward computed. The interpolation error per encoding component is at
//! most `(hω)⁴/384 ≤ 2.6·10⁻⁷`.
//!
//! BatchNorm follows `candle_nn::BatchNorm::forward_t`: train mode normalises with the biased
//! batch variance and the caller updates the running statistics with
//! `rm ← (1−m)·rm + m·mean`, `rv ← (1−m)·rv + m·K/(K−1)·var` ([`FusedTail::batch_stats`]);
//! eval mode uses the running statistics.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Rows per tile.
const TILE: usize = 2048;
const NONE: u32 = u32::MAX;

/// Where the first-layer output `z1` of each row comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `z1` is the op's first argument `[K, H]` itself (the third argument is ignored).
    Rows,
    /// `z1_k = P[to_k, :H] + P[from_k, H:] + e_k` with `P` the first argument `[N, 2H]` and `e_k`
    /// from the second argument (see [`Attr`]).
    Gather {
        /// Target node of each row (message).
        to: Arc<Vec<u32>>,
        /// Source node of each row.
        from: Arc<Vec<u32>>,
        /// Attribute product of each row.
        attr: Attr,
    },
}

/// How `e_k` is read from the op's second argument.
#[derive(Debug, Clone)]
pub enum Attr {
    /// `e_k = A[index_k]` with `A` `[R, H]`.
    Rows(Arc<Vec<u32>>),
    /// `e_k` = cubic Hermite interpolation at `u[index_k]` of the tables `[T; D]` `[2G, H]`.
    Hermite {
        /// Pair of each row.
        index: Arc<Vec<u32>>,
        /// The encoded variable per pair.
        u: Arc<Vec<f32>>,
        /// Grid spacing.
        h: f64,
        /// Grid points.
        g: usize,
    },
}

/// Where the output goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Output `[n, H_out]`: row-wise max of `m` over the rows with `to_k = i` (0 where none).
    ScatterMax {
        /// Output row of each row.
        to: Arc<Vec<u32>>,
        /// Output rows.
        n: usize,
    },
    /// Output `m` `[K, H_out]`.
    Rows,
}

/// Hermite weights and grid row of `u`.
#[inline(always)]
fn hermite(u: f32, h: f64, g: usize) -> (usize, [f64; 4]) {
    let s = (u as f64).max(0.0) / h;
    let j = (s.floor() as usize).min(g - 2);
    let t = s - j as f64;
    let (t2, t3) = (t * t, t * t * t);
    (j, [2.0 * t3 - 3.0 * t2 + 1.0, t3 - 2.0 * t2 + t, -2.0 * t3 + 3.0 * t2, t3 - t2])
}

/// The encoding grid of the line graph: `u_j = j·h`, `j < g`, rows `[enc(u_j); h·enc'(u_j)]`.
#[derive(Debug, Clone)]
pub struct EncodingGrid {
    /// Spacing.
    pub h: f64,
    /// Points.
    pub g: usize,
    /// `[2g, d]` row-major (f64).
    pub rows: Vec<f64>,
}

/// The frequencies `ω_i = base^(−2i/d)` of the encoding (f64).
pub fn omegas(d: usize, base: f64) -> Vec<f64> {
    (0..d / 2).map(|i| (-(2.0 * i as f64) * base.ln() / d as f64).exp()).collect()
}

/// `enc(u)` (f64), `enc_{2i} = sin(uω_i)`, `enc_{2i+1} = cos(uω_i)`.
pub fn encode(u: f64, omega: &[f64]) -> Vec<f64> {
    omega.iter().flat_map(|&w| [(u * w).sin(), (u * w).cos()]).collect()
}

impl EncodingGrid {
    /// A grid covering `[0, u_max]` for width `d` and base `base`, spacing `0.1/ω_max`.
    pub fn new(u_max: f64, d: usize, base: f64) -> Self {
        let omega = omegas(d, base);
        let w_max = omega.iter().cloned().fold(0.0, f64::max).max(1e-12);
        let h = 0.1 / w_max;
        let g = (u_max.max(0.0) / h).floor() as usize + 2;
        let mut rows = vec![0.0; 2 * g * d];
        for j in 0..g {
            let u = j as f64 * h;
            for (i, &w) in omega.iter().enumerate() {
                let (s, c) = (u * w).sin_cos();
                rows[j * d + 2 * i] = s;
                rows[j * d + 2 * i + 1] = c;
                rows[(g + j) * d + 2 * i] = h * w * c;
                rows[(g + j) * d + 2 * i + 1] = -h * w * s;
            }
        }
        EncodingGrid { h, g, rows }
    }

    /// The interpolated attribute product of `u` given tables `[T; D]` `[2g, hdim]` (f64),
    /// exactly as the fused op computes it (for tests).
    pub fn interpolate(&self, table: &[f64], hdim: usize, u: f32) -> Vec<f64> {
        let (j, w) = hermite(u, self.h, self.g);
        let g = self.g;
        (0..hdim)
            .map(|c| {
                w[0] * table[j * hdim + c]
                    + w[1] * table[(g + j) * hdim + c]
                    + w[2] * table[(j + 1) * hdim + c]
                    + w[3] * table[(g + j + 1) * hdim + c]
            })
            .collect()
    }
}

/// Batch statistics of one BatchNorm layer in a train-mode forward: per-channel mean and biased
/// variance, and the number of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct BnStats {
    /// Mean.
    pub mean: Vec<f64>,
    /// Biased variance.
    pub var: Vec<f64>,
    /// Rows.
    pub count: usize,
}

/// Packed parameters: `[γ1, β1, W2 (H×H), b2, γ2, β2, W3 (Ho×H), b3]`.
pub fn packed_len(h: usize, ho: usize) -> usize {
    4 * h + h * h + h + ho * h + ho
}

#[derive(Debug, Clone)]
struct Params<T> {
    g1: Vec<T>,
    b1: Vec<T>,
    /// `[in][out]`.
    w2t: Vec<T>,
    b2: Vec<T>,
    g2: Vec<T>,
    bb2: Vec<T>,
    /// `[in][out]`.
    w3t: Vec<T>,
    b3: Vec<T>,
    /// `[out][in]`.
    w2: Vec<T>,
    /// `[out][in]`.
    w3: Vec<T>,
}

fn transpose<T: Copy>(w: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = Vec::with_capacity(w.len());
    for c in 0..cols {
        for r in 0..rows {
            t.push(w[r * cols + c]);
        }
    }
    t
}

impl<T: WithDType> Params<T> {
    fn unpack(p: &[T], h: usize, ho: usize) -> Self {
        let mut o = 0;
        let mut take = |n: usize| {
            let s = p[o..o + n].to_vec();
            o += n;
            s
        };
        let g1 = take(h);
        let b1 = take(h);
        let w2 = take(h * h);
        let b2 = take(h);
        let g2 = take(h);
        let bb2 = take(h);
        let w3 = take(ho * h);
        let b3 = take(ho);
        Params { g1, b1, w2t: transpose(&w2, h, h), b2, g2, bb2, w3t: transpose(&w3, ho, h), b3, w2, w3 }
    }
}

/// Normalisation of one BN layer: `x̂ = (z − μ)·inv`, `y = γx̂ + β = z·s + t`.
#[derive(Debug, Clone)]
struct Norm<T> {
    mu: Vec<T>,
    inv: Vec<T>,
    s: Vec<T>,
    t: Vec<T>,
}

impl<T: WithDType> Norm<T> {
    fn new(mean: &[f64], var: &[f64], eps: f64, gamma: &[T], beta: &[T]) -> Self {
        let mu: Vec<T> = mean.iter().map(|&m| T::from_f64(m)).collect();
        // As candle: (var + eps).sqrt() in the tensor's dtype, then a division.
        let inv: Vec<T> =
            var.iter().map(|&v| T::one() / T::from_f64((T::from_f64(v) + T::from_f64(eps)).to_f64().sqrt())).collect();
        let s: Vec<T> = inv.iter().zip(gamma).map(|(&i, &g)| i * g).collect();
        let t: Vec<T> = (0..mu.len()).map(|c| beta[c] - mu[c] * s[c]).collect();
        Norm { mu, inv, s, t }
    }
}

/// The parts of a [`FusedTail::row_back`] accumulator summed over all rows:
/// `(dWᵀ, db, dγ, dβ, mean dx̂, mean dx̂·x̂)`; the means are over the `k` rows of a train-mode
/// BatchNorm and 0 in eval mode (running statistics do not depend on the batch).
#[allow(clippy::type_complexity)]
fn split_row_back<T: WithDType>(
    acc: &[T],
    h: usize,
    o: usize,
    train: bool,
    k: T,
) -> (&[T], &[T], &[T], &[T], Vec<T>, Vec<T>) {
    let (dw, rest) = acc.split_at(h * o);
    let (db, rest) = rest.split_at(o);
    let (dg, rest) = rest.split_at(h);
    let (dbb, rest) = rest.split_at(h);
    let (s1, s2) = rest.split_at(h);
    let mean = |v: &[T]| v.iter().map(|&x| if train { x / k } else { T::zero() }).collect::<Vec<T>>();
    (dw, db, dg, dbb, mean(s1), mean(s2))
}

/// Per-row work space of [`FusedTail::row_back`].
struct RowScratch<T> {
    da: Vec<T>,
    a: Vec<T>,
    xh: Vec<T>,
    y: Vec<T>,
}

impl<T: WithDType> RowScratch<T> {
    fn new(h: usize) -> Self {
        RowScratch { da: vec![T::zero(); h], a: vec![T::zero(); h], xh: vec![T::zero(); h], y: vec![T::zero(); h] }
    }
}

/// What the forward keeps for the backward.
#[derive(Debug)]
struct Saved<T> {
    p: Params<T>,
    n1: Norm<T>,
    n2: Norm<T>,
    z1: Vec<T>,
    z2: Vec<T>,
    argmax: Vec<u32>,
}

#[derive(Debug)]
enum SavedAny {
    F32(Saved<f32>),
    F64(Saved<f64>),
}

trait Pick: WithDType {
    fn wrap(s: Saved<Self>) -> SavedAny;
    fn get(s: &SavedAny) -> Option<&Saved<Self>>;
}
impl Pick for f32 {
    fn wrap(s: Saved<Self>) -> SavedAny {
        SavedAny::F32(s)
    }
    fn get(s: &SavedAny) -> Option<&Saved<Self>> {
        match s {
            SavedAny::F32(s) => Some(s),
            SavedAny::F64(_) => None,
        }
    }
}
impl Pick for f64 {
    fn wrap(s: Saved<Self>) -> SavedAny {
        SavedAny::F64(s)
    }
    fn get(s: &SavedAny) -> Option<&Saved<Self>> {
        match s {
            SavedAny::F64(s) => Some(s),
            SavedAny::F32(_) => None,
        }
    }
}

/// The fused op (see the module docs). Arguments: `(first, attr, params)` with `first` the
/// node table `[N, 2H]` ([`Source::Gather`]) or `z1` `[K, H]` ([`Source::Rows`]), `attr` the
/// attribute table (ignored for [`Source::Rows`]; pass any small tensor), `params` the packed
/// parameters ([`packed_len`]).
#[derive(Debug)]
pub struct FusedTail {
    source: Source,
    sink: Sink,
    k: usize,
    h: usize,
    ho: usize,
    slope: f64,
    eps: f64,
    /// Running statistics `(mean, var)` of BN1 and BN2 in eval mode; `None` in train mode.
    running: Option<[(Vec<f64>, Vec<f64>); 2]>,
    saved: Mutex<Option<SavedAny>>,
    stats: Arc<Mutex<Option<[BnStats; 2]>>>,
}

impl FusedTail {
    /// A fused op over `k` rows, hidden width `h`, output width `ho`. `running`: the BN running
    /// statistics `[(mean, var) of BN1, of BN2]` for eval mode, `None` for train mode.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: Source,
        sink: Sink,
        k: usize,
        h: usize,
        ho: usize,
        slope: f64,
        eps: f64,
        running: Option<[(Vec<f64>, Vec<f64>); 2]>,
    ) -> candle_core::Result<Self> {
        if let Source::Gather { to, from, attr } = &source {
            let idx_len = match attr {
                Attr::Rows(i) => i.len(),
                Attr::Hermite { index, u, g, .. } => {
                    if *g < 2 || index.iter().any(|&p| p as usize >= u.len()) {
                        candle_core::bail!("fused: bad Hermite grid or pair index");
                    }
                    index.len()
                }
            };
            if to.len() != k || from.len() != k || idx_len != k {
                candle_core::bail!("fused: index lengths differ from {k} rows");
            }
        }
        if let Sink::ScatterMax { to, n } = &sink {
            if to.len() != k || to.iter().any(|&i| i as usize >= *n) {
                candle_core::bail!("fused: scatter index length or range");
            }
        }
        if running.is_none() && k < 2 {
            candle_core::bail!("fused: train-mode batch statistics need at least 2 rows");
        }
        Ok(FusedTail {
            source,
            sink,
            k,
            h,
            ho,
            slope,
            eps,
            running,
            saved: Mutex::new(None),
            stats: Arc::new(Mutex::new(None)),
        })
    }

    /// The batch statistics of BN1 and BN2 of the last train-mode forward.
    pub fn batch_stats(&self) -> Option<[BnStats; 2]> {
        self.stats.lock().unwrap().clone()
    }

    /// A handle to the batch statistics that stays valid after the op is moved into a tensor.
    #[allow(clippy::type_complexity)]
    pub fn stats_handle(&self) -> Arc<Mutex<Option<[BnStats; 2]>>> {
        self.stats.clone()
    }

    fn out_rows(&self) -> usize {
        match &self.sink {
            Sink::ScatterMax { n, .. } => *n,
            Sink::Rows => self.k,
        }
    }

    fn check_nodes(&self, first: usize, cols: usize, attr_rows: usize, attr_cols: usize) -> candle_core::Result<()> {
        match &self.source {
            Source::Rows => {
                if first != self.k || cols != self.h {
                    candle_core::bail!("fused: z1 must be [{}, {}]", self.k, self.h);
                }
            }
            Source::Gather { to, from, attr } => {
                if cols != 2 * self.h || to.iter().chain(from.iter()).any(|&i| i as usize >= first) {
                    candle_core::bail!("fused: node table must be [N, {}] covering every index", 2 * self.h);
                }
                let ok = match attr {
                    Attr::Rows(i) => i.iter().all(|&r| (r as usize) < attr_rows),
                    Attr::Hermite { g, .. } => attr_rows == 2 * g,
                };
                if !ok || attr_cols != self.h {
                    candle_core::bail!("fused: attribute table shape");
                }
            }
        }
        Ok(())
    }

    /// `z1` of rows `r0..r0+out.len()/h` into `out`.
    #[inline(always)]
    fn gather<T: WithDType>(&self, first: &[T], attr: &[T], r0: usize, out: &mut [T]) {
        let h = self.h;
        match &self.source {
            Source::Rows => out.copy_from_slice(&first[r0 * h..r0 * h + out.len()]),
            Source::Gather { to, from, attr: a } => {
                for (i, row) in out.chunks_exact_mut(h).enumerate() {
                    let k = r0 + i;
                    let pt = &first[to[k] as usize * 2 * h..][..h];
                    let pf = &first[from[k] as usize * 2 * h + h..][..h];
                    match a {
                        Attr::Rows(idx) => {
                            let e = &attr[idx[k] as usize * h..][..h];
                            for c in 0..h {
                                row[c] = pt[c] + pf[c] + e[c];
                            }
                        }
                        Attr::Hermite { index, u, h: step, g } => {
                            let (j, w) = hermite(u[index[k] as usize], *step, *g);
                            let w = w.map(T::from_f64);
                            let t0 = &attr[j * h..][..h];
                            let t1 = &attr[(j + 1) * h..][..h];
                            let d0 = &attr[(g + j) * h..][..h];
                            let d1 = &attr[(g + j + 1) * h..][..h];
                            for c in 0..h {
                                row[c] = pt[c] + pf[c] + (w[0] * t0[c] + w[1] * d0[c] + w[2] * t1[c] + w[3] * d1[c]);
                            }
                        }
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn leaky<T: WithDType>(&self, y: T) -> T {
        if y > T::zero() { y } else { y * T::from_f64(self.slope) }
    }

    #[inline(always)]
    fn dleaky<T: WithDType>(&self, y: T) -> T {
        if y > T::zero() { T::one() } else { T::from_f64(self.slope) }
    }

    /// One row's backward through `BN-affine → LeakyReLU → Linear(w: [o, h])` given the
    /// gradient `dout` (`[o]`) at the linear layer's output and its input `z` (`[h]`, before the
    /// BN): accumulates into `acc` = `[dWᵀ (h·o), db (o), dγ (h), dβ (h), Σ dx̂ (h), Σ dx̂·x̂ (h)]`
    /// and writes the gradient at the BN's output into `drow`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn row_back<T: WithDType>(
        &self,
        dout: &[T],
        w: &[T],
        z: &[T],
        n: &Norm<T>,
        gamma: &[T],
        acc: &mut [T],
        sc: &mut RowScratch<T>,
        drow: &mut [T],
    ) {
        let (h, o) = (z.len(), dout.len());
        let RowScratch { da, a, xh, y } = sc;
        for j in 0..h {
            xh[j] = (z[j] - n.mu[j]) * n.inv[j];
            y[j] = z[j] * n.s[j] + n.t[j];
            a[j] = self.leaky(y[j]);
        }
        let (dw, rest) = acc.split_at_mut(h * o);
        let (db, rest) = rest.split_at_mut(o);
        let (dg, rest) = rest.split_at_mut(h);
        let (dbb, rest) = rest.split_at_mut(h);
        let (s1, s2) = rest.split_at_mut(h);
        da.fill(T::zero());
        for c in 0..o {
            db[c] += dout[c];
            let wr = &w[c * h..(c + 1) * h];
            for j in 0..h {
                da[j] += wr[j] * dout[c];
            }
        }
        for j in 0..h {
            let dwr = &mut dw[j * o..(j + 1) * o];
            for c in 0..o {
                dwr[c] += a[j] * dout[c];
            }
        }
        for j in 0..h {
            let dy = da[j] * self.dleaky(y[j]);
            drow[j] = dy;
            dg[j] += dy * xh[j];
            dbb[j] += dy;
            let dx = dy * gamma[j];
            s1[j] += dx;
            s2[j] += dx * xh[j];
        }
    }

    /// `z_out = b + Σ_j leaky(z_in[j]·s[j] + t[j]) · wt[j, :]` for one row.
    #[inline(always)]
    fn layer<T: WithDType>(&self, zin: &[T], n: &Norm<T>, wt: &[T], b: &[T], zout: &mut [T]) {
        let o = zout.len();
        zout.copy_from_slice(b);
        for (j, &z) in zin.iter().enumerate() {
            let a = self.leaky(z * n.s[j] + n.t[j]);
            let w = &wt[j * o..(j + 1) * o];
            for c in 0..o {
                zout[c] += a * w[c];
            }
        }
    }

    #[inline(always)]
    fn stats_of<T: WithDType>(z: &[T], h: usize) -> (Vec<f64>, Vec<f64>) {
        let mut s = vec![0.0; 2 * h];
        for row in z.chunks_exact(h) {
            for c in 0..h {
                let v = row[c].to_f64();
                s[c] += v;
                s[h + c] += v * v;
            }
        }
        let sq = s.split_off(h);
        (s, sq)
    }

    fn moments(&self, parts: (Vec<f64>, Vec<f64>)) -> (Vec<f64>, Vec<f64>) {
        let kf = self.k as f64;
        let mean: Vec<f64> = parts.0.iter().map(|s| s / kf).collect();
        let var: Vec<f64> = parts.1.iter().zip(&mean).map(|(q, m)| (q / kf - m * m).max(0.0)).collect();
        (mean, var)
    }

    fn add_parts(a: (Vec<f64>, Vec<f64>), b: (Vec<f64>, Vec<f64>)) -> (Vec<f64>, Vec<f64>) {
        let add = |x: Vec<f64>, y: Vec<f64>| x.iter().zip(&y).map(|(p, q)| p + q).collect();
        (add(a.0, b.0), add(a.1, b.1))
    }

    fn forward<T: WithDType + Pick>(&self, first: &[T], attr: &[T], params: &[T]) -> Vec<T> {
        let (h, ho, k) = (self.h, self.ho, self.k);
        let p = Params::unpack(params, h, ho);
        let mut z1 = vec![T::zero(); k * h];
        let parts = z1
            .par_chunks_mut(TILE * h)
            .enumerate()
            .map(|(t, chunk)| {
                self.gather(first, attr, t * TILE, chunk);
                if self.running.is_none() { Self::stats_of(chunk, h) } else { (vec![0.0; h], vec![0.0; h]) }
            })
            .reduce(|| (vec![0.0; h], vec![0.0; h]), Self::add_parts);
        let (st1, n1) = match &self.running {
            None => {
                let (m, v) = self.moments(parts);
                (Some(BnStats { mean: m.clone(), var: v.clone(), count: k }), Norm::new(&m, &v, self.eps, &p.g1, &p.b1))
            }
            Some(r) => (None, Norm::new(&r[0].0, &r[0].1, self.eps, &p.g1, &p.b1)),
        };
        let mut z2 = vec![T::zero(); k * h];
        let parts = z2
            .par_chunks_mut(TILE * h)
            .zip(z1.par_chunks(TILE * h))
            .map(|(o, i)| {
                for (zo, zi) in o.chunks_exact_mut(h).zip(i.chunks_exact(h)) {
                    self.layer(zi, &n1, &p.w2t, &p.b2, zo);
                }
                if self.running.is_none() { Self::stats_of(o, h) } else { (vec![0.0; h], vec![0.0; h]) }
            })
            .reduce(|| (vec![0.0; h], vec![0.0; h]), Self::add_parts);
        let (st2, n2) = match &self.running {
            None => {
                let (m, v) = self.moments(parts);
                (
                    Some(BnStats { mean: m.clone(), var: v.clone(), count: k }),
                    Norm::new(&m, &v, self.eps, &p.g2, &p.bb2),
                )
            }
            Some(r) => (None, Norm::new(&r[1].0, &r[1].1, self.eps, &p.g2, &p.bb2)),
        };
        let (out, argmax) = match &self.sink {
            Sink::Rows => {
                let mut out = vec![T::zero(); k * ho];
                out.par_chunks_mut(TILE * ho).zip(z2.par_chunks(TILE * h)).for_each(|(o, i)| {
                    for (zo, zi) in o.chunks_exact_mut(ho).zip(i.chunks_exact(h)) {
                        self.layer(zi, &n2, &p.w3t, &p.b3, zo);
                    }
                });
                (out, Vec::new())
            }
            Sink::ScatterMax { to, n } => {
                let n = *n;
                let tiles = k.div_ceil(TILE);
                let per = tiles.div_ceil(rayon::current_num_threads()).max(1);
                let (mut val, arg) = (0..tiles)
                    .into_par_iter()
                    .with_min_len(per)
                    .fold(
                        || (vec![T::zero(); n * ho], vec![NONE; n * ho]),
                        |(mut val, mut arg), t| {
                            let mut m = vec![T::zero(); ho];
                            let r1 = ((t + 1) * TILE).min(k);
                            for r in t * TILE..r1 {
                                self.layer(&z2[r * h..(r + 1) * h], &n2, &p.w3t, &p.b3, &mut m);
                                let i = to[r] as usize * ho;
                                for c in 0..ho {
                                    if arg[i + c] == NONE || m[c] > val[i + c] {
                                        val[i + c] = m[c];
                                        arg[i + c] = r as u32;
                                    }
                                }
                            }
                            (val, arg)
                        },
                    )
                    .reduce(
                        || (vec![T::zero(); n * ho], vec![NONE; n * ho]),
                        |(mut va, mut aa), (vb, ab)| {
                            for i in 0..va.len() {
                                let take = ab[i] != NONE
                                    && (aa[i] == NONE || vb[i] > va[i] || (vb[i] == va[i] && ab[i] < aa[i]));
                                if take {
                                    va[i] = vb[i];
                                    aa[i] = ab[i];
                                }
                            }
                            (va, aa)
                        },
                    );
                for (v, &a) in val.iter_mut().zip(&arg) {
                    if a == NONE {
                        *v = T::zero();
                    }
                }
                (val, arg)
            }
        };
        if let (Some(a), Some(b)) = (st1, st2) {
            *self.stats.lock().unwrap() = Some([a, b]);
        }
        *self.saved.lock().unwrap() = Some(T::wrap(Saved { p, n1, n2, z1, z2, argmax }));
        out
    }

    /// Gradients `(first, attr, params)` given the output gradient `gout`.
    #[allow(clippy::type_complexity)]
    fn backward<T: WithDType + Pick>(
        &self,
        gout: &[T],
        first_len: usize,
        attr_len: usize,
    ) -> candle_core::Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let guard = self.saved.lock().unwrap();
        let Some(sv) = guard.as_ref().and_then(T::get) else {
            candle_core::bail!("fused: backward without a forward of the same dtype");
        };
        let (h, ho, k) = (self.h, self.ho, self.k);
        let train = self.running.is_none();
        let kf = T::from_f64(k as f64);
        let (p, n1, n2) = (&sv.p, &sv.n1, &sv.n2);
        let zero = T::zero();
        // Pass A: through the scatter-max, layer 3 and BN2's affine part; d ← dy2.
        let mut d = vec![zero; k * h];
        let acc_a = |len: usize| vec![zero; len];
        let a_len = h * ho + ho + 4 * h;
        let acc = d
            .par_chunks_mut(TILE * h)
            .enumerate()
            .map(|(t, dchunk)| {
                let mut acc = acc_a(a_len);
                let mut dm = vec![zero; ho];
                let mut sc = RowScratch::new(h);
                for (i, drow) in dchunk.chunks_exact_mut(h).enumerate() {
                    let r = t * TILE + i;
                    let any = match &self.sink {
                        Sink::Rows => {
                            dm.copy_from_slice(&gout[r * ho..(r + 1) * ho]);
                            true
                        }
                        Sink::ScatterMax { to, .. } => {
                            let o = to[r] as usize * ho;
                            let mut any = false;
                            for c in 0..ho {
                                dm[c] = if sv.argmax[o + c] == r as u32 {
                                    any = true;
                                    gout[o + c]
                                } else {
                                    zero
                                };
                            }
                            any
                        }
                    };
                    if !any {
                        drow.fill(zero);
                        continue;
                    }
                    self.row_back(&dm, &p.w3, &sv.z2[r * h..(r + 1) * h], n2, &p.g2, &mut acc, &mut sc, drow);
                }
                acc
            })
            .reduce(|| acc_a(a_len), |a, b| a.iter().zip(&b).map(|(&x, &y)| x + y).collect());
        let (dw3t, db3, dg2, dbb2, m1_2, m2_2) = split_row_back(&acc, h, ho, train, kf);
        // Pass B: dz2, layer 2, BN1's affine part; d ← dy1.
        let b_len = h * h + h + 4 * h;
        let acc = d
            .par_chunks_mut(TILE * h)
            .enumerate()
            .map(|(t, dchunk)| {
                let mut acc = acc_a(b_len);
                let mut dz2 = vec![zero; h];
                let mut sc = RowScratch::new(h);
                for (i, drow) in dchunk.chunks_exact_mut(h).enumerate() {
                    let r = t * TILE + i;
                    let z2 = &sv.z2[r * h..(r + 1) * h];
                    for c in 0..h {
                        let x2 = (z2[c] - n2.mu[c]) * n2.inv[c];
                        dz2[c] = n2.inv[c] * (drow[c] * p.g2[c] - m1_2[c] - x2 * m2_2[c]);
                    }
                    self.row_back(&dz2, &p.w2, &sv.z1[r * h..(r + 1) * h], n1, &p.g1, &mut acc, &mut sc, drow);
                }
                acc
            })
            .reduce(|| acc_a(b_len), |a, b| a.iter().zip(&b).map(|(&x, &y)| x + y).collect());
        let (dw2t, db2, dg1, dbb1, m1_1, m2_1) = split_row_back(&acc, h, h, train, kf);
        // Pass C: dz1 and its scatter to the source tables.
        let dz1_row = |r: usize, drow: &[T], out: &mut [T]| {
            let z1 = &sv.z1[r * h..(r + 1) * h];
            for c in 0..h {
                let x1 = (z1[c] - n1.mu[c]) * n1.inv[c];
                out[c] = n1.inv[c] * (drow[c] * p.g1[c] - m1_1[c] - x1 * m2_1[c]);
            }
        };
        let (dfirst, dattr) = match &self.source {
            Source::Rows => {
                let mut dfirst = vec![zero; k * h];
                dfirst.par_chunks_mut(TILE * h).zip(d.par_chunks(TILE * h)).enumerate().for_each(|(t, (o, dc))| {
                    for (i, (orow, drow)) in o.chunks_exact_mut(h).zip(dc.chunks_exact(h)).enumerate() {
                        dz1_row(t * TILE + i, drow, orow);
                    }
                });
                (dfirst, vec![zero; attr_len])
            }
            Source::Gather { to, from, attr } => {
                let tiles = k.div_ceil(TILE);
                let per = tiles.div_ceil(rayon::current_num_threads()).max(1);
                (0..tiles)
                    .into_par_iter()
                    .with_min_len(per)
                    .fold(
                        || (vec![zero; first_len], vec![zero; attr_len]),
                        |(mut df, mut da), t| {
                            let mut dz = vec![zero; h];
                            let r1 = ((t + 1) * TILE).min(k);
                            for r in t * TILE..r1 {
                                dz1_row(r, &d[r * h..(r + 1) * h], &mut dz);
                                let (ot, of) = (to[r] as usize * 2 * h, from[r] as usize * 2 * h + h);
                                for c in 0..h {
                                    df[ot + c] += dz[c];
                                    df[of + c] += dz[c];
                                }
                                match attr {
                                    Attr::Rows(idx) => {
                                        let o = idx[r] as usize * h;
                                        for c in 0..h {
                                            da[o + c] += dz[c];
                                        }
                                    }
                                    Attr::Hermite { index, u, h: step, g } => {
                                        let (j, w) = hermite(u[index[r] as usize], *step, *g);
                                        let w = w.map(T::from_f64);
                                        for (row, wt) in [(j, w[0]), (g + j, w[1]), (j + 1, w[2]), (g + j + 1, w[3])] {
                                            let o = row * h;
                                            for c in 0..h {
                                                da[o + c] += wt * dz[c];
                                            }
                                        }
                                    }
                                }
                            }
                            (df, da)
                        },
                    )
                    .reduce(
                        || (vec![zero; first_len], vec![zero; attr_len]),
                        |(mut fa, mut aa), (fb, ab)| {
                            fa.iter_mut().zip(&fb).for_each(|(x, &y)| *x += y);
                            aa.iter_mut().zip(&ab).for_each(|(x, &y)| *x += y);
                            (fa, aa)
                        },
                    )
            }
        };
        let mut dp = Vec::with_capacity(packed_len(h, ho));
        dp.extend_from_slice(dg1);
        dp.extend_from_slice(dbb1);
        dp.extend(transpose(dw2t, h, h));
        dp.extend_from_slice(db2);
        dp.extend_from_slice(dg2);
        dp.extend_from_slice(dbb2);
        dp.extend(transpose(dw3t, h, ho));
        dp.extend_from_slice(db3);
        Ok((dfirst, dattr, dp))
    }
}

fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    crate::gnn::contiguous(T::cpu_storage_as_slice(s)?, l)
}

impl CustomOp3 for FusedTail {
    fn name(&self) -> &'static str {
        "fused-mlp-tail"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (r1, c1) = l1.shape().dims2()?;
        let (r2, c2) = match self.source {
            Source::Rows => (0, self.h),
            Source::Gather { .. } => l2.shape().dims2()?,
        };
        self.check_nodes(r1, c1, r2, c2)?;
        if l3.shape().elem_count() != packed_len(self.h, self.ho) {
            candle_core::bail!("fused: {} packed parameters expected", packed_len(self.h, self.ho));
        }
        let shape = Shape::from((self.out_rows(), self.ho));
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(self.forward::<f32>(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(self.forward::<f64>(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?))
            }
            _ => candle_core::bail!("fused: all inputs f32 or all f64"),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        a1: &Tensor,
        a2: &Tensor,
        a3: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dev = a1.device();
        let (fl, al) = (a1.elem_count(), a2.elem_count());
        macro_rules! go {
            ($t:ty) => {{
                let g = grad.flatten_all()?.to_vec1::<$t>()?;
                let (df, da, dp) = self.backward::<$t>(&g, fl, al)?;
                (
                    Tensor::from_vec(df, a1.shape(), dev)?,
                    Tensor::from_vec(da, a2.shape(), dev)?,
                    Tensor::from_vec(dp, a3.shape(), dev)?,
                )
            }};
        }
        let (df, da, dp) = match grad.dtype() {
            DType::F32 => go!(f32),
            DType::F64 => go!(f64),
            d => candle_core::bail!("fused: unsupported dtype {d:?}"),
        };
        let da = match self.source {
            Source::Rows => None,
            Source::Gather { .. } => Some(da),
        };
        Ok((Some(df), da, Some(dp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gnn::{GnnConfig, GraphInput, InteractionNetwork};
    use candle_core::{Device, Var};
    use candle_nn::{VarBuilder, VarMap};
    use rand::Rng;

    type R = gradlab_core::rng::SeededRng;

    fn uniform(r: &mut R, n: usize, a: f64) -> Vec<f64> {
        (0..n).map(|_| r.random_range(-a..a)).collect()
    }

    /// A random message graph on `n` nodes: node `n − 1` receives nothing, messages 0 and 1 are
    /// identical (a tie in the max), every other node receives at least one message.
    fn graph(r: &mut R, n: usize, k: usize) -> (Vec<u32>, Vec<u32>) {
        let mut to: Vec<u32> = (0..k).map(|i| (i % (n - 1)) as u32).collect();
        let mut from: Vec<u32> = (0..k).map(|_| r.random_range(0..n as u32)).collect();
        to[1] = to[0];
        from[1] = from[0];
        (to, from)
    }

    /// `Σ out ⊙ w` and its gradients via the op's backward, checked against central differences
    /// in every input.
    fn check_fd(source: Source, sink: Sink, k: usize, first: (usize, usize), attr: (usize, usize), train: bool) {
        let dev = Device::Cpu;
        let mut r = gradlab_core::rng::rng(11);
        let (h, ho) = (4, 3);
        let running = (!train).then(|| {
            let mut r = gradlab_core::rng::rng(5);
            [0, 1].map(|_| (uniform(&mut r, h, 0.3), (0..h).map(|_| r.random_range(0.5..1.5)).collect()))
        });
        let make = || FusedTail::new(source.clone(), sink.clone(), k, h, ho, 0.1, 1e-5, running.clone()).unwrap();
        let n_out = make().out_rows();
        let mut p = uniform(&mut r, packed_len(h, ho), 0.8);
        for c in 0..h {
            p[c] += 1.0; // γ1 around 1
            p[4 * h + h * h + c] += 1.0; // γ2
        }
        let inputs = [uniform(&mut r, first.0 * first.1, 1.0), uniform(&mut r, attr.0 * attr.1, 1.0), p];
        let shapes = [vec![first.0, first.1], vec![attr.0, attr.1], vec![packed_len(h, ho)]];
        let w = Tensor::from_vec(uniform(&mut r, n_out * ho, 1.0), (n_out, ho), &dev).unwrap();
        let loss = |vals: &[Vec<f64>]| -> f64 {
            let t: Vec<Tensor> = vals
                .iter()
                .zip(&shapes)
                .map(|(v, s)| Tensor::from_vec(v.clone(), s.as_slice(), &dev).unwrap())
                .collect();
            t[0].apply_op3(&t[1], &t[2], make())
                .unwrap()
                .mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let vars: Vec<Var> = inputs
            .iter()
            .zip(&shapes)
            .map(|(v, s)| Var::from_tensor(&Tensor::from_vec(v.clone(), s.as_slice(), &dev).unwrap()).unwrap())
            .collect();
        let out = vars[0].as_tensor().apply_op3(vars[1].as_tensor(), vars[2].as_tensor(), make()).unwrap();
        if let Sink::ScatterMax { .. } = sink {
            // The node that receives nothing is 0.
            let o = out.to_vec2::<f64>().unwrap();
            assert!(o[n_out - 1].iter().all(|&v| v == 0.0));
        }
        let grads = out.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let eps = 1e-6;
        for (a, var) in vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                assert!(matches!(source, Source::Rows) && a == 1, "no gradient for input {a}");
                continue;
            };
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for i in 0..g.len() {
                let mut vp = inputs.to_vec();
                vp[a][i] += eps;
                let mut vm = inputs.to_vec();
                vm[a][i] -= eps;
                let fd = (loss(&vp) - loss(&vm)) / (2.0 * eps);
                assert!(
                    (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "input {a} entry {i}: fd {fd} vs {} (train {train})",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn gather_scatter_max_gradients_match_finite_differences() {
        let mut r = gradlab_core::rng::rng(1);
        let (n, k, rows) = (6, 30, 5);
        for train in [true, false] {
            let (to, from) = graph(&mut r, n, k);
            let (to, from) = (Arc::new(to), Arc::new(from));
            let idx: Vec<u32> = (0..k).map(|i| if i == 1 { 0 } else { r.random_range(0..rows as u32) }).collect();
            let src = Source::Gather { to: to.clone(), from: from.clone(), attr: Attr::Rows(Arc::new(idx)) };
            check_fd(src, Sink::ScatterMax { to: to.clone(), n }, k, (n, 8), (rows, 4), train);
            // Hermite attributes: 3 pairs, both directions; u within a 4-point grid.
            let g = 4;
            let u: Vec<f32> = (0..rows).map(|_| r.random_range(0.0..0.29)).collect();
            let idx: Vec<u32> = (0..k).map(|i| if i == 1 { 0 } else { r.random_range(0..rows as u32) }).collect();
            let attr = Attr::Hermite { index: Arc::new(idx), u: Arc::new(u), h: 0.1, g };
            let src = Source::Gather { to: to.clone(), from, attr };
            check_fd(src, Sink::ScatterMax { to, n }, k, (n, 8), (2 * g, 4), train);
        }
    }

    #[test]
    fn row_tail_gradients_match_finite_differences() {
        for train in [true, false] {
            check_fd(Source::Rows, Sink::Rows, 9, (9, 4), (1, 1), train);
        }
    }

    #[test]
    fn encoding_interpolation_is_accurate() {
        let mut r = gradlab_core::rng::rng(2);
        let (d, hdim) = (128, 16);
        // (base, angle scale): the reference implementation's ω up to ≈900, and this crate's default.
        for (base, scale) in [(0.001f64, 1.0f64), (100.0, 100.0)] {
            let u: Vec<f32> = (0..4000).map(|_| ((r.random_range(0.0..0.4) * scale) as f32).sqrt()).collect();
            let u_max = u.iter().cloned().fold(0.0f32, f32::max) as f64;
            let grid = EncodingGrid::new(u_max, d, base);
            let omega = omegas(d, base);
            assert!(omega.iter().cloned().fold(0.0, f64::max) > if base < 1.0 { 800.0 } else { 0.99 });
            let w = uniform(&mut r, hdim * d, 1.0 / (d as f64).sqrt());
            // Tables [T; D] = grid rows · Wᵀ, in f64 and rounded to f32.
            let table: Vec<f64> = (0..2 * grid.g)
                .flat_map(|j| {
                    let row = &grid.rows[j * d..(j + 1) * d];
                    (0..hdim).map(|c| (0..d).map(|i| row[i] * w[c * d + i]).sum::<f64>()).collect::<Vec<_>>()
                })
                .collect();
            let table32: Vec<f64> = table.iter().map(|&v| v as f32 as f64).collect();
            let (mut dev, mut dev32, mut scale_e) = (0.0f64, 0.0f64, 0.0f64);
            for &ui in &u {
                let enc = encode(ui as f64, &omega);
                let exact: Vec<f64> = (0..hdim).map(|c| (0..d).map(|i| enc[i] * w[c * d + i]).sum()).collect();
                for (t, dv) in [(&table, &mut dev), (&table32, &mut dev32)] {
                    let e = grid.interpolate(t, hdim, ui);
                    for c in 0..hdim {
                        *dv = dv.max((e[c] - exact[c]).abs());
                    }
                }
                scale_e = exact.iter().fold(scale_e, |m, v| m.max(v.abs()));
            }
            assert!(dev <= 1e-5 * scale_e, "base {base}: {dev} vs scale {scale_e}");
            assert!(dev32 <= 1e-5 * scale_e, "base {base} (f32 tables): {dev32} vs scale {scale_e}");
        }
    }

    /// A random line graph: `n` nodes, `p` pairs, node `n − 1` in no pair.
    fn random_input(r: &mut R, n: usize, p: usize, cfg: &GnnConfig) -> GraphInput {
        let x: Vec<f32> = (0..n * 8).map(|_| r.random_range(-1.0..1.0)).collect();
        let pred: Vec<u32> = (0..p).map(|_| r.random_range(0..n as u32 - 1)).collect();
        let succ: Vec<u32> = (0..p).map(|_| r.random_range(0..n as u32 - 1)).collect();
        let angle: Vec<f32> = (0..p).map(|_| r.random_range(0.0..0.4)).collect();
        let from = [pred.clone(), succ.clone()].concat();
        let to = [succ, pred].concat();
        GraphInput::line_from_parts(x, n, from, to, &angle, cfg, &Device::Cpu).unwrap()
    }

    fn snapshot(vm: &VarMap) -> Vec<(String, Tensor)> {
        gradlab_core::params::sorted_vars(vm).into_iter().map(|(n, v)| (n, v.as_tensor().copy().unwrap())).collect()
    }

    /// Max abs difference over the max magnitude of `b` (at least `floor`: gradients that vanish in
    /// exact arithmetic, e.g. of biases before a train-mode BatchNorm, are rounding noise).
    fn max_rel(a: &Tensor, b: &Tensor, floor: f64) -> f64 {
        let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(floor);
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
    }

    #[test]
    fn fused_forward_matches_reference() {
        let dev = Device::Cpu;
        let mut r = gradlab_core::rng::rng(4);
        for (dtype, tol, floor) in [(DType::F64, 1e-5, 1e-9), (DType::F32, 2e-3, 1e-2)] {
            for train in [true, false] {
                // A low-frequency encoding, where the interpolated encoding product is exact to
                // rounding, so the comparison isolates the fused arithmetic; the interpolation's
                // own accuracy at the default's frequencies (up to ≈ 900) has its own test.
                let cfg = GnnConfig { angle_scale: 100.0, encoding_base: 100.0, ..Default::default() };
                let vm = VarMap::new();
                let net = InteractionNetwork::new(&cfg, VarBuilder::from_varmap(&vm, dtype, &dev)).unwrap();
                for (name, v) in gradlab_core::params::sorted_vars(&vm) {
                    let n = v.elem_count();
                    let vals: Vec<f64> =
                        if name.contains("running_var") || name.contains("bn") && name.ends_with("weight") {
                            (0..n).map(|_| r.random_range(0.5..1.5)).collect()
                        } else {
                            uniform(&mut r, n, 0.5)
                        };
                    v.set(&Tensor::from_vec(vals, v.shape(), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
                }
                let inp = random_input(&mut r, 40, 150, &cfg).to_dtype(dtype).unwrap();
                let w = Tensor::from_vec(uniform(&mut r, 40, 1.0), 40, &dev).unwrap().to_dtype(dtype).unwrap();
                let before = snapshot(&vm);
                let run = |f: &dyn Fn() -> Tensor| {
                    for ((_, v), (_, t)) in gradlab_core::params::sorted_vars(&vm).iter().zip(&before) {
                        v.set(t).unwrap();
                    }
                    let z = f();
                    let grads = z.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
                    let g: Vec<Option<Tensor>> = gradlab_core::params::sorted_vars(&vm)
                        .iter()
                        .map(|(_, v)| grads.get(v.as_tensor()).cloned())
                        .collect();
                    (z, g, snapshot(&vm))
                };
                let (zf, gf, sf) = run(&|| net.forward_t(&inp, train).unwrap());
                let (zr, gr, sr) = run(&|| net.forward_reference(&inp, train).unwrap());
                assert!(max_rel(&zf, &zr, floor) < tol, "logits {dtype:?} train {train}: {}", max_rel(&zf, &zr, floor));
                for (((name, _), a), b) in before.iter().zip(&gf).zip(&gr) {
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            assert!(
                                max_rel(a, b, floor) < tol,
                                "grad {name} {dtype:?} train {train}: {}",
                                max_rel(a, b, floor)
                            )
                        }
                        (None, None) => assert!(name.contains("running"), "{name}"),
                        _ => panic!("gradient of {name} present on one path only"),
                    }
                }
                for ((name, a), (_, b)) in sf.iter().zip(&sr) {
                    assert!(
                        max_rel(a, b, floor) < tol,
                        "{name} after forward {dtype:?} train {train}: {}",
                        max_rel(a, b, floor)
                    );
                }
                if train {
                    // The running statistics did move.
                    let moved = sf
                        .iter()
                        .zip(&before)
                        .any(|((n, a), (_, b))| n.contains("running") && max_rel(a, b, floor) > 1e-2);
                    assert!(moved);
                }
            }
        }
    }
}
