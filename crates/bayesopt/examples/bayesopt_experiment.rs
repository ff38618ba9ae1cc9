//! Runs one of this crate's experiments from its config file, like
//! `cargo xtask experiment <name> [--quick]` does once the xtask registry lists the crate:
//!
//! ```text
//! cargo run --release -p gradlab-bayesopt --example bayesopt_experiment -- bo-regret --quick
//! ```

use gradlab_core::experiment::{ExperimentConfig, RunContext};
use gradlab_core::run::RunDir;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().ok_or("usage: bayesopt_experiment <name> [--quick] [--quiet] [--set a.b=v]...")?;
    let quick = args.iter().any(|a| a == "--quick");
    let quiet = args.iter().any(|a| a == "--quiet");
    let sets: Vec<String> = args.windows(2).filter(|w| w[0] == "--set").map(|w| w[1].clone()).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("configs").join(format!("{name}.json"));
    let cfg = ExperimentConfig::load(&path)?;
    let params = cfg.resolve(quick, &sets)?;
    let exp = gradlab_bayesopt::experiments()
        .into_iter()
        .find(|e| e.entry == cfg.entry)
        .ok_or_else(|| format!("entry {} is not a bayesopt experiment", cfg.entry))?;
    let dir = RunDir::create(root.join("runs"), name)?;
    let mut ctx = RunContext::new(name, &path, &cfg.entry, params, quick, quiet, dir)?;
    let t0 = std::time::Instant::now();
    (exp.run)(&mut ctx)?;
    eprintln!("{name}: done in {:.1} s -> {}", t0.elapsed().as_secs_f64(), ctx.dir.path().display());
    Ok(())
}
