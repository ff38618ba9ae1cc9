use std::sync::Arc;

use gradlab_core::experiment::{ExperimentConfig, RunContext, from_value};
use gradlab_core::params::read_params_f64;
use gradlab_landscape::Objective;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::activations::{MODULES, activations};
use super::objective::{Measure, Subspace, TrackObjective, buffer_mask};
use super::*;
use crate::gnn::GnnConfig;
use crate::graph::GraphConfig;
use crate::sim::{Frame, Hit};
use crate::tracks::{TrackFilter, evaluate, oracle_selection};
use crate::training::{Model, prepare};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Straight-ish tracks through 12 layers with small random kinks (as in the training tests).
fn toy_frame(seed: u64, tracks: usize) -> Frame {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hits = Vec::new();
    for t in 0..tracks {
        let (mut x, mut y) = (rng.random_range(-8.0..8.0f32), rng.random_range(-8.0..8.0f32));
        let (mut tx, mut ty) = (rng.random_range(-0.03..0.03f32), rng.random_range(-0.03..0.03f32));
        let mut zp = 0.0;
        for l in 0..12u16 {
            let z = if l < 2 { l as f32 * 57.8 } else { 110.0 + (l - 2) as f32 * 5.5 };
            x += tx * (z - zp);
            y += ty * (z - zp);
            zp = z;
            tx += rng.random_range(-0.02..0.02f32);
            ty += rng.random_range(-0.02..0.02f32);
            let edep = if l == 11 { 0.3 } else { 0.03 };
            hits.push(Hit { layer: l, x, y, z, edep, cluster: 4, track: t as u32, primary: true });
        }
    }
    Frame { hits, spot: [0.0, 0.0], primaries: tracks as u32 }
}

fn cfg() -> GnnConfig {
    GnnConfig { angle_encoding_dim: 8, ..Default::default() }
}

fn frames(n: u64) -> Arc<Vec<FrameData>> {
    let f: Vec<Frame> = (0..n).map(|s| toy_frame(s + 40, 8)).collect();
    Arc::new(prepare(&f, &GraphConfig::default(), &cfg(), 2).unwrap())
}

/// A model with random (not default) BatchNorm statistics and weights.
fn random_theta(obj: &TrackObjective, seed: u64) -> Vec<f64> {
    let m = Model::new(&cfg(), seed).unwrap();
    let mut theta = read_params_f64(&m.vm).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for (t, b) in theta.iter_mut().zip(obj.buffers()) {
        if *b {
            *t = rng.random_range(0.5..1.5); // running mean/var away from 0/1
        } else {
            *t += rng.random_range(-0.1..0.1);
        }
    }
    theta
}

#[test]
fn quick_and_full_configs_resolve_and_validate() {
    let file = root().join("configs/track-landscape.json");
    let cfg = ExperimentConfig::load(&file).unwrap();
    assert_eq!(cfg.entry, "track.landscape");
    assert!(crate::experiments().iter().any(|e| e.entry == cfg.entry));
    for quick in [false, true] {
        let v = cfg.resolve(quick, &[]).unwrap();
        let p: Params = from_value(&v, "track-landscape.json").unwrap();
        p.validate().unwrap();
        let lambdas: Vec<f64> = p
            .variants
            .iter()
            .filter(|v| v.method == Method::Pat && v.optimizer.is_none())
            .map(|v| p.spec_of(v).assign.lambda)
            .collect();
        assert_eq!(lambdas, vec![25.0, 50.0, 75.0], "quick = {quick}");
        assert!(p.variants.iter().any(|v| v.method == Method::Ptt));
    }
    // bad values are rejected with the field named
    let mut v = cfg.resolve(true, &[]).unwrap();
    v["seeds"] = serde_json::json!([1]);
    let p: Params = from_value(&v, "x").unwrap();
    assert!(p.validate().unwrap_err().to_string().contains("seeds"));
    let mut v = cfg.resolve(true, &[]).unwrap();
    v["analysis"]["top_k"] = serde_json::json!(1);
    let p: Params = from_value(&v, "x").unwrap();
    assert!(p.validate().unwrap_err().to_string().contains("top_k"));
}

#[test]
fn module_activations_reproduce_the_network_forward_pass() {
    let fr = frames(2);
    for graph in [crate::gnn::GraphKind::Line, crate::gnn::GraphKind::Hit] {
        let c = GnnConfig { graph, ..cfg() };
        let fr: Vec<FrameData> = if graph == crate::gnn::GraphKind::Line {
            fr.to_vec()
        } else {
            prepare(&[toy_frame(3, 6)], &GraphConfig::default(), &c, 2).unwrap()
        };
        let model = Model::new(&c, 4).unwrap();
        // non-trivial BatchNorm statistics: a few train-mode passes update them
        for _ in 0..3 {
            model.net.forward_t(&fr[0].input, true).unwrap();
        }
        let acts = activations(&model, &fr[0].input).unwrap();
        assert_eq!(acts.len(), MODULES.len());
        let logits = model.net.forward_t(&fr[0].input, false).unwrap().to_vec1::<f32>().unwrap();
        let ours = &acts[3];
        assert_eq!((ours.0, ours.1), (logits.len(), 1));
        for (a, b) in ours.2.iter().zip(&logits) {
            assert!((a - *b as f64).abs() < 1e-5 * (1.0 + b.abs() as f64), "{graph:?}: {a} vs {b}");
        }
        assert_eq!(acts[0].0, fr[0].input.num_messages());
        assert_eq!(acts[1].0, fr[0].input.n);
    }
}

#[test]
fn objective_gradient_matches_finite_differences_and_ignores_buffers() {
    let fr = frames(2);
    let mut obj = TrackObjective::new(&cfg(), fr, Measure::Bce).unwrap();
    let theta = random_theta(&obj, 1);
    let mut g = vec![0.0; obj.dim()];
    let l = obj.loss_grad(&theta, &mut g).unwrap();
    assert!((l - obj.loss(&theta).unwrap()).abs() < 1e-6);
    let buffers = obj.buffers().to_vec();
    assert!(buffers.iter().any(|b| *b) && buffers.iter().any(|b| !*b));
    assert!(g.iter().zip(&buffers).all(|(gi, b)| !b || *gi == 0.0), "running statistics must get no gradient");
    // directional derivative along a random trainable direction (f32 model: loose tolerance)
    let mut rng = StdRng::seed_from_u64(2);
    let d: Vec<f64> = buffers.iter().map(|b| if *b { 0.0 } else { rng.random_range(-1.0..1.0) }).collect();
    let nd = d.iter().map(|x| x * x).sum::<f64>().sqrt();
    let h = 1e-2 / nd;
    let at = |s: f64| theta.iter().zip(&d).map(|(t, di)| t + s * di).collect::<Vec<_>>();
    let fd = (obj.loss(&at(h)).unwrap() - obj.loss(&at(-h)).unwrap()) / (2.0 * h);
    let an: f64 = g.iter().zip(&d).map(|(a, b)| a * b).sum();
    assert!((fd - an).abs() < 2e-2 * an.abs().max(1e-2), "FD {fd} vs gradient {an}");
    // the purity measure has no gradient
    let mut pur =
        obj.with_measure(Measure::Purity { filter: TrackFilter::default(), assign: Default::default() }).unwrap();
    assert!(pur.loss_grad(&theta, &mut g).is_err());
    let p = pur.loss(&theta).unwrap();
    assert!((0.0..=1.0).contains(&p));
}

#[test]
fn subspace_restricts_values_and_gradients() {
    let fr = frames(1);
    let obj = TrackObjective::new(&cfg(), fr, Measure::Bce).unwrap();
    let theta = random_theta(&obj, 3);
    let mut full = obj.with_measure(Measure::Bce).unwrap();
    let index: Vec<usize> = (0..theta.len()).filter(|&i| !obj.buffers()[i]).collect();
    let mut sub = Subspace::new(obj, theta.clone(), index.clone()).unwrap();
    let phi = sub.restrict(&theta);
    assert_eq!(sub.embed(&phi), theta);
    let mut gs = vec![0.0; sub.dim()];
    let mut gf = vec![0.0; full.dim()];
    let ls = sub.loss_grad(&phi, &mut gs).unwrap();
    let lf = full.loss_grad(&theta, &mut gf).unwrap();
    assert_eq!(ls, lf);
    assert_eq!(gs, index.iter().map(|&i| gf[i]).collect::<Vec<_>>());
    let d = sub.embed_direction(&vec![1.0; sub.dim()]);
    assert_eq!(d.iter().filter(|x| **x == 1.0).count(), index.len());
    assert!(Subspace::new(full, theta, vec![usize::MAX]).is_err());
}

#[test]
fn found_tracks_agree_with_the_purity_bookkeeping() {
    let fr = frames(2);
    let filter = TrackFilter::default();
    for fd in fr.iter() {
        let g = &fd.graph;
        let oracle = oracle_selection(g);
        let found = found_tracks(fd, &oracle, &filter).unwrap();
        let m = evaluate(g, &filter.apply(g, crate::tracks::build_tracks(g, &oracle, 1000).unwrap()));
        assert_eq!(found.len(), m.true_tracks);
        assert_eq!(found.iter().filter(|f| **f).count(), m.correct);
        assert!(found.iter().all(|f| *f), "the oracle finds every toy track");
        let none = found_tracks(fd, &vec![false; g.num_edges()], &filter).unwrap();
        assert!(none.iter().all(|f| !*f));
    }
    // BatchNorm statistics are exactly the buffers
    let m = Model::new(&cfg(), 0).unwrap();
    let mask = buffer_mask(&m).unwrap();
    let n_bn: usize = gradlab_core::params::sorted_vars(&m.vm)
        .iter()
        .filter(|(n, _)| n.contains("running"))
        .map(|(_, v)| v.elem_count())
        .sum();
    assert_eq!(mask.iter().filter(|b| **b).count(), n_bn);
}

#[test]
fn the_experiment_runs_end_to_end_at_a_tiny_scale() {
    let file = root().join("configs/track-landscape.json");
    let cfg = ExperimentConfig::load(&file).unwrap();
    let det = root().join("configs/detector-bergen-dtc.json");
    let sets = vec![
        format!("setup.detector=\"{}\"", det.display()),
        "seeds=[1,2]".into(),
        "data.primaries=8".into(),
        "data.train_frames=4".into(),
        "data.val_frames=1".into(),
        "spec.train.epochs=1".into(),
        "spec.train.grad_accum=2".into(),
        "spec.train.eval_every_steps=2".into(),
        "analysis.frames=1".into(),
        "analysis.path_points=3".into(),
        "analysis.bezier.steps=2".into(),
        "analysis.lanczos.max_steps=4".into(),
        "analysis.slq.probes=1".into(),
        "analysis.slq.steps=3".into(),
        "analysis.slice.points=3".into(),
        "analysis.threads=1".into(),
    ];
    let mut params = cfg.resolve(true, &sets).unwrap();
    params["variants"] = serde_json::json!([{ "method": "pat", "lambda": 50.0 }, { "method": "ptt" }]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = gradlab_core::run::RunDir::create(tmp.path(), "track-landscape").unwrap();
    let mut ctx = RunContext::new("track-landscape", &file, &cfg.entry, params, true, true, dir).unwrap();
    run(&mut ctx).unwrap();
    let report = std::fs::read_to_string(ctx.dir.path().join("report.md")).unwrap();
    for needle in [
        "linear max Hamming",
        "Bézier (Hamming) max Hamming",
        "edge m_mm",
        "PAT λ=50",
        "PTT",
        "lambda_vs_instability.png",
    ] {
        assert!(report.contains(needle), "report lacks {needle}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ctx.dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["pairs"].as_array().unwrap().len(), 2);
    for pr in summary["pairs"].as_array().unwrap() {
        let e = pr["edges"]["min_max"].as_f64();
        assert!(e.is_none() || (-1e-12..=1.0 + 1e-12).contains(&e.unwrap()));
    }
}

/// Runs a config at its quick or full scale into `runs/` (for measurements; not a unit test):
/// `TL_CONFIG=track-landscape TL_QUICK=1 cargo test --release -p gradlab-track run_config -- --ignored`.
#[test]
#[ignore]
fn run_config() {
    let name = std::env::var("TL_CONFIG").unwrap_or_else(|_| "track-landscape".into());
    let quick = std::env::var("TL_QUICK").is_ok_and(|v| v == "1");
    let file = root().join(format!("configs/{name}.json"));
    let cfg = ExperimentConfig::load(&file).unwrap();
    let det = root().join("configs/detector-bergen-dtc.json");
    let params = cfg.resolve(quick, &[format!("setup.detector=\"{}\"", det.display())]).unwrap();
    let dir = gradlab_core::run::RunDir::create(root().join("runs"), &name).unwrap();
    eprintln!("run dir {}", dir.path().display());
    let mut ctx = RunContext::new(&name, &file, &cfg.entry, params, quick, false, dir).unwrap();
    run(&mut ctx).unwrap();
}
