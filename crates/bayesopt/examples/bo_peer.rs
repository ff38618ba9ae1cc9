//! Our side of `scripts/compare/bo_peers.sh` (issue 22): minimises test functions with a
//! [`Study`] and prints one JSON line per (function, seed) with the best value found and the
//! overhead of each iteration — the wall time of `ask` and `tell`, the objective excluded —
//! in the same format as `scripts/compare/bo_peers.py`.
//!
//! ```sh
//! cargo run --release -p gradlab-bayesopt --example bo_peer -- \
//!     --functions branin,hartmann6,levy5,ackley5 --seeds 0-4 --budget 100 [--config configs/bo-x.json] [--label ours]
//! ```
//!
//! `--config` is a [`StudyConfig`] in JSON (missing fields take their defaults; its `seed` is
//! replaced by each run's seed). Threads: set `RAYON_NUM_THREADS`.

use gradlab_bayesopt::study::{Study, StudyConfig};
use gradlab_bayesopt::testfns::TestFunction;
use std::time::Instant;

struct Args {
    functions: Vec<TestFunction>,
    seeds: Vec<u64>,
    budget: usize,
    config: StudyConfig,
    label: String,
}

fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let bad = || format!("--seeds: `{part}` is not N or A-B");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b < a {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        functions: vec![TestFunction::Branin, TestFunction::Hartmann6, TestFunction::Levy5, TestFunction::Ackley5],
        seeds: (0..5).collect(),
        budget: 100,
        config: StudyConfig::default(),
        label: "gradlab".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--functions" => {
                args.functions = value
                    .split(',')
                    .map(|f| {
                        serde_json::from_value(serde_json::Value::String(f.into()))
                            .map_err(|_| format!("--functions: unknown function `{f}`"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--seeds" => args.seeds = parse_seeds(&value)?,
            "--budget" => {
                args.budget = value.parse().map_err(|_| format!("--budget: `{value}` is not a count"))?;
                if args.budget == 0 {
                    return Err("--budget must be >= 1".into());
                }
            }
            "--config" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("--config {value}: {e}"))?;
                args.config = serde_json::from_str(&text).map_err(|e| format!("--config {value}: {e}"))?;
            }
            "--label" => args.label = value,
            _ => return Err(format!("unknown flag {flag} (--functions, --seeds, --budget, --config, --label)")),
        }
    }
    Ok(args)
}

fn run(args: &Args, f: TestFunction, seed: u64) -> gradlab_bayesopt::Result<serde_json::Value> {
    let space = f.space();
    let mut study = Study::new(space, StudyConfig { seed, ..args.config.clone() })?;
    let mut overhead_ms = Vec::with_capacity(args.budget);
    let mut best = f64::INFINITY;
    let mut refits = 0;
    let (mut fit_ms, mut acq_ms, mut cand_ms) = (0.0, 0.0, 0.0);
    for _ in 0..args.budget {
        let t0 = Instant::now();
        let trial = study.ask()?;
        let ask_s = t0.elapsed().as_secs_f64();
        refits += usize::from(study.last_stats().refit);
        fit_ms += study.last_stats().fit_s * 1e3;
        acq_ms += study.last_stats().acquisition_s * 1e3;
        cand_ms += study.last_stats().candidates_s * 1e3;
        let x: Vec<f64> = trial.params.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        let y = f.eval(&x);
        best = best.min(y);
        let t1 = Instant::now();
        study.tell(trial.id, y)?;
        overhead_ms.push((ask_s + t1.elapsed().as_secs_f64()) * 1e3);
    }
    let mean = overhead_ms.iter().sum::<f64>() / overhead_ms.len() as f64;
    let tail = &overhead_ms[overhead_ms.len().saturating_sub(10)..];
    Ok(serde_json::json!({
        "impl": args.label, "function": f.name(), "seed": seed, "budget": args.budget, "best": best,
        "overhead_ms_mean": mean, "overhead_ms_last10": tail.iter().sum::<f64>() / tail.len() as f64,
        "refits": refits, "fit_ms_total": fit_ms, "acquisition_ms_total": acq_ms,
        "candidates_ms_total": cand_ms,
        "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
    }))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bo_peer: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = args.config.check() {
        eprintln!("bo_peer: --config: {e}");
        std::process::exit(2);
    }
    for &f in &args.functions {
        for &seed in &args.seeds {
            match run(&args, f, seed) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("bo_peer: {} seed {seed}: {e}", f.name());
                    std::process::exit(1);
                }
            }
        }
    }
}
