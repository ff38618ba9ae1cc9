//! `gradlab-mpi-check`: runs one distributed workload on small, fixed inputs and writes (on rank
//! 0) a JSON record of its result — every value's bits, so that runs can be compared exactly —
//! and its timings. Run it in one process, or under `mpirun -np N`; the tests in
//! `tests/mpirun.rs` compare the two, and `scripts/mpi/scaling.sh` times them.
//!
//! ```text
//! gradlab-mpi-check surface --points 51 --out s.json [--resume s.jsonl] [--delay-ms 20]
//! gradlab-mpi-check m7 --cells 2000 --out m.json
//! gradlab-mpi-check bo --trials 12 --q 2 --study study.json --out b.json
//! gradlab-mpi-check track --frames 6 --out t.json
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use clap::{Parser, Subcommand};
use gradlab_core::dist::{Comm, gather_json};
use gradlab_core::rng::stream_rng;
use gradlab_landscape::candle::{CandleObjective, cross_entropy, mlp};
use gradlab_landscape::surface::{Axis, SurfaceOptions, evaluate_surface_on};
use gradlab_landscape::{Objective, Replicate};
use rand::Rng;
use serde_json::json;

#[derive(Parser)]
#[command(about = "One distributed gradlab workload on fixed inputs; rank 0 writes a JSON record")]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// A points × points loss surface of a 2→64→64→3 tanh MLP (f64) on 1,000 spiral points.
    Surface {
        #[arg(long, default_value_t = 21)]
        points: usize,
        /// Worker threads per rank.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Points per rank between gathers on rank 0.
        #[arg(long, default_value_t = 8)]
        gather_every: usize,
        /// Resume file (on rank 0's file system).
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Extra milliseconds per point (to make a run long enough to kill in a test).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// M7 training cells (default box model and sampler, seed 7), as X and y tables.
    M7 {
        #[arg(long, default_value_t = 1000)]
        cells: usize,
        #[arg(long, default_value_t = 256)]
        gather_every: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Times the collectives of one surface round (`agree` on the evaluation, the gather of the
    /// points, `agree` on the write) with `points` (index, loss) pairs per rank, `rounds` times.
    Rounds {
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
        #[arg(long, default_value_t = 16)]
        points: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Tracking evaluation: an untrained GNN (seed 3) reconstructing simulated frames (Bergen
    /// DTC, 150 mm water, 30 primaries per frame, seed 5), frames split over the ranks.
    Track {
        #[arg(long, default_value_t = 6)]
        frames: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// A Branin study (seed 3) run in batches of q over the ranks.
    Bo {
        #[arg(long, default_value_t = 12)]
        trials: usize,
        #[arg(long, default_value_t = 2)]
        q: usize,
        /// The study file (resumed from if present).
        #[arg(long)]
        study: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// The surface objective with an optional delay and a count of evaluations.
struct Counted<O> {
    inner: O,
    delay: Duration,
    count: Arc<AtomicUsize>,
}

impl<O: Objective> Objective for Counted<O> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn loss(&mut self, theta: &[f64]) -> gradlab_landscape::Result<f64> {
        std::thread::sleep(self.delay);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.loss(theta)
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> gradlab_landscape::Result<f64> {
        self.inner.loss_grad(theta, grad)
    }
}

impl<O: Replicate> Replicate for Counted<O> {
    fn replicate(&self) -> gradlab_landscape::Result<Self> {
        Ok(Counted { inner: self.inner.replicate()?, delay: self.delay, count: self.count.clone() })
    }
}

fn bits(v: &[f64]) -> Vec<String> {
    v.iter().map(|x| format!("{:016x}", x.to_bits())).collect()
}

fn fnv(v: impl Iterator<Item = f64>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn write(out: &Path, value: &serde_json::Value) -> gradlab_core::Result<()> {
    gradlab_core::io::write_json(out, value)
}

fn surface(
    comm: &dyn Comm,
    (points, threads, gather_every): (usize, usize, usize),
    resume: Option<PathBuf>,
    delay_ms: u64,
    out: &Path,
) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let mut rng = stream_rng(11, 0);
    let n = 1000;
    let (mut xs, mut ys) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    for i in 0..n {
        let c = i % 3;
        let r = (i / 3) as f64 / (n / 3) as f64;
        let a = 2.0 * std::f64::consts::PI * (r * 1.5 + c as f64 / 3.0);
        xs.push(r * a.cos() + 0.05 * rng.random::<f64>());
        xs.push(r * a.sin() + 0.05 * rng.random::<f64>());
        ys.push(c as u32);
    }
    let x = Tensor::from_vec(xs, (n, 2), &dev)?;
    let y = Tensor::from_vec(ys, n, &dev)?;
    let sizes = [2, 64, 64, 3];
    let inner = CandleObjective::new(move |vb| mlp::build(&sizes, vb), cross_entropy, vec![(x, y)], DType::F64, &dev)?;
    let dim = inner.dim();
    let gauss =
        |rng: &mut rand_chacha::ChaCha8Rng| -> Vec<f64> { (0..dim).map(|_| rng.random::<f64>() - 0.5).collect() };
    let center = gauss(&mut rng);
    let (d1, d2) = (gauss(&mut rng), gauss(&mut rng));
    let count = Arc::new(AtomicUsize::new(0));
    let obj = Counted { inner, delay: Duration::from_millis(delay_ms), count: count.clone() };
    let axis = Axis::new(-1.0, 1.0, points)?;
    let opts = SurfaceOptions { threads, resume_file: resume, ..Default::default() };
    let t = Instant::now();
    let s = evaluate_surface_on(comm, &obj, &center, &[&d1, &d2], axis, Some(axis), &opts, gather_every)?;
    let seconds = t.elapsed().as_secs_f64();
    let evals = gather_json(comm, 0, &count.load(Ordering::Relaxed))?;
    if let Some(s) = s {
        write(
            out,
            &json!({
                "what": "surface", "ranks": comm.size(), "threads": threads, "points": points,
                "gather_every": gather_every, "parameters": dim, "seconds": seconds,
                "evaluations_per_rank": evals, "loss_bits": bits(&s.loss), "hash": fnv(s.loss.iter().copied()),
            }),
        )?;
    }
    Ok(())
}

fn m7(comm: &dyn Comm, cells: usize, gather_every: usize, out: &Path) -> anyhow::Result<()> {
    let cfg = gradlab_aerosol::sampler::SamplerConfig::default();
    let m7 = gradlab_aerosol::config::M7Config::default();
    let t = Instant::now();
    let tables = gradlab_aerosol::sampler::sample_tables_on(comm, &m7, &cfg, 7, 0, cells, false, gather_every)?;
    let seconds = t.elapsed().as_secs_f64();
    if let Some((x, y)) = tables {
        write(
            out,
            &json!({
                "what": "m7", "ranks": comm.size(), "cells": cells, "gather_every": gather_every,
                "seconds": seconds, "x_shape": x.shape(), "y_shape": y.shape(),
                "x_hash": fnv(x.iter().copied()), "y_hash": fnv(y.iter().copied()),
                "first_row_bits": bits(&x.row(0).to_vec()),
            }),
        )?;
    }
    Ok(())
}

fn rounds(comm: &dyn Comm, rounds: usize, points: usize, out: &Path) -> anyhow::Result<()> {
    use gradlab_core::dist::agree;
    let payload: Vec<(usize, Option<f64>)> = (0..points).map(|i| (i * 97, Some(1.0 / (i as f64 + 3.0)))).collect();
    comm.barrier();
    let t = Instant::now();
    for _ in 0..rounds {
        agree::<_, gradlab_core::Error>(comm, || Ok(()))?;
        let all = gather_json(comm, 0, &payload)?;
        agree::<_, gradlab_core::Error>(comm, || Ok(all.map(|a| a.len())))?;
    }
    let seconds = t.elapsed().as_secs_f64();
    if comm.is_root() {
        write(
            out,
            &json!({"what": "rounds", "ranks": comm.size(), "rounds": rounds, "points_per_rank": points,
                    "seconds": seconds, "seconds_per_round": seconds / rounds as f64}),
        )?;
    }
    Ok(())
}

fn track(comm: &dyn Comm, frames: u64, out: &Path) -> anyhow::Result<()> {
    use gradlab_track::{detector::DetectorConfig, gnn::GnnConfig, graph::GraphConfig, layer_assign::AssignConfig};
    use gradlab_track::{setup::SetupParams, tracks::TrackFilter, training};
    let sim = SetupParams::default().simulator(&DetectorConfig::bergen_dtc(), 150.0, 30)?;
    let gnn = GnnConfig { angle_encoding_dim: 8, ..Default::default() };
    let data = training::prepare(&sim.simulate_frames(5, 0, frames), &GraphConfig::default(), &gnn, 2)?;
    let model = training::Model::new(&gnn, 3)?;
    let sel = training::Selector::Lap(AssignConfig::default().unmatched());
    let t = Instant::now();
    let summary = training::evaluate_model_on(comm, &model, &data, sel, &TrackFilter::default())?;
    let seconds = t.elapsed().as_secs_f64();
    if let Some(s) = summary {
        write(
            out,
            &json!({"what": "track", "ranks": comm.size(), "frames": s.frames, "failed": s.failed, "seconds": seconds,
                    "summary_bits": bits(&[s.purity, s.efficiency, s.tpr, s.fpr])}),
        )?;
    }
    Ok(())
}

fn bo(comm: &dyn Comm, trials: usize, q: usize, study_path: PathBuf, out: &Path) -> anyhow::Result<()> {
    use gradlab_bayesopt::dist::{BatchOptions, run_batches};
    use gradlab_bayesopt::study::{Study, StudyConfig};
    use gradlab_bayesopt::testfns::TestFunction;
    let f = TestFunction::Branin;
    let mut study = if comm.is_root() {
        Some(if study_path.exists() {
            Study::load(&study_path)?
        } else {
            Study::new(f.space(), StudyConfig { seed: 3, ..Default::default() })?
        })
    } else {
        None
    };
    let opts = BatchOptions { q, trials, save: Some(study_path) };
    let t = Instant::now();
    run_batches(comm, study.as_mut(), &opts, |p| {
        let x: Vec<f64> = p.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        Ok(f.eval(&x))
    })?;
    let seconds = t.elapsed().as_secs_f64();
    if let Some(study) = study {
        let rows: Vec<serde_json::Value> = study
            .trials()
            .iter()
            .map(|t| json!({"id": t.id, "x_bits": bits(&t.x), "value_bits": t.value.map(|v| format!("{:016x}", v.to_bits()))}))
            .collect();
        write(
            out,
            &json!({"what": "bo", "ranks": comm.size(), "q": q, "seconds": seconds, "trials": rows,
                    "best": study.best().and_then(|t| t.value)}),
        )?;
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let comm = match gradlab_mpi::world() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let result = match cli.what {
        What::Surface { points, threads, gather_every, resume, delay_ms, out } => {
            surface(&*comm, (points, threads, gather_every), resume, delay_ms, &out)
        }
        What::M7 { cells, gather_every, out } => m7(&*comm, cells, gather_every, &out),
        What::Rounds { rounds: r, points, out } => rounds(&*comm, r, points, &out),
        What::Track { frames, out } => track(&*comm, frames, &out),
        What::Bo { trials, q, study, out } => bo(&*comm, trials, q, study, &out),
    };
    if let Err(e) = result {
        eprintln!("error (rank {} of {}): {e:#}", comm.rank(), comm.size());
        // The distributed calls agree on failures, so every rank gets here; exit without
        // leaving another rank waiting.
        drop(comm);
        std::process::exit(1);
    }
}
