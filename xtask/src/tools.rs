//! Command-line wrappers over library entry points: `tune` (gradlab-bayesopt) and `m7-step`
//! (gradlab-aerosol).

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `cargo xtask tune`.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Search space: `{"params": [{"name": "lr", "type": "log_float", "low": 1e-5, "high": 1e-1}, …]}`.
    #[arg(long)]
    pub space: PathBuf,
    /// Study file (created, or resumed when it exists). Default: `<space>.study.json` beside the space file.
    #[arg(long)]
    pub study: Option<PathBuf>,
    /// Total evaluations, including those already in a resumed study.
    #[arg(long, default_value_t = 50)]
    pub budget: usize,
    /// Commands evaluated at once (batch size q).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Per-evaluation time limit in seconds (a trial that exceeds it is recorded as failed).
    #[arg(long)]
    pub timeout_s: Option<f64>,
    /// Seed of a new study.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Study configuration of a new study as JSON (kernel, acquisition, lag, …).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// JSON-lines history of evaluations (appended).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The command with `{param}` placeholders, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn tune(a: TuneArgs) -> Result<()> {
    use gradlab_bayesopt::tune::{TuneOptions, run_tune};
    let study = a.study.clone().unwrap_or_else(|| a.space.with_extension("study.json"));
    let mut o = TuneOptions::new(&a.space, &study, a.command.clone());
    if a.budget == 0 {
        bail!("--budget must be at least 1");
    }
    if a.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    o.budget = a.budget;
    o.parallel = a.parallel;
    o.quiet = a.quiet;
    o.history = a.history.clone();
    if let Some(t) = a.timeout_s {
        if !(t.is_finite() && t > 0.0) {
            bail!("--timeout-s must be a positive number of seconds, got {t}");
        }
        o.timeout = Some(Duration::from_secs_f64(t));
    }
    o.config.seed = a.seed;
    if let Some(p) = &a.config {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let mut cfg: gradlab_bayesopt::StudyConfig =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid study configuration", p.display()))?;
        if a.seed != 0 {
            cfg.seed = a.seed;
        }
        o.config = cfg;
    }
    let rep = run_tune(o)?;
    println!("{}", serde_json::to_string_pretty(&rep)?);
    Ok(())
}

/// `cargo xtask m7-step`.
#[derive(Args, Debug)]
pub struct M7StepArgs {
    /// Input cells, one per row, in M7's units and order (see `gradlab_aerosol::step_file`).
    #[arg(long)]
    pub input: PathBuf,
    /// Output .npy (state after the step, radii, densities, water per mode). Not overwritten unless --force.
    #[arg(long)]
    pub output: PathBuf,
    /// Box-model configuration (JSON); default: M7's defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

pub fn m7_step(a: M7StepArgs) -> Result<()> {
    if a.output.exists() && !a.force {
        bail!("{} already exists; pass --force to overwrite it", a.output.display());
    }
    let rep = gradlab_aerosol::step_file::m7_step(&a.input, &a.output, a.config.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&rep)?);
    Ok(())
}
