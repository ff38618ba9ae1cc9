//! The `core-regression` experiment at quick scale, from its real config file.

use gradlab_core::experiment::{ExperimentConfig, RunContext};
use gradlab_core::run::RunDir;
use std::path::Path;

#[test]
fn quick_scale_reaches_r2_above_0_98_and_writes_the_report() {
    let cfg_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/core-regression.json");
    let cfg = ExperimentConfig::load(&cfg_path).unwrap();
    assert_eq!(cfg.entry, "core.regression");
    let params = cfg.resolve(true, &[]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir::create(tmp.path(), "core-regression").unwrap();
    let mut ctx = RunContext::new("core-regression", &cfg_path, &cfg.entry, params, true, true, dir).unwrap();
    let exp = gradlab_core::experiments().into_iter().find(|e| e.entry == cfg.entry).unwrap();
    (exp.run)(&mut ctx).unwrap();
    let d = ctx.dir.path();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
    let r2 = summary["r2"].as_f64().unwrap();
    assert!(r2 > 0.98, "held-out R² {r2}");
    for f in [
        "config.json",
        "metrics.jsonl",
        "report.md",
        "learning_curve.png",
        "learning_curve.svg",
        "pred_vs_true_y0.png",
        "checkpoints/best.safetensors",
    ] {
        assert!(d.join(f).exists(), "missing {f}");
    }
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(report.contains("![Learning curve](learning_curve.png)"));
    // A malformed value names the field.
    let bad = cfg.resolve(true, &["train.batch_size=\"many\"".into()]).unwrap();
    let dir = RunDir::create(tmp.path(), "core-regression").unwrap();
    let mut ctx = RunContext::new("core-regression", &cfg_path, &cfg.entry, bad, true, true, dir).unwrap();
    let e = (exp.run)(&mut ctx).unwrap_err().to_string();
    assert!(e.contains("train.batch_size") && e.contains("core-regression.json"), "{e}");
}

/// Killed mid-training (the test hook stops it after some optimiser steps, leaving its
/// checkpoint) and resumed in the same folder, the run ends with exactly the results of an
/// uninterrupted one.
#[test]
fn a_killed_run_resumed_in_its_folder_equals_an_uninterrupted_run() {
    use gradlab_core::experiments::regression::{run, run_until};
    let cfg_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/core-regression.json");
    let cfg = ExperimentConfig::load(&cfg_path).unwrap();
    let params = cfg.resolve(true, &["train.epochs=6".into()]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let context = |dir: &Path, allow_existing: bool| {
        let dir = RunDir::at(dir, allow_existing).unwrap();
        RunContext::new("core-regression", &cfg_path, &cfg.entry, params.clone(), true, true, dir).unwrap()
    };
    let summary = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
    };
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    run(&mut context(&full, false)).unwrap();
    run_until(&mut context(&part, false), Some(37)).unwrap();
    assert!(part.join("checkpoints").read_dir().unwrap().next().is_some(), "the killed run left a checkpoint");
    assert!(!part.join("summary.json").exists(), "the killed run wrote no results");
    let mut again = context(&part, true);
    again.resume = true;
    run(&mut again).unwrap();
    let (a, b) = (summary(&full), summary(&part));
    for key in ["r2", "r2_per_output", "rmse", "mae", "best_val_loss", "best_step", "steps", "epochs_run"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert!(a["steps"].as_u64().unwrap() > 37);
}
