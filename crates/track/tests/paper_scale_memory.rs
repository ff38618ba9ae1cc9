//! `track-pat` at the paper's settings (three phantoms × 1000 training frames of 100 primaries,
//! 128-wide encoding, 32 frames per optimiser step, frames simulated on demand) runs 2 optimiser
//! steps, validates and tests, with the process's peak resident memory under a stated bound.
//!
//! Alone in its test binary so that the process's peak (`VmHWM`) is this run's.

use std::path::PathBuf;

use gradlab_core::experiment::{ExperimentConfig, RunContext};

/// The bound on the peak resident memory of the whole process [MiB] (issue: ≤ 2 GiB training at
/// 100 primaries).
const PEAK_MIB: f64 = 2048.0;

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

#[test]
fn track_pat_at_paper_settings_runs_two_steps_in_bounded_memory() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = root.join("configs/track-pat.json");
    let cfg = ExperimentConfig::load(&file).unwrap();
    let det = root.join("configs/detector-bergen-dtc.json");
    let sets = vec![
        format!("setup.detector=\"{}\"", det.display()),
        "seeds=[1]".into(),
        "lambdas=[50.0]".into(),
        "spec.train.max_steps=2".into(),
        "data.val_frames=1".into(),
        "eval.primaries=[100]".into(),
        "eval.thicknesses_mm=[150.0]".into(),
        "eval.frames=1".into(),
    ];
    let params = cfg.resolve(false, &sets).unwrap();
    // The paper's training settings, as the config gives them.
    assert_eq!(params["data"]["primaries"], 100);
    assert_eq!(params["data"]["train_frames"], 1000);
    assert_eq!(params["data"]["thicknesses_mm"].as_array().unwrap().len(), 3);
    assert_eq!(params["spec"]["model"]["angle_encoding_dim"], 128);
    assert_eq!(params["spec"]["train"]["grad_accum"], 32);
    let tmp = tempfile::tempdir().unwrap();
    let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-pat").unwrap();
    let mut ctx = RunContext::new("track-pat", &file, &cfg.entry, params, true, true, dir).unwrap();
    gradlab_track::experiments::pat::run(&mut ctx).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ctx.dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["training"][0]["steps"], 2);
    let peak = peak_rss_mib();
    eprintln!("peak resident memory: {peak:.0} MiB (bound {PEAK_MIB} MiB)");
    assert!(peak < PEAK_MIB, "peak resident memory {peak:.0} MiB ≥ {PEAK_MIB} MiB");
}
