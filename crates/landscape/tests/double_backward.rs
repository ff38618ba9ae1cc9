//! Exact Hessian-vector products by double backward need `CANDLE_GRAD_DO_NOT_DETACH=1` before the
//! first backward on a thread. This file holds a single test, so setting the variable at its start
//! happens before any other thread of this process touches the environment.

use candle_core::{DType, Device, Tensor};
use gradlab_landscape::Objective;
use gradlab_landscape::candle::{CandleObjective, double_backward_enabled, mlp};
use gradlab_landscape::hessian::{HessianOperator, HvpMethod, dense_matrix, hvp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn double_backward_hvp_matches_dense_hessian_and_finite_differences() {
    // SAFETY: the only test in this binary, run before any backward and before other threads read
    // the environment.
    unsafe { std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1") };
    assert!(double_backward_enabled());
    let mut rng = StdRng::seed_from_u64(0);
    let dev = Device::Cpu;
    let mut batch = |rows: usize| {
        let x: Vec<f64> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y: Vec<f64> = (0..rows * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
        (Tensor::from_vec(x, (rows, 3), &dev).unwrap(), Tensor::from_vec(y, (rows, 2), &dev).unwrap())
    };
    let batches = vec![batch(6), batch(4)];
    let mut obj = CandleObjective::new(|vb| mlp::build(&[3, 5, 2], vb), mlp::mse, batches, DType::F64, &dev).unwrap();
    let n = obj.dim();
    let theta: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();

    // independent reference: second differences of the loss alone
    let h = 1e-4;
    let mut reference = vec![0.0; n * n];
    let mut x = theta.clone();
    for i in 0..n {
        for j in 0..=i {
            let mut acc = 0.0;
            for (si, sj, sign) in [(1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0)] {
                x[i] += si * h;
                x[j] += sj * h;
                acc += sign * obj.loss(&x).unwrap();
                x[i] = theta[i];
                x[j] = theta[j];
            }
            reference[i * n + j] = acc / (4.0 * h * h);
            reference[j * n + i] = reference[i * n + j];
        }
    }
    let mut op = HessianOperator::new(&mut obj, &theta, HvpMethod::Exact).unwrap();
    let exact = dense_matrix(&mut op).unwrap();
    let diff: f64 = exact.iter().zip(&reference).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    let scale: f64 = reference.iter().map(|b| b * b).sum::<f64>().sqrt();
    assert!(diff / scale < 1e-6, "exact vs loss second differences: {}", diff / scale);

    // and against central differences of gradients on random vectors (f64: ~1e-9 at h = 1e-4)
    for _ in 0..3 {
        let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut a = vec![0.0; n];
        let mut b = vec![0.0; n];
        hvp(&mut obj, &theta, &v, HvpMethod::Exact, &mut a).unwrap();
        hvp(&mut obj, &theta, &v, HvpMethod::FiniteDifference { h: 1e-4 }, &mut b).unwrap();
        let d: f64 = a.iter().zip(&b).map(|(p, q)| (p - q).powi(2)).sum::<f64>().sqrt();
        let s: f64 = a.iter().map(|p| p * p).sum::<f64>().sqrt();
        assert!(d / s < 1e-7, "exact vs FD HVP: {}", d / s);
    }
}
