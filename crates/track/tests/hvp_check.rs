//! Which Hessian-vector products the landscape study of the tracking network can use (issue
//! 20): with exact double backward switched on for the process, as a user's `main` does,
//! [`choose_hvp`] tries an exact product of the BCE loss over the trainable parameters and keeps
//! it only where it agrees with central differences of the gradient. The fused
//! message-passing kernels have hand-written backward passes that are not themselves
//! differentiable, so the exact product drops terms and must be refused, with the reason
//! (measured: relative difference 1.0 against central differences).
//!
//! Runs without the test harness: `main` switches double backward on before any thread starts.

use std::path::PathBuf;
use std::sync::Arc;

use gradlab_core::experiment::{ExperimentConfig, from_value};
use gradlab_landscape::hessian::HvpMethod;
use gradlab_landscape::{Objective, Subspace};
use gradlab_track::experiments::landscape::Params;
use gradlab_track::landscape_study::analysis::choose_hvp;
use gradlab_track::landscape_study::objective::{Measure, TrackObjective};
use gradlab_track::training::{Model, prepare};

fn fused_network_falls_back_to_finite_differences_and_says_why() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = ExperimentConfig::load(&root.join("configs/track-landscape.json")).unwrap();
    let det = root.join("configs/detector-bergen-dtc.json");
    let sets = vec![format!("setup.detector=\"{}\"", det.display()), "data.primaries=12".into()];
    let p: Params = from_value(&cfg.resolve(true, &sets).unwrap(), "track-landscape").unwrap();
    let detector = p.setup.detector.load().unwrap();
    let sim = p.setup.simulator(&detector, p.data.thicknesses_mm[0], p.data.primaries).unwrap();
    let frames = Arc::new(prepare(&sim.simulate_frames(3, 0, 1), &p.setup.graph, &p.spec.model, 2).unwrap());
    assert!(frames[0].input.num_messages() >= 2, "the fused path needs two messages");
    let obj = TrackObjective::new(&p.spec.model, frames, Measure::Bce).unwrap();
    let theta = gradlab_core::params::read_params_f64(&Model::new(&p.spec.model, 5).unwrap().vm).unwrap();
    let index = obj.trainable_indices();
    let mut sub = Subspace::new(obj, theta.clone(), index).unwrap();
    let phi = sub.restrict(&theta);
    let fallback = HvpMethod::FiniteDifference { h: 1e-2 };
    let (method, why) = choose_hvp(&mut sub, &phi, fallback, 7).unwrap();
    println!("track network: {why}");
    assert_eq!(method, fallback, "{why}");
    assert!(why.contains("central differences"), "refused for the wrong reason: {why}");
    // The fallback works.
    let (mut out, v) = (vec![0.0; sub.dim()], vec![1e-2; sub.dim()]);
    gradlab_landscape::hessian::hvp(&mut sub, &phi, &v, fallback, &mut out).unwrap();
    assert!(out.iter().all(|x| x.is_finite()) && out.iter().any(|x| *x != 0.0));
}

fn main() {
    gradlab_core::grad::enable_exact_double_backward().unwrap();
    fused_network_falls_back_to_finite_differences_and_says_why();
    println!("test fused_network_falls_back_to_finite_differences_and_says_why ... ok");
    println!("test result: ok. 1 passed; 0 failed; 0 ignored");
}
