//! `gradlab.aerosol`: the M7 box model on `[N, 33]` arrays (the `m7-step` layout).

use crate::arrays::matrix;
use crate::errors;
use crate::json::{from_py, to_py};
use gradlab_aerosol::config::M7Config;
use gradlab_aerosol::{layout, step_file};
use numpy::{PyArray2, ToPyArray};
use pyo3::prelude::*;
use std::path::PathBuf;

/// The M7 aerosol microphysics box model.
#[pyclass(module = "gradlab.aerosol", name = "M7", frozen)]
pub struct M7 {
    model: gradlab_aerosol::M7,
}

/// A config given as None (defaults), a dict (JSON fields) or a path to a JSON file.
pub fn m7_config(config: Option<&Bound<'_, PyAny>>) -> PyResult<M7Config> {
    let Some(c) = config.filter(|c| !c.is_none()) else { return Ok(M7Config::default()) };
    let cfg = if let Ok(p) = c.extract::<PathBuf>() {
        M7Config::from_json_file(&p).map_err(errors::aerosol)?
    } else {
        let cfg: M7Config = from_py(c, "M7 config")?;
        cfg.validate().map_err(errors::aerosol)?;
        cfg
    };
    Ok(cfg)
}

#[pymethods]
impl M7 {
    /// `M7(config=None)`: `config` is None (the M7 defaults: dt = 720 s, ZSR water, …), a dict
    /// of the JSON config's fields, or the path of a JSON config file.
    #[new]
    #[pyo3(signature = (config = None))]
    fn new(config: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let cfg = m7_config(config)?;
        Ok(M7 { model: gradlab_aerosol::M7::new(cfg).map_err(errors::aerosol)? })
    }

    /// The configuration in use, as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, self.model.config())
    }

    /// One box-model step of every cell: `cells` is `[N, 33]` (or `[N, 34]` with a trailing
    /// boundary-layer flag), float32 or float64, any memory order; returns `[N, 58]` float64.
    fn step<'py>(&self, py: Python<'py>, cells: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let m = matrix(cells, "cells")?;
        let v = m.view();
        let out = py.detach(|| v.with_f64(|x| step_file::step_rows(&self.model, &x))).map_err(errors::aerosol)?;
        Ok(out.to_pyarray(py))
    }

    /// Names of the 58 output columns.
    #[getter]
    fn columns(&self) -> Vec<String> {
        layout::step_output_columns().into_iter().map(|c| c.name).collect()
    }

    /// Units of the 58 output columns.
    #[getter]
    fn units(&self) -> Vec<String> {
        layout::step_output_columns().into_iter().map(|c| c.unit).collect()
    }

    /// Names of the 33 input columns (a 34th, `boundary_layer`, is optional).
    #[getter]
    fn input_columns(&self) -> Vec<String> {
        layout::step_input_columns().into_iter().map(|c| c.name).collect()
    }

    fn __repr__(&self) -> String {
        format!("M7(dt={} s, water={:?})", self.model.config().dt, self.model.config().water)
    }
}

/// The `m7-step` file path of the library (what `cargo xtask m7-step` runs): reads `input`
/// (.npy), steps every cell, writes `output` (.npy, `[N, 58]` float64) and its columns file.
/// Returns the report as a dict.
#[pyfunction]
#[pyo3(signature = (input, output, config = None, overwrite = false))]
pub fn m7_step_file<'py>(
    py: Python<'py>,
    input: PathBuf,
    output: PathBuf,
    config: Option<PathBuf>,
    overwrite: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let report =
        py.detach(|| step_file::m7_step(&input, &output, config.as_deref(), overwrite)).map_err(errors::aerosol)?;
    to_py(py, &report)
}

/// `n` realistic cells in the `m7-step` layout (`[n, 33]` float64): the states the dataset
/// sampler (`m7-generate`) draws for stream `seed`, cells `start..start + n`, before their
/// recorded step. Deterministic for any thread count.
#[pyfunction]
#[pyo3(signature = (n, seed = 0, start = 0, config = None))]
pub fn sample_cells<'py>(
    py: Python<'py>,
    n: usize,
    seed: u64,
    start: u64,
    config: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    const MAX_CELLS: usize = 10_000_000;
    if n > MAX_CELLS {
        return Err(pyo3::exceptions::PyValueError::new_err(format!("n = {n}: allowed: 0 <= n <= {MAX_CELLS}")));
    }
    let cfg = m7_config(config)?;
    let out = py
        .detach(|| -> gradlab_aerosol::Result<ndarray::Array2<f64>> {
            let cells = gradlab_aerosol::sampler::sample_cells(
                &cfg,
                &gradlab_aerosol::sampler::SamplerConfig::default(),
                seed,
                start,
                n,
            )?;
            let mut out = ndarray::Array2::zeros((n, layout::STEP_INPUT_COLS));
            for (row, c) in out.outer_iter_mut().zip(&cells) {
                let mut row = row;
                layout::write_step_row(&c.env, &c.before, row.as_slice_mut().expect("standard layout"));
            }
            Ok(out)
        })
        .map_err(errors::aerosol)?;
    Ok(out.to_pyarray(py))
}

/// A trained M7 emulator (what `cargo xtask experiment m7-emulator` saves: a folder with
/// `emulator.json` and `weights.safetensors`).
#[pyclass(module = "gradlab.aerosol", name = "Emulator", frozen)]
pub struct Emulator {
    em: gradlab_aerosol::emulator::Emulator,
}

impl Emulator {
    fn check_x(&self, m: &crate::arrays::Matrix<'_>) -> PyResult<()> {
        let n_x = layout::x_columns(false).len();
        if m.shape().1 != n_x {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "x has shape {:?}: allowed: [N, {n_x}] (the dataset's X columns, `input_columns`)",
                m.shape()
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl Emulator {
    /// `Emulator.load(directory)`: loads a saved emulator (CPU).
    #[staticmethod]
    fn load(py: Python<'_>, directory: PathBuf) -> PyResult<Self> {
        let cfg = directory.join("emulator.json");
        if !cfg.is_file() {
            return Err(pyo3::exceptions::PyFileNotFoundError::new_err(format!(
                "{}: no saved emulator there (expected emulator.json and weights.safetensors, as written by \
                 Emulator::save / the m7-emulator experiment)",
                directory.display()
            )));
        }
        let em = py.detach(|| gradlab_aerosol::emulator::Emulator::load(&directory)).map_err(errors::aerosol)?;
        Ok(Emulator { em })
    }

    /// Predicted tendencies of the 24 state columns and the 4 water columns, `[N, 28]` float32
    /// in physical units (the head applied), for inputs `x` `[N, 32]` (the dataset's X layout:
    /// 8 environment columns, then the state; float32 or float64, any memory order). The network
    /// computes in float32: float64 input is rounded to float32 first.
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let m = matrix(x, "x")?;
        self.check_x(&m)?;
        let v = m.view();
        let out = py
            .detach(|| match &v {
                crate::arrays::View::F32(a) => self.em.predict(a),
                crate::arrays::View::F64(a) => self.em.predict(&a.mapv(|x| x as f32).view()),
            })
            .map_err(errors::aerosol)?;
        Ok(out.to_pyarray(py))
    }

    /// One emulated step in the dataset layout: `x` `[N, 32]` → `[N, 28]` float64 (the state
    /// after the step, then the water), as `m7-emulator` evaluates it; with the correction head
    /// no state is negative.
    fn step<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let m = matrix(x, "x")?;
        self.check_x(&m)?;
        let v = m.view();
        let out = py.detach(|| v.with_f64(|a| self.em.step_table(&a))).map_err(errors::aerosol)?;
        Ok(out.to_pyarray(py))
    }

    /// Names of the 32 input columns.
    #[getter]
    fn input_columns(&self) -> Vec<String> {
        layout::x_columns(false).into_iter().map(|c| c.name).collect()
    }

    /// Names of the 28 output columns (states, then water).
    #[getter]
    fn output_columns(&self) -> Vec<String> {
        layout::y_columns(false).into_iter().map(|c| c.name).collect()
    }

    /// The box model's time step the emulator was trained for [s].
    #[getter]
    fn dt(&self) -> f64 {
        self.em.dt()
    }

    /// Number of trained parameters.
    #[getter]
    fn parameters(&self) -> usize {
        self.em.parameters()
    }

    /// The emulator's configuration, as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, self.em.config())
    }

    fn __repr__(&self) -> String {
        format!("Emulator(dt={} s, parameters={})", self.em.dt(), self.em.parameters())
    }
}
