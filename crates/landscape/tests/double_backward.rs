//! Exact Hessian-vector products by double backward. candle needs `CANDLE_GRAD_DO_NOT_DETACH`
//! set before a thread's first backward pass, so this file runs without the test harness:
//! `main` starts with one thread and calls `gradlab_core::grad::enable_exact_double_backward()`
//! before anything else, as a user's program does.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use gradlab_core::grad::{double_backward_is_exact, enable_exact_double_backward};
use gradlab_core::rng::{SeededRng, rng, uniform_vec};
use gradlab_landscape::candle::{CandleObjective, mlp};
use gradlab_landscape::hessian::{HessianOperator, HvpMethod, dense_hessian_from_losses, dense_matrix, hvp};
use gradlab_landscape::varmap::on_fresh_varmap;
use gradlab_landscape::{Objective, Replicate, Subspace, VarMapObjective};

fn batches(rng: &mut SeededRng, sizes: &[usize], inputs: usize, outputs: usize) -> Vec<(Tensor, Tensor)> {
    let dev = Device::Cpu;
    sizes
        .iter()
        .map(|&rows| {
            let x = uniform_vec(rng, rows * inputs, -1.0, 1.0);
            let y = uniform_vec(rng, rows * outputs, -1.0, 1.0);
            (Tensor::from_vec(x, (rows, inputs), &dev).unwrap(), Tensor::from_vec(y, (rows, outputs), &dev).unwrap())
        })
        .collect()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>().sqrt();
    d / b.iter().map(|q| q * q).sum::<f64>().sqrt()
}

fn double_backward_hvp_matches_dense_hessian_and_finite_differences() {
    let mut rng = rng(0);
    let batches = batches(&mut rng, &[6, 4], 3, 2);
    let dev = Device::Cpu;
    let mut obj = CandleObjective::new(|vb| mlp::build(&[3, 5, 2], vb), mlp::mse, batches, DType::F64, &dev).unwrap();
    let n = obj.dim();
    let theta = uniform_vec(&mut rng, n, -1.0, 1.0);

    // independent reference: second differences of the loss alone
    let reference = dense_hessian_from_losses(&mut obj, &theta, 1e-4).unwrap();
    let mut op = HessianOperator::new(&mut obj, &theta, HvpMethod::Exact).unwrap();
    let exact = dense_matrix(&mut op).unwrap();
    let e = rel(&exact, &reference);
    assert!(e < 1e-6, "exact vs loss second differences: {e}");

    // and against central differences of gradients on random vectors (f64: ~1e-9 at h = 1e-4)
    for _ in 0..3 {
        let v = uniform_vec(&mut rng, n, -1.0, 1.0);
        let mut a = vec![0.0; n];
        let mut b = vec![0.0; n];
        hvp(&mut obj, &theta, &v, HvpMethod::Exact, &mut a).unwrap();
        hvp(&mut obj, &theta, &v, HvpMethod::FiniteDifference { h: 1e-4 }, &mut b).unwrap();
        let e = rel(&b, &a);
        assert!(e < 1e-7, "exact vs FD HVP: {e}");
    }
}

/// An MLP applied to `x − shift`, where `shift` is a frozen buffer (like BatchNorm's running mean).
struct Shifted {
    mlp: mlp::Mlp,
    shift: Tensor,
}

fn shifted(vb: VarBuilder) -> gradlab_core::Result<Shifted> {
    let shift = vb.pp("norm").get_with_hints(3, "running_mean", candle_nn::Init::Const(0.0))?;
    Ok(Shifted { mlp: mlp::build(&[3, 4, 2], vb.pp("mlp"))?, shift })
}

/// A `VarMapObjective` with a frozen buffer: zero gradient and Hessian rows there, exact HVP equal
/// to finite differences on the trained part, and the Hessian of the trained subspace equal to
/// second differences of the loss.
fn varmap_objective_with_frozen_buffer_matches_finite_differences() {
    let mut rng = rng(1);
    let data = batches(&mut rng, &[5, 7], 3, 2);
    let weights = vec![5.0 / 12.0, 7.0 / 12.0];
    let mut obj = VarMapObjective::new(
        on_fresh_varmap(shifted, DType::F64, &Device::Cpu),
        move |m: &Shifted, i: usize| {
            let (x, y) = &data[i];
            (m.mlp.forward(&x.broadcast_sub(&m.shift)?)? - y)?.sqr()?.mean_all()
        },
        weights,
    )
    .unwrap()
    .frozen(|name| name.ends_with("running_mean"));
    let n = obj.dim();
    assert_eq!(n, 3 + 3 * 4 + 4 + 4 * 2 + 2);
    let mask = obj.frozen_mask();
    assert_eq!(mask.iter().filter(|m| **m).count(), 3);
    let theta = uniform_vec(&mut rng, n, -1.0, 1.0);

    // gradient: finite differences on trained entries, zero on the buffer
    let mut g = vec![0.0; n];
    obj.loss_grad(&theta, &mut g).unwrap();
    for k in 0..n {
        let mut p = theta.clone();
        p[k] += 1e-6;
        let fp = obj.loss(&p).unwrap();
        p[k] -= 2e-6;
        let fm = obj.loss(&p).unwrap();
        let want = if mask[k] { 0.0 } else { (fp - fm) / 2e-6 };
        assert!((g[k] - want).abs() < 1e-8, "k={k}: {} vs {want}", g[k]);
    }

    // exact HVP vs FD HVP along directions of the trained part
    for _ in 0..3 {
        let mut v = uniform_vec(&mut rng, n, -1.0, 1.0);
        v.iter_mut().zip(&mask).filter(|(_, m)| **m).for_each(|(x, _)| *x = 0.0);
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        hvp(&mut obj, &theta, &v, HvpMethod::Exact, &mut a).unwrap();
        hvp(&mut obj, &theta, &v, HvpMethod::FiniteDifference { h: 1e-4 }, &mut b).unwrap();
        assert!(rel(&b, &a) < 1e-7, "exact vs FD HVP: {}", rel(&b, &a));
        assert!(a.iter().zip(&mask).all(|(x, m)| !m || *x == 0.0), "buffer rows must be zero");
    }

    // Hessian over the trained entries only
    let index = obj.trainable_indices();
    let mut sub = Subspace::new(obj.replicate().unwrap(), theta.clone(), index).unwrap();
    let phi = sub.restrict(&theta);
    let reference = dense_hessian_from_losses(&mut sub, &phi, 1e-4).unwrap();
    let mut op = HessianOperator::new(&mut sub, &phi, HvpMethod::Exact).unwrap();
    let exact = dense_matrix(&mut op).unwrap();
    assert!(rel(&exact, &reference) < 1e-6, "subspace Hessian: {}", rel(&exact, &reference));
}

/// Replicas on threads started after the switch compute the same exact products.
fn replicas_on_other_threads_are_exact() {
    let mut rng = rng(2);
    let data = batches(&mut rng, &[8], 3, 2);
    let obj = CandleObjective::new(|vb| mlp::build(&[3, 4, 2], vb), mlp::mse, data, DType::F64, &Device::Cpu).unwrap();
    let n = obj.dim();
    let theta = uniform_vec(&mut rng, n, -1.0, 1.0);
    let v = uniform_vec(&mut rng, n, -1.0, 1.0);
    let mut here = vec![0.0; n];
    obj.replicate().unwrap().hvp_exact(&theta, &v, &mut here).unwrap();
    let mut rep = obj.replicate().unwrap();
    let there = std::thread::spawn(move || {
        assert!(double_backward_is_exact().unwrap());
        let mut out = vec![0.0; n];
        rep.hvp_exact(&theta, &v, &mut out).unwrap();
        out
    })
    .join()
    .unwrap();
    assert_eq!(here, there);
}

/// A single-batch objective keeps its gradient graph between products at the same point: the
/// products still equal the loss's second differences, and moving to another point (or back)
/// gives the products a fresh objective computes there.
fn single_batch_gradient_graph_is_reused_only_at_its_point() {
    let mut rng = rng(3);
    let data = batches(&mut rng, &[9], 3, 2);
    let mut obj =
        CandleObjective::new(|vb| mlp::build(&[3, 5, 2], vb), mlp::mse, data, DType::F64, &Device::Cpu).unwrap();
    let n = obj.dim();
    let (t1, t2) = (uniform_vec(&mut rng, n, -1.0, 1.0), uniform_vec(&mut rng, n, -1.0, 1.0));
    let reference = dense_hessian_from_losses(&mut obj, &t1, 1e-4).unwrap();
    let mut op = HessianOperator::new(&mut obj, &t1, HvpMethod::Exact).unwrap();
    let exact = dense_matrix(&mut op).unwrap();
    let e = rel(&exact, &reference);
    assert!(e < 1e-6, "exact (reused graph) vs loss second differences: {e}");

    let v = uniform_vec(&mut rng, n, -1.0, 1.0);
    let fresh = |t: &[f64]| {
        let mut out = vec![0.0; n];
        obj.replicate().unwrap().hvp_exact(t, &v, &mut out).unwrap();
        out
    };
    let (f1, f2) = (fresh(&t1), fresh(&t2));
    let mut out = vec![0.0; n];
    for (t, f) in [(&t1, &f1), (&t2, &f2), (&t1, &f1)] {
        obj.hvp_exact(t, &v, &mut out).unwrap();
        assert_eq!(&out, f);
        // A loss evaluation elsewhere in between writes other parameters into the model.
        obj.loss(&t2.iter().map(|x| -x).collect::<Vec<_>>()).unwrap();
    }
    assert_ne!(f1, f2);
}

fn main() {
    enable_exact_double_backward().unwrap();
    let tests: [(&str, fn()); 4] = [
        (
            "single_batch_gradient_graph_is_reused_only_at_its_point",
            single_batch_gradient_graph_is_reused_only_at_its_point,
        ),
        (
            "double_backward_hvp_matches_dense_hessian_and_finite_differences",
            double_backward_hvp_matches_dense_hessian_and_finite_differences,
        ),
        (
            "varmap_objective_with_frozen_buffer_matches_finite_differences",
            varmap_objective_with_frozen_buffer_matches_finite_differences,
        ),
        ("replicas_on_other_threads_are_exact", replicas_on_other_threads_are_exact),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
    println!("test result: ok. {} passed; 0 failed; 0 ignored", tests.len());
}
