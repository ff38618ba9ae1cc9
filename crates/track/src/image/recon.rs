//! Iterative reconstruction of a 2-D relative-stopping-power slice from line integrals (SART).
//!
//! Each proton contributes one row of a sparse system matrix: the lengths of its path through
//! the pixels of an [`ImageGrid`] (exact, Siddon / Jacobs traversal for straight pieces; a path
//! is a polyline so that most-likely paths can be used later), and one measured value, its
//! water-equivalent path length (WEPL, mm). The relative stopping power (RSP) image `x` solves
//! `A x ≈ b` and is found with ordered-subsets SART ([`sart`], Andersen & Kak 1984).
//!
//! Coordinates are `(x, z)` in mm. Pixel `(i, k)` covers `x ∈ [x0 + i·p, x0 + (i+1)·p)` and
//! `z ∈ [z0 + k·p, z0 + (k+1)·p)`; images are stored row-major as `k * nx + i`.
//!
//! [`disc_chord`] and [`parallel_beam_paths`] build analytic projections of disc phantoms, for
//! tests and for checking a reconstruction without the inverse crime.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Pieces of a path shorter than this fraction of a pixel are dropped (floating-point slivers
/// where a path crosses a pixel corner).
const SLIVER: f64 = 1e-9;

/// A square-pixel image grid in the `(x, z)` plane.
///
/// Pixel `(i, k)` covers `x ∈ [x0 + i·p, x0 + (i+1)·p)` and `z ∈ [z0 + k·p, z0 + (k+1)·p)`,
/// with `p = pixel_mm`; an image is a slice of `nx * nz` values stored as `k * nx + i`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageGrid {
    /// Number of pixels along x.
    pub nx: usize,
    /// Number of pixels along z.
    pub nz: usize,
    /// Lower x edge of the grid [mm].
    pub x0_mm: f64,
    /// Lower z edge of the grid [mm].
    pub z0_mm: f64,
    /// Pixel side [mm].
    pub pixel_mm: f64,
}

impl ImageGrid {
    /// An `n × n` grid covering `[-fov/2, fov/2]²`.
    pub fn centred(n: usize, fov_mm: f64) -> Result<Self> {
        if n == 0 {
            return Err(Error::invalid("grid.n", n, "at least 1 pixel per side"));
        }
        if !(fov_mm.is_finite() && fov_mm > 0.0) {
            return Err(Error::invalid("grid.fov_mm", fov_mm, "a finite field of view > 0 mm"));
        }
        let grid = ImageGrid { nx: n, nz: n, x0_mm: -fov_mm / 2.0, z0_mm: -fov_mm / 2.0, pixel_mm: fov_mm / n as f64 };
        grid.validate()?;
        Ok(grid)
    }

    /// Checks the grid: at least one pixel each way, at most `u32::MAX` pixels in all (pixel
    /// indices are stored as `u32`), finite edges and a finite pixel side > 0.
    pub fn validate(&self) -> Result<()> {
        if self.nx == 0 {
            return Err(Error::invalid("grid.nx", self.nx, "at least 1"));
        }
        if self.nz == 0 {
            return Err(Error::invalid("grid.nz", self.nz, "at least 1"));
        }
        match self.nx.checked_mul(self.nz) {
            Some(n) if n <= u32::MAX as usize => {}
            _ => {
                return Err(Error::invalid(
                    "grid.nx * grid.nz",
                    format!("{} × {}", self.nx, self.nz),
                    format!("at most {} pixels", u32::MAX),
                ));
            }
        }
        if !(self.pixel_mm.is_finite() && self.pixel_mm > 0.0) {
            return Err(Error::invalid("grid.pixel_mm", self.pixel_mm, "a finite pixel side > 0 mm"));
        }
        if !self.x0_mm.is_finite() || !self.x_max_mm().is_finite() {
            return Err(Error::invalid("grid.x0_mm", self.x0_mm, "finite, with a finite upper edge x0 + nx·pixel"));
        }
        if !self.z0_mm.is_finite() || !self.z_max_mm().is_finite() {
            return Err(Error::invalid("grid.z0_mm", self.z0_mm, "finite, with a finite upper edge z0 + nz·pixel"));
        }
        Ok(())
    }

    /// Number of pixels, `nx * nz`.
    pub fn pixels(&self) -> usize {
        self.nx * self.nz
    }

    /// Upper x edge of the grid [mm] (exclusive).
    pub fn x_max_mm(&self) -> f64 {
        self.x0_mm + self.nx as f64 * self.pixel_mm
    }

    /// Upper z edge of the grid [mm] (exclusive).
    pub fn z_max_mm(&self) -> f64 {
        self.z0_mm + self.nz as f64 * self.pixel_mm
    }

    /// Index of pixel `(i, k)` in an image, `k * nx + i`.
    pub fn index(&self, i: usize, k: usize) -> usize {
        k * self.nx + i
    }

    /// Centre `(x, z)` of pixel `(i, k)` [mm].
    pub fn centre(&self, i: usize, k: usize) -> [f64; 2] {
        [self.x0_mm + (i as f64 + 0.5) * self.pixel_mm, self.z0_mm + (k as f64 + 0.5) * self.pixel_mm]
    }

    /// The pixel `(i, k)` holding the point `(x, z)`, or `None` outside the grid.
    pub fn pixel_of(&self, p: [f64; 2]) -> Option<(usize, usize)> {
        let fx = ((p[0] - self.x0_mm) / self.pixel_mm).floor();
        let fz = ((p[1] - self.z0_mm) / self.pixel_mm).floor();
        if fx >= 0.0 && fz >= 0.0 && fx < self.nx as f64 && fz < self.nz as f64 {
            Some((fx as usize, fz as usize))
        } else {
            None
        }
    }
}

/// Narrows `[t0, t1]` to the parameters where `a + t·d` lies in `[lo, hi)` along one axis;
/// `false` when nothing is left.
fn clip_axis(a: f64, d: f64, lo: f64, hi: f64, t0: &mut f64, t1: &mut f64) -> bool {
    if d == 0.0 {
        return a >= lo && a < hi;
    }
    let (ta, tb) = ((lo - a) / d, (hi - a) / d);
    *t0 = t0.max(ta.min(tb));
    *t1 = t1.min(ta.max(tb));
    *t0 < *t1
}

/// The pixel lines crossed along one axis, in increasing `t`.
struct Planes {
    /// Index of the next grid line (`x0 + index·p`).
    index: i64,
    /// +1 or -1.
    step: i64,
    /// `t` of the next line (∞ when the segment is parallel to the lines).
    t: f64,
    origin: f64,
    start: f64,
    delta: f64,
    pixel: f64,
}

impl Planes {
    fn new(start: f64, delta: f64, origin: f64, pixel: f64, entry: f64) -> Self {
        let mut planes = Planes { index: 0, step: 0, t: f64::INFINITY, origin, start, delta, pixel };
        if delta != 0.0 {
            let u = (entry - origin) / pixel;
            (planes.index, planes.step) =
                if delta > 0.0 { (u.floor() as i64 + 1, 1) } else { (u.ceil() as i64 - 1, -1) };
            planes.t = planes.t_of(planes.index);
        }
        planes
    }

    fn t_of(&self, index: i64) -> f64 {
        (self.origin + index as f64 * self.pixel - self.start) / self.delta
    }

    fn advance(&mut self) {
        self.index += self.step;
        self.t = self.t_of(self.index);
    }
}

/// Appends to `out` the exact intersection lengths [mm] of the segment `a → b` (points `(x, z)`
/// in mm) with the pixels of `grid`, as `(pixel index, length)` in the order the segment
/// crosses them (Siddon 1985, with the incremental traversal of Jacobs et al. 1998).
///
/// Parts of the segment outside the grid are ignored; an invalid grid, a non-finite point or
/// a zero-length segment appends nothing. A segment running exactly along a pixel edge is
/// counted in the pixel above the edge (pixels are half-open). Slivers shorter than 1e-9 of a
/// pixel (where a segment passes through a pixel corner) are dropped.
pub fn segment_weights(grid: &ImageGrid, a: [f64; 2], b: [f64; 2], out: &mut Vec<(u32, f32)>) {
    if grid.validate().is_err() || !a.iter().chain(&b).all(|v| v.is_finite()) {
        return;
    }
    let d = [b[0] - a[0], b[1] - a[1]];
    let length = d[0].hypot(d[1]);
    if !(length > 0.0 && length.is_finite()) {
        return;
    }
    let p = grid.pixel_mm;
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    if !clip_axis(a[0], d[0], grid.x0_mm, grid.x_max_mm(), &mut t0, &mut t1)
        || !clip_axis(a[1], d[1], grid.z0_mm, grid.z_max_mm(), &mut t0, &mut t1)
    {
        return;
    }
    let mut xs = Planes::new(a[0], d[0], grid.x0_mm, p, a[0] + t0 * d[0]);
    let mut zs = Planes::new(a[1], d[1], grid.z0_mm, p, a[1] + t0 * d[1]);
    let first = out.len();
    let (nx, nz) = (grid.nx as f64, grid.nz as f64);
    let mut t = t0;
    // Each step passes one grid line; the bound only guards against floating-point surprises.
    for _ in 0..grid.nx + grid.nz + 4 {
        let next = xs.t.min(zs.t).min(t1);
        let piece = (next - t) * length;
        if piece > SLIVER * p {
            let tm = 0.5 * (t + next);
            let i = ((a[0] + tm * d[0] - grid.x0_mm) / p).floor().clamp(0.0, nx - 1.0) as usize;
            let k = ((a[1] + tm * d[1] - grid.z0_mm) / p).floor().clamp(0.0, nz - 1.0) as usize;
            let index = (k * grid.nx + i) as u32;
            let len = out.len();
            if len > first && out[len - 1].0 == index {
                out[len - 1].1 += piece as f32;
            } else {
                out.push((index, piece as f32));
            }
        }
        if next >= t1 {
            break;
        }
        if xs.t <= next {
            xs.advance();
        }
        if zs.t <= next {
            zs.advance();
        }
        t = t.max(next);
    }
}

/// Appends to `out` the intersection lengths of the polyline `points` with the pixels of `grid`:
/// the sum of its segments' [`segment_weights`], one entry per pixel (repeated pixels merged),
/// sorted by pixel index. Fewer than two points append nothing.
pub fn path_weights(grid: &ImageGrid, points: &[[f64; 2]], out: &mut Vec<(u32, f32)>) {
    let first = out.len();
    for w in points.windows(2) {
        segment_weights(grid, w[0], w[1], out);
    }
    out[first..].sort_unstable_by_key(|e| e.0);
    let mut write = first;
    for read in first..out.len() {
        if write > first && out[write - 1].0 == out[read].0 {
            out[write - 1].1 += out[read].1;
        } else {
            out[write] = out[read];
            write += 1;
        }
    }
    out.truncate(write);
}

/// The sparse system matrix of a set of proton paths: one row per proton, one column per pixel,
/// entry `a_ij` = length [mm] of path `i` inside pixel `j`. Compressed sparse rows, columns
/// sorted within a row.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemMatrix {
    grid: ImageGrid,
    row_ptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f32>,
}

/// Rows per parallel work item when building or applying a [`SystemMatrix`].
const ROW_CHUNK: usize = 512;

impl SystemMatrix {
    /// Builds the matrix of `paths` (polylines of `(x, z)` points in mm, see [`path_weights`]) on
    /// `grid`, in parallel. Errors on an invalid grid, a non-finite point (naming
    /// `paths[i][j]`) or more than `u32::MAX` paths.
    pub fn from_paths<P: AsRef<[[f64; 2]]> + Sync>(grid: &ImageGrid, paths: &[P]) -> Result<Self> {
        grid.validate()?;
        if paths.len() > u32::MAX as usize {
            return Err(Error::invalid("paths.len()", paths.len(), format!("at most {} paths", u32::MAX)));
        }
        // Per chunk of rows: (row lengths, (column, weight) entries).
        type Chunk = (Vec<usize>, Vec<(u32, f32)>);
        let chunks: Vec<Chunk> = paths
            .par_chunks(ROW_CHUNK)
            .enumerate()
            .map(|(c, chunk)| {
                let mut lens = Vec::with_capacity(chunk.len());
                let mut entries = Vec::new();
                for (r, path) in chunk.iter().enumerate() {
                    let points = path.as_ref();
                    if let Some(j) = points.iter().position(|q| !(q[0].is_finite() && q[1].is_finite())) {
                        let q = points[j];
                        return Err(Error::invalid(
                            format!("paths[{}][{j}]", c * ROW_CHUNK + r),
                            format!("({}, {})", q[0], q[1]),
                            "finite (x, z) coordinates in mm",
                        ));
                    }
                    let before = entries.len();
                    path_weights(grid, points, &mut entries);
                    lens.push(entries.len() - before);
                }
                Ok((lens, entries))
            })
            .collect::<Result<_>>()?;
        let nnz = chunks.iter().map(|(_, e)| e.len()).sum();
        let mut row_ptr = Vec::with_capacity(paths.len() + 1);
        row_ptr.push(0);
        let (mut col, mut val) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
        for (lens, entries) in chunks {
            for n in lens {
                row_ptr.push(row_ptr.last().copied().unwrap_or(0) + n);
            }
            for (j, v) in entries {
                col.push(j);
                val.push(v);
            }
        }
        Ok(SystemMatrix { grid: *grid, row_ptr, col, val })
    }

    /// The image grid of the columns.
    pub fn grid(&self) -> &ImageGrid {
        &self.grid
    }

    /// Number of rows (paths).
    pub fn rows(&self) -> usize {
        self.row_ptr.len() - 1
    }

    /// Number of columns (pixels of the grid).
    pub fn cols(&self) -> usize {
        self.grid.pixels()
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.val.len()
    }

    /// Row `i`: its pixel indices (sorted) and lengths [mm].
    ///
    /// # Panics
    /// If `i >= self.rows()`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.row_ptr[i]..self.row_ptr[i + 1];
        (&self.col[r.clone()], &self.val[r])
    }

    /// Total length of row `i` inside the grid, `Σ_j a_ij` [mm].
    pub fn row_length(&self, i: usize) -> f64 {
        self.row(i).1.iter().map(|&v| v as f64).sum()
    }

    fn row_dot(&self, i: usize, image: &[f64]) -> f64 {
        let (cols, vals) = self.row(i);
        cols.iter().zip(vals).map(|(&j, &v)| v as f64 * image[j as usize]).sum()
    }

    /// Forward projection `A x`: the line integral of `image` along every path.
    ///
    /// # Panics
    /// If `image.len() != self.cols()`.
    pub fn forward(&self, image: &[f64]) -> Vec<f64> {
        assert_eq!(image.len(), self.cols(), "SystemMatrix::forward: image length must equal the number of pixels");
        (0..self.rows()).into_par_iter().with_min_len(ROW_CHUNK).map(|i| self.row_dot(i, image)).collect()
    }

    /// Back projection `Aᵀ r`: every path smears its value of `residual` over the pixels it
    /// crosses, weighted by the lengths. Serial, so that the sums are reproducible.
    ///
    /// # Panics
    /// If `residual.len() != self.rows()`.
    pub fn back(&self, residual: &[f64]) -> Vec<f64> {
        assert_eq!(residual.len(), self.rows(), "SystemMatrix::back: residual length must equal the number of rows");
        let mut image = vec![0.0; self.cols()];
        for (i, &r) in residual.iter().enumerate() {
            let (cols, vals) = self.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                image[j as usize] += v as f64 * r;
            }
        }
        image
    }
}

/// Settings of ordered-subsets SART ([`sart`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SartConfig {
    /// Passes over all rows (≥ 1).
    pub iterations: usize,
    /// Number of ordered subsets; row `i` belongs to subset `i mod subsets` (1 ≤ it ≤ rows;
    /// 1 is plain SART).
    pub subsets: usize,
    /// Relaxation λ of every update, 0 < λ ≤ 2.
    pub relaxation: f64,
    /// Clamp the image at 0 after every subset update (RSP is never negative).
    pub non_negative: bool,
}

impl Default for SartConfig {
    /// 10 iterations of 10 subsets with λ = 0.5, non-negative.
    fn default() -> Self {
        SartConfig { iterations: 10, subsets: 10, relaxation: 0.5, non_negative: true }
    }
}

impl SartConfig {
    /// Checks the settings on their own: iterations ≥ 1, subsets ≥ 1, 0 < relaxation ≤ 2.
    /// [`sart`] also checks subsets ≤ rows.
    pub fn validate(&self) -> Result<()> {
        if self.iterations == 0 {
            return Err(Error::invalid("sart.iterations", self.iterations, "at least 1"));
        }
        if self.subsets == 0 {
            return Err(Error::invalid("sart.subsets", self.subsets, "at least 1 (1 = plain SART)"));
        }
        if !(self.relaxation > 0.0 && self.relaxation <= 2.0) {
            return Err(Error::invalid("sart.relaxation", self.relaxation, "0 < relaxation ≤ 2"));
        }
        Ok(())
    }
}

/// Ordered-subsets SART (Andersen & Kak 1984): reconstructs the image `x` with `A x ≈ values`.
///
/// Rows are split into `cfg.subsets` interleaved subsets (row `i` in subset `i mod subsets`),
/// visited in order, `cfg.iterations` times; for a subset `S` every pixel `j` it touches is updated
///
/// `x_j ← x_j + λ · (1 / Σ_{i∈S} a_ij) · Σ_{i∈S} a_ij (b_i − a_i·x) / (Σ_k a_ik)`,
///
/// then clamped at 0 when `cfg.non_negative`. Rows of zero length (paths missing the grid) are
/// skipped; pixels no row touches keep their initial value. `init` is the starting image
/// (zeros when `None`). The result does not depend on the number of threads.
///
/// Errors: invalid `cfg`, `cfg.subsets` > rows, `values.len()` ≠ rows, a non-finite value (the
/// error names the row, `values[i]`), `init` of the wrong length or not finite.
pub fn sart(a: &SystemMatrix, values: &[f64], cfg: &SartConfig, init: Option<&[f64]>) -> Result<Vec<f64>> {
    cfg.validate()?;
    let rows = a.rows();
    if values.len() != rows {
        return Err(Error::invalid("values.len()", values.len(), format!("{rows} (one value per system-matrix row)")));
    }
    if cfg.subsets > rows {
        return Err(Error::invalid("sart.subsets", cfg.subsets, format!("at most the number of rows, {rows}")));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("values[{i}]"), values[i], "a finite line integral (WEPL, mm)"));
    }
    let cols = a.cols();
    let mut x = match init {
        None => vec![0.0; cols],
        Some(init) => {
            if init.len() != cols {
                return Err(Error::invalid("init.len()", init.len(), format!("{cols} (one value per pixel)")));
            }
            if let Some(j) = init.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid(format!("init[{j}]"), init[j], "a finite starting value"));
            }
            init.to_vec()
        }
    };
    if cfg.non_negative {
        x.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    let row_len: Vec<f64> = (0..rows).into_par_iter().with_min_len(ROW_CHUNK).map(|i| a.row_length(i)).collect();
    let t = SubsetTranspose::new(a, &row_len, cfg.subsets);
    let s_n = cfg.subsets;
    let mut r = vec![0.0; rows.div_ceil(s_n)];
    for _ in 0..cfg.iterations {
        for s in 0..s_n {
            // Normalised residuals of the subset's rows, indexed by m = i / subsets.
            let count = (rows - s).div_ceil(s_n);
            let xr = &x;
            r[..count].par_iter_mut().with_min_len(ROW_CHUNK).enumerate().for_each(|(m, rm)| {
                let i = s + m * s_n;
                *rm = if row_len[i] > 0.0 { (values[i] - a.row_dot(i, xr)) / row_len[i] } else { 0.0 };
            });
            let r = &r;
            x.par_iter_mut().with_min_len(256).enumerate().for_each(|(j, xj)| {
                let range = t.ptr[j * s_n + s]..t.ptr[j * s_n + s + 1];
                if range.is_empty() {
                    return;
                }
                let (mut num, mut den) = (0.0, 0.0);
                for (&m, &v) in t.row[range.clone()].iter().zip(&t.val[range]) {
                    num += v as f64 * r[m as usize];
                    den += v as f64;
                }
                if den > 0.0 {
                    *xj += cfg.relaxation * num / den;
                    if cfg.non_negative && *xj < 0.0 {
                        *xj = 0.0;
                    }
                }
            });
        }
    }
    Ok(x)
}

/// The system matrix transposed and grouped by subset: the entries of column `j` in subset `s`
/// are `ptr[j·S + s] .. ptr[j·S + s + 1]`, each with the row's position `m = i / S` in its
/// subset. Lets every pixel sum its own back projection (parallel over pixels, reproducible).
struct SubsetTranspose {
    ptr: Vec<usize>,
    row: Vec<u32>,
    val: Vec<f32>,
}

impl SubsetTranspose {
    fn new(a: &SystemMatrix, row_len: &[f64], subsets: usize) -> Self {
        let mut ptr = vec![0usize; a.cols() * subsets + 1];
        let active = || (0..a.rows()).filter(|&i| row_len[i] > 0.0);
        for i in active() {
            for &j in a.row(i).0 {
                ptr[j as usize * subsets + i % subsets + 1] += 1;
            }
        }
        for b in 1..ptr.len() {
            ptr[b] += ptr[b - 1];
        }
        let nnz = ptr[ptr.len() - 1];
        let (mut row, mut val) = (vec![0u32; nnz], vec![0f32; nnz]);
        let mut fill = ptr.clone();
        for i in active() {
            let (cols, vals) = a.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                let slot = &mut fill[j as usize * subsets + i % subsets];
                row[*slot] = (i / subsets) as u32;
                val[*slot] = v;
                *slot += 1;
            }
        }
        SubsetTranspose { ptr, row, val }
    }
}

/// Exact length [mm] of the part of the segment `a → b` inside the closed disc of `radius` about
/// `center` (all in mm). 0 for a degenerate segment, a radius ≤ 0 or non-finite input.
pub fn disc_chord(center: [f64; 2], radius: f64, a: [f64; 2], b: [f64; 2]) -> f64 {
    let d = [b[0] - a[0], b[1] - a[1]];
    let f = [a[0] - center[0], a[1] - center[1]];
    let dd = d[0] * d[0] + d[1] * d[1];
    if !(dd > 0.0 && dd.is_finite() && radius > 0.0 && radius.is_finite()) {
        return 0.0;
    }
    // |f + t d|² = r²  ⇔  dd t² + 2 h t + c = 0.
    let h = f[0] * d[0] + f[1] * d[1];
    let c = f[0] * f[0] + f[1] * f[1] - radius * radius;
    let disc = h * h - dd * c;
    // Also catches a NaN discriminant.
    if disc.is_nan() || disc <= 0.0 {
        return 0.0;
    }
    let root = disc.sqrt();
    let (t_in, t_out) = ((-h - root) / dd, (-h + root) / dd);
    (t_out.min(1.0) - t_in.max(0.0)).max(0.0) * dd.sqrt()
}

/// One straight line of a parallel-beam geometry ([`parallel_beam_paths`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParallelRay {
    /// Start `(x, z)` [mm].
    pub a: [f64; 2],
    /// End `(x, z)` [mm].
    pub b: [f64; 2],
    /// Projection angle θ [rad]: the ray runs along `(cos θ, sin θ)`.
    pub angle_rad: f64,
    /// Signed distance [mm] of the ray from the origin, along `(−sin θ, cos θ)`.
    pub offset_mm: f64,
}

impl ParallelRay {
    /// The ray as a two-point path for [`SystemMatrix::from_paths`].
    pub fn path(&self) -> [[f64; 2]; 2] {
        [self.a, self.b]
    }
}

/// Straight lines across a field of view `[-fov/2, fov/2]²`: `angles` angles `θ = k·π/angles`
/// over `[0, π)`, each with `bins` parallel rays at offsets `−fov/2 + (j + ½)·fov/bins`, ordered
/// angle by angle. Each ray runs from `−fov` to `+fov` along its direction, so it crosses the
/// whole field of view.
pub fn parallel_beam_paths(fov_mm: f64, angles: usize, bins: usize) -> Result<Vec<ParallelRay>> {
    if !(fov_mm.is_finite() && fov_mm > 0.0) {
        return Err(Error::invalid("fov_mm", fov_mm, "a finite field of view > 0 mm"));
    }
    if angles == 0 {
        return Err(Error::invalid("angles", angles, "at least 1"));
    }
    if bins == 0 {
        return Err(Error::invalid("bins", bins, "at least 1"));
    }
    let mut rays = Vec::with_capacity(angles * bins);
    for k in 0..angles {
        let theta = k as f64 * std::f64::consts::PI / angles as f64;
        let (s, c) = theta.sin_cos();
        for j in 0..bins {
            let offset = -fov_mm / 2.0 + (j as f64 + 0.5) * fov_mm / bins as f64;
            let mid = [-s * offset, c * offset];
            rays.push(ParallelRay {
                a: [mid[0] - fov_mm * c, mid[1] - fov_mm * s],
                b: [mid[0] + fov_mm * c, mid[1] + fov_mm * s],
                angle_rad: theta,
                offset_mm: offset,
            });
        }
    }
    Ok(rays)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Reference lengths by fine sampling: `n` midpoint samples along the polyline's segments,
    /// binned by pixel.
    fn sampled(grid: &ImageGrid, points: &[[f64; 2]], n: usize) -> (Vec<f64>, f64) {
        let mut w = vec![0.0; grid.pixels()];
        let mut step_max: f64 = 0.0;
        for s in points.windows(2) {
            let (a, b) = (s[0], s[1]);
            let len = (b[0] - a[0]).hypot(b[1] - a[1]);
            let step = len / n as f64;
            step_max = step_max.max(step);
            for m in 0..n {
                let t = (m as f64 + 0.5) / n as f64;
                if let Some((i, k)) = grid.pixel_of([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]) {
                    w[grid.index(i, k)] += step;
                }
            }
        }
        (w, step_max)
    }

    fn dense(grid: &ImageGrid, entries: &[(u32, f32)]) -> Vec<f64> {
        let mut w = vec![0.0; grid.pixels()];
        for &(j, v) in entries {
            w[j as usize] += v as f64;
        }
        w
    }

    /// An uneven grid off the origin, so that swapped axes or offsets show.
    fn odd_grid() -> ImageGrid {
        ImageGrid { nx: 13, nz: 7, x0_mm: -11.0, z0_mm: 4.0, pixel_mm: 1.7 }
    }

    #[test]
    fn segment_weights_closed_forms() {
        let g = ImageGrid::centred(8, 16.0).unwrap(); // 2 mm pixels over [-8, 8]²
        // Horizontal (along x) through the middle of row k = 5, from outside to outside.
        let mut out = Vec::new();
        segment_weights(&g, [-20.0, 3.0], [30.0, 3.0], &mut out);
        assert_eq!(out.len(), 8);
        for (n, &(j, v)) in out.iter().enumerate() {
            assert_eq!(j as usize, g.index(n, 5));
            assert!((v - 2.0).abs() < 1e-6, "{v}");
        }
        // Vertical, reversed direction, starting inside: z from 5 down to -30 at x = -7.5.
        out.clear();
        segment_weights(&g, [-7.5, 5.0], [-7.5, -30.0], &mut out);
        let total: f64 = out.iter().map(|e| e.1 as f64).sum();
        assert!((total - 13.0).abs() < 1e-5, "{total}");
        assert_eq!(out[0].0 as usize, g.index(0, 6));
        assert!((out[0].1 - 1.0).abs() < 1e-6);
        assert_eq!(out.len(), 7);
        // Along a pixel edge x = 2: counted in the column above the edge (i = 5).
        out.clear();
        segment_weights(&g, [2.0, -9.0], [2.0, 9.0], &mut out);
        assert_eq!(out.len(), 8);
        assert!(out.iter().all(|&(j, _)| j as usize % 8 == 5));
        // Along the upper edge x = 8: outside (half-open grid).
        out.clear();
        segment_weights(&g, [8.0, -9.0], [8.0, 9.0], &mut out);
        assert!(out.is_empty());
        // Main diagonal through pixel corners: n pixels of √2·p each, no slivers.
        out.clear();
        segment_weights(&g, [-10.0, -10.0], [10.0, 10.0], &mut out);
        assert_eq!(out.len(), 8, "{out:?}");
        for (n, &(j, v)) in out.iter().enumerate() {
            assert_eq!(j as usize, g.index(n, n));
            assert!((v as f64 - 2.0 * 2f64.sqrt()).abs() < 1e-5);
        }
        // Diagonal x + z = 1 (not through corners): inside length = √2 · (x range inside).
        out.clear();
        segment_weights(&g, [-20.0, 21.0], [20.0, -19.0], &mut out);
        let total: f64 = out.iter().map(|e| e.1 as f64).sum();
        let inside = 2f64.sqrt() * (8.0 - (1.0 - 8.0)); // x from -7 to 8
        assert!((total - inside).abs() < 1e-5, "{total} vs {inside}");
        // Wholly inside one pixel.
        out.clear();
        segment_weights(&g, [0.2, 0.3], [1.1, 1.9], &mut out);
        assert_eq!(out.len(), 1);
        assert!((out[0].1 as f64 - 0.9f64.hypot(1.6)).abs() < 1e-6);
        // Missing the grid, degenerate, non-finite: nothing.
        out.clear();
        segment_weights(&g, [-20.0, 9.0], [20.0, 12.0], &mut out);
        segment_weights(&g, [1.0, 1.0], [1.0, 1.0], &mut out);
        segment_weights(&g, [f64::NAN, 1.0], [1.0, 1.0], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn segment_weights_match_fine_sampling() {
        let mut rng = StdRng::seed_from_u64(7);
        for g in [odd_grid(), ImageGrid::centred(32, 100.0).unwrap()] {
            let (lo, hi) = (g.x0_mm.min(g.z0_mm) - 10.0, g.x_max_mm().max(g.z_max_mm()) + 10.0);
            let mut out = Vec::new();
            let mut worst: f64 = 0.0;
            for _ in 0..100 {
                let a = [rng.random_range(lo..hi), rng.random_range(lo..hi)];
                let b = [rng.random_range(lo..hi), rng.random_range(lo..hi)];
                out.clear();
                segment_weights(&g, a, b, &mut out);
                let mine = dense(&g, &out);
                let (reference, step) = sampled(&g, &[a, b], 100_000);
                let (sm, sr): (f64, f64) = (mine.iter().sum(), reference.iter().sum());
                assert!((sm - sr).abs() <= 2.0 * step + 1e-9, "total {sm} vs {sr}");
                if sr > 0.0 {
                    worst = worst.max((sm - sr).abs() / sr);
                }
                for (j, (m, r)) in mine.iter().zip(&reference).enumerate() {
                    // Sampling puts each pixel boundary within half a step: ≤ 1 step per pixel.
                    assert!((m - r).abs() <= 1e-3 * g.pixel_mm, "pixel {j}: {m} vs {r} (a {a:?}, b {b:?})");
                }
                // Each pixel at most once, in crossing order.
                let mut seen: Vec<u32> = out.iter().map(|e| e.0).collect();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), out.len());
            }
            println!("grid {}×{}: worst relative total error vs sampling {worst:.2e}", g.nx, g.nz);
        }
    }

    #[test]
    fn path_weights_merge_segments() {
        let g = odd_grid();
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..30 {
            let points: Vec<[f64; 2]> =
                (0..5).map(|_| [rng.random_range(-13.0..13.0), rng.random_range(2.0..18.0)]).collect();
            let mut out = Vec::new();
            path_weights(&g, &points, &mut out);
            assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "sorted, merged: {out:?}");
            let (reference, _) = sampled(&g, &points, 100_000);
            for (m, r) in dense(&g, &out).iter().zip(&reference) {
                assert!((m - r).abs() <= 4e-3 * g.pixel_mm, "{m} vs {r}");
            }
        }
        // A path going out and back through the same pixels: one entry each, doubled.
        let mut out = Vec::new();
        path_weights(&g, &[[-10.0, 5.0], [0.0, 5.0], [-10.0, 5.0]], &mut out);
        let mut single = Vec::new();
        path_weights(&g, &[[-10.0, 5.0], [0.0, 5.0]], &mut single);
        assert_eq!(out.len(), single.len());
        for (d, s) in out.iter().zip(&single) {
            assert_eq!(d.0, s.0);
            assert!((d.1 - 2.0 * s.1).abs() < 1e-5);
        }
    }

    #[test]
    fn forward_and_back_are_adjoint() {
        let g = odd_grid();
        let mut rng = StdRng::seed_from_u64(3);
        let paths: Vec<Vec<[f64; 2]>> = (0..700)
            .map(|_| {
                let n = rng.random_range(1..5usize);
                (0..n).map(|_| [rng.random_range(-15.0..15.0), rng.random_range(0.0..20.0)]).collect()
            })
            .collect();
        let a = SystemMatrix::from_paths(&g, &paths).unwrap();
        assert_eq!((a.rows(), a.cols()), (700, g.pixels()));
        assert!(a.nnz() > 1000);
        // Rows equal path_weights one by one (the parallel build keeps the order).
        for (i, p) in paths.iter().enumerate() {
            let mut out = Vec::new();
            path_weights(&g, p, &mut out);
            let (c, v) = a.row(i);
            assert_eq!(c, out.iter().map(|e| e.0).collect::<Vec<_>>().as_slice());
            assert_eq!(v, out.iter().map(|e| e.1).collect::<Vec<_>>().as_slice());
        }
        for _ in 0..5 {
            let x: Vec<f64> = (0..a.cols()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let y: Vec<f64> = (0..a.rows()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let ax = a.forward(&x);
            let aty = a.back(&y);
            let lhs: f64 = ax.iter().zip(&y).map(|(p, q)| p * q).sum();
            let rhs: f64 = x.iter().zip(&aty).map(|(p, q)| p * q).sum();
            // Independent check of A x from the dense rows.
            for (i, p) in paths.iter().enumerate().step_by(37) {
                let (reference, _) = sampled(&g, p, 100_000);
                let dot: f64 = reference.iter().zip(&x).map(|(w, v)| w * v).sum();
                assert!((dot - ax[i]).abs() < 5e-2, "row {i}: {dot} vs {}", ax[i]);
            }
            assert!((lhs - rhs).abs() <= 1e-10 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
        }
    }

    #[test]
    fn disc_chord_closed_forms() {
        let c = [3.0, -2.0];
        // Through the centre: the diameter; offset h: 2√(r² − h²).
        assert!((disc_chord(c, 5.0, [-10.0, -2.0], [20.0, -2.0]) - 10.0).abs() < 1e-12);
        assert!((disc_chord(c, 5.0, [3.0 + 3.0, -20.0], [6.0, 20.0]) - 8.0).abs() < 1e-12);
        // Starting at the centre: the radius; ending inside: the segment; missing: 0.
        assert!((disc_chord(c, 5.0, c, [3.0, 30.0]) - 5.0).abs() < 1e-12);
        assert!((disc_chord(c, 5.0, [2.0, -2.0], [4.0, -1.0]) - 5f64.sqrt()).abs() < 1e-12);
        assert_eq!(disc_chord(c, 5.0, [-10.0, 4.0], [20.0, 4.0]), 0.0);
        assert_eq!(disc_chord(c, 5.0, [9.0, -2.0], [20.0, -2.0]), 0.0);
        assert_eq!(disc_chord(c, 0.0, [-10.0, -2.0], [20.0, -2.0]), 0.0);
        assert_eq!(disc_chord(c, 5.0, [1.0, 1.0], [1.0, 1.0]), 0.0);
    }

    /// A water cylinder (RSP 1, radius 70 mm) in air (RSP 0) with four inserts.
    const WATER_R: f64 = 70.0;
    const INSERTS: [([f64; 2], f64, f64); 4] =
        [([35.0, 0.0], 15.0, 0.95), ([0.0, 35.0], 15.0, 1.10), ([-35.0, 0.0], 15.0, 1.60), ([0.0, -35.0], 15.0, 1.04)];

    /// Analytic WEPL of the phantom along `a → b` (disc chords, no pixels).
    fn phantom_wepl(a: [f64; 2], b: [f64; 2]) -> f64 {
        let mut w = disc_chord([0.0, 0.0], WATER_R, a, b);
        for (c, r, rsp) in INSERTS {
            w += (rsp - 1.0) * disc_chord(c, r, a, b);
        }
        w
    }

    struct Problem {
        grid: ImageGrid,
        a: SystemMatrix,
        b: Vec<f64>,
    }

    fn problem() -> Problem {
        let fov = 160.0;
        let grid = ImageGrid::centred(64, fov).unwrap();
        let rays = parallel_beam_paths(fov, 90, 128).unwrap();
        let paths: Vec<[[f64; 2]; 2]> = rays.iter().map(ParallelRay::path).collect();
        let a = SystemMatrix::from_paths(&grid, &paths).unwrap();
        let b = rays.iter().map(|r| phantom_wepl(r.a, r.b)).collect();
        Problem { grid, a, b }
    }

    fn rms_residual(a: &SystemMatrix, b: &[f64], x: &[f64]) -> f64 {
        let ax = a.forward(x);
        (ax.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>() / b.len() as f64).sqrt()
    }

    /// Mean of the image over pixels whose centres lie within `r` of `c`, and outside the discs
    /// `(c', r')` of `exclude`.
    fn region_mean(grid: &ImageGrid, x: &[f64], c: [f64; 2], r: f64, exclude: &[([f64; 2], f64)]) -> (f64, usize) {
        let (mut sum, mut n) = (0.0, 0);
        for k in 0..grid.nz {
            for i in 0..grid.nx {
                let p = grid.centre(i, k);
                let inside = |c: [f64; 2], r: f64| (p[0] - c[0]).hypot(p[1] - c[1]) < r;
                if inside(c, r) && !exclude.iter().any(|&(c2, r2)| inside(c2, r2)) {
                    sum += x[grid.index(i, k)];
                    n += 1;
                }
            }
        }
        (sum / n as f64, n)
    }

    #[test]
    fn sart_recovers_disc_phantom() {
        let Problem { grid, a, b } = problem();
        let cfg = SartConfig::default();
        let x = sart(&a, &b, &cfg, None).unwrap();
        let margin = 2.0 * grid.pixel_mm;
        let (water, n) =
            region_mean(&grid, &x, [0.0, 0.0], WATER_R - margin, &INSERTS.map(|(c, r, _)| (c, r + margin)));
        println!("water: mean RSP {water:.4} over {n} pixels (true 1.0000, error {:+.2} %)", 100.0 * (water - 1.0));
        assert!(n > 1000);
        assert!((water - 1.0).abs() < 0.01, "water {water}");
        for (c, r, rsp) in INSERTS {
            let (mean, n) = region_mean(&grid, &x, c, r - margin, &[]);
            let err = (mean - rsp) / rsp;
            println!(
                "insert at {c:?}: mean RSP {mean:.4} over {n} pixels (true {rsp:.4}, error {:+.2} %)",
                100.0 * err
            );
            assert!(n >= 20);
            assert!(err.abs() < 0.02, "insert {c:?}: {mean} vs {rsp}");
        }
        // Pixels outside the field of view the rays cover (corners) stay 0; air stays near 0.
        let corner = x[grid.index(0, 0)];
        assert_eq!(corner, 0.0);
        let (air, _) = region_mean(&grid, &x, [0.0, 0.0], 78.0, &[([0.0, 0.0], WATER_R + margin)]);
        println!("air ring: mean {air:.4}; rms residual {:.4} mm", rms_residual(&a, &b, &x));
        assert!(air.abs() < 0.02, "air {air}");
    }

    #[test]
    fn sart_residual_decreases_and_is_reproducible() {
        let Problem { a, b, .. } = problem();
        let one = SartConfig { iterations: 1, ..SartConfig::default() };
        let mut x = vec![0.0; a.cols()];
        let mut last = rms_residual(&a, &b, &x);
        let mut history = vec![last];
        for _ in 0..6 {
            x = sart(&a, &b, &one, Some(&x)).unwrap();
            let r = rms_residual(&a, &b, &x);
            history.push(r);
            assert!(r < last, "residual rose: {history:?}");
            last = r;
        }
        println!("rms residual [mm] per iteration: {history:.3?}");
        assert!(last < 0.05 * history[0]);
        // Continuing from an image is the same as running longer; results are reproducible.
        let six = sart(&a, &b, &SartConfig { iterations: 6, ..SartConfig::default() }, None).unwrap();
        assert_eq!(six, x);
        // Plain SART (one subset) converges too, just more slowly per pass.
        let plain = SartConfig { iterations: 3, subsets: 1, relaxation: 1.0, non_negative: false };
        let xp = sart(&a, &b, &plain, None).unwrap();
        assert!(rms_residual(&a, &b, &xp) < 0.5 * history[0]);
    }

    #[test]
    fn bad_input_is_rejected() {
        let grid = ImageGrid::centred(8, 20.0).unwrap();
        let rays = parallel_beam_paths(20.0, 4, 8).unwrap();
        let paths: Vec<[[f64; 2]; 2]> = rays.iter().map(ParallelRay::path).collect();
        let a = SystemMatrix::from_paths(&grid, &paths).unwrap();
        let b = vec![1.0; a.rows()];
        let cfg = SartConfig::default();
        let msg = |r: Result<Vec<f64>>| r.unwrap_err().to_string();

        let m = msg(sart(&a, &b[1..], &cfg, None));
        assert!(m.contains("values.len()") && m.contains("32"), "{m}");
        let mut nan = b.clone();
        nan[17] = f64::NAN;
        let m = msg(sart(&a, &nan, &cfg, None));
        assert!(m.contains("values[17]") && m.contains("NaN"), "{m}");
        let mut inf = b.clone();
        inf[3] = f64::INFINITY;
        assert!(msg(sart(&a, &inf, &cfg, None)).contains("values[3]"));
        let m = msg(sart(&a, &b, &SartConfig { iterations: 0, ..cfg.clone() }, None));
        assert!(m.contains("sart.iterations"), "{m}");
        let m = msg(sart(&a, &b, &SartConfig { subsets: 0, ..cfg.clone() }, None));
        assert!(m.contains("sart.subsets"), "{m}");
        let m = msg(sart(&a, &b, &SartConfig { subsets: 33, ..cfg.clone() }, None));
        assert!(m.contains("sart.subsets") && m.contains("32"), "{m}");
        for bad in [0.0, -0.5, 2.5, f64::NAN] {
            let m = msg(sart(&a, &b, &SartConfig { relaxation: bad, ..cfg.clone() }, None));
            assert!(m.contains("sart.relaxation"), "{m}");
        }
        let m = msg(sart(&a, &b, &cfg, Some(&[0.0; 5])));
        assert!(m.contains("init.len()"), "{m}");
        let mut init = vec![0.0; 64];
        init[9] = f64::NAN;
        assert!(msg(sart(&a, &b, &cfg, Some(&init))).contains("init[9]"));

        let m = SystemMatrix::from_paths(&grid, &[vec![[0.0, 0.0], [1.0, 1.0]], vec![[0.0, 0.0], [f64::NAN, 1.0]]])
            .unwrap_err()
            .to_string();
        assert!(m.contains("paths[1][1]"), "{m}");
        assert!(ImageGrid::centred(0, 10.0).unwrap_err().to_string().contains("grid.n"));
        assert!(ImageGrid::centred(4, -1.0).unwrap_err().to_string().contains("grid.fov_mm"));
        let bad = ImageGrid { pixel_mm: 0.0, ..grid };
        assert!(bad.validate().unwrap_err().to_string().contains("grid.pixel_mm"));
        let huge = ImageGrid { nx: 1 << 20, nz: 1 << 20, ..grid };
        assert!(huge.validate().is_err());
        assert!(SystemMatrix::from_paths(&bad, &paths).is_err());
        assert!(parallel_beam_paths(10.0, 0, 5).unwrap_err().to_string().contains("angles"));
        assert!(
            serde_json::from_str::<SartConfig>(
                r#"{"iterations":1,"subsets":1,"relaxation":1.0,"non_negative":true,"lambda":1}"#
            )
            .is_err()
        );

        // Zero-length rows (paths missing the grid) are skipped, whatever their value.
        let mut with_miss: Vec<[[f64; 2]; 2]> = paths.clone();
        with_miss.push([[-50.0, 40.0], [50.0, 40.0]]);
        let a2 = SystemMatrix::from_paths(&grid, &with_miss).unwrap();
        let mut b2 = b.clone();
        b2.push(1e6);
        let cfg1 = SartConfig { subsets: 1, ..cfg };
        assert_eq!(sart(&a2, &b2, &cfg1, None).unwrap(), sart(&a, &b, &cfg1, None).unwrap());
    }
}
