//! Property-based fuzzing of the inputs a user hands to every experiment: `--set` overrides on
//! the real config files, and `.npy` files (truncated, corrupted or random bytes). Nothing may
//! panic; every failure is an error that names what is wrong.
//!
//! The CI run tries `FUZZ_CASES` cases per property (default 256); a longer run:
//! `FUZZ_CASES=20000 cargo test --workspace --release --test fuzz_inputs` (see docs/reliability.md).

use std::path::{Path, PathBuf};

use gradlab_core::experiment::{ExperimentConfig, apply_set};
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

fn configs() -> Vec<(PathBuf, ExperimentConfig)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json")
            && let Ok(c) = ExperimentConfig::load(&p)
        {
            out.push((p, c));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 10, "configs found: {}", out.len());
    out
}

/// Every key path of a JSON value (objects only, array elements excluded).
fn key_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            out.push(p.clone());
            key_paths(x, &p, out);
        }
    }
}

/// Values a user might type after `=`: JSON of every kind, extremes, and plain garbage.
fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        Just("1e308".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("[0]".to_string()),
        Just("[1e300, -1e300]".to_string()),
        Just("\"\"".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Any `--set KEY=VALUE` on any config (an existing key or a made-up one): either applied,
    /// or an error naming `--set`; resolving the whole config never panics.
    #[test]
    fn set_overrides_never_panic(which in any::<prop::sample::Index>(), key in any::<prop::sample::Index>(),
                                 garbage_key in "[a-z._]{0,10}", use_garbage in any::<bool>(),
                                 raw in raw_value(), quick in any::<bool>()) {
        let all = configs();
        let (path, cfg) = &all[which.index(all.len())];
        let mut keys = Vec::new();
        key_paths(&cfg.params, "", &mut keys);
        let k = if use_garbage || keys.is_empty() { garbage_key } else { keys[key.index(keys.len())].clone() };
        let set = format!("{k}={raw}");
        let mut params = cfg.params.clone();
        if let Err(e) = apply_set(&mut params, &set) {
            prop_assert!(e.to_string().contains("--set"), "{}: {set}: {e}", path.display());
        }
        let _ = cfg.resolve(quick, &[set]);
    }

    /// `.npy` reading of a valid file cut short, with bytes flipped, or of random bytes: an
    /// error naming the file, never a panic.
    #[test]
    fn npy_reading_never_panics(cut in 0usize..200, flips in prop::collection::vec((0usize..200, any::<u8>()), 0..4),
                                random in prop::collection::vec(any::<u8>(), 0..160), use_random in any::<bool>()) {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("good.npy");
        gradlab_core::io::write_npy_2d(&good, 3, 4, &(0..12).map(f64::from).collect::<Vec<_>>()).unwrap();
        let mut bytes = std::fs::read(&good).unwrap();
        if use_random {
            bytes = random;
        } else {
            bytes.truncate(cut.min(bytes.len()));
            let n = bytes.len();
            for (i, b) in flips {
                if n > 0 {
                    bytes[i % n] = b;
                }
            }
        }
        let bad = tmp.path().join("bad.npy");
        std::fs::write(&bad, &bytes).unwrap();
        for r in [gradlab_core::io::read_npy_2d(&bad).map(|_| ()), gradlab_core::io::read_npy_1d(&bad).map(|_| ())] {
            if let Err(e) = r {
                prop_assert!(e.to_string().contains("bad.npy"), "{e}");
            }
        }
    }
}
