//! Dense layers and matrix products as custom ops that choose their own threading.
//!
//! [`linear`] computes `act(x·wᵀ + b)` in one op: the output rows are filled with the bias, the
//! `gemm` crate accumulates `x·wᵀ` into them (strided views, so `wᵀ` is never copied) and the
//! activation is applied in place. Its backward is composed of differentiable ops — the
//! activation's derivative from the output ([`super::TanhGrad`], [`ReluGrad`]), two [`matmul`]s and
//! a column sum ([`super::ColSum`]) — so second derivatives by double backward stay exact. Against
//! candle's `matmul` + `broadcast_add` + activation this saves a pass over the output and an
//! allocation forward, and two graph nodes (each a zero-filled gradient buffer plus an add in
//! candle's backward) per layer.
//!
//! **Threading.** candle splits every matrix product over all of rayon's threads. At the sizes of
//! small networks (a batch of 256 through 128-wide layers) the split costs more than it gains,
//! and inside data-parallel work (surface points evaluated one per thread) it only adds
//! scheduling. Here a product uses the threads of the current rayon pool only when it has at
//! least [`PARALLEL_MIN_MACS`] multiply-adds ([`PARALLEL_MIN_MACS_OUTSIDE_POOL`] when called
//! from outside every pool) and the calling thread is not inside [`serial`]; the element-wise
//! ops of [`crate::ops`] are split only outside [`serial`].

use super::{CHUNK, ColSum, TanhGrad, contiguous, float_dtype, same_shape, tanh_f32_in_place, with_float, zip_map2};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::Cell;

/// Multiply-adds from which a matrix product is split over the threads of the current rayon
/// pool. Measured on the development machine (`cargo run --release -p gradlab-core --example
/// matmul_threads`, f32, 2 threads against 1): at 2²² multiply-adds (256 × 128 × 128) 2 threads
/// are 1.3× faster called from a program's main thread (1.75× from inside the pool); at 2²¹ and
/// below they are 0.6–1.0×, slower or level.
pub const PARALLEL_MIN_MACS: usize = 1 << 22;

/// The same threshold for a caller outside every rayon pool (a program's main thread), whose
/// split product is handed to the pool's workers while it waits. Higher, because after each
/// product the workers spin for a while and take the cores from the caller's next (serial)
/// ops: with the threshold at 2²² an MLP trained with batch 256 on 2 threads ran 1.2× slower than
/// on one (`scripts/compare/torch_mlp.sh`, `train_relu`); at 2²⁴ the products that are split
/// gain ≈ 1.8×.
pub const PARALLEL_MIN_MACS_OUTSIDE_POOL: usize = 1 << 24;

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's ops serial: matrix products and element-wise ops of
/// [`crate::ops`] use no further threads. For data-parallel callers that already keep every core
/// busy (one surface point, one frame or one batch per thread). Nests; restores the previous
/// setting on return and on panic.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// Whether the calling thread is inside [`serial`].
pub fn is_serial() -> bool {
    SERIAL.with(|s| s.get())
}

/// Elements from which an element-wise pass called from outside every rayon pool is split over
/// the pool (inside a pool: more than [`CHUNK`]). Measured like
/// [`PARALLEL_MIN_MACS_OUTSIDE_POOL`]: splitting the 32k-element ReLU of a 256 × 128 batch from a
/// program's main thread made its training 1.1× slower on 2 threads than on one.
pub const SPLIT_MIN_ELEMENTS_OUTSIDE_POOL: usize = 1 << 18;

/// Whether an element-wise pass over `len` elements should be split over rayon.
pub(crate) fn split_elementwise(len: usize) -> bool {
    let min = if rayon::current_thread_index().is_some() { CHUNK + 1 } else { SPLIT_MIN_ELEMENTS_OUTSIDE_POOL };
    len >= min && !is_serial() && rayon::current_num_threads() > 1
}

fn parallelism(macs: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    let min = if rayon::current_thread_index().is_some() { PARALLEL_MIN_MACS } else { PARALLEL_MIN_MACS_OUTSIDE_POOL };
    if threads > 1 && macs >= min && !is_serial() { Parallelism::Rayon(threads) } else { Parallelism::None }
}

/// Activation applied by [`linear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// None: `x·wᵀ + b`.
    Identity,
    /// `tanh` (the f32 evaluation of [`super::tanh_f32`]; f64 through the standard library).
    Tanh,
    /// `max(0, ·)`, derivative 0 at 0 (as PyTorch's).
    Relu,
}

/// A strided 2-D view of a custom op's CPU input.
#[derive(Clone, Copy)]
struct View<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T: WithDType> View<'a, T> {
    fn new(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<Self> {
        let (rows, cols) = l.shape().dims2().map_err(|_| {
            candle_core::Error::Msg(format!("gradlab {what}: a matrix expected, got shape {:?}", l.shape()))
        })?;
        let (rs, cs) = (l.stride()[0], l.stride()[1]);
        let data = &T::cpu_storage_as_slice(s)?[l.start_offset()..];
        // The last element must be inside the storage (gemm reads through raw pointers).
        if rows > 0 && cols > 0 && (rows - 1) * rs + (cols - 1) * cs >= data.len() {
            candle_core::bail!("gradlab {what}: layout {l:?} reaches past its storage");
        }
        Ok(View { data, rows, cols, rs, cs })
    }

    fn t(self) -> Self {
        View { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }
}

/// `dst (+)= a·b` for row-major `dst` `[a.rows, b.cols]`; `accumulate` keeps what `dst` holds.
fn gemm_into<T: WithDType>(dst: &mut [T], accumulate: bool, a: View<T>, b: View<T>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert!(b.rows == k && dst.len() == m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::zero());
        }
        return;
    }
    // SAFETY: `dst` holds m·n elements written row-major (row stride n, column stride 1); the
    // views' extents were checked against their storage in `View::new`; T is f32 or f64, which
    // gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism(m.saturating_mul(n).saturating_mul(k)),
        )
    }
}

/// Applies `f` to every element in place, over rayon chunks where that pays.
fn map_in_place<T: Send + Copy>(v: &mut [T], f: impl Fn(T) -> T + Sync) {
    if split_elementwise(v.len()) {
        v.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|x| *x = f(*x)));
    } else {
        v.iter_mut().for_each(|x| *x = f(*x));
    }
}

/// `a·b` for matrices `a` `[n, k]` and `b` `[k, m]` with any strides. Use [`matmul`].
#[derive(Debug, Clone, Copy)]
pub struct MatMul;

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "gradlab-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        fn go<T: WithDType>(s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<Vec<T>> {
            let (a, b) = (View::<T>::new(s1, l1, "matmul")?, View::<T>::new(s2, l2, "matmul")?);
            let mut out = vec![T::zero(); a.rows * b.cols];
            gemm_into(&mut out, false, a, b);
            Ok(out)
        }
        let (n, k) = l1.shape().dims2()?;
        let (k2, m) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("gradlab matmul: shapes {:?} and {:?} do not chain", l1.shape(), l2.shape());
        }
        let out = with_float!(float_dtype("gradlab matmul", &[s1, s2])?, T => go::<T>(s1, l1, s2, l2)?);
        Ok((out, Shape::from((n, m))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let da = if a.track_op() { Some(matmul(g, &b.t()?)?) } else { None };
        let db = if b.track_op() { Some(matmul(&a.t()?, g)?) } else { None };
        Ok((da, db))
    }
}

/// `(g, y) ↦ g·[y > 0]`, the backward of ReLU given its output `y`; linear in `g`, zero second
/// derivative in `y`.
#[derive(Debug, Clone, Copy)]
pub struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "gradlab-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const WHAT: &str = "gradlab relu backward";
        same_shape(WHAT, &[l1, l2])?;
        let out = with_float!(float_dtype(WHAT, &[s1, s2])?, T => {
            zip_map2::<T>(contiguous(s1, l1)?, contiguous(s2, l2)?, |g, y| if y > 0.0 { g } else { 0.0 })
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _g: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        u: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(u.contiguous()?.apply_op2(&y.contiguous()?, ReluGrad)?), None))
    }
}

/// `act(x·wᵀ + b)` for `x` `[n, k]`, `w` `[m, k]`, `b` `[m]`. Use [`linear`].
#[derive(Debug, Clone, Copy)]
pub struct Linear(pub Act);

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "gradlab-linear"
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
        let (n, k) = l1.shape().dims2()?;
        let (m, k2) = l2.shape().dims2()?;
        if k != k2 || l3.shape().dims() != [m] {
            candle_core::bail!(
                "gradlab linear: input {:?}, weight {:?} and bias {:?} do not fit (want [n, k], [m, k], [m])",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let act = self.0;
        fn go<T: WithDType>(
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
            n: usize,
        ) -> candle_core::Result<Vec<T>> {
            let x = View::<T>::new(s1, l1, "linear")?;
            let w = View::<T>::new(s2, l2, "linear")?;
            let b = contiguous::<T>(s3, l3)?;
            let mut out = Vec::with_capacity(n * b.len());
            for _ in 0..n {
                out.extend_from_slice(b);
            }
            gemm_into(&mut out, true, x, w.t());
            Ok(out)
        }
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let mut z = go::<f32>((s1, l1), (s2, l2), (s3, l3), n)?;
                match act {
                    Act::Identity => {}
                    Act::Tanh => {
                        if split_elementwise(z.len()) {
                            z.par_chunks_mut(CHUNK).for_each(tanh_f32_in_place);
                        } else {
                            tanh_f32_in_place(&mut z);
                        }
                    }
                    Act::Relu => map_in_place(&mut z, |v| v.max(0.0)),
                }
                CpuStorage::F32(z)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let mut z = go::<f64>((s1, l1), (s2, l2), (s3, l3), n)?;
                match act {
                    Act::Identity => {}
                    Act::Tanh => map_in_place(&mut z, f64::tanh),
                    Act::Relu => map_in_place(&mut z, |v| v.max(0.0)),
                }
                CpuStorage::F64(z)
            }
            _ => candle_core::bail!(
                "gradlab linear: input, weight and bias all f32 or all f64, got {:?}, {:?}, {:?}",
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            ),
        };
        Ok((out, Shape::from((n, m))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gz = match self.0 {
            Act::Identity => g.contiguous()?,
            Act::Tanh => g.contiguous()?.apply_op2(&y.contiguous()?, TanhGrad)?,
            Act::Relu => g.contiguous()?.apply_op2(&y.contiguous()?, ReluGrad)?,
        };
        let dx = if x.track_op() { Some(matmul(&gz, w)?) } else { None };
        let dw = matmul(&gz.t()?, x)?;
        let db = gz.apply_op1(ColSum)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

fn fused_applies(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.device().is_cpu() && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64))
        && ts.windows(2).all(|p| p[0].dtype() == p[1].dtype())
}

/// `a·b` for 2-D `a` `[n, k]` and `b` `[k, m]` on the CPU (f32 or f64, any strides: transposed
/// views are not copied), threaded by the rule of the module docs; differentiable to any order.
/// Other ranks, dtypes and devices use candle's `matmul`.
pub fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if a.rank() != 2 || b.rank() != 2 || !fused_applies(&[a, b]) {
        return a.matmul(b);
    }
    a.apply_op2(b, MatMul)
}

/// `act(x·wᵀ + b)` for `x` `[n, k]`, `w` `[m, k]` (candle's `Linear` layout) and `b` `[m]`, as
/// one op on the CPU (f32 or f64; see the module docs), differentiable to any order. Other
/// ranks, dtypes and devices compose candle's ops (with the same derivatives).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, act: Act) -> candle_core::Result<Tensor> {
    if x.rank() != 2 || w.rank() != 2 || b.rank() != 1 || !fused_applies(&[x, w, b]) {
        let z = x.broadcast_matmul(&w.t()?)?.broadcast_add(b)?;
        return match act {
            Act::Identity => Ok(z),
            Act::Tanh => z.tanh(),
            Act::Relu => z.relu(),
        };
    }
    x.apply_op3(w, b, Linear(act))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn var(r: &mut crate::rng::SeededRng, shape: (usize, usize), scale: f64) -> Var {
        let v = crate::rng::normal_vec(r, shape.0 * shape.1, 0.0, scale);
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
        let (a, b) = (
            a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() <= tol * scale, "{what}[{i}]: {p} vs {q}");
        }
    }

    /// Values and all three gradients against candle's composition, for each activation, in f64
    /// and f32, small and large enough for the threaded paths, with a transposed (strided) input.
    #[test]
    fn linear_matches_candle_composition_with_gradients() {
        let mut r = crate::rng::rng(11);
        for (n, k, m) in [(5, 3, 4), (700, 130, 70)] {
            for dtype in [DType::F64, DType::F32] {
                for act in [Act::Identity, Act::Tanh, Act::Relu] {
                    let xt = var(&mut r, (k, n), 1.0); // x = xtᵀ: a strided view
                    let w = var(&mut r, (m, k), 0.5);
                    let b = Var::from_tensor(
                        &Tensor::from_vec(crate::rng::normal_vec(&mut r, m, 0.0, 0.5), m, &Device::Cpu).unwrap(),
                    )
                    .unwrap();
                    let up = Tensor::from_vec(crate::rng::normal_vec(&mut r, n * m, 0.0, 1.0), (n, m), &Device::Cpu)
                        .unwrap();
                    let cast = |t: &Tensor| t.to_dtype(dtype).unwrap();
                    let (x, wt, bt, up) =
                        (cast(xt.as_tensor()).t().unwrap(), cast(w.as_tensor()), cast(b.as_tensor()), cast(&up));
                    let ours = linear(&x, &wt, &bt, act).unwrap();
                    let z = x.matmul(&wt.t().unwrap()).unwrap().broadcast_add(&bt).unwrap();
                    let theirs = match act {
                        Act::Identity => z,
                        Act::Tanh => z.tanh().unwrap(),
                        Act::Relu => z.relu().unwrap(),
                    };
                    let tol = if dtype == DType::F64 { 1e-12 } else { 2e-5 };
                    close(&ours, &theirs, tol, &format!("{act:?} {dtype:?} values"));
                    let ga = ours.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
                    let gb = theirs.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
                    for (v, name) in [(&xt, "x"), (&w, "w")] {
                        close(
                            ga.get(v.as_tensor()).unwrap(),
                            gb.get(v.as_tensor()).unwrap(),
                            tol,
                            &format!("{act:?} {dtype:?} d{name}"),
                        );
                    }
                    close(
                        ga.get(b.as_tensor()).unwrap(),
                        gb.get(b.as_tensor()).unwrap(),
                        tol,
                        &format!("{act:?} {dtype:?} db"),
                    );
                }
            }
        }
    }

    /// Gradients of `Σ u·tanh(x·wᵀ + b)²` against central differences (f64).
    #[test]
    fn linear_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let mut r = crate::rng::rng(12);
        let (n, k, m) = (4, 3, 2);
        let x = crate::rng::normal_vec(&mut r, n * k, 0.0, 1.0);
        let w = crate::rng::normal_vec(&mut r, m * k, 0.0, 1.0);
        let b = crate::rng::normal_vec(&mut r, m, 0.0, 1.0);
        let u = Tensor::from_vec(crate::rng::normal_vec(&mut r, n * m, 0.0, 1.0), (n, m), &dev).unwrap();
        let f = |x: &Tensor, w: &Tensor, b: &Tensor| {
            linear(x, w, b, Act::Tanh).unwrap().sqr().unwrap().mul(&u).unwrap().sum_all().unwrap()
        };
        let t = |v: &[f64], s: &[usize]| Tensor::from_vec(v.to_vec(), s, &dev).unwrap();
        let vars = [
            Var::from_tensor(&t(&x, &[n, k])).unwrap(),
            Var::from_tensor(&t(&w, &[m, k])).unwrap(),
            Var::from_tensor(&t(&b, &[m])).unwrap(),
        ];
        let grads = f(vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor()).backward().unwrap();
        let point = [x, w, b];
        let shapes = [vec![n, k], vec![m, k], vec![m]];
        let eval = |p: &[Vec<f64>; 3]| {
            f(&t(&p[0], &shapes[0]), &t(&p[1], &shapes[1]), &t(&p[2], &shapes[2])).to_scalar::<f64>().unwrap()
        };
        let eps = 1e-6;
        for a in 0..3 {
            let g = grads.get(vars[a].as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for i in 0..point[a].len() {
                let (mut p, mut q) = (point.clone(), point.clone());
                p[a][i] += eps;
                q[a][i] -= eps;
                let fd = (eval(&p) - eval(&q)) / (2.0 * eps);
                assert!((fd - g[i]).abs() < 1e-8 * (1.0 + fd.abs()), "argument {a} [{i}]: fd {fd} vs {}", g[i]);
            }
        }
    }

    /// Transposed views on either side, against candle's matmul, with gradients; a product large
    /// enough to be threaded gives the same numbers inside `serial` as outside.
    #[test]
    fn matmul_matches_candle_and_serial_matches_threaded() {
        let mut r = crate::rng::rng(13);
        let a = var(&mut r, (6, 5), 1.0);
        let bt = var(&mut r, (7, 6), 1.0);
        let up = Tensor::from_vec(crate::rng::normal_vec(&mut r, 35, 0.0, 1.0), (5, 7), &Device::Cpu).unwrap();
        let (at, b) = (a.as_tensor().t().unwrap(), bt.as_tensor().t().unwrap());
        let ours = matmul(&at, &b).unwrap();
        let theirs = at.matmul(&b).unwrap();
        close(&ours, &theirs, 1e-14, "product");
        let ga = ours.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = theirs.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
        close(ga.get(a.as_tensor()).unwrap(), gb.get(a.as_tensor()).unwrap(), 1e-14, "da");
        close(ga.get(bt.as_tensor()).unwrap(), gb.get(bt.as_tensor()).unwrap(), 1e-14, "db");

        let big_a = var(&mut r, (512, 256), 1.0);
        let big_b = var(&mut r, (256, 256), 1.0);
        const { assert!(512 * 256 * 256 >= PARALLEL_MIN_MACS) };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let threaded = pool.install(|| matmul(big_a.as_tensor(), big_b.as_tensor()).unwrap());
        assert!(!is_serial());
        let one = pool.install(|| {
            serial(|| {
                assert!(is_serial());
                matmul(big_a.as_tensor(), big_b.as_tensor()).unwrap()
            })
        });
        assert!(!is_serial(), "serial restores the previous setting");
        assert_eq!(threaded.to_vec2::<f64>().unwrap(), one.to_vec2::<f64>().unwrap());
    }

    #[test]
    fn mismatched_shapes_and_dtypes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((2, 5), DType::F32, &dev).unwrap();
        let b = Tensor::zeros(2, DType::F32, &dev).unwrap();
        let e = linear(&x, &w, &b, Act::Tanh).unwrap_err().to_string();
        assert!(e.contains("do not fit"), "{e}");
        let w = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        let b3 = Tensor::zeros(3, DType::F32, &dev).unwrap();
        assert!(linear(&x, &w, &b3, Act::Tanh).is_err());
        let e = matmul(&x, &w).unwrap_err().to_string();
        assert!(e.contains("do not chain"), "{e}");
        // Mixed dtypes fall back to candle, which refuses them.
        let b64 = Tensor::zeros(2, DType::F64, &dev).unwrap();
        assert!(linear(&x, &w, &b64, Act::Identity).is_err());
        // Empty batches are fine.
        let x0 = Tensor::zeros((0, 4), DType::F32, &dev).unwrap();
        assert_eq!(linear(&x0, &w, &b, Act::Relu).unwrap().dims(), &[0, 2]);
    }
}
