//! Second derivatives through the core's custom ops ([`gradlab_core::ops`]) by double backward,
//! against central differences of the gradient. candle needs `CANDLE_GRAD_DO_NOT_DETACH` set
//! before a thread's first backward pass, so this file runs without the test harness: `main`
//! calls `enable_exact_double_backward()` first, as a user's program does.

use candle_core::{Device, Tensor, Var};
use gradlab_core::grad::enable_exact_double_backward;
use gradlab_core::ops::tanh;

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

fn main() {
    enable_exact_double_backward().expect("exact double backward");
    tanh_hessian_vector_product_matches_finite_differences();
    println!("double_backward_ops: 1 test passed");
}
