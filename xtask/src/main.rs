//! `cargo xtask`: gradlab's experiment runner and developer tasks.
//!
//! Orchestration only: every experiment's science lives in the crates, which export their entry
//! points through `experiments()`; this binary maps config files to those entry points.

/// mimalloc: glibc malloc page-faults heavily on the large short-lived tensors of training (issue 14).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod registry;
mod runner;
mod tools;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "gradlab experiment runner and developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an experiment from configs/<NAME>.json (`quickstart` runs every registered quick scale).
    Experiment {
        /// Experiment name (a file in configs/ without `.json`).
        name: String,
        /// Run the quick scale (minutes) instead of the paper scale.
        #[arg(long)]
        quick: bool,
        /// Output directory (default: runs/<name>/<timestamp>/). Must be empty or absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a parameter: `--set train.epochs=5` (value parsed as JSON, else a string).
        #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
        sets: Vec<String>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Use this config file instead of configs/<NAME>.json.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Continue the run in RUN_DIR (killed or finished) with its own config.json: training
        /// continues from its checkpoints (core-regression and the track-* trainings), the surfaces
        /// of landscape-demo from their logs of finished points; the other
        /// experiments start over in RUN_DIR and may refuse to overwrite what the first run wrote.
        /// No --quick, --out, --set or --config with it.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["quick", "out", "sets", "config"])]
        resume: Option<PathBuf>,
    },
    /// List every experiment with its one-line description.
    List,
    /// fmt --check, then clippy -D warnings, then the test suite (cheapest first).
    Validate,
    /// Tune any program with lazy-GP Bayesian optimisation: every `{param}` in the command is
    /// replaced by a trial value, the objective (minimised) is read from its output (the last
    /// line, or --objective-regex). The study is saved after every evaluation; rerunning resumes
    /// it. Exits non-zero, with the failure reasons counted, when every trial failed.
    Tune(tools::TuneArgs),
    /// Apply one M7 box-model step to the cells (rows) of an .npy file.
    #[command(name = "m7-step")]
    M7Step(tools::M7StepArgs),
    /// Run the criterion benchmarks (extra arguments go to `cargo bench`).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The repository root (the parent of xtask/).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

fn main() {
    let cli = Cli::parse();
    // MPI's world when built with `--features mpi` and started by mpirun/srun; else one process.
    let comm: std::rc::Rc<dyn gradlab_core::dist::Comm> = match gradlab_mpi::world() {
        Ok(c) => std::rc::Rc::from(c),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    runner::set_comm(comm.clone());
    let r = match cli.cmd {
        Cmd::Experiment { name, resume: Some(dir), quiet, .. } => {
            runner::resume_named(&project_root(), &name, &dir, quiet).map(|_| ())
        }
        Cmd::Experiment { name, quick, out, sets, quiet, config, resume: None } => {
            runner::run_named(&project_root(), &name, quick, out, &sets, quiet, config).map(|_| ())
        }
        Cmd::List => runner::list(&project_root()),
        Cmd::Validate => validate(),
        Cmd::Tune(a) => tools::tune(a),
        Cmd::M7Step(a) => tools::m7_step(a),
        Cmd::Bench { args } => {
            cargo(&[&["bench", "--workspace"][..], &args.iter().map(String::as_str).collect::<Vec<_>>()].concat())
        }
    };
    runner::set_comm(std::rc::Rc::new(gradlab_core::dist::Local));
    if let Err(e) = r {
        if comm.size() > 1 {
            // the other ranks may be waiting for this one: end the whole job
            eprintln!("error (rank {} of {}): {e:#}", comm.rank(), comm.size());
            comm.abort(1);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    // dropping the last handle finalises MPI
    drop(comm);
}

fn cargo(args: &[&str]) -> Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(project_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !st.success() {
        bail!("`cargo {}` failed ({st})", args.join(" "));
    }
    Ok(())
}

fn validate() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--release", "--", "-D", "warnings"])?;
    cargo(&["test", "--workspace", "--release"])
}
