//! The interaction network of Kortus et al. in candle: scatter-max aggregation (a custom op with
//! its own backward, since candle has none), MLPs with BatchNorm + LeakyReLU, and the one-step
//! interaction network on the line graph (hidden 16, sinusoidal angle encoding; one score per
//! line-graph node = hit-graph edge) or on the hit graph (hidden 64; edge scorer R2).
//!
//! One step: messages `m_k = R1([x_to, x_from, e_k])` on the directed message edges `from → to`,
//! `agg_i = max_{k: to_k = i} m_k` (0 where nothing arrives), `x'_i = O([x_i, agg_i])`, then
//! line graph: `s_i = S(x'_i)`; hit graph: `s_k = R2([x'_to, x'_from, m_k])`. Each MLP is
//! Linear → BN → LeakyReLU → Linear → BN → LeakyReLU → Linear. The first layer of R1 is applied
//! as `A·x_to + B·x_from + C·e` computed per node and per attribute row and then gathered with
//! `index_select` — identical to a linear layer on the concatenation, without materialising it.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, ModuleT, Shape, Tensor, WithDType};
use candle_nn::{BatchNorm, BatchNormConfig, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::fused::{Attr, BnStats, EncodingGrid, FusedTail, Sink, Source};
use crate::graph::{EDGE_FEATURES, HitGraph, LINE_NODE_FEATURES, LineGraph, NODE_FEATURES, encode_angles};
use gradlab_core::ops::contiguous;

/// Scatter-max of the rows of a `[E, H]` tensor into `[n, H]` by a row index, with a backward
/// that routes each output gradient to the (first) row that attained the maximum. Outputs with
/// no incoming row are 0 (the PyTorch-Geometric convention).
#[derive(Debug, Clone)]
pub struct ScatterMax {
    index: Arc<Vec<u32>>,
    n: usize,
}

impl ScatterMax {
    /// An op scattering row `k` into output row `index[k] < n`.
    pub fn new(index: Arc<Vec<u32>>, n: usize) -> candle_core::Result<Self> {
        if let Some(&bad) = index.iter().find(|&&i| i as usize >= n) {
            candle_core::bail!("scatter_max: index {bad} out of range for {n} output rows");
        }
        Ok(ScatterMax { index, n })
    }

    fn fwd<T: WithDType + PartialOrd>(&self, src: &[T], h: usize) -> Vec<T> {
        let mut out = vec![T::zero(); self.n * h];
        let mut seen = vec![false; self.n];
        for (k, &i) in self.index.iter().enumerate() {
            let i = i as usize;
            let row = &src[k * h..(k + 1) * h];
            let o = &mut out[i * h..(i + 1) * h];
            if !seen[i] {
                o.copy_from_slice(row);
                seen[i] = true;
            } else {
                for (a, &b) in o.iter_mut().zip(row) {
                    if b > *a {
                        *a = b;
                    }
                }
            }
        }
        out
    }

    fn bwd_vec<T: WithDType + PartialOrd>(&self, src: &[T], res: &[T], g: &[T], h: usize) -> Vec<T> {
        let mut grad = vec![T::zero(); src.len()];
        let mut taken = vec![false; self.n * h];
        for (k, &i) in self.index.iter().enumerate() {
            let i = i as usize;
            for c in 0..h {
                let o = i * h + c;
                if !taken[o] && src[k * h + c] == res[o] {
                    taken[o] = true;
                    grad[k * h + c] = g[o];
                }
            }
        }
        grad
    }
}

impl CustomOp1 for ScatterMax {
    fn name(&self) -> &'static str {
        "scatter-max"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (e, h) = layout.shape().dims2()?;
        if e != self.index.len() {
            candle_core::bail!("scatter_max: {e} rows but {} indices", self.index.len());
        }
        let out = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(self.fwd(contiguous::<f32>(storage, layout)?, h)),
            CpuStorage::F64(_) => CpuStorage::F64(self.fwd(contiguous::<f64>(storage, layout)?, h)),
            _ => candle_core::bail!("scatter_max: only f32 and f64 are supported"),
        };
        Ok((out, Shape::from((self.n, h))))
    }

    /// The same result on a CUDA device: one thread per output value, reading the rows of its
    /// output row in the order of `index` (a stable counting sort done here on the host), so
    /// ties and NaNs resolve exactly as on the CPU. Kernel compiled once per process by NVRTC.
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::scatter_max(self, storage, layout)
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, h) = arg.dims2()?;
        let dev = arg.device();
        let g = match arg.dtype() {
            DType::F32 => {
                let (a, r, g) = (
                    arg.flatten_all()?.to_vec1::<f32>()?,
                    res.flatten_all()?.to_vec1::<f32>()?,
                    grad_res.flatten_all()?.to_vec1::<f32>()?,
                );
                Tensor::from_vec(self.bwd_vec(&a, &r, &g, h), arg.shape(), dev)?
            }
            DType::F64 => {
                let (a, r, g) = (
                    arg.flatten_all()?.to_vec1::<f64>()?,
                    res.flatten_all()?.to_vec1::<f64>()?,
                    grad_res.flatten_all()?.to_vec1::<f64>()?,
                );
                Tensor::from_vec(self.bwd_vec(&a, &r, &g, h), arg.shape(), dev)?
            }
            d => candle_core::bail!("scatter_max: unsupported dtype {d:?}"),
        };
        Ok(Some(g))
    }
}

/// Rows of each output row in `index` order: `(offsets, order)` with the rows of output `i` at
/// `order[offsets[i]..offsets[i + 1]]` (a stable counting sort).
pub fn rows_by_target(index: &[u32], n: usize) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; n + 1];
    for &i in index {
        offsets[i as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets.clone();
    let mut order = vec![0u32; index.len()];
    for (k, &i) in index.iter().enumerate() {
        order[next[i as usize] as usize] = k as u32;
        next[i as usize] += 1;
    }
    (offsets, order)
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::{ScatterMax, rows_by_target};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CudaStorage, Layout, Shape};
    use std::sync::OnceLock;

    const SRC: &str = r#"
#define SCATTER_MAX(NAME, T) \
extern "C" __global__ void NAME(const T* src, const unsigned int* offsets, const unsigned int* order, \
                                T* out, unsigned int n, unsigned int h) { \
    unsigned int t = blockIdx.x * blockDim.x + threadIdx.x; \
    if (t >= n * h) return; \
    unsigned int i = t / h, c = t % h; \
    unsigned int a = offsets[i], b = offsets[i + 1]; \
    T m = (T)0; \
    if (a < b) { \
        m = src[(unsigned long long)order[a] * h + c]; \
        for (unsigned int j = a + 1; j < b; ++j) { \
            T v = src[(unsigned long long)order[j] * h + c]; \
            if (v > m) m = v; \
        } \
    } \
    out[t] = m; \
}
SCATTER_MAX(gradlab_scatter_max_f32, float)
SCATTER_MAX(gradlab_scatter_max_f64, double)
"#;

    /// The kernels' PTX, compiled by NVRTC once per process (needs the NVRTC library, not a GPU).
    pub(super) fn ptx() -> candle_core::Result<&'static str> {
        static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
        PTX.get_or_init(|| {
            candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(SRC).map(|p| p.to_src()).map_err(|e| e.to_string())
        })
        .as_deref()
        .map_err(|e| candle_core::Error::Msg(format!("scatter_max: NVRTC failed: {e}")))
    }

    pub(super) fn scatter_max(
        op: &ScatterMax,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (e, h) = layout.shape().dims2()?;
        if e != op.index.len() {
            candle_core::bail!("scatter_max: {e} rows but {} indices", op.index.len());
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("scatter_max: the input must be contiguous");
        };
        let n = op.n;
        let total = n * h;
        if total > u32::MAX as usize || e > u32::MAX as usize {
            candle_core::bail!("scatter_max: {n} × {h} outputs exceed the kernel's 32-bit indexing");
        }
        let dev = storage.device().clone();
        let (offsets, order) = rows_by_target(&op.index, n);
        let offsets = dev.clone_htod(&offsets)?;
        let order = dev.clone_htod(&order)?;
        let cfg = LaunchConfig::for_num_elems(total.max(1) as u32);
        let (n32, h32) = (n as u32, h as u32);
        macro_rules! launch {
            ($src:expr, $ty:ty, $name:literal, $variant:ident) => {{
                let src = $src.slice(start..end);
                let func = dev.get_or_load_custom_func($name, "gradlab_scatter_max", ptx()?)?;
                // SAFETY: every output value is written by the kernel below.
                let out = unsafe { dev.alloc::<$ty>(total.max(1))? };
                let mut b = func.builder();
                b.arg(&src);
                b.arg(&offsets);
                b.arg(&order);
                b.arg(&out);
                b.arg(&n32);
                b.arg(&h32);
                // SAFETY: argument types and counts match the kernel's signature.
                unsafe { b.launch(cfg) }.w()?;
                CudaStorageSlice::$variant(out)
            }};
        }
        let slice = match &storage.slice {
            CudaStorageSlice::F32(s) => launch!(s, f32, "gradlab_scatter_max_f32", F32),
            CudaStorageSlice::F64(s) => launch!(s, f64, "gradlab_scatter_max_f64", F64),
            _ => candle_core::bail!("scatter_max: only f32 and f64 are supported"),
        };
        Ok((CudaStorage { slice, device: dev }, Shape::from((n, h))))
    }
}

/// `out[i] = max_{k: index[k] = i} src[k]` (0 where no row arrives), differentiable in `src`.
pub fn scatter_max(src: &Tensor, index: &Arc<Vec<u32>>, n: usize) -> candle_core::Result<Tensor> {
    src.contiguous()?.apply_op1(ScatterMax::new(index.clone(), n)?)
}

/// Which graph the network runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GraphKind {
    /// Line graph: nodes are hit-graph edges (the paper's main model).
    #[default]
    Line,
    /// Hit graph: nodes are hits, scores on edges.
    Hit,
}

fn d_hidden_line() -> usize {
    16
}
fn d_enc() -> usize {
    128
}
fn d_angle_scale() -> f32 {
    1.0
}
fn d_enc_base() -> f32 {
    0.001
}
fn d_slope() -> f64 {
    0.01
}

/// Network configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GnnConfig {
    /// Line graph (default) or hit graph.
    #[serde(default)]
    pub graph: GraphKind,
    /// Hidden width (paper: 16 on the line graph, 64 on the hit graph).
    #[serde(default = "d_hidden_line")]
    pub hidden: usize,
    /// Width of the sinusoidal encoding of √angle on line-graph edges (paper: 128).
    #[serde(default = "d_enc")]
    pub angle_encoding_dim: usize,
    /// The angle is multiplied by this before the square root and the encoding (reference: 1).
    #[serde(default = "d_angle_scale")]
    pub angle_scale: f32,
    /// Base of the encoding's geometric frequency ladder `ω_i = base^(−2i/d)`. The reference
    /// code's `scaling = 0.001` (the default) gives ω from 1 up to ≈ 900; a base > 1 gives a
    /// falling ladder from 1.
    #[serde(default = "d_enc_base")]
    pub encoding_base: f32,
    /// LeakyReLU negative slope.
    #[serde(default = "d_slope")]
    pub leaky_slope: f64,
}

impl Default for GnnConfig {
    fn default() -> Self {
        GnnConfig {
            graph: GraphKind::Line,
            hidden: d_hidden_line(),
            angle_encoding_dim: d_enc(),
            angle_scale: d_angle_scale(),
            encoding_base: d_enc_base(),
            leaky_slope: d_slope(),
        }
    }
}

/// The largest encoding grid (`points × angle_encoding_dim` values) a line-graph configuration
/// may need: 2²⁴, 8× the reference's encoding (≈ 16k points × 128).
pub const MAX_GRID_VALUES: usize = 1 << 24;

impl GnnConfig {
    /// The paper's hit-graph variant (hidden 64).
    pub fn hit_graph() -> Self {
        GnnConfig { graph: GraphKind::Hit, hidden: 64, ..Default::default() }
    }

    /// Check the configuration.
    pub fn validate(&self) -> crate::Result<()> {
        if self.hidden == 0 {
            return Err(crate::Error::invalid("model.hidden", 0, "at least 1"));
        }
        if self.graph == GraphKind::Line && (self.angle_encoding_dim == 0 || !self.angle_encoding_dim.is_multiple_of(2))
        {
            return Err(crate::Error::invalid(
                "model.angle_encoding_dim",
                self.angle_encoding_dim,
                "an even number ≥ 2",
            ));
        }
        if !(self.angle_scale.is_finite() && self.angle_scale > 0.0) {
            return Err(crate::Error::invalid("model.angle_scale", self.angle_scale, "a finite number > 0"));
        }
        if !(self.encoding_base.is_finite() && self.encoding_base > 0.0 && self.encoding_base != 1.0) {
            return Err(crate::Error::invalid(
                "model.encoding_base",
                self.encoding_base,
                "a finite number > 0 other than 1",
            ));
        }
        if !(self.leaky_slope.is_finite() && self.leaky_slope >= 0.0) {
            return Err(crate::Error::invalid("model.leaky_slope", self.leaky_slope, "a finite number ≥ 0"));
        }
        if self.graph == GraphKind::Line {
            // The fused path tabulates the encoding on a grid of spacing 0.1/ω_max up to
            // u = √(angle_scale·θ), θ ≤ π: bound its size before anything is allocated.
            let d = self.angle_encoding_dim;
            let w_max = crate::fused::omegas(d, self.encoding_base as f64).into_iter().fold(1e-12, f64::max);
            let points = (self.angle_scale as f64 * std::f64::consts::PI).sqrt() * w_max / 0.1 + 2.0;
            if points * d as f64 > MAX_GRID_VALUES as f64 {
                return Err(crate::Error::invalid(
                    "model.angle_scale / model.encoding_base",
                    format!(
                        "{} / {} (an encoding grid of {points:.3e} points × {d})",
                        self.angle_scale, self.encoding_base
                    ),
                    format!(
                        "an encoding whose grid (√(π·angle_scale)·ω_max/0.1 points × angle_encoding_dim) holds at most {MAX_GRID_VALUES} values"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn dims(&self) -> (usize, usize) {
        match self.graph {
            GraphKind::Line => (LINE_NODE_FEATURES, self.angle_encoding_dim),
            GraphKind::Hit => (NODE_FEATURES, EDGE_FEATURES),
        }
    }
}

/// The edge-attribute table `[A, d_e]` of a [`GraphInput`]. On the hit graph it holds the edge
/// features; on the line graph the `[pairs, d]` angle encoding is only materialised when first
/// dereferenced (the fused forward never needs it: it interpolates the encoding product on a
/// grid, see [`crate::fused`]).
#[derive(Debug, Clone)]
pub struct AttrTable {
    cell: OnceLock<Tensor>,
    lazy: Option<LazyEncoding>,
}

#[derive(Debug, Clone)]
struct LazyEncoding {
    scaled: Arc<Vec<f32>>,
    d: usize,
    base: f32,
    dtype: DType,
    dev: Device,
}

impl AttrTable {
    fn eager(t: Tensor) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(t);
        AttrTable { cell, lazy: None }
    }

    fn to_dtype(&self, dtype: DType) -> candle_core::Result<Self> {
        match (&self.lazy, self.cell.get()) {
            (Some(l), None) => Ok(AttrTable { cell: OnceLock::new(), lazy: Some(LazyEncoding { dtype, ..l.clone() }) }),
            (_, Some(t)) => Ok(AttrTable { lazy: None, ..Self::eager(t.to_dtype(dtype)?) }),
            (None, None) => unreachable!("an attribute table is either eager or lazy"),
        }
    }
}

impl std::ops::Deref for AttrTable {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        self.cell.get_or_init(|| {
            let l = self.lazy.as_ref().expect("an attribute table is either eager or lazy");
            let enc = encode_angles(&l.scaled, l.d, l.base).expect("encoding width validated with the config");
            Tensor::from_vec(enc, (l.scaled.len(), l.d), &l.dev)
                .and_then(|t| t.to_dtype(l.dtype))
                .expect("a CPU tensor of the right size")
        })
    }
}

/// The line graph's angle encoding as the fused forward reads it: `u = √(scale·θ)` per pair and
/// the `[2G, d]` Hermite grid rows (see [`EncodingGrid`]).
#[derive(Debug, Clone)]
struct EncInput {
    u: Arc<Vec<f32>>,
    grid: Tensor,
    h: f64,
    g: usize,
}

/// The tensors one frame contributes to a forward pass.
#[derive(Debug, Clone)]
pub struct GraphInput {
    /// Node features `[N, d_x]` (scaled).
    pub x: Tensor,
    /// Edge attribute table `[A, d_e]` (on the line graph materialised on first use).
    pub attr: AttrTable,
    /// Message sources `[K]` (u32).
    pub from: Tensor,
    /// Message targets `[K]` (u32), also the scatter-max index.
    pub to: Tensor,
    /// Attribute row of each message `[K]` (u32).
    pub attr_index: Tensor,
    to_index: Arc<Vec<u32>>,
    from_index: Arc<Vec<u32>>,
    attr_rows: Arc<Vec<u32>>,
    enc: Option<EncInput>,
    /// Number of nodes.
    pub n: usize,
}

impl GraphInput {
    /// Inputs of the line-graph model: nodes = hit-graph edges, messages in both directions of
    /// every consecutive-segment pair, attributes = the encoded angle per pair.
    pub fn line(lg: &LineGraph, cfg: &GnnConfig, dev: &Device) -> candle_core::Result<Self> {
        let n = lg.num_nodes();
        let mut x = lg.node_features.clone();
        for row in x.chunks_mut(LINE_NODE_FEATURES) {
            // edep [MeV] ×10; x, y [mm] /10; z [mm] /100.
            row[0] *= 10.0;
            row[1] *= 10.0;
            for (k, v) in row[2..].iter_mut().enumerate() {
                *v /= if k % 3 == 2 { 100.0 } else { 10.0 };
            }
        }
        let (from, to) = lg.undirected_edge_index();
        Self::line_from_parts(x, n, from, to, &lg.angle, cfg, dev)
    }

    /// The line-graph inputs from scaled node features `[n, 8]`, message `from`/`to` (pairs
    /// first, then the same pairs reversed) and the angle of every pair.
    pub(crate) fn line_from_parts(
        x: Vec<f32>,
        n: usize,
        from: Vec<u32>,
        to: Vec<u32>,
        angle: &[f32],
        cfg: &GnnConfig,
        dev: &Device,
    ) -> candle_core::Result<Self> {
        let d = cfg.angle_encoding_dim;
        if d == 0 || !d.is_multiple_of(2) {
            candle_core::bail!("angle encoding width {d} must be even and > 0");
        }
        let scaled: Vec<f32> = angle.iter().map(|a| a * cfg.angle_scale).collect();
        let u: Vec<f32> = scaled.iter().map(|a| a.max(0.0).sqrt()).collect();
        let u_max = u.iter().cloned().fold(0.0f32, f32::max) as f64;
        let (grid_h, grid_g, grid_rows) = EncodingGrid::rows_f32(u_max, d, cfg.encoding_base as f64);
        let p = angle.len();
        let attr_index: Vec<u32> = (0..2 * p as u32).map(|k| k % p.max(1) as u32).collect();
        let attr = AttrTable {
            cell: OnceLock::new(),
            lazy: Some(LazyEncoding {
                scaled: Arc::new(scaled),
                d,
                base: cfg.encoding_base,
                dtype: DType::F32,
                dev: dev.clone(),
            }),
        };
        let enc =
            EncInput { u: Arc::new(u), grid: Tensor::from_vec(grid_rows, (2 * grid_g, d), dev)?, h: grid_h, g: grid_g };
        let mut inp = Self::assemble(x, LINE_NODE_FEATURES, attr, from, to, attr_index, n, dev)?;
        inp.enc = Some(enc);
        Ok(inp)
    }

    /// Inputs of the hit-graph model: messages along the directed hit-graph edges
    /// (deeper → shallower), attributes = the edge features.
    pub fn hit(g: &HitGraph, dev: &Device) -> candle_core::Result<Self> {
        let n = g.num_nodes();
        let mut x = g.node_features.clone();
        for row in x.chunks_mut(NODE_FEATURES) {
            row[1] /= 10.0;
            row[2] /= 10.0;
            row[3] /= 100.0;
        }
        let mut e = g.edge_features.clone();
        for row in e.chunks_mut(EDGE_FEATURES) {
            row[0] /= 10.0;
            row[1] /= std::f32::consts::PI;
            row[2] /= 0.4;
        }
        let m = g.num_edges();
        let attr_index: Vec<u32> = (0..m as u32).collect();
        let attr = AttrTable::eager(Tensor::from_vec(e, (m, EDGE_FEATURES), dev)?);
        Self::assemble(x, NODE_FEATURES, attr, g.src.clone(), g.dst.clone(), attr_index, n, dev)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        x: Vec<f32>,
        dx: usize,
        attr: AttrTable,
        from: Vec<u32>,
        to: Vec<u32>,
        attr_index: Vec<u32>,
        n: usize,
        dev: &Device,
    ) -> candle_core::Result<Self> {
        let k = from.len();
        Ok(GraphInput {
            x: Tensor::from_vec(x, (n, dx), dev)?,
            attr,
            from: Tensor::from_vec(from.clone(), k, dev)?,
            to: Tensor::from_vec(to.clone(), k, dev)?,
            attr_index: Tensor::from_vec(attr_index.clone(), k, dev)?,
            to_index: Arc::new(to),
            from_index: Arc::new(from),
            attr_rows: Arc::new(attr_index),
            enc: None,
            n,
        })
    }

    /// The same inputs with floating-point tensors in `dtype` (e.g. f64 for finite differences).
    pub fn to_dtype(&self, dtype: DType) -> candle_core::Result<Self> {
        let mut out = self.clone();
        out.x = self.x.to_dtype(dtype)?;
        out.attr = self.attr.to_dtype(dtype)?;
        if let Some(e) = &mut out.enc {
            e.grid = e.grid.to_dtype(dtype)?;
        }
        Ok(out)
    }

    /// Number of messages.
    pub fn num_messages(&self) -> usize {
        self.to_index.len()
    }
}

/// Linear → BN → LeakyReLU → Linear → BN → LeakyReLU → Linear (the first linear layer may be
/// supplied split, see the module docs).
#[derive(Debug, Clone)]
pub struct Mlp {
    l1: Option<Linear>,
    bn1: BatchNorm,
    l2: Linear,
    bn2: BatchNorm,
    l3: Linear,
    slope: f64,
}

/// Momentum of every BatchNorm layer's running statistics (PyTorch's default):
/// `running ← (1 − m)·running + m·batch statistic` after each train-mode forward.
pub const BN_MOMENTUM: f64 = 0.1;

fn bn(h: usize, vb: VarBuilder) -> candle_core::Result<BatchNorm> {
    candle_nn::batch_norm(h, BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: BN_MOMENTUM }, vb)
}

impl Mlp {
    /// An MLP `d_in → h → h → d_out`.
    pub fn new(d_in: usize, h: usize, d_out: usize, slope: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Mlp { l1: Some(candle_nn::linear(d_in, h, vb.pp("l1"))?), ..Self::tail(h, d_out, slope, vb)? })
    }

    fn tail(h: usize, d_out: usize, slope: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Mlp {
            l1: None,
            bn1: bn(h, vb.pp("bn1"))?,
            l2: candle_nn::linear(h, h, vb.pp("l2"))?,
            bn2: bn(h, vb.pp("bn2"))?,
            l3: candle_nn::linear(h, d_out, vb.pp("l3"))?,
            slope,
        })
    }

    /// Everything after the first linear layer, applied to its output `z`.
    pub fn forward_after_first(&self, z: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let a = candle_nn::ops::leaky_relu(&self.bn1.forward_t(z, train)?, self.slope)?;
        let a = self.l2.forward(&a)?;
        let a = candle_nn::ops::leaky_relu(&self.bn2.forward_t(&a, train)?, self.slope)?;
        self.l3.forward(&a)
    }

    /// The packed parameters of the tail for [`FusedTail`]: `[γ1, β1, W2, b2, γ2, β2, W3, b3]`.
    fn packed(&self) -> candle_core::Result<Tensor> {
        let (g1, b1) = self.bn1.weight_and_bias().expect("affine BatchNorm");
        let (g2, b2) = self.bn2.weight_and_bias().expect("affine BatchNorm");
        let bias = |l: &Linear| l.bias().cloned().expect("linear layers with bias");
        Tensor::cat(
            &[
                g1.clone(),
                b1.clone(),
                self.l2.weight().flatten_all()?,
                bias(&self.l2),
                g2.clone(),
                b2.clone(),
                self.l3.weight().flatten_all()?,
                bias(&self.l3),
            ],
            0,
        )
    }

    fn running(&self) -> candle_core::Result<[(Vec<f64>, Vec<f64>); 2]> {
        let v = |t: &Tensor| t.to_dtype(DType::F64)?.to_vec1::<f64>();
        Ok([
            (v(self.bn1.running_mean())?, v(self.bn1.running_var())?),
            (v(self.bn2.running_mean())?, v(self.bn2.running_var())?),
        ])
    }

    /// Update the running statistics as `candle_nn::BatchNorm::forward_train` does.
    fn update_running(&self, stats: &[BnStats; 2]) -> candle_core::Result<()> {
        for (bn, st) in [(&self.bn1, &stats[0]), (&self.bn2, &stats[1])] {
            let m = bn.momentum();
            let (rm, rv) = (bn.running_mean(), bn.running_var());
            let (dt, dev) = (rm.dtype(), rm.device());
            let mean = Tensor::from_vec(st.mean.clone(), st.mean.len(), dev)?.to_dtype(dt)?;
            let var = Tensor::from_vec(st.var.clone(), st.var.len(), dev)?.to_dtype(dt)?;
            let b = st.count as f64;
            let new_mean = ((rm * (1.0 - m))? + (mean * m)?)?;
            let new_var = ((rv * (1.0 - m))? + (var * (m * b / (b - 1.0)))?)?;
            candle_core::Var::from_tensor(rm)?.set(&new_mean)?;
            candle_core::Var::from_tensor(rv)?.set(&new_var)?;
        }
        Ok(())
    }

    /// The tail (everything after the first linear layer) as one [`FusedTail`] op over `k` rows.
    #[allow(clippy::too_many_arguments)]
    fn fused(
        &self,
        first: &Tensor,
        attr: &Tensor,
        source: Source,
        sink: Sink,
        k: usize,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let h = self.bn1.running_mean().dim(0)?;
        let ho = self.l3.weight().dim(0)?;
        let running = if train { None } else { Some(self.running()?) };
        let op = FusedTail::new(source, sink, k, h, ho, self.slope, self.bn1.eps(), running)?;
        let stats = op.stats_handle();
        let out = first.contiguous()?.apply_op3(&attr.contiguous()?, &self.packed()?, op)?;
        if train {
            let st = stats.lock().unwrap().clone();
            self.update_running(&st.ok_or_else(|| candle_core::Error::Msg("fused: no batch statistics".into()))?)?;
        }
        Ok(out)
    }

    /// The full MLP.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let l1 = self.l1.as_ref().expect("MLP built with its first layer");
        self.forward_after_first(&l1.forward(x)?, train)
    }
}

/// The one-step interaction network.
#[derive(Debug, Clone)]
pub struct InteractionNetwork {
    cfg: GnnConfig,
    r1_to: Linear,
    r1_from: Tensor,
    r1_attr: Tensor,
    r1: Mlp,
    object: Mlp,
    head: Mlp,
}

impl InteractionNetwork {
    /// Build the network's parameters in `vb`.
    pub fn new(cfg: &GnnConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let h = cfg.hidden;
        let (dx, de) = cfg.dims();
        let r = vb.pp("r1");
        let r1_to = candle_nn::linear(dx, h, r.pp("l1_to"))?;
        let init = candle_nn::init::DEFAULT_KAIMING_UNIFORM;
        let r1_from = r.get_with_hints((h, dx), "l1_from.weight", init)?;
        let r1_attr = r.get_with_hints((h, de), "l1_attr.weight", init)?;
        let r1 = Mlp::tail(h, h, cfg.leaky_slope, r)?;
        let object = Mlp::new(dx + h, h, h, cfg.leaky_slope, vb.pp("object"))?;
        let head_in = match cfg.graph {
            GraphKind::Line => h,
            GraphKind::Hit => 3 * h,
        };
        let head = Mlp::new(head_in, h, 1, cfg.leaky_slope, vb.pp("r2"))?;
        Ok(InteractionNetwork { cfg: cfg.clone(), r1_to, r1_from, r1_attr, r1, object, head })
    }

    /// The configuration.
    pub fn config(&self) -> &GnnConfig {
        &self.cfg
    }

    /// Logits: one per line-graph node (= hit-graph edge) or per hit-graph edge. The line-graph
    /// model runs the fused kernels of [`crate::fused`] (the same function as
    /// [`Self::forward_reference`] up to rounding, with the same BatchNorm running-statistics
    /// updates); the hit-graph model and graphs with fewer than two messages or nodes run the
    /// plain candle composition, as does every graph on a device other than the CPU (the fused
    /// kernels are CPU kernels; the composition's scatter-max has a CUDA kernel).
    pub fn forward_t(&self, g: &GraphInput, train: bool) -> candle_core::Result<Tensor> {
        if !g.x.device().is_cpu() {
            return self.forward_reference(g, train);
        }
        match (&g.enc, self.cfg.graph) {
            (Some(enc), GraphKind::Line) if g.num_messages() >= 2 && g.n >= 2 => self.forward_fused(g, enc, train),
            (_, GraphKind::Hit) if g.num_messages() >= 2 && g.n >= 2 => self.forward_fused_hit(g, train),
            _ => self.forward_reference(g, train),
        }
    }

    fn forward_fused(&self, g: &GraphInput, enc: &EncInput, train: bool) -> candle_core::Result<Tensor> {
        let x_to = self.r1_to.forward(&g.x)?;
        let x_from = g.x.matmul(&self.r1_from.t()?)?;
        let nodes = Tensor::cat(&[&x_to, &x_from], 1)?; // [N, 2h]
        let table = enc.grid.matmul(&self.r1_attr.t()?)?; // [2G, h]: [enc·Wᵀ; h·enc'·Wᵀ]
        let k = g.num_messages();
        let source = Source::Gather {
            to: g.to_index.clone(),
            from: g.from_index.clone(),
            attr: Attr::Hermite { index: g.attr_rows.clone(), u: enc.u.clone(), h: enc.h, g: enc.g },
        };
        let agg =
            self.r1.fused(&nodes, &table, source, Sink::ScatterMax { to: g.to_index.clone(), n: g.n }, k, train)?;
        let dummy = Tensor::zeros(1, g.x.dtype(), g.x.device())?;
        let l1 = self.object.l1.as_ref().expect("MLP built with its first layer");
        let z = l1.forward(&Tensor::cat(&[&g.x, &agg], 1)?)?;
        let xo = self.object.fused(&z, &dummy, Source::Rows, Sink::Rows, g.n, train)?;
        let l1 = self.head.l1.as_ref().expect("MLP built with its first layer");
        let z = l1.forward(&xo)?;
        self.head.fused(&z, &dummy, Source::Rows, Sink::Rows, g.n, train)?.squeeze(1)
    }

    /// The hit-graph model on the fused kernels: the message MLP over the edges (its output is
    /// also the edge scorer's input), candle's scatter-max, the object MLP and the edge scorer.
    fn forward_fused_hit(&self, g: &GraphInput, train: bool) -> candle_core::Result<Tensor> {
        let x_to = self.r1_to.forward(&g.x)?;
        let x_from = g.x.matmul(&self.r1_from.t()?)?;
        let nodes = Tensor::cat(&[&x_to, &x_from], 1)?; // [N, 2h]
        let table = g.attr.matmul(&self.r1_attr.t()?)?; // [A, h]
        let k = g.num_messages();
        let source = Source::Gather {
            to: g.to_index.clone(),
            from: g.from_index.clone(),
            attr: Attr::Rows(g.attr_rows.clone()),
        };
        let m = self.r1.fused(&nodes, &table, source, Sink::Rows, k, train)?; // [K, h]
        let agg = scatter_max(&m, &g.to_index, g.n)?;
        let dummy = Tensor::zeros(1, g.x.dtype(), g.x.device())?;
        let l1 = self.object.l1.as_ref().expect("MLP built with its first layer");
        let z = l1.forward(&Tensor::cat(&[&g.x, &agg], 1)?)?;
        let xo = self.object.fused(&z, &dummy, Source::Rows, Sink::Rows, g.n, train)?;
        let cat = Tensor::cat(&[&xo.index_select(&g.to, 0)?, &xo.index_select(&g.from, 0)?, &m], 1)?;
        let l1 = self.head.l1.as_ref().expect("MLP built with its first layer");
        let z = l1.forward(&cat)?;
        self.head.fused(&z, &dummy, Source::Rows, Sink::Rows, k, train)?.squeeze(1)
    }

    /// The plain candle composition (kept for tests and as the reference of the fused paths).
    pub fn forward_reference(&self, g: &GraphInput, train: bool) -> candle_core::Result<Tensor> {
        let x_to = self.r1_to.forward(&g.x)?; // [N, h] incl. bias
        let x_from = g.x.matmul(&self.r1_from.t()?)?;
        let e = g.attr.matmul(&self.r1_attr.t()?)?;
        let z =
            ((x_to.index_select(&g.to, 0)? + x_from.index_select(&g.from, 0)?)? + e.index_select(&g.attr_index, 0)?)?;
        let m = self.r1.forward_after_first(&z, train)?;
        let agg = scatter_max(&m, &g.to_index, g.n)?;
        let xo = self.object.forward_t(&Tensor::cat(&[&g.x, &agg], 1)?, train)?;
        let logits = match self.cfg.graph {
            GraphKind::Line => self.head.forward_t(&xo, train)?,
            GraphKind::Hit => {
                let cat = Tensor::cat(&[&xo.index_select(&g.to, 0)?, &xo.index_select(&g.from, 0)?, &m], 1)?;
                self.head.forward_t(&cat, train)?
            }
        };
        logits.squeeze(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;
    use gradlab_core::params::Init;
    use rand::Rng;

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn scatter_max_forward_and_fd_gradient() {
        let dev = Device::Cpu;
        let mut rng = gradlab_core::rng::rng(3);
        let (e, h, n) = (40, 5, 9);
        // Node 8 receives nothing (output 0, no gradient).
        let index: Vec<u32> = (0..e).map(|_| rng.random_range(0..8)).collect();
        let vals: Vec<f64> = (0..e * h).map(|_| rng.random_range(-1.0..1.0)).collect();
        let idx = Arc::new(index.clone());
        let w: Vec<f64> = (0..n * h).map(|_| rng.random_range(-1.0..1.0)).collect();
        let wt = Tensor::from_vec(w.clone(), (n, h), &dev).unwrap();
        let loss = |v: &[f64]| -> f64 {
            let t = Tensor::from_vec(v.to_vec(), (e, h), &dev).unwrap();
            scatter_max(&t, &idx, n).unwrap().mul(&wt).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        // Forward vs a direct computation.
        let t = Tensor::from_vec(vals.clone(), (e, h), &dev).unwrap();
        let out = scatter_max(&t, &idx, n).unwrap().to_vec2::<f64>().unwrap();
        for i in 0..n {
            for c in 0..h {
                let direct = (0..e)
                    .filter(|&k| index[k] as usize == i)
                    .map(|k| vals[k * h + c])
                    .fold(f64::NEG_INFINITY, f64::max);
                let expect = if direct.is_finite() { direct } else { 0.0 };
                assert_eq!(out[i][c], expect);
            }
        }
        // Backward vs central differences.
        let var = candle_core::Var::from_tensor(&t).unwrap();
        let l = scatter_max(var.as_tensor(), &idx, n).unwrap().mul(&wt).unwrap().sum_all().unwrap();
        let g = l.backward().unwrap().get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let eps = 1e-6;
        for k in 0..e * h {
            let mut p = vals.clone();
            p[k] += eps;
            let mut m = vals.clone();
            m[k] -= eps;
            let fd = (loss(&p) - loss(&m)) / (2.0 * eps);
            assert!((fd - g[k]).abs() < 1e-6, "entry {k}: fd {fd} vs {}", g[k]);
        }
        assert!(g.iter().filter(|&&x| x != 0.0).count() > 0);
        assert!(ScatterMax::new(Arc::new(vec![9]), 9).is_err());
    }

    #[test]
    fn rows_by_target_is_a_stable_grouping() {
        let index = [3u32, 0, 3, 1, 0, 3];
        let (offsets, order) = rows_by_target(&index, 5);
        assert_eq!(offsets, vec![0, 2, 3, 3, 6, 6]);
        assert_eq!(order, vec![1, 4, 3, 0, 2, 5]);
        for i in 0..5 {
            let want: Vec<u32> = (0..index.len() as u32).filter(|&k| index[k as usize] == i as u32).collect();
            assert_eq!(&order[offsets[i] as usize..offsets[i + 1] as usize], want.as_slice());
        }
        assert_eq!(rows_by_target(&[], 2), (vec![0, 0, 0], vec![]));
    }

    /// The CUDA kernel against the CPU op (forward bit for bit, including ties, empty outputs and
    /// NaN; gradient through the shared backward). Needs the `cuda` feature and a GPU; without a
    /// GPU it says so and passes (`scripts/gpu/check.sh` runs it where one is lent).
    #[cfg(feature = "cuda")]
    #[test]
    fn scatter_max_on_cuda_equals_the_cpu_op() {
        // NVRTC compiles the kernels without a GPU: checked wherever the feature is built.
        let ptx = super::cuda::ptx().unwrap();
        assert!(ptx.contains(".entry gradlab_scatter_max_f32") && ptx.contains(".entry gradlab_scatter_max_f64"));
        // `cuda_is_available()` only says the feature is compiled in; a device shows on opening.
        let gpu = match Device::new_cuda(0) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("no CUDA device ({e}): scatter_max_on_cuda_equals_the_cpu_op not run");
                return;
            }
        };
        let mut rng = gradlab_core::rng::rng(11);
        for &(e, h, n) in &[(1usize, 1usize, 1usize), (40, 5, 9), (5000, 16, 700), (3, 7, 10)] {
            let index: Vec<u32> = (0..e).map(|_| rng.random_range(0..n.saturating_sub(1).max(1) as u32)).collect();
            let mut vals: Vec<f32> = (0..e * h).map(|_| (rng.random_range(-4i32..4)) as f32 * 0.5).collect();
            if e > 3 {
                vals[2] = f32::NAN;
            }
            let idx = Arc::new(index);
            let cpu_t = Tensor::from_vec(vals.clone(), (e, h), &Device::Cpu).unwrap();
            let want = scatter_max(&cpu_t, &idx, n).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = scatter_max(&cpu_t.to_device(&gpu).unwrap(), &idx, n)
                .unwrap()
                .to_device(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(want.len(), got.len());
            for (k, (a, b)) in want.iter().zip(&got).enumerate() {
                assert!(a.to_bits() == b.to_bits(), "({e}, {h}, {n}) output {k}: cpu {a} gpu {b}");
            }
            let t64 = cpu_t.to_dtype(DType::F64).unwrap();
            let w64 = scatter_max(&t64, &idx, n).unwrap().to_vec2::<f64>().unwrap();
            let g64 = scatter_max(&t64.to_device(&gpu).unwrap(), &idx, n).unwrap().to_vec2::<f64>().unwrap();
            for (a, b) in w64.iter().flatten().zip(g64.iter().flatten()) {
                assert!(a.to_bits() == b.to_bits());
            }
            // Gradients: the same backward, fed by the GPU forward.
            let var = candle_core::Var::from_tensor(&t64.to_device(&gpu).unwrap()).unwrap();
            let l = scatter_max(var.as_tensor(), &idx, n).unwrap().sqr().unwrap().sum_all().unwrap();
            let g_gpu = l.backward().unwrap().get(var.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
            let var = candle_core::Var::from_tensor(&t64).unwrap();
            let l = scatter_max(var.as_tensor(), &idx, n).unwrap().sqr().unwrap().sum_all().unwrap();
            let g_cpu = l.backward().unwrap().get(var.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
            for (a, b) in g_cpu.iter().flatten().zip(g_gpu.iter().flatten()) {
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            }
        }
    }

    fn tiny_graph() -> (HitGraph, LineGraph) {
        use crate::sim::{Frame, Hit};
        let mut hits = Vec::new();
        for t in 0..3u32 {
            for l in 0..6u16 {
                let z = if l < 2 { l as f32 * 57.8 } else { 110.0 + (l - 2) as f32 * 5.5 };
                hits.push(Hit {
                    layer: l,
                    x: t as f32 * 3.0 + 0.05 * l as f32,
                    y: 0.3 * t as f32,
                    z,
                    edep: 0.02,
                    cluster: 4,
                    track: t,
                    primary: true,
                });
            }
        }
        let f = Frame { hits, spot: [0.0, 0.0], primaries: 3 };
        let g = HitGraph::build(&f, &crate::graph::GraphConfig::default()).unwrap();
        let lg = LineGraph::build(&g);
        (g, lg)
    }

    #[test]
    fn networks_have_paper_sizes_and_full_gradients() {
        let dev = Device::Cpu;
        let (g, lg) = tiny_graph();
        for cfg in [GnnConfig::default(), GnnConfig::hit_graph()] {
            let vm = VarMap::new();
            let net = InteractionNetwork::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
            gradlab_core::params::init(&vm, 1, Init::TorchWeightsZeroBias).unwrap();
            let trainable: usize = gradlab_core::params::sorted_vars(&vm)
                .iter()
                .filter(|(n, _)| !n.contains("running"))
                .map(|(_, v)| v.elem_count())
                .sum();
            let inp = match cfg.graph {
                GraphKind::Line => GraphInput::line(&lg, &cfg, &dev).unwrap(),
                GraphKind::Hit => GraphInput::hit(&g, &dev).unwrap(),
            };
            let out = net.forward_t(&inp, true).unwrap();
            assert_eq!(out.dims(), &[g.num_edges()]);
            // Paper: ≈ 5k parameters on the line graph, ≈ 40k on the hit graph.
            match cfg.graph {
                GraphKind::Line => assert!((4000..6500).contains(&trainable), "{trainable}"),
                GraphKind::Hit => assert!((35_000..45_000).contains(&trainable), "{trainable}"),
            }
            let grads = out.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in gradlab_core::params::sorted_vars(&vm) {
                if name.contains("running") {
                    continue;
                }
                let gv = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
                let s = gv.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(s > 0.0 && s.is_finite(), "{name}: {s}");
            }
            // Eval mode is deterministic and differs from train mode only through BN statistics.
            let a = net.forward_t(&inp, false).unwrap().to_vec1::<f32>().unwrap();
            let b = net.forward_t(&inp, false).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn split_first_layer_equals_concatenation() {
        // The decomposed first layer of R1 equals a linear layer on [x_to, x_from, e].
        let dev = Device::Cpu;
        let (_, lg) = tiny_graph();
        let cfg = GnnConfig { angle_encoding_dim: 8, ..Default::default() };
        let vm = VarMap::new();
        let net = InteractionNetwork::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        gradlab_core::params::init(&vm, 2, Init::TorchWeightsZeroBias).unwrap();
        let inp = GraphInput::line(&lg, &cfg, &dev).unwrap();
        let z = ((net.r1_to.forward(&inp.x).unwrap().index_select(&inp.to, 0).unwrap()
            + inp.x.matmul(&net.r1_from.t().unwrap()).unwrap().index_select(&inp.from, 0).unwrap())
        .unwrap()
            + inp.attr.matmul(&net.r1_attr.t().unwrap()).unwrap().index_select(&inp.attr_index, 0).unwrap())
        .unwrap();
        let cat = Tensor::cat(
            &[
                &inp.x.index_select(&inp.to, 0).unwrap(),
                &inp.x.index_select(&inp.from, 0).unwrap(),
                &inp.attr.index_select(&inp.attr_index, 0).unwrap(),
            ],
            1,
        )
        .unwrap();
        let w = Tensor::cat(&[net.r1_to.weight(), &net.r1_from, &net.r1_attr], 1).unwrap();
        let direct = cat.matmul(&w.t().unwrap()).unwrap().broadcast_add(net.r1_to.bias().unwrap()).unwrap();
        let d = (z - direct).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
        assert!(GnnConfig { hidden: 0, ..Default::default() }.validate().is_err());
        // An encoding whose grid would not fit is refused by field before anything is built.
        for bad in [
            GnnConfig { angle_scale: 1e6, ..Default::default() },
            GnnConfig { encoding_base: 1e-9, ..Default::default() },
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains("model.angle_scale / model.encoding_base") && e.contains("at most"), "{e}");
        }
        GnnConfig { angle_scale: 8.0, ..Default::default() }.validate().unwrap();
        assert!(GnnConfig { angle_encoding_dim: 3, ..Default::default() }.validate().is_err());
    }
}
