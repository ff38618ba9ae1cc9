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

    /// The grid's spacing, its number of points for `[0, u_max]`, and its rows `[2g, d]` as f32
    /// (each value the f32 rounding of [`EncodingGrid::new`]'s), from a process-wide cache per
    /// `(d, base)` that grows to the largest `u_max` asked for: building the rows costs `g·d`
    /// `sin_cos` (≈ 0.5 M per 100-primary frame at the reference's encoding), every frame.
    pub fn rows_f32(u_max: f64, d: usize, base: f64) -> (f64, usize, Vec<f32>) {
        use std::collections::HashMap;
        use std::sync::OnceLock;
        /// Value rows `T` and derivative rows `D` (f32) for `g` points.
        struct Cached {
            g: usize,
            t: Vec<f32>,
            dv: Vec<f32>,
        }
        /// Per `(d, base bits)`.
        type Grids = HashMap<(usize, u64), Arc<Cached>>;
        static CACHE: OnceLock<Mutex<Grids>> = OnceLock::new();
        let probe = EncodingGrid::new(0.0, d, base);
        let h = probe.h;
        let g = (u_max.max(0.0) / h).floor() as usize + 2;
        let key = (d, base.to_bits());
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let hit = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key).filter(|c| c.g >= g).cloned();
        let c = match hit {
            Some(c) => c,
            None => {
                let full = EncodingGrid::new((g - 2) as f64 * h + 0.5 * h, d, base);
                debug_assert_eq!(full.g, g);
                let (t, dv) = full.rows.split_at(g * d);
                let c = Arc::new(Cached {
                    g,
                    t: t.iter().map(|&v| v as f32).collect(),
                    dv: dv.iter().map(|&v| v as f32).collect(),
                });
                let mut m = cache.lock().unwrap_or_else(|e| e.into_inner());
                let keep = m.get(&key).is_some_and(|old| old.g >= g);
                if !keep {
                    m.insert(key, c.clone());
                }
                c
            }
        };
        let mut rows = Vec::with_capacity(2 * g * d);
        rows.extend_from_slice(&c.t[..g * d]);
        rows.extend_from_slice(&c.dv[..g * d]);
        (h, g, rows)
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

/// LeakyReLU with slope `sl` (branch-free, so that row loops vectorise).
#[inline(always)]
fn leaky<T: WithDType>(y: T, sl: T) -> T {
    if y > T::zero() { y } else { y * sl }
}

/// The derivative of [`leaky`] at `y`.
#[inline(always)]
fn dleaky<T: WithDType>(y: T, sl: T) -> T {
    if y > T::zero() { T::one() } else { sl }
}

/// A row width: known at compile time ([`Const`], so that the row loops have constant trip
/// counts and vectorise) or at run time ([`Dyn`]). The kernels are written once over `Dim`.
trait Dim: Copy + Send + Sync {
    /// A buffer of [`Dim::n`] values: a stack array for [`Const`] (so that the compiler sees that
    /// it cannot alias the rows on the heap), a `Vec` for [`Dyn`].
    type Buf<T: WithDType>: AsRef<[T]> + AsMut<[T]>;
    fn n(self) -> usize;
    fn buf<T: WithDType>(self) -> Self::Buf<T>;
    /// A buffer holding the first [`Dim::n`] values of `src`.
    #[inline(always)]
    fn copy<T: WithDType>(self, src: &[T]) -> Self::Buf<T> {
        let mut b = self.buf::<T>();
        b.as_mut().copy_from_slice(&src[..self.n()]);
        b
    }
}

#[derive(Clone, Copy)]
struct Const<const N: usize>;

impl<const N: usize> Dim for Const<N> {
    type Buf<T: WithDType> = [T; N];
    #[inline(always)]
    fn n(self) -> usize {
        N
    }
    #[inline(always)]
    fn buf<T: WithDType>(self) -> [T; N] {
        [T::zero(); N]
    }
}

#[derive(Clone, Copy)]
struct Dyn(usize);

impl Dim for Dyn {
    type Buf<T: WithDType> = Vec<T>;
    #[inline(always)]
    fn n(self) -> usize {
        self.0
    }
    #[inline(always)]
    fn buf<T: WithDType>(self) -> Vec<T> {
        vec![T::zero(); self.0]
    }
}

/// Per-row work space of [`FusedTail::row_back`].
struct RowScratch<T: WithDType, A: Dim> {
    da: A::Buf<T>,
    a: A::Buf<T>,
    xh: A::Buf<T>,
    y: A::Buf<T>,
    dy: A::Buf<T>,
}

impl<T: WithDType, A: Dim> RowScratch<T, A> {
    #[inline(always)]
    fn new(hd: A) -> Self {
        RowScratch { da: hd.buf(), a: hd.buf(), xh: hd.buf(), y: hd.buf(), dy: hd.buf() }
    }
}

/// One BN layer's per-channel values (and its γ) copied into a tile's buffers.
struct TileNorm<T: WithDType, A: Dim> {
    mu: A::Buf<T>,
    inv: A::Buf<T>,
    s: A::Buf<T>,
    t: A::Buf<T>,
    g: A::Buf<T>,
}

impl<T: WithDType, A: Dim> TileNorm<T, A> {
    #[inline(always)]
    fn new(hd: A, n: &Norm<T>, gamma: &[T]) -> Self {
        TileNorm { mu: hd.copy(&n.mu), inv: hd.copy(&n.inv), s: hd.copy(&n.s), t: hd.copy(&n.t), g: hd.copy(gamma) }
    }
}

/// What the backward through a train-mode BN needs per channel: the norm, γ and the batch terms
/// (mean dx̂, mean dx̂·x̂), copied into a tile's buffers.
struct TileBnBack<T: WithDType, A: Dim> {
    mu: A::Buf<T>,
    inv: A::Buf<T>,
    g: A::Buf<T>,
    m1: A::Buf<T>,
    m2: A::Buf<T>,
}

impl<T: WithDType, A: Dim> TileBnBack<T, A> {
    #[inline(always)]
    fn new(hd: A, n: &Norm<T>, gamma: &[T], m: (&[T], &[T])) -> Self {
        TileBnBack { mu: hd.copy(&n.mu), inv: hd.copy(&n.inv), g: hd.copy(gamma), m1: hd.copy(m.0), m2: hd.copy(m.1) }
    }

    /// `out = inv·(dy·γ − m1 − x̂·m2)` with `x̂ = (z − μ)·inv`: the gradient at the BN's input.
    #[inline(always)]
    fn apply(&self, hd: A, z: &[T], dy: &[T], out: &mut [T]) {
        let h = hd.n();
        let (z, dy, out) = (&z[..h], &dy[..h], &mut out[..h]);
        let (mu, inv, g) = (&self.mu.as_ref()[..h], &self.inv.as_ref()[..h], &self.g.as_ref()[..h]);
        let (m1, m2) = (&self.m1.as_ref()[..h], &self.m2.as_ref()[..h]);
        for c in 0..h {
            let x = (z[c] - mu[c]) * inv[c];
            out[c] = inv[c] * (dy[c] * g[c] - m1[c] - x * m2[c]);
        }
    }
}

/// Per-channel `(Σ z, Σ z²)` of some rows (f64).
type Parts = (Vec<f64>, Vec<f64>);

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
    /// Run the tile kernels compiled for AVX2 + FMA (detected at run time).
    simd: bool,
    saved: Mutex<Option<SavedAny>>,
    stats: Arc<Mutex<Option<[BnStats; 2]>>>,
}

/// For each `fn name => inner(args) -> R;` defines `name`, which runs the `#[inline(always)]`
/// tile kernel `inner` compiled for AVX2 + FMA when the CPU has them ([`FusedTail::simd`]) and
/// as compiled for the build target otherwise. The kernels are generic over the value type and
/// two row widths; only the copy inside the `#[target_feature]` function is compiled with the
/// wider instructions, so the binary stays portable.
macro_rules! dispatched {
    ($(fn $name:ident => $inner:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty;)*) => {$(
        #[allow(clippy::too_many_arguments)]
        fn $name<T: WithDType + Pick, A: Dim, B: Dim>(&self, dims: (A, B), $($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            if self.simd {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn simd<T: WithDType + Pick, A: Dim, B: Dim>(
                    s: &FusedTail,
                    dims: (A, B),
                    $($arg: $ty),*
                ) -> $ret {
                    s.$inner::<T, A, B>(dims, $($arg),*)
                }
                // SAFETY: `self.simd` is set only where the CPU reports AVX2 and FMA.
                return unsafe { simd::<T, A, B>(self, dims, $($arg),*) };
            }
            self.$inner::<T, A, B>(dims, $($arg),*)
        }
    )*};
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
        if let Sink::ScatterMax { to, n } = &sink
            && (to.len() != k || to.iter().any(|&i| i as usize >= *n))
        {
            candle_core::bail!("fused: scatter index length or range");
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
            simd: simd_available(),
            saved: Mutex::new(None),
            stats: Arc::new(Mutex::new(None)),
        })
    }

    /// The same op with the AVX2 + FMA kernels switched off (`false`) or on where the CPU has
    /// them (`true`), for comparing the two builds of the kernels.
    pub fn with_simd(mut self, on: bool) -> Self {
        self.simd = on && simd_available();
        self
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

    /// One row's backward through `BN-affine → LeakyReLU → Linear(w: [o, h])` given the
    /// gradient `dout` (`[o]`) at the linear layer's output and its input `z` (`[h]`, before the
    /// BN): accumulates into `acc` = `[dWᵀ (h·o), db (o), dγ (h), dβ (h), Σ dx̂ (h), Σ dx̂·x̂ (h)]`
    /// and writes the gradient at the BN's output into `drow`. Every loop writes one array, so
    /// that each vectorises without alias checks.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn row_back<T: WithDType, A: Dim, B: Dim>(
        &self,
        (hd, od): (A, B),
        dout: &[T],
        w: &[T],
        z: &[T],
        nm: &TileNorm<T, A>,
        acc: &mut [T],
        sc: &mut RowScratch<T, A>,
        drow: &mut [T],
    ) {
        let (h, o) = (hd.n(), od.n());
        let sl = T::from_f64(self.slope);
        let (dout, w, z) = (&dout[..o], &w[..o * h], &z[..h]);
        let (mu, inv) = (&nm.mu.as_ref()[..h], &nm.inv.as_ref()[..h]);
        let (s, t, g) = (&nm.s.as_ref()[..h], &nm.t.as_ref()[..h], &nm.g.as_ref()[..h]);
        let RowScratch { da, a, xh, y, dy } = sc;
        let (da, a, xh) = (&mut da.as_mut()[..h], &mut a.as_mut()[..h], &mut xh.as_mut()[..h]);
        let (y, dy) = (&mut y.as_mut()[..h], &mut dy.as_mut()[..h]);
        for j in 0..h {
            xh[j] = (z[j] - mu[j]) * inv[j];
            y[j] = z[j] * s[j] + t[j];
            a[j] = leaky(y[j], sl);
        }
        let (dw, rest) = acc.split_at_mut(h * o);
        let (db, rest) = rest.split_at_mut(o);
        let (dg, rest) = rest.split_at_mut(h);
        let (dbb, rest) = rest.split_at_mut(h);
        let (s1, s2) = rest.split_at_mut(h);
        let (db, dg, dbb, s1, s2) = (&mut db[..o], &mut dg[..h], &mut dbb[..h], &mut s1[..h], &mut s2[..h]);
        // da = Wᵀ·dout in blocks of 8 channels (an 8-wide accumulator stays one vector register;
        // a whole row of scalar accumulators does not vectorise).
        let mut j0 = 0;
        while j0 + 8 <= h {
            let mut v = [T::zero(); 8];
            for c in 0..o {
                let dc = dout[c];
                let wr = &w[c * h + j0..][..8];
                for l in 0..8 {
                    v[l] += wr[l] * dc;
                }
            }
            da[j0..j0 + 8].copy_from_slice(&v);
            j0 += 8;
        }
        for j in j0..h {
            let mut v = T::zero();
            for c in 0..o {
                v += w[c * h + j] * dout[c];
            }
            da[j] = v;
        }
        for c in 0..o {
            db[c] += dout[c];
        }
        for j in 0..h {
            let aj = a[j];
            let dwr = &mut dw[j * o..(j + 1) * o];
            for c in 0..o {
                dwr[c] += aj * dout[c];
            }
        }
        for j in 0..h {
            dy[j] = da[j] * dleaky(y[j], sl);
        }
        drow[..h].copy_from_slice(dy);
        for j in 0..h {
            dg[j] += dy[j] * xh[j];
        }
        for j in 0..h {
            dbb[j] += dy[j];
        }
        for j in 0..h {
            s1[j] += dy[j] * g[j];
        }
        for j in 0..h {
            s2[j] += dy[j] * g[j] * xh[j];
        }
    }

    /// `out = b + Σ_j leaky(z_in[j]·s[j] + t[j]) · wt[j, :]` for one row (`A` in, `B` out);
    /// `act` is work space.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn layer<T: WithDType, A: Dim, B: Dim>(
        &self,
        (id, od): (A, B),
        zin: &[T],
        nm: &TileNorm<T, A>,
        wt: &[T],
        b: &B::Buf<T>,
        act: &mut A::Buf<T>,
        out: &mut B::Buf<T>,
    ) {
        let (h, o) = (id.n(), od.n());
        let sl = T::from_f64(self.slope);
        let (zin, wt) = (&zin[..h], &wt[..h * o]);
        let (s, t) = (&nm.s.as_ref()[..h], &nm.t.as_ref()[..h]);
        let (act, out, b) = (&mut act.as_mut()[..h], &mut out.as_mut()[..o], &b.as_ref()[..o]);
        for j in 0..h {
            act[j] = leaky(zin[j] * s[j] + t[j], sl);
        }
        out.copy_from_slice(b);
        for j in 0..h {
            let a = act[j];
            let w = &wt[j * o..(j + 1) * o];
            for c in 0..o {
                out[c] += a * w[c];
            }
        }
    }

    /// `(Σ z, Σ z²)` per channel of the rows `z` of width `h`.
    #[inline(always)]
    fn stats_of<T: WithDType, A: Dim>(hd: A, z: &[T]) -> Parts {
        let h = hd.n();
        let (mut sum, mut sq) = (hd.buf::<f64>(), hd.buf::<f64>());
        let (s, q) = (&mut sum.as_mut()[..h], &mut sq.as_mut()[..h]);
        for row in z.chunks_exact(h) {
            let row = &row[..h];
            for c in 0..h {
                let v = row[c].to_f64();
                s[c] += v;
                q[c] += v * v;
            }
        }
        (s.to_vec(), q.to_vec())
    }

    fn moments(&self, parts: Parts) -> (Vec<f64>, Vec<f64>) {
        let kf = self.k as f64;
        let mean: Vec<f64> = parts.0.iter().map(|s| s / kf).collect();
        let var: Vec<f64> = parts.1.iter().zip(&mean).map(|(q, m)| (q / kf - m * m).max(0.0)).collect();
        (mean, var)
    }

    fn add_parts(a: Parts, b: Parts) -> Parts {
        let add = |x: Vec<f64>, y: Vec<f64>| x.iter().zip(&y).map(|(p, q)| p + q).collect();
        (add(a.0, b.0), add(a.1, b.1))
    }

    /// The tile's sums for BN statistics in train mode, zeros in eval mode.
    #[inline(always)]
    fn tile_parts<T: WithDType, A: Dim>(&self, hd: A, z: &[T]) -> Parts {
        if self.running.is_none() { Self::stats_of(hd, z) } else { (vec![0.0; hd.n()], vec![0.0; hd.n()]) }
    }

    /// Forward tile 1: `z1` of rows `r0..` into `out`; the tile's BN1 sums.
    #[inline(always)]
    fn k_gather<T: WithDType, A: Dim, B: Dim>(
        &self,
        (hd, _): (A, B),
        first: &[T],
        attr: &[T],
        r0: usize,
        out: &mut [T],
    ) -> Parts {
        let h = hd.n();
        let mut e = hd.buf::<T>();
        match &self.source {
            Source::Rows => out.copy_from_slice(&first[r0 * h..r0 * h + out.len()]),
            Source::Gather { to, from, attr: a } => {
                for (i, row) in out.chunks_exact_mut(h).enumerate() {
                    let k = r0 + i;
                    let pt = &first[to[k] as usize * 2 * h..][..h];
                    let pf = &first[from[k] as usize * 2 * h + h..][..h];
                    let e = &mut e.as_mut()[..h];
                    match a {
                        Attr::Rows(idx) => {
                            let ea = &attr[idx[k] as usize * h..][..h];
                            for c in 0..h {
                                e[c] = pt[c] + pf[c] + ea[c];
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
                                e[c] = pt[c] + pf[c] + (w[0] * t0[c] + w[1] * d0[c] + w[2] * t1[c] + w[3] * d1[c]);
                            }
                        }
                    }
                    row[..h].copy_from_slice(e);
                }
            }
        }
        self.tile_parts(hd, out)
    }

    /// Forward tile 2: one hidden layer over the rows of `zin` (`A` wide) into `zout` (`B`
    /// wide); the tile's sums of `zout` when `stats`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn k_layer<T: WithDType, A: Dim, B: Dim>(
        &self,
        dims: (A, B),
        n: &Norm<T>,
        wt: &[T],
        b: &[T],
        zin: &[T],
        zout: &mut [T],
        stats: bool,
    ) -> Parts {
        let (h, o) = (dims.0.n(), dims.1.n());
        let nm = TileNorm::new(dims.0, n, &n.s);
        let b = dims.1.copy(b);
        let (mut act, mut m) = (dims.0.buf(), dims.1.buf());
        for (zo, zi) in zout.chunks_exact_mut(o).zip(zin.chunks_exact(h)) {
            self.layer(dims, zi, &nm, wt, &b, &mut act, &mut m);
            zo[..o].copy_from_slice(&m.as_ref()[..o]);
        }
        if stats { self.tile_parts(dims.1, zout) } else { (vec![0.0; o], vec![0.0; o]) }
    }

    /// Forward tile 3 into a scatter-max: the last layer over rows `r0..r1` of `z2`, folded into
    /// the running maxima `val` and their rows `arg`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn k_scatter<T: WithDType, A: Dim, B: Dim>(
        &self,
        dims: (A, B),
        n2: &Norm<T>,
        p: &Params<T>,
        z2: &[T],
        to: &[u32],
        rows: (usize, usize),
        acc: (&mut [T], &mut [u32]),
    ) {
        let (h, ho) = (dims.0.n(), dims.1.n());
        let (val, arg) = acc;
        let nm = TileNorm::new(dims.0, n2, &n2.s);
        let b = dims.1.copy(&p.b3);
        let (mut act, mut m) = (dims.0.buf(), dims.1.buf());
        for r in rows.0..rows.1 {
            self.layer(dims, &z2[r * h..(r + 1) * h], &nm, &p.w3t, &b, &mut act, &mut m);
            let i = to[r] as usize * ho;
            let (val, arg, m) = (&mut val[i..i + ho], &mut arg[i..i + ho], &m.as_ref()[..ho]);
            // Branch-free (the comparisons are data-dependent): selects vectorise.
            for c in 0..ho {
                let take = (arg[c] == NONE) | (m[c] > val[c]);
                val[c] = if take { m[c] } else { val[c] };
                arg[c] = if take { r as u32 } else { arg[c] };
            }
        }
    }

    /// Backward tile A (rows `r0..`): through the scatter-max (or the output rows), layer 3 and
    /// BN2's affine part; `drow` ← dy2. Returns the tile's [`Self::row_back`] accumulator.
    #[inline(always)]
    fn k_back_a<T: WithDType + Pick, A: Dim, B: Dim>(
        &self,
        dims: (A, B),
        sv: &Saved<T>,
        gout: &[T],
        r0: usize,
        dchunk: &mut [T],
    ) -> Vec<T> {
        let (h, ho) = (dims.0.n(), dims.1.n());
        let zero = T::zero();
        let mut acc = vec![zero; h * ho + ho + 4 * h];
        let mut dm = dims.1.buf::<T>();
        let mut sc = RowScratch::new(dims.0);
        let nm = TileNorm::new(dims.0, &sv.n2, &sv.p.g2);
        for (i, drow) in dchunk.chunks_exact_mut(h).enumerate() {
            let r = r0 + i;
            let dmr = &mut dm.as_mut()[..ho];
            let any = match &self.sink {
                Sink::Rows => {
                    dmr.copy_from_slice(&gout[r * ho..(r + 1) * ho]);
                    true
                }
                Sink::ScatterMax { to, .. } => {
                    let o = to[r] as usize * ho;
                    let (am, g) = (&sv.argmax[o..o + ho], &gout[o..o + ho]);
                    let mut any = false;
                    for c in 0..ho {
                        let hit = am[c] == r as u32;
                        any |= hit;
                        dmr[c] = if hit { g[c] } else { zero };
                    }
                    any
                }
            };
            if !any {
                drow.fill(zero);
                continue;
            }
            self.row_back(dims, dm.as_ref(), &sv.p.w3, &sv.z2[r * h..(r + 1) * h], &nm, &mut acc, &mut sc, drow);
        }
        acc
    }

    /// Backward tile B (rows `r0..`): `dz2` from `drow` = dy2 and BN2's batch terms `m` (mean
    /// dx̂, mean dx̂·x̂), then layer 2 and BN1's affine part; `drow` ← dy1.
    #[inline(always)]
    fn k_back_b<T: WithDType + Pick, A: Dim, B: Dim>(
        &self,
        dims: (A, B),
        sv: &Saved<T>,
        m: (&[T], &[T]),
        r0: usize,
        dchunk: &mut [T],
    ) -> Vec<T> {
        let hd = dims.0;
        let h = hd.n();
        let bn2 = TileBnBack::new(hd, &sv.n2, &sv.p.g2, m);
        let nm1 = TileNorm::new(hd, &sv.n1, &sv.p.g1);
        let mut acc = vec![T::zero(); h * h + h + 4 * h];
        let mut dz2 = hd.buf::<T>();
        let mut sc = RowScratch::new(hd);
        for (i, drow) in dchunk.chunks_exact_mut(h).enumerate() {
            let r = r0 + i;
            bn2.apply(hd, &sv.z2[r * h..(r + 1) * h], drow, dz2.as_mut());
            self.row_back((hd, hd), dz2.as_ref(), &sv.p.w2, &sv.z1[r * h..(r + 1) * h], &nm1, &mut acc, &mut sc, drow);
        }
        acc
    }

    /// Backward tile C for [`Source::Rows`]: `dz1` of rows `r0..` into `out`.
    #[inline(always)]
    fn k_back_rows<T: WithDType + Pick, A: Dim, B: Dim>(
        &self,
        (hd, _): (A, B),
        sv: &Saved<T>,
        m: (&[T], &[T]),
        r0: usize,
        dchunk: &[T],
        out: &mut [T],
    ) {
        let h = hd.n();
        let bn1 = TileBnBack::new(hd, &sv.n1, &sv.p.g1, m);
        let mut dz = hd.buf::<T>();
        for (i, (orow, drow)) in out.chunks_exact_mut(h).zip(dchunk.chunks_exact(h)).enumerate() {
            let r = r0 + i;
            bn1.apply(hd, &sv.z1[r * h..(r + 1) * h], drow, dz.as_mut());
            orow[..h].copy_from_slice(&dz.as_ref()[..h]);
        }
    }

    /// Backward tile C for [`Source::Gather`]: `dz1` of rows `r0..r1` scattered into the node
    /// table's gradient `df` and the attribute table's `da`.
    #[inline(always)]
    fn k_back_gather<T: WithDType + Pick, A: Dim, B: Dim>(
        &self,
        (hd, _): (A, B),
        sv: &Saved<T>,
        m: (&[T], &[T]),
        d: &[T],
        rows: (usize, usize),
        grads: (&mut [T], &mut [T]),
    ) {
        let Source::Gather { to, from, attr } = &self.source else { return };
        let h = hd.n();
        let (df, da) = grads;
        let bn1 = TileBnBack::new(hd, &sv.n1, &sv.p.g1, m);
        let mut dzb = hd.buf::<T>();
        for r in rows.0..rows.1 {
            bn1.apply(hd, &sv.z1[r * h..(r + 1) * h], &d[r * h..(r + 1) * h], dzb.as_mut());
            let dz = &dzb.as_ref()[..h];
            let (ot, of) = (to[r] as usize * 2 * h, from[r] as usize * 2 * h + h);
            let dt = &mut df[ot..ot + h];
            for c in 0..h {
                dt[c] += dz[c];
            }
            let dfr = &mut df[of..of + h];
            for c in 0..h {
                dfr[c] += dz[c];
            }
            match attr {
                Attr::Rows(idx) => {
                    let o = idx[r] as usize * h;
                    let dar = &mut da[o..o + h];
                    for c in 0..h {
                        dar[c] += dz[c];
                    }
                }
                Attr::Hermite { index, u, h: step, g } => {
                    let (j, w) = hermite(u[index[r] as usize], *step, *g);
                    let w = w.map(T::from_f64);
                    for (row, wt) in [(j, w[0]), (g + j, w[1]), (j + 1, w[2]), (g + j + 1, w[3])] {
                        let dar = &mut da[row * h..row * h + h];
                        for c in 0..h {
                            dar[c] += wt * dz[c];
                        }
                    }
                }
            }
        }
    }

    dispatched! {
        fn t_gather => k_gather(first: &[T], attr: &[T], r0: usize, out: &mut [T]) -> Parts;
        fn t_layer => k_layer(n: &Norm<T>, wt: &[T], b: &[T], zin: &[T], zout: &mut [T], stats: bool) -> Parts;
        fn t_scatter => k_scatter(
            n2: &Norm<T>, p: &Params<T>, z2: &[T], to: &[u32], rows: (usize, usize), acc: (&mut [T], &mut [u32])
        ) -> ();
        fn t_back_a => k_back_a(sv: &Saved<T>, gout: &[T], r0: usize, dchunk: &mut [T]) -> Vec<T>;
        fn t_back_b => k_back_b(sv: &Saved<T>, m: (&[T], &[T]), r0: usize, dchunk: &mut [T]) -> Vec<T>;
        fn t_back_rows => k_back_rows(sv: &Saved<T>, m: (&[T], &[T]), r0: usize, dchunk: &[T], out: &mut [T]) -> ();
        fn t_back_gather => k_back_gather(
            sv: &Saved<T>, m: (&[T], &[T]), d: &[T], rows: (usize, usize), grads: (&mut [T], &mut [T])
        ) -> ();
    }
}

impl FusedTail {
    fn forward<T: WithDType + Pick>(&self, first: &[T], attr: &[T], params: &[T]) -> Vec<T> {
        match (self.h, self.ho) {
            (16, 16) => self.forward_d::<T, _, _>((Const::<16>, Const::<16>), first, attr, params),
            (16, 1) => self.forward_d::<T, _, _>((Const::<16>, Const::<1>), first, attr, params),
            (64, 64) => self.forward_d::<T, _, _>((Const::<64>, Const::<64>), first, attr, params),
            (64, 1) => self.forward_d::<T, _, _>((Const::<64>, Const::<1>), first, attr, params),
            (h, ho) => self.forward_d::<T, _, _>((Dyn(h), Dyn(ho)), first, attr, params),
        }
    }

    #[allow(clippy::type_complexity)]
    fn backward<T: WithDType + Pick>(
        &self,
        gout: &[T],
        first_len: usize,
        attr_len: usize,
    ) -> candle_core::Result<(Vec<T>, Vec<T>, Vec<T>)> {
        match (self.h, self.ho) {
            (16, 16) => self.backward_d::<T, _, _>((Const::<16>, Const::<16>), gout, first_len, attr_len),
            (16, 1) => self.backward_d::<T, _, _>((Const::<16>, Const::<1>), gout, first_len, attr_len),
            (64, 64) => self.backward_d::<T, _, _>((Const::<64>, Const::<64>), gout, first_len, attr_len),
            (64, 1) => self.backward_d::<T, _, _>((Const::<64>, Const::<1>), gout, first_len, attr_len),
            (h, ho) => self.backward_d::<T, _, _>((Dyn(h), Dyn(ho)), gout, first_len, attr_len),
        }
    }

    /// The forward for row widths `(H, H_out)`.
    fn forward_d<T: WithDType + Pick, A: Dim, B: Dim>(
        &self,
        dims: (A, B),
        first: &[T],
        attr: &[T],
        params: &[T],
    ) -> Vec<T> {
        let (h, ho, k) = (self.h, self.ho, self.k);
        let hh = (dims.0, dims.0);
        let train = self.running.is_none();
        let p = Params::unpack(params, h, ho);
        let zeros = || (vec![0.0; h], vec![0.0; h]);
        let mut z1 = vec![T::zero(); k * h];
        let parts = z1
            .par_chunks_mut(TILE * h)
            .enumerate()
            .map(|(t, chunk)| self.t_gather(dims, first, attr, t * TILE, chunk))
            .reduce(zeros, Self::add_parts);
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
            .map(|(o, i)| self.t_layer(hh, &n1, &p.w2t, &p.b2, i, o, train))
            .reduce(zeros, Self::add_parts);
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
                    self.t_layer(dims, &n2, &p.w3t, &p.b3, i, o, false);
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
                            let rows = (t * TILE, ((t + 1) * TILE).min(k));
                            self.t_scatter(dims, &n2, &p, &z2, to, rows, (&mut val, &mut arg));
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

    /// Gradients `(first, attr, params)` given the output gradient `gout`, for row widths
    /// `(H, H_out)`.
    #[allow(clippy::type_complexity)]
    fn backward_d<T: WithDType + Pick, A: Dim, B: Dim>(
        &self,
        dims: (A, B),
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
        let zero = T::zero();
        let sum = |a: Vec<T>, b: Vec<T>| a.iter().zip(&b).map(|(&x, &y)| x + y).collect::<Vec<T>>();
        // Pass A: through the scatter-max, layer 3 and BN2's affine part; d ← dy2.
        let mut d = vec![zero; k * h];
        let a_len = h * ho + ho + 4 * h;
        let acc = d
            .par_chunks_mut(TILE * h)
            .enumerate()
            .map(|(t, dchunk)| self.t_back_a(dims, sv, gout, t * TILE, dchunk))
            .reduce(|| vec![zero; a_len], sum);
        let (dw3t, db3, dg2, dbb2, m1_2, m2_2) = split_row_back(&acc, h, ho, train, kf);
        // Pass B: dz2, layer 2, BN1's affine part; d ← dy1.
        let b_len = h * h + h + 4 * h;
        let acc = d
            .par_chunks_mut(TILE * h)
            .enumerate()
            .map(|(t, dchunk)| self.t_back_b(dims, sv, (&m1_2, &m2_2), t * TILE, dchunk))
            .reduce(|| vec![zero; b_len], sum);
        let (dw2t, db2, dg1, dbb1, m1_1, m2_1) = split_row_back(&acc, h, h, train, kf);
        // Pass C: dz1 and its scatter to the source tables.
        let m1 = (&m1_1[..], &m2_1[..]);
        let (dfirst, dattr) = match &self.source {
            Source::Rows => {
                let mut dfirst = vec![zero; k * h];
                dfirst.par_chunks_mut(TILE * h).zip(d.par_chunks(TILE * h)).enumerate().for_each(|(t, (o, dc))| {
                    self.t_back_rows(dims, sv, m1, t * TILE, dc, o);
                });
                (dfirst, vec![zero; attr_len])
            }
            Source::Gather { .. } => {
                let tiles = k.div_ceil(TILE);
                let per = tiles.div_ceil(rayon::current_num_threads()).max(1);
                (0..tiles)
                    .into_par_iter()
                    .with_min_len(per)
                    .fold(
                        || (vec![zero; first_len], vec![zero; attr_len]),
                        |(mut df, mut da), t| {
                            let rows = (t * TILE, ((t + 1) * TILE).min(k));
                            self.t_back_gather(dims, sv, m1, &d, rows, (&mut df, &mut da));
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

/// Whether this CPU runs the AVX2 + FMA build of the tile kernels.
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    gradlab_core::ops::contiguous(s, l)
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
    /// `dims`: `(H, H_out)`; `(16, 16)` and `(16, 1)` run the compile-time-width kernels, other
    /// widths the run-time-width ones. `first_rows`, `attr_rows`: rows of the two tables.
    fn check_fd(
        source: Source,
        sink: Sink,
        k: usize,
        (first_rows, attr_rows): (usize, usize),
        (h, ho): (usize, usize),
        train: bool,
    ) {
        let dev = Device::Cpu;
        let mut r = gradlab_core::rng::rng(11);
        let first = match source {
            Source::Rows => (first_rows, h),
            Source::Gather { .. } => (first_rows, 2 * h),
        };
        let attr = (attr_rows, h);
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
        for dims in [(4, 3), (16, 16)] {
            let mut r = gradlab_core::rng::rng(1);
            let (n, k, rows) = (6, 30, 5);
            for train in [true, false] {
                let (to, from) = graph(&mut r, n, k);
                let (to, from) = (Arc::new(to), Arc::new(from));
                let idx: Vec<u32> = (0..k).map(|i| if i == 1 { 0 } else { r.random_range(0..rows as u32) }).collect();
                let src = Source::Gather { to: to.clone(), from: from.clone(), attr: Attr::Rows(Arc::new(idx)) };
                check_fd(src, Sink::ScatterMax { to: to.clone(), n }, k, (n, rows), dims, train);
                // Hermite attributes: 3 pairs, both directions; u within a 4-point grid.
                let g = 4;
                let u: Vec<f32> = (0..rows).map(|_| r.random_range(0.0..0.29)).collect();
                let idx: Vec<u32> = (0..k).map(|i| if i == 1 { 0 } else { r.random_range(0..rows as u32) }).collect();
                let attr = Attr::Hermite { index: Arc::new(idx), u: Arc::new(u), h: 0.1, g };
                let src = Source::Gather { to: to.clone(), from, attr };
                check_fd(src, Sink::ScatterMax { to, n }, k, (n, 2 * g), dims, train);
            }
        }
    }

    #[test]
    fn row_tail_gradients_match_finite_differences() {
        for dims in [(4, 3), (16, 16), (16, 1)] {
            for train in [true, false] {
                check_fd(Source::Rows, Sink::Rows, 9, (9, 1), dims, train);
            }
        }
    }

    /// The AVX2 + FMA build of the kernels and the portable build compute the same values and
    /// gradients (f32, the compile-time widths of the default model and a run-time width).
    #[test]
    fn simd_kernels_match_portable_kernels() {
        let dev = Device::Cpu;
        let mut r = gradlab_core::rng::rng(3);
        let (n, k, g) = (40, 3000, 6);
        let (to, from) = graph(&mut r, n, k);
        let (to, from) = (Arc::new(to), Arc::new(from));
        let u: Vec<f32> = (0..k).map(|_| r.random_range(0.0..0.45)).collect();
        let idx: Vec<u32> = (0..k as u32).collect();
        for (h, ho) in [(16, 16), (16, 1), (5, 3)] {
            let attr = Attr::Hermite { index: Arc::new(idx.clone()), u: Arc::new(u.clone()), h: 0.1, g };
            let src = Source::Gather { to: to.clone(), from: from.clone(), attr };
            let sink = Sink::ScatterMax { to: to.clone(), n };
            let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            let mut p = uniform(&mut r, packed_len(h, ho), 0.8);
            for c in 0..h {
                p[c] += 1.0;
                p[4 * h + h * h + c] += 1.0;
            }
            let first = Tensor::from_vec(f32s(uniform(&mut r, n * 2 * h, 1.0)), (n, 2 * h), &dev).unwrap();
            let table = Tensor::from_vec(f32s(uniform(&mut r, 2 * g * h, 1.0)), (2 * g, h), &dev).unwrap();
            let p = Tensor::from_vec(f32s(p), packed_len(h, ho), &dev).unwrap();
            let w = Tensor::from_vec(f32s(uniform(&mut r, n * ho, 1.0)), (n, ho), &dev).unwrap();
            let run = |simd: bool| {
                let vars = [&first, &table, &p].map(|t| Var::from_tensor(t).unwrap());
                let op = FusedTail::new(src.clone(), sink.clone(), k, h, ho, 0.1, 1e-5, None).unwrap().with_simd(simd);
                let out = vars[0].as_tensor().apply_op3(vars[1].as_tensor(), vars[2].as_tensor(), op).unwrap();
                let grads = out.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
                let mut all = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for v in &vars {
                    all.extend(grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
                all
            };
            let (a, b) = (run(true), run(false));
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs())), "({h}, {ho}) entry {i}: {x} vs {y}");
            }
        }
    }

    /// The cached f32 grid rows are the rounded rows of a fresh grid, whichever `u_max` was
    /// cached first.
    #[test]
    fn cached_grid_rows_are_the_fresh_rows() {
        let (d, base) = (12, 0.002);
        for u_max in [0.05, 0.4, 0.01, 0.4, 0.2] {
            let fresh = EncodingGrid::new(u_max, d, base);
            let (h, g, rows) = EncodingGrid::rows_f32(u_max, d, base);
            assert_eq!((h, g), (fresh.h, fresh.g), "u_max {u_max}");
            let want: Vec<f32> = fresh.rows.iter().map(|&v| v as f32).collect();
            assert_eq!(rows, want, "u_max {u_max}");
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
        // A hit graph of a small simulated frame for the hit-graph model.
        let frame = crate::sim::Simulator::new(&crate::sim::SimConfig::bergen(150.0, 4)).unwrap().simulate_frame(2, 0);
        let hg = crate::graph::HitGraph::build(&frame, &crate::graph::GraphConfig::default()).unwrap();
        assert!(hg.num_edges() >= 20);
        for (hit, dtype, tol, floor) in [
            (false, DType::F64, 1e-5, 1e-9),
            (false, DType::F32, 2e-3, 1e-2),
            (true, DType::F64, 1e-5, 1e-9),
            (true, DType::F32, 2e-3, 1e-2),
        ] {
            for train in [true, false] {
                // Line graph: a low-frequency encoding, where the interpolated encoding product
                // is exact to rounding, so the comparison isolates the fused arithmetic; the
                // interpolation's own accuracy at the default's frequencies (up to ≈ 900) has its
                // own test. Hit graph: the paper's variant (hidden 64, the (64, 64) and (64, 1)
                // compile-time widths).
                let cfg = if hit {
                    GnnConfig::hit_graph()
                } else {
                    GnnConfig { angle_scale: 100.0, encoding_base: 100.0, ..Default::default() }
                };
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
                let inp = if hit { GraphInput::hit(&hg, &dev).unwrap() } else { random_input(&mut r, 40, 150, &cfg) };
                let inp = inp.to_dtype(dtype).unwrap();
                let n_out = if hit { hg.num_edges() } else { 40 };
                let w = Tensor::from_vec(uniform(&mut r, n_out, 1.0), n_out, &dev).unwrap().to_dtype(dtype).unwrap();
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
                assert!(
                    max_rel(&zf, &zr, floor) < tol,
                    "logits hit {hit} {dtype:?} train {train}: {}",
                    max_rel(&zf, &zr, floor)
                );
                // A bias before a train-mode BatchNorm has an analytically zero gradient: both
                // paths give rounding noise there, so every gradient is compared on at least
                // 10⁻⁶ of the largest gradient's scale.
                let big = gr
                    .iter()
                    .flatten()
                    .flat_map(|g| g.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap())
                    .fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(big.is_finite() && big > 0.0);
                let gfloor = floor.max(1e-6 * big);
                for (((name, _), a), b) in before.iter().zip(&gf).zip(&gr) {
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            assert!(
                                max_rel(a, b, gfloor) < tol,
                                "grad {name} hit {hit} {dtype:?} train {train}: {}",
                                max_rel(a, b, gfloor)
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
