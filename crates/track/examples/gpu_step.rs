//! One PTT training step of the line-graph network — train-mode forward, BCE with logits,
//! backward, AdamW update — on one frame of 100 primaries behind 150 mm of water, on the CPU
//! and, with the `cuda` feature and a GPU, on CUDA (issue 23; run by `scripts/gpu/check.sh`).
//! On a GPU the network runs the plain candle composition with the CUDA scatter-max (the fused
//! message kernels are CPU kernels); the CPU runs the fused kernels, as in training.
//!
//! `cargo run --release -p gradlab-track --example gpu_step [--features cuda] -- [--reps N]`
//! prints one JSON line per device: median milliseconds per step over N steps (after 3 warm-up
//! steps), the loss after the last step, and the frame's size.

use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use gradlab_core::params::{Init, init};
use gradlab_track::gnn::{GnnConfig, InteractionNetwork};
use gradlab_track::graph::GraphConfig;
use gradlab_track::layer_assign::AssignConfig;
use gradlab_track::sim::{Frame, SimConfig, Simulator};
use gradlab_track::training::{FrameData, Method, loss_from_logits};

fn run(dev: &Device, frame: &Frame, reps: usize) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let cfg = GnnConfig::default();
    let fd = FrameData::new(frame, &GraphConfig::default(), &cfg, 2, dev)?;
    let vm = VarMap::new();
    let net = InteractionNetwork::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, dev))?;
    init(&vm, 1, Init::TorchWeightsZeroBias)?;
    let mut opt = AdamW::new(vm.all_vars(), ParamsAdamW { lr: 1e-3, ..Default::default() })?;
    let assign = AssignConfig::default();
    let mut times = Vec::with_capacity(reps);
    let mut loss = f32::NAN;
    for i in 0..reps + 3 {
        let t = Instant::now();
        let z = net.forward_t(&fd.input, true)?;
        let l = loss_from_logits(&z, &fd, Method::Ptt, &assign)?;
        opt.backward_step(&l)?;
        loss = l.to_dtype(DType::F32)?.to_scalar::<f32>()?; // waits for the device
        if i >= 3 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "device": format!("{dev:?}"),
        "median_step_ms": times[times.len() / 2],
        "min_step_ms": times[0],
        "steps": reps,
        "loss_after": loss,
        "edges": fd.num_edges(),
        "messages": fd.input.num_messages(),
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut reps = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => {
                let v = args.next().ok_or("--reps needs a value")?;
                reps = v.parse().map_err(|_| format!("--reps {v}: want a whole number >= 1"))?;
                if reps == 0 {
                    return Err("--reps 0: want a whole number >= 1".into());
                }
            }
            o => return Err(format!("unknown argument {o}; usage: gpu_step [--reps N]").into()),
        }
    }
    let frame = Simulator::new(&SimConfig::bergen(150.0, 100))?.simulate_frame(1, 0);
    println!("{}", run(&Device::Cpu, &frame, reps)?);
    match Device::new_cuda(0) {
        Ok(gpu) => println!("{}", run(&gpu, &frame, reps)?),
        Err(e) => eprintln!("no CUDA device ({e}): CPU only"),
    }
    Ok(())
}
