//! `mpirun -np 2` against one process: the same surface, M7 tables and BO study, bit for bit; a
//! killed 2-rank surface resumes from its file. Built with the `mpi` feature only (run by
//! `scripts/test_mpi.sh`); needs Open MPI's `mpirun` on the PATH.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gradlab-mpi-check");

/// `mpirun -np n BIN args…`, allowed as root (CI runs as root) and on more ranks than cores.
fn mpirun(n: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", &n.to_string(), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", BIN]).args(args);
    // one thread per rank for the model's products, as the scaling runs; no cross-memory-attach
    // copies (refused in containers without ptrace rights)
    c.env("RAYON_NUM_THREADS", "1").env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    c
}

fn single(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("RAYON_NUM_THREADS", "1");
    c
}

fn run(mut c: Command) {
    let out = c.output().expect("start the command (is Open MPI's mpirun installed?)");
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn surface_over_two_ranks_equals_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("one.json"), dir.path().join("two.json"));
    run(single(&["surface", "--points", "13", "--gather-every", "5", "--out", s(&a)]));
    run(mpirun(2, &["surface", "--points", "13", "--gather-every", "5", "--out", s(&b)]));
    let (a, b) = (read(&a), read(&b));
    assert_eq!(b["ranks"], 2);
    assert_eq!(a["loss_bits"], b["loss_bits"]);
    let evals: Vec<u64> = b["evaluations_per_rank"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    // 169 points in contiguous halves of 85 and 84
    assert_eq!(evals, vec![85, 84]);
}

#[test]
fn m7_tables_over_two_ranks_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("one.json"), dir.path().join("two.json"), dir.path().join("three.json"));
    run(single(&["m7", "--cells", "150", "--gather-every", "16", "--out", s(&a)]));
    run(mpirun(2, &["m7", "--cells", "150", "--gather-every", "16", "--out", s(&b)]));
    // an uneven split and a different round size
    run(mpirun(3, &["m7", "--cells", "150", "--gather-every", "7", "--out", s(&c)]));
    let (a, b, c) = (read(&a), read(&b), read(&c));
    for k in ["x_hash", "y_hash", "x_shape", "y_shape", "first_row_bits"] {
        assert_eq!(a[k], b[k], "{k}");
        assert_eq!(a[k], c[k], "{k}");
    }
    assert_eq!(a["x_shape"][0], 150);
}

#[test]
fn tracking_evaluation_over_ranks_equals_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("one.json"), dir.path().join("three.json"));
    run(single(&["track", "--frames", "5", "--out", s(&a)]));
    // 5 frames over 3 ranks: slices of 2, 2 and 1
    run(mpirun(3, &["track", "--frames", "5", "--out", s(&b)]));
    let (a, b) = (read(&a), read(&b));
    assert_eq!(a["frames"], 5);
    assert_eq!(a["summary_bits"], b["summary_bits"]);
    assert_eq!(a["failed"], b["failed"]);
}

#[test]
fn bo_batches_over_ranks_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    run(single(&["bo", "--trials", "14", "--q", "2", "--study", s(&p("s1.json")), "--out", s(&p("one.json"))]));
    run(mpirun(3, &["bo", "--trials", "14", "--q", "2", "--study", s(&p("s3.json")), "--out", s(&p("three.json"))]));
    let (a, b) = (read(&p("one.json")), read(&p("three.json")));
    assert_eq!(a["trials"].as_array().unwrap().len(), 14);
    assert_eq!(a["trials"], b["trials"]);
    assert_eq!(a["best"], b["best"]);
    // a study continued over ranks from a one-process study equals the longer one-process run
    run(single(&["bo", "--trials", "20", "--q", "2", "--study", s(&p("s1.json")), "--out", s(&p("one20.json"))]));
    run(mpirun(2, &["bo", "--trials", "20", "--q", "2", "--study", s(&p("s3.json")), "--out", s(&p("two20.json"))]));
    assert_eq!(read(&p("one20.json"))["trials"], read(&p("two20.json"))["trials"]);
}

/// Finished points in a resume file: whole lines after the header (a line cut by the kill is
/// not one).
fn points_in(p: &Path) -> usize {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    text.lines().skip(1).filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.get("i").is_some())).count()
}

fn kill(mut child: Child) {
    // SIGTERM: mpirun forwards it to the ranks and exits
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

#[test]
fn killed_two_rank_surface_resumes_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let resume: PathBuf = dir.path().join("surface.jsonl");
    let (full, resumed) = (dir.path().join("full.json"), dir.path().join("resumed.json"));
    run(single(&["surface", "--points", "15", "--out", s(&full)]));
    // 225 points at ≥ 40 ms each over 2 ranks: ≥ 4.5 s; killed once 60 points are in the file
    let child = mpirun(
        2,
        &[
            "surface",
            "--points",
            "15",
            "--gather-every",
            "3",
            "--delay-ms",
            "40",
            "--resume",
            s(&resume),
            "--out",
            s(&resumed),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start mpirun");
    let t = Instant::now();
    while points_in(&resume) < 60 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the 2-rank surface wrote {} points in 120 s",
            points_in(&resume)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(child);
    assert!(!resumed.exists(), "killed before the end");
    let kept = points_in(&resume);
    assert!((60..225).contains(&kept), "{kept} points kept");
    run(mpirun(2, &["surface", "--points", "15", "--gather-every", "3", "--resume", s(&resume), "--out", s(&resumed)]));
    let (a, b) = (read(&full), read(&resumed));
    assert_eq!(a["loss_bits"], b["loss_bits"]);
    let evals: u64 = b["evaluations_per_rank"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    // only the points missing from the file were evaluated again
    assert_eq!(evals as usize, 225 - kept);
    // the file is complete and its points are each there once (a rerun evaluates nothing)
    run(mpirun(2, &["surface", "--points", "15", "--resume", s(&resume), "--out", s(&resumed)]));
    let evals: u64 =
        read(&resumed)["evaluations_per_rank"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(evals, 0);
}
