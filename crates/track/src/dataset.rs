//! Datasets of readout frames on disk: npy arrays plus a JSON manifest.
//!
//! Layout of a dataset folder, per split `<s>` (e.g. `train`, `val`, `test`):
//! - `<s>_hits_f32.npy`: `[hits, 4]` f32 — x, y, z [mm], edep [MeV];
//! - `<s>_hits_u32.npy`: `[hits, 4]` u32 — layer, cluster size, primary index, is-primary (0/1);
//! - `<s>_frame_ptr.npy`: `[frames + 1]` u64 — hit offsets of each frame;
//! - `<s>_frame_info.npy`: `[frames, 3]` f32 — spot x, spot y, primaries;
//! - `manifest.json`: format version, the full generating [`SimConfig`] (detector inline), seed,
//!   per split the frame-index range, counts and an FNV-1a checksum of every array.
//!
//! Frames of different splits use disjoint frame indices, i.e. independent RNG streams.
//! Reloading gives bit-identical frames; shapes, offsets and checksums are verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gradlab_core::io::{read_json, read_npy, write_json, write_npy};
use gradlab_core::observe::progress_bar;
use ndarray::{Array1, Array2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sim::{DetectorSource, Frame, FramePrimaries, Hit, SimConfig, Simulator};

/// Version of the on-disk format. 2: frames of N detected primaries (`frame_primaries` in the
/// config). Version 1 (same files) was written by the first simulator, whose frames fired N
/// protons: its manifests load with `frame_primaries = incident`; re-simulating from them gives
/// statistically close, not identical, frames (that simulator had a thin-step straggling bias).
pub const FORMAT_VERSION: u32 = 2;

/// One split in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitInfo {
    /// First frame index (RNG stream) of the split.
    pub first_frame: u64,
    /// Number of frames.
    pub frames: usize,
    /// Total hits.
    pub hits: usize,
    /// FNV-1a 64 checksums (hex) of each array file's data, by file name.
    pub checksums: BTreeMap<String, String>,
}

/// The manifest of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// On-disk format version.
    pub format_version: u32,
    /// Generator seed.
    pub seed: u64,
    /// The full simulation config (detector inline).
    pub config: SimConfig,
    /// Splits in generation order.
    pub splits: Vec<(String, SplitInfo)>,
}

impl Manifest {
    /// Info of split `name`.
    pub fn split(&self, name: &str) -> Result<&SplitInfo> {
        self.splits.iter().find(|(n, _)| n == name).map(|(_, s)| s).ok_or_else(|| {
            Error::invalid(
                "split",
                name.to_string(),
                format!("{:?}", self.splits.iter().map(|s| &s.0).collect::<Vec<_>>()),
            )
        })
    }
}

fn fnv1a(bytes: impl Iterator<Item = u8>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn checksum_f32(a: &[f32]) -> String {
    fnv1a(a.iter().flat_map(|v| v.to_le_bytes()))
}
fn checksum_u32(a: &[u32]) -> String {
    fnv1a(a.iter().flat_map(|v| v.to_le_bytes()))
}
fn checksum_u64(a: &[u64]) -> String {
    fnv1a(a.iter().flat_map(|v| v.to_le_bytes()))
}

fn file_names(split: &str) -> [String; 4] {
    [
        format!("{split}_hits_f32.npy"),
        format!("{split}_hits_u32.npy"),
        format!("{split}_frame_ptr.npy"),
        format!("{split}_frame_info.npy"),
    ]
}

/// Arrays of one split.
struct SplitArrays {
    hits_f32: Array2<f32>,
    hits_u32: Array2<u32>,
    frame_ptr: Array1<u64>,
    frame_info: Array2<f32>,
}

fn to_arrays(frames: &[Frame]) -> SplitArrays {
    let n: usize = frames.iter().map(|f| f.hits.len()).sum();
    let mut f32s = Vec::with_capacity(4 * n);
    let mut u32s = Vec::with_capacity(4 * n);
    let mut ptr = Vec::with_capacity(frames.len() + 1);
    let mut info = Vec::with_capacity(3 * frames.len());
    ptr.push(0u64);
    for f in frames {
        for h in &f.hits {
            f32s.extend_from_slice(&[h.x, h.y, h.z, h.edep]);
            u32s.extend_from_slice(&[h.layer as u32, h.cluster as u32, h.track, h.primary as u32]);
        }
        ptr.push(ptr.last().copied().unwrap_or(0) + f.hits.len() as u64);
        info.extend_from_slice(&[f.spot[0], f.spot[1], f.primaries as f32]);
    }
    SplitArrays {
        hits_f32: Array2::from_shape_vec((n, 4), f32s).expect("shape"),
        hits_u32: Array2::from_shape_vec((n, 4), u32s).expect("shape"),
        frame_ptr: Array1::from(ptr),
        frame_info: Array2::from_shape_vec((frames.len(), 3), info).expect("shape"),
    }
}

/// Generate a dataset into `dir`: `splits` = (name, frames) in order. Refuses to write into a
/// folder that already holds a manifest unless `overwrite`. Shows a progress bar if `progress`.
pub fn generate(
    dir: &Path,
    config: &SimConfig,
    seed: u64,
    splits: &[(String, usize)],
    overwrite: bool,
    progress: bool,
) -> Result<Manifest> {
    let manifest_path = dir.join("manifest.json");
    if manifest_path.exists() && !overwrite {
        return Err(Error::AlreadyExists { path: dir.to_path_buf() });
    }
    let mut seen = std::collections::HashSet::new();
    for (name, _) in splits {
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok || !seen.insert(name.clone()) {
            return Err(Error::invalid("splits", name.clone(), "unique names of letters, digits, '-' and '_'"));
        }
    }
    // Resolve the detector inline so the manifest alone reproduces the data.
    let mut config = config.clone();
    let det = config.detector.load()?;
    config.detector = DetectorSource::Inline(Box::new(det));
    let sim = Simulator::new(&config)?;
    std::fs::create_dir_all(dir).map_err(|e| gradlab_core::Error::io(dir, e))?;
    if overwrite && manifest_path.exists() {
        // Remove the old manifest first so a crash never leaves a stale manifest over new data.
        std::fs::remove_file(&manifest_path).map_err(|e| gradlab_core::Error::io(&manifest_path, e))?;
    }
    let total: usize = splits.iter().map(|s| s.1).sum();
    let bar = progress_bar(total as u64, "dataset", !progress);
    let mut first = 0u64;
    let mut infos = Vec::new();
    for (name, n) in splits {
        bar.set_message(format!("simulating {name} frames"));
        let frames: Vec<Frame> = (first..first + *n as u64)
            .into_par_iter()
            .map(|f| {
                let fr = sim.simulate_frame(seed, f);
                bar.inc(1);
                fr
            })
            .collect();
        let a = to_arrays(&frames);
        let names = file_names(name);
        write_npy(&dir.join(&names[0]), &a.hits_f32)?;
        write_npy(&dir.join(&names[1]), &a.hits_u32)?;
        write_npy(&dir.join(&names[2]), &a.frame_ptr)?;
        write_npy(&dir.join(&names[3]), &a.frame_info)?;
        let mut checksums = BTreeMap::new();
        checksums.insert(names[0].clone(), checksum_f32(a.hits_f32.as_slice().expect("standard layout")));
        checksums.insert(names[1].clone(), checksum_u32(a.hits_u32.as_slice().expect("standard layout")));
        checksums.insert(names[2].clone(), checksum_u64(a.frame_ptr.as_slice().expect("standard layout")));
        checksums.insert(names[3].clone(), checksum_f32(a.frame_info.as_slice().expect("standard layout")));
        infos.push((name.clone(), SplitInfo { first_frame: first, frames: *n, hits: a.hits_f32.nrows(), checksums }));
        first += *n as u64;
    }
    bar.finish_and_clear();
    let manifest = Manifest { format_version: FORMAT_VERSION, seed, config, splits: infos };
    write_json(&manifest_path, &manifest)?;
    Ok(manifest)
}

/// Read and check a dataset's manifest.
pub fn load_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let mut m: Manifest = read_json(&path)?;
    match m.format_version {
        FORMAT_VERSION => {}
        1 => m.config.frame_primaries = FramePrimaries::Incident,
        v => {
            return Err(Error::CorruptDataset {
                path,
                message: format!("format_version {v} but this build reads 1 and {FORMAT_VERSION}"),
            });
        }
    }
    Ok(m)
}

fn corrupt(path: PathBuf, message: impl Into<String>) -> Error {
    Error::CorruptDataset { path, message: message.into() }
}

/// Load every frame of split `split`, verifying shapes, offsets and checksums.
pub fn load_split(dir: &Path, split: &str) -> Result<Vec<Frame>> {
    let m = load_manifest(dir)?;
    let info = m.split(split)?;
    let names = file_names(split);
    let p: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let hits_f32: Array2<f32> = read_npy(&p[0])?;
    let hits_u32: Array2<u32> = read_npy(&p[1])?;
    let frame_ptr: Array1<u64> = read_npy(&p[2])?;
    let frame_info: Array2<f32> = read_npy(&p[3])?;
    let check = |k: usize, got: String| -> Result<()> {
        match info.checksums.get(&names[k]) {
            Some(want) if *want == got => Ok(()),
            Some(want) => Err(corrupt(p[k].clone(), format!("checksum {got} but manifest says {want}"))),
            None => Err(corrupt(p[k].clone(), "no checksum in manifest")),
        }
    };
    if hits_f32.dim() != (info.hits, 4) {
        return Err(corrupt(p[0].clone(), format!("shape {:?}, manifest expects ({}, 4)", hits_f32.dim(), info.hits)));
    }
    if hits_u32.dim() != (info.hits, 4) {
        return Err(corrupt(p[1].clone(), format!("shape {:?}, manifest expects ({}, 4)", hits_u32.dim(), info.hits)));
    }
    if frame_ptr.len() != info.frames + 1 {
        return Err(corrupt(
            p[2].clone(),
            format!("{} offsets, manifest expects {}", frame_ptr.len(), info.frames + 1),
        ));
    }
    if frame_info.dim() != (info.frames, 3) {
        return Err(corrupt(
            p[3].clone(),
            format!("shape {:?}, manifest expects ({}, 3)", frame_info.dim(), info.frames),
        ));
    }
    let (hf, hu) = (hits_f32.as_standard_layout(), hits_u32.as_standard_layout());
    let (fp, fi) = (frame_ptr.as_standard_layout(), frame_info.as_standard_layout());
    let (hf, hu, fp, fi) = (
        hf.as_slice().expect("standard"),
        hu.as_slice().expect("standard"),
        fp.as_slice().expect("standard"),
        fi.as_slice().expect("standard"),
    );
    check(0, checksum_f32(hf))?;
    check(1, checksum_u32(hu))?;
    check(2, checksum_u64(fp))?;
    check(3, checksum_f32(fi))?;
    if fp[0] != 0 || fp[info.frames] as usize != info.hits || fp.windows(2).any(|w| w[0] > w[1]) {
        return Err(corrupt(p[2].clone(), "frame offsets are not a non-decreasing 0..hits sequence"));
    }
    let mut frames = Vec::with_capacity(info.frames);
    for f in 0..info.frames {
        let mut hits = Vec::with_capacity((fp[f + 1] - fp[f]) as usize);
        for i in fp[f] as usize..fp[f + 1] as usize {
            let u = &hu[4 * i..4 * i + 4];
            if u[0] > u16::MAX as u32 || u[1] > u16::MAX as u32 || u[3] > 1 {
                return Err(corrupt(p[1].clone(), format!("hit {i} has out-of-range fields {u:?}")));
            }
            hits.push(Hit {
                x: hf[4 * i],
                y: hf[4 * i + 1],
                z: hf[4 * i + 2],
                edep: hf[4 * i + 3],
                layer: u[0] as u16,
                cluster: u[1] as u16,
                track: u[2],
                primary: u[3] == 1,
            });
        }
        frames.push(Frame { hits, spot: [fi[3 * f], fi[3 * f + 1]], primaries: fi[3 * f + 2] as u32 });
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splits() -> Vec<(String, usize)> {
        vec![("train".into(), 3), ("test".into(), 2)]
    }

    #[test]
    fn roundtrip_is_exact_and_overwrite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig::bergen(150.0, 20);
        let m = generate(dir.path(), &cfg, 5, &splits(), false, false).unwrap();
        assert_eq!(m.split("test").unwrap().first_frame, 3);
        let sim = Simulator::new(&cfg).unwrap();
        let train = load_split(dir.path(), "train").unwrap();
        let test = load_split(dir.path(), "test").unwrap();
        assert_eq!(train.len(), 3);
        for (i, f) in train.iter().chain(&test).enumerate() {
            assert_eq!(*f, sim.simulate_frame(5, i as u64), "frame {i}");
        }
        // Manifest alone reproduces the data.
        let m2 = load_manifest(dir.path()).unwrap();
        assert_eq!(Simulator::new(&m2.config).unwrap().simulate_frame(5, 4), test[1]);
        assert!(matches!(generate(dir.path(), &cfg, 5, &splits(), false, false), Err(Error::AlreadyExists { .. })));
        generate(dir.path(), &cfg, 6, &splits(), true, false).unwrap();
        assert_ne!(load_split(dir.path(), "train").unwrap(), train);
        assert!(load_split(dir.path(), "val").is_err());
    }

    #[test]
    fn corrupt_and_mismatched_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig::bergen(200.0, 10);
        generate(dir.path(), &cfg, 1, &splits(), false, false).unwrap();
        // Flip one byte of hit data (after the npy header).
        let f = dir.path().join("train_hits_f32.npy");
        let mut bytes = std::fs::read(&f).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x55;
        std::fs::write(&f, &bytes).unwrap();
        let e = load_split(dir.path(), "train").unwrap_err().to_string();
        assert!(e.contains("checksum") && e.contains("train_hits_f32.npy"), "{e}");
        // Truncated file → npy error naming the file.
        std::fs::write(dir.path().join("test_frame_ptr.npy"), b"\x93NUMPY garbage").unwrap();
        let e = load_split(dir.path(), "test").unwrap_err().to_string();
        assert!(e.contains("test_frame_ptr.npy"), "{e}");
        // Array from another split → shape mismatch.
        std::fs::copy(dir.path().join("train_frame_info.npy"), dir.path().join("test_frame_info.npy")).unwrap();
        std::fs::copy(dir.path().join("train_frame_ptr.npy"), dir.path().join("test_frame_ptr.npy")).unwrap();
        let e = load_split(dir.path(), "test").unwrap_err().to_string();
        assert!(e.contains("manifest expects"), "{e}");
        // A version-1 manifest (first simulator, no `frame_primaries`) loads as `incident`;
        // an unknown version is refused by number.
        let path = dir.path().join("manifest.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["config"]["frame_primaries"], "detected");
        v["format_version"] = 1.into();
        v["config"].as_object_mut().unwrap().remove("frame_primaries");
        std::fs::write(&path, v.to_string()).unwrap();
        assert_eq!(load_manifest(dir.path()).unwrap().config.frame_primaries, FramePrimaries::Incident);
        v["format_version"] = 7.into();
        std::fs::write(&path, v.to_string()).unwrap();
        let e = load_manifest(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format_version 7"), "{e}");
        // Broken manifest.
        std::fs::write(dir.path().join("manifest.json"), "{").unwrap();
        assert!(matches!(load_manifest(dir.path()), Err(Error::Core(gradlab_core::Error::Json { .. }))));
        // Bad split names.
        let e = generate(tempfile::tempdir().unwrap().path(), &cfg, 1, &[("a/b".into(), 1)], false, false);
        assert!(e.is_err());
    }
}
