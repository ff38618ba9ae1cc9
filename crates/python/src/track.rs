//! `gradlab.track`: the Bergen DTC simulator, frames as dicts of numpy arrays.

use crate::errors;
use crate::json::{from_py, to_py};
use gradlab_track::dataset;
use gradlab_track::graph::{GraphConfig, HitGraph, LineGraph};
use gradlab_track::sim::{Frame, Hit, SimConfig};
use gradlab_track::tracks::{TrackFilter, build_tracks, evaluate};
use gradlab_track::training::{ModelCard, Reconstruction, TrainedModel};
use numpy::{PyArray1, PyArray2};
use pyo3::exceptions::{PyFileNotFoundError, PyKeyError, PyTypeError, PyValueError};
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

/// A numeric sequence (numpy array of any int/float dtype, list) as integers in `0..=max`.
fn ints(d: &Bound<'_, PyDict>, key: &str, n: usize, max: u64) -> PyResult<Vec<u64>> {
    let v = item(d, key)?;
    let xs: Vec<i64> =
        v.extract().map_err(|_| PyTypeError::new_err(format!("frame[{key:?}]: expected a 1-D array of integers")))?;
    if xs.len() != n {
        return Err(PyValueError::new_err(format!(
            "frame[{key:?}] has {} entries: allowed: one per hit ({n})",
            xs.len()
        )));
    }
    xs.into_iter()
        .enumerate()
        .map(|(i, x)| {
            u64::try_from(x)
                .ok()
                .filter(|&u| u <= max)
                .ok_or_else(|| PyValueError::new_err(format!("frame[{key:?}][{i}] = {x}: allowed: 0 ..= {max}")))
        })
        .collect()
}

fn item<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?.ok_or_else(|| PyKeyError::new_err(format!("frame: no {key:?} (a frame dict has hits, layer, edep, cluster, track, primary and optionally spot, primaries)")))
}

/// A frame dict (as `Simulator.frame` returns it) back into a frame.
fn frame_from(obj: &Bound<'_, PyAny>) -> PyResult<Frame> {
    let d =
        obj.cast::<PyDict>().map_err(|_| PyTypeError::new_err("frame: expected a dict as Simulator.frame returns"))?;
    let hits = crate::arrays::matrix(&item(d, "hits")?, "frame[\"hits\"]")?;
    let (n, c) = hits.shape();
    if c != 3 {
        return Err(PyValueError::new_err(format!(
            "frame[\"hits\"] has shape ({n}, {c}): allowed: (N, 3) x, y, z in mm"
        )));
    }
    let xyz: Vec<f64> = hits.view().with_f64(|v| crate::arrays::row_major(&v));
    if let Some(i) = xyz.iter().position(|x| !x.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "frame[\"hits\"][{}, {}] = {}: allowed: finite",
            i / 3,
            i % 3,
            xyz[i]
        )));
    }
    let layer = ints(d, "layer", n, u16::MAX as u64)?;
    let cluster = ints(d, "cluster", n, u16::MAX as u64)?;
    let track = ints(d, "track", n, u32::MAX as u64)?;
    let edep: Vec<f64> = item(d, "edep")?
        .extract()
        .map_err(|_| PyTypeError::new_err("frame[\"edep\"]: expected a 1-D array of floats"))?;
    if edep.len() != n {
        return Err(PyValueError::new_err(format!(
            "frame[\"edep\"] has {} entries: allowed: one per hit ({n})",
            edep.len()
        )));
    }
    if let Some(i) = edep.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
        return Err(PyValueError::new_err(format!(
            "frame[\"edep\"][{i}] = {}: allowed: finite and >= 0 (MeV)",
            edep[i]
        )));
    }
    let primary: Vec<bool> = item(d, "primary")?
        .extract()
        .map_err(|_| PyTypeError::new_err("frame[\"primary\"]: expected a 1-D array of bools"))?;
    if primary.len() != n {
        return Err(PyValueError::new_err(format!(
            "frame[\"primary\"] has {} entries: allowed: one per hit ({n})",
            primary.len()
        )));
    }
    let spot: [f32; 2] = match d.get_item("spot")? {
        Some(s) => {
            let v: Vec<f64> = s.extract().map_err(|_| PyTypeError::new_err("frame[\"spot\"]: expected 2 floats"))?;
            match v[..] {
                [x, y] if x.is_finite() && y.is_finite() => [x as f32, y as f32],
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "frame[\"spot\"] = {v:?}: allowed: 2 finite numbers (mm)"
                    )));
                }
            }
        }
        None => [0.0, 0.0],
    };
    let primaries = match d.get_item("primaries")? {
        Some(p) => {
            p.extract::<u32>().map_err(|_| PyValueError::new_err("frame[\"primaries\"]: allowed: an integer >= 0"))?
        }
        None => track.iter().map(|&t| t + 1).max().unwrap_or(0) as u32,
    };
    let hits = (0..n)
        .map(|i| Hit {
            layer: layer[i] as u16,
            x: xyz[3 * i] as f32,
            y: xyz[3 * i + 1] as f32,
            z: xyz[3 * i + 2] as f32,
            edep: edep[i] as f32,
            cluster: cluster[i] as u16,
            track: track[i] as u32,
            primary: primary[i],
        })
        .collect();
    Ok(Frame { hits, spot, primaries })
}

fn graph_config(config: Option<&Bound<'_, PyAny>>) -> PyResult<GraphConfig> {
    let cfg: GraphConfig = match config.filter(|c| !c.is_none()) {
        Some(c) => from_py(c, "graph config")?,
        None => GraphConfig::default(),
    };
    cfg.validate().map_err(errors::track)?;
    Ok(cfg)
}

/// The hit graph of a frame: nodes are hits sorted by layer then x (`hit[n]` is the frame hit
/// of node `n`); directed edges join a hit to the hits of the next shallower layer within the
/// polar-angle cuts (0.2 rad in the tracker, 0.4 rad in the calorimeter by default).
#[pyclass(module = "gradlab.track", name = "HitGraph", frozen)]
pub struct PyHitGraph {
    g: HitGraph,
}

#[pymethods]
impl PyHitGraph {
    /// `HitGraph(frame, config=None)`: `frame` a dict as `Simulator.frame` returns; `config` a
    /// dict of the graph cuts (`calorimeter_max_theta_rad`, `tracker_max_theta_rad`,
    /// `tracker_source_layers`).
    #[new]
    #[pyo3(signature = (frame, config = None))]
    fn new(py: Python<'_>, frame: &Bound<'_, PyAny>, config: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let f = frame_from(frame)?;
        let cfg = graph_config(config)?;
        let g = py.detach(|| HitGraph::build(&f, &cfg)).map_err(errors::track)?;
        Ok(PyHitGraph { g })
    }

    #[getter]
    fn num_nodes(&self) -> usize {
        self.g.num_nodes()
    }

    #[getter]
    fn num_edges(&self) -> usize {
        self.g.num_edges()
    }

    /// `[2, E]` int64: row 0 the source (deeper) node, row 1 the target (shallower) node of
    /// each edge (PyTorch Geometric's convention).
    #[getter]
    fn edge_index<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i64>> {
        let m = self.g.num_edges();
        let a = ndarray::Array2::from_shape_fn((2, m), |(r, e)| {
            i64::from(if r == 0 { self.g.src[e] } else { self.g.dst[e] })
        });
        PyArray2::from_owned_array(py, a)
    }

    /// Frame hit index of each node.
    #[getter]
    fn hit<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        PyArray1::from_slice(py, &self.g.hit)
    }

    /// Layer of each node.
    #[getter]
    fn layer<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u16>> {
        PyArray1::from_slice(py, &self.g.layer)
    }

    /// Node positions `[N, 3]` float32 (mm).
    #[getter]
    fn pos<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        let n = self.g.num_nodes();
        PyArray2::from_owned_array(py, ndarray::Array2::from_shape_vec((n, 3), self.g.pos.clone()).expect("3 per node"))
    }

    /// Node features `[N, 4]` float32: cluster size / 7.97, x and y relative to the spot, z.
    #[getter]
    fn node_features<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        let n = self.g.num_nodes();
        let k = gradlab_track::graph::NODE_FEATURES;
        PyArray2::from_owned_array(
            py,
            ndarray::Array2::from_shape_vec((n, k), self.g.node_features.clone()).expect("n × k"),
        )
    }

    /// Edge features `[E, 3]` float32: length (mm), azimuth and polar angle (rad).
    #[getter]
    fn edge_features<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        let m = self.g.num_edges();
        let k = gradlab_track::graph::EDGE_FEATURES;
        PyArray2::from_owned_array(
            py,
            ndarray::Array2::from_shape_vec((m, k), self.g.edge_features.clone()).expect("m × k"),
        )
    }

    /// Truth of each edge: both hits belong to the same primary.
    #[getter]
    fn edge_truth<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        PyArray1::from_slice(py, &self.g.edge_truth)
    }

    /// The line graph (nodes = this graph's edges; a pair joins consecutive segments), as a
    /// dict: `node_features` `[E, 8]` float32, `pred`/`succ` uint32 (directed pairs), `angle`
    /// float32 (rad), `edge_index` `[2, 2P]` int64 (both directions, pairs first).
    fn line_graph<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let lg = py.detach(|| LineGraph::build(&self.g));
        let k = gradlab_track::graph::LINE_NODE_FEATURES;
        let d = PyDict::new(py);
        let nf = ndarray::Array2::from_shape_vec((lg.num_nodes(), k), lg.node_features.clone()).expect("m × k");
        d.set_item("node_features", PyArray2::from_owned_array(py, nf))?;
        d.set_item("pred", PyArray1::from_slice(py, &lg.pred))?;
        d.set_item("succ", PyArray1::from_slice(py, &lg.succ))?;
        d.set_item("angle", PyArray1::from_slice(py, &lg.angle))?;
        let (from, to) = lg.undirected_edge_index();
        let ei =
            ndarray::Array2::from_shape_fn((2, from.len()), |(r, e)| i64::from(if r == 0 { from[e] } else { to[e] }));
        d.set_item("edge_index", PyArray2::from_owned_array(py, ei))?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("HitGraph(nodes={}, edges={}, layers={})", self.g.num_nodes(), self.g.num_edges(), self.g.num_layers)
    }
}

/// Tracks (node index lists) as frame hit indices, int64 arrays.
fn tracks_to_hits<'py>(py: Python<'py>, g: &HitGraph, tracks: &[Vec<u32>]) -> Vec<Bound<'py, PyArray1<i64>>> {
    tracks.iter().map(|t| PyArray1::from_iter(py, t.iter().map(|&n| i64::from(g.hit[n as usize])))).collect()
}

/// Tracks given as frame hit indices → node indices of `g`.
fn tracks_to_nodes(g: &HitGraph, tracks: Vec<Vec<i64>>) -> PyResult<Vec<Vec<u32>>> {
    let mut node_of = vec![u32::MAX; g.hit.len()];
    for (n, &h) in g.hit.iter().enumerate() {
        node_of[h as usize] = n as u32;
    }
    tracks
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            if t.is_empty() {
                return Err(PyValueError::new_err(format!("tracks[{k}] is empty: allowed: at least one hit")));
            }
            let mut nodes: Vec<u32> = t
                .iter()
                .map(|&h| {
                    usize::try_from(h).ok().and_then(|h| node_of.get(h).copied()).ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "tracks[{k}] has hit {h}: allowed: frame hit indices 0 ..= {}",
                            g.hit.len().saturating_sub(1)
                        ))
                    })
                })
                .collect::<PyResult<_>>()?;
            // shallow → deep, as the library's tracks are
            nodes.sort_by_key(|&n| g.layer[n as usize]);
            Ok(nodes)
        })
        .collect()
}

fn graph_of(py: Python<'_>, frame_or_graph: &Bound<'_, PyAny>) -> PyResult<HitGraph> {
    if let Ok(g) = frame_or_graph.cast::<PyHitGraph>() {
        return Ok(g.get().g.clone());
    }
    let f = frame_from(frame_or_graph)?;
    py.detach(|| HitGraph::build(&f, &GraphConfig::default())).map_err(errors::track)
}

/// Purity and efficiency of `tracks` (lists or arrays of frame hit indices) on a frame (a
/// frame dict, or its `HitGraph`), as the paper and its reference code compute them: with
/// `filter=True` the paper's track filter first (more than 4 hits, deepest deposit > 0.0625
/// MeV); tracks with a non-primary hit are not considered; a considered track is correct when
/// all its hits carry one primary; purity = correct / considered, efficiency = correct /
/// all-primary true tracks. Returns a dict with those counts and the two ratios.
#[pyfunction]
#[pyo3(signature = (frame, tracks, filter = true))]
pub fn purity_efficiency<'py>(
    py: Python<'py>,
    frame: &Bound<'py, PyAny>,
    tracks: Vec<Vec<i64>>,
    filter: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let g = graph_of(py, frame)?;
    let mut nodes = tracks_to_nodes(&g, tracks)?;
    if filter {
        nodes = TrackFilter::default().apply(&g, nodes);
    }
    to_py(py, &evaluate(&g, &nodes))
}

/// The tracks of a selection of hit-graph edges (`selected`: one bool per edge of `graph`):
/// every root-to-leaf path, as arrays of frame hit indices (shallow → deep), filtered by the
/// paper's filter when `filter=True`. Dense selections that branch into more than
/// `max_paths` paths raise ValueError.
#[pyfunction]
#[pyo3(signature = (graph, selected, filter = true, max_paths = 200_000))]
pub fn tracks_from_edges<'py>(
    py: Python<'py>,
    graph: &Bound<'py, PyHitGraph>,
    selected: Vec<bool>,
    filter: bool,
    max_paths: usize,
) -> PyResult<Vec<Bound<'py, PyArray1<i64>>>> {
    let g = &graph.get().g;
    let mut t = py.detach(|| build_tracks(g, &selected, max_paths)).map_err(errors::track)?;
    if filter {
        t = TrackFilter::default().apply(g, t);
    }
    Ok(tracks_to_hits(py, g, &t))
}

/// A trained tracking GNN (a checkpoint folder of `track-pat` / `track-ptt` / `track-compare`:
/// `model.json` and `best.safetensors`).
#[pyclass(module = "gradlab.track", name = "Tracker", frozen)]
pub struct Tracker {
    tm: TrainedModel,
}

fn reconstruction<'py>(py: Python<'py>, r: Reconstruction) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("tracks", tracks_to_hits(py, &r.graph, &r.tracks))?;
    d.set_item("probabilities", PyArray1::from_vec(py, r.probabilities))?;
    d.set_item("selected", PyArray1::from_vec(py, r.selected))?;
    d.set_item("graph", Bound::new(py, PyHitGraph { g: r.graph })?)?;
    Ok(d)
}

#[pymethods]
impl Tracker {
    /// `Tracker.load(directory, card=None)`: the weights in `directory` with its `model.json`,
    /// or with `card` (a dict `{"spec": …, "graph": …}`, e.g. built from the run's
    /// config.json) for checkpoints saved before model cards existed.
    #[staticmethod]
    #[pyo3(signature = (directory, card = None))]
    fn load(py: Python<'_>, directory: PathBuf, card: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        if !directory.is_dir() {
            return Err(PyFileNotFoundError::new_err(format!("{}: no such model directory", directory.display())));
        }
        let tm = match card.filter(|c| !c.is_none()) {
            Some(c) => {
                let card: ModelCard = from_py(c, "model card")?;
                py.detach(|| TrainedModel::with_card(&directory, card))
            }
            None => py.detach(|| TrainedModel::load(&directory)),
        }
        .map_err(errors::track)?;
        Ok(Tracker { tm })
    }

    /// Reconstructs the tracks of a frame (dict as `Simulator.frame` returns): the GNN's edge
    /// probabilities, the per-layer assignment, the paper's track filter. Returns a dict:
    /// `tracks` (int64 arrays of frame hit indices, shallow → deep), `probabilities` and
    /// `selected` (per hit-graph edge) and `graph` (the `HitGraph`).
    fn reconstruct<'py>(&self, py: Python<'py>, frame: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let f = frame_from(frame)?;
        let r = py.detach(|| self.tm.reconstruct(&f)).map_err(errors::track)?;
        reconstruction(py, r)
    }

    /// The model card (training spec and graph cuts) as a dict.
    #[getter]
    fn card<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.tm.card)
    }
}

/// `reconstruct(frame, model_dir)`: `Tracker.load(model_dir).reconstruct(frame)` in one call.
#[pyfunction]
#[pyo3(signature = (frame, model_dir, card = None))]
pub fn reconstruct<'py>(
    py: Python<'py>,
    frame: &Bound<'py, PyAny>,
    model_dir: PathBuf,
    card: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let t = Tracker::load(py, model_dir, card)?;
    t.reconstruct(py, frame)
}
