//! What the experiments share about a simulation setting: the detector/beam/physics/graph
//! setup ([`SetupParams`]), a grid of (water thickness, primaries) settings ([`Grid`]), the
//! training data of the GNN studies ([`DataParams`]) and the disjoint frame-index ranges that
//! keep training, validation, test and analysis frames independent.

use serde::{Deserialize, Serialize};

use crate::detector::DetectorConfig;
use crate::error::{Error, Result};
use crate::gnn::GnnConfig;
use crate::graph::GraphConfig;
use crate::sim::{BeamConfig, DetectorSource, FramePrimaries, PhantomConfig, PhysicsConfig, SimConfig, Simulator};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use crate::sim::Frame;
use crate::training::{FrameData, FrameSource, prepare};

/// First frame index (RNG stream) of training frames.
pub const TRAIN_FIRST: u64 = 0;
/// First frame index of validation frames.
pub const VAL_FIRST: u64 = 500_000;
/// First frame index of test frames.
pub const TEST_FIRST: u64 = 1_000_000;
/// First frame index of the landscape study's analysis frames.
pub const ANALYSIS_FIRST: u64 = 2_000_000;

/// The simulation part shared by the experiments' parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupParams {
    /// Detector description (path relative to the repository root, or inline).
    #[serde(default = "default_detector")]
    pub detector: DetectorSource,
    /// Air gap phantom → detector [mm].
    #[serde(default = "default_gap")]
    pub phantom_gap_mm: f64,
    /// Which primaries count towards a frame's N (`detected`, as the reference pipeline, or
    /// `incident`).
    #[serde(default)]
    pub frame_primaries: FramePrimaries,
    /// Beam.
    #[serde(default)]
    pub beam: BeamConfig,
    /// Physics.
    #[serde(default)]
    pub physics: PhysicsConfig,
    /// Graph cuts.
    #[serde(default)]
    pub graph: GraphConfig,
}

fn default_detector() -> DetectorSource {
    DetectorSource::Path("configs/detector-bergen-dtc.json".into())
}
fn default_gap() -> f64 {
    100.0
}

impl Default for SetupParams {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl SetupParams {
    /// The simulation config of one (thickness, primaries) setting, with the detector loaded
    /// once and inlined.
    pub fn sim_config(&self, detector: &DetectorConfig, thickness_mm: f64, primaries: usize) -> SimConfig {
        SimConfig {
            detector: DetectorSource::Inline(Box::new(detector.clone())),
            phantom: PhantomConfig::slab("water", thickness_mm, self.phantom_gap_mm),
            beam: self.beam.clone(),
            physics: self.physics.clone(),
            primaries_per_frame: primaries,
            frame_primaries: self.frame_primaries,
            drop_layers_after_gap: true,
        }
    }

    /// The simulator of one setting.
    pub fn simulator(&self, detector: &DetectorConfig, thickness_mm: f64, primaries: usize) -> Result<Simulator> {
        Simulator::new(&self.sim_config(detector, thickness_mm, primaries))
    }
}

/// A grid of settings: every primaries-per-frame × water thickness, `frames` frames each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Water thicknesses [mm].
    pub thicknesses_mm: Vec<f64>,
    /// Primaries per frame.
    pub primaries: Vec<usize>,
    /// Frames per setting.
    pub frames: usize,
}

impl Grid {
    /// Checks that the grid is non-empty; `field` names it in the error (e.g. `eval`).
    pub fn validate(&self, field: &str) -> Result<()> {
        if self.thicknesses_mm.is_empty() || self.primaries.is_empty() {
            return Err(Error::invalid(
                format!("{field}.thicknesses_mm / {field}.primaries"),
                format!("{} / {} values", self.thicknesses_mm.len(), self.primaries.len()),
                "at least one value each",
            ));
        }
        if self.frames == 0 {
            return Err(Error::invalid(format!("{field}.frames"), 0, "≥ 1"));
        }
        Ok(())
    }

    /// The settings `(primaries, thickness_mm)`, primaries-major.
    pub fn settings(&self) -> Vec<(usize, f64)> {
        self.primaries.iter().flat_map(|&n| self.thicknesses_mm.iter().map(move |&t| (n, t))).collect()
    }
}

/// Where training and validation frames come from: one pool of frames per training phantom
/// (water thickness), simulated on demand by frame index and dropped after use, so memory does
/// not grow with the number of frames. The reference trains on 3 × 1000 frames of 100 primaries
/// behind 100, 150 and 200 mm of water, drawn with replacement, and validates on 150 frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataParams {
    /// Water thicknesses of the training phantoms [mm].
    pub thicknesses_mm: Vec<f64>,
    /// Primaries per training frame.
    pub primaries: usize,
    /// Training frames per phantom.
    pub train_frames: usize,
    /// Validation frames per phantom.
    pub val_frames: usize,
}

impl DataParams {
    /// Checks that both splits have frames and every thickness is a finite number ≥ 0.
    pub fn validate(&self) -> Result<()> {
        if self.train_frames == 0 || self.val_frames == 0 {
            return Err(Error::invalid(
                "data.train_frames / data.val_frames",
                format!("{} / {}", self.train_frames, self.val_frames),
                "both ≥ 1",
            ));
        }
        if self.thicknesses_mm.is_empty() || self.thicknesses_mm.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(Error::invalid(
                "data.thicknesses_mm",
                format!("{:?}", self.thicknesses_mm),
                "at least one finite thickness ≥ 0 mm",
            ));
        }
        if self.primaries == 0 {
            return Err(Error::invalid("data.primaries", 0, "≥ 1"));
        }
        Ok(())
    }

    /// The training and validation streams (seed `seed`, disjoint frame-index ranges
    /// [`TRAIN_FIRST`], [`VAL_FIRST`]).
    pub fn streams(
        &self,
        setup: &SetupParams,
        detector: &DetectorConfig,
        seed: u64,
        model: &GnnConfig,
        tracker_layers: u16,
    ) -> Result<(FrameStream, FrameStream)> {
        self.validate()?;
        let sims = |n: usize, first: u64| -> Result<FrameStream> {
            let pools = self
                .thicknesses_mm
                .iter()
                .enumerate()
                .map(|(k, &t)| {
                    // The first phantom keeps the run seed (single-phantom runs see the frames
                    // they always did); the others get their own streams.
                    let s = if k == 0 { seed } else { gradlab_core::rng::derive_seed(seed, k as u64) };
                    Ok((setup.simulator(detector, t, self.primaries)?, s))
                })
                .collect::<Result<Vec<_>>>()?;
            FrameStream::new(pools, n, first, &setup.graph, model, tracker_layers)
        };
        Ok((sims(self.train_frames, TRAIN_FIRST)?, sims(self.val_frames, VAL_FIRST)?))
    }
}

/// Frames simulated on demand: pool `k` holds `per_pool` frames of its simulator, frame `j` of it
/// is `simulate_frame(seed_k, first + j)`. Deterministic: the same index gives the same frame,
/// on every call and after a resume.
///
/// [`FrameSource::prefetch`] hints let a background thread build the frames named next while
/// the current one is used (the training loop passes the trainer's lookahead); a frame is the
/// same whether it was prefetched or built on request.
#[derive(Debug)]
pub struct FrameStream {
    core: Arc<StreamCore>,
    ahead: Arc<Ahead>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What builds a frame.
#[derive(Debug)]
struct StreamCore {
    pools: Vec<(Simulator, u64)>,
    per_pool: usize,
    first: u64,
    graph: GraphConfig,
    model: GnnConfig,
    tracker_layers: u16,
}

impl StreamCore {
    fn len(&self) -> usize {
        self.per_pool * self.pools.len()
    }

    fn frame(&self, i: usize) -> Result<Frame> {
        let n = self.len();
        if i >= n {
            return Err(Error::invalid("frame index", i, format!("< {n}")));
        }
        let (sim, seed) = &self.pools[i / self.per_pool];
        Ok(sim.simulate_frame(*seed, self.first + (i % self.per_pool) as u64))
    }

    fn build(&self, i: usize) -> Result<FrameData> {
        let f = self.frame(i)?;
        FrameData::new(&f, &self.graph, &self.model, self.tracker_layers, &candle_core::Device::Cpu)
    }
}

/// The prefetch queue shared with the background thread.
#[derive(Debug, Default)]
struct Ahead {
    state: Mutex<AheadState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct AheadState {
    /// Frames to build, in order.
    queue: VecDeque<usize>,
    /// The frame the thread is building.
    building: Option<usize>,
    /// Built frames not yet taken.
    done: HashMap<usize, Result<FrameData>>,
    stop: bool,
}

fn lock(m: &Mutex<AheadState>) -> std::sync::MutexGuard<'_, AheadState> {
    // A panic while holding the lock leaves plain data; keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FrameStream {
    /// A stream over `pools` of `(simulator, seed)`, `per_pool ≥ 1` frames each, frame indices
    /// from `first`.
    pub fn new(
        pools: Vec<(Simulator, u64)>,
        per_pool: usize,
        first: u64,
        graph: &GraphConfig,
        model: &GnnConfig,
        tracker_layers: u16,
    ) -> Result<Self> {
        if pools.is_empty() || per_pool == 0 {
            return Err(Error::invalid(
                "frame stream",
                format!("{} pools of {per_pool} frames", pools.len()),
                "at least one pool of at least one frame",
            ));
        }
        let core = StreamCore { pools, per_pool, first, graph: graph.clone(), model: model.clone(), tracker_layers };
        Ok(FrameStream { core: Arc::new(core), ahead: Arc::default(), worker: Mutex::new(None) })
    }

    /// The raw frame `i` (pool `i / per_pool`, frame `i % per_pool` of it).
    pub fn frame(&self, i: usize) -> Result<Frame> {
        self.core.frame(i)
    }

    /// Every frame prepared in memory.
    pub fn prepare_all(&self) -> Result<Vec<FrameData>> {
        use rayon::prelude::*;
        let raw = (0..self.len()).into_par_iter().map(|i| self.frame(i)).collect::<Result<Vec<_>>>()?;
        prepare(&raw, &self.core.graph, &self.core.model, self.core.tracker_layers)
    }

    /// Start the background thread once.
    fn ensure_worker(&self) {
        let mut w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_some() {
            return;
        }
        let (core, ahead) = (self.core.clone(), self.ahead.clone());
        let spawned = std::thread::Builder::new().name("frame-prefetch".into()).spawn(move || {
            loop {
                let i = {
                    let mut st = lock(&ahead.state);
                    while st.queue.is_empty() && !st.stop {
                        st = ahead.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                    if st.stop {
                        return;
                    }
                    let i = st.queue.pop_front().expect("a queued frame");
                    st.building = Some(i);
                    i
                };
                let built = core.build(i);
                let mut st = lock(&ahead.state);
                st.building = None;
                st.done.insert(i, built);
                ahead.changed.notify_all();
            }
        });
        // Without a thread the hints are ignored and every frame is built on request.
        *w = spawned.ok();
    }
}

impl Drop for FrameStream {
    fn drop(&mut self) {
        lock(&self.ahead.state).stop = true;
        self.ahead.changed.notify_all();
        if let Some(h) = self.worker.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl FrameSource for FrameStream {
    fn len(&self) -> usize {
        self.core.len()
    }

    fn get(&self, i: usize) -> Result<Cow<'_, FrameData>> {
        {
            let mut st = lock(&self.ahead.state);
            loop {
                if let Some(r) = st.done.remove(&i) {
                    return r.map(Cow::Owned);
                }
                if st.building != Some(i) {
                    break;
                }
                st = self.ahead.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            // Queued but not started: build it here rather than wait behind the others.
            st.queue.retain(|&q| q != i);
        }
        self.core.build(i).map(Cow::Owned)
    }

    /// Keep the frames named in `next` (built or being built), drop the others, and queue the
    /// ones not yet there for the background thread.
    fn prefetch(&self, next: &[usize]) {
        let n = self.len();
        {
            let mut st = lock(&self.ahead.state);
            st.done.retain(|i, _| next.contains(i));
            st.queue.retain(|i| next.contains(i));
            for &i in next {
                if i < n && st.building != Some(i) && !st.done.contains_key(&i) && !st.queue.contains(&i) {
                    st.queue.push_back(i);
                }
            }
            if st.queue.is_empty() {
                return;
            }
        }
        self.ensure_worker();
        self.ahead.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;

    #[test]
    fn data_params_refuse_bad_values_by_field() {
        let ok = DataParams { thicknesses_mm: vec![100.0, 150.0], primaries: 10, train_frames: 4, val_frames: 1 };
        ok.validate().unwrap();
        for (bad, field) in [
            (DataParams { thicknesses_mm: vec![], ..ok.clone() }, "data.thicknesses_mm"),
            (DataParams { thicknesses_mm: vec![100.0, -1.0], ..ok.clone() }, "data.thicknesses_mm"),
            (DataParams { thicknesses_mm: vec![f64::NAN], ..ok.clone() }, "data.thicknesses_mm"),
            (DataParams { primaries: 0, ..ok.clone() }, "data.primaries"),
            (DataParams { train_frames: 0, ..ok.clone() }, "data.train_frames"),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn a_stream_is_deterministic_per_index_and_pools_are_independent() {
        let sim = Simulator::new(&SimConfig::bergen(150.0, 3)).unwrap();
        let (g, m) = (GraphConfig::default(), GnnConfig { angle_encoding_dim: 8, ..Default::default() });
        // Two pools of the same phantom with different seeds, 2 frames each.
        let s = FrameStream::new(vec![(sim.clone(), 1), (sim.clone(), 2)], 2, 10, &g, &m, 3).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s.frame(3).unwrap().hits, s.frame(3).unwrap().hits);
        assert_eq!(s.frame(1).unwrap().hits, sim.simulate_frame(1, 11).hits);
        assert_eq!(s.frame(3).unwrap().hits, sim.simulate_frame(2, 11).hits);
        assert_ne!(s.frame(0).unwrap().hits, s.frame(2).unwrap().hits);
        assert!(s.frame(4).unwrap_err().to_string().contains("frame index"));
        assert!(s.get(4).is_err());
        assert_eq!(s.get(2).unwrap().num_edges(), s.prepare_all().unwrap()[2].num_edges());
        assert!(FrameStream::new(vec![], 2, 0, &g, &m, 3).is_err());
        assert!(FrameStream::new(vec![(sim, 1)], 0, 0, &g, &m, 3).is_err());
    }

    /// Frames handed out after prefetch hints (in the trainer's pattern: this frame and the next
    /// two, with repeats, as sampling with replacement gives) are the frames built on request;
    /// stale and out-of-range hints are harmless; dropping a stream with queued work returns.
    #[test]
    fn prefetched_frames_are_the_frames_built_on_request() {
        let sim = Simulator::new(&SimConfig::bergen(150.0, 3)).unwrap();
        let (g, m) = (GraphConfig::default(), GnnConfig { angle_encoding_dim: 8, ..Default::default() });
        let s = FrameStream::new(vec![(sim.clone(), 1), (sim.clone(), 4)], 3, 10, &g, &m, 3).unwrap();
        let plain = FrameStream::new(vec![(sim.clone(), 1), (sim, 4)], 3, 10, &g, &m, 3).unwrap();
        let order = [3, 0, 5, 5, 1, 4, 2, 0];
        for (k, &i) in order.iter().enumerate() {
            s.prefetch(&order[k..(k + 3).min(order.len())]);
            let (a, b) = (s.get(i).unwrap(), plain.get(i).unwrap());
            assert_eq!(a.graph.edge_truth, b.graph.edge_truth, "frame {i}");
            assert_eq!(a.graph.src, b.graph.src, "frame {i}");
            assert_eq!(a.truth.to_vec1::<f32>().unwrap(), b.truth.to_vec1::<f32>().unwrap(), "frame {i}");
            assert_eq!(a.input.x.to_vec2::<f32>().unwrap(), b.input.x.to_vec2::<f32>().unwrap(), "frame {i}");
        }
        s.prefetch(&[99, 1]);
        assert!(s.get(99).unwrap_err().to_string().contains("frame index"));
        assert_eq!(s.get(1).unwrap().graph.edge_truth, plain.get(1).unwrap().graph.edge_truth);
        s.prefetch(&[0, 1, 2, 3, 4, 5]);
        drop(s);
    }
}
