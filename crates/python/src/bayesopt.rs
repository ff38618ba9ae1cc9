//! `gradlab.bayesopt`: the ask/tell `Study` and a `gp_minimize`-shaped `minimize`.

use crate::errors;
use gradlab_bayesopt::acquisition::Acquisition;
use gradlab_bayesopt::space::{Param, Point, Space, Value};
use gradlab_bayesopt::study::{Incumbent, LagPolicy, StudyConfig, Trial as RsTrial, TrialState};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::path::PathBuf;

fn bad(name: &str, spec: &Bound<'_, PyAny>) -> PyErr {
    PyValueError::new_err(format!(
        "parameter `{name}`: {} is not a parameter spec; allowed: (\"float\", low, high), (\"log\", low, high), \
         (\"int\", low, high), (\"cat\", [choices…]), a (low, high) pair (ints: int, floats: float) or a list of \
         string choices",
        spec.repr().map(|r| r.to_string()).unwrap_or_default()
    ))
}

fn is_int(x: &Bound<'_, PyAny>) -> bool {
    x.is_instance_of::<PyInt>() && !x.is_instance_of::<pyo3::types::PyBool>()
}

/// One parameter from its Python spec.
fn param(name: &str, spec: &Bound<'_, PyAny>) -> PyResult<Param> {
    let name_s = name.to_string();
    let items: Vec<Bound<'_, PyAny>> = if spec.is_instance_of::<PyTuple>() || spec.is_instance_of::<PyList>() {
        spec.try_iter()?.collect::<PyResult<_>>()?
    } else {
        return Err(bad(name, spec));
    };
    let f = |x: &Bound<'_, PyAny>| -> PyResult<f64> {
        if x.is_instance_of::<PyFloat>() || is_int(x) { x.extract::<f64>() } else { Err(bad(name, spec)) }
    };
    let i =
        |x: &Bound<'_, PyAny>| -> PyResult<i64> { if is_int(x) { x.extract::<i64>() } else { Err(bad(name, spec)) } };
    let choices =
        |x: &Bound<'_, PyAny>| -> PyResult<Vec<String>> { x.extract::<Vec<String>>().map_err(|_| bad(name, spec)) };
    // A list of strings: categorical.
    if !items.is_empty() && items.iter().all(|x| x.is_instance_of::<PyString>()) && spec.is_instance_of::<PyList>() {
        return Ok(Param::Categorical { name: name_s, choices: choices(spec)? });
    }
    if let Some(kind) = items.first().filter(|x| x.is_instance_of::<PyString>()) {
        let kind: String = kind.extract()?;
        return match (kind.as_str(), items.len()) {
            ("float" | "real", 3) => Ok(Param::Float { name: name_s, low: f(&items[1])?, high: f(&items[2])? }),
            ("log" | "log_float" | "log-uniform", 3) => {
                Ok(Param::LogFloat { name: name_s, low: f(&items[1])?, high: f(&items[2])? })
            }
            ("int" | "integer", 3) => Ok(Param::Int { name: name_s, low: i(&items[1])?, high: i(&items[2])? }),
            ("cat" | "categorical", 2) => Ok(Param::Categorical { name: name_s, choices: choices(&items[1])? }),
            _ => Err(bad(name, spec)),
        };
    }
    if items.len() == 2 {
        if is_int(&items[0]) && is_int(&items[1]) {
            return Ok(Param::Int { name: name_s, low: i(&items[0])?, high: i(&items[1])? });
        }
        return Ok(Param::Float { name: name_s, low: f(&items[0])?, high: f(&items[1])? });
    }
    Err(bad(name, spec))
}

/// A space from a dict `{name: spec}` (order kept) or a list of specs (names `x0`, `x1`, …).
pub fn space(obj: &Bound<'_, PyAny>) -> PyResult<Space> {
    let mut params = Vec::new();
    if let Ok(d) = obj.cast::<PyDict>() {
        for (k, v) in d.iter() {
            let name: String = k.extract().map_err(|_| PyTypeError::new_err("space: parameter names must be str"))?;
            params.push(param(&name, &v)?);
        }
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        for (k, v) in obj.try_iter()?.enumerate() {
            params.push(param(&format!("x{k}"), &v?)?);
        }
    } else {
        return Err(PyTypeError::new_err("space: expected a dict {name: spec} or a list of specs"));
    }
    Space::new(params).map_err(errors::bayesopt)
}

/// scikit-optimize's `acq_func` names: `"EI"`, `"PI"`, `"LCB"`, `"gp_hedge"` (η = 1, as
/// scikit-optimize's), and ours `"LogEI"`; absent: the study default (GP-Hedge with η = 0.1).
fn acquisition(name: Option<&str>) -> PyResult<Acquisition> {
    Ok(match name {
        None => gradlab_bayesopt::acquisition::STUDY_ACQUISITION,
        Some("LogEI") => Acquisition::LogEi { xi: 0.01 },
        Some("EI") => Acquisition::Ei { xi: 0.01 },
        Some("PI") => Acquisition::Pi { xi: 0.01 },
        Some("LCB") => Acquisition::Ucb { kappa: 1.96 },
        Some("gp_hedge") => Acquisition::GpHedge { eta: 1.0 },
        Some(o) => {
            return Err(PyValueError::new_err(format!(
                "acq_func = {o:?}: allowed: \"LogEI\", \"EI\", \"PI\", \"LCB\" or \"gp_hedge\" (absent: GP-Hedge with eta = 0.1)"
            )));
        }
    })
}

fn lag(obj: Option<&Bound<'_, PyAny>>) -> PyResult<LagPolicy> {
    let Some(o) = obj else { return Ok(LagPolicy::default()) };
    if o.is_none() {
        return Ok(LagPolicy::Never);
    }
    if let Ok(s) = o.extract::<String>() {
        return match s.as_str() {
            "inf" | "never" => Ok(LagPolicy::Never),
            "adaptive" => Ok(LagPolicy::adaptive()),
            _ => Err(PyValueError::new_err(format!("lag = {s:?}: allowed: an int >= 1, \"inf\" or \"adaptive\""))),
        };
    }
    if let Ok(f) = o.extract::<f64>()
        && f == f64::INFINITY
    {
        return Ok(LagPolicy::Never);
    }
    match o.extract::<i64>() {
        Ok(k) if k >= 1 => Ok(LagPolicy::Every(k as usize)),
        _ => Err(PyValueError::new_err(format!(
            "lag = {}: allowed: an int >= 1 (refit every k asks), \"inf\" or \"adaptive\"",
            o.repr()?
        ))),
    }
}

fn value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => f.into_pyobject(py)?.into_any(),
        Value::Choice(s) => s.into_pyobject(py)?.into_any(),
    })
}

fn params_dict<'py>(py: Python<'py>, space: &Space, p: &Point) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (param, v) in space.params().iter().zip(p) {
        d.set_item(param.name(), value_to_py(py, v)?)?;
    }
    Ok(d)
}

/// A point proposed by `Study.ask()`.
#[pyclass(module = "gradlab.bayesopt", name = "Trial", frozen)]
pub struct Trial {
    /// Trial id (ask order); pass the trial (or this id) to `Study.tell`.
    #[pyo3(get)]
    id: u64,
    /// Parameter values by name.
    #[pyo3(get)]
    params: Py<PyDict>,
}

#[pymethods]
impl Trial {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Trial(id={}, params={})", self.id, self.params.bind(py).repr()?))
    }
}

fn trial(py: Python<'_>, space: &Space, t: &RsTrial) -> PyResult<Trial> {
    Ok(Trial { id: t.id, params: params_dict(py, space, &t.params)?.unbind() })
}

fn trial_id(t: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(t) = t.cast::<Trial>() {
        return Ok(t.get().id);
    }
    t.extract::<u64>().map_err(|_| PyTypeError::new_err("trial: expected a Trial from ask() or its integer id"))
}

/// An ask/tell Bayesian-optimisation study (minimisation) on a Gaussian process whose
/// Cholesky factor is extended lazily.
#[pyclass(module = "gradlab.bayesopt", name = "Study")]
pub struct Study {
    study: gradlab_bayesopt::Study,
    /// Points per `ask_batch()` by default.
    #[pyo3(get)]
    q: usize,
}

#[pymethods]
impl Study {
    /// `Study(space, lag=3, q=1, seed=0, n_initial=0)`. `space` is a dict such as
    /// `{"lr": ("log", 1e-4, 1e-1), "layers": ("int", 1, 4), "act": ("cat", ["relu", "tanh"])}`;
    /// `lag` is k (refit the GP hyperparameters every k asks), `"inf"` (fit once, then only
    /// extend the factor) or `"adaptive"`; `n_initial` is the Latin-hypercube design size (0:
    /// max(5, 2·dim + 1)); `incumbent` is what expected improvement improves on:
    /// `"best_observed"` (default) or `"posterior_mean"` (the lowest posterior mean at the
    /// observed points — for noisy objectives; report `best_by_posterior_mean` then);
    /// `acq_func` is scikit-optimize's: `"EI"`, `"PI"`, `"LCB"`, `"gp_hedge"`, or `"LogEI"`
    /// (default).
    #[new]
    #[pyo3(signature = (space, lag = None, q = 1, seed = 0, n_initial = 0, incumbent = "best_observed", acq_func = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        space: &Bound<'_, PyAny>,
        lag: Option<&Bound<'_, PyAny>>,
        q: usize,
        seed: u64,
        n_initial: usize,
        incumbent: &str,
        acq_func: Option<&str>,
    ) -> PyResult<Self> {
        if q == 0 {
            return Err(PyValueError::new_err("q = 0: allowed: q >= 1"));
        }
        let incumbent = match incumbent {
            "best_observed" => Incumbent::BestObserved,
            "posterior_mean" => Incumbent::PosteriorMean,
            o => {
                return Err(PyValueError::new_err(format!(
                    "incumbent = {o:?}: allowed: \"best_observed\" or \"posterior_mean\""
                )));
            }
        };
        let sp = self::space(space)?;
        let acquisition = self::acquisition(acq_func)?;
        let config =
            StudyConfig { seed, n_initial, lag: self::lag(lag)?, incumbent, acquisition, ..StudyConfig::default() };
        let study = py.detach(|| gradlab_bayesopt::Study::new(sp, config)).map_err(errors::bayesopt)?;
        Ok(Study { study, q })
    }

    /// One new point to evaluate.
    fn ask(&mut self, py: Python<'_>) -> PyResult<Trial> {
        let t = py.detach(|| self.study.ask()).map_err(errors::bayesopt)?;
        trial(py, self.study.space(), &t)
    }

    /// `q` points at once (default: the study's `q`), for parallel evaluation.
    #[pyo3(signature = (q = None))]
    fn ask_batch(&mut self, py: Python<'_>, q: Option<usize>) -> PyResult<Vec<Trial>> {
        let q = q.unwrap_or(self.q);
        let ts = py.detach(|| self.study.ask_batch(q)).map_err(errors::bayesopt)?;
        ts.iter().map(|t| trial(py, self.study.space(), t)).collect()
    }

    /// Records the objective value of a trial (a `Trial` or its id). A non-finite value marks
    /// the trial failed.
    fn tell(&mut self, trial: &Bound<'_, PyAny>, value: f64) -> PyResult<()> {
        let id = trial_id(trial)?;
        self.study.tell(id, value).map_err(errors::bayesopt)
    }

    /// Records that a trial failed (kept, never modelled).
    fn tell_failed(&mut self, trial: &Bound<'_, PyAny>, reason: &str) -> PyResult<()> {
        let id = trial_id(trial)?;
        self.study.tell_failed(id, reason).map_err(errors::bayesopt)
    }

    /// Saves the study as JSON (atomically); `Study.load(path)` continues it exactly.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.study.save(&path)).map_err(errors::bayesopt)
    }

    /// Loads a saved study (validated; errors name the file and field).
    #[staticmethod]
    #[pyo3(signature = (path, q = 1))]
    fn load(py: Python<'_>, path: PathBuf, q: usize) -> PyResult<Self> {
        if q == 0 {
            return Err(PyValueError::new_err("q = 0: allowed: q >= 1"));
        }
        let study = py.detach(|| gradlab_bayesopt::Study::load(&path)).map_err(errors::bayesopt)?;
        Ok(Study { study, q })
    }

    /// The best complete trial as `(params, value)`, or None before the first tell.
    #[getter]
    fn best<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyDict>, f64)>> {
        match self.study.best() {
            Some(t) => Ok(Some((params_dict(py, self.study.space(), &t.params)?, t.value.unwrap_or(f64::NAN)))),
            None => Ok(None),
        }
    }

    /// `(params, posterior mean)` of the completed trial with the lowest posterior mean (the
    /// incumbent to report for a noisy objective), or None before the first model.
    #[getter]
    fn best_by_posterior_mean<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyDict>, f64)>> {
        match self.study.best_by_posterior_mean() {
            Some((t, m)) => Ok(Some((params_dict(py, self.study.space(), &t.params)?, m))),
            None => Ok(None),
        }
    }

    /// Every trial as a dict (`id`, `params`, `state`, `value`).
    #[getter]
    fn trials<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.study
            .trials()
            .iter()
            .map(|t| {
                let d = PyDict::new(py);
                d.set_item("id", t.id)?;
                d.set_item("params", params_dict(py, self.study.space(), &t.params)?)?;
                let state = match t.state {
                    TrialState::Pending => "pending",
                    TrialState::Complete => "complete",
                    TrialState::Failed => "failed",
                };
                d.set_item("state", state)?;
                d.set_item("value", t.value)?;
                Ok(d)
            })
            .collect()
    }

    /// Names of the parameters, in order.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.study.space().params().iter().map(|p| p.name().to_string()).collect()
    }

    /// Model + acquisition seconds of the last ask.
    #[getter]
    fn last_overhead_s(&self) -> f64 {
        self.study.last_stats().overhead_s()
    }

    fn __len__(&self) -> usize {
        self.study.trials().len()
    }
}

/// `minimize(func, dimensions, n_calls, …)`: the loop of `skopt.gp_minimize`. The objective
/// is called with a list of values (in the order of `dimensions`) and must return a float; the
/// GIL is held only during the call. `acq_func` as in [`Study`]. Returns a dict with `x`,
/// `fun`, `x_iters`, `func_vals`.
#[pyfunction]
#[pyo3(signature = (func, dimensions, n_calls = 100, n_initial_points = 0, random_state = 0, lag = None, acq_func = None))]
#[allow(clippy::too_many_arguments)]
pub fn minimize<'py>(
    py: Python<'py>,
    func: Bound<'py, PyAny>,
    dimensions: &Bound<'py, PyAny>,
    n_calls: usize,
    n_initial_points: usize,
    random_state: u64,
    lag: Option<&Bound<'py, PyAny>>,
    acq_func: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    if !func.is_callable() {
        return Err(PyTypeError::new_err("func: expected a callable"));
    }
    if n_calls == 0 {
        return Err(PyValueError::new_err("n_calls = 0: allowed: n_calls >= 1"));
    }
    let sp = space(dimensions)?;
    let config = StudyConfig {
        seed: random_state,
        n_initial: n_initial_points,
        lag: self::lag(lag)?,
        acquisition: self::acquisition(acq_func)?,
        ..StudyConfig::default()
    };
    let mut study = gradlab_bayesopt::Study::new(sp.clone(), config).map_err(errors::bayesopt)?;
    let func = func.unbind();
    let mut overhead = Vec::with_capacity(n_calls);
    py.detach(|| -> PyResult<()> {
        for _ in 0..n_calls {
            let t = study.ask().map_err(errors::bayesopt)?;
            overhead.push(study.last_stats().overhead_s());
            let value = Python::attach(|py| -> PyResult<f64> {
                let x = PyList::empty(py);
                for v in &t.params {
                    x.append(value_to_py(py, v)?)?;
                }
                let y = func.bind(py).call1((x,))?;
                y.extract::<f64>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "func returned {}; expected a float",
                        y.repr().map(|r| r.to_string()).unwrap_or_default()
                    ))
                })
            })?;
            study.tell(t.id, value).map_err(errors::bayesopt)?;
        }
        Ok(())
    })?;
    let out = PyDict::new(py);
    let x_iters = PyList::empty(py);
    let mut vals = Vec::new();
    for t in study.trials() {
        let x = PyList::empty(py);
        for v in &t.params {
            x.append(value_to_py(py, v)?)?;
        }
        x_iters.append(x)?;
        vals.push(t.value.unwrap_or(f64::NAN));
    }
    match study.best() {
        Some(b) => {
            let x = PyList::empty(py);
            for v in &b.params {
                x.append(value_to_py(py, v)?)?;
            }
            out.set_item("x", x)?;
            out.set_item("fun", b.value.unwrap_or(f64::NAN))?;
        }
        None => {
            out.set_item("x", py.None())?;
            out.set_item("fun", f64::NAN)?;
        }
    }
    out.set_item("x_iters", x_iters)?;
    out.set_item("func_vals", numpy::PyArray1::from_vec(py, vals))?;
    out.set_item("overhead_s", numpy::PyArray1::from_vec(py, overhead))?;
    out.set_item("space", sp.params().iter().map(|p| p.name().to_string()).collect::<Vec<_>>())?;
    Ok(out)
}
