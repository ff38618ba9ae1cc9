//! The emulator's data: train / validation / test splits read from a dataset directory in the
//! reference layout or sampled here with the box model. Shared by `m7-emulator`, `m7-speed`,
//! `m7-hpo` and `m7-landscape`.

use super::emulator_model::EmulatorData;
use super::heads::N_ENV;
use crate::config::M7Config;
use crate::dataset;
use crate::error::{Error, Result};
use crate::layout;
use crate::sampler::{SamplerConfig, sample_cells};
use crate::state::{AerosolState, Environment};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

fn default_split() -> [f64; 2] {
    [0.8, 0.1]
}

/// Where the data comes from (the `data` block of the emulator experiments' configs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataParams {
    /// A dataset directory in the reference layout (e.g. `runs/m7-generate/<ts>/dataset`);
    /// when absent the cells are sampled here with `m7` and `sampler`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Cells to sample when `dir` is absent.
    #[serde(default)]
    pub samples: usize,
    /// Train and validation fractions (the rest is test) when sampling.
    #[serde(default = "default_split")]
    pub split: [f64; 2],
    /// Fraction of the sampled cells, those with the most extreme tendencies (largest |z| over
    /// the 28 targets), that are split as their own stratum with the same fractions, so train,
    /// validation and test each get their share of the rare extreme cells
    /// ([`dataset::stratified_train_val_test_indices`]). 0 = a purely random split.
    #[serde(default)]
    pub stratify_tails: f64,
    /// Box model of the recorded step.
    #[serde(default)]
    pub m7: M7Config,
    /// Sampler.
    #[serde(default)]
    pub sampler: SamplerConfig,
}

/// Train / validation / test splits, the box-model configuration that produced them and where
/// they came from.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training rows.
    pub train: EmulatorData,
    /// Validation rows.
    pub val: EmulatorData,
    /// Test rows.
    pub test: EmulatorData,
    /// Box-model time step \[s\].
    pub dt: f64,
    /// Box-model configuration of the data.
    pub m7: M7Config,
    /// Where the data came from.
    pub source: String,
}

/// Loads a dataset directory (`data.dir`) or samples `data.samples` cells with the box model
/// (cells and split drawn from `seed`).
pub fn load_data(p: &DataParams, seed: u64) -> Result<Splits> {
    match &p.dir {
        Some(dir) => read_splits(dir),
        None => sample_splits(p, seed),
    }
}

fn read_splits(dir: &std::path::Path) -> Result<Splits> {
    let d = dataset::read_dataset(dir)?;
    if d.include_sea_salt {
        return Err(Error::invalid("data.dir", dir.display(), "a dataset in the 24-state layout without sea salt"));
    }
    let m7 = d.manifest.as_ref().map(|m| m.m7).unwrap_or_default();
    let f =
        |x: &Array2<f32>, y: &Array2<f32>| EmulatorData::from_xy(&x.mapv(f64::from).view(), &y.mapv(f64::from).view());
    Ok(Splits {
        train: f(&d.x_train, &d.y_train)?,
        val: f(&d.x_val, &d.y_val)?,
        test: f(&d.x_test, &d.y_test)?,
        dt: m7.dt,
        m7,
        source: format!("dataset {}", dir.display()),
    })
}

fn sample_splits(p: &DataParams, seed: u64) -> Result<Splits> {
    if p.samples < 100 {
        return Err(Error::invalid("data.samples", p.samples, "at least 100 cells, or data.dir"));
    }
    if !(0.0..1.0).contains(&p.stratify_tails) {
        return Err(Error::invalid(
            "data.stratify_tails",
            p.stratify_tails,
            "a fraction 0 <= f < 1 of the cells (0: a random split)",
        ));
    }
    let samples = sample_cells(&p.m7, &p.sampler, seed, 0, p.samples)?;
    let (x, y) = dataset::tables(&samples, false);
    let all = EmulatorData::from_xy(&x.view(), &y.view())?;
    let parts = if p.stratify_tails > 0.0 {
        let scores = dataset::tail_scores(&all.t.view());
        dataset::stratified_train_val_test_indices(&scores, p.stratify_tails, p.split[0], p.split[1], seed)?
    } else {
        dataset::train_val_test_indices(x.nrows(), p.split[0], p.split[1], seed)?
    };
    let strat = if p.stratify_tails > 0.0 {
        format!(", split stratified on the {} most extreme cells", (p.samples as f64 * p.stratify_tails).ceil())
    } else {
        String::new()
    };
    Ok(Splits {
        train: all.rows(&parts[0]),
        val: all.rows(&parts[1]),
        test: all.rows(&parts[2]),
        dt: p.m7.dt,
        m7: p.m7,
        source: format!("{} cells sampled with seed {seed} (f64 tendencies){strat}", p.samples),
    })
}

/// The first `n` rows of physical inputs `x` as cells (environment and state).
pub fn cells_of(x: &Array2<f32>, n: usize) -> (Vec<Environment>, Vec<AerosolState>) {
    (0..n.min(x.nrows()))
        .map(|i| {
            let r: Vec<f64> = x.row(i).iter().map(|&v| v as f64).collect();
            (layout::read_env(&r[..N_ENV]), layout::read_state(&r[N_ENV..], false))
        })
        .unzip()
}
