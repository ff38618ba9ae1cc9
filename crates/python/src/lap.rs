//! `gradlab.lap`: scipy's `linear_sum_assignment` on the track crate's sparse LAP solver.

use crate::arrays::{View, matrix, row_major};
use crate::errors;
use gradlab_track::sparse_lap::{SparseCost, Unmatched, solve};
use numpy::PyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use rayon::prelude::*;

type Pair<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// The cost matrix as the solver's CSR (negated for `maximize`), read row by row from memory:
/// a C-contiguous array in place, any other layout (Fortran, strided) through one row-major
/// copy, which costs less than reading it entry by entry across rows.
fn build(m: &View<'_>, maximize: bool) -> gradlab_track::Result<SparseCost> {
    let (rows, cols) = m.shape();
    let sign = if maximize { -1.0 } else { 1.0 };
    match m {
        View::F64(v) => {
            let copy;
            let s = match v.as_slice() {
                Some(s) => s,
                None => {
                    copy = row_major(v);
                    &copy[..]
                }
            };
            if maximize {
                SparseCost::from_dense_by(rows, cols, |i, j| -s[i * cols + j])
            } else {
                SparseCost::from_dense(rows, cols, s)
            }
        }
        View::F32(v) => {
            let copy;
            let s = match v.as_slice() {
                Some(s) => s,
                None => {
                    copy = row_major(v);
                    &copy[..]
                }
            };
            SparseCost::from_dense_by(rows, cols, |i, j| sign * f64::from(s[i * cols + j]))
        }
    }
}

/// The matched `(row, col)` pairs, by row. A tall matrix (more rows than columns) is solved as
/// its transpose when rows and columns may swap roles, i.e. without an unmatched cost (which
/// prices unmatched rows, not columns): the optimum is the same, and the solver, which gives
/// every row a way out, is much faster when the rows are the smaller side.
fn solve_pairs(m: &View<'_>, maximize: bool, unmatched: Unmatched) -> gradlab_track::Result<Vec<(i64, i64)>> {
    let (rows, cols) = m.shape();
    let swap = rows > cols && matches!(unmatched, Unmatched::Forbidden);
    let problem = if swap { m.t() } else { m.clone() };
    let sol = solve(&build(&problem, maximize)?, unmatched)?;
    let mut pairs: Vec<(i64, i64)> = sol
        .row_to_col
        .iter()
        .enumerate()
        .filter_map(|(i, j)| j.map(|j| if swap { (i64::from(j), i as i64) } else { (i as i64, i64::from(j)) }))
        .collect();
    if swap {
        pairs.sort_unstable();
    }
    Ok(pairs)
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

/// The pairs as `(row_ind, col_ind)`; an incomplete matching is infeasible unless partial
/// results were asked for.
fn result(pairs: Vec<(i64, i64)>, rows: usize, cols: usize, full: bool) -> PyResult<(Vec<i64>, Vec<i64>)> {
    if full && pairs.len() < rows.min(cols) {
        return Err(PyValueError::new_err(format!(
            "cost matrix is infeasible: at most {} of min(rows, cols) = {} pairs can be matched without a \
             forbidden (inf) entry; pass partial=True or unmatched_cost=… for a partial matching",
            pairs.len(),
            rows.min(cols)
        )));
    }
    Ok(pairs.into_iter().unzip())
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
    let pairs = py.detach(|| solve_pairs(&v, maximize, unmatched)).map_err(|e| explain(e, maximize))?;
    let (r, c) = result(pairs, rows, cols, full)?;
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
    // In parallel, as the track crate's `solve_many` (which takes built problems).
    let sols = py
        .detach(|| {
            views.par_iter().map(|m| solve_pairs(m, maximize, unmatched)).collect::<gradlab_track::Result<Vec<_>>>()
        })
        .map_err(|e| explain(e, maximize))?;
    let out = PyList::empty(py);
    for (k, (s, (rows, cols))) in sols.into_iter().zip(shapes).enumerate() {
        let (r, c) = result(s, rows, cols, full)
            .map_err(|e| PyValueError::new_err(format!("cost_matrices[{k}]: {}", e.value(py))))?;
        out.append((PyArray1::from_vec(py, r), PyArray1::from_vec(py, c)))?;
    }
    Ok(out)
}
