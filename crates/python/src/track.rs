//! `gradlab.track`: the Bergen DTC simulator, frames as dicts of numpy arrays.

use crate::errors;
use crate::json::{from_py, to_py};
use gradlab_track::dataset;
use gradlab_track::sim::{Frame, SimConfig};
use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

/// The proton CT detector simulator.
#[pyclass(module = "gradlab.track", name = "Simulator", frozen)]
pub struct Simulator {
    sim: gradlab_track::sim::Simulator,
}

fn sim_config(config: &Bound<'_, PyAny>) -> PyResult<SimConfig> {
    if let Ok(p) = config.extract::<PathBuf>() {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| errors::track(gradlab_track::Error::Core(gradlab_core::Error::io(&p, e))))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        return serde_path_to_error::deserialize(de).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("{}: field `{}`: {}", p.display(), e.path(), e.inner()))
        });
    }
    from_py(config, "simulator config")
}

/// A frame as a dict of numpy arrays.
pub fn frame_dict<'py>(py: Python<'py>, f: &Frame) -> PyResult<Bound<'py, PyDict>> {
    let n = f.hits.len();
    let mut xyz = Vec::with_capacity(3 * n);
    for h in &f.hits {
        xyz.extend_from_slice(&[h.x, h.y, h.z]);
    }
    let d = PyDict::new(py);
    let hits = ndarray::Array2::from_shape_vec((n, 3), xyz).expect("3 per hit");
    d.set_item("hits", PyArray2::from_owned_array(py, hits))?;
    d.set_item("layer", PyArray1::from_iter(py, f.hits.iter().map(|h| h.layer)))?;
    d.set_item("edep", PyArray1::from_iter(py, f.hits.iter().map(|h| h.edep)))?;
    d.set_item("cluster", PyArray1::from_iter(py, f.hits.iter().map(|h| h.cluster)))?;
    d.set_item("track", PyArray1::from_iter(py, f.hits.iter().map(|h| h.track)))?;
    d.set_item("primary", PyArray1::from_iter(py, f.hits.iter().map(|h| h.primary)))?;
    d.set_item("spot", PyArray1::from_slice(py, &f.spot))?;
    d.set_item("primaries", f.primaries)?;
    Ok(d)
}

#[pymethods]
impl Simulator {
    /// `Simulator(config)`: a dict of the simulator's JSON config (`detector`, `phantom`,
    /// `beam`, `physics`, `primaries_per_frame`, …) or the path of such a JSON file. For the
    /// paper's setup use `Simulator.bergen(thickness_mm, primaries)`.
    #[new]
    fn new(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<Self> {
        let cfg = sim_config(config)?;
        let sim = py.detach(|| gradlab_track::sim::Simulator::new(&cfg)).map_err(errors::track)?;
        Ok(Simulator { sim })
    }

    /// The paper's setup: the Bergen DTC (built in), `thickness_mm` of water, `primaries` per
    /// frame, default beam and physics.
    #[staticmethod]
    #[pyo3(signature = (thickness_mm = 150.0, primaries = 100))]
    fn bergen(py: Python<'_>, thickness_mm: f64, primaries: usize) -> PyResult<Self> {
        let cfg = SimConfig::bergen(thickness_mm, primaries);
        let sim = py.detach(|| gradlab_track::sim::Simulator::new(&cfg)).map_err(errors::track)?;
        Ok(Simulator { sim })
    }

    /// The resolved configuration as a dict (detector inline).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.sim.config)
    }

    /// Number of sensitive layers of the detector.
    #[getter]
    fn num_layers(&self) -> usize {
        self.sim.detector.num_layers()
    }

    /// Readout frame `index` of the stream `seed` (deterministic for any thread count): a dict
    /// with `hits` `[N, 3]` float32 (x, y, z mm), `layer` uint16, `edep` float32 (MeV),
    /// `cluster` uint16 (pixels), `track` uint32 (primary index, the truth), `primary` bool
    /// (made by the primary itself, not a secondary), `spot` float32 `[2]`, `primaries` int.
    fn frame<'py>(&self, py: Python<'py>, seed: u64, index: u64) -> PyResult<Bound<'py, PyDict>> {
        let f = py.detach(|| self.sim.simulate_frame(seed, index));
        frame_dict(py, &f)
    }
}

/// Writes a dataset of frames (the library's on-disk format: npy arrays + manifest.json) into
/// `directory`: `splits` maps split names to frame counts, in order. Returns the manifest.
#[pyfunction]
#[pyo3(signature = (directory, config, seed, splits, overwrite = false))]
pub fn generate_dataset<'py>(
    py: Python<'py>,
    directory: PathBuf,
    config: &Bound<'py, PyAny>,
    seed: u64,
    splits: Vec<(String, usize)>,
    overwrite: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = sim_config(config)?;
    let m =
        py.detach(|| dataset::generate(&directory, &cfg, seed, &splits, overwrite, false)).map_err(errors::track)?;
    to_py(py, &m)
}

/// Loads every frame of `split` of a dataset written by `generate_dataset` (checksums
/// verified), as a list of frame dicts.
#[pyfunction]
pub fn load_split<'py>(py: Python<'py>, directory: PathBuf, split: &str) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let frames = py.detach(|| dataset::load_split(&directory, split)).map_err(errors::track)?;
    frames.iter().map(|f| frame_dict(py, f)).collect()
}
