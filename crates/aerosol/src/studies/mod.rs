//! Cross-toolkit studies of the emulator: hyperparameter optimisation with lazy Bayesian
//! optimisation (`m7-hpo`, [`hpo`], on `gradlab-bayesopt`) and the emulator's loss landscape
//! (`m7-landscape`, [`landscape`], on `gradlab-landscape`).

pub mod hpo;
pub mod landscape;

#[cfg(test)]
mod tests;

use crate::dataset;
use crate::emulator::EmulatorData;
use crate::emulator::experiments::DataParams;
use crate::sampler::sample_cells;
use gradlab_core::experiment::Experiment;
use ndarray::{Array2, Axis};

/// Errors of the studies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StudyError {
    /// A bad argument or configuration value.
    #[error("{what} = {value}: allowed: {allowed}")]
    Invalid {
        /// What was wrong.
        what: &'static str,
        /// The bad value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// From the emulator.
    #[error(transparent)]
    Emulator(#[from] crate::emulator::EmulatorError),
    /// From the box model / dataset code.
    #[error(transparent)]
    Aerosol(#[from] crate::Error),
    /// From Bayesian optimisation.
    #[error(transparent)]
    Bayesopt(#[from] gradlab_bayesopt::Error),
    /// From the landscape toolkit.
    #[error(transparent)]
    Landscape(#[from] gradlab_landscape::Error),
    /// From the core crate.
    #[error(transparent)]
    Core(#[from] gradlab_core::Error),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// File I/O.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`StudyError`].
pub type Result<T> = std::result::Result<T, StudyError>;

/// The experiments of the studies.
pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment {
            entry: "aerosol.m7_hpo",
            description: "Tune lr, weight decay, width, depth, batch size of the M7 emulator for validation R²: lazy BO (lag ∞, 3) vs classic (lag 1) vs random search, q = 4 concurrent evaluations, persisted and resumable",
            run: hpo::run,
        },
        Experiment {
            entry: "aerosol.m7_landscape",
            description: "Loss landscape of the plain and the completion-head emulator: PCA-plane surface with the training trajectory, Hessian top eigenvalues and spectral density",
            run: landscape::run,
        },
    ]
}

/// Train / validation / test splits and the box-model time step.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training rows.
    pub train: EmulatorData,
    /// Validation rows.
    pub val: EmulatorData,
    /// Test rows.
    pub test: EmulatorData,
    /// Box-model time step [s].
    pub dt: f64,
    /// Where the data came from.
    pub source: String,
}

/// Loads a dataset directory or samples cells with the box model (as `m7-emulator` does).
pub fn load_splits(p: &DataParams, seed: u64) -> Result<Splits> {
    if let Some(dir) = &p.dir {
        let d = dataset::read_dataset(dir)?;
        if d.include_sea_salt {
            return Err(StudyError::Invalid {
                what: "data.dir",
                value: dir.display().to_string(),
                allowed: "a dataset in the 24-state layout without sea salt",
            });
        }
        let m7 = d.manifest.as_ref().map(|m| m.m7).unwrap_or_default();
        let f = |x: &Array2<f32>, y: &Array2<f32>| {
            EmulatorData::from_xy(&x.mapv(f64::from).view(), &y.mapv(f64::from).view())
        };
        return Ok(Splits {
            train: f(&d.x_train, &d.y_train)?,
            val: f(&d.x_val, &d.y_val)?,
            test: f(&d.x_test, &d.y_test)?,
            dt: m7.dt,
            source: format!("dataset {}", dir.display()),
        });
    }
    if p.samples < 100 {
        return Err(StudyError::Invalid {
            what: "data.samples",
            value: p.samples.to_string(),
            allowed: "at least 100 cells, or data.dir",
        });
    }
    let samples = sample_cells(&p.m7, &p.sampler, seed, 0, p.samples)?;
    let (x, y) = dataset::tables(&samples, false);
    let parts = dataset::split_indices(x.nrows(), p.split[0], p.split[1], seed)?;
    let f = |idx: &Vec<usize>| EmulatorData::from_xy(&x.select(Axis(0), idx).view(), &y.select(Axis(0), idx).view());
    Ok(Splits {
        train: f(&parts[0])?,
        val: f(&parts[1])?,
        test: f(&parts[2])?,
        dt: p.m7.dt,
        source: format!("{} cells sampled with seed {seed}", p.samples),
    })
}
