//! A small projected L-BFGS for box-constrained minimisation (L-BFGS-B in spirit: the
//! quasi-Newton step acts on the free variables, the step is projected onto the box and
//! accepted by an Armijo backtracking search along the projected path).
//!
//! Used for hyperparameter fitting (on log-parameters) and for acquisition maximisation.
//! No maintained Rust crate offers a bounded L-BFGS on plain slices (argmin's L-BFGS is
//! unconstrained), hence this one; it is tested below on bound-active and curved problems.

use std::collections::VecDeque;

/// Options of [`minimize_box`].
#[derive(Clone, Copy, Debug)]
pub struct LbfgsOptions {
    /// Maximum iterations.
    pub max_iter: usize,
    /// Memory (number of correction pairs).
    pub memory: usize,
    /// Stop when the projected gradient's max-norm is below this.
    pub gtol: f64,
    /// Stop when the relative decrease of f in one iteration is below this.
    pub ftol: f64,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions { max_iter: 100, memory: 10, gtol: 1e-6, ftol: 1e-10 }
    }
}

/// Result of [`minimize_box`].
#[derive(Clone, Debug)]
pub struct LbfgsResult {
    /// Minimiser found.
    pub x: Vec<f64>,
    /// Objective value there.
    pub f: f64,
    /// Iterations done.
    pub iterations: usize,
    /// Objective evaluations.
    pub evaluations: usize,
}

fn project(x: &mut [f64], lo: &[f64], hi: &[f64]) {
    for i in 0..x.len() {
        x[i] = x[i].clamp(lo[i], hi[i]);
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f` over the box `[lo, hi]` from `x0`. `f(x, grad)` returns the value and
/// writes the gradient; a non-finite value is treated as "too far" by the line search.
pub fn minimize_box(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    lo: &[f64],
    hi: &[f64],
    opts: LbfgsOptions,
) -> LbfgsResult {
    let mut run = Lbfgs::new(&mut f, x0, lo, hi, opts);
    run.advance(&mut f, lo, hi, opts.max_iter);
    run.result()
}

/// A resumable [`minimize_box`] run: [`Lbfgs::advance`] iterates up to a total iteration count
/// and can be called again to go on with the same curvature memory, so a run advanced to `k`
/// and then to `m` iterations is the run of `max_iter = m`, bit for bit. Used to screen many
/// starts for a few iterations and continue only the best ([`crate::gp::FitOptions`]).
#[derive(Clone, Debug)]
pub struct Lbfgs {
    x: Vec<f64>,
    g: Vec<f64>,
    fx: f64,
    /// Gradient at the line search's trial point, kept so that a resumed run sees the same
    /// buffer even for an `f` that leaves entries unwritten.
    gn: Vec<f64>,
    mem: VecDeque<(Vec<f64>, Vec<f64>, f64)>,
    iterations: usize,
    evaluations: usize,
    opts: LbfgsOptions,
    /// Converged, stalled or non-finite: further `advance` calls do nothing.
    done: bool,
}

impl Lbfgs {
    /// Projects `x0` onto the box and evaluates `f` there (one evaluation).
    pub fn new(
        f: &mut impl FnMut(&[f64], &mut [f64]) -> f64,
        x0: &[f64],
        lo: &[f64],
        hi: &[f64],
        opts: LbfgsOptions,
    ) -> Lbfgs {
        let n = x0.len();
        assert!(lo.len() == n && hi.len() == n, "Lbfgs::new: bounds length");
        let mut x = x0.to_vec();
        project(&mut x, lo, hi);
        let mut g = vec![0.0; n];
        let fx = f(&x, &mut g);
        Lbfgs {
            x,
            g,
            fx,
            gn: vec![0.0; n],
            mem: VecDeque::new(),
            iterations: 0,
            evaluations: 1,
            opts,
            done: !fx.is_finite(),
        }
    }

    /// Objective value at the current point.
    pub fn value(&self) -> f64 {
        self.fx
    }

    /// Whether the run has stopped for good (converged, stalled, or a non-finite start).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The current point, value and counts.
    pub fn result(&self) -> LbfgsResult {
        LbfgsResult { x: self.x.clone(), f: self.fx, iterations: self.iterations, evaluations: self.evaluations }
    }

    /// Iterates until `max_iter` iterations in total (counting earlier calls) or convergence;
    /// the `max_iter` of the options given to [`Lbfgs::new`] is not read here. `f`, `lo` and
    /// `hi` must be those of [`Lbfgs::new`] (a run resumed with others is not the one-go run).
    pub fn advance(&mut self, f: &mut impl FnMut(&[f64], &mut [f64]) -> f64, lo: &[f64], hi: &[f64], max_iter: usize) {
        let n = self.x.len();
        assert!(lo.len() == n && hi.len() == n, "Lbfgs::advance: bounds length");
        let opts = self.opts;
        let Lbfgs { x, g, fx, gn, mem, iterations, evaluations: evals, done, .. } = self;
        if *done {
            return;
        }
        // scratch, fully overwritten before each use
        let mut xn = vec![0.0; n];
        let mut d = vec![0.0; n];
        while *iterations < max_iter {
            *iterations += 1;
            // Active set: at a bound with the gradient pushing outwards.
            let active: Vec<bool> =
                (0..n).map(|i| (x[i] <= lo[i] && g[i] > 0.0) || (x[i] >= hi[i] && g[i] < 0.0)).collect();
            let pg_norm = (0..n).filter(|&i| !active[i]).map(|i| g[i].abs()).fold(0.0, f64::max);
            if pg_norm < opts.gtol {
                *done = true;
                break;
            }
            // Two-loop recursion on the free variables.
            for i in 0..n {
                d[i] = if active[i] { 0.0 } else { -g[i] };
            }
            let mut alphas = Vec::with_capacity(mem.len());
            for (s, y, rho) in mem.iter().rev() {
                let a = rho * (0..n).filter(|&i| !active[i]).map(|i| s[i] * d[i]).sum::<f64>();
                for i in 0..n {
                    if !active[i] {
                        d[i] -= a * y[i];
                    }
                }
                alphas.push(a);
            }
            if let Some((s, y, _)) = mem.back() {
                let gamma = dot(s, y) / dot(y, y);
                if gamma.is_finite() && gamma > 0.0 {
                    d.iter_mut().for_each(|v| *v *= gamma);
                }
            }
            for ((s, y, rho), a) in mem.iter().zip(alphas.iter().rev()) {
                let b = rho * (0..n).filter(|&i| !active[i]).map(|i| y[i] * d[i]).sum::<f64>();
                for i in 0..n {
                    if !active[i] {
                        d[i] += (a - b) * s[i];
                    }
                }
            }
            let slope = dot(&d, g);
            if !(slope < 0.0) || !slope.is_finite() {
                mem.clear();
                for i in 0..n {
                    d[i] = if active[i] { 0.0 } else { -g[i] };
                }
            }
            // First step without curvature memory: unit step in the max-norm.
            let mut t = if mem.is_empty() {
                let dmax = d.iter().map(|v| v.abs()).fold(0.0, f64::max);
                let width = (0..n).map(|i| hi[i] - lo[i]).fold(f64::INFINITY, f64::min);
                (0.1 * width.min(1.0) / dmax).min(1.0)
            } else {
                1.0
            };
            let mut accepted = false;
            let mut fnew = *fx;
            for _ in 0..40 {
                for i in 0..n {
                    xn[i] = x[i] + t * d[i];
                }
                project(&mut xn, lo, hi);
                let dec: f64 = (0..n).map(|i| g[i] * (xn[i] - x[i])).sum();
                fnew = f(&xn, gn);
                *evals += 1;
                if fnew.is_finite() && fnew <= *fx + 1e-4 * dec.min(0.0) && dec < 0.0 {
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                *done = true;
                break;
            }
            let s: Vec<f64> = (0..n).map(|i| xn[i] - x[i]).collect();
            let y: Vec<f64> = (0..n).map(|i| gn[i] - g[i]).collect();
            let sy = dot(&s, &y);
            if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() && sy > 0.0 {
                if mem.len() == opts.memory {
                    mem.pop_front();
                }
                mem.push_back((s, y, 1.0 / sy));
            }
            let fold = *fx;
            x.copy_from_slice(&xn);
            g.copy_from_slice(gn);
            *fx = fnew;
            if (fold - *fx).abs() <= opts.ftol * fold.abs().max(fx.abs()).max(1.0) {
                *done = true;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosen(x: &[f64], g: &mut [f64]) -> f64 {
        let n = x.len();
        let mut f = 0.0;
        g.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = 1.0 - x[i];
            f += 100.0 * a * a + b * b;
            g[i] += -400.0 * a * x[i] - 2.0 * b;
            g[i + 1] += 200.0 * a;
        }
        f
    }

    #[test]
    fn a_run_advanced_in_parts_is_the_run_in_one_go() {
        let (lo, hi) = (vec![-5.0; 4], vec![5.0; 4]);
        let opts = LbfgsOptions { max_iter: 300, ..Default::default() };
        let whole = minimize_box(rosen, &[-1.2; 4], &lo, &hi, opts);
        let mut f = rosen;
        let mut run = Lbfgs::new(&mut f, &[-1.2; 4], &lo, &hi, opts);
        for k in [1, 2, 7, 30, 300, 300] {
            run.advance(&mut f, &lo, &hi, k);
        }
        let parts = run.result();
        assert_eq!(parts.x, whole.x);
        assert_eq!(parts.f.to_bits(), whole.f.to_bits());
        assert_eq!((parts.iterations, parts.evaluations), (whole.iterations, whole.evaluations));
        assert!(whole.iterations > 30, "the test must resume mid-run: {} iterations", whole.iterations);
        assert!(run.is_done() || parts.iterations == 300);
    }

    #[test]
    fn rosenbrock_interior_minimum() {
        for n in [2, 4, 6] {
            let x0 = vec![-1.2; n];
            let r = minimize_box(
                rosen,
                &x0,
                &vec![-5.0; n],
                &vec![5.0; n],
                LbfgsOptions { max_iter: 500, ..Default::default() },
            );
            for xi in &r.x {
                assert!((xi - 1.0).abs() < 1e-4, "n {n}: {:?} f {}", r.x, r.f);
            }
        }
    }

    #[test]
    fn bound_active_quadratic() {
        // f = Σ w_i (x_i - c_i)² + coupling; minimiser on [0,1]³ is the projection when uncoupled.
        let c = [-1.0, 0.5, 2.0];
        let w = [1.0, 10.0, 0.1];
        let f = |x: &[f64], g: &mut [f64]| {
            let mut v = 0.0;
            for i in 0..3 {
                v += w[i] * (x[i] - c[i]).powi(2);
                g[i] = 2.0 * w[i] * (x[i] - c[i]);
            }
            v
        };
        let r = minimize_box(f, &[0.7, 0.2, 0.3], &[0.0; 3], &[1.0; 3], LbfgsOptions::default());
        assert!(
            (r.x[0] - 0.0).abs() < 1e-12 && (r.x[1] - 0.5).abs() < 1e-6 && (r.x[2] - 1.0).abs() < 1e-12,
            "{:?}",
            r.x
        );
    }

    #[test]
    fn rosenbrock_with_active_bound() {
        // Box excludes (1,1): x1 ≤ 0.5. Constrained minimiser found by brute-force 1-D search
        // along the boundary and interior check below.
        let r = minimize_box(
            rosen,
            &[-1.0, 0.0],
            &[-2.0, -2.0],
            &[0.5, 2.0],
            LbfgsOptions { max_iter: 500, ..Default::default() },
        );
        // On x0 = 0.5 the best x1 is 0.25 (f = 0.25); interior stationary points are none.
        let mut best = f64::INFINITY;
        let mut g = [0.0; 2];
        for i in 0..=4000 {
            for j in 0..=400 {
                let p = [-2.0 + 2.5 * i as f64 / 4000.0, -2.0 + 4.0 * j as f64 / 400.0];
                best = best.min(rosen(&p, &mut g));
            }
        }
        assert!(r.f <= best + 1e-8, "lbfgs {} vs grid {}", r.f, best);
        assert!((r.x[0] - 0.5).abs() < 1e-9 && (r.x[1] - 0.25).abs() < 1e-5, "{:?}", r.x);
    }
}
