//! numpy inputs: float32 or float64, any memory order (C, Fortran, strided), checked shape.
//! Other dtypes are refused with `TypeError` (nothing is cast silently); a wrong number of
//! dimensions or a wrong shape is `ValueError`.

use ndarray::{Array2, ArrayView2};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A borrowed 2-D float array.
pub enum Matrix<'py> {
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
}

/// A borrowed 1-D float array.
pub enum Vector<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    F32(PyReadonlyArray1<'py, f32>),
}

fn refuse(obj: &Bound<'_, PyAny>, name: &str, ndim: usize) -> PyErr {
    match obj.cast::<PyUntypedArray>() {
        Ok(a) => {
            if a.ndim() != ndim {
                PyValueError::new_err(format!(
                    "{name}: expected a {ndim}-D array, got {}-D with shape {:?}",
                    a.ndim(),
                    a.shape()
                ))
            } else {
                PyTypeError::new_err(format!(
                    "{name}: dtype {} is not supported; expected float32 or float64 (convert explicitly, \
                     e.g. {name}.astype(numpy.float64))",
                    a.dtype().str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
                ))
            }
        }
        Err(_) => PyTypeError::new_err(format!(
            "{name}: expected a numpy.ndarray of float32 or float64, got {}",
            obj.get_type().name().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
        )),
    }
}

pub fn matrix<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Matrix<'py>> {
    if let Ok(a) = obj.cast::<PyArray2<f64>>() {
        return Ok(Matrix::F64(a.try_readonly()?));
    }
    if let Ok(a) = obj.cast::<PyArray2<f32>>() {
        return Ok(Matrix::F32(a.try_readonly()?));
    }
    Err(refuse(obj, name, 2))
}

pub fn vector<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Vector<'py>> {
    if let Ok(a) = obj.cast::<PyArray1<f64>>() {
        return Ok(Vector::F64(a.try_readonly()?));
    }
    if let Ok(a) = obj.cast::<PyArray1<f32>>() {
        return Ok(Vector::F32(a.try_readonly()?));
    }
    Err(refuse(obj, name, 1))
}

/// A view of a 2-D float array that may cross into `Python::detach` (no Python object in it).
#[derive(Clone)]
pub enum View<'a> {
    F64(ArrayView2<'a, f64>),
    F32(ArrayView2<'a, f32>),
}

impl<'a> View<'a> {
    /// The transpose (a view, no copy).
    pub fn t(&self) -> View<'a> {
        match self {
            View::F64(v) => View::F64((*v).reversed_axes()),
            View::F32(v) => View::F32((*v).reversed_axes()),
        }
    }

    pub fn shape(&self) -> (usize, usize) {
        match self {
            View::F64(v) => v.dim(),
            View::F32(v) => v.dim(),
        }
    }

    /// As float64 (float32 is widened exactly; float64 is borrowed, not copied).
    pub fn with_f64<R>(&self, f: impl FnOnce(ArrayView2<'_, f64>) -> R) -> R {
        match self {
            View::F64(v) => f(v.view()),
            View::F32(v) => {
                let owned: Array2<f64> = v.mapv(f64::from);
                f(owned.view())
            }
        }
    }
}

/// A row-major copy of any 2-D view, copied in 32 × 32 tiles so that a Fortran-ordered or
/// transposed source is read a cache line at a time (ndarray's element-order copy of a
/// transposed 2000 × 2200 array takes ≈ 10× longer).
pub fn row_major<T: Copy + Default>(v: &ArrayView2<'_, T>) -> Vec<T> {
    const B: usize = 32;
    let (rows, cols) = v.dim();
    let mut out = vec![T::default(); rows * cols];
    for i0 in (0..rows).step_by(B) {
        for j0 in (0..cols).step_by(B) {
            for j in j0..(j0 + B).min(cols) {
                for i in i0..(i0 + B).min(rows) {
                    out[i * cols + j] = v[[i, j]];
                }
            }
        }
    }
    out
}

impl Matrix<'_> {
    pub fn view(&self) -> View<'_> {
        match self {
            Matrix::F64(a) => View::F64(a.as_array()),
            Matrix::F32(a) => View::F32(a.as_array()),
        }
    }

    pub fn shape(&self) -> (usize, usize) {
        let s = match self {
            Matrix::F64(a) => a.shape(),
            Matrix::F32(a) => a.shape(),
        };
        (s[0], s[1])
    }
}

impl Vector<'_> {
    /// An owned float64 copy (float32 widened exactly).
    pub fn to_vec(&self) -> Vec<f64> {
        match self {
            Vector::F64(a) => a.as_array().to_vec(),
            Vector::F32(a) => a.as_array().iter().map(|&v| f64::from(v)).collect(),
        }
    }
}

/// A float vector argument as an owned `Vec<f64>`, refusing non-finite entries.
pub fn finite_vec(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<f64>> {
    let v = vector(obj, name)?.to_vec();
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(PyValueError::new_err(format!("{name}[{i}] = {x}: allowed: finite numbers")));
    }
    Ok(v)
}

pub fn to_py1<'py>(py: Python<'py>, v: Vec<f64>) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_vec(py, v)
}
