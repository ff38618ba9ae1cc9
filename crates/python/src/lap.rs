//! `gradlab.lap`: scipy's `linear_sum_assignment` on the track crate's sparse LAP solver.

use crate::arrays::{View, matrix};
use crate::errors;
use gradlab_track::sparse_lap::{Matching, SparseCost, Unmatched, solve, solve_many};
use numpy::PyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

type Pair<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// The cost matrix as the solver's CSR (negated for `maximize`); C-contiguous float64 is read
/// as one slice, other layouts and float32 entry by entry (no copy of the matrix).
fn build(m: &View<'_>, maximize: bool) -> gradlab_track::Result<SparseCost> {
    let (rows, cols) = m.shape();
    let sign = if maximize { -1.0 } else { 1.0 };
    match m {
        View::F64(v) => match (v.as_slice(), maximize) {
            (Some(s), false) => SparseCost::from_dense(rows, cols, s),
            _ => SparseCost::from_dense_by(rows, cols, |i, j| sign * v[[i, j]]),
        },
        View::F32(v) => SparseCost::from_dense_by(rows, cols, |i, j| sign * f64::from(v[[i, j]])),
    }
}

fn mode(maximize: bool, partial: bool, unmatched_cost: Option<f64>) -> PyResult<Unmatched> {
    match unmatched_cost {
        Some(u) if !u.is_finite() => Err(PyValueError::new_err(format!(
            "unmatched_cost = {u}: allowed: a finite number (or None for no unmatched rows)"
        ))),
        Some(_) if partial => Err(PyValueError::new_err(
            "partial = True and unmatched_cost are exclusive: unmatched_cost already allows a partial matching",
        )),
        Some(u) => Ok(Unmatched::Cost(if maximize { -u } else { u })),
        None => Ok(Unmatched::Forbidden),
    }
}

fn explain(e: gradlab_track::Error, maximize: bool) -> PyErr {
    let err = errors::track(e);
    if maximize {
        Python::attach(|py| {
            PyValueError::new_err(format!(
                "{} [with maximize=True the matrix is negated first: -inf marks a forbidden pair, +inf is refused]",
                err.value(py)
            ))
        })
    } else {
        err
    }
}

/// Matched rows in ascending order and their columns; an incomplete matching is infeasible
/// unless partial results were asked for.
fn result(m: &Matching, rows: usize, cols: usize, full: bool) -> PyResult<(Vec<i64>, Vec<i64>)> {
    if full && m.size < rows.min(cols) {
        return Err(PyValueError::new_err(format!(
            "cost matrix is infeasible: at most {} of min(rows, cols) = {} pairs can be matched without a \
             forbidden (inf) entry; pass partial=True or unmatched_cost=… for a partial matching",
            m.size,
            rows.min(cols)
        )));
    }
    let (mut r, mut c) = (Vec::with_capacity(m.size), Vec::with_capacity(m.size));
    for (i, j) in m.row_to_col.iter().enumerate() {
        if let Some(j) = j {
            r.push(i as i64);
            c.push(i64::from(*j));
        }
    }
    Ok((r, c))
}

/// Solve the linear sum assignment problem (scipy.optimize.linear_sum_assignment's signature
/// and result).
#[pyfunction]
#[pyo3(signature = (cost_matrix, maximize = false, *, partial = false, unmatched_cost = None))]
pub fn linear_sum_assignment<'py>(
    py: Python<'py>,
    cost_matrix: &Bound<'py, PyAny>,
    maximize: bool,
    partial: bool,
    unmatched_cost: Option<f64>,
) -> PyResult<Pair<'py>> {
    let m = matrix(cost_matrix, "cost_matrix")?;
    let unmatched = mode(maximize, partial, unmatched_cost)?;
    let (rows, cols) = m.shape();
    let full = !partial && unmatched_cost.is_none();
    let v = m.view();
    let sol = py.detach(|| build(&v, maximize).and_then(|c| solve(&c, unmatched))).map_err(|e| explain(e, maximize))?;
    let (r, c) = result(&sol, rows, cols, full)?;
    Ok((PyArray1::from_vec(py, r), PyArray1::from_vec(py, c)))
}

/// Many independent problems at once, solved in parallel.
#[pyfunction]
#[pyo3(signature = (cost_matrices, maximize = false, *, partial = false, unmatched_cost = None))]
pub fn linear_sum_assignment_many<'py>(
    py: Python<'py>,
    cost_matrices: &Bound<'py, PyAny>,
    maximize: bool,
    partial: bool,
    unmatched_cost: Option<f64>,
) -> PyResult<Bound<'py, PyList>> {
    let unmatched = mode(maximize, partial, unmatched_cost)?;
    let full = !partial && unmatched_cost.is_none();
    let mut mats = Vec::new();
    for (k, item) in cost_matrices.try_iter()?.enumerate() {
        mats.push(matrix(&item?, &format!("cost_matrices[{k}]"))?);
    }
    let shapes: Vec<(usize, usize)> = mats.iter().map(|m| m.shape()).collect();
    let views: Vec<View<'_>> = mats.iter().map(|m| m.view()).collect();
    let sols = py
        .detach(|| {
            let problems = views.iter().map(|m| build(m, maximize)).collect::<gradlab_track::Result<Vec<_>>>()?;
            solve_many(&problems, unmatched)
        })
        .map_err(|e| explain(e, maximize))?;
    let out = PyList::empty(py);
    for (k, (s, (rows, cols))) in sols.iter().zip(shapes).enumerate() {
        let (r, c) = result(s, rows, cols, full)
            .map_err(|e| PyValueError::new_err(format!("cost_matrices[{k}]: {}", e.value(py))))?;
        out.append((PyArray1::from_vec(py, r), PyArray1::from_vec(py, c)))?;
    }
    Ok(out)
}
