use std::sync::Arc;

use gradlab_core::params::read_params_f64;
use gradlab_landscape::Objective;
use rand::Rng;

use super::activations::{MODULES, activations};
use super::objective::{Measure, TrackObjective, is_buffer};
use super::*;
use crate::gnn::GnnConfig;
use crate::graph::GraphConfig;
use crate::sim::Frame;
use crate::test_fixtures::toy_frame;
use crate::tracks::{TrackFilter, evaluate, oracle_selection};
use crate::training::{FrameData, Model, prepare};
use gradlab_landscape::Subspace;

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
    let mut rng = gradlab_core::rng::rng(seed);
    for (t, b) in theta.iter_mut().zip(obj.buffers()) {
        if b {
            *t = rng.random_range(0.5..1.5); // running mean/var away from 0/1
        } else {
            *t += rng.random_range(-0.1..0.1);
        }
    }
    theta
}

/// The line-graph configuration on two toy frames, and the hit-graph one on `hit` frames.
fn both_graphs(hit: &[Frame]) -> Vec<(crate::gnn::GraphKind, GnnConfig, Vec<FrameData>)> {
    let hit_cfg = GnnConfig { graph: crate::gnn::GraphKind::Hit, ..cfg() };
    let hit_frames = prepare(hit, &GraphConfig::default(), &hit_cfg, 2).unwrap();
    vec![(crate::gnn::GraphKind::Line, cfg(), frames(2).to_vec()), (crate::gnn::GraphKind::Hit, hit_cfg, hit_frames)]
}

#[test]
fn module_activations_reproduce_the_network_forward_pass() {
    for (graph, c, fr) in both_graphs(&[toy_frame(3, 6)]) {
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
    let buffers = obj.buffers();
    assert!(buffers.iter().any(|b| *b) && buffers.iter().any(|b| !*b));
    assert!(g.iter().zip(&buffers).all(|(gi, b)| !b || *gi == 0.0), "running statistics must get no gradient");
    // directional derivative along a random trainable direction (f32 model: loose tolerance)
    let mut rng = gradlab_core::rng::rng(2);
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
    let index = obj.trainable_indices();
    let buffers = obj.buffers();
    assert_eq!(index, (0..theta.len()).filter(|&i| !buffers[i]).collect::<Vec<_>>());
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
    let mask = TrackObjective::new(&cfg(), fr.clone(), Measure::Bce).unwrap().buffers();
    let vars = gradlab_core::params::sorted_vars(&m.vm);
    let n_bn: usize = vars.iter().filter(|(n, _)| n.contains("running")).map(|(_, v)| v.elem_count()).sum();
    assert_eq!(mask.iter().filter(|b| **b).count(), n_bn);
    assert_eq!(
        vars.iter().filter(|(n, _)| is_buffer(n)).count(),
        vars.iter().filter(|(n, _)| n.contains("running")).count()
    );
}

/// The BatchNorm buffers of a model, in name order, as f64.
fn running_stats(m: &Model) -> Vec<Vec<f64>> {
    gradlab_core::params::sorted_vars(&m.vm)
        .iter()
        .filter(|(n, _)| is_buffer(n))
        .map(|(_, v)| {
            v.as_tensor().flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_vec1().unwrap()
        })
        .collect()
}

#[test]
fn recomputed_batch_norm_statistics_are_the_frames_batch_statistics() {
    let hit: Vec<Frame> = (0..2).map(|s| toy_frame(s + 40, 16)).collect();
    for (graph, c, fr) in both_graphs(&hit) {
        let model = Model::new(&c, 5).unwrap();
        // One frame: in eval mode the recomputed statistics normalise as the train-mode forward's
        // batch statistics do, up to the variance's Bessel factor b/(b − 1) (b = batch rows).
        let train = model.net.forward_t(&fr[0].input, true).unwrap().to_vec1::<f32>().unwrap();
        let stale = model.net.forward_t(&fr[0].input, false).unwrap().to_vec1::<f32>().unwrap();
        model.recompute_batch_norm(&fr[..1]).unwrap();
        let eval = model.net.forward_t(&fr[0].input, false).unwrap().to_vec1::<f32>().unwrap();
        let scale = train.iter().map(|x| x.abs() as f64).fold(0.0, f64::max).max(1e-3);
        let dev = |a: &[f32]| a.iter().zip(&train).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max) / scale;
        assert!(dev(&eval) < 2e-2, "{graph:?}: recomputed {:.2e}", dev(&eval));
        assert!(dev(&stale) > 10.0 * dev(&eval), "{graph:?}: stale {:.2e} vs {:.2e}", dev(&stale), dev(&eval));
        // Two frames: the mean of the per-frame statistics, whatever the statistics held before.
        let one: Vec<Vec<Vec<f64>>> = (0..2)
            .map(|i| {
                model.recompute_batch_norm(&fr[i..i + 1]).unwrap();
                running_stats(&model)
            })
            .collect();
        let mut rng = gradlab_core::rng::rng(9);
        for (_, v) in gradlab_core::params::sorted_vars(&model.vm).iter().filter(|(n, _)| is_buffer(n)) {
            let junk: Vec<f32> = (0..v.elem_count()).map(|_| rng.random_range(-5.0..5.0)).collect();
            v.set(&candle_core::Tensor::from_vec(junk, v.shape(), v.device()).unwrap()).unwrap();
        }
        model.recompute_batch_norm(&fr).unwrap();
        let both = running_stats(&model);
        assert_eq!(both.len(), 12, "two BatchNorm layers in each of the three MLPs, mean and variance");
        for (k, b) in both.iter().enumerate() {
            for (j, x) in b.iter().enumerate() {
                let want = 0.5 * (one[0][k][j] + one[1][k][j]);
                assert!((x - want).abs() <= 1e-5 * (1.0 + want.abs()), "{graph:?} buffer {k}[{j}]: {x} vs {want}");
            }
        }
        assert!(model.recompute_batch_norm(&[]).is_err());
    }
}

#[test]
fn paths_with_recomputed_batch_norm_equal_fresh_networks_at_the_interpolated_weights() {
    let fr = frames(2);
    let bn = frames(3);
    let obj = TrackObjective::new(&cfg(), fr.clone(), Measure::Bce).unwrap();
    let (a, b) = (random_theta(&obj, 11), random_theta(&obj, 12));
    let mut recomputed = obj.with_recomputed_batch_norm(bn.clone()).unwrap();
    assert!(recomputed.recomputes_batch_norm() && !obj.recomputes_batch_norm());
    let mut interpolated = obj.with_measure(Measure::Bce).unwrap();
    let points = 5;
    let with_bn = gradlab_landscape::connectivity::linear_path(&mut recomputed, &a, &b, points).unwrap();
    let plain = gradlab_landscape::connectivity::linear_path(&mut interpolated, &a, &b, points).unwrap();
    let buffers = obj.buffers();
    for (k, &t) in with_bn.ts.iter().enumerate() {
        // A fresh network: the interpolated trained weights, statistics recomputed from scratch.
        let theta: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (1.0 - t) * x + t * y).collect();
        let fresh = Model::new(&cfg(), 99).unwrap();
        gradlab_core::params::write_params_f64(&fresh.vm, &theta).unwrap();
        fresh.recompute_batch_norm(&bn).unwrap();
        let mut own = TrackObjective::new(&cfg(), fr.clone(), Measure::Bce).unwrap();
        let at = read_params_f64(&fresh.vm).unwrap();
        let want = own.loss(&at).unwrap();
        assert!(
            (with_bn.losses[k] - want).abs() < 1e-6 * (1.0 + want.abs()),
            "t = {t}: {} vs {want}",
            with_bn.losses[k]
        );
        // The trained entries are the interpolated ones; only the statistics changed.
        for (i, bf) in buffers.iter().enumerate() {
            if !bf {
                assert_eq!(at[i] as f32, theta[i] as f32);
            }
        }
    }
    // The endpoints' random statistics are replaced: the two profiles differ.
    let gap = with_bn.losses.iter().zip(&plain.losses).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(gap > 1e-3, "recomputing changed nothing ({gap:.1e})");
    // Gradients are taken at the recomputed statistics and hold them fixed (zero on the buffers).
    let mut g = vec![0.0; recomputed.dim()];
    let l = recomputed.loss_grad(&a, &mut g).unwrap();
    assert_eq!(l, recomputed.loss(&a).unwrap());
    assert!(g.iter().zip(&buffers).all(|(gi, bf)| !bf || *gi == 0.0));
}

#[test]
fn minibatch_cycle_averages_to_the_full_batch_and_restarts_at_the_first_part() {
    use super::analysis::Cycle;
    let fr = frames(4);
    for measure in [Measure::Bce, Measure::Hamming { assign: Default::default() }] {
        let mut full = TrackObjective::new(&cfg(), fr.clone(), measure.clone()).unwrap();
        let theta = random_theta(&full, 3);
        let mut g_full = vec![0.0; full.dim()];
        let l_full = full.loss_grad(&theta, &mut g_full).unwrap();
        let mut cyc = Cycle::new(&cfg(), &fr, 2, measure.clone(), false).unwrap();
        assert_eq!(cyc.parts(), 2);
        let (mut l_mean, mut g_mean) = (0.0, vec![0.0; full.dim()]);
        let mut g = vec![0.0; full.dim()];
        let mut first = f64::NAN;
        for k in 0..2 {
            let l = cyc.loss_grad(&theta, &mut g).unwrap();
            if k == 0 {
                first = l;
            }
            l_mean += l / 2.0;
            g_mean.iter_mut().zip(&g).for_each(|(a, b)| *a += b / 2.0);
        }
        // the two halves differ (else the check below says nothing) and average to the whole
        let second = l_mean * 2.0 - first;
        assert!((first - second).abs() > 1e-6, "{measure:?}: parts {first} {second}");
        assert!((l_mean - l_full).abs() < 1e-5 * l_full.abs().max(1.0), "{measure:?}: {l_mean} vs {l_full}");
        let scale = g_full.iter().map(|x| x.abs()).fold(0.0, f64::max);
        let err = g_mean.iter().zip(&g_full).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        // (the blackbox gradient of the Hamming loss is ~0 on these toy frames: f32 round-off
        // bounds its error; the BCE gradient is the informative check)
        assert!(measure != Measure::Bce || scale > 1e-3, "BCE gradient scale {scale}");
        assert!(err < 1e-4 * scale + 1e-7, "{measure:?}: gradient error {err} of {scale}");
        // a third call is the first part again; so is the next call after a restart
        assert_eq!(cyc.loss(&theta).unwrap(), first);
        cyc.restart();
        assert_eq!(cyc.loss(&theta).unwrap(), first);
    }
    // parts must divide the frames, and the measure needs a gradient
    let e = Cycle::new(&cfg(), &fr, 3, Measure::Bce, false).unwrap_err().to_string();
    assert!(e.contains("3 of 4 frames") && e.contains("dividing"), "{e}");
    assert!(Cycle::new(&cfg(), &fr, 0, Measure::Bce, false).is_err());
    let e = Cycle::new(&cfg(), &fr, 2, Measure::Tpr { assign: Default::default() }, false).unwrap_err().to_string();
    assert!(e.contains("tpr") && e.contains("gradient"), "{e}");
}

#[test]
fn train_mode_loss_normalises_by_the_frames_batch_statistics_and_has_the_right_gradient() {
    let fr = frames(1);
    let mut infer = TrackObjective::new(&cfg(), fr.clone(), Measure::Bce).unwrap();
    let mut train = infer.in_train_mode().unwrap();
    let theta = random_theta(&infer, 5);
    let buffers = infer.buffers();
    // the running statistics in θ do not enter (they do in inference mode)
    let other: Vec<f64> = theta.iter().zip(&buffers).map(|(t, b)| if *b { t * 1.7 } else { *t }).collect();
    assert_eq!(train.loss(&theta).unwrap(), train.loss(&other).unwrap());
    assert_ne!(infer.loss(&theta).unwrap(), infer.loss(&other).unwrap());
    // ≈ inference mode with the statistics recomputed from this one frame (independent path:
    // the frame's batch statistics written into θ, then the running-statistics forward); not
    // equal, because the recorded running variance is the unbiased one (n/(n−1) over the few
    // rows of a toy frame) while a train-mode pass normalises by the biased one. The inference
    // loss with θ's own (random) statistics is far from both.
    let mut recomputed = infer.with_recomputed_batch_norm(fr.clone()).unwrap();
    let (a, b) = (train.loss(&theta).unwrap(), recomputed.value(&theta).unwrap());
    let own = infer.loss(&theta).unwrap();
    assert!((a - b).abs() < 5e-3 * b.abs(), "train mode {a} vs recomputed statistics {b}");
    assert!((own - a).abs() > 10.0 * (a - b).abs(), "θ's statistics {own}, train mode {a}, recomputed {b}");
    // the gradient goes through the batch statistics: central differences along a random
    // trainable direction (f32 model: loose tolerance)
    let mut g = vec![0.0; train.dim()];
    train.loss_grad(&theta, &mut g).unwrap();
    assert!(g.iter().zip(&buffers).all(|(gi, b)| !b || *gi == 0.0));
    let mut rng = gradlab_core::rng::rng(6);
    let d: Vec<f64> = buffers.iter().map(|b| if *b { 0.0 } else { rng.random_range(-1.0..1.0) }).collect();
    let h = 1e-2 / d.iter().map(|x| x * x).sum::<f64>().sqrt();
    let at = |s: f64| theta.iter().zip(&d).map(|(t, di)| t + s * di).collect::<Vec<_>>();
    let fd = (train.loss(&at(h)).unwrap() - train.loss(&at(-h)).unwrap()) / (2.0 * h);
    let an: f64 = g.iter().zip(&d).map(|(a, b)| a * b).sum();
    assert!((fd - an).abs() < 2e-2 * an.abs().max(1e-2), "FD {fd} vs gradient {an}");
    // only losses, and not with recomputed statistics
    let pur =
        infer.with_measure(Measure::Purity { filter: TrackFilter::default(), assign: Default::default() }).unwrap();
    assert!(pur.in_train_mode().unwrap_err().to_string().contains("purity"));
    assert!(recomputed.in_train_mode().is_err());
    // a train-mode minibatch cycle is the train-mode objective on its part
    let fr2 = frames(2);
    let mut cyc = super::analysis::Cycle::new(&cfg(), &fr2, 1, Measure::Bce, true).unwrap();
    let mut first =
        TrackObjective::new(&cfg(), Arc::new(vec![fr2[0].clone()]), Measure::Bce).unwrap().in_train_mode().unwrap();
    assert_eq!(cyc.loss(&theta).unwrap(), first.loss(&theta).unwrap());
}
