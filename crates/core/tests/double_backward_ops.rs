//! Second derivatives through the core's custom ops ([`gradlab_core::ops`]) by double backward,
//! against central differences of the gradient. candle needs `CANDLE_GRAD_DO_NOT_DETACH` set
//! before a thread's first backward pass, so this file runs without the test harness: `main`
//! calls `enable_exact_double_backward()` first, as a user's program does.

use candle_core::{Device, Tensor, Var};
use gradlab_core::grad::enable_exact_double_backward;
use gradlab_core::ops::{Act, linear, tanh};

/// `f(x) = Σ w·tanh(x)²` and its gradient at `v`.
fn grad_at(v: &[f64], w: &Tensor) -> (Var, Tensor) {
    let x = Var::new(v, &Device::Cpu).unwrap();
    let y = tanh(x.as_tensor()).unwrap().sqr().unwrap().mul(w).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap().get(x.as_tensor()).unwrap().clone();
    (x, g)
}

fn tanh_hessian_vector_product_matches_finite_differences() {
    let dev = Device::Cpu;
    let v = [0.3f64, -1.2, 0.05, 2.0];
    let w = Tensor::new(&[0.7f64, -0.4, 1.1, 0.9], &dev).unwrap();
    let u = [1.0f64, -0.5, 0.25, 2.0];
    let (x, g) = grad_at(&v, &w);
    let hv = g.mul(&Tensor::new(&u, &dev).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    let hv = hv.get(x.as_tensor()).expect("a second derivative").to_vec1::<f64>().unwrap();
    let eps = 1e-6;
    let p: Vec<f64> = v.iter().zip(&u).map(|(a, b)| a + eps * b).collect();
    let m: Vec<f64> = v.iter().zip(&u).map(|(a, b)| a - eps * b).collect();
    let (gp, gm) = (grad_at(&p, &w).1.to_vec1::<f64>().unwrap(), grad_at(&m, &w).1.to_vec1::<f64>().unwrap());
    for i in 0..v.len() {
        let fd = (gp[i] - gm[i]) / (2.0 * eps);
        assert!((fd - hv[i]).abs() < 1e-7 * (1.0 + fd.abs()), "Hv[{i}]: fd {fd} vs double backward {}", hv[i]);
    }
}

/// Gradient of `f(x, w, b) = Σ u·linear₂(linear₁(x))²` (two fused layers, first with `act`)
/// with respect to the flat parameters `p = [w₁, b₁, w₂, b₂]`.
fn linear_grad_at(p: &[f64], act: Act) -> (Var, Tensor) {
    let dev = Device::Cpu;
    let theta = Var::new(p, &dev).unwrap();
    let t = theta.as_tensor();
    let x = Tensor::new(&[[0.3f64, -1.1, 0.7], [1.5, 0.2, -0.4], [-0.6, 0.9, 0.1]], &dev).unwrap();
    let u = Tensor::new(&[[1.0f64, -0.5], [0.25, 2.0], [0.7, -1.3]], &dev).unwrap();
    let w1 = t.narrow(0, 0, 12).unwrap().reshape((4, 3)).unwrap();
    let b1 = t.narrow(0, 12, 4).unwrap();
    let w2 = t.narrow(0, 16, 8).unwrap().reshape((2, 4)).unwrap();
    let b2 = t.narrow(0, 24, 2).unwrap();
    let h = linear(&x, &w1, &b1, act).unwrap();
    let y = linear(&h, &w2, &b2, Act::Identity).unwrap().sqr().unwrap().mul(&u).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap().get(t).unwrap().clone();
    (theta, g)
}

fn linear_hessian_vector_products_match_finite_differences() {
    let dev = Device::Cpu;
    let p: Vec<f64> = (0..26).map(|i| ((i * 37 % 17) as f64 - 8.0) / 10.0).collect();
    let v: Vec<f64> = (0..26).map(|i| ((i * 11 % 7) as f64 - 3.0) / 3.0).collect();
    for act in [Act::Tanh, Act::Relu, Act::Identity] {
        let (theta, g) = linear_grad_at(&p, act);
        let hv = g.mul(&Tensor::new(v.as_slice(), &dev).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        let hv = hv.get(theta.as_tensor()).expect("a second derivative").to_vec1::<f64>().unwrap();
        let eps = 1e-6;
        let plus: Vec<f64> = p.iter().zip(&v).map(|(a, b)| a + eps * b).collect();
        let minus: Vec<f64> = p.iter().zip(&v).map(|(a, b)| a - eps * b).collect();
        let gp = linear_grad_at(&plus, act).1.to_vec1::<f64>().unwrap();
        let gm = linear_grad_at(&minus, act).1.to_vec1::<f64>().unwrap();
        for i in 0..p.len() {
            let fd = (gp[i] - gm[i]) / (2.0 * eps);
            assert!(
                (fd - hv[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{act:?} Hv[{i}]: fd {fd} vs double backward {}",
                hv[i]
            );
        }
    }
}

fn main() {
    enable_exact_double_backward().expect("exact double backward");
    tanh_hessian_vector_product_matches_finite_differences();
    linear_hessian_vector_products_match_finite_differences();
    println!("double_backward_ops: 2 tests passed");
}
