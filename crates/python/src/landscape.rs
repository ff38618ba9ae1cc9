//! `gradlab.landscape`: loss surfaces and Hessian eigenpairs of user callables over flat
//! numpy vectors.

use crate::arrays::{finite_vec, to_py1};
use crate::errors;
use gradlab_landscape::connectivity::PathProfile;
use gradlab_landscape::hessian::{HessianOperator, HvpMethod, LinearOperator};
use gradlab_landscape::lanczos::{LanczosConfig, Which, lanczos};
use gradlab_landscape::objective::FnObjective;
use gradlab_landscape::slq::{SlqConfig, slq};
use gradlab_landscape::surface::{Axis, Surface, SurfaceOptions, evaluate_surface};
use gradlab_landscape::trace::{TraceEstimate, hutch_pp, hutchinson};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The first Python exception raised inside a callable, kept until the Rust loop returns.
type Slot = Arc<Mutex<Option<PyErr>>>;

fn keep(slot: &Slot, e: PyErr) {
    let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
    if s.is_none() {
        *s = Some(e);
    }
}

fn take(slot: &Slot) -> Option<PyErr> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Calls `f(x)` (x a new float64 numpy vector) with the GIL and reads a float64 vector of
/// length `n` back into `out`.
fn call_vec(py: Python<'_>, f: &Py<PyAny>, x: &[f64], out: &mut [f64], what: &str) -> PyResult<()> {
    let arg = PyArray1::from_slice(py, x);
    let r = f.bind(py).call1((arg,))?;
    let a = r.cast::<PyArray1<f64>>().map_err(|_| {
        PyTypeError::new_err(format!("{what} must return a 1-D float64 numpy array of length {}", out.len()))
    })?;
    if a.len() != out.len() {
        return Err(PyValueError::new_err(format!("{what} returned length {}, expected {}", a.len(), out.len())));
    }
    let ro = a.try_readonly()?;
    for (o, v) in out.iter_mut().zip(ro.as_array().iter()) {
        *o = *v;
    }
    Ok(())
}

fn call_scalar(py: Python<'_>, f: &Py<PyAny>, x: &[f64], what: &str) -> PyResult<f64> {
    let r = f.bind(py).call1((PyArray1::from_slice(py, x),))?;
    r.extract::<f64>().map_err(|_| PyTypeError::new_err(format!("{what} must return a float")))
}

fn callable(f: &Bound<'_, PyAny>, name: &str) -> PyResult<Py<PyAny>> {
    if f.is_callable() {
        Ok(f.clone().unbind())
    } else {
        Err(PyTypeError::new_err(format!("{name}: expected a callable")))
    }
}

fn axis(spec: (f64, f64, usize), name: &str) -> PyResult<Axis> {
    Axis::new(spec.0, spec.1, spec.2).map_err(|e| PyValueError::new_err(format!("{name}: {e}")))
}

/// An objective over Python callables: `loss(x) -> float` and, when given, `grad(x) -> ∇L(x)`
/// (asked for only when a gradient is wanted). Exceptions are kept in `slot`; the value is NaN.
fn loss_objective(loss: Py<PyAny>, grad: Option<Py<PyAny>>, n: usize, slot: Slot) -> FnObjective {
    FnObjective::new(n, move |t: &[f64], out: Option<&mut [f64]>| {
        Python::attach(|py| {
            let r = (|| {
                if let Some(out) = out {
                    let g = grad.as_ref().ok_or_else(|| PyValueError::new_err("this needs grad="))?;
                    if let Err(e) = call_vec(py, g, t, out, "grad") {
                        out.fill(f64::NAN);
                        return Err(e);
                    }
                }
                call_scalar(py, &loss, t, "loss")
            })();
            r.unwrap_or_else(|e| {
                keep(&slot, e);
                f64::NAN
            })
        })
    })
}

/// Loss values on a plane `theta + a·d1 + b·d2` (or a line when `d2` is None) for `a` on
/// `x = (min, max, points)` and `b` on `y`. `loss(theta) -> float` is a Python callable on
/// float64 vectors. Returns `(xs, ys, Z)` with `Z[j, i]` the loss at `(xs[i], ys[j])` (NaN
/// where not finite); for a line `Z` has one row.
#[pyfunction]
#[pyo3(signature = (loss, theta, d1, d2 = None, x = (-1.0, 1.0, 21), y = (-1.0, 1.0, 21)))]
#[allow(clippy::type_complexity)]
pub fn surface<'py>(
    py: Python<'py>,
    loss: &Bound<'py, PyAny>,
    theta: &Bound<'py, PyAny>,
    d1: &Bound<'py, PyAny>,
    d2: Option<&Bound<'py, PyAny>>,
    x: (f64, f64, usize),
    y: (f64, f64, usize),
) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>)> {
    let f = callable(loss, "loss")?;
    let theta = finite_vec(theta, "theta")?;
    let d1 = finite_vec(d1, "d1")?;
    let d2 = d2.map(|d| finite_vec(d, "d2")).transpose()?;
    let xa = axis(x, "x")?;
    let ya = if d2.is_some() { Some(axis(y, "y")?) } else { None };
    let slot: Slot = Arc::default();
    let obj = loss_objective(f, None, theta.len(), slot.clone());
    let mut dirs: Vec<&[f64]> = vec![&d1];
    if let Some(d) = &d2 {
        dirs.push(d);
    }
    // One worker: the callable holds the GIL while it runs, so more threads would only queue.
    let opts = SurfaceOptions { threads: 1, ..SurfaceOptions::default() };
    let s = py.detach(|| evaluate_surface(&obj, &theta, &dirs, xa, ya, &opts));
    if let Some(e) = take(&slot) {
        return Err(e);
    }
    let s = s.map_err(errors::landscape)?;
    let (nx, ny) = (s.xs.len(), s.ys.len());
    let z = ndarray::Array2::from_shape_vec((ny, nx), s.loss).expect("ny × nx losses");
    Ok((to_py1(py, s.xs), to_py1(py, s.ys), PyArray2::from_owned_array(py, z)))
}

/// A Python Hessian-vector product `hvp(v) -> H v` as a linear operator.
struct PyHvp {
    f: Py<PyAny>,
    n: usize,
    slot: Slot,
}

impl LinearOperator for PyHvp {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&mut self, v: &[f64], out: &mut [f64]) -> gradlab_landscape::Result<()> {
        Python::attach(|py| call_vec(py, &self.f, v, out, "hvp")).map_err(|e| {
            keep(&self.slot, e);
            gradlab_landscape::Error::Unsupported("the Python hvp callable raised an exception".into())
        })
    }
}

/// Where Hessian-vector products come from: a Python `hvp(v)` at the point, or central
/// differences of a Python `grad(x)` with step `h`.
enum OpSource {
    Hvp(Py<PyAny>),
    Grad(Py<PyAny>, f64),
}

impl OpSource {
    fn new(hvp: Option<&Bound<'_, PyAny>>, grad: Option<&Bound<'_, PyAny>>, h: f64) -> PyResult<Self> {
        match (hvp, grad) {
            (Some(f), None) => Ok(OpSource::Hvp(callable(f, "hvp")?)),
            (None, Some(g)) => {
                if !(h.is_finite() && h > 0.0) {
                    return Err(PyValueError::new_err(format!("h = {h}: allowed: a finite step > 0")));
                }
                Ok(OpSource::Grad(callable(g, "grad")?, h))
            }
            _ => Err(PyValueError::new_err("give exactly one of hvp= or grad=")),
        }
    }
}

/// An objective whose gradient is a Python `grad(x)` (the loss is not needed: NaN).
fn grad_objective(g: Py<PyAny>, n: usize, slot: Slot) -> FnObjective {
    FnObjective::new(n, move |t: &[f64], out: Option<&mut [f64]>| {
        let Some(out) = out else { return f64::NAN };
        Python::attach(|py| match call_vec(py, &g, t, out, "grad") {
            Ok(()) => 0.0,
            Err(e) => {
                keep(&slot, e);
                out.fill(f64::NAN);
                f64::NAN
            }
        })
    })
}

/// Runs `f` on the Hessian at `theta` as a linear operator, with the GIL released (it is
/// re-acquired for each Python call); the first Python exception of a callable is re-raised.
fn with_operator<R: Send>(
    py: Python<'_>,
    theta: &[f64],
    src: OpSource,
    f: impl FnOnce(&mut dyn LinearOperator) -> gradlab_landscape::Result<R> + Send,
) -> PyResult<R> {
    let n = theta.len();
    let slot: Slot = Arc::default();
    let res = py.detach(|| match src {
        OpSource::Hvp(h) => f(&mut PyHvp { f: h, n, slot: slot.clone() }),
        OpSource::Grad(g, h) => {
            let mut obj = grad_objective(g, n, slot.clone());
            let mut op = HessianOperator::new(&mut obj, theta, HvpMethod::FiniteDifference { h })?;
            f(&mut op)
        }
    });
    if let Some(e) = take(&slot) {
        return Err(e);
    }
    res.map_err(errors::landscape)
}

/// The `k` extreme eigenvalues (and unit eigenvectors) of the Hessian at `theta` by Lanczos
/// with full reorthogonalisation. Give exactly one of `hvp(v) -> H v` (the product at `theta`)
/// or `grad(x) -> ∇L(x)` (products by central differences of gradients with step `h`).
/// Returns `(values, vectors)` with `vectors[i]` for `values[i]` (largest first, or smallest
/// first with `which="smallest"`). Stops when every pair's residual `‖Hv − λv‖` is at most
/// `tol · max(|λ|, ‖T‖)` (T the Lanczos tridiagonal) or after `max_steps` products (default `min(n, max(300, 10k))`); a run that stops
/// unconverged issues a `RuntimeWarning` naming the residual.
#[pyfunction]
#[pyo3(signature = (theta, k = 3, *, hvp = None, grad = None, which = "largest", max_steps = None, tol = 1e-10, seed = 0, h = 1e-3))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn hessian_eigs<'py>(
    py: Python<'py>,
    theta: &Bound<'py, PyAny>,
    k: usize,
    hvp: Option<&Bound<'py, PyAny>>,
    grad: Option<&Bound<'py, PyAny>>,
    which: &str,
    max_steps: Option<usize>,
    tol: f64,
    seed: u64,
    h: f64,
) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>)> {
    let theta = finite_vec(theta, "theta")?;
    let n = theta.len();
    let which = match which {
        "largest" => Which::Largest,
        "smallest" => Which::Smallest,
        w => return Err(PyValueError::new_err(format!("which = {w:?}: allowed: \"largest\" or \"smallest\""))),
    };
    // Steps cost nothing once the pairs have converged (Lanczos stops at `tol`), so the default
    // cap is generous; a run that hits it anyway warns.
    let cfg = LanczosConfig { max_steps: max_steps.unwrap_or((10 * k).max(300).min(n)), tol, seed };
    let src = OpSource::new(hvp, grad, h)?;
    let r = with_operator(py, &theta, src, |op| lanczos(op, k, which, &cfg))?;
    if !r.converged {
        let worst = r.residuals.iter().copied().fold(0.0, f64::max);
        let msg = std::ffi::CString::new(format!(
            "hessian_eigs: not converged to tol = {tol:e} after {} Lanczos steps (largest residual \
             ‖Hv − λv‖ = {worst:.3e}); raise max_steps or tol",
            r.steps
        ))
        .expect("no NUL in the message");
        PyErr::warn(py, &py.get_type::<pyo3::exceptions::PyRuntimeWarning>(), &msg, 1)?;
    }
    let kk = r.values.len();
    let vecs = ndarray::Array2::from_shape_vec((kk, n), r.vectors.concat()).expect("k × n");
    Ok((to_py1(py, r.values), PyArray2::from_owned_array(py, vecs)))
}

/// A random Gaussian direction normalised to `theta` (Li et al.'s filter normalisation by
/// default). `shapes` lists the tensors of the flat vector in order (e.g. `[(64, 10), (64,),
/// (1, 64), (1,)]`); without it `theta` is one tensor with one filter, i.e. the direction is
/// scaled to `‖theta‖`. `normalization`: `"filter"`, `"layer"` or `"none"`; `vectors` (1-D
/// tensors such as biases): `"zero"`, `"keep"` or `"copy"`.
#[pyfunction]
#[pyo3(signature = (theta, shapes = None, normalization = "filter", vectors = "zero", seed = 0))]
pub fn random_direction<'py>(
    py: Python<'py>,
    theta: &Bound<'py, PyAny>,
    shapes: Option<Vec<Vec<usize>>>,
    normalization: &str,
    vectors: &str,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    use gradlab_landscape::directions::{Normalization, VectorParams};
    let theta = finite_vec(theta, "theta")?;
    let how = match normalization {
        "filter" => Normalization::Filter,
        "layer" => Normalization::Layer,
        "none" => Normalization::None,
        o => {
            return Err(PyValueError::new_err(format!(
                "normalization = {o:?}: allowed: \"filter\", \"layer\" or \"none\""
            )));
        }
    };
    let vp = match vectors {
        "zero" => VectorParams::Zero,
        "keep" => VectorParams::Keep,
        "copy" => VectorParams::Copy,
        o => return Err(PyValueError::new_err(format!("vectors = {o:?}: allowed: \"zero\", \"keep\" or \"copy\""))),
    };
    let layout = match shapes {
        Some(s) => {
            gradlab_core::params::ParamLayout::from_shapes(s.into_iter().enumerate().map(|(i, s)| (format!("t{i}"), s)))
        }
        None => gradlab_core::params::ParamLayout::from_shapes([("theta", vec![1, theta.len()])]),
    };
    let d = py
        .detach(|| {
            let mut rng = gradlab_core::rng::rng(seed);
            gradlab_landscape::directions::random_direction(&theta, &layout, how, vp, &mut rng)
        })
        .map_err(errors::landscape)?;
    Ok(to_py1(py, d))
}

/// Principal directions of a training trajectory (rows of `trajectory`, `[T, n]`) around
/// `reference` (usually the last point), as in Li et al.'s PCA plots. Returns
/// `(directions [k, n], explained_variance_ratio [k])`.
#[pyfunction]
#[pyo3(signature = (trajectory, reference, k = 2, center = true))]
#[allow(clippy::type_complexity)]
pub fn pca_directions<'py>(
    py: Python<'py>,
    trajectory: &Bound<'py, PyAny>,
    reference: &Bound<'py, PyAny>,
    k: usize,
    center: bool,
) -> PyResult<(Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>)> {
    let m = crate::arrays::matrix(trajectory, "trajectory")?;
    let reference = finite_vec(reference, "reference")?;
    let (t, n) = m.shape();
    if n != reference.len() {
        return Err(PyValueError::new_err(format!(
            "trajectory has {n} columns, reference has {} entries: allowed: equal lengths",
            reference.len()
        )));
    }
    let rows: Vec<Vec<f64>> = m.view().with_f64(|v| v.outer_iter().map(|r| r.to_vec()).collect());
    if let Some((i, j)) = (0..t).flat_map(|i| (0..n).map(move |j| (i, j))).find(|&(i, j)| !rows[i][j].is_finite()) {
        return Err(PyValueError::new_err(format!("trajectory[{i}, {j}] = {}: allowed: finite numbers", rows[i][j])));
    }
    let p = py
        .detach(|| gradlab_landscape::directions::pca_directions(&rows, &reference, k, center))
        .map_err(errors::landscape)?;
    let kk = p.directions.len();
    let d = ndarray::Array2::from_shape_vec((kk, n), p.directions.concat()).expect("k × n");
    Ok((PyArray2::from_owned_array(py, d), to_py1(py, p.explained_variance_ratio)))
}

/// `{"trace": …, "std_error": …, "products": …}` as a dict.
fn trace_dict<'py>(py: Python<'py>, t: &TraceEstimate) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("trace", t.trace)?;
    d.set_item("std_error", t.std_error)?;
    d.set_item("products", t.products)?;
    Ok(d)
}

/// A stochastic estimate of the Hessian's trace at `theta` with its standard error: Hutch++
/// (Meyer et al. 2021; `products` Hessian-vector products in all, at least 6) or Hutchinson
/// (`products` Rademacher probes, at least 2). Give exactly one of `hvp(v) -> H v` or
/// `grad(x) -> ∇L(x)` (central differences with step `h`). Returns a dict with `trace`,
/// `std_error` (of the stochastic part) and `products` (used).
#[pyfunction]
#[pyo3(signature = (theta, *, hvp = None, grad = None, products = 99, method = "hutch++", seed = 0, h = 1e-3))]
#[allow(clippy::too_many_arguments)]
pub fn trace<'py>(
    py: Python<'py>,
    theta: &Bound<'py, PyAny>,
    hvp: Option<&Bound<'py, PyAny>>,
    grad: Option<&Bound<'py, PyAny>>,
    products: usize,
    method: &str,
    seed: u64,
    h: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let theta = finite_vec(theta, "theta")?;
    let pp = match method {
        "hutch++" => true,
        "hutchinson" => false,
        m => return Err(PyValueError::new_err(format!("method = {m:?}: allowed: \"hutch++\" or \"hutchinson\""))),
    };
    let src = OpSource::new(hvp, grad, h)?;
    let t = with_operator(py, &theta, src, |op| {
        let mut rng = gradlab_core::rng::rng(seed);
        if pp { hutch_pp(op, products, &mut rng) } else { hutchinson(op, products, &mut rng) }
    })?;
    trace_dict(py, &t)
}

/// The Hessian's eigenvalue density at `theta` by stochastic Lanczos quadrature (Ghorbani et
/// al. 2019, as PyHessian): `probes` Gaussian probes, `steps` Lanczos steps each. Give exactly
/// one of `hvp=` or `grad=`. Returns a dict: `nodes` and `weights` (lists, one float64 array per
/// probe: Ritz values and Gauss weights summing to 1), `grid` and `density` (the density
/// smoothed by a Gaussian of width `sigma`, on `grid` — by default 200 points spanning the nodes
/// ± 5 σ, σ = 1 % of the nodes' range).
#[pyfunction]
#[pyo3(signature = (theta, *, hvp = None, grad = None, probes = 4, steps = 60, seed = 0, grid = None, sigma = None, h = 1e-3))]
#[allow(clippy::too_many_arguments)]
pub fn density<'py>(
    py: Python<'py>,
    theta: &Bound<'py, PyAny>,
    hvp: Option<&Bound<'py, PyAny>>,
    grad: Option<&Bound<'py, PyAny>>,
    probes: usize,
    steps: usize,
    seed: u64,
    grid: Option<&Bound<'py, PyAny>>,
    sigma: Option<f64>,
    h: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let theta = finite_vec(theta, "theta")?;
    let grid = grid.map(|g| finite_vec(g, "grid")).transpose()?;
    if let Some(s) = sigma
        && !(s.is_finite() && s > 0.0)
    {
        return Err(PyValueError::new_err(format!("sigma = {s}: allowed: finite and > 0")));
    }
    let steps = steps.min(theta.len());
    let cfg = SlqConfig { probes, steps, seed };
    let src = OpSource::new(hvp, grad, h)?;
    let q = with_operator(py, &theta, src, |op| slq(op, &cfg))?;
    let (lo, hi) = q.range();
    let sigma = sigma.unwrap_or_else(|| if hi > lo { 0.01 * (hi - lo) } else { 1e-3 * lo.abs().max(1.0) });
    let grid = grid.unwrap_or_else(|| {
        let (a, b) = (lo - 5.0 * sigma, hi + 5.0 * sigma);
        (0..200).map(|i| a + (b - a) * i as f64 / 199.0).collect()
    });
    let dens = q.density(&grid, sigma).map_err(errors::landscape)?;
    let d = PyDict::new(py);
    d.set_item("nodes", q.nodes.iter().map(|v| to_py1(py, v.clone())).collect::<Vec<_>>())?;
    d.set_item("weights", q.weights.iter().map(|v| to_py1(py, v.clone())).collect::<Vec<_>>())?;
    d.set_item("sigma", sigma)?;
    d.set_item("grid", to_py1(py, grid))?;
    d.set_item("density", to_py1(py, dens))?;
    Ok(d)
}

fn profile_dict<'py>(py: Python<'py>, p: PathProfile) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("barrier", p.barrier)?;
    d.set_item("t_max", p.t_max)?;
    d.set_item("t", to_py1(py, p.ts))?;
    d.set_item("loss", to_py1(py, p.losses))?;
    Ok(d)
}

fn same_len(a: &[f64], b: &[f64], na: &str, nb: &str) -> PyResult<()> {
    if a.len() != b.len() {
        return Err(PyValueError::new_err(format!(
            "{na} has {} entries, {nb} has {}: allowed: equal lengths",
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

/// The loss on the straight line `(1 − t) θA + t θB` at `points` evenly spaced `t` in [0, 1]:
/// a dict with `t`, `loss`, `barrier` (`max_t L − max(L(0), L(1))`) and `t_max`.
#[pyfunction]
#[pyo3(signature = (loss, theta_a, theta_b, points = 51))]
pub fn linear_path<'py>(
    py: Python<'py>,
    loss: &Bound<'py, PyAny>,
    theta_a: &Bound<'py, PyAny>,
    theta_b: &Bound<'py, PyAny>,
    points: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let f = callable(loss, "loss")?;
    let a = finite_vec(theta_a, "theta_a")?;
    let b = finite_vec(theta_b, "theta_b")?;
    same_len(&a, &b, "theta_a", "theta_b")?;
    let slot: Slot = Arc::default();
    let mut obj = loss_objective(f, None, a.len(), slot.clone());
    let p = py.detach(|| gradlab_landscape::connectivity::linear_path(&mut obj, &a, &b, points));
    if let Some(e) = take(&slot) {
        return Err(e);
    }
    profile_dict(py, p.map_err(errors::landscape)?)
}

/// Mode connectivity (Garipov et al. 2018): trains the control point θ of the quadratic Bézier
/// curve `(1−t)² θA + 2t(1−t) θ + t² θB` with Adam on `E_t L(φ(t))` (`steps` steps of
/// `samples_per_step` uniform `t`, learning rate `lr`), starting from the midpoint (or
/// `control`). Needs `loss(x) -> float` and `grad(x) -> ∇L(x)`. Returns a dict: `control`,
/// `history` (mean sampled loss per step), and the loss profiles `curve` and `line` (the
/// straight line), each a dict with `t`, `loss`, `barrier`, `t_max` at `points` values of t.
#[pyfunction]
#[pyo3(signature = (loss, grad, theta_a, theta_b, *, control = None, steps = 500, samples_per_step = 4, lr = 1e-2, seed = 0, points = 51))]
#[allow(clippy::too_many_arguments)]
pub fn bezier<'py>(
    py: Python<'py>,
    loss: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    theta_a: &Bound<'py, PyAny>,
    theta_b: &Bound<'py, PyAny>,
    control: Option<&Bound<'py, PyAny>>,
    steps: usize,
    samples_per_step: usize,
    lr: f64,
    seed: u64,
    points: usize,
) -> PyResult<Bound<'py, PyDict>> {
    use gradlab_landscape::connectivity::{Bezier, BezierConfig, train_bezier};
    let (f, g) = (callable(loss, "loss")?, callable(grad, "grad")?);
    let a = finite_vec(theta_a, "theta_a")?;
    let b = finite_vec(theta_b, "theta_b")?;
    same_len(&a, &b, "theta_a", "theta_b")?;
    let mut init = Bezier::straight(&a, &b).map_err(errors::landscape)?;
    if let Some(c) = control {
        let c = finite_vec(c, "control")?;
        same_len(&a, &c, "theta_a", "control")?;
        init.control = c;
    }
    let cfg = BezierConfig { steps, samples_per_step, lr, seed };
    let slot: Slot = Arc::default();
    let mut obj = loss_objective(f, Some(g), a.len(), slot.clone());
    let res = py.detach(|| -> gradlab_landscape::Result<_> {
        let (curve, history) = train_bezier(&mut obj, init, &cfg)?;
        let pc = curve.profile(&mut obj, points)?;
        let pl = gradlab_landscape::connectivity::linear_path(&mut obj, &a, &b, points)?;
        Ok((curve, history, pc, pl))
    });
    if let Some(e) = take(&slot) {
        return Err(e);
    }
    let (curve, history, pc, pl) = res.map_err(errors::landscape)?;
    let d = PyDict::new(py);
    d.set_item("control", to_py1(py, curve.control))?;
    d.set_item("history", to_py1(py, history))?;
    d.set_item("curve", profile_dict(py, pc)?)?;
    d.set_item("line", profile_dict(py, pl)?)?;
    Ok(d)
}

/// A surface from `(xs, ys, z)` arrays as `surface` returns them (`z` is `[len(ys), len(xs)]`).
fn surface_from(xs: &Bound<'_, PyAny>, ys: &Bound<'_, PyAny>, z: &Bound<'_, PyAny>) -> PyResult<Surface> {
    let xs = finite_vec(xs, "xs")?;
    let ys = finite_vec(ys, "ys")?;
    let m = crate::arrays::matrix(z, "z")?;
    if m.shape() != (ys.len(), xs.len()) {
        return Err(PyValueError::new_err(format!(
            "z has shape {:?}, xs {} and ys {} entries: allowed: z of shape (len(ys), len(xs))",
            m.shape(),
            xs.len(),
            ys.len()
        )));
    }
    let loss = m.view().with_f64(|v| crate::arrays::row_major(&v));
    Ok(Surface { xs, ys, loss })
}

/// Writes a surface (`xs, ys, z` as `surface` returns them) into `directory` as
/// `<stem>.npy` (z, NaN where not finite), `<stem>_x.npy`, `<stem>_y.npy` and `<stem>.json`.
/// Returns the paths written.
#[pyfunction]
#[pyo3(signature = (directory, xs, ys, z, stem = "surface"))]
pub fn save_surface(
    py: Python<'_>,
    directory: PathBuf,
    xs: &Bound<'_, PyAny>,
    ys: &Bound<'_, PyAny>,
    z: &Bound<'_, PyAny>,
    stem: &str,
) -> PyResult<Vec<PathBuf>> {
    let s = surface_from(xs, ys, z)?;
    py.detach(|| gradlab_landscape::output::save_surface(&directory, stem, &s)).map_err(errors::landscape)
}

/// Writes a surface as a legacy-VTK structured grid for ParaView (points `(x, y, z_scale·loss)`,
/// point fields `loss`, `log10_loss`, `valid`; non-finite losses flagged by `valid = 0`).
#[pyfunction]
#[pyo3(signature = (path, xs, ys, z, z_scale = 1.0))]
pub fn write_vtk(
    py: Python<'_>,
    path: PathBuf,
    xs: &Bound<'_, PyAny>,
    ys: &Bound<'_, PyAny>,
    z: &Bound<'_, PyAny>,
    z_scale: f64,
) -> PyResult<()> {
    if !z_scale.is_finite() {
        return Err(PyValueError::new_err(format!("z_scale = {z_scale}: allowed: a finite number")));
    }
    let s = surface_from(xs, ys, z)?;
    py.detach(|| gradlab_landscape::output::write_vtk(&path, &s, z_scale)).map_err(errors::landscape)
}
