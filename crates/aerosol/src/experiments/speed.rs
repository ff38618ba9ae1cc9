//! `m7-speed`: emulator inference throughput against the box model on the same cells.

use crate::box_model::M7;
use crate::config::M7Config;
use crate::dataset;
use crate::emulator::speed::{box_model_throughput, cells_to_x, emulator_throughput};
use crate::emulator::train::INIT_STREAM;
use crate::emulator::{Emulator, EmulatorConfig, EmulatorData};
use crate::sampler::{SamplerConfig, sample_cells};
use crate::state::{AerosolState, Environment};
use gradlab_core::device::DeviceChoice;
use gradlab_core::experiment::{ExperimentResult, RunContext};
use gradlab_core::report::Report;
use gradlab_core::rng::derive_seed;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

fn default_batches() -> Vec<usize> {
    vec![1_000, 10_000, 100_000, 571_392]
}

/// Parameters of `m7-speed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedParams {
    /// The run's one seed: the sampled cells; the fresh emulator's initialisation is derived.
    pub seed: u64,
    /// Distinct cells sampled (tiled to the largest batch).
    pub pool_cells: usize,
    /// Batch sizes (cells per call).
    #[serde(default = "default_batches")]
    pub batch_sizes: Vec<usize>,
    /// Best-of repeats per measurement (at least 1).
    pub repeats: usize,
    /// A saved emulator; when absent a freshly initialised one with `emulator` is timed (the
    /// cost does not depend on the weights' values).
    #[serde(default)]
    pub model_dir: Option<PathBuf>,
    /// The fresh emulator (default: [`EmulatorConfig::default`]).
    #[serde(default)]
    pub emulator: EmulatorConfig,
    /// Extra device for the emulator (`cuda` needs the `cuda` feature); the CPU is always timed.
    #[serde(default)]
    pub device: DeviceChoice,
    /// Sampler.
    #[serde(default)]
    pub sampler: SamplerConfig,
}

/// One measured batch size.
struct Measured {
    batch: usize,
    box_tp: f64,
    cpu_tp: f64,
    gpu_tp: Option<f64>,
}

/// Runs `m7-speed`: cells → emulators → timings → report.
pub fn run(ctx: &mut RunContext) -> ExperimentResult {
    let p: SpeedParams = ctx.params()?;
    let max_batch = p.batch_sizes.iter().copied().max().unwrap_or(0);
    if max_batch == 0 || p.batch_sizes.contains(&0) || p.pool_cells == 0 {
        return Err(crate::Error::invalid(
            "batch_sizes / pool_cells",
            format!("{:?} / {}", p.batch_sizes, p.pool_cells),
            "at least one batch size, every size and pool_cells >= 1",
        )
        .into());
    }
    if p.repeats == 0 {
        return Err(crate::Error::invalid(
            "repeats",
            p.repeats,
            "at least 1 (each time is the best of `repeats` runs)",
        )
        .into());
    }
    let m7cfg = M7Config::default();
    let samples = sample_cells(&m7cfg, &p.sampler, p.seed, 0, p.pool_cells)?;
    let pool: Vec<(Environment, AerosolState)> = samples.iter().map(|s| (s.env, s.before)).collect();
    let cells: Vec<(Environment, AerosolState)> = (0..max_batch).map(|i| pool[i % pool.len()]).collect();
    let make = |dev: &candle_core::Device| -> crate::Result<Emulator> {
        match &p.model_dir {
            Some(d) => Emulator::load_on(d, dev),
            None => {
                let (sx, sy) = dataset::tables(&samples, false);
                let d = EmulatorData::from_xy(&sx.view(), &sy.view())?;
                Emulator::new(p.emulator.clone(), m7cfg.dt, &d, derive_seed(p.seed, INIT_STREAM), dev)
            }
        }
    };
    let em_cpu = make(&candle_core::Device::Cpu)?;
    let extra = p.device.open()?;
    let em_gpu = if extra.is_cuda() { Some(make(&extra)?) } else { None };
    let measured = measure(ctx, &p, &M7::new(m7cfg)?, &cells, &em_cpu, em_gpu.as_ref())?;
    report(ctx, &p, &em_cpu, &measured)?;
    Ok(())
}

/// Times the box model and the emulator(s) at every batch size.
fn measure(
    ctx: &mut RunContext,
    p: &SpeedParams,
    m7: &M7,
    cells: &[(Environment, AerosolState)],
    em_cpu: &Emulator,
    em_gpu: Option<&Emulator>,
) -> crate::Result<Vec<Measured>> {
    let x = cells_to_x(cells);
    let mut out = Vec::new();
    for &b in &p.batch_sizes {
        let xb = x.slice(ndarray::s![..b, ..]).to_owned();
        let box_tp = box_model_throughput(m7, &cells[..b], p.repeats)?;
        let cpu_tp = emulator_throughput(em_cpu, &xb, p.repeats)?;
        let gpu_tp = match em_gpu {
            Some(g) => Some(emulator_throughput(g, &xb, p.repeats)?),
            None => None,
        };
        if !ctx.quiet {
            eprintln!(
                "m7-speed batch {b}: box {box_tp:.3e} cells/s, emulator CPU {cpu_tp:.3e} cells/s ({:.2}×)",
                cpu_tp / box_tp
            );
        }
        ctx.metrics()?.log(&record(&Measured { batch: b, box_tp, cpu_tp, gpu_tp }))?;
        out.push(Measured { batch: b, box_tp, cpu_tp, gpu_tp });
    }
    Ok(out)
}

fn record(m: &Measured) -> serde_json::Value {
    serde_json::json!({"batch": m.batch, "box_cells_per_s": m.box_tp, "emulator_cpu_cells_per_s": m.cpu_tp,
        "speedup_cpu": m.cpu_tp / m.box_tp, "emulator_gpu_cells_per_s": m.gpu_tp, "speedup_gpu": m.gpu_tp.map(|g| g / m.box_tp)})
}

fn report(ctx: &RunContext, p: &SpeedParams, em_cpu: &Emulator, measured: &[Measured]) -> crate::Result<()> {
    let threads = rayon::current_num_threads();
    let records: Vec<serde_json::Value> = measured.iter().map(record).collect();
    ctx.dir.write_summary(
        &serde_json::json!({"threads": threads, "pool_cells": p.pool_cells, "parameters": em_cpu.parameters(),
        "model": p.model_dir, "rows": records, "paper": {"gpu_speedup": 64.0}}),
    )?;
    let rows: Vec<Vec<String>> = measured
        .iter()
        .map(|m| {
            vec![
                m.batch.to_string(),
                format!("{:.3e}", m.box_tp),
                format!("{:.3e}", m.cpu_tp),
                format!("{:.2}", m.cpu_tp / m.box_tp),
                m.gpu_tp.map_or("–".into(), |g| format!("{g:.3e} ({:.1}×)", g / m.box_tp)),
            ]
        })
        .collect();
    let mut r = Report::new("m7-speed: emulator vs M7 box-model throughput");
    r.paragraph(&format!(
        "Same cells for both ({} distinct spun-up cells tiled to each batch size). Box model: one M7 step per cell, \
         parallel over {threads} rayon threads. Emulator: `Emulator::predict` from a host array to a host array \
         (normalisation, MLP 32 → {:?} → 28, {:?} head, de-normalisation), {} parameters, f32, same threads. \
         Best of {} repeats. Paper: GPU emulator > 64× faster than M7 on CPU.",
        p.pool_cells,
        em_cpu.config().hidden,
        em_cpu.config().head,
        em_cpu.parameters(),
        p.repeats
    ));
    r.code("sh", &ctx.command());
    r.table(
        &["cells per call", "box model (cells/s)", "emulator CPU (cells/s)", "speed-up CPU", "emulator GPU (cells/s)"],
        &rows,
    );
    r.write(&ctx.dir)?;
    Ok(())
}
