//! Analytic objectives with known answers, for tests, benches and examples.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::error::{Result, check_len};
use crate::objective::{Objective, Replicate};
use crate::vecops::{dot, orthonormal_basis};

/// `L(x) = ½ (x − c)ᵀ A (x − c)` with a symmetric `A`; its Hessian is `A` everywhere.
#[derive(Debug, Clone)]
pub struct Quadratic {
    n: usize,
    /// Row-major symmetric `n × n` matrix.
    a: Vec<f64>,
    center: Vec<f64>,
    tmp: Vec<f64>,
}

impl Quadratic {
    /// From a symmetric row-major matrix `a` (`n*n` entries) and a minimiser `center`.
    pub fn new(a: Vec<f64>, center: Vec<f64>) -> Result<Self> {
        let n = center.len();
        check_len("a (n*n)", n * n, a.len())?;
        Ok(Self { n, a, center, tmp: vec![0.0; n] })
    }

    /// `A = Q diag(eigenvalues) Qᵀ` with a random orthogonal `Q` (Gram–Schmidt of a Gaussian
    /// matrix), minimiser at the origin. Returns the objective and the eigenvectors
    /// (`vectors[i]` belongs to `eigenvalues[i]`).
    pub fn with_spectrum(eigenvalues: &[f64], rng: &mut impl Rng) -> (Self, Vec<Vec<f64>>) {
        let n = eigenvalues.len();
        let mut q;
        loop {
            let g: Vec<Vec<f64>> =
                (0..n).map(|_| (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect()).collect();
            q = orthonormal_basis(&g, 1e-8);
            if q.len() == n {
                break;
            }
        }
        let mut a = vec![0.0; n * n];
        for (lam, v) in eigenvalues.iter().zip(&q) {
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] += lam * v[i] * v[j];
                }
            }
        }
        // exact symmetry
        for i in 0..n {
            for j in 0..i {
                let s = 0.5 * (a[i * n + j] + a[j * n + i]);
                a[i * n + j] = s;
                a[j * n + i] = s;
            }
        }
        (Self::new(a, vec![0.0; n]).expect("sizes agree by construction"), q)
    }

    /// The matrix `A`, row-major.
    pub fn matrix(&self) -> &[f64] {
        &self.a
    }

    fn matvec(&self, x: &[f64], out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(&self.a[i * self.n..(i + 1) * self.n], x);
        }
    }
}

impl Objective for Quadratic {
    fn dim(&self) -> usize {
        self.n
    }
    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        check_len("theta", self.n, theta.len())?;
        let d: Vec<f64> = theta.iter().zip(&self.center).map(|(a, b)| a - b).collect();
        let mut tmp = std::mem::take(&mut self.tmp);
        self.matvec(&d, &mut tmp);
        let l = 0.5 * dot(&d, &tmp);
        self.tmp = tmp;
        Ok(l)
    }
    fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        check_len("theta", self.n, theta.len())?;
        check_len("grad", self.n, grad.len())?;
        let d: Vec<f64> = theta.iter().zip(&self.center).map(|(a, b)| a - b).collect();
        self.matvec(&d, grad);
        Ok(0.5 * dot(&d, grad))
    }
    fn hvp_exact(&mut self, theta: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("theta", self.n, theta.len())?;
        check_len("v", self.n, v.len())?;
        check_len("out", self.n, out.len())?;
        self.matvec(v, out);
        Ok(())
    }
}

impl Replicate for Quadratic {
    fn replicate(&self) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Two-dimensional ring valley `L(x, y) = (x² + y² − 1)²`: minima on the unit circle, so the
/// straight line between `(−1, 0)` and `(1, 0)` crosses a barrier of height 1 at the origin while
/// a curved path stays in the valley. Used to test mode connectivity.
pub fn ring_valley() -> crate::objective::FnObjective {
    crate::objective::FnObjective::new(2, |x: &[f64], g: Option<&mut [f64]>| {
        let r = x[0] * x[0] + x[1] * x[1] - 1.0;
        if let Some(g) = g {
            g[0] = 4.0 * r * x[0];
            g[1] = 4.0 * r * x[1];
        }
        r * r
    })
}
