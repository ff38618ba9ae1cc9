//! Standard test functions for Bayesian optimisation, with domains and known optima
//! (values from Surjanovic & Bingham's Virtual Library of Simulation Experiments).

use crate::space::Space;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A benchmark function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestFunction {
    /// Levy on `[−10, 10]^5`, f* = 0 at (1, …, 1).
    Levy5,
    /// Branin on `[−5, 10] × [0, 15]`, f* = 0.397887.
    Branin,
    /// Hartmann-6 on `[0, 1]^6`, f* = −3.32237.
    Hartmann6,
    /// Ackley on `[−32.768, 32.768]^5`, f* = 0 at 0.
    Ackley5,
    /// Rosenbrock on `[−5, 10]^4`, f* = 0 at (1, …, 1).
    Rosenbrock4,
}

impl TestFunction {
    /// All functions.
    pub const ALL: [TestFunction; 5] = [
        TestFunction::Levy5,
        TestFunction::Branin,
        TestFunction::Hartmann6,
        TestFunction::Ackley5,
        TestFunction::Rosenbrock4,
    ];

    /// Short name as used in configs.
    pub fn name(self) -> &'static str {
        match self {
            TestFunction::Levy5 => "levy5",
            TestFunction::Branin => "branin",
            TestFunction::Hartmann6 => "hartmann6",
            TestFunction::Ackley5 => "ackley5",
            TestFunction::Rosenbrock4 => "rosenbrock4",
        }
    }

    /// Box bounds.
    pub fn bounds(self) -> Vec<(f64, f64)> {
        match self {
            TestFunction::Levy5 => vec![(-10.0, 10.0); 5],
            TestFunction::Branin => vec![(-5.0, 10.0), (0.0, 15.0)],
            TestFunction::Hartmann6 => vec![(0.0, 1.0); 6],
            TestFunction::Ackley5 => vec![(-32.768, 32.768); 5],
            TestFunction::Rosenbrock4 => vec![(-5.0, 10.0); 4],
        }
    }

    /// Search space (floats `x0..`).
    pub fn space(self) -> Space {
        Space::from_bounds(&self.bounds()).expect("test-function bounds are valid")
    }

    /// Global minimum value.
    pub fn optimum(self) -> f64 {
        match self {
            TestFunction::Branin => 0.397_887_357_729_738,
            TestFunction::Hartmann6 => -3.322_368_011_415_51,
            _ => 0.0,
        }
    }

    /// A global minimiser.
    pub fn argmin(self) -> Vec<f64> {
        match self {
            TestFunction::Levy5 => vec![1.0; 5],
            TestFunction::Branin => vec![PI, 2.275],
            TestFunction::Hartmann6 => {
                vec![0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
            }
            TestFunction::Ackley5 => vec![0.0; 5],
            TestFunction::Rosenbrock4 => vec![1.0; 4],
        }
    }

    /// Evaluates at `x` (original coordinates).
    pub fn eval(self, x: &[f64]) -> f64 {
        match self {
            TestFunction::Levy5 => levy(x),
            TestFunction::Branin => branin(x),
            TestFunction::Hartmann6 => hartmann6(x),
            TestFunction::Ackley5 => ackley(x),
            TestFunction::Rosenbrock4 => rosenbrock(x),
        }
    }
}

/// Levy function (any dimension).
pub fn levy(x: &[f64]) -> f64 {
    let w: Vec<f64> = x.iter().map(|v| 1.0 + (v - 1.0) / 4.0).collect();
    let d = w.len();
    let mut f = (PI * w[0]).sin().powi(2);
    for wi in &w[..d - 1] {
        f += (wi - 1.0).powi(2) * (1.0 + 10.0 * (PI * wi + 1.0).sin().powi(2));
    }
    f + (w[d - 1] - 1.0).powi(2) * (1.0 + (2.0 * PI * w[d - 1]).sin().powi(2))
}

/// Branin–Hoo function.
pub fn branin(x: &[f64]) -> f64 {
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x[1] - b * x[0] * x[0] + c * x[0] - 6.0).powi(2) + 10.0 * (1.0 - t) * x[0].cos() + 10.0
}

/// Hartmann 6-D function.
pub fn hartmann6(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
        [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
        [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
        [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
    ];
    -(0..4)
        .map(|i| ALPHA[i] * (-(0..6).map(|j| A[i][j] * (x[j] - 1e-4 * P[i][j]).powi(2)).sum::<f64>()).exp())
        .sum::<f64>()
}

/// Ackley function (a = 20, b = 0.2, c = 2π).
pub fn ackley(x: &[f64]) -> f64 {
    let d = x.len() as f64;
    let s2 = x.iter().map(|v| v * v).sum::<f64>() / d;
    let sc = x.iter().map(|v| (2.0 * PI * v).cos()).sum::<f64>() / d;
    -20.0 * (-0.2 * s2.sqrt()).exp() - sc.exp() + 20.0 + std::f64::consts::E
}

/// Rosenbrock function.
pub fn rosenbrock(x: &[f64]) -> f64 {
    x.windows(2).map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbfgs::{LbfgsOptions, minimize_box};
    use gradlab_core::rng::rng;
    use rand::Rng;

    #[test]
    fn known_optima() {
        for f in TestFunction::ALL {
            let v = f.eval(&f.argmin());
            assert!((v - f.optimum()).abs() < 1e-5, "{f:?}: {v} vs {}", f.optimum());
        }
        // Branin's three minimisers.
        for x in [[-PI, 12.275], [PI, 2.275], [9.42478, 2.475]] {
            assert!((branin(&x) - 0.397887).abs() < 1e-5);
        }
    }

    #[test]
    fn optima_are_not_beaten_by_search() {
        // Random search plus local polishing (finite-difference gradients) never goes below
        // the published optimum (up to tolerance): an independent check of the constants.
        let mut rng = rng(0);
        for f in TestFunction::ALL {
            let b = f.bounds();
            let lo: Vec<f64> = b.iter().map(|p| p.0).collect();
            let hi: Vec<f64> = b.iter().map(|p| p.1).collect();
            let mut best = f64::INFINITY;
            for _ in 0..20 {
                let x0: Vec<f64> = b.iter().map(|&(l, h)| l + rng.random::<f64>() * (h - l)).collect();
                let r = minimize_box(
                    |x, g| {
                        for i in 0..x.len() {
                            let h = 1e-7 * (1.0 + x[i].abs());
                            let mut xp = x.to_vec();
                            xp[i] += h;
                            let mut xm = x.to_vec();
                            xm[i] -= h;
                            g[i] = (f.eval(&xp) - f.eval(&xm)) / (2.0 * h);
                        }
                        f.eval(x)
                    },
                    &x0,
                    &lo,
                    &hi,
                    LbfgsOptions { max_iter: 300, ..Default::default() },
                );
                best = best.min(r.f);
            }
            assert!(best >= f.optimum() - 1e-6, "{f:?}: found {best} below {}", f.optimum());
        }
        // Hartmann-6 from near its minimiser converges to the published value.
        let x0 = [0.2, 0.15, 0.47, 0.27, 0.31, 0.65];
        let r = minimize_box(
            |x, g| {
                for i in 0..6 {
                    let mut xp = x.to_vec();
                    xp[i] += 1e-7;
                    let mut xm = x.to_vec();
                    xm[i] -= 1e-7;
                    g[i] = (hartmann6(&xp) - hartmann6(&xm)) / 2e-7;
                }
                hartmann6(x)
            },
            &x0,
            &[0.0; 6],
            &[1.0; 6],
            LbfgsOptions::default(),
        );
        assert!((r.f - TestFunction::Hartmann6.optimum()).abs() < 1e-6, "{}", r.f);
    }
}
