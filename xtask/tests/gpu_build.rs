//! The `cuda` feature still compiles (issue 23; docs/gpu.md): `scripts/gpu/build.sh --check`
//! runs `cargo check -p xtask --features cuda` against the CUDA 13 toolkit from the Python
//! package index. It needs that toolkit's venv (`target/gpu-venv`, made by a first
//! `scripts/gpu/build.sh`); without it — CI, a fresh clone — the test says so and passes.

use std::path::Path;
use std::process::Command;

#[test]
fn gpu_build_script_checks_the_cuda_feature() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root");
    if !root.join("target/gpu-venv/bin/python").exists() {
        eprintln!("skipped: no target/gpu-venv (run scripts/gpu/build.sh once to check the cuda feature here)");
        return;
    }
    let out = Command::new("bash")
        .arg(root.join("scripts/gpu/build.sh"))
        .arg("--check")
        .current_dir(root)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "scripts/gpu/build.sh --check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
