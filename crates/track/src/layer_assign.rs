//! The differentiable per-layer edge assignment of a frame (what PAT trains through).
//!
//! [`FrameLap`] cuts a frame's hit-graph edges into one bipartite problem per adjacent layer
//! pair and solves each with the sparse LAP solver of [`crate::sparse_lap`]. [`assign`] wraps
//! that as a candle custom op ([`AssignOp`]): its forward solves the assignments on the edge
//! costs `w = 1 − p`, its backward is the blackbox gradient of Vlastelica et al. (ICLR 2020):
//!
//! `w' = max(w + λ·c·g, 0)`, `y_λ = solve(w')`, `∂L/∂w = −(ŷ − y_λ)` (the reference code's
//! form; `−(ŷ − y_λ)/λ` with `scale_by_lambda`, Vlastelica's), with `g = ∂L/∂ŷ` and `c` the
//! perturbation scale ([`assign_scaled`]: the reference divides each frame's loss by the frames
//! of a step before its backward, so its `g` is `1/32` of one frame's). The clamp at 0 is the
//! reference's (`clamp_perturbed`; costs `1 − p` are ≥ 0). A straight-through estimator
//! (`∂L/∂w = −g`, i.e. the identity on `p = 1 − w`) is the alternative.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{HitGraph, PairEdges};
use crate::sparse_lap::{SparseCost, Unmatched, solve};

/// Gradient estimator of the assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Blackbox interpolation gradient.
    #[default]
    Blackbox,
    /// Straight-through: the gradient of `ŷ` is passed to `p` unchanged.
    StraightThrough,
}

fn d_lambda() -> f64 {
    50.0
}
fn yes() -> bool {
    true
}
fn no() -> bool {
    false
}

/// Assignment configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignConfig {
    /// Interpolation factor λ (paper: 25, 50, 75).
    #[serde(default = "d_lambda")]
    pub lambda: f64,
    /// Divide the blackbox gradient by λ (Vlastelica et al.). The reference code does not, which
    /// is the default; under RMSprop the factor mostly cancels.
    #[serde(default = "no")]
    pub scale_by_lambda: bool,
    /// Clamp the perturbed costs at 0, `w' = max(w + λ·c·g, 0)`, as the reference code does.
    #[serde(default = "yes")]
    pub clamp_perturbed: bool,
    /// The gradient estimator.
    #[serde(default)]
    pub estimator: Estimator,
    /// Cost of leaving a hit without a partner; absent = maximum-cardinality assignment (the
    /// paper's rectangular LAP with +∞ for cut edges).
    #[serde(default)]
    pub no_link_cost: Option<f64>,
}

impl Default for AssignConfig {
    fn default() -> Self {
        AssignConfig {
            lambda: d_lambda(),
            scale_by_lambda: false,
            clamp_perturbed: true,
            estimator: Estimator::Blackbox,
            no_link_cost: None,
        }
    }
}

impl AssignConfig {
    /// Check the configuration.
    pub fn validate(&self) -> Result<()> {
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return Err(Error::invalid("assign.lambda", self.lambda, "a finite number > 0"));
        }
        if let Some(u) = self.no_link_cost
            && !u.is_finite()
        {
            return Err(Error::invalid("assign.no_link_cost", u, "a finite number, or absent for maximum cardinality"));
        }
        Ok(())
    }

    /// The LAP's treatment of unmatched hits.
    pub fn unmatched(&self) -> Unmatched {
        self.no_link_cost.map_or(Unmatched::Forbidden, Unmatched::Cost)
    }
}

/// The per-layer-pair structure of a frame's edges.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameLap {
    pairs: Vec<PairEdges>,
    n_edges: usize,
}

impl FrameLap {
    /// From a hit graph (edges are contiguous per layer pair).
    pub fn new(g: &HitGraph) -> Result<Self> {
        let pairs = (0..g.num_layers.saturating_sub(1)).map(|l| g.pair_edges(l)).collect::<Result<Vec<_>>>()?;
        Ok(FrameLap { pairs, n_edges: g.num_edges() })
    }

    /// From explicit blocks (tests, other graphs). Blocks must tile `0..n_edges` in order.
    pub fn from_pairs(pairs: Vec<PairEdges>, n_edges: usize) -> Result<Self> {
        let mut next = 0;
        for p in &pairs {
            if p.range.start != next || p.row.len() != p.range.len() || p.col.len() != p.range.len() {
                return Err(Error::invalid(
                    "pairs",
                    format!("block {:?} with {} rows/{} cols entries", p.range, p.row.len(), p.col.len()),
                    format!("contiguous blocks starting at {next} with one row and col per edge"),
                ));
            }
            next = p.range.end;
        }
        if next != n_edges {
            return Err(Error::invalid(
                "pairs",
                format!("blocks end at {next}"),
                format!("blocks covering {n_edges} edges"),
            ));
        }
        Ok(FrameLap { pairs, n_edges })
    }

    /// Number of edges.
    pub fn num_edges(&self) -> usize {
        self.n_edges
    }

    /// The layer-pair blocks.
    pub fn pairs(&self) -> &[PairEdges] {
        &self.pairs
    }

    /// Solve every layer pair (in parallel) on edge costs `w`; returns the selected edges.
    pub fn solve(&self, w: &[f64], unmatched: Unmatched) -> Result<Vec<bool>> {
        if w.len() != self.n_edges {
            return Err(Error::invalid("w", format!("{} costs", w.len()), format!("one per edge ({})", self.n_edges)));
        }
        let parts: Vec<Vec<bool>> = self
            .pairs
            .par_iter()
            .map(|p| {
                let c = SparseCost::from_triplets(p.rows, p.cols, &p.row, &p.col, &w[p.range.clone()])?;
                Ok(solve(&c, unmatched)?.selected)
            })
            .collect::<Result<_>>()?;
        Ok(parts.concat())
    }
}

/// The assignment as a candle op on the cost vector `w` (`[E]`, f32 or f64); output `ŷ` in {0, 1}.
#[derive(Debug, Clone)]
pub struct AssignOp {
    lap: Arc<FrameLap>,
    cfg: AssignConfig,
    grad_scale: f64,
}

impl AssignOp {
    /// An op for one frame.
    pub fn new(lap: Arc<FrameLap>, cfg: AssignConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(AssignOp { lap, cfg, grad_scale: 1.0 })
    }

    /// The blackbox perturbation uses `c·g` instead of `g` (`c` finite, > 0).
    pub fn with_grad_scale(mut self, c: f64) -> Result<Self> {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::invalid("grad_scale", c, "a finite number > 0"));
        }
        self.grad_scale = c;
        Ok(self)
    }

    fn solve_vec(&self, w: Vec<f64>) -> candle_core::Result<Vec<f64>> {
        let y = self.lap.solve(&w, self.cfg.unmatched()).map_err(candle_core::Error::wrap)?;
        Ok(y.into_iter().map(|b| if b { 1.0 } else { 0.0 }).collect())
    }
}

impl CustomOp1 for AssignOp {
    fn name(&self) -> &'static str {
        "per-layer-assignment"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("assignment: input must be contiguous".into()))?;
        let w: Vec<f64> = match storage {
            CpuStorage::F32(s) => s[a..b].iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(s) => s[a..b].to_vec(),
            _ => candle_core::bail!("assignment: only f32 and f64 costs are supported"),
        };
        let y = self.solve_vec(w)?;
        let out = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(y.into_iter().map(|v| v as f32).collect()),
            _ => CpuStorage::F64(y),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match self.cfg.estimator {
            Estimator::StraightThrough => Ok(Some(grad_res.neg()?)),
            Estimator::Blackbox => {
                let lam = self.cfg.lambda;
                let w = arg.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                let g = grad_res.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                let y = res.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                let c = lam * self.grad_scale;
                let clamp = self.cfg.clamp_perturbed;
                let wp: Vec<f64> = w
                    .iter()
                    .zip(&g)
                    .map(|(w, g)| {
                        let v = w + c * g;
                        if clamp { v.max(0.0) } else { v }
                    })
                    .collect();
                let yl = self.solve_vec(wp)?;
                let s = if self.cfg.scale_by_lambda { 1.0 / lam } else { 1.0 };
                let grad: Vec<f64> = y.iter().zip(&yl).map(|(a, b)| -(a - b) * s).collect();
                Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?.to_dtype(arg.dtype())?))
            }
        }
    }
}

/// `ŷ = assign(w)` with the configured backward.
pub fn assign(w: &Tensor, lap: &Arc<FrameLap>, cfg: &AssignConfig) -> candle_core::Result<Tensor> {
    assign_scaled(w, lap, cfg, 1.0)
}

/// [`assign`] whose blackbox backward perturbs the costs by `λ·grad_scale·g`.
pub fn assign_scaled(
    w: &Tensor,
    lap: &Arc<FrameLap>,
    cfg: &AssignConfig,
    grad_scale: f64,
) -> candle_core::Result<Tensor> {
    let op = AssignOp::new(lap.clone(), cfg.clone())
        .and_then(|o| o.with_grad_scale(grad_scale))
        .map_err(candle_core::Error::wrap)?;
    w.contiguous()?.apply_op1(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// One 2×2 block with all four edges: e0 = (0,0), e1 = (0,1), e2 = (1,0), e3 = (1,1).
    fn block() -> Arc<FrameLap> {
        let p = PairEdges { range: 0..4, rows: 2, cols: 2, row: vec![0, 0, 1, 1], col: vec![0, 1, 0, 1] };
        Arc::new(FrameLap::from_pairs(vec![p], 4).unwrap())
    }

    fn grad_of(w: &[f64], g_out: &[f64], cfg: &AssignConfig) -> (Vec<f64>, Vec<f64>) {
        let dev = Device::Cpu;
        let wv = Var::from_vec(w.to_vec(), 4, &dev).unwrap();
        let y = assign(wv.as_tensor(), &block(), cfg).unwrap();
        let gt = Tensor::from_vec(g_out.to_vec(), 4, &dev).unwrap();
        let l = y.mul(&gt).unwrap().sum_all().unwrap();
        let grads = l.backward().unwrap();
        (y.to_vec1().unwrap(), grads.get(wv.as_tensor()).unwrap().to_vec1().unwrap())
    }

    #[test]
    fn blackbox_gradient_matches_the_formula() {
        // Forward: diagonal is cheaper (0.2 + 0.3 < 0.6 + 0.5).
        let w = [0.2, 0.6, 0.5, 0.3];
        // g favours the anti-diagonal: perturbed costs w + λg with λ = 2:
        // [0.2+0.4, 0.6−0.4, 0.5−0.4, 0.3+0.4] = [0.6, 0.2, 0.1, 0.7] → anti-diagonal.
        let g = [0.2, -0.2, -0.2, 0.2];
        let cfg = AssignConfig { lambda: 2.0, scale_by_lambda: true, ..Default::default() };
        let (y, dw) = grad_of(&w, &g, &cfg);
        assert_eq!(y, vec![1.0, 0.0, 0.0, 1.0]);
        let yl = [0.0, 1.0, 1.0, 0.0];
        for k in 0..4 {
            assert_eq!(dw[k], -(y[k] - yl[k]) / 2.0);
        }
        // Without the 1/λ.
        let (_, dw) = grad_of(&w, &g, &AssignConfig { scale_by_lambda: false, ..cfg.clone() });
        assert_eq!(dw, vec![-1.0, 1.0, 1.0, -1.0]);
        // A small λ that does not flip the solution gives a zero gradient.
        let (_, dw) = grad_of(&w, &g, &AssignConfig { lambda: 0.1, ..cfg.clone() });
        assert_eq!(dw, vec![0.0; 4]);
        // The perturbation scale c: λ·c·g = 0.04·sign does not flip the solution, c = 1 does.
        let op = |c: f64| {
            let dev = Device::Cpu;
            let wv = Var::from_vec(w.to_vec(), 4, &dev).unwrap();
            let y = assign_scaled(wv.as_tensor(), &block(), &cfg, c).unwrap();
            let l = y.mul(&Tensor::from_vec(g.to_vec(), 4, &dev).unwrap()).unwrap().sum_all().unwrap();
            l.backward().unwrap().get(wv.as_tensor()).unwrap().to_vec1::<f64>().unwrap()
        };
        assert_eq!(op(0.1), vec![0.0; 4]);
        assert_eq!(op(1.0), vec![-0.5, 0.5, 0.5, -0.5]);
        assert!(AssignOp::new(block(), cfg.clone()).unwrap().with_grad_scale(0.0).is_err());
        assert!(AssignOp::new(block(), cfg.clone()).unwrap().with_grad_scale(f64::NAN).is_err());
        // Straight-through: −g.
        let (_, dw) = grad_of(&w, &g, &AssignConfig { estimator: Estimator::StraightThrough, ..cfg });
        assert_eq!(dw, vec![-0.2, 0.2, 0.2, -0.2]);
    }

    #[test]
    fn perturbed_costs_are_clamped_at_zero_as_in_the_reference() {
        // w + λg = [−2, 0.5, 0.5, 1.2]: unclamped the diagonal (−0.8 < 1.0) stays, so the
        // gradient is 0; clamped [0, 0.5, 0.5, 1.2] the anti-diagonal (1.0 < 1.2) wins.
        let w = [0.2, 0.6, 0.5, 0.3];
        let g = [-1.1, -0.05, 0.0, 0.45];
        let cfg = AssignConfig { lambda: 2.0, ..Default::default() };
        assert!(cfg.clamp_perturbed && !cfg.scale_by_lambda, "reference defaults");
        let (y, dw) = grad_of(&w, &g, &cfg);
        assert_eq!(y, vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(dw, vec![-1.0, 1.0, 1.0, -1.0]);
        let (_, dw) = grad_of(&w, &g, &AssignConfig { clamp_perturbed: false, ..cfg });
        assert_eq!(dw, vec![0.0; 4]);
    }

    #[test]
    fn gradient_descent_reaches_the_target_assignment() {
        // Hamming loss to the anti-diagonal target; descend on w with the blackbox gradient.
        let dev = Device::Cpu;
        let target = Tensor::from_vec(vec![0.0f64, 1.0, 1.0, 0.0], 4, &dev).unwrap();
        let w = Var::from_vec(vec![0.2f64, 0.6, 0.5, 0.3], 4, &dev).unwrap();
        let cfg = AssignConfig { lambda: 20.0, ..Default::default() };
        let lap = block();
        let hamming = |y: &Tensor| -> Tensor {
            // mean(ŷ(1 − y) + (1 − ŷ)y)
            let one = Tensor::ones_like(&target).unwrap();
            (y.mul(&(&one - &target).unwrap()).unwrap() + (&one - y).unwrap().mul(&target).unwrap())
                .unwrap()
                .mean_all()
                .unwrap()
        };
        let mut losses = Vec::new();
        for _ in 0..50 {
            let y = assign(w.as_tensor(), &lap, &cfg).unwrap();
            let l = hamming(&y);
            losses.push(l.to_scalar::<f64>().unwrap());
            let g = l.backward().unwrap().get(w.as_tensor()).unwrap().clone();
            w.set(&(w.as_tensor() - (g * 0.5).unwrap()).unwrap()).unwrap();
        }
        assert_eq!(losses[0], 1.0);
        assert_eq!(*losses.last().unwrap(), 0.0, "{losses:?}");
        let wv = w.as_tensor().to_vec1::<f64>().unwrap();
        // Costs of target edges went down, the others up.
        assert!(wv[1] < 0.6 && wv[2] < 0.5 && wv[0] > 0.2 && wv[3] > 0.3, "{wv:?}");
    }

    #[test]
    fn frame_lap_validates_and_solves_per_block() {
        let p0 = PairEdges { range: 0..2, rows: 1, cols: 2, row: vec![0, 0], col: vec![0, 1] };
        let p1 = PairEdges { range: 2..3, rows: 2, cols: 1, row: vec![1], col: vec![0] };
        let lap = FrameLap::from_pairs(vec![p0.clone(), p1], 3).unwrap();
        assert_eq!(lap.solve(&[0.9, 0.1, 0.5], Unmatched::Forbidden).unwrap(), vec![false, true, true]);
        // With a no-link cost of 0.4 the 0.5 edge is not worth it.
        assert_eq!(lap.solve(&[0.9, 0.1, 0.5], Unmatched::Cost(0.4)).unwrap(), vec![false, true, false]);
        assert!(lap.solve(&[0.0], Unmatched::Forbidden).is_err());
        assert!(FrameLap::from_pairs(vec![p0], 3).is_err());
        assert!(AssignConfig { lambda: 0.0, ..Default::default() }.validate().is_err());
        assert!(AssignConfig { no_link_cost: Some(f64::NAN), ..Default::default() }.validate().is_err());
    }
}
