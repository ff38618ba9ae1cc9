//! Runs `m7-generate` from its config without the xtask runner (which wires the same entry
//! point): `cargo run --release -p gradlab-aerosol --example run_experiment -- [--quick]`.

use gradlab_core::experiment::{ExperimentConfig, RunContext};
use gradlab_core::run::RunDir;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let sets: Vec<String> = std::env::args().skip_while(|a| a != "--set").skip(1).take(1).collect();
    let file = Path::new("configs/m7-generate.json");
    let cfg = ExperimentConfig::load(file)?;
    let params = cfg.resolve(quick, &sets)?;
    let dir = RunDir::create("runs", "m7-generate")?;
    println!("{}", dir.path().display());
    let mut ctx = RunContext::new("m7-generate", file, &cfg.entry, params, quick, false, dir)?;
    (gradlab_aerosol::experiments::generate::run)(&mut ctx)
}
