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
use crate::training::{FrameData, prepare};

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
            phantom: PhantomConfig { material: "water".into(), thickness_mm, gap_mm: self.phantom_gap_mm },
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

/// Where training and validation frames come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataParams {
    /// Water thickness of the training frames [mm].
    pub thickness_mm: f64,
    /// Primaries per training frame.
    pub primaries: usize,
    /// Training frames.
    pub train_frames: usize,
    /// Validation frames.
    pub val_frames: usize,
}

impl DataParams {
    /// Checks that both splits have frames.
    pub fn validate(&self) -> Result<()> {
        if self.train_frames == 0 || self.val_frames == 0 {
            return Err(Error::invalid(
                "data.train_frames / data.val_frames",
                format!("{} / {}", self.train_frames, self.val_frames),
                "both ≥ 1",
            ));
        }
        Ok(())
    }

    /// Simulate and prepare the training and validation frames (seed `seed`, disjoint
    /// frame-index ranges [`TRAIN_FIRST`], [`VAL_FIRST`]).
    pub fn prepare(
        &self,
        setup: &SetupParams,
        detector: &DetectorConfig,
        seed: u64,
        model: &GnnConfig,
        tracker_layers: u16,
    ) -> Result<(Vec<FrameData>, Vec<FrameData>)> {
        let sim = setup.simulator(detector, self.thickness_mm, self.primaries)?;
        let g = &setup.graph;
        let train =
            prepare(&sim.simulate_frames(seed, TRAIN_FIRST, self.train_frames as u64), g, model, tracker_layers)?;
        let val = prepare(&sim.simulate_frames(seed, VAL_FIRST, self.val_frames as u64), g, model, tracker_layers)?;
        Ok((train, val))
    }
}
