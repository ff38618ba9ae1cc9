//! Smoke test of the `m7-generate` experiment at a tiny scale.

use gradlab_core::experiment::RunContext;
use gradlab_core::run::RunDir;
use serde_json::json;

#[test]
fn m7_generate_runs_and_writes_report_summary_and_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir::at(tmp.path().join("run"), false).unwrap();
    let params = json!({
        "seed": 1, "samples": 600, "chunk": 250, "histogram_cells": 300, "bins": 10,
        "throughput": [200, 1],
        "sampler": {"spinup_steps": [1, 4]}
    });
    let mut ctx = RunContext::new(
        "m7-generate",
        std::path::Path::new("configs/m7-generate.json"),
        "aerosol.m7_generate",
        params,
        true,
        true,
        dir,
    )
    .unwrap();
    (gradlab_aerosol::experiments::generate::run)(&mut ctx).unwrap();
    let root = tmp.path().join("run");
    for f in [
        "report.md",
        "summary.json",
        "metrics.jsonl",
        "dataset/X_train.npy",
        "dataset/manifest.json",
        "figures/tendency_n_ks.png",
    ] {
        assert!(root.join(f).exists(), "{f}");
    }
    let d = gradlab_aerosol::dataset::read_dataset(&root.join("dataset")).unwrap();
    assert_eq!(d.x_train.ncols(), 32);
    assert_eq!(d.x_train.nrows() + d.x_val.nrows() + d.x_test.nrows(), 600);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("summary.json")).unwrap()).unwrap();
    assert!(summary["throughput_cells_per_s_1_thread"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["activity"]["cells"], 600);
    // Unknown parameters are rejected with the field named.
    let dir = RunDir::at(tmp.path().join("run2"), false).unwrap();
    let mut ctx = RunContext::new(
        "m7-generate",
        std::path::Path::new("configs/m7-generate.json"),
        "aerosol.m7_generate",
        json!({"seed": 1, "samples": 10, "sampels": 3}),
        true,
        true,
        dir,
    )
    .unwrap();
    let e = (gradlab_aerosol::experiments::generate::run)(&mut ctx).unwrap_err().to_string();
    assert!(e.contains("sampels"), "{e}");
}
