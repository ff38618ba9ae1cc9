//! In-memory tables (ndarray `Array2<f32>`) ↔ candle tensors, splits and mini-batches.

use crate::rng::{derive_seed, permutation, rng};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use ndarray::{Array2, ArrayView2, Axis};

/// A 2-D array as a `[rows, cols]` f32 tensor on `device`.
pub fn array_to_tensor(a: &ArrayView2<f32>, device: &Device) -> Result<Tensor> {
    let (r, c) = a.dim();
    let t = match a.as_slice() {
        Some(s) => Tensor::from_slice(s, (r, c), device)?,
        None => {
            let v: Vec<f32> = a.iter().copied().collect();
            Tensor::from_vec(v, (r, c), device)?
        }
    };
    Ok(t)
}

/// A 2-D tensor (any float dtype) as an `Array2<f32>`.
pub fn tensor_to_array(t: &Tensor) -> Result<Array2<f32>> {
    let dims = t.dims();
    if dims.len() != 2 {
        return Err(Error::ShapeMismatch {
            what: "tensor_to_array input (must be 2-D)".into(),
            expected: vec![0, 0],
            got: dims.to_vec(),
        });
    }
    let (r, c) = (dims[0], dims[1]);
    let v = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Array2::from_shape_vec((r, c), v).map_err(|e| Error::invalid("tensor shape", e, "a 2-D shape"))
}

/// The given rows of a table, in order.
pub fn take_rows(a: &ArrayView2<f32>, rows: &[usize]) -> Array2<f32> {
    a.select(Axis(0), rows)
}

/// Row indices of a train / validation / test split.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub val: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

/// A random split of `n` rows into train / validation / test with the given fractions
/// (the rest is training data). Deterministic per seed.
pub fn split_indices(n: usize, val_frac: f64, test_frac: f64, seed: u64) -> Result<Split> {
    for (name, f) in [("val_frac", val_frac), ("test_frac", test_frac)] {
        if !(0.0..1.0).contains(&f) || f.is_nan() {
            return Err(Error::invalid(name, f, "a fraction in [0, 1)"));
        }
    }
    if val_frac + test_frac >= 1.0 {
        return Err(Error::invalid(
            "val_frac + test_frac",
            val_frac + test_frac,
            "less than 1 (some rows must remain for training)",
        ));
    }
    let p = permutation(&mut rng(seed), n);
    let nv = (n as f64 * val_frac).round() as usize;
    let nt = (n as f64 * test_frac).round() as usize;
    if n > 0 && nv + nt >= n {
        return Err(Error::invalid("rows", n, "enough rows to leave a training set"));
    }
    Ok(Split { val: p[..nv].to_vec(), test: p[nv..nv + nt].to_vec(), train: p[nv + nt..].to_vec() })
}

/// Mini-batches of indices `0..n` for one epoch: shuffled with a seed derived from
/// `(seed, epoch)` when `shuffle`, so that an epoch's batches are the same whether or not the run
/// was resumed. The last batch may be smaller.
pub fn epoch_batches(n: usize, batch_size: usize, shuffle: bool, seed: u64, epoch: usize) -> Result<Vec<Vec<usize>>> {
    let sampling = if shuffle { Sampling::Permutation } else { Sampling::InOrder };
    sampled_epoch_batches(n, batch_size, sampling, seed, epoch)
}

/// How the items of an epoch are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every item once, in a seeded random order per epoch.
    #[default]
    Permutation,
    /// Every item once, in index order.
    InOrder,
    /// `n` items drawn uniformly with replacement per epoch (the PyTorch reference trainers of
    /// the tracking paper sample frames this way).
    WithReplacement,
}

/// Mini-batches of one epoch drawn by `sampling` from `0..n`, seeded by `(seed, epoch)` so that
/// an epoch's batches are the same whether or not the run was resumed.
pub fn sampled_epoch_batches(
    n: usize,
    batch_size: usize,
    sampling: Sampling,
    seed: u64,
    epoch: usize,
) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(Error::invalid("batch_size", 0, "at least 1"));
    }
    let mut r = rng(derive_seed(seed, epoch as u64));
    let order: Vec<usize> = match sampling {
        Sampling::Permutation => permutation(&mut r, n),
        Sampling::InOrder => (0..n).collect(),
        Sampling::WithReplacement => {
            use rand::Rng;
            (0..n).map(|_| r.random_range(0..n)).collect()
        }
    };
    Ok(order.chunks(batch_size).map(|c| c.to_vec()).collect())
}

/// A supervised table: inputs `x` and targets `y` with the same number of rows.
#[derive(Debug, Clone)]
pub struct Table {
    /// Inputs, one row per sample.
    pub x: Array2<f32>,
    /// Targets, one row per sample.
    pub y: Array2<f32>,
}

impl Table {
    /// Pair inputs and targets; the row counts must agree.
    pub fn new(x: Array2<f32>, y: Array2<f32>) -> Result<Self> {
        if x.nrows() != y.nrows() {
            return Err(Error::ShapeMismatch {
                what: "table rows (x vs y)".into(),
                expected: vec![x.nrows()],
                got: vec![y.nrows()],
            });
        }
        Ok(Table { x, y })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// The given rows.
    pub fn rows(&self, idx: &[usize]) -> Table {
        Table { x: take_rows(&self.x.view(), idx), y: take_rows(&self.y.view(), idx) }
    }

    /// The given rows as `(x, y)` tensors.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let b = self.rows(idx);
        Ok((array_to_tensor(&b.x.view(), device)?, array_to_tensor(&b.y.view(), device)?))
    }

    /// Split into (train, val, test) tables.
    pub fn split(&self, s: &Split) -> (Table, Table, Table) {
        (self.rows(&s.train), self.rows(&s.val), self.rows(&s.test))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn tensor_round_trip() {
        let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let t = array_to_tensor(&a.view(), &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3]);
        assert_eq!(tensor_to_array(&t).unwrap(), a);
        // Non-contiguous view (transposed).
        let at = a.t();
        let t2 = array_to_tensor(&at, &Device::Cpu).unwrap();
        assert_eq!(tensor_to_array(&t2).unwrap(), at.to_owned());
        let t3 = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(tensor_to_array(&t3).is_err());
    }

    #[test]
    fn split_is_a_partition_and_deterministic() {
        let s = split_indices(100, 0.1, 0.2, 3).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (70, 10, 20));
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(s, split_indices(100, 0.1, 0.2, 3).unwrap());
        assert_ne!(s, split_indices(100, 0.1, 0.2, 4).unwrap());
        assert!(split_indices(10, 0.6, 0.5, 0).is_err());
        assert!(split_indices(10, -0.1, 0.0, 0).is_err());
    }

    #[test]
    fn batches_cover_everything_once() {
        let b = epoch_batches(10, 3, true, 1, 0).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(b, epoch_batches(10, 3, true, 1, 0).unwrap());
        assert_ne!(b, epoch_batches(10, 3, true, 1, 1).unwrap());
        assert_eq!(epoch_batches(4, 2, false, 0, 0).unwrap(), vec![vec![0, 1], vec![2, 3]]);
        assert!(epoch_batches(4, 0, false, 0, 0).is_err());
        // With replacement: n draws, reproducible per (seed, epoch), repeats allowed, all in range.
        let w = sampled_epoch_batches(50, 7, Sampling::WithReplacement, 2, 3).unwrap();
        let flat: Vec<usize> = w.concat();
        assert_eq!(flat.len(), 50);
        assert!(flat.iter().all(|&i| i < 50));
        let mut u = flat.clone();
        u.sort_unstable();
        u.dedup();
        assert!(u.len() < 50, "50 draws from 50 with replacement repeat with probability 1 − 50!/50^50");
        assert_eq!(w, sampled_epoch_batches(50, 7, Sampling::WithReplacement, 2, 3).unwrap());
        assert_ne!(w, sampled_epoch_batches(50, 7, Sampling::WithReplacement, 2, 4).unwrap());
    }

    #[test]
    fn table_rows_and_mismatch() {
        let t = Table::new(array![[1.0f32], [2.0], [3.0]], array![[10.0f32], [20.0], [30.0]]).unwrap();
        let r = t.rows(&[2, 0]);
        assert_eq!(r.y, array![[30.0f32], [10.0]]);
        assert!(Table::new(array![[1.0f32]], array![[1.0f32], [2.0]]).is_err());
    }
}
