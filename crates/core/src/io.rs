//! Files: JSON, JSON lines and `.npy` arrays, read and written with typed errors that name the
//! file (and, for JSON read into a type, the field).
//!
//! Writes of whole files ([`write_json`], [`write_npy`], [`write_text`]) are **atomic**: the
//! content goes to a temporary file beside the target, which is then renamed over it, so a run
//! that is killed mid-write leaves either the old file or the new one, never half of one.

use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Write a file atomically: `fill` writes into a temporary file in the same directory, which is
/// flushed, synced and renamed over `path`.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let name = path.file_name().ok_or_else(|| Error::invalid("path", path.display(), "a path that names a file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::new(f);
        fill(&mut w)?;
        w.flush().map_err(|e| Error::io(&tmp, e))?;
        w.get_ref().sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(w);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Write `value` as pretty JSON (atomically, with a final newline).
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(|source| Error::Json { path: path.into(), source })?;
        w.write_all(b"\n").map_err(|e| Error::io(path, e))
    })
}

/// Write a text file (atomically).
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |w| w.write_all(text.as_bytes()).map_err(|e| Error::io(path, e)))
}

/// Read JSON from `path` into `T`; a value of the wrong type or an unknown field is reported
/// with the file and the field path (e.g. `train.epochs`).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::Json { path: path.into(), source: inner }
        } else {
            Error::config(path.display().to_string(), field, inner.to_string())
        }
    })
}

/// An append-only JSON-lines file, flushed after every record so that a killed run keeps
/// everything it logged.
#[derive(Debug)]
pub struct JsonlWriter {
    path: PathBuf,
    w: BufWriter<File>,
}

impl JsonlWriter {
    /// Open `path` for appending (created if missing). A torn last record (a process killed in
    /// the middle of writing it: no final newline) is cut off first, with a warning on stderr,
    /// so that the next record starts on a line of its own.
    pub fn append(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if let Some(keep) = complete_prefix_len(&path)? {
            let f = OpenOptions::new().write(true).open(&path).map_err(|e| Error::io(&path, e))?;
            f.set_len(keep).map_err(|e| Error::io(&path, e))?;
            eprintln!("warning: {}: cut off a torn last line (a write that was interrupted)", path.display());
        }
        let f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(JsonlWriter { path, w: BufWriter::new(f) })
    }

    /// Append one record.
    pub fn log<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<()> {
        serde_json::to_writer(&mut self.w, record).map_err(|source| Error::Json { path: self.path.clone(), source })?;
        self.w.write_all(b"\n").map_err(|e| Error::io(&self.path, e))?;
        self.w.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// When `path` exists and its last line has no final newline (a torn write), the length of the
/// part before that line.
fn complete_prefix_len(path: &Path) -> Result<Option<u64>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(None);
    }
    Ok(Some(bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i as u64 + 1)))
}

/// Read every record of a JSON-lines file (blank lines are skipped; a malformed line is an
/// error naming its line number). A malformed *last* line without a final newline is a record
/// torn by a killed writer: it is dropped with a warning on stderr
/// ([`read_jsonl_recovering`] reports it instead).
pub fn read_jsonl(path: &Path) -> Result<Vec<serde_json::Value>> {
    let (records, torn) = read_jsonl_recovering(path)?;
    if let Some(line) = torn {
        eprintln!("warning: {}: dropped the torn last line {line} (a write that was interrupted)", path.display());
    }
    Ok(records)
}

/// Like [`read_jsonl`], returning the line number of a dropped torn last line instead of warning.
pub fn read_jsonl_recovering(path: &Path) -> Result<(Vec<serde_json::Value>, Option<usize>)> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let torn_possible = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    let mut records = Vec::with_capacity(lines.len());
    for (k, (i, l)) in lines.iter().enumerate() {
        match serde_json::from_str(l) {
            Ok(v) => records.push(v),
            Err(_) if torn_possible && k + 1 == lines.len() => return Ok((records, Some(i + 1))),
            Err(source) => return Err(Error::JsonLine { path: path.into(), line: i + 1, source }),
        }
    }
    Ok((records, None))
}

fn npy_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Npy { path: path.to_path_buf(), message: e.to_string() }
}

/// Write an array of any dimension as `.npy` (atomically).
pub fn write_npy<A, D>(path: &Path, array: &ndarray::ArrayBase<A, D>) -> Result<()>
where
    A: ndarray::Data,
    A::Elem: ndarray_npy::WritableElement,
    D: ndarray::Dimension,
{
    use ndarray_npy::WriteNpyExt;
    write_atomic(path, |w| array.write_npy(w).map_err(|e| npy_err(path, e)))
}

/// Read an `.npy` array of element type `T` and dimension `D` (a wrong dtype or rank is an
/// error naming the file).
pub fn read_npy<T, D>(path: &Path) -> Result<ndarray::Array<T, D>>
where
    T: ndarray_npy::ReadableElement,
    D: ndarray::Dimension,
{
    use ndarray_npy::ReadNpyExt;
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    ndarray::Array::<T, D>::read_npy(std::io::BufReader::new(f)).map_err(|e| npy_err(path, e))
}

/// Write a 1-D f64 `.npy`.
pub fn write_npy_1d(path: &Path, data: &[f64]) -> Result<()> {
    write_npy(path, &ndarray::ArrayView1::from(data))
}

/// Write a 2-D f64 `.npy` (`rows × cols`, row-major `data`).
pub fn write_npy_2d(path: &Path, rows: usize, cols: usize, data: &[f64]) -> Result<()> {
    let a = ndarray::ArrayView2::from_shape((rows, cols), data).map_err(|e| npy_err(path, e))?;
    write_npy(path, &a)
}

/// Read a 1-D f64 `.npy`.
pub fn read_npy_1d(path: &Path) -> Result<Vec<f64>> {
    Ok(read_npy::<f64, ndarray::Ix1>(path)?.to_vec())
}

/// Read a 2-D f64 `.npy` as `(rows, cols, row-major data)`.
pub fn read_npy_2d(path: &Path) -> Result<(usize, usize, Vec<f64>)> {
    let a = read_npy::<f64, ndarray::Ix2>(path)?;
    let (r, c) = a.dim();
    Ok((r, c, a.iter().copied().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_typed_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.json");
        write_json(&p, &serde_json::json!({"train": {"epochs": 3}})).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["train"]["epochs"], 3);
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            train: U,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct U {
            epochs: String,
        }
        let e = read_json::<T>(&p).unwrap_err();
        assert!(matches!(&e, Error::Config { field, .. } if field == "train.epochs"), "{e}");
        fs::write(&p, "{ not json").unwrap();
        assert!(matches!(read_json::<serde_json::Value>(&p).unwrap_err(), Error::Json { .. }));
        assert!(matches!(
            read_json::<serde_json::Value>(&tmp.path().join("missing.json")).unwrap_err(),
            Error::Io { .. }
        ));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn jsonl_names_the_bad_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.jsonl");
        let mut w = JsonlWriter::append(&p).unwrap();
        w.log(&serde_json::json!({"a": 1})).unwrap();
        drop(w);
        fs::write(&p, "{\"a\": 1}\n\n{\"a\": \n").unwrap();
        let e = read_jsonl(&p).unwrap_err();
        assert!(matches!(e, Error::JsonLine { line: 3, .. }), "{e}");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_cut_off_before_appending() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.jsonl");
        fs::write(&p, "{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3, \"b").unwrap();
        let (r, torn) = read_jsonl_recovering(&p).unwrap();
        assert_eq!(r, vec![serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]);
        assert_eq!(torn, Some(3));
        assert_eq!(read_jsonl(&p).unwrap().len(), 2);
        let mut w = JsonlWriter::append(&p).unwrap();
        w.log(&serde_json::json!({"a": 4})).unwrap();
        drop(w);
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\": 1}\n{\"a\": 2}\n{\"a\":4}\n");
        // a malformed line in the middle, or a complete malformed last line, stays an error
        fs::write(&p, "{\"a\": 1}\n{\"a\n{\"a\": 2}").unwrap();
        assert!(matches!(read_jsonl(&p).unwrap_err(), Error::JsonLine { line: 2, .. }));
        // a torn first and only line leaves an empty file
        fs::write(&p, "{\"a\"").unwrap();
        assert_eq!(read_jsonl_recovering(&p).unwrap(), (vec![], Some(1)));
        JsonlWriter::append(&p).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn npy_round_trip_and_wrong_dtype() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.npy");
        write_npy_2d(&p, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(read_npy_2d(&p).unwrap(), (2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert!(read_npy_1d(&p).is_err());
        assert!(matches!(read_npy::<f32, ndarray::Ix2>(&p).unwrap_err(), Error::Npy { .. }));
        assert!(write_npy_2d(&p, 2, 2, &[1.0]).is_err());
        let q = tmp.path().join("y.npy");
        write_npy_1d(&q, &[0.5, -1.0]).unwrap();
        assert_eq!(read_npy_1d(&q).unwrap(), vec![0.5, -1.0]);
    }
}
