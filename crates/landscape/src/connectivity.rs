//! Mode connectivity: the loss barrier on the straight line between two solutions, and a
//! quadratic Bézier curve `φ(t) = (1−t)² θA + 2t(1−t) θ + t² θB` whose control point θ is trained
//! (Garipov et al. 2018) by minimising `E_{t~U(0,1)} L(φ(t))` with Adam on sampled `t`.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_len};
use crate::objective::Objective;

/// Loss along a path from θA (t = 0) to θB (t = 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathProfile {
    /// Path parameter values.
    pub ts: Vec<f64>,
    /// Loss at each `t`.
    pub losses: Vec<f64>,
    /// `max_t L(t) − max(L(0), L(1))` (can be ≤ 0 when the path is monotone or dips).
    pub barrier: f64,
    /// Where the maximum is.
    pub t_max: f64,
}

fn profile(ts: Vec<f64>, losses: Vec<f64>) -> PathProfile {
    let (k, lmax) =
        losses.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, v)| (k, *v)).unwrap_or((0, f64::NAN));
    let ends = losses[0].max(*losses.last().unwrap_or(&losses[0]));
    PathProfile { t_max: ts[k], barrier: lmax - ends, ts, losses }
}

/// The loss at `point(t)` for `points` evenly spaced `t` in `[0, 1]`, and the barrier height.
fn path_profile<O: Objective + ?Sized>(
    obj: &mut O,
    points: usize,
    point: impl Fn(f64, &mut [f64]),
) -> Result<PathProfile> {
    if points < 2 {
        return Err(Error::invalid("points", points, "≥ 2 (t = 0 and t = 1 included)"));
    }
    let ts: Vec<f64> = (0..points).map(|i| i as f64 / (points - 1) as f64).collect();
    let mut x = vec![0.0; obj.dim()];
    let mut losses = Vec::with_capacity(points);
    for &t in &ts {
        point(t, &mut x);
        losses.push(obj.loss(&x)?);
    }
    Ok(profile(ts, losses))
}

/// Loss at `(1−t) θA + t θB` for `points` evenly spaced `t` in `[0, 1]`, and the barrier height.
pub fn linear_path<O: Objective + ?Sized>(obj: &mut O, a: &[f64], b: &[f64], points: usize) -> Result<PathProfile> {
    check_len("theta_a", obj.dim(), a.len())?;
    check_len("theta_b", obj.dim(), b.len())?;
    path_profile(obj, points, |t, x| {
        for ((xi, ai), bi) in x.iter_mut().zip(a).zip(b) {
            *xi = (1.0 - t) * ai + t * bi;
        }
    })
}

/// A quadratic Bézier curve between two end points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bezier {
    /// θA (t = 0).
    pub start: Vec<f64>,
    /// The control point θ.
    pub control: Vec<f64>,
    /// θB (t = 1).
    pub end: Vec<f64>,
}

impl Bezier {
    /// The curve with its control point at the midpoint (a straight line).
    pub fn straight(a: &[f64], b: &[f64]) -> Result<Self> {
        check_len("theta_b", a.len(), b.len())?;
        let control = a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect();
        Ok(Self { start: a.to_vec(), control, end: b.to_vec() })
    }
    /// `φ(t)` into `out`.
    pub fn point(&self, t: f64, out: &mut [f64]) {
        let (c0, c1, c2) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
        for (i, o) in out.iter_mut().enumerate() {
            *o = c0 * self.start[i] + c1 * self.control[i] + c2 * self.end[i];
        }
    }
    /// Loss profile along the curve at `points` evenly spaced `t`.
    pub fn profile<O: Objective + ?Sized>(&self, obj: &mut O, points: usize) -> Result<PathProfile> {
        check_len("curve", obj.dim(), self.start.len())?;
        path_profile(obj, points, |t, x| self.point(t, x))
    }
}

/// Settings for [`train_bezier`] (Adam on the control point).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BezierConfig {
    /// Optimisation steps.
    pub steps: usize,
    /// Values of `t` sampled per step (their gradients are averaged).
    pub samples_per_step: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed for the `t` samples.
    pub seed: u64,
}

impl Default for BezierConfig {
    fn default() -> Self {
        Self { steps: 500, samples_per_step: 4, lr: 1e-2, seed: 0 }
    }
}

/// Trains the control point of `init` (usually [`Bezier::straight`], the midpoint) with its end
/// points fixed. Returns the trained curve and the per-step mean sampled loss.
pub fn train_bezier<O: Objective + ?Sized>(
    obj: &mut O,
    init: Bezier,
    cfg: &BezierConfig,
) -> Result<(Bezier, Vec<f64>)> {
    check_len("theta_a", obj.dim(), init.start.len())?;
    check_len("control", obj.dim(), init.control.len())?;
    check_len("theta_b", obj.dim(), init.end.len())?;
    if cfg.steps == 0 || cfg.samples_per_step == 0 || !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(Error::invalid(
            "bezier config",
            format!("steps {} samples_per_step {} lr {}", cfg.steps, cfg.samples_per_step, cfg.lr),
            "steps ≥ 1, samples_per_step ≥ 1, finite lr > 0",
        ));
    }
    let mut curve = init;
    let n = curve.start.len();
    let mut rng = gradlab_core::rng::rng(cfg.seed);
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut x = vec![0.0; n];
    let mut g = vec![0.0; n];
    let mut acc = vec![0.0; n];
    let mut history = Vec::with_capacity(cfg.steps);
    for step in 1..=cfg.steps {
        acc.fill(0.0);
        let mut lsum = 0.0;
        for _ in 0..cfg.samples_per_step {
            let t: f64 = rng.random();
            curve.point(t, &mut x);
            let l = obj.loss_grad(&x, &mut g)?;
            if !l.is_finite() {
                return Err(Error::NonFinite {
                    what: "loss on the Bézier curve",
                    value: l,
                    context: format!("step {step}, t = {t:.4}"),
                });
            }
            lsum += l;
            // ∂φ/∂θ = 2t(1−t) I
            let w = 2.0 * t * (1.0 - t) / cfg.samples_per_step as f64;
            for (ai, gi) in acc.iter_mut().zip(&g) {
                *ai += w * gi;
            }
        }
        history.push(lsum / cfg.samples_per_step as f64);
        let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
        for i in 0..n {
            m[i] = b1 * m[i] + (1.0 - b1) * acc[i];
            v[i] = b2 * v[i] + (1.0 - b2) * acc[i] * acc[i];
            curve.control[i] -= cfg.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
    }
    Ok((curve, history))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testfns::{Quadratic, ring_valley};

    #[test]
    fn linear_barrier_on_the_ring_valley_is_one() {
        let mut f = ring_valley();
        // t = 0.5 is the origin where L = 1; the ends have L = 0
        let p = linear_path(&mut f, &[-1.0, 0.0], &[1.0, 0.0], 21).unwrap();
        assert!((p.barrier - 1.0).abs() < 1e-12);
        assert!((p.t_max - 0.5).abs() < 1e-12);
        assert!(linear_path(&mut f, &[-1.0, 0.0], &[1.0, 0.0], 1).is_err());
    }

    #[test]
    fn trained_bezier_curve_finds_the_curved_valley() {
        let mut f = ring_valley();
        let (a, b) = ([-1.0, 0.0], [1.0, 0.0]);
        // by symmetry the gradient at the midpoint has no y component: nudge the control point
        let mut init = Bezier::straight(&a, &b).unwrap();
        init.control[1] = 0.01;
        let cfg = BezierConfig { steps: 2000, samples_per_step: 4, lr: 0.02, seed: 1 };
        let (curve, hist) = train_bezier(&mut f, init, &cfg).unwrap();
        assert_eq!(curve.start, a.to_vec());
        assert_eq!(curve.end, b.to_vec());
        let prof = curve.profile(&mut f, 101).unwrap();
        // the control (0, 2) puts φ(½) = (0, 1) on the ring; the best quadratic Bézier keeps the
        // loss small all along (the straight line has barrier 1)
        assert!(prof.barrier < 0.1, "barrier {} with control {:?}", prof.barrier, curve.control);
        assert!((curve.control[1] - 2.0).abs() < 0.3, "control {:?}", curve.control);
        let k = hist.len() / 10;
        let (first, last) = (hist[..k].iter().sum::<f64>(), hist[hist.len() - k..].iter().sum::<f64>());
        assert!(last < 0.2 * first, "sampled loss {first} -> {last}");
        let bad = BezierConfig { lr: -1.0, ..cfg };
        assert!(train_bezier(&mut f, Bezier::straight(&a, &b).unwrap(), &bad).is_err());
    }

    #[test]
    fn bezier_gradient_matches_finite_differences_of_the_expected_loss() {
        // E_t L(φ(t)) for a quadratic is a quadratic in the control point; compare Adam-free
        // one-sample gradients through the chain rule against a finite difference at fixed t.
        let mut rng = gradlab_core::rng::rng(3);
        let (mut q, _) = Quadratic::with_spectrum(&[1.0, 2.0, 3.0], &mut rng);
        let curve = Bezier { start: vec![1.0, 0.0, 0.0], control: vec![0.2, 0.5, -0.3], end: vec![0.0, 1.0, 0.0] };
        let t = 0.3;
        let mut x = vec![0.0; 3];
        curve.point(t, &mut x);
        let mut g = vec![0.0; 3];
        q.loss_grad(&x, &mut g).unwrap();
        for (k, gk) in g.iter().enumerate() {
            let h = 1e-6;
            let mut cp = curve.clone();
            cp.control[k] += h;
            cp.point(t, &mut x);
            let fp = q.loss(&x).unwrap();
            cp.control[k] -= 2.0 * h;
            cp.point(t, &mut x);
            let fm = q.loss(&x).unwrap();
            let fd = (fp - fm) / (2.0 * h);
            assert!((fd - 2.0 * t * (1.0 - t) * gk).abs() < 1e-8);
        }
    }
}
