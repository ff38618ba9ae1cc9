//! Stages and parameter pieces shared by the GNN experiments (`track-pat`, `track-ptt`,
//! `track-compare`, `track-landscape`).

use std::time::Instant;

use gradlab_core::experiment::RunContext;
use gradlab_core::observe::{JsonlObserver, Observer, ProgressObserver};
use gradlab_core::train::TrainReport;

use crate::error::{Error, Result};
use crate::setup::FrameStream;
use crate::training::{FrameSource, Model, ModelCard, TrainSpec, replicate_seeds, train};

/// Defines a GNN study's parameter struct: the fields every GNN study has (`seed`, `seeds`,
/// `setup`, `data`, `spec`) followed by the study's own, all at the top level of the config.
macro_rules! gnn_study_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The run's seed: simulation, and (with each replicate seed) every derived stream.
            pub seed: u64,
            /// Replicate seeds: one trained model per seed and variant.
            pub seeds: Vec<u64>,
            /// Simulation setup (detector, beam, physics, graph cuts).
            #[serde(default)]
            pub setup: $crate::setup::SetupParams,
            /// Training data.
            pub data: $crate::setup::DataParams,
            /// Training specification shared by the variants (`spec.train.seed` is derived).
            pub spec: $crate::training::TrainSpec,
            $($extra)*
        }

        impl $name {
            /// The fields every GNN study has.
            pub fn base(&self) -> $crate::experiments::common::StudyBase<'_> {
                $crate::experiments::common::StudyBase {
                    seed: self.seed,
                    seeds: &self.seeds,
                    setup: &self.setup,
                    data: &self.data,
                    spec: &self.spec,
                }
            }
        }
    };
}
pub(crate) use gnn_study_params;

/// The fields every GNN study has (see `gnn_study_params!`).
#[derive(Debug, Clone, Copy)]
pub struct StudyBase<'a> {
    /// The run's seed.
    pub seed: u64,
    /// Replicate seeds.
    pub seeds: &'a [u64],
    /// Simulation setup.
    pub setup: &'a crate::setup::SetupParams,
    /// Training data.
    pub data: &'a crate::setup::DataParams,
    /// Shared training specification.
    pub spec: &'a TrainSpec,
}

impl StudyBase<'_> {
    /// Checks the shared fields; `min_seeds` replicates at least, all distinct.
    pub fn validate(&self, min_seeds: usize) -> Result<()> {
        let mut uniq = self.seeds.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        if self.seeds.len() < min_seeds || uniq.len() != self.seeds.len() {
            let allowed = format!("at least {min_seeds} distinct seed(s)");
            return Err(Error::invalid("seeds", format!("{:?}", self.seeds), allowed));
        }
        Error::check_derived_seed("spec.train.seed", self.spec.train.seed)?;
        self.data.validate()
    }

    /// The training and validation frames, simulated on demand (memory does not grow with
    /// their number).
    pub fn training_data(&self) -> Result<(FrameStream, FrameStream)> {
        let det = self.setup.detector.load()?;
        self.data.streams(self.setup, &det, self.seed, &self.spec.model, self.spec.tracker_layers)
    }
}

/// One trained replicate.
#[derive(Debug)]
pub struct Replicate {
    /// Index of its variant.
    pub variant: usize,
    /// Its replicate seed (from `seeds`).
    pub seed: u64,
    /// The model, holding its best weights.
    pub model: Model,
    /// The trainer's report.
    pub report: TrainReport,
    /// Training wall time [s].
    pub seconds: f64,
}

/// A label as a file-name stem (`PAT λ=50` → `PAT_lambda_50`).
pub fn stem(label: &str) -> String {
    label.replace('λ', "lambda").replace(['=', ' ', '(', ')'], "_").replace("__", "_").trim_end_matches('_').to_string()
}

/// Train every variant for every replicate seed (seed by seed): checkpoints under `checkpoints/<label>-seed<s>`
/// (with `ctx.resume`, each replicate continues from its checkpoint; a finished one is reloaded),
/// the training log in `train.jsonl`, initialisation and shuffling seeds derived from the run's
/// `seed` and the replicate seed ([`replicate_seeds`]).
pub fn train_replicates<S: FrameSource + ?Sized, V: FrameSource + ?Sized>(
    ctx: &mut RunContext,
    base: StudyBase<'_>,
    variants: &[(String, TrainSpec)],
    train_frames: &S,
    val_frames: &V,
) -> Result<Vec<Replicate>> {
    let mut out = Vec::new();
    // Seed-major: a run stopped part-way has every variant of its first seeds.
    for &seed in base.seeds {
        for (variant, (label, spec)) in variants.iter().enumerate() {
            let (init, shuffle) = replicate_seeds(base.seed, seed);
            let mut spec = spec.clone();
            spec.train.seed = shuffle;
            let tag = format!("{label} seed {seed}");
            let ck = ctx.dir.subdir(&format!("checkpoints/{}-seed{seed}", stem(label)))?;
            ModelCard { spec: spec.clone(), graph: base.setup.graph.clone() }.save(&ck)?;
            let obs: Vec<Box<dyn Observer>> = vec![
                Box::new(JsonlObserver::new(ctx.dir.jsonl("train.jsonl")?, 10).with_tag(&tag)),
                Box::new(ProgressObserver::new(&tag, ctx.quiet)),
            ];
            let t = Instant::now();
            let (model, report) = train(&spec, init, train_frames, val_frames, Some(&ck), ctx.resume, obs)?;
            out.push(Replicate { variant, seed, model, report, seconds: t.elapsed().as_secs_f64() });
        }
    }
    Ok(out)
}

pub use gradlab_core::stats::mean_std;
