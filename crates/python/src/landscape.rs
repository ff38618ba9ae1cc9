//! `gradlab.landscape`: loss surfaces and Hessian eigenpairs of user callables over flat
//! numpy vectors.

use crate::arrays::{finite_vec, to_py1};
use crate::errors;
use gradlab_landscape::hessian::{HessianOperator, HvpMethod, LinearOperator};
use gradlab_landscape::lanczos::{LanczosConfig, Which, lanczos};
use gradlab_landscape::objective::FnObjective;
use gradlab_landscape::surface::{Axis, SurfaceOptions, evaluate_surface};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
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
    let obj = {
        let slot = slot.clone();
        FnObjective::new(theta.len(), move |t: &[f64], _g: Option<&mut [f64]>| {
            Python::attach(|py| match call_scalar(py, &f, t, "loss") {
                Ok(v) => v,
                Err(e) => {
                    keep(&slot, e);
                    f64::NAN
                }
            })
        })
    };
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

/// The `k` extreme eigenvalues (and unit eigenvectors) of the Hessian at `theta` by Lanczos
/// with full reorthogonalisation. Give exactly one of `hvp(v) -> H v` (the product at `theta`)
/// or `grad(x) -> ∇L(x)` (products by central differences of gradients with step `h`).
/// Returns `(values, vectors)` with `vectors[i]` for `values[i]` (largest first, or smallest
/// first with `which="smallest"`).
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
    let cfg = LanczosConfig { max_steps: max_steps.unwrap_or((4 * k + 20).min(n)), tol, seed };
    let slot: Slot = Arc::default();
    let res = match (hvp, grad) {
        (Some(f), None) => {
            let mut op = PyHvp { f: callable(f, "hvp")?, n, slot: slot.clone() };
            py.detach(|| lanczos(&mut op, k, which, &cfg))
        }
        (None, Some(g)) => {
            let g = callable(g, "grad")?;
            let s2 = slot.clone();
            let mut obj = FnObjective::new(n, move |t: &[f64], out: Option<&mut [f64]>| {
                let Some(out) = out else { return f64::NAN };
                Python::attach(|py| match call_vec(py, &g, t, out, "grad") {
                    Ok(()) => 0.0,
                    Err(e) => {
                        keep(&s2, e);
                        out.fill(f64::NAN);
                        f64::NAN
                    }
                })
            });
            let method = HvpMethod::FiniteDifference { h };
            py.detach(|| {
                let mut op = HessianOperator::new(&mut obj, &theta, method)?;
                lanczos(&mut op, k, which, &cfg)
            })
        }
        _ => return Err(PyValueError::new_err("give exactly one of hvp= or grad=")),
    };
    if let Some(e) = take(&slot) {
        return Err(e);
    }
    let r = res.map_err(errors::landscape)?;
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
