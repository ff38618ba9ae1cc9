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
    /// The study stores the command and --objective-regex; resuming it with a different one is refused.
    #[arg(long)]
    pub study: Option<PathBuf>,
    /// Total evaluations, including those already in a resumed study.
    #[arg(long, default_value_t = 50)]
    pub budget: usize,
    /// Commands evaluated at once (batch size q). Under mpirun/srun (built with `--features
    /// mpi`), the worker ranks run the commands, one each at a time, and the default 1 means one
    /// per worker rank.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Per-trial time limit in seconds (default one hour); 0 disables it. Each trial runs in a
    /// process group of its own: a trial that exceeds the limit is killed with every process it
    /// started and recorded as failed, and processes a program leaves running when it exits are
    /// killed too.
    #[arg(long, value_name = "SECONDS", default_value_t = gradlab_bayesopt::tune::DEFAULT_TIMEOUT_S)]
    pub timeout_s: f64,
    /// Read the objective as the first capture group of REGEX's last match anywhere in the
    /// program's standard output, e.g. 'val_loss=([-0-9.eE+]+)'. Without it, the objective is
    /// the last non-empty output line when that line is a number, else the value of the line's
    /// last `key=value` or `key: value` pair (a key with a letter: `loss = 0.12`,
    /// `epoch 3 val_loss: 0.12`; with more numbers on the line, a warning names the one taken);
    /// any other line, such as `finished epoch 10`, fails the trial with "no objective".
    #[arg(long, value_name = "REGEX")]
    pub objective_regex: Option<String>,
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

/// The library options of a `tune` command line.
fn tune_options(a: &TuneArgs) -> Result<gradlab_bayesopt::tune::TuneOptions> {
    let study = a.study.clone().unwrap_or_else(|| a.space.with_extension("study.json"));
    let mut o = gradlab_bayesopt::tune::TuneOptions::new(&a.space, &study, a.command.clone());
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
    if !(a.timeout_s.is_finite() && a.timeout_s >= 0.0) {
        bail!("--timeout-s must be a number of seconds >= 0 (0: no limit), got {}", a.timeout_s);
    }
    o.timeout = (a.timeout_s > 0.0).then(|| Duration::from_secs_f64(a.timeout_s));
    o.objective_regex = a.objective_regex.clone();
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
    Ok(o)
}

/// Runs `tune`: prints the report (JSON) on stdout; fails, naming the reasons, when every
/// trial failed.
pub fn tune(a: TuneArgs) -> Result<()> {
    let o = tune_options(&a)?;
    gradlab_bayesopt::tune::end_trials_on_signal();
    // under mpirun/srun (feature `mpi`): rank 0 runs the study, the other ranks the commands
    let comm = crate::runner::comm();
    let Some(rep) = gradlab_bayesopt::tune::run_tune_on(&*comm, o)? else { return Ok(()) };
    println!("{}", serde_json::to_string_pretty(&rep)?);
    if rep.all_failed() {
        bail!(
            "every trial failed ({} of {}): {}. The study is saved in {}",
            rep.failed,
            rep.evaluations,
            rep.failure_summary(),
            rep.study.display()
        );
    }
    if rep.failed > 0 {
        eprintln!("note: {} of {} trials failed: {}", rep.failed, rep.evaluations, rep.failure_summary());
    }
    Ok(())
}

/// `cargo xtask m7-step`.
#[derive(Args, Debug)]
pub struct M7StepArgs {
    /// Input cells, one per row, in M7's units and order (see `gradlab_aerosol::step_file`).
    #[arg(long)]
    pub input: PathBuf,
    /// Output .npy (state after the step, radii, densities, water per mode), with
    /// `<output>.columns.json` beside it. Neither is overwritten unless --overwrite.
    #[arg(long)]
    pub output: PathBuf,
    /// Box-model configuration (JSON); default: M7's defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Replace an existing output file and its `.columns.json` (`--force` is accepted too).
    #[arg(long, alias = "force")]
    pub overwrite: bool,
}

pub fn m7_step(a: M7StepArgs) -> Result<()> {
    let rep = gradlab_aerosol::step_file::m7_step(&a.input, &a.output, a.config.as_deref(), a.overwrite)?;
    println!("{}", serde_json::to_string_pretty(&rep)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tune: TuneArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<TuneArgs, clap::Error> {
        Cli::try_parse_from([&["tune"][..], args].concat()).map(|c| c.tune)
    }

    #[test]
    fn tune_has_a_default_timeout_that_0_disables() {
        let a = parse(&["--space", "s.json", "--", "prog", "{x}"]).unwrap();
        assert_eq!(tune_options(&a).unwrap().timeout, Some(Duration::from_secs(3600)));
        let a = parse(&["--space", "s.json", "--timeout-s", "0", "--", "prog"]).unwrap();
        assert_eq!(tune_options(&a).unwrap().timeout, None);
        let a = parse(&["--space", "s.json", "--timeout-s", "2.5", "--objective-regex", "l=(.*)", "--", "p"]).unwrap();
        let o = tune_options(&a).unwrap();
        assert_eq!((o.timeout, o.objective_regex.as_deref()), (Some(Duration::from_millis(2500)), Some("l=(.*)")));
        for bad in ["--timeout-s=-1", "--timeout-s=nan"] {
            let a = parse(&["--space", "s.json", bad, "--", "prog"]).unwrap();
            assert!(tune_options(&a).unwrap_err().to_string().contains("--timeout-s"), "{bad}");
        }
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("[default: 3600]") && help.contains("0 disables it"), "{help}");
        assert!(help.contains("finished epoch 10") && help.contains("key=value"), "{help}");
    }

    #[test]
    fn tune_fails_with_the_reasons_when_every_trial_fails() {
        let dir = tempfile::tempdir().unwrap();
        let space = dir.path().join("space.json");
        std::fs::write(&space, r#"{"params":[{"type":"float","name":"x","low":0,"high":1}]}"#).unwrap();
        let space = space.to_str().unwrap();
        let a =
            parse(&["--space", space, "--budget", "3", "--quiet", "--", "sh", "-c", "echo oops >&2; exit 3"]).unwrap();
        let e = tune(a).unwrap_err().to_string();
        assert!(e.contains("every trial failed (3 of 3)") && e.contains("3 × exit status 3"), "{e}");
        // Some trials succeeding is not an error.
        let a = parse(&[
            "--space",
            space,
            "--study",
            &format!("{space}.ok"),
            "--budget",
            "2",
            "--quiet",
            "--",
            "echo",
            "{x}",
        ])
        .unwrap();
        tune(a).unwrap();
    }
}
