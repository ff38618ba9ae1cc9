//! Loss along lines and over planes, `L(θc + a·d₁ + b·d₂)`, evaluated in parallel and resumable.
//!
//! Grid points are handed out one at a time to `threads` workers (a rayon pool, one
//! [`Replicate`]d objective per worker, dynamic load balancing through an atomic counter). With a
//! resume file every finished point is appended to a JSON-lines file (flushed per point); a rerun
//! with the same file skips the points already there, after checking a fingerprint of the centre,
//! directions and axes so that a stale file is never mixed in. Non-finite losses (a diverged
//! corner of the plane) are stored as NaN, not treated as errors.
//!
//! For multi-process runs (MPI-style), [`SurfaceOptions::shard`] evaluates a contiguous slice of
//! the points; the shards' resume files are merged with [`merge_partials`].

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use gradlab_core::dist::{Comm, agree, broadcast_json, contiguous_slice, gather_json};

use crate::error::{Error, Result, check_len};
use crate::objective::{Objective, Replicate};
use crate::vecops::{combine, dot};

/// Evenly spaced coordinates `min..=max` with `points` entries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// First coordinate.
    pub min: f64,
    /// Last coordinate.
    pub max: f64,
    /// Number of points (≥ 2, or 1 for the single coordinate `min`).
    pub points: usize,
}

/// Most points on one axis of a surface.
pub const MAX_AXIS_POINTS: usize = 100_000;
/// Most points of one surface (its losses alone are 8 bytes each: 128 MB at the cap; at a few
/// hundred to a few thousand points per second a surface this size takes hours to days).
pub const MAX_SURFACE_POINTS: usize = 16_000_000;

/// Points of a surface on `nx × ny`, refused past [`MAX_SURFACE_POINTS`].
fn surface_points(nx: usize, ny: usize) -> Result<usize> {
    match nx.checked_mul(ny) {
        Some(t) if t <= MAX_SURFACE_POINTS => Ok(t),
        _ => Err(Error::invalid(
            "grid",
            format!("{nx} × {ny} points"),
            format!("at most {MAX_SURFACE_POINTS} points per surface (e.g. 4000 × 4000)"),
        )),
    }
}

impl Axis {
    /// `points` values from `min` to `max`.
    pub fn new(min: f64, max: f64, points: usize) -> Result<Self> {
        let a = Self { min, max, points };
        a.check()?;
        Ok(a)
    }
    /// Checks the range and count.
    pub fn check(&self) -> Result<()> {
        if self.points == 0
            || self.points > MAX_AXIS_POINTS
            || !(self.min.is_finite() && self.max.is_finite())
            || (self.points > 1 && self.max <= self.min)
        {
            return Err(Error::invalid(
                "axis",
                format!("min {} max {} points {}", self.min, self.max, self.points),
                format!("finite min < max and 2 ≤ points ≤ {MAX_AXIS_POINTS} (or points = 1)"),
            ));
        }
        Ok(())
    }
    /// The coordinates.
    pub fn values(&self) -> Vec<f64> {
        if self.points == 1 {
            return vec![self.min];
        }
        let step = (self.max - self.min) / (self.points - 1) as f64;
        (0..self.points).map(|i| if i + 1 == self.points { self.max } else { self.min + step * i as f64 }).collect()
    }
}

/// A line (one axis) or plane (two axes) of loss values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Surface {
    /// Coordinates along the first direction.
    pub xs: Vec<f64>,
    /// Coordinates along the second direction (`[0.0]` for a line).
    pub ys: Vec<f64>,
    /// Losses, row-major: `loss[j * xs.len() + i]` at `(xs[i], ys[j])`; NaN where not finite.
    pub loss: Vec<f64>,
}

impl Surface {
    /// Rows `z[j][i]` as the plot builders want them.
    pub fn rows(&self) -> Vec<Vec<f64>> {
        self.loss.chunks(self.xs.len()).map(<[f64]>::to_vec).collect()
    }
    /// Loss at grid index `(i, j)`.
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.loss[j * self.xs.len() + i]
    }
    /// Minimum finite loss and its coordinates.
    pub fn min(&self) -> Option<(f64, f64, f64)> {
        let nx = self.xs.len();
        self.loss
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, v)| (self.xs[k % nx], self.ys[k / nx], *v))
    }
}

/// How to evaluate a surface.
#[derive(Debug, Clone, Default)]
pub struct SurfaceOptions {
    /// Worker threads of this surface, each with its own replica; 0 = rayon's default (the
    /// number of cores, or `RAYON_NUM_THREADS`).
    ///
    /// This sizes a rayon pool built for the call. With more than one worker, each evaluates its
    /// points with the shared core's ops serial (`gradlab_core::ops::serial`: the fused layers
    /// of `gradlab_core::nn::Mlp` and the other ops of `gradlab_core::ops` use no further
    /// threads). candle's own matrix products (in models built from candle's layers) are still
    /// split into `candle_core::utils::get_num_threads()` pieces (`RAYON_NUM_THREADS`, default
    /// the number of cores), run inside this pool. Work outside the surface (gradients, Hessian
    /// products, Lanczos on the caller's thread) runs on rayon's global pool. To bound the CPU
    /// use of the whole process, set `RAYON_NUM_THREADS` in the environment.
    pub threads: usize,
    /// Show a progress bar on stderr (`gradlab_core::observe::progress_bar`): pass `!quiet`; it
    /// is drawn only when stderr is a terminal.
    pub progress: bool,
    /// JSON-lines file of finished points; created if missing, resumed from if present.
    pub resume_file: Option<PathBuf>,
    /// Evaluate only the contiguous slice `rank` of `world` (both 0-based count / index).
    pub shard: Option<(usize, usize)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    fingerprint: String,
    points: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointRecord {
    i: usize,
    loss: Option<f64>,
}

/// FNV-1a over the bits of everything that determines the surface.
fn fingerprint(center: &[f64], dirs: &[&[f64]], xs: &[f64], ys: &[f64]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: f64| {
        for b in x.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for s in [center, xs, ys].into_iter().chain(dirs.iter().copied()) {
        eat(s.len() as f64);
        s.iter().for_each(|x| eat(*x));
    }
    format!("{h:016x}")
}

/// Reads the finished points of a resume file (ignoring a truncated last line).
fn read_partial(path: &Path, fp: &str, points: usize) -> Result<HashMap<usize, f64>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = BufReader::new(f).lines();
    let header: Header = match lines.next() {
        Some(l) => {
            let l = l.map_err(|e| Error::io(path, e))?;
            serde_json::from_str(&l).map_err(|e| Error::json(path, e))?
        }
        None => return Ok(HashMap::new()),
    };
    if header.fingerprint != fp || header.points != points {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            reason: format!(
                "it belongs to another surface (fingerprint {} with {} points, this one {fp} with {points}); \
                 delete it or choose another resume file",
                header.fingerprint, header.points
            ),
        });
    }
    let mut done = HashMap::new();
    for l in lines {
        let l = l.map_err(|e| Error::io(path, e))?;
        // a line cut by an interruption does not parse: that point is simply recomputed
        if let Ok(r) = serde_json::from_str::<PointRecord>(&l)
            && r.i < points
        {
            done.insert(r.i, r.loss.unwrap_or(f64::NAN));
        }
    }
    Ok(done)
}

/// A resume file opened for appending, with its path (shared by the workers).
type ResumeWriter = Mutex<(BufWriter<File>, PathBuf)>;

/// Opens (or creates, writing the header) the resume file of a surface; returns the points it
/// already holds.
fn open_resume(path: &Path, fp: &str, total: usize) -> Result<(HashMap<usize, f64>, ResumeWriter)> {
    let exists = path.exists() && std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
    let done = if exists { read_partial(path, fp, total)? } else { HashMap::new() };
    let f = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(f);
    if exists {
        // an interrupted write may have left a partial last line: start on a fresh one
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if text.last() != Some(&b'\n') {
            writeln!(w).and_then(|_| w.flush()).map_err(|e| Error::io(path, e))?;
        }
    } else {
        let h = Header { fingerprint: fp.to_string(), points: total };
        serde_json::to_writer(&mut w, &h).map_err(|e| Error::json(path, e))?;
        writeln!(w).and_then(|_| w.flush()).map_err(|e| Error::io(path, e))?;
    }
    Ok((done, Mutex::new((w, path.to_path_buf()))))
}

/// Checks the inputs of a surface and returns its axes' coordinates `(xs, ys)`.
fn grid(n: usize, center: &[f64], dirs: &[&[f64]], x: Axis, y: Option<Axis>) -> Result<(Vec<f64>, Vec<f64>)> {
    check_len("center", n, center.len())?;
    x.check()?;
    match (dirs.len(), &y) {
        (1, None) | (2, Some(_)) => {}
        _ => {
            return Err(Error::invalid(
                "directions",
                format!("{} direction(s) with y axis {}", dirs.len(), if y.is_some() { "set" } else { "unset" }),
                "one direction without a y axis (line) or two with a y axis (plane)",
            ));
        }
    }
    for d in dirs {
        check_len("direction", n, d.len())?;
    }
    if let Some(ya) = &y {
        ya.check()?;
    }
    surface_points(x.points, y.map_or(1, |a| a.points))?;
    Ok((x.values(), y.map_or(vec![0.0], |a| a.values())))
}

/// Appends finished points to a resume file (flushed).
fn append_points(writer: &ResumeWriter, points: &[(usize, f64)]) -> Result<()> {
    let mut g = writer.lock().unwrap_or_else(|p| p.into_inner());
    let (w, path) = &mut *g;
    for &(i, l) in points {
        let rec = PointRecord { i, loss: l.is_finite().then_some(l) };
        serde_json::to_writer(&mut *w, &rec).map_err(|e| Error::json(path.clone(), e))?;
        writeln!(w).map_err(|e| Error::io(path.clone(), e))?;
    }
    w.flush().map_err(|e| Error::io(path.clone(), e))
}

/// Evaluates the grid points `todo` on `threads` workers (see [`SurfaceOptions::threads`]),
/// appending each finished point to `writer` when given; returns `(index, loss)` pairs in
/// completion order, non-finite losses as NaN.
#[allow(clippy::too_many_arguments)]
fn evaluate_points<O>(
    objective: &O,
    center: &[f64],
    dirs: &[&[f64]],
    xs: &[f64],
    ys: &[f64],
    todo: &[usize],
    opts: &SurfaceOptions,
    writer: Option<&ResumeWriter>,
) -> Result<Vec<(usize, f64)>>
where
    O: Objective + Replicate + Sync,
{
    let n = objective.dim();
    let bar = gradlab_core::observe::progress_bar(todo.len() as u64, "surface", !opts.progress);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| Error::invalid("threads", format!("{} ({e})", opts.threads), "a thread count the OS can start"))?;
    let workers = pool.current_num_threads().min(todo.len()).max(1);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, f64)>> = Mutex::new(Vec::with_capacity(todo.len()));
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let nx = xs.len();
    let work = |_: rayon::BroadcastContext<'_>| {
        if rayon::current_thread_index().is_some_and(|t| t >= workers) {
            return;
        }
        let run = || -> Result<()> {
            let mut rep = objective.replicate()?;
            let mut theta = vec![0.0; n];
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = todo.get(k) else { return Ok(()) };
                let coords = [xs[i % nx], ys[i / nx]];
                combine(center, &coords[..dirs.len()], dirs, &mut theta);
                let l = rep.loss(&theta)?;
                let l = if l.is_finite() { l } else { f64::NAN };
                if let Some(w) = writer {
                    append_points(w, &[(i, l)])?;
                }
                results.lock().unwrap_or_else(|p| p.into_inner()).push((i, l));
                bar.inc(1);
            }
        };
        // With several workers every core already evaluates its own point: the model's products
        // and element-wise ops run on the worker's thread alone (`gradlab_core::ops::serial`).
        let result = if workers > 1 { gradlab_core::ops::serial(run) } else { run() };
        if let Err(e) = result {
            stop.store(true, Ordering::Relaxed);
            first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
        }
    };
    if !todo.is_empty() {
        pool.broadcast(work);
    }
    bar.finish_and_clear();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Evaluates the objective at `center + Σ coords[k] dirs[k]` for every grid point.
///
/// `dirs` holds one direction (a line over `x`; `y` must be `None`) or two (a plane).
/// Points outside this shard (see [`SurfaceOptions::shard`]) are NaN in the result.
pub fn evaluate_surface<O>(
    objective: &O,
    center: &[f64],
    dirs: &[&[f64]],
    x: Axis,
    y: Option<Axis>,
    opts: &SurfaceOptions,
) -> Result<Surface>
where
    O: Objective + Replicate + Sync,
{
    let (xs, ys) = grid(objective.dim(), center, dirs, x, y)?;
    let total = xs.len() * ys.len();
    let range = match opts.shard {
        None => 0..total,
        Some((rank, world)) => {
            if world == 0 || rank >= world {
                return Err(Error::invalid(
                    "shard",
                    format!("rank {rank} of {world}"),
                    "world ≥ 1 and 0 ≤ rank < world",
                ));
            }
            let per = total.div_ceil(world);
            (rank * per).min(total)..((rank + 1) * per).min(total)
        }
    };
    let mut loss = vec![f64::NAN; total];
    let fp = fingerprint(center, dirs, &xs, &ys);
    let (done, writer) = match &opts.resume_file {
        Some(path) => {
            let (done, w) = open_resume(path, &fp, total)?;
            (done, Some(w))
        }
        None => (HashMap::new(), None),
    };
    for (&i, &v) in &done {
        loss[i] = v;
    }
    let todo: Vec<usize> = range.filter(|i| !done.contains_key(i)).collect();
    for (i, l) in evaluate_points(objective, center, dirs, &xs, &ys, &todo, opts, writer.as_ref())? {
        loss[i] = l;
    }
    Ok(Surface { xs, ys, loss })
}

/// Evaluates a surface over the ranks of `comm` (MPI through `gradlab-mpi`, or
/// [`gradlab_core::dist::Local`]); returns it on rank 0 and `None` on the other ranks.
///
/// Every rank calls it with the same arguments. Rank 0 reads the resume file (a path on its file
/// system) and broadcasts the unfinished points; they are split into contiguous slices, one per
/// rank, and each rank evaluates its slice on its own `opts.threads` workers, `gather_every`
/// points at a time (≥ 1). After each round the finished points are gathered on rank 0, which
/// appends them to the resume file, so a killed job loses at most one round and a rerun (with
/// any rank count, or [`evaluate_surface`] in one process) continues from the same file. Each
/// point is computed exactly as [`evaluate_surface`] computes it: with the same `threads` per
/// process the losses are the same bit for bit. `opts.shard` must be `None` (the ranks are the
/// shards).
///
/// # Errors
/// Bad inputs, a resume file of another surface, or a failing objective on any rank: every rank
/// returns an error (the others name the failing rank), and the finished points stay in the file.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_surface_on<O>(
    comm: &dyn Comm,
    objective: &O,
    center: &[f64],
    dirs: &[&[f64]],
    x: Axis,
    y: Option<Axis>,
    opts: &SurfaceOptions,
    gather_every: usize,
) -> Result<Option<Surface>>
where
    O: Objective + Replicate + Sync,
{
    let (rank, size) = (comm.rank(), comm.size());
    // Inputs and the resume file are checked before any work; all ranks learn the outcome.
    let setup = agree(comm, || {
        if opts.shard.is_some() {
            return Err(Error::invalid("shard", "set", "None with evaluate_surface_on (the ranks split the points)"));
        }
        if gather_every == 0 {
            return Err(Error::invalid("gather_every", 0, "≥ 1 points per rank between gathers"));
        }
        let (xs, ys) = grid(objective.dim(), center, dirs, x, y)?;
        let total = xs.len() * ys.len();
        let fp = fingerprint(center, dirs, &xs, &ys);
        let opened = match (&opts.resume_file, rank) {
            (Some(path), 0) => Some(open_resume(path, &fp, total)?),
            _ => None,
        };
        Ok((xs, ys, opened))
    })?;
    let (xs, ys, opened) = setup;
    let total = xs.len() * ys.len();
    let (done, writer) = match opened {
        Some((done, w)) => (done, Some(w)),
        None => (HashMap::new(), None),
    };
    let todo: Option<Vec<usize>> = (rank == 0).then(|| (0..total).filter(|i| !done.contains_key(i)).collect());
    let todo: Vec<usize> = broadcast_json(comm, 0, todo)?;
    let mine = &todo[contiguous_slice(todo.len(), rank, size)];
    // Every rank runs the same number of rounds (the longest slice's), gathering each time.
    let rounds = todo.len().div_ceil(size).div_ceil(gather_every);
    let mut loss = vec![f64::NAN; total];
    for (&i, &v) in &done {
        loss[i] = v;
    }
    for r in 0..rounds {
        let part = &mine[(r * gather_every).min(mine.len())..((r + 1) * gather_every).min(mine.len())];
        let mut got = agree(comm, || evaluate_points(objective, center, dirs, &xs, &ys, part, opts, None))?;
        // in index order, so that the resume file does not depend on thread timing
        got.sort_by_key(|p| p.0);
        let encoded: Vec<(usize, Option<f64>)> = got.iter().map(|&(i, l)| (i, l.is_finite().then_some(l))).collect();
        if let Some(all) = gather_json(comm, 0, &encoded)? {
            let points: Vec<(usize, f64)> =
                all.into_iter().flatten().map(|(i, l)| (i, l.unwrap_or(f64::NAN))).collect();
            let written: Result<()> = agree(comm, || match &writer {
                Some(w) => append_points(w, &points),
                None => Ok(()),
            });
            for &(i, l) in &points {
                loss[i] = l;
            }
            written?;
        } else {
            agree::<(), Error>(comm, || Ok(()))?;
        }
    }
    Ok((rank == 0).then_some(Surface { xs, ys, loss }))
}

/// Merges the resume files of several shards into one surface on the given axes.
pub fn merge_partials(files: &[PathBuf], center: &[f64], dirs: &[&[f64]], x: Axis, y: Option<Axis>) -> Result<Surface> {
    x.check()?;
    if let Some(ya) = &y {
        ya.check()?;
    }
    surface_points(x.points, y.map_or(1, |a| a.points))?;
    let xs = x.values();
    let ys = y.map_or(vec![0.0], |a| a.values());
    let total = xs.len() * ys.len();
    let fp = fingerprint(center, dirs, &xs, &ys);
    let mut loss = vec![f64::NAN; total];
    for f in files {
        for (i, v) in read_partial(f, &fp, total)? {
            loss[i] = v;
        }
    }
    Ok(Surface { xs, ys, loss })
}

/// A checkpoint projected onto the plane (or line) of a surface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Projection {
    /// Least-squares coordinates along the directions.
    pub coords: Vec<f64>,
    /// `‖θ − (θc + Σ c_k d_k)‖`, the part of the checkpoint off the plane.
    pub residual: f64,
    /// `residual / ‖θ − θc‖` (0 for the centre itself).
    pub relative_residual: f64,
}

/// Least-squares coordinates of each point in the span of `dirs` around `center` (normal
/// equations on the small Gram matrix of the directions, which need not be orthogonal).
pub fn project(center: &[f64], dirs: &[&[f64]], points: &[Vec<f64>]) -> Result<Vec<Projection>> {
    let n = center.len();
    let k = dirs.len();
    for d in dirs {
        check_len("direction", n, d.len())?;
    }
    let mut g = vec![0.0; k * k];
    for a in 0..k {
        for b in 0..k {
            g[a * k + b] = dot(dirs[a], dirs[b]);
        }
    }
    let mut out = Vec::with_capacity(points.len());
    let mut proj = vec![0.0; n];
    for p in points {
        check_len("trajectory point", n, p.len())?;
        let r: Vec<f64> = p.iter().zip(center).map(|(a, b)| a - b).collect();
        let rhs: Vec<f64> = dirs.iter().map(|d| dot(d, &r)).collect();
        let coords = solve_small(&g, &rhs, k)?;
        combine(center, &coords, dirs, &mut proj);
        let resid: f64 = p.iter().zip(&proj).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        let rn = dot(&r, &r).sqrt();
        out.push(Projection { coords, residual: resid, relative_residual: if rn > 0.0 { resid / rn } else { 0.0 } });
    }
    Ok(out)
}

/// Solves the small symmetric positive definite system `g x = rhs` (Gaussian elimination with
/// partial pivoting); errors if the directions are linearly dependent.
fn solve_small(g: &[f64], rhs: &[f64], k: usize) -> Result<Vec<f64>> {
    let mut a = g.to_vec();
    let mut b = rhs.to_vec();
    let scale = (0..k).map(|i| a[i * k + i].abs()).fold(0.0, f64::max);
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| a[i * k + c].abs().total_cmp(&a[j * k + c].abs())).unwrap_or(c);
        if a[p * k + c].abs() <= 1e-13 * scale {
            return Err(Error::invalid(
                "directions",
                format!("Gram matrix pivot {:e}", a[p * k + c]),
                "linearly independent, non-zero directions",
            ));
        }
        for j in 0..k {
            a.swap(c * k + j, p * k + j);
        }
        b.swap(c, p);
        for i in c + 1..k {
            let f = a[i * k + c] / a[c * k + c];
            for j in c..k {
                a[i * k + j] -= f * a[c * k + j];
            }
            b[i] -= f * b[c];
        }
    }
    let mut x = vec![0.0; k];
    for i in (0..k).rev() {
        let s: f64 = (i + 1..k).map(|j| a[i * k + j] * x[j]).sum();
        x[i] = (b[i] - s) / a[i * k + i];
    }
    Ok(x)
}

/// Trajectory point with its projection and the loss at both.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrajectoryPoint {
    /// Projection onto the plane.
    pub projection: Projection,
    /// Loss at the real checkpoint.
    pub loss_real: f64,
    /// Loss at its projection onto the plane.
    pub loss_projected: f64,
}

/// Projects a trajectory and evaluates the loss at each checkpoint and at its projection.
pub fn project_trajectory<O: Objective + ?Sized>(
    objective: &mut O,
    center: &[f64],
    dirs: &[&[f64]],
    points: &[Vec<f64>],
) -> Result<Vec<TrajectoryPoint>> {
    let projs = project(center, dirs, points)?;
    let mut theta = vec![0.0; center.len()];
    let mut out = Vec::with_capacity(points.len());
    for (p, pr) in points.iter().zip(projs) {
        let loss_real = objective.loss(p)?;
        combine(center, &pr.coords, dirs, &mut theta);
        let loss_projected = objective.loss(&theta)?;
        out.push(TrajectoryPoint { projection: pr, loss_real, loss_projected });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directions::gaussian;
    use crate::testfns::Quadratic;
    use std::sync::Arc;

    /// Wraps an objective; the shared counter counts evaluations and fails after `limit`.
    #[derive(Clone)]
    struct Flaky {
        inner: Quadratic,
        count: Arc<AtomicUsize>,
        limit: usize,
    }
    impl Objective for Flaky {
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        fn loss(&mut self, theta: &[f64]) -> Result<f64> {
            if self.count.fetch_add(1, Ordering::SeqCst) >= self.limit {
                return Err(Error::Unsupported("simulated interruption".into()));
            }
            self.inner.loss(theta)
        }
        fn loss_grad(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
            self.inner.loss_grad(theta, grad)
        }
    }
    impl Replicate for Flaky {
        fn replicate(&self) -> Result<Self> {
            Ok(self.clone())
        }
    }

    fn setup(seed: u64) -> (Quadratic, Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut rng = gradlab_core::rng::rng(seed);
        let eig: Vec<f64> = (0..8).map(|i| i as f64 - 2.0).collect();
        let (q, _) = Quadratic::with_spectrum(&eig, &mut rng);
        (q, gaussian(8, &mut rng), gaussian(8, &mut rng), gaussian(8, &mut rng))
    }

    #[test]
    fn oversized_grids_are_refused_before_anything_is_allocated() {
        let e = Axis::new(-1.0, 1.0, 1_000_000_000).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "axis"), "{e}");
        assert!(Axis::new(-1.0, 1.0, MAX_AXIS_POINTS).is_ok());
        let q = Quadratic::new(vec![1.0, 0.0, 0.0, 2.0], vec![0.0, 0.0]).unwrap();
        let (d1, d2) = ([1.0, 0.0], [0.0, 1.0]);
        let ax = Axis::new(-1.0, 1.0, MAX_AXIS_POINTS).unwrap();
        let e = evaluate_surface(&q, &[0.0, 0.0], &[&d1, &d2], ax, Some(ax), &SurfaceOptions::default()).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "grid"), "{e}");
        let e = merge_partials(&[], &[0.0, 0.0], &[&d1, &d2], ax, Some(ax)).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "grid"), "{e}");
    }

    #[test]
    fn plane_matches_closed_form_for_one_and_two_threads() {
        let (q, c, d1, d2) = setup(0);
        let a = q.matrix().to_vec();
        let qa = |v: &[f64]| -> f64 { 0.5 * (0..8).map(|i| v[i] * dot(&a[i * 8..i * 8 + 8], v)).sum::<f64>() };
        let (x, y) = (Axis::new(-1.0, 1.0, 7).unwrap(), Axis::new(-0.5, 2.0, 5).unwrap());
        for threads in [1, 2] {
            let opts = SurfaceOptions { threads, ..Default::default() };
            let s = evaluate_surface(&q, &c, &[&d1, &d2], x, Some(y), &opts).unwrap();
            assert_eq!(s.loss.len(), 35);
            for (j, b) in s.ys.iter().enumerate() {
                for (i, a_) in s.xs.iter().enumerate() {
                    let p: Vec<f64> = (0..8).map(|k| c[k] + a_ * d1[k] + b * d2[k]).collect();
                    assert!((s.at(i, j) - qa(&p)).abs() < 1e-12 * (1.0 + qa(&p).abs()));
                }
            }
        }
        let line = evaluate_surface(&q, &c, &[&d1], x, None, &SurfaceOptions::default()).unwrap();
        assert_eq!(line.ys, vec![0.0]);
        assert_eq!(line.loss.len(), 7);
        assert!(evaluate_surface(&q, &c, &[&d1], x, Some(y), &SurfaceOptions::default()).is_err());
        assert!(Axis::new(1.0, 1.0, 3).is_err());
        assert!(Axis::new(0.0, 1.0, 0).is_err());
    }

    #[test]
    fn surface_on_one_process_equals_evaluate_surface_and_shares_its_resume_file() {
        use gradlab_core::dist::Local;
        let (q, c, d1, d2) = setup(2);
        let (x, y) = (Axis::new(-1.0, 1.0, 7).unwrap(), Axis::new(-0.5, 1.0, 5).unwrap());
        let opts = SurfaceOptions { threads: 1, ..Default::default() };
        let full = evaluate_surface(&q, &c, &[&d1, &d2], x, Some(y), &opts).unwrap();
        let on = evaluate_surface_on(&Local, &q, &c, &[&d1, &d2], x, Some(y), &opts, 4).unwrap().unwrap();
        assert_eq!(
            full.loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            on.loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // interrupted through the distributed path, finished by the plain one (and back)
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("partial.jsonl");
        let ropts = SurfaceOptions { threads: 1, resume_file: Some(file.clone()), ..Default::default() };
        let count = Arc::new(AtomicUsize::new(0));
        let flaky = Flaky { inner: q.clone(), count: count.clone(), limit: 13 };
        let err = evaluate_surface_on(&Local, &flaky, &c, &[&d1, &d2], x, Some(y), &ropts, 4).unwrap_err();
        assert!(err.to_string().contains("simulated interruption"), "{err}");
        // three whole rounds of 4 were gathered and written before the 14th evaluation failed
        let written = std::fs::read_to_string(&file).unwrap().lines().count() - 1;
        assert_eq!(written, 12);
        let count2 = Arc::new(AtomicUsize::new(0));
        let ok = Flaky { inner: q.clone(), count: count2.clone(), limit: usize::MAX };
        let resumed = evaluate_surface(&ok, &c, &[&d1, &d2], x, Some(y), &ropts).unwrap();
        assert_eq!(count2.load(Ordering::SeqCst), 35 - 12);
        assert_eq!(
            resumed.loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            full.loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let again = evaluate_surface_on(&Local, &ok, &c, &[&d1, &d2], x, Some(y), &ropts, 4).unwrap().unwrap();
        assert_eq!(count2.load(Ordering::SeqCst), 35 - 12, "nothing left to evaluate");
        assert_eq!(
            again.loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            full.loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // bad arguments are errors
        assert!(evaluate_surface_on(&Local, &q, &c, &[&d1, &d2], x, Some(y), &opts, 0).is_err());
        let sharded = SurfaceOptions { shard: Some((0, 2)), ..opts.clone() };
        assert!(evaluate_surface_on(&Local, &q, &c, &[&d1, &d2], x, Some(y), &sharded, 4).is_err());
    }

    #[test]
    fn interrupted_surface_resumes_without_recomputing_finished_points() {
        let (q, c, d1, d2) = setup(1);
        let (x, y) = (Axis::new(-1.0, 1.0, 6).unwrap(), Axis::new(-1.0, 1.0, 4).unwrap());
        let full = evaluate_surface(&q, &c, &[&d1, &d2], x, Some(y), &SurfaceOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("partial.jsonl");
        let opts = SurfaceOptions { threads: 2, resume_file: Some(file.clone()), ..Default::default() };
        let count = Arc::new(AtomicUsize::new(0));
        let flaky = Flaky { inner: q.clone(), count: count.clone(), limit: 10 };
        assert!(evaluate_surface(&flaky, &c, &[&d1, &d2], x, Some(y), &opts).is_err());
        // an interruption in the middle of a write leaves a partial line
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        write!(f, "{{\"i\": 3, \"lo").unwrap();
        drop(f);
        let finished = std::fs::read_to_string(&file).unwrap().lines().filter(|l| l.ends_with('}')).count() - 1;
        assert!((8..=10).contains(&finished), "finished {finished}");
        let count2 = Arc::new(AtomicUsize::new(0));
        let ok = Flaky { inner: q.clone(), count: count2.clone(), limit: usize::MAX };
        let resumed = evaluate_surface(&ok, &c, &[&d1, &d2], x, Some(y), &opts).unwrap();
        assert_eq!(count2.load(Ordering::SeqCst), 24 - finished);
        for (a, b) in resumed.loss.iter().zip(&full.loss) {
            assert!((a - b).abs() < 1e-12);
        }
        // a third run has nothing left to do
        let count3 = Arc::new(AtomicUsize::new(0));
        let ok = Flaky { inner: q.clone(), count: count3.clone(), limit: usize::MAX };
        evaluate_surface(&ok, &c, &[&d1, &d2], x, Some(y), &opts).unwrap();
        assert_eq!(count3.load(Ordering::SeqCst), 0);
        // a different surface refuses the file
        let other = Axis::new(-2.0, 1.0, 6).unwrap();
        assert!(matches!(evaluate_surface(&q, &c, &[&d1, &d2], other, Some(y), &opts), Err(Error::Mismatch { .. })));
    }

    #[test]
    fn shards_merge_into_the_full_surface() {
        let (q, c, d1, d2) = setup(2);
        let (x, y) = (Axis::new(-1.0, 1.0, 5).unwrap(), Axis::new(-1.0, 1.0, 5).unwrap());
        let full = evaluate_surface(&q, &c, &[&d1, &d2], x, Some(y), &SurfaceOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut files = vec![];
        for rank in 0..3 {
            let file = dir.path().join(format!("shard{rank}.jsonl"));
            let opts = SurfaceOptions {
                threads: 1,
                resume_file: Some(file.clone()),
                shard: Some((rank, 3)),
                ..Default::default()
            };
            let part = evaluate_surface(&q, &c, &[&d1, &d2], x, Some(y), &opts).unwrap();
            assert!(part.loss.iter().filter(|v| v.is_finite()).count() < 25);
            files.push(file);
        }
        let merged = merge_partials(&files, &c, &[&d1, &d2], x, Some(y)).unwrap();
        assert_eq!(merged.loss, full.loss);
        let bad = SurfaceOptions { shard: Some((3, 3)), ..Default::default() };
        assert!(evaluate_surface(&q, &c, &[&d1, &d2], x, Some(y), &bad).is_err());
    }

    #[test]
    fn projection_recovers_coordinates_and_off_plane_residual() {
        let mut rng = gradlab_core::rng::rng(3);
        let n = 30;
        let c = gaussian(n, &mut rng);
        let d1 = gaussian(n, &mut rng);
        let mut d2 = gaussian(n, &mut rng);
        crate::vecops::axpy(0.5, &d1, &mut d2); // not orthogonal
        // noise orthogonal to both directions
        let basis = crate::vecops::orthonormal_basis(&[d1.clone(), d2.clone()], 1e-12);
        let mut noise = gaussian(n, &mut rng);
        crate::vecops::orthogonalize_against(&basis, &mut noise);
        crate::vecops::scale(0.3, &mut noise);
        let pts: Vec<Vec<f64>> = [(0.2, -1.0), (1.5, 0.25), (0.0, 0.0)]
            .iter()
            .map(|(a, b)| (0..n).map(|k| c[k] + a * d1[k] + b * d2[k] + noise[k]).collect())
            .collect();
        let pr = project(&c, &[&d1, &d2], &pts).unwrap();
        for (p, (a, b)) in pr.iter().zip([(0.2, -1.0), (1.5, 0.25), (0.0, 0.0)]) {
            assert!((p.coords[0] - a).abs() < 1e-10 && (p.coords[1] - b).abs() < 1e-10, "{:?}", p.coords);
            assert!((p.residual - 0.3).abs() < 1e-10);
        }
        assert!(project(&c, &[&d1, &d1], &pts).is_err());
        // losses at the checkpoint and at its projection
        let mut q = crate::testfns::Quadratic::new(vec![0.0; n * n], vec![0.0; n]).unwrap();
        let tp = project_trajectory(&mut q, &c, &[&d1, &d2], &pts).unwrap();
        assert!(tp.iter().all(|t| t.loss_real == 0.0 && t.loss_projected == 0.0));
    }
}
