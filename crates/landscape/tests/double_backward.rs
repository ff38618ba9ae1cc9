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

/// `u ↦ u³` whose backward `3u²·g` is computed outside the graph: correct first derivatives,
/// but double backward cannot see that the gradient depends on `u` (a detached backward).
struct DetachedCube;

impl candle_core::CustomOp1 for DetachedCube {
    fn name(&self) -> &'static str {
        "detached-cube"
    }
    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F64(x) = s else { candle_core::bail!("f64 only") };
        let (a, b) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("contiguous only".into()))?;
        Ok((candle_core::CpuStorage::F64(x[a..b].iter().map(|u| u * u * u).collect()), l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let u = arg.flatten_all()?.to_vec1::<f64>()?;
        let g = grad.flatten_all()?.to_vec1::<f64>()?;
        let d: Vec<f64> = u.iter().zip(&g).map(|(u, g)| 3.0 * u * u * g).collect();
        Ok(Some(Tensor::from_vec(d, arg.shape(), arg.device())?))
    }
}

/// `Σ (w ⊙ x)³` over a batch, with the cube as candle ops or as [`DetachedCube`].
fn cube_objective(detached: bool) -> VarMapObjective<Tensor> {
    let x = Tensor::new(&[0.7f64, -1.3, 0.4], &Device::Cpu).unwrap();
    VarMapObjective::new(
        on_fresh_varmap(
            |vb: VarBuilder| vb.get_with_hints(3, "w", candle_nn::Init::Const(1.0)),
            DType::F64,
            &Device::Cpu,
        ),
        move |w: &Tensor, _i: usize| {
            let u = w.mul(&x)?;
            let c = if detached { u.apply_op1(DetachedCube)? } else { u.mul(&u)?.mul(&u)? };
            c.sum_all()
        },
        vec![1.0],
    )
    .unwrap()
}

/// The guard of `VarMapObjective::hvp_exact` refuses a model whose custom op has a detached
/// backward (its first product is checked against central differences of the gradient), and
/// passes the same function written with candle ops; gradients are right in both.
fn detached_custom_op_backward_is_refused() {
    let theta = [0.9, 1.1, -0.6];
    let v = [0.3, -0.5, 0.8];
    let (mut good, mut bad) = (cube_objective(false), cube_objective(true));
    let (mut g1, mut g2) = (vec![0.0; 3], vec![0.0; 3]);
    good.loss_grad(&theta, &mut g1).unwrap();
    bad.loss_grad(&theta, &mut g2).unwrap();
    assert!(rel(&g2, &g1) < 1e-14, "the first derivatives agree");
    // H = diag(6 w_i x_i³): the closed form.
    let x = [0.7f64, -1.3, 0.4];
    let want: Vec<f64> = (0..3).map(|i| 6.0 * theta[i] * x[i].powi(3) * v[i]).collect();
    let mut out = vec![0.0; 3];
    good.hvp_exact(&theta, &v, &mut out).unwrap();
    assert!(rel(&out, &want) < 1e-12, "{out:?} vs {want:?}");
    let e = bad.hvp_exact(&theta, &v, &mut out).unwrap_err().to_string();
    assert!(e.contains("central differences") && e.contains("FiniteDifference"), "{e}");
    // Finite differences stay available for it.
    hvp(&mut bad, &theta, &v, HvpMethod::FiniteDifference { h: 1e-4 }, &mut out).unwrap();
    assert!(rel(&out, &want) < 1e-6, "{out:?} vs {want:?}");
}

/// Run in a child process (`GRADLAB_TEST_CHILD=late-flag`, without the variable): a thread that
/// ran a backward pass before `CANDLE_GRAD_DO_NOT_DETACH` was set keeps candle's detaching, and
/// both the switch and `hvp_exact` on that thread say so; a thread started afterwards is exact.
fn late_flag_child() {
    assert!(std::env::var_os("CANDLE_GRAD_DO_NOT_DETACH").is_none());
    let w = candle_core::Var::new(&[1.0f64, 2.0], &Device::Cpu).unwrap();
    w.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let e = enable_exact_double_backward().unwrap_err().to_string();
    assert!(e.contains("before it was set"), "{e}");
    assert!(std::env::var_os("CANDLE_GRAD_DO_NOT_DETACH").is_some());
    let mut obj = cube_objective(false);
    let (theta, v) = ([0.9, 1.1, -0.6], [0.3, -0.5, 0.8]);
    let mut out = vec![0.0; 3];
    let e = obj.hvp_exact(&theta, &v, &mut out).unwrap_err().to_string();
    assert!(e.contains("exact double backward on this thread"), "{e}");
    let mut rep = obj.replicate().unwrap();
    std::thread::spawn(move || {
        let mut out = vec![0.0; 3];
        rep.hvp_exact(&theta, &v, &mut out).unwrap();
        assert!(out.iter().all(|x| x.is_finite() && *x != 0.0), "{out:?}");
    })
    .join()
    .unwrap();
    println!("late-flag child: refused on the late thread, exact on a new one");
}

/// The late-flag case needs a process whose first backward pass comes before the switch.
fn late_flag_is_refused_in_a_fresh_process() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env_remove("CANDLE_GRAD_DO_NOT_DETACH")
        .env("GRADLAB_TEST_CHILD", "late-flag")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("refused on the late thread"), "{text}");
}

fn main() {
    if std::env::var("GRADLAB_TEST_CHILD").as_deref() == Ok("late-flag") {
        late_flag_child();
        return;
    }
    enable_exact_double_backward().unwrap();
    let tests: [(&str, fn()); 6] = [
        ("detached_custom_op_backward_is_refused", detached_custom_op_backward_is_refused),
        ("late_flag_is_refused_in_a_fresh_process", late_flag_is_refused_in_a_fresh_process),
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
