//! Emulator datasets in the reference layout (Harder et al. 2022): `X_train.npy`,
//! `y_train.npy`, `X_val.npy`, `y_val.npy`, `X_test.npy`, `y_test.npy` plus `manifest.json`.
//!
//! X has 8 environment columns (pressure, temperature, RH, H2SO4 production, ionisation, cloud
//! cover, forest fraction, boundary-layer flag) and 24 state columns (H2SO4; SO4 NS–CS; BC and
//! OC KS, AS, CS, KI; DU AS, CS, AI, CI; numbers NS–CI) — 32 in all, 34 with the optional sea
//! salt (AS, CS, after OC). y holds the 24 (26) states after one step and the 4 water contents
//! of the soluble modes. The reader accepts float32 and float64 files with these shapes, with
//! or without a manifest, so the published dataset reads the same way.

use crate::config::M7Config;
use crate::error::{Error, Result};
use crate::layout::{self, Column};
use crate::sampler::{Sample, SamplerConfig};
use gradlab_core::rng::{derive_seed, permutation, stream_rng};
use ndarray::{Array2, Axis};
use ndarray_npy::{ReadNpyError, read_npy, write_npy};
use std::path::{Path, PathBuf};

/// Element type of the written arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// float32 (the default; what the emulator trains on).
    #[default]
    F32,
    /// float64.
    F64,
}

/// The three splits' file stems.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Rows per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Training rows.
    pub train: usize,
    /// Validation rows.
    pub val: usize,
    /// Test rows.
    pub test: usize,
}

/// `manifest.json`: what produced the dataset and what its columns mean.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format tag.
    pub format: String,
    /// Seed of the sampler and of the split shuffle.
    pub seed: u64,
    /// Element type of the `.npy` files.
    pub dtype: Dtype,
    /// Whether the state includes sea salt.
    pub include_sea_salt: bool,
    /// Rows per split.
    pub counts: Counts,
    /// X columns with units.
    pub x_columns: Vec<Column>,
    /// y columns with units.
    pub y_columns: Vec<Column>,
    /// Box-model configuration of the recorded step.
    pub m7: M7Config,
    /// Sampler configuration.
    pub sampler: SamplerConfig,
}

/// Format tag written into manifests.
pub const FORMAT: &str = "gradlab-aerosol/m7-dataset/v1";

/// A dataset in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training inputs.
    pub x_train: Array2<f32>,
    /// Training targets.
    pub y_train: Array2<f32>,
    /// Validation inputs.
    pub x_val: Array2<f32>,
    /// Validation targets.
    pub y_val: Array2<f32>,
    /// Test inputs.
    pub x_test: Array2<f32>,
    /// Test targets.
    pub y_test: Array2<f32>,
    /// Whether the state includes sea salt (34/30 columns).
    pub include_sea_salt: bool,
    /// The manifest, when the directory has one.
    pub manifest: Option<Manifest>,
}

/// Builds X (N × 32/34) and y (N × 28/30) from samples.
pub fn tables(samples: &[Sample], include_sea_salt: bool) -> (Array2<f64>, Array2<f64>) {
    let nx = layout::x_columns(include_sea_salt).len();
    let ny = layout::y_columns(include_sea_salt).len();
    let ns = ny - 4;
    let mut x = Array2::zeros((samples.len(), nx));
    let mut y = Array2::zeros((samples.len(), ny));
    for (i, s) in samples.iter().enumerate() {
        let xr = x.row_mut(i).into_slice().expect("standard layout");
        layout::write_env(&s.env, &mut xr[..8]);
        layout::write_state(&s.before, include_sea_salt, &mut xr[8..]);
        let yr = y.row_mut(i).into_slice().expect("standard layout");
        layout::write_state(&s.after, include_sea_salt, &mut yr[..ns]);
        yr[ns..].copy_from_slice(&s.diagnostics.water);
    }
    (x, y)
}

/// Shuffled (seeded) row indices split into train / val / test by the `train` and `val`
/// fractions (the rest is test). Not core's `data::split_indices`, which takes the validation and
/// test fractions.
pub fn train_val_test_indices(n: usize, train: f64, val: f64, seed: u64) -> Result<[Vec<usize>; 3]> {
    if !(train > 0.0 && val >= 0.0 && train + val <= 1.0) {
        return Err(Error::invalid(
            "split",
            format!("train={train}, val={val}"),
            "train > 0, val >= 0, train + val <= 1",
        ));
    }
    let mut idx = permutation(&mut stream_rng(seed, SPLIT_STREAM), n);
    let n_train = ((n as f64) * train).round() as usize;
    let n_val = (((n as f64) * val).round() as usize).min(n - n_train);
    let test = idx.split_off(n_train + n_val);
    let val_idx = idx.split_off(n_train);
    Ok([idx, val_idx, test])
}

/// Train / validation / test split stratified on rare extreme rows: the `tail_fraction` of rows
/// with the largest `scores` form one stratum and the rest another; each is shuffled (seeded) and
/// split with the same fractions, so every part receives its share of the extreme rows.
///
/// For heavy-tailed targets (some M7 tendencies have kurtosis ~1e5: a handful of cells hold
/// almost all of a column's variance) a purely random split decides by chance whether the test
/// set contains any of those cells, and with it the test variance that R² divides by.
/// `tail_fraction = 0` is [`train_val_test_indices`].
pub fn stratified_train_val_test_indices(
    scores: &[f64],
    tail_fraction: f64,
    train: f64,
    val: f64,
    seed: u64,
) -> Result<[Vec<usize>; 3]> {
    if !(0.0..1.0).contains(&tail_fraction) {
        return Err(Error::invalid("stratify_tails", tail_fraction, "a fraction 0 <= f < 1 of the rows"));
    }
    let n = scores.len();
    let k = ((n as f64) * tail_fraction).ceil() as usize;
    if k == 0 {
        return train_val_test_indices(n, train, val, seed);
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Largest score first; NaN scores count as extreme; ties by index (deterministic).
    order.sort_by(|&a, &b| {
        let (sa, sb) = (scores[a], scores[b]);
        let key = |s: f64| if s.is_nan() { f64::INFINITY } else { s };
        key(sb).total_cmp(&key(sa)).then(a.cmp(&b))
    });
    let rest = order.split_off(k);
    let mut parts: [Vec<usize>; 3] = Default::default();
    for (stratum, salt) in [(order, 1u64), (rest, 2u64)] {
        let sub = train_val_test_indices(stratum.len(), train, val, derive_seed(seed, salt))?;
        for (part, idx) in parts.iter_mut().zip(sub) {
            part.extend(idx.into_iter().map(|i| stratum[i]));
        }
    }
    Ok(parts)
}

/// Tail score of each row of `t`: the largest |z| over its columns, with each column's mean and
/// standard deviation over all rows (columns with zero spread are skipped).
pub fn tail_scores(t: &ndarray::ArrayView2<f32>) -> Vec<f64> {
    let n = t.nrows().max(1) as f64;
    let stats: Vec<(f64, f64)> = t
        .columns()
        .into_iter()
        .map(|c| {
            let m = c.iter().map(|&v| v as f64).sum::<f64>() / n;
            let sd = (c.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n).sqrt();
            (m, sd)
        })
        .collect();
    t.rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .zip(&stats)
                .filter(|(_, (_, sd))| *sd > 0.0)
                .map(|(&v, (m, sd))| ((v as f64 - m) / sd).abs())
                .fold(0.0, f64::max)
        })
        .collect()
}

/// Stream of `seed` that shuffles the rows before a split (the sampler uses the cell streams).
const SPLIT_STREAM: u64 = 0x5EED_5917;

fn npy_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Npy { path: path.to_path_buf(), detail: e.to_string() }
}

/// Writes a table as float32 or float64 `.npy`.
pub fn write_table(path: &Path, a: &Array2<f64>, dtype: Dtype) -> Result<()> {
    match dtype {
        Dtype::F64 => write_npy(path, a).map_err(|e| npy_error(path, e)),
        Dtype::F32 => write_npy(path, &a.mapv(|v| v as f32)).map_err(|e| npy_error(path, e)),
    }
}

fn read_error(path: &Path, e: ReadNpyError) -> Error {
    match e {
        ReadNpyError::WrongNdim(expected, got) => Error::Shape {
            what: path.display().to_string(),
            expected: format!("{} dimensions", expected.unwrap_or(2)),
            got: vec![got],
        },
        ReadNpyError::WrongDescriptor(d) => {
            Error::Dtype { path: path.to_path_buf(), detail: format!("descriptor {d}") }
        }
        ReadNpyError::Io(e) => Error::io(path, e),
        other => npy_error(path, other),
    }
}

/// Reads a 2-D float32 or float64 `.npy` file as f64.
pub fn read_table(path: &Path) -> Result<Array2<f64>> {
    match read_npy::<_, Array2<f64>>(path) {
        Ok(a) => Ok(a),
        Err(ReadNpyError::WrongDescriptor(_)) => {
            read_npy::<_, Array2<f32>>(path).map(|a| a.mapv(f64::from)).map_err(|e| read_error(path, e))
        }
        Err(e) => Err(read_error(path, e)),
    }
}

/// Reads a 2-D float32 or float64 `.npy` file as f32.
pub fn read_table_f32(path: &Path) -> Result<Array2<f32>> {
    match read_npy::<_, Array2<f32>>(path) {
        Ok(a) => Ok(a),
        Err(ReadNpyError::WrongDescriptor(_)) => {
            read_npy::<_, Array2<f64>>(path).map(|a| a.mapv(|v| v as f32)).map_err(|e| read_error(path, e))
        }
        Err(e) => Err(read_error(path, e)),
    }
}

/// File names of one split: (`X_<split>.npy`, `y_<split>.npy`).
pub fn split_files(dir: &Path, split: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("X_{split}.npy")), dir.join(format!("y_{split}.npy")))
}

/// Writes X and y split into the six reference files plus `manifest.json`.
#[allow(clippy::too_many_arguments)]
pub fn write_dataset(
    dir: &Path,
    x: &Array2<f64>,
    y: &Array2<f64>,
    include_sea_salt: bool,
    fractions: (f64, f64),
    seed: u64,
    dtype: Dtype,
    m7: &M7Config,
    sampler: &SamplerConfig,
) -> Result<Manifest> {
    let xc = layout::x_columns(include_sea_salt);
    let yc = layout::y_columns(include_sea_salt);
    check_shape("X", x, xc.len())?;
    check_shape("y", y, yc.len())?;
    if x.nrows() != y.nrows() {
        return Err(Error::Shape {
            what: "y".into(),
            expected: format!("[{}, {}] (as many rows as X)", x.nrows(), yc.len()),
            got: y.shape().to_vec(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let parts = train_val_test_indices(x.nrows(), fractions.0, fractions.1, seed)?;
    for (split, idx) in SPLITS.iter().zip(parts.iter()) {
        let (xp, yp) = split_files(dir, split);
        write_table(&xp, &x.select(Axis(0), idx), dtype)?;
        write_table(&yp, &y.select(Axis(0), idx), dtype)?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        seed,
        dtype,
        include_sea_salt,
        counts: Counts { train: parts[0].len(), val: parts[1].len(), test: parts[2].len() },
        x_columns: xc,
        y_columns: yc,
        m7: *m7,
        sampler: *sampler,
    };
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(manifest)
}

fn check_shape<T>(what: &str, a: &Array2<T>, cols: usize) -> Result<()> {
    if a.ncols() != cols {
        return Err(Error::Shape { what: what.into(), expected: format!("[N, {cols}]"), got: a.shape().to_vec() });
    }
    Ok(())
}

/// Reads a dataset directory (ours or the published one). Checks the column counts
/// (X 32 and y 28, or 34 and 30 with sea salt), that X and y agree in rows, and, when a
/// manifest exists, that it matches the arrays.
pub fn read_dataset(dir: &Path) -> Result<Dataset> {
    let manifest_path = dir.join("manifest.json");
    let manifest: Option<Manifest> = if manifest_path.exists() {
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
        Some(serde_json::from_str(&text).map_err(|source| Error::Json { path: manifest_path.clone(), source })?)
    } else {
        None
    };
    let mut arrays = Vec::with_capacity(6);
    let mut sea_salt: Option<bool> = None;
    for split in SPLITS {
        let (xp, yp) = split_files(dir, split);
        let x = read_table_f32(&xp)?;
        let y = read_table_f32(&yp)?;
        let ss = match (x.ncols(), y.ncols()) {
            (32, 28) => false,
            (34, 30) => true,
            _ => {
                let (what, expected, got) = if x.ncols() != 32 && x.ncols() != 34 {
                    (&xp, "[N, 32] (or [N, 34] with sea salt)".to_string(), x.shape().to_vec())
                } else {
                    let want = if x.ncols() == 32 { 28 } else { 30 };
                    (&yp, format!("[N, {want}] to match X with {} columns", x.ncols()), y.shape().to_vec())
                };
                return Err(Error::Shape { what: what.display().to_string(), expected, got });
            }
        };
        if x.nrows() != y.nrows() {
            return Err(Error::Shape {
                what: yp.display().to_string(),
                expected: format!("[{}, {}] (as many rows as {})", x.nrows(), y.ncols(), xp.display()),
                got: y.shape().to_vec(),
            });
        }
        if let Some(prev) = sea_salt
            && prev != ss
        {
            return Err(Error::Manifest {
                path: dir.to_path_buf(),
                detail: format!("split {split} has {} X columns, other splits differ", x.ncols()),
            });
        }
        sea_salt = Some(ss);
        arrays.push(x);
        arrays.push(y);
    }
    let include_sea_salt = sea_salt.unwrap_or(false);
    if let Some(m) = &manifest {
        let rows = [arrays[0].nrows(), arrays[2].nrows(), arrays[4].nrows()];
        let want = [m.counts.train, m.counts.val, m.counts.test];
        if rows != want || m.include_sea_salt != include_sea_salt {
            return Err(Error::Manifest {
                path: dir.to_path_buf(),
                detail: format!(
                    "manifest says rows {want:?} (sea salt {}), files hold {rows:?} (sea salt {include_sea_salt})",
                    m.include_sea_salt
                ),
            });
        }
    }
    let mut it = arrays.into_iter();
    let mut next = || it.next().expect("six arrays");
    Ok(Dataset {
        x_train: next(),
        y_train: next(),
        x_val: next(),
        y_val: next(),
        x_test: next(),
        y_test: next(),
        include_sea_salt,
        manifest,
    })
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn stratified_split_shares_the_extreme_rows() {
        let n = 1000;
        // Rows 7, 107, ..., 1907 mod n: 10 extreme rows (score 100 + i), the rest small.
        let mut scores = vec![0.5; n];
        let extreme: Vec<usize> = (0..10).map(|i| 7 + 97 * i).collect();
        for (i, &r) in extreme.iter().enumerate() {
            scores[r] = 100.0 + i as f64;
        }
        let parts = stratified_train_val_test_indices(&scores, 0.01, 0.8, 0.1, 3).unwrap();
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "a partition of the rows");
        let count = |p: &Vec<usize>| p.iter().filter(|i| extreme.contains(i)).count();
        assert_eq!([count(&parts[0]), count(&parts[1]), count(&parts[2])], [8, 1, 1]);
        assert_eq!([parts[0].len(), parts[1].len(), parts[2].len()], [800, 100, 100]);
        // Deterministic per seed, different across seeds.
        assert_eq!(parts, stratified_train_val_test_indices(&scores, 0.01, 0.8, 0.1, 3).unwrap());
        assert_ne!(parts, stratified_train_val_test_indices(&scores, 0.01, 0.8, 0.1, 4).unwrap());
        // Fraction 0 is the random split; out-of-range fractions are refused by name.
        assert_eq!(
            stratified_train_val_test_indices(&scores, 0.0, 0.8, 0.1, 3).unwrap(),
            train_val_test_indices(n, 0.8, 0.1, 3).unwrap()
        );
        let e = stratified_train_val_test_indices(&scores, 1.5, 0.8, 0.1, 3).unwrap_err().to_string();
        assert!(e.contains("stratify_tails") && e.contains("1.5"), "{e}");
    }

    #[test]
    fn tail_scores_are_the_largest_abs_z() {
        // Column 0: values 0, 0, 0, 4 → mean 1, sd √3; column 1 constant (skipped).
        let t = ndarray::arr2(&[[0.0f32, 5.0], [0.0, 5.0], [0.0, 5.0], [4.0, 5.0]]);
        let s = tail_scores(&t.view());
        let sd = 3f64.sqrt();
        for (got, want) in s.iter().zip([1.0 / sd, 1.0 / sd, 1.0 / sd, 3.0 / sd]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }
}
