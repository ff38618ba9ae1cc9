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

/// Dataset generation killed after its second finished chunk (the test hook stops the run right
/// after that save, as a SIGKILL there would) and resumed in the same folder samples only the
/// missing chunks and writes exactly the dataset of an uninterrupted run.
#[test]
fn m7_generate_killed_after_a_chunk_and_resumed_writes_the_same_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let params = json!({
        "seed": 3, "samples": 500, "chunk": 120, "histogram_cells": 200, "bins": 8,
        "throughput": [100, 1], "sampler": {"spinup_steps": [1, 3]}
    });
    let ctx_at = |name: &str, existing: bool| {
        let dir = RunDir::at(tmp.path().join(name), existing).unwrap();
        let path = std::path::Path::new("configs/m7-generate.json");
        RunContext::new("m7-generate", path, "aerosol.m7_generate", params.clone(), true, true, dir).unwrap()
    };
    let run = gradlab_aerosol::experiments::generate::run;
    run(&mut ctx_at("whole", false)).unwrap();
    let mut ctx = ctx_at("part", false);
    ctx.stop_after_saves = Some(2);
    let e = run(&mut ctx).unwrap_err().to_string();
    assert!(e.contains("interrupted"), "{e}");
    let part = tmp.path().join("part");
    assert!(part.join("partial/chunk-000000000120.y.npy").exists() && !part.join("summary.json").exists());
    let mut ctx = ctx_at("part", true);
    ctx.resume = true;
    run(&mut ctx).unwrap();
    let whole = tmp.path().join("whole");
    for f in ["X_train.npy", "y_train.npy", "X_val.npy", "y_val.npy", "X_test.npy", "y_test.npy", "manifest.json"] {
        let (a, b) = (
            std::fs::read(whole.join("dataset").join(f)).unwrap(),
            std::fs::read(part.join("dataset").join(f)).unwrap(),
        );
        assert!(a == b, "dataset/{f} differs between the resumed and the uninterrupted run");
    }
    let s = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    let (sw, sp) = (s(&whole), s(&part));
    assert_eq!(sw["activity"], sp["activity"]);
    assert_eq!(sw["zero_tendency_share"], sp["zero_tendency_share"]);
    assert_eq!((sw["cells_read_back"].as_u64(), sp["cells_read_back"].as_u64()), (Some(0), Some(240)));
    // The chunks are removed once the dataset holds them.
    assert!(!part.join("partial").exists());
}
