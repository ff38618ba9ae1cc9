//! Emulator tests on synthetic data in the reference layout (independent of the box model).

use super::emulator_model::{Emulator, EmulatorConfig, EmulatorData, OutputKind};
use super::eval::{evaluate, species_means};
use super::heads::{HeadKind, N_ENV, N_STATE, N_X, N_Y, PRODUCTION_COLUMN, Penalties};
use super::train::fit;
use crate::state::{AerosolState, Environment};
use candle_core::Device;
use gradlab_core::train::{EarlyStopping, TrainConfig};
use ndarray::Array2;
use rand::Rng;

const DT: f64 = 720.0;

/// X with realistic magnitudes; tendencies `Δ_j = x_j·(0.6·e0 − 0.4)` (either sign, some next
/// states negative only if predicted badly), H2SO4 gaining production, water `1e-9·e1·(1 + j)`.
fn synthetic(n: usize, seed: u64) -> EmulatorData {
    let mut r = gradlab_core::rng::rng(seed);
    let x = Array2::from_shape_fn((n, N_X), |(_, j)| match j {
        PRODUCTION_COLUMN => 10f64.powf(r.random_range(2.0..4.0)),
        0..=7 => r.random_range(0.0..1.0),
        8..=12 => 10f64.powf(r.random_range(7.0..8.0)),
        13..=24 => 10f64.powf(r.random_range(-1.0..0.0)),
        _ => 10f64.powf(r.random_range(2.0..3.0)),
    });
    let y = Array2::from_shape_fn((n, N_Y), |(i, j)| {
        if j < N_STATE {
            let xs = x[[i, N_ENV + j]];
            let p = if j == 0 { x[[i, PRODUCTION_COLUMN]] * DT } else { 0.0 };
            xs + xs * (0.6 * x[[i, 0]] - 0.4) + p
        } else {
            1e-9 * x[[i, 1]] * (1 + j - N_STATE) as f64
        }
    });
    EmulatorData::from_xy(&x.view(), &y.view()).unwrap()
}

fn train_cfg(epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::new(epochs, 64);
    c.optimizer = gradlab_core::optim::OptimizerConfig::Adamw(gradlab_core::optim::AdamWParams {
        lr: 3e-3,
        weight_decay: 0.0,
        ..Default::default()
    });
    c.early_stopping = Some(EarlyStopping { patience: 5, min_delta: 0.0 });
    c
}

fn train(cfg: EmulatorConfig, epochs: usize) -> (Emulator, EmulatorData, EmulatorData) {
    let tr = synthetic(1500, 1);
    let va = synthetic(300, 2);
    let te = synthetic(400, 3);
    let tmp = tempfile::tempdir().unwrap();
    let (em, rep) = fit(cfg, DT, &train_cfg(epochs), 0, &tr, &va, &Device::Cpu, tmp.path(), false, vec![]).unwrap();
    assert!(rep.steps > 0);
    (em, tr, te)
}

fn small(head: HeadKind) -> EmulatorConfig {
    EmulatorConfig { hidden: vec![64, 64], head, ..Default::default() }
}

#[test]
fn plain_emulator_learns_and_round_trips_through_save_load() {
    let (em, tr, te) = train(small(HeadKind::Plain), 25);
    let pred = em.predict(&te.x.view()).unwrap();
    let means = species_means(&tr.x.view()).unwrap();
    let e = evaluate(&te.x.view(), &te.t.view(), &pred.view(), DT, &means).unwrap();
    assert!(e.r2_mean > 0.8, "R² {}", e.r2_mean);
    // An untrained emulator is far worse (the threshold above is not trivially met).
    let fresh = Emulator::new(small(HeadKind::Plain), DT, &tr, 0, &Device::Cpu).unwrap();
    let p0 = fresh.predict(&te.x.view()).unwrap();
    assert!(evaluate(&te.x.view(), &te.t.view(), &p0.view(), DT, &means).unwrap().r2_mean < 0.5);

    let tmp = tempfile::tempdir().unwrap();
    em.save(tmp.path()).unwrap();
    let back = Emulator::load(tmp.path()).unwrap();
    assert_eq!(back.predict(&te.x.view()).unwrap(), pred);
    assert_eq!(back.config(), em.config());
    // step() agrees with predict(): next state = x + Δ, water as predicted.
    let env: Vec<Environment> =
        (0..5).map(|i| crate::layout::read_env(&te.x.row(i).mapv(|v| v as f64).to_vec())).collect();
    let st: Vec<AerosolState> =
        (0..5).map(|i| crate::layout::read_state(&te.x.row(i).mapv(|v| v as f64).to_vec()[N_ENV..], false)).collect();
    let out = back.step(&env, &st).unwrap();
    let mut xr = Array2::<f64>::zeros((5, N_X));
    for i in 0..5 {
        let r = xr.row_mut(i).into_slice().unwrap();
        crate::layout::write_env(&env[i], &mut r[..N_ENV]);
        crate::layout::write_state(&st[i], false, &mut r[N_ENV..]);
    }
    let d = back.predict(&xr.mapv(|v| v as f32).view()).unwrap();
    for i in 0..5 {
        let mut next = [0.0; 24];
        crate::layout::write_state(&out.states[i], false, &mut next);
        for j in 0..N_STATE {
            assert_eq!(next[j], xr[[i, N_ENV + j]] + d[[i, j]] as f64);
        }
        assert_eq!(out.water[i][2], d[[i, N_STATE + 2]] as f64);
    }
    assert!(back.step(&env[..2], &st).is_err());
    // Loading errors name the problem.
    let empty = tempfile::tempdir().unwrap();
    let e = Emulator::load(empty.path()).unwrap_err().to_string();
    assert!(e.contains("emulator.json"), "{e}");
    std::fs::remove_file(tmp.path().join("weights.safetensors")).unwrap();
    assert!(Emulator::load(tmp.path()).is_err());
}

#[test]
fn completion_conserves_mass_and_correction_is_positive_after_training() {
    let (tr, te) = (synthetic(1500, 1), synthetic(400, 3));
    let means = species_means(&tr.x.view()).unwrap();
    let (em, _, _) = train(small(HeadKind::Completion), 4);
    let pred = em.predict(&te.x.view()).unwrap();
    let e = evaluate(&te.x.view(), &te.t.view(), &pred.view(), DT, &means).unwrap();
    // Round-off of f32 sums of terms up to ~the concentrations: ≤ ~1e-6 of the mean.
    for k in 0..4 {
        assert!(e.mass_max[k] < 1e-5, "species {k}: {:?}", e.mass_max);
    }
    // The same with the closing column chosen by training variance, which survives save/load.
    let cfg = EmulatorConfig { closing: super::heads::Closing::MaxVariance, ..small(HeadKind::Completion) };
    let (mv, _, _) = train(cfg, 4);
    assert_eq!(mv.closing(), super::heads::closing_columns(super::heads::Closing::MaxVariance, &tr.t.view()));
    let pm = mv.predict(&te.x.view()).unwrap();
    let em_ = evaluate(&te.x.view(), &te.t.view(), &pm.view(), DT, &means).unwrap();
    for k in 0..4 {
        assert!(em_.mass_max[k] < 1e-5, "max-variance closing, species {k}: {:?}", em_.mass_max);
    }
    let tmp = tempfile::tempdir().unwrap();
    mv.save(tmp.path()).unwrap();
    let back = Emulator::load(tmp.path()).unwrap();
    assert_eq!(back.closing(), mv.closing());
    assert_eq!(back.predict(&te.x.view()).unwrap(), pm);
    // Without the head the same network violates the budgets by far more.
    let (pl, _, _) = train(small(HeadKind::Plain), 4);
    let pp = pl.predict(&te.x.view()).unwrap();
    let ep = evaluate(&te.x.view(), &te.t.view(), &pp.view(), DT, &means).unwrap();
    assert!(ep.mass_max.iter().all(|&m| m > 1e-4), "{:?}", ep.mass_max);

    // Correction, active in inference only (trained as plain): no negative concentration.
    let cfg = EmulatorConfig { head_in_training: false, ..small(HeadKind::Correction) };
    let (co, _, _) = train(cfg, 2);
    let pc = co.predict(&te.x.view()).unwrap();
    let ec = evaluate(&te.x.view(), &te.t.view(), &pc.view(), DT, &means).unwrap();
    assert_eq!(ec.negative_fraction, 0.0);
    assert_eq!(ec.negative_water_fraction, 0.0);
    let env: Vec<Environment> =
        (0..50).map(|i| crate::layout::read_env(&te.x.row(i).mapv(|v| v as f64).to_vec())).collect();
    let st: Vec<AerosolState> =
        (0..50).map(|i| crate::layout::read_state(&te.x.row(i).mapv(|v| v as f64).to_vec()[N_ENV..], false)).collect();
    let out = co.step(&env, &st).unwrap();
    assert!(out.states.iter().all(|s| s.validate(0).is_ok()));
}

#[test]
fn log_sign_and_penalty_variants_train() {
    let (tr, te) = (synthetic(1500, 1), synthetic(400, 3));
    let means = species_means(&tr.x.view()).unwrap();
    let cfg = EmulatorConfig { output: OutputKind::LogSign, ..small(HeadKind::Plain) };
    let (em, _, _) = train(cfg, 15);
    let ls = em.log_sign().unwrap();
    // Tendencies change sign with e0 (variable), water is always positive (fixed).
    assert!(ls.fixed[1].is_none() && ls.fixed[N_STATE] == Some(1.0));
    let pred = em.predict(&te.x.view()).unwrap();
    let e = evaluate(&te.x.view(), &te.t.view(), &pred.view(), DT, &means).unwrap();
    assert!(e.r2_log_mean > 0.5 && e.r2_mean > 0.5, "{} {}", e.r2_log_mean, e.r2_mean);
    let tmp = tempfile::tempdir().unwrap();
    em.save(tmp.path()).unwrap();
    assert_eq!(Emulator::load(tmp.path()).unwrap().predict(&te.x.view()).unwrap(), pred);

    // A strong mass penalty reduces the budget violation relative to the plain network.
    let cfg = EmulatorConfig { penalties: Penalties { mass: 10.0, positivity: 0.0 }, ..small(HeadKind::Plain) };
    let (pm, _, _) = train(cfg, 6);
    let (pl, _, _) = train(small(HeadKind::Plain), 6);
    let v = |m: &Emulator| {
        let p = m.predict(&te.x.view()).unwrap();
        let e = evaluate(&te.x.view(), &te.t.view(), &p.view(), DT, &means).unwrap();
        e.mass_rmse.iter().sum::<f64>()
    };
    assert!(v(&pm) < v(&pl), "{} vs {}", v(&pm), v(&pl));
}

#[test]
fn winsorized_targets_clip_only_the_training_encoding() {
    let mut tr = synthetic(1000, 1);
    // One huge outlier in column 7 inflates its standard deviation ~100-fold.
    let typical = tr.t.column(7).iter().fold(0f32, |a, &v| a.max(v.abs()));
    tr.t[[17, 7]] = 3000.0 * typical;
    let plain = Emulator::new(EmulatorConfig::default(), DT, &tr, 0, &Device::Cpu).unwrap();
    let cfg = EmulatorConfig { target_winsorize: 0.01, ..Default::default() };
    let robust = Emulator::new(cfg.clone(), DT, &tr, 0, &Device::Cpu).unwrap();
    let (ep, _) = plain.encode_targets(&tr.t.view()).unwrap();
    let (er, _) = robust.encode_targets(&tr.t.view()).unwrap();
    // By hand: the clip bounds are the 1 % / 99 % order statistics of the column.
    let mut sorted: Vec<f32> = tr.t.column(7).to_vec();
    sorted.sort_by(f32::total_cmp);
    let (lo, hi) = (sorted[(0.01f64 * 999.0).round() as usize], sorted[(0.99f64 * 999.0).round() as usize]);
    let clipped: Vec<f64> = tr.t.column(7).iter().map(|&v| v.clamp(lo, hi) as f64).collect();
    let m = clipped.iter().sum::<f64>() / 1000.0;
    let sd = (clipped.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 1000.0).sqrt();
    for i in [0, 17, 500] {
        let want = (clipped[i] - m) / sd;
        assert!((er[[i, 7]] as f64 - want).abs() < 1e-3 * (1.0 + want.abs()), "{i}: {} vs {want}", er[[i, 7]]);
    }
    // The outlier is ~55σ in the plain encoding, the typical rows nearly 0; robustly all are O(1).
    assert!(ep[[17, 7]] > 30.0 && er[[17, 7]].abs() < 5.0);
    let spread = |e: &Array2<f32>| e.column(7).iter().map(|v| v.abs()).fold(0f32, f32::max);
    assert!(spread(&er) < 5.0 && spread(&ep) > 30.0);
    // Predictions are not clipped and the bounds survive save/load.
    let tmp = tempfile::tempdir().unwrap();
    robust.save(tmp.path()).unwrap();
    let back = Emulator::load(tmp.path()).unwrap();
    assert_eq!(back.encode_targets(&tr.t.view()).unwrap().0, er);
    assert_eq!(back.predict(&tr.x.view()).unwrap(), robust.predict(&tr.x.view()).unwrap());
    let bad = EmulatorConfig { target_winsorize: 0.5, ..Default::default() };
    assert!(Emulator::new(bad, DT, &tr, 0, &Device::Cpu).unwrap_err().to_string().contains("target_winsorize"));
}

#[test]
fn bad_settings_are_rejected_with_the_field_name() {
    let tr = synthetic(50, 1);
    let cfg = EmulatorConfig { hidden: vec![], ..Default::default() };
    let e = Emulator::new(cfg, DT, &tr, 0, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("hidden"), "{e}");
    let cfg = EmulatorConfig { penalties: Penalties { mass: -1.0, positivity: 0.0 }, ..Default::default() };
    assert!(Emulator::new(cfg, DT, &tr, 0, &Device::Cpu).unwrap_err().to_string().contains("penalties.mass"));
    assert!(Emulator::new(EmulatorConfig::default(), 0.0, &tr, 0, &Device::Cpu).is_err());
    let j = serde_json::json!({"hidden": [8], "heads": "plain"});
    assert!(serde_json::from_value::<EmulatorConfig>(j).unwrap_err().to_string().contains("heads"));
    let em = Emulator::new(EmulatorConfig::default(), DT, &tr, 0, &Device::Cpu).unwrap();
    assert!(em.predict(&Array2::<f32>::zeros((3, 31)).view()).is_err());
    assert!(EmulatorData::from_xy(&Array2::zeros((3, 32)).view(), &Array2::zeros((2, 28)).view()).is_err());
}

#[test]
fn huber_loss_matches_hand_values_and_gradient() {
    use candle_core::{Tensor, Var};
    let d = [0.5f32, -2.0, 3.0];
    let t = Tensor::new(&d, &Device::Cpu).unwrap();
    let v = |delta: f64| super::emulator_model::huber_or_mse(&t, delta).unwrap().to_scalar::<f32>().unwrap();
    // δ = 1: 0.25, 2·1·2 − 1 = 3, 2·1·3 − 1 = 5 → mean 2.75; δ = 0: plain MSE.
    assert!((v(1.0) - 2.75).abs() < 1e-6, "{}", v(1.0));
    assert!((v(0.0) - (0.25 + 4.0 + 9.0) / 3.0).abs() < 1e-6);
    // δ larger than every |d|: identical to the MSE.
    assert!((v(10.0) - v(0.0)).abs() < 1e-6);
    // Gradient: 2d/n inside, ±2δ/n outside.
    let var = Var::from_tensor(&t).unwrap();
    let g = super::emulator_model::huber_or_mse(var.as_tensor(), 1.0).unwrap().backward().unwrap();
    let g: Vec<f32> = g.get(var.as_tensor()).unwrap().to_vec1().unwrap();
    for (got, want) in g.iter().zip([1.0 / 3.0, -2.0 / 3.0, 2.0 / 3.0]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[test]
fn robust_scale_fits_on_the_bulk_but_keeps_tails_in_the_loss() {
    // One column with a single huge value: the robust normaliser's scale follows the bulk and
    // the encoded training target of the extreme row is not clipped.
    let mut d = synthetic(2000, 9);
    d.t[[5, 3]] = 1e6 * d.t.column(3).iter().fold(0f32, |a, &v| a.max(v.abs()));
    let plain = Emulator::new(EmulatorConfig::default(), DT, &d, 0, &Device::Cpu).unwrap();
    let cfg = EmulatorConfig { target_scale_quantile: 1e-3, huber_delta: 3.0, ..Default::default() };
    let robust = Emulator::new(cfg, DT, &d, 0, &Device::Cpu).unwrap();
    let (zp, _) = plain.encode_targets(&d.t.view()).unwrap();
    let (zr, _) = robust.encode_targets(&d.t.view()).unwrap();
    // Plain z-score: the outlier is ≈ √N σ and squeezes the bulk to ≈ 0.
    assert!(zp[[5, 3]] > 40.0 && zp[[5, 3]] < 50.0, "{}", zp[[5, 3]]);
    // Robust: the outlier stays far out (unclipped), the bulk keeps a unit-order spread.
    assert!(zr[[5, 3]] > 1e4, "{}", zr[[5, 3]]);
    let bulk_sd = |z: &Array2<f32>| {
        let c: Vec<f64> = z.column(3).iter().enumerate().filter(|(i, _)| *i != 5).map(|(_, &v)| v as f64).collect();
        let m = c.iter().sum::<f64>() / c.len() as f64;
        (c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / c.len() as f64).sqrt()
    };
    assert!(bulk_sd(&zp) < 0.05, "{}", bulk_sd(&zp));
    assert!((0.5..2.0).contains(&bulk_sd(&zr)), "{}", bulk_sd(&zr));
    // Bad settings are refused by name.
    let bad = EmulatorConfig { huber_delta: -1.0, ..Default::default() };
    assert!(Emulator::new(bad, DT, &d, 0, &Device::Cpu).err().unwrap().to_string().contains("huber_delta"));
    let bad = EmulatorConfig { target_scale_quantile: 0.7, ..Default::default() };
    assert!(Emulator::new(bad, DT, &d, 0, &Device::Cpu).err().unwrap().to_string().contains("target_scale_quantile"));
}

/// The folded inference network (normalisers and linear head inside the weights, rows spread
/// over threads) predicts what the network as trained predicts, for every head and input
/// normalisation, on a trained emulator; outputs that cannot be folded use the trained network
/// unchanged.
#[test]
fn folded_prediction_matches_the_network_as_trained() {
    use gradlab_core::normalize::NormKind;
    let tr = synthetic(1500, 21);
    let va = synthetic(300, 23);
    let te = synthetic(1500, 22); // > one task of rows: several tasks on the pool
    for head in [HeadKind::Plain, HeadKind::Completion, HeadKind::Correction] {
        for input_norm in [NormKind::ZScore, NormKind::SignedLog] {
            let cfg = EmulatorConfig { input_norm, ..small(head) };
            let tmp = tempfile::tempdir().unwrap();
            let (em, _) = fit(cfg, DT, &train_cfg(2), 3, &tr, &va, &Device::Cpu, tmp.path(), false, vec![]).unwrap();
            let folded = em.predict(&te.x.view()).unwrap();
            let plain = em.predict_unfolded(&te.x.view()).unwrap();
            for j in 0..N_Y {
                let scale = plain.column(j).iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
                for i in 0..te.x.nrows() {
                    let (a, b) = (folded[[i, j]], plain[[i, j]]);
                    assert!((a - b).abs() <= 1e-4 * scale, "{head:?} {input_norm:?} [{i}, {j}]: {a} vs {b}");
                }
            }
            if head == HeadKind::Correction {
                for i in 0..te.x.nrows() {
                    for j in 0..N_STATE {
                        assert!(te.x[[i, N_ENV + j]] + folded[[i, j]] >= 0.0, "negative state after correction");
                    }
                }
            }
        }
    }
    // Not foldable: the same numbers as the trained network.
    let cfg = EmulatorConfig { output: OutputKind::SignedLog, ..small(HeadKind::Plain) };
    let em = Emulator::new(cfg, DT, &tr, 3, &Device::Cpu).unwrap();
    assert_eq!(em.predict(&te.x.view()).unwrap(), em.predict_unfolded(&te.x.view()).unwrap());
}
