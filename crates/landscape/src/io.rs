//! Raw-data files: npy arrays, JSON, and legacy-VTK structured grids.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use ndarray::{Array1, Array2};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

fn npy_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Npy { path: path.to_path_buf(), reason: e.to_string() }
}

/// Writes a pretty-printed JSON file.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, value).map_err(|e| Error::json(path, e))?;
    w.flush().map_err(|e| Error::io(path, e))
}

/// Reads a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_reader(std::io::BufReader::new(f)).map_err(|e| Error::json(path, e))
}

/// Writes a 1-D f64 `.npy`.
pub fn write_npy_1d(path: &Path, data: &[f64]) -> Result<()> {
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    Array1::from_vec(data.to_vec()).write_npy(BufWriter::new(f)).map_err(|e| npy_err(path, e))
}

/// Writes a 2-D f64 `.npy` (`rows × cols`, row-major `data`).
pub fn write_npy_2d(path: &Path, rows: usize, cols: usize, data: &[f64]) -> Result<()> {
    let a = Array2::from_shape_vec((rows, cols), data.to_vec()).map_err(|e| npy_err(path, e))?;
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    a.write_npy(BufWriter::new(f)).map_err(|e| npy_err(path, e))
}

/// Reads a 1-D f64 `.npy`.
pub fn read_npy_1d(path: &Path) -> Result<Vec<f64>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let a = Array1::<f64>::read_npy(f).map_err(|e| npy_err(path, e))?;
    Ok(a.to_vec())
}

/// Reads a 2-D f64 `.npy` as `(rows, cols, row-major data)`.
pub fn read_npy_2d(path: &Path) -> Result<(usize, usize, Vec<f64>)> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let a = Array2::<f64>::read_npy(f).map_err(|e| npy_err(path, e))?;
    let (r, c) = a.dim();
    Ok((r, c, a.iter().copied().collect()))
}
