//! Run directories: `runs/<experiment>/<timestamp>/`.
//!
//! A run writes its resolved `config.json` first, then `metrics.jsonl`, `summary.json`, figures
//! (PNG + SVG), raw arrays (npy) and `report.md`. A run directory is never reused: if the
//! timestamped name exists, a numeric suffix is added.

use crate::io::{JsonlWriter, write_json};
use crate::{Error, Result};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// A run's output directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

/// UTC timestamp `YYYYmmdd-HHMMSS` computed from the system clock (no time-zone database).
pub fn timestamp() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}{mo:02}{d:02}-{h:02}{m:02}{s:02}")
}

impl RunDir {
    /// Create `root/<experiment>/<timestamp>[-k]/`.
    pub fn create(root: impl AsRef<Path>, experiment: &str) -> Result<Self> {
        let base = root.as_ref().join(experiment);
        fs::create_dir_all(&base).map_err(|e| Error::io(&base, e))?;
        let ts = timestamp();
        for k in 0..1000 {
            let name = if k == 0 { ts.clone() } else { format!("{ts}-{k}") };
            let p = base.join(name);
            match fs::create_dir(&p) {
                Ok(()) => return Ok(RunDir { path: p }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&p, e)),
            }
        }
        Err(Error::AlreadyExists { path: base })
    }

    /// Use an existing (or new) directory as a run directory, e.g. `--out DIR`.
    /// Refuses a non-empty directory unless `allow_existing`.
    pub fn at(path: impl Into<PathBuf>, allow_existing: bool) -> Result<Self> {
        let path = path.into();
        if path.exists() {
            let non_empty = fs::read_dir(&path).map_err(|e| Error::io(&path, e))?.next().is_some();
            if non_empty && !allow_existing {
                return Err(Error::AlreadyExists { path });
            }
        } else {
            fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(RunDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside the run directory (subdirectories are created).
    pub fn file(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        Ok(p)
    }

    /// A subdirectory of the run directory (created).
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        Ok(p)
    }

    /// Write `value` as pretty JSON to `name`.
    pub fn write_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let p = self.file(name)?;
        write_json(&p, value)?;
        Ok(p)
    }

    /// Write the resolved configuration (`config.json`).
    pub fn write_config<T: Serialize + ?Sized>(&self, config: &T) -> Result<PathBuf> {
        self.write_json("config.json", config)
    }

    /// Write `summary.json`.
    pub fn write_summary<T: Serialize + ?Sized>(&self, summary: &T) -> Result<PathBuf> {
        self.write_json("summary.json", summary)
    }

    /// Write a text file.
    pub fn write_text(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.file(name)?;
        crate::io::write_text(&p, text)?;
        Ok(p)
    }

    /// Write a 2-D array as `.npy`.
    pub fn write_npy<A, D>(&self, name: &str, array: &ndarray::ArrayBase<A, D>) -> Result<PathBuf>
    where
        A: ndarray::Data,
        A::Elem: ndarray_npy::WritableElement,
        D: ndarray::Dimension,
    {
        let p = self.file(name)?;
        crate::io::write_npy(&p, array)?;
        Ok(p)
    }

    /// Open (append) a JSON-lines writer on `name`.
    pub fn jsonl(&self, name: &str) -> Result<JsonlWriter> {
        JsonlWriter::append(self.file(name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_format() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert_eq!(&t[8..9], "-");
        assert!(t.starts_with("20"));
    }

    #[test]
    fn run_dirs_are_never_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = RunDir::create(tmp.path(), "exp").unwrap();
        let b = RunDir::create(tmp.path(), "exp").unwrap();
        assert_ne!(a.path(), b.path());
        a.write_config(&serde_json::json!({"x": 1})).unwrap();
        assert!(RunDir::at(a.path(), false).is_err());
        assert!(RunDir::at(a.path(), true).is_ok());
    }

    #[test]
    fn jsonl_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let d = RunDir::at(tmp.path().join("r"), false).unwrap();
        let mut w = d.jsonl("metrics.jsonl").unwrap();
        w.log(&serde_json::json!({"step": 1, "loss": 0.5})).unwrap();
        w.log(&serde_json::json!({"step": 2, "loss": 0.25})).unwrap();
        let recs = crate::io::read_jsonl(&d.path().join("metrics.jsonl")).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1]["loss"], 0.25);
    }
}
