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
