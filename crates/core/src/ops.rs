//! Element-wise ops that candle's CPU backend computes slowly, as custom ops with the same
//! derivatives (first and second order).
//!
//! [`tanh`]: candle 0.11 evaluates `tanh` element by element through glibc's `tanhf` (≈ 13 ns per
//! f32, ten times its `exp`), on one thread, and differentiates it with three more passes
//! (`1 − y²`, then the product). Here:
//! - f32: `tanh x = (e − 1)/(e + 1)` with `e = exp(2x)` evaluated in f64 (cancellation-free to far
//!   below f32 resolution for `|x| ≥ 10⁻⁴`; below that the odd Taylor polynomial to x⁵), then
//!   rounded to f32: within one f32 ulp of the exact value (tested). The exponential is a
//!   branch-free polynomial, so the loop vectorises (AVX2 + FMA build chosen at run time);
//! - f64: the standard library's `tanh`, so f64 results are unchanged;
//! - the backward `g·(1 − y²)` is one fused pass ([`TanhGrad`]), itself differentiable, so exact
//!   double backward (Hessian-vector products, see [`crate::grad`]) works as with candle's op;
//! - large tensors are split over the current rayon pool in chunks of [`CHUNK`] elements.
//!
//! [`add_bias`]: `z + b` broadcast over the rows of a 2-D `z`. candle's `broadcast_add` is fast
//! forward, but its backward sums the gradient over the rows with a strided reduction that took
//! ≈ 20 % of a tanh MLP's gradient; here the row sum is one contiguous pass ([`ColSum`]),
//! differentiable again (its backward broadcasts).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

mod linear;
use linear::split_elementwise;
pub use linear::{
    Act, Linear, MatMul, PARALLEL_MIN_MACS, PARALLEL_MIN_MACS_OUTSIDE_POOL, ReluGrad, SPLIT_MIN_ELEMENTS_OUTSIDE_POOL,
    is_serial, linear, matmul, serial,
};

/// Elements per rayon task; tensors up to this size run on the calling thread (as do all
/// inside [`serial`]).
pub const CHUNK: usize = 1 << 14;

/// `exp(y)` for `|y| ≤ 40` (f64, relative error < 10⁻¹⁴), written without branches or library
/// calls so that loops over it vectorise: `y = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, Taylor series of
/// `exp r` to degree 12, times `2ⁿ` built from its bits. NaN in, NaN out.
#[inline(always)]
fn exp_small(y: f64) -> f64 {
    const MAGIC: f64 = 6755399441055744.0; // 1.5·2⁵²: adding it rounds to an integer in the low bits
    // ln 2 split as in fdlibm: LN2_HI has trailing zero bits, so n·LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let t = y * std::f64::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    // Horner, degree 12: r¹³/13! < 2·10⁻¹⁶ for |r| ≤ 0.35.
    let mut p = 1.0 / 479_001_600.0;
    for c in [39_916_800.0, 3_628_800.0, 362_880.0, 40_320.0, 5_040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0] {
        p = p * r + 1.0 / c;
    }
    let k = t.to_bits().wrapping_sub(MAGIC.to_bits()); // n as a two's-complement integer
    p * f64::from_bits(k.wrapping_add(1023) << 52)
}

/// `tanh` of an f32, evaluated in f64 (see the module docs); branch-free, so loops over it
/// vectorise.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let xd = x as f64;
    // |x| ≥ 20 gives exactly ±1 (as tanh rounds to in f32); NaN stays NaN.
    let c = xd.clamp(-20.0, 20.0);
    let e = exp_small(2.0 * c);
    let ratio = (e - 1.0) / (e + 1.0);
    let x2 = xd * xd;
    let taylor = xd * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0)));
    (if xd.abs() < 1e-4 { taylor } else { ratio }) as f32
}

/// Calls `body(args…)` through a copy compiled for AVX-512 (F + VL + DQ) or for AVX2 + FMA
/// where the CPU has them (chosen at run time), else the portable build. `body` is inlined
/// into each copy, so its loops are vectorised for that instruction set.
macro_rules! simd_dispatch {
    ($body:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                // SAFETY: the CPU has these features (checked above).
                return unsafe { wide($($arg),*) };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn simd($($arg: $ty),*) {
                    $body($($arg),*)
                }
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                return unsafe { simd($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}

/// [`tanh_f32`] in place (the AVX-512 kernel of [`avx512`], else vectorised for the CPU, see
/// `simd_dispatch`).
fn tanh_f32_in_place(v: &mut [f32]) {
    #[inline(always)]
    fn body(v: &mut [f32]) {
        v.iter_mut().for_each(|x| *x = tanh_f32(*x));
    }
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512 F (checked).
        return unsafe { avx512::tanh_in_place(v) };
    }
    simd_dispatch!(body(v: &mut [f32]))
}

/// [`tanh_f32`] over a slice (the AVX-512 kernel of [`avx512`], else vectorised for the CPU,
/// see `simd_dispatch`).
fn tanh_f32_slice(src: &[f32], dst: &mut [f32]) {
    #[inline(always)]
    fn body(src: &[f32], dst: &mut [f32]) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = tanh_f32(s));
    }
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512 F (checked).
        return unsafe { avx512::tanh_slice(src, dst) };
    }
    simd_dispatch!(body(src: &[f32], dst: &mut [f32]))
}

/// The f32 tanh of [`tanh_f32`] written with AVX-512 intrinsics, 8 lanes of f64 at a time. The
/// same evaluation, except that `(e − 1)/(e + 1)` multiplies by the reciprocal of `e + 1` from
/// `vrcp14pd` refined by one Newton step (relative error < 2⁻²⁷) instead of dividing: the
/// division was most of the loop's time. Within one f32 ulp of the exact value (tested, as for
/// the scalar function); the last `len mod 8` elements go through [`tanh_f32`].
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::tanh_f32;
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn tanh8(x32: __m256) -> __m256 {
        const MAGIC: f64 = 6755399441055744.0;
        const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
        const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
        let x = _mm512_cvtps_pd(x32);
        // Clamp to ±20 keeping NaN (max/min return their second operand when one is NaN).
        let c = _mm512_min_pd(_mm512_set1_pd(20.0), _mm512_max_pd(_mm512_set1_pd(-20.0), x));
        let y = _mm512_add_pd(c, c);
        let t = _mm512_fmadd_pd(y, _mm512_set1_pd(std::f64::consts::LOG2_E), _mm512_set1_pd(MAGIC));
        let n = _mm512_sub_pd(t, _mm512_set1_pd(MAGIC));
        let r = _mm512_fnmadd_pd(n, _mm512_set1_pd(LN2_HI), y);
        let r = _mm512_fnmadd_pd(n, _mm512_set1_pd(LN2_LO), r);
        let mut p = _mm512_set1_pd(1.0 / 479_001_600.0);
        for c in [39_916_800.0, 3_628_800.0, 362_880.0, 40_320.0, 5_040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0] {
            p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / c));
        }
        let k = _mm512_sub_epi64(_mm512_castpd_si512(t), _mm512_castpd_si512(_mm512_set1_pd(MAGIC)));
        let two_n = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(_mm512_add_epi64(k, _mm512_set1_epi64(1023))));
        let e = _mm512_mul_pd(p, two_n);
        let one = _mm512_set1_pd(1.0);
        let den = _mm512_add_pd(e, one);
        let q = _mm512_rcp14_pd(den);
        let q = _mm512_fmadd_pd(q, _mm512_fnmadd_pd(den, q, one), q);
        let ratio = _mm512_mul_pd(_mm512_sub_pd(e, one), q);
        let x2 = _mm512_mul_pd(x, x);
        let poly = _mm512_fmadd_pd(x2, _mm512_set1_pd(2.0 / 15.0), _mm512_set1_pd(-1.0 / 3.0));
        let taylor = _mm512_mul_pd(x, _mm512_fmadd_pd(x2, poly, one));
        let ax = _mm512_abs_pd(x);
        let small = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(ax, _mm512_set1_pd(1e-4));
        _mm512_cvtpd_ps(_mm512_mask_blend_pd(small, ratio, taylor))
    }

    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tanh_slice(src: &[f32], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let body = n - n % 8;
        for i in (0..body).step_by(8) {
            // SAFETY: i + 8 ≤ body ≤ the length of both slices.
            unsafe {
                let v = _mm256_loadu_ps(src.as_ptr().add(i));
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), tanh8(v));
            }
        }
        for i in body..n {
            dst[i] = tanh_f32(src[i]);
        }
    }

    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tanh_in_place(v: &mut [f32]) {
        let n = v.len();
        let body = n - n % 8;
        for i in (0..body).step_by(8) {
            // SAFETY: i + 8 ≤ body ≤ the slice's length.
            unsafe {
                let p = v.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, tanh8(_mm256_loadu_ps(p)));
            }
        }
        for x in &mut v[body..] {
            *x = tanh_f32(*x);
        }
    }
}

/// Applies `f` element-wise from `src` into `dst`, over rayon chunks when large.
fn map_into<T: Send + Sync + Copy, U: Send>(src: &[T], dst: &mut [U], f: impl Fn(T) -> U + Sync) {
    if !split_elementwise(src.len()) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = f(s));
    } else {
        dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
            d.iter_mut().zip(s).for_each(|(d, &s)| *d = f(s));
        });
    }
}

/// The elements of a custom op's contiguous CPU input of type `T` (an error for another dtype
/// or a strided layout). Shared by the custom ops of every crate.
pub fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("custom op: input must be contiguous (layout {l:?})"),
    }
}

/// The float dtype shared by a custom op's inputs: f32 or f64, the same for all (an error naming
/// the op otherwise).
pub(crate) fn float_dtype(what: &str, inputs: &[&CpuStorage]) -> candle_core::Result<DType> {
    let dt = inputs.first().map_or(DType::F32, |s| s.dtype());
    if !matches!(dt, DType::F32 | DType::F64) || inputs.iter().any(|s| s.dtype() != dt) {
        let got: Vec<DType> = inputs.iter().map(|s| s.dtype()).collect();
        candle_core::bail!("{what}: inputs all f32 or all f64, got {got:?}");
    }
    Ok(dt)
}

/// An error naming the op unless the layouts have one shape.
pub(crate) fn same_shape(what: &str, layouts: &[&Layout]) -> candle_core::Result<()> {
    if layouts.windows(2).any(|p| p[0].shape() != p[1].shape()) {
        let got: Vec<&Shape> = layouts.iter().map(|l| l.shape()).collect();
        candle_core::bail!("{what}: inputs of one shape expected, got {got:?}");
    }
    Ok(())
}

/// `$body` evaluated with the type alias `$T` = f32 or f64 by `$dt` (from [`float_dtype`]), its
/// `Vec` wrapped as CPU storage.
macro_rules! with_float {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            candle_core::DType::F32 => {
                type $T = f32;
                candle_core::CpuStorage::F32($body)
            }
            _ => {
                type $T = f64;
                candle_core::CpuStorage::F64($body)
            }
        }
    };
}
use with_float;

/// `f` element by element over two slices of one length, split over rayon where that pays.
fn zip_map2<T: WithDType>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let mut out = vec![T::zero(); a.len()];
    let run = |o: &mut [T], a: &[T], b: &[T]| o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = f(a, b));
    if split_elementwise(a.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| run(o, a, b));
    } else {
        run(&mut out, a, b);
    }
    out
}

/// `f` element by element over three slices of one length, split over rayon where that pays.
fn zip_map3<T: WithDType>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T + Sync) -> Vec<T> {
    let mut out = vec![T::zero(); a.len()];
    let run = |o: &mut [T], a: &[T], b: &[T], c: &[T]| {
        o.iter_mut().zip(a.iter().zip(b.iter().zip(c))).for_each(|(o, (&a, (&b, &c)))| *o = f(a, b, c))
    };
    if split_elementwise(a.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK).zip(c.par_chunks(CHUNK))))
            .for_each(|(o, (a, (b, c)))| run(o, a, b, c));
    } else {
        run(&mut out, a, b, c);
    }
    out
}

/// The tanh op (see the module docs). Use [`tanh`].
#[derive(Debug, Clone, Copy)]
pub struct Tanh;

impl CustomOp1 for Tanh {
    fn name(&self) -> &'static str {
        "gradlab-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(_) => {
                let x = contiguous::<f32>(s, l)?;
                let mut y = vec![0f32; x.len()];
                if !split_elementwise(x.len()) {
                    tanh_f32_slice(x, &mut y);
                } else {
                    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(d, s)| tanh_f32_slice(s, d));
                }
                CpuStorage::F32(y)
            }
            CpuStorage::F64(_) => {
                let x = contiguous::<f64>(s, l)?;
                let mut y = vec![0f64; x.len()];
                map_into(x, &mut y, f64::tanh);
                CpuStorage::F64(y)
            }
            _ => candle_core::bail!("gradlab tanh: f32 or f64 expected, got {:?}", s.dtype()),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2(&res.contiguous()?, TanhGrad)?))
    }
}

/// `(g, y) ↦ g·(1 − y²)`, the backward of [`Tanh`] given its output `y`, in one pass; its own
/// backward (for second order) is composed of candle ops.
#[derive(Debug, Clone, Copy)]
pub struct TanhGrad;

impl CustomOp2 for TanhGrad {
    fn name(&self) -> &'static str {
        "gradlab-tanh-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const WHAT: &str = "gradlab tanh backward";
        same_shape(WHAT, &[l1, l2])?;
        let out = with_float!(float_dtype(WHAT, &[s1, s2])?, T => {
            zip_map2::<T>(contiguous(s1, l1)?, contiguous(s2, l2)?, |g, y| g * (1.0 - y * y))
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        u: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // ∂/∂g = (1 − y²)·u (this op again), ∂/∂y = −2·y·g·u: one pass each.
        let u = u.contiguous()?;
        let y = y.contiguous()?;
        let dg = u.apply_op2(&y, TanhGrad)?;
        let dy = g.contiguous()?.apply_op3(&y, &u, TripleProduct(-2.0))?;
        Ok((Some(dg), Some(dy)))
    }
}

/// `(a, b, c) ↦ k·a·b·c` element-wise in one pass (the second-order term of [`TanhGrad`]); its
/// own backward is composed of candle ops.
#[derive(Debug, Clone, Copy)]
pub struct TripleProduct(pub f64);

impl CustomOp3 for TripleProduct {
    fn name(&self) -> &'static str {
        "gradlab-triple-product"
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
        const WHAT: &str = "gradlab triple product";
        same_shape(WHAT, &[l1, l2, l3])?;
        let out = with_float!(float_dtype(WHAT, &[s1, s2, s3])?, T => {
            let k = self.0 as T;
            zip_map3::<T>(contiguous(s1, l1)?, contiguous(s2, l2)?, contiguous(s3, l3)?, |a, b, c| k * a * b * c)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        u: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let k = self.0;
        let da = u.mul(b)?.mul(c)?.affine(k, 0.0)?;
        let db = u.mul(a)?.mul(c)?.affine(k, 0.0)?;
        let dc = u.mul(a)?.mul(b)?.affine(k, 0.0)?;
        Ok((Some(da), Some(db), Some(dc)))
    }
}

/// `z + b` for `z` `[n, m]` and `b` `[m]`. Use [`add_bias`].
#[derive(Debug, Clone, Copy)]
pub struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "gradlab-add-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, m) = l1.shape().dims2()?;
        if l2.shape().dims() != [m] {
            candle_core::bail!("gradlab add_bias: bias {:?} for rows of width {m}", l2.shape());
        }
        fn go<T: WithDType>(
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            m: usize,
        ) -> candle_core::Result<Vec<T>> {
            let (z, b) = (contiguous::<T>(s1, l1)?, contiguous::<T>(s2, l2)?);
            let mut out = z.to_vec();
            let rows = (CHUNK / m.max(1)).max(1) * m;
            let f = |o: &mut [T]| {
                for row in o.chunks_exact_mut(m) {
                    row.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
                }
            };
            if !split_elementwise(out.len()) {
                f(&mut out)
            } else {
                out.par_chunks_mut(rows).for_each(f)
            }
            Ok(out)
        }
        let out = with_float!(float_dtype("gradlab add_bias", &[s1, s2])?, T => go::<T>(s1, l1, s2, l2, m)?);
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _z: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(g.clone()), Some(g.contiguous()?.apply_op1(ColSum)?)))
    }
}

/// Column sums `Σ_i g[i, :]` of a 2-D `g`, one contiguous pass (per rayon chunk of rows, then
/// the chunks' sums added in order). Its backward broadcasts the gradient over the rows.
#[derive(Debug, Clone, Copy)]
pub struct ColSum;

impl CustomOp1 for ColSum {
    fn name(&self) -> &'static str {
        "gradlab-col-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, m) = l.shape().dims2()?;
        fn go<T: WithDType>(s: &CpuStorage, l: &Layout, m: usize) -> candle_core::Result<Vec<T>> {
            let g = contiguous::<T>(s, l)?;
            let sum = |rows: &[T]| {
                let mut acc = vec![T::zero(); m];
                for row in rows.chunks_exact(m) {
                    acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
                }
                acc
            };
            if g.len() <= CHUNK || m == 0 {
                return Ok(sum(g));
            }
            // The same chunks (and so the same rounding) whether or not they run in parallel.
            let rows = (CHUNK / m).max(1) * m;
            let parts: Vec<Vec<T>> = if split_elementwise(g.len()) {
                g.par_chunks(rows).map(sum).collect()
            } else {
                g.chunks(rows).map(sum).collect()
            };
            let mut acc = vec![T::zero(); m];
            for p in parts {
                acc.iter_mut().zip(p).for_each(|(a, v)| *a += v);
            }
            Ok(acc)
        }
        let out = with_float!(float_dtype("gradlab col_sum", &[s])?, T => go::<T>(s, l, m)?);
        Ok((out, Shape::from(m)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, u: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(u.unsqueeze(0)?.broadcast_as(arg.shape())?.contiguous()?))
    }
}

/// Mean squared error `Σ (p − t)² / n` of two tensors of the same shape, as a scalar, in one
/// pass (accumulated in f64). Use [`mse`].
#[derive(Debug, Clone, Copy)]
pub struct Mse;

impl CustomOp2 for Mse {
    fn name(&self) -> &'static str {
        "gradlab-mse"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        same_shape("gradlab mse (prediction, target)", &[l1, l2])?;
        fn go<T: WithDType>(s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<T> {
            let (p, t) = (contiguous::<T>(s1, l1)?, contiguous::<T>(s2, l2)?);
            let sum = |p: &[T], t: &[T]| {
                p.iter().zip(t).fold(0f64, |a, (&p, &t)| {
                    let d = p.to_f64() - t.to_f64();
                    d.mul_add(d, a)
                })
            };
            // The same chunks whether or not they run in parallel (the same rounding).
            let total: f64 = if p.len() <= CHUNK {
                sum(p, t)
            } else if split_elementwise(p.len()) {
                let parts: Vec<f64> = p.par_chunks(CHUNK).zip(t.par_chunks(CHUNK)).map(|(p, t)| sum(p, t)).collect();
                parts.iter().sum()
            } else {
                p.chunks(CHUNK).zip(t.chunks(CHUNK)).map(|(p, t)| sum(p, t)).sum()
            };
            Ok(T::from_f64(total / p.len() as f64))
        }
        let out = with_float!(float_dtype("gradlab mse", &[s1, s2])?, T => vec![go::<T>(s1, l1, s2, l2)?]);
        Ok((out, Shape::from(())))
    }

    fn bwd(
        &self,
        p: &Tensor,
        t: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // ∂/∂p = 2·g·(p − t)/n, ∂/∂t = −∂/∂p: one pass (its own backward composes candle ops).
        let k = 2.0 / p.elem_count().max(1) as f64;
        let dp = p.contiguous()?.apply_op3(&t.contiguous()?, &g.contiguous()?, ScaledDiff(k))?;
        let dt = if t.track_op() { Some(dp.neg()?) } else { None };
        Ok((Some(dp), dt))
    }
}

/// `(p, t, g) ↦ k·g·(p − t)` for a scalar `g`, in one pass (the backward of [`Mse`]); its own
/// backward is composed of candle ops.
#[derive(Debug, Clone, Copy)]
pub struct ScaledDiff(pub f64);

impl CustomOp3 for ScaledDiff {
    fn name(&self) -> &'static str {
        "gradlab-scaled-diff"
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
        const WHAT: &str = "gradlab scaled difference";
        same_shape(WHAT, &[l1, l2])?;
        if l3.shape().elem_count() != 1 {
            candle_core::bail!("{WHAT}: a scalar factor expected, got shape {:?}", l3.shape());
        }
        let out = with_float!(float_dtype(WHAT, &[s1, s2, s3])?, T => {
            let c = self.0 as T * contiguous::<T>(s3, l3)?[0];
            zip_map2::<T>(contiguous(s1, l1)?, contiguous(s2, l2)?, |p, t| c * (p - t))
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        p: &Tensor,
        t: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        u: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let k = self.0;
        let du = u.broadcast_mul(&g.reshape(())?.broadcast_as(u.shape())?)?.affine(k, 0.0)?;
        let dg = u.mul(&p.sub(t)?)?.sum_all()?.affine(k, 0.0)?.reshape(g.shape())?;
        Ok((Some(du.clone()), Some(du.neg()?), Some(dg)))
    }
}

/// Mean squared error of `p` against `t` (same shape) as a scalar tensor: one pass forward and
/// one backward on the CPU (f32 or f64), differentiable to any order; other devices and mixed
/// dtypes use candle's ops.
pub fn mse(p: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
    let cpu = p.device().is_cpu() && t.device().is_cpu();
    let float = matches!(p.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
    if !cpu || !float || p.dtype() != t.dtype() {
        return p.sub(t)?.sqr()?.mean_all();
    }
    p.contiguous()?.apply_op2(&t.contiguous()?, Mse)
}

/// `z + b` broadcast over the rows of a 2-D `z` (`b`: `[m]`), with a one-pass bias gradient;
/// other ranks and devices use candle's `broadcast_add`.
pub fn add_bias(z: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if !z.device().is_cpu() || z.rank() != 2 || b.rank() != 1 {
        return z.broadcast_add(b);
    }
    z.contiguous()?.apply_op2(&b.contiguous()?, AddBias)
}

/// `tanh` of every element (f32 or f64 on the CPU; other devices use candle's own op), with the
/// same first and second derivatives as candle's.
pub fn tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    if !x.device().is_cpu() {
        return x.tanh();
    }
    x.contiguous()?.apply_op1(Tanh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Distance in f32 ulps between `a` and the f64 `b` rounded to f32.
    fn ulps(a: f32, b: f64) -> i64 {
        let key = |v: f32| {
            let i = v.to_bits() as i32;
            if i < 0 { i64::from(i32::MIN) - i64::from(i) } else { i64::from(i) }
        };
        (key(a) - key(b as f32)).abs()
    }

    #[test]
    fn f32_tanh_is_within_one_ulp_everywhere() {
        let mut r = crate::rng::rng(4);
        let mut xs: Vec<f32> =
            vec![0.0, -0.0, 1e-30, -1e-30, 1e-8, 9.99e-5, 1.0001e-4, 0.5, -0.5, 19.99, 20.0, 25.0, -25.0];
        xs.extend(crate::rng::normal_vec(&mut r, 20_000, 0.0, 3.0).iter().map(|&v| v as f32));
        xs.extend(crate::rng::normal_vec(&mut r, 5_000, 0.0, 1e-3).iter().map(|&v| v as f32));
        for &x in &xs {
            let y = tanh_f32(x);
            let exact = (x as f64).tanh();
            assert!(ulps(y, exact) <= 1, "tanh({x:e}) = {y:e}, exact {exact:e}");
            assert_eq!(y.is_sign_negative(), x.is_sign_negative(), "sign of tanh({x:e})");
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
    }

    /// The slice kernels (AVX-512 where the CPU has it) are within one ulp too, at every
    /// position of a vector and in the scalar tail.
    #[test]
    fn vector_tanh_is_within_one_ulp_everywhere() {
        let mut r = crate::rng::rng(8);
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            1e-8,
            9.99e-5,
            1.0001e-4,
            0.5,
            -0.5,
            19.99,
            20.0,
            25.0,
            -25.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN_POSITIVE,
        ];
        xs.extend(crate::rng::normal_vec(&mut r, 20_000, 0.0, 3.0).iter().map(|&v| v as f32));
        xs.extend(crate::rng::normal_vec(&mut r, 5_000, 0.0, 1e-3).iter().map(|&v| v as f32));
        xs.extend(crate::rng::normal_vec(&mut r, 5_003, 0.0, 0.1).iter().map(|&v| v as f32));
        let mut out = vec![0f32; xs.len()];
        tanh_f32_slice(&xs, &mut out);
        let mut inplace = xs.clone();
        tanh_f32_in_place(&mut inplace);
        assert_eq!(out, inplace, "in place and out of place agree");
        for (&x, &y) in xs.iter().zip(&out) {
            let exact = (x as f64).tanh();
            assert!(ulps(y, exact) <= 1, "tanh({x:e}) = {y:e}, exact {exact:e}");
            assert_eq!(y.is_sign_negative(), x.is_sign_negative(), "sign of tanh({x:e})");
        }
        let mut nan = [f32::NAN; 11];
        tanh_f32_in_place(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()));
    }

    /// Every f32 bit pattern with |x| ≤ 20 (every `step`-th with `GRADLAB_TANH_STEP`, default
    /// 1: all 2.1·10⁹ of them and their negatives, ≈ 20 s on 2 cores), through the slice kernel:
    /// within one ulp.
    /// `cargo test --release -p gradlab-core -- --ignored vector_tanh_exhaustive`
    #[test]
    #[ignore = "long: every f32 in [-20, 20]"]
    fn vector_tanh_exhaustive() {
        let step: u32 = std::env::var("GRADLAB_TANH_STEP").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
        let top = 20f32.to_bits();
        let xs: Vec<u32> = (0..=top).step_by(step as usize).collect();
        xs.par_chunks(1 << 16).for_each(|bits| {
            let mut v: Vec<f32> = bits.iter().flat_map(|&b| [f32::from_bits(b), -f32::from_bits(b)]).collect();
            let x = v.clone();
            tanh_f32_in_place(&mut v);
            for (&x, &y) in x.iter().zip(&v) {
                assert!(ulps(y, (x as f64).tanh()) <= 1, "tanh({x:e}) = {y:e}");
            }
        });
    }

    #[test]
    fn op_matches_candle_values_and_gradients() {
        let dev = Device::Cpu;
        let mut r = crate::rng::rng(5);
        // Above and below the chunk size (single thread and rayon paths).
        for n in [7, 3 * CHUNK + 5] {
            let v = crate::rng::normal_vec(&mut r, n, 0.0, 2.0);
            let x = Var::from_tensor(&Tensor::from_vec(v.clone(), n, &dev).unwrap()).unwrap();
            let w = Tensor::from_vec(crate::rng::normal_vec(&mut r, n, 0.0, 1.0), n, &dev).unwrap();
            let ours = tanh(x.as_tensor()).unwrap();
            let theirs = x.as_tensor().tanh().unwrap();
            let (a, b) = (ours.to_vec1::<f64>().unwrap(), theirs.to_vec1::<f64>().unwrap());
            assert_eq!(a, b, "f64 values are the standard library's");
            let ga = ours.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = theirs.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            let ga = ga.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
            let gb = gb.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
            for (p, q) in ga.iter().zip(&gb) {
                assert!((p - q).abs() <= 1e-15 * (1.0 + q.abs()), "{p} vs {q}");
            }
            // f32 values within one ulp of candle's (glibc's tanhf is within an ulp too).
            let x32 = x.as_tensor().to_dtype(candle_core::DType::F32).unwrap();
            let a = tanh(&x32).unwrap().to_vec1::<f32>().unwrap();
            for (y, &xv) in a.iter().zip(&v) {
                assert!(ulps(*y, (xv as f32 as f64).tanh()) <= 1);
            }
        }
        // Strided input.
        let m =
            Tensor::from_vec((0..12).map(|i| i as f64 * 0.1).collect::<Vec<_>>(), (3, 4), &dev).unwrap().t().unwrap();
        let a = tanh(&m).unwrap().to_vec2::<f64>().unwrap();
        assert_eq!(a, m.tanh().unwrap().to_vec2::<f64>().unwrap());
    }

    /// The gradient against central differences (second order: `tests/double_backward_ops.rs`,
    /// which needs a process of its own).
    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let v = vec![0.3f64, -1.2, 0.05, 2.0];
        let w = Tensor::new(&[0.7f64, -0.4, 1.1, 0.9], &dev).unwrap();
        let f = |v: &[f64]| -> f64 {
            let t = Tensor::new(v, &dev).unwrap();
            tanh(&t).unwrap().sqr().unwrap().mul(&w).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let x = Var::new(v.as_slice(), &dev).unwrap();
        let y = tanh(x.as_tensor()).unwrap().sqr().unwrap().mul(&w).unwrap().sum_all().unwrap();
        let g = y.backward().unwrap().get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        let eps = 1e-6;
        for i in 0..v.len() {
            let (mut p, mut m) = (v.clone(), v.clone());
            p[i] += eps;
            m[i] -= eps;
            let fd = (f(&p) - f(&m)) / (2.0 * eps);
            assert!((fd - g[i]).abs() < 1e-8, "gradient {i}: fd {fd} vs {}", g[i]);
        }
    }

    /// The one-pass MSE: value and gradients against candle's composition, f32 and f64, above and
    /// below the chunk size.
    #[test]
    fn mse_matches_candle_with_gradients() {
        let dev = Device::Cpu;
        let mut r = crate::rng::rng(9);
        for n in [7, 3 * CHUNK + 1] {
            for dtype in [candle_core::DType::F64, candle_core::DType::F32] {
                let mk = |r: &mut crate::rng::SeededRng| {
                    let t = Tensor::from_vec(crate::rng::normal_vec(r, n, 0.0, 1.0), (n,), &dev).unwrap();
                    Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()
                };
                let (p, t) = (mk(&mut r), mk(&mut r));
                let ours = mse(p.as_tensor(), t.as_tensor()).unwrap();
                let theirs = p.as_tensor().sub(t.as_tensor()).unwrap().sqr().unwrap().mean_all().unwrap();
                let f = |x: &Tensor| x.to_dtype(candle_core::DType::F64).unwrap();
                let (a, b) = (f(&ours).to_scalar::<f64>().unwrap(), f(&theirs).to_scalar::<f64>().unwrap());
                let tol = if dtype == candle_core::DType::F64 { 1e-13 } else { 1e-5 };
                assert!((a - b).abs() <= tol * b.abs(), "{dtype:?} n {n}: {a} vs {b}");
                let (ga, gb) = (ours.backward().unwrap(), theirs.backward().unwrap());
                for v in [&p, &t] {
                    let (x, y) = (
                        f(ga.get(v.as_tensor()).unwrap()).to_vec1::<f64>().unwrap(),
                        f(gb.get(v.as_tensor()).unwrap()).to_vec1::<f64>().unwrap(),
                    );
                    let scale = y.iter().fold(0f64, |m, v| m.max(v.abs()));
                    for (x, y) in x.iter().zip(&y) {
                        assert!((x - y).abs() <= tol * scale, "{dtype:?} n {n}: {x} vs {y}");
                    }
                }
            }
        }
        let a = Tensor::zeros(3, candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        assert!(mse(&a, &b).unwrap_err().to_string().contains("inputs of one shape expected"));
    }

    /// The one-pass `k·a·b·c` (second-order term of the tanh backward) and its gradients,
    /// against candle's products.
    #[test]
    fn triple_product_matches_candle_with_gradients() {
        let dev = Device::Cpu;
        let mut r = crate::rng::rng(7);
        for n in [5, 2 * CHUNK + 3] {
            let v = |r: &mut crate::rng::SeededRng| {
                Var::from_tensor(&Tensor::from_vec(crate::rng::normal_vec(r, n, 0.0, 1.0), n, &dev).unwrap()).unwrap()
            };
            let (a, b, c) = (v(&mut r), v(&mut r), v(&mut r));
            let w = Tensor::from_vec(crate::rng::normal_vec(&mut r, n, 0.0, 1.0), n, &dev).unwrap();
            let ours = a.as_tensor().apply_op3(b.as_tensor(), c.as_tensor(), TripleProduct(-2.0)).unwrap();
            let theirs = a.mul(b.as_tensor()).unwrap().mul(c.as_tensor()).unwrap().affine(-2.0, 0.0).unwrap();
            assert_eq!(ours.to_vec1::<f64>().unwrap(), theirs.to_vec1::<f64>().unwrap());
            let ga = ours.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = theirs.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            for x in [&a, &b, &c] {
                let (p, q) = (
                    ga.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap(),
                    gb.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap(),
                );
                for (p, q) in p.iter().zip(&q) {
                    assert!((p - q).abs() <= 1e-15 * (1.0 + q.abs()), "{p} vs {q}");
                }
            }
        }
        let bad = Tensor::zeros(3, candle_core::DType::F64, &dev).unwrap();
        let other = Tensor::zeros(4, candle_core::DType::F64, &dev).unwrap();
        assert!(bad.apply_op3(&bad, &other, TripleProduct(1.0)).is_err());
    }

    #[test]
    fn add_bias_matches_broadcast_add_with_gradients() {
        let dev = Device::Cpu;
        let mut r = crate::rng::rng(6);
        // Small (one thread) and large (rayon chunks); m not dividing the chunk.
        for (n, m) in [(3, 4), (2000, 37)] {
            let z = Var::from_tensor(
                &Tensor::from_vec(crate::rng::normal_vec(&mut r, n * m, 0.0, 1.0), (n, m), &dev).unwrap(),
            )
            .unwrap();
            let b = Var::from_tensor(&Tensor::from_vec(crate::rng::normal_vec(&mut r, m, 0.0, 1.0), m, &dev).unwrap())
                .unwrap();
            let w = Tensor::from_vec(crate::rng::normal_vec(&mut r, n * m, 0.0, 1.0), (n, m), &dev).unwrap();
            let ours = add_bias(z.as_tensor(), b.as_tensor()).unwrap();
            let theirs = z.as_tensor().broadcast_add(b.as_tensor()).unwrap();
            assert_eq!(ours.to_vec2::<f64>().unwrap(), theirs.to_vec2::<f64>().unwrap());
            let ga = ours.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = theirs.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(
                ga.get(z.as_tensor()).unwrap().to_vec2::<f64>().unwrap(),
                gb.get(z.as_tensor()).unwrap().to_vec2::<f64>().unwrap()
            );
            // The bias gradient is Σ_i w[i, :] (summed in another order than candle's).
            let (a, c) = (
                ga.get(b.as_tensor()).unwrap().to_vec1::<f64>().unwrap(),
                gb.get(b.as_tensor()).unwrap().to_vec1::<f64>().unwrap(),
            );
            let w = w.to_vec2::<f64>().unwrap();
            for j in 0..m {
                let exact: f64 = w.iter().map(|row| row[j]).sum();
                assert!(
                    (a[j] - exact).abs() < 1e-12 * (1.0 + exact.abs()) && (a[j] - c[j]).abs() < 1e-11,
                    "column {j}"
                );
            }
        }
        let z = Tensor::zeros((2, 3), candle_core::DType::F64, &dev).unwrap();
        assert!(add_bias(&z, &Tensor::zeros(4, candle_core::DType::F64, &dev).unwrap()).is_err());
    }
}
