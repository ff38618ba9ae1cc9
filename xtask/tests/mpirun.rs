//! `cargo xtask experiment` under `mpirun -np 2` against one process: the experiments that split
//! their work over ranks (landscape-demo's surfaces, m7-generate's cells) give the same files; the
//! others refuse to run on several ranks. Built with the `mpi` feature only
//! (`scripts/test_mpi.sh`); needs Open MPI's `mpirun`.
#![cfg(feature = "mpi")]

use std::path::Path;
use std::process::Command;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

fn xtask(ranks: usize, args: &[&str]) -> std::process::Output {
    let mut c = if ranks == 1 {
        Command::new(XTASK)
    } else {
        let mut c = Command::new("mpirun");
        c.args(["-np", &ranks.to_string(), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", XTASK]);
        c
    };
    c.args(args)
        .env("RAYON_NUM_THREADS", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .expect("start xtask (is Open MPI's mpirun installed?)")
}

fn ok(out: std::process::Output) {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Every file under `sub` of run `a` equals the same file of run `b`, byte for byte; how many.
fn same_files(a: &Path, b: &Path, sub: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(a.join(sub)).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(b.join(sub).join(name)).unwrap(), "{}", p.display());
        n += 1;
    }
    n
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn landscape_demo_surfaces_over_two_ranks_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("one"), dir.path().join("two"));
    let args = ["experiment", "landscape-demo", "--quick", "--quiet", "--set", "threads=1", "--out"];
    ok(xtask(1, &[&args[..], &[s(&a)]].concat()));
    ok(xtask(2, &[&args[..], &[s(&b)]].concat()));
    // the planes, the lines and the spectrum, byte for byte
    assert!(same_files(&a, &b, "raw") >= 20);
    // rank 1 wrote only under ranks/rank-1
    assert!(b.join("ranks/rank-1/config.json").is_file());
    assert!(b.join("report.md").is_file());
}

#[test]
fn m7_generate_over_two_ranks_equals_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("one"), dir.path().join("two"));
    let args = [
        "experiment",
        "m7-generate",
        "--quick",
        "--quiet",
        "--set",
        "samples=5000",
        "--set",
        "chunk=1500",
        "--set",
        "histogram_cells=5000",
        "--set",
        "throughput=[1000,1]",
        "--out",
    ];
    ok(xtask(1, &[&args[..], &[s(&a)]].concat()));
    ok(xtask(2, &[&args[..], &[s(&b)]].concat()));
    assert_eq!(same_files(&a, &b, "dataset"), 7);
    let summary = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p.join("summary.json")).unwrap()).unwrap()
    };
    assert_eq!(summary(&a)["activity"], summary(&b)["activity"]);
    assert_eq!(summary(&b)["activity"]["cells"], 5000);
}

#[test]
fn experiments_that_do_not_split_refuse_several_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("r");
    let out = xtask(2, &["experiment", "core-regression", "--quick", "--quiet", "--out", s(&o)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not split its work over MPI ranks"), "{err}");
    assert!(!o.exists(), "no run folder is made");
}

#[test]
fn tune_over_ranks_runs_commands_on_the_workers_alike_for_any_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("space.json");
    std::fs::write(&space, r#"{"params":[{"type":"float","name":"x","low":0,"high":1}]}"#).unwrap();
    let study = |n: &str| dir.path().join(n);
    let tune = |ranks: usize, st: &Path, budget: &str| {
        xtask(
            ranks,
            &[
                "tune",
                "--space",
                s(&space),
                "--study",
                s(st),
                "--budget",
                budget,
                "--parallel",
                "2",
                "--quiet",
                "--",
                "echo",
                "{x}",
            ],
        )
    };
    ok(tune(2, &study("two.json"), "7"));
    ok(tune(3, &study("three.json"), "7"));
    let trials = |p: &Path| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p).unwrap()).unwrap()["trials"].clone()
    };
    let (a, b) = (trials(&study("two.json")), trials(&study("three.json")));
    assert_eq!(a.as_array().unwrap().len(), 7);
    assert!(a.as_array().unwrap().iter().all(|t| t["state"] == "complete"), "{a}");
    assert_eq!(a, b);
    // continued with a larger budget
    ok(tune(3, &study("three.json"), "9"));
    assert_eq!(trials(&study("three.json")).as_array().unwrap().len(), 9);
    // a history file is not supported over ranks: refused, not ignored
    let out = xtask(
        2,
        &[
            "tune",
            "--space",
            s(&space),
            "--study",
            s(&study("h.json")),
            "--history",
            s(&study("h.jsonl")),
            "--",
            "echo",
            "{x}",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported yet"));
}
