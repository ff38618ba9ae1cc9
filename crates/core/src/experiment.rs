//! Experiments: config files, parameter resolution and the run context.
//!
//! An experiment is a config file `configs/<name>.json`:
//!
//! ```json
//! {
//!   "entry": "core.regression",
//!   "description": "one line shown by `cargo xtask list`",
//!   "params": { "...": "the paper-scale parameters" },
//!   "quick":  { "...": "overrides deep-merged into params for --quick" }
//! }
//! ```
//!
//! `entry` names an [`Experiment`] that a crate exports from its `experiments()` function. The
//! runner resolves the parameters (params, then `quick` if asked, then each `--set a.b=value`),
//! creates the run directory, writes the resolved `config.json` first, and calls the entry point
//! with a [`RunContext`].
//!
//! **A run's `config.json` is itself a config file.** It has the same fields (`entry`,
//! `description`, `params`, an empty `quick`) plus `run`, which says how the run was invoked.
//! When the experiment reads its typed parameters ([`RunContext::params`]), `params` is
//! rewritten with the typed values, defaults included, so that
//! `cargo xtask experiment <name> --config runs/<name>/<stamp>/config.json` repeats the run
//! exactly, whatever the defaults in the code become later.

use crate::io::JsonlWriter;
use crate::run::RunDir;
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What an experiment entry point returns: any error converts with `?`.
pub type ExperimentResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// An experiment entry point exported by a crate.
#[derive(Clone, Copy)]
pub struct Experiment {
    /// The name a config's `entry` field refers to, e.g. `"core.regression"`.
    pub entry: &'static str,
    /// One line for listings.
    pub description: &'static str,
    /// The entry point.
    pub run: fn(&mut RunContext) -> ExperimentResult,
    /// Whether the entry point splits its work over the ranks of [`RunContext::comm`] (under
    /// `mpirun`/`srun`); an experiment without it refuses to run on more than one rank.
    pub uses_ranks: bool,
}

impl std::fmt::Debug for Experiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Experiment").field("entry", &self.entry).field("description", &self.description).finish()
    }
}

/// A parsed `configs/<name>.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Entry point name.
    pub entry: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Paper-scale parameters.
    #[serde(default = "empty_object")]
    pub params: Value,
    /// Overrides for the quick scale.
    #[serde(default = "empty_object")]
    pub quick: Value,
    /// Documented runtimes, free text (e.g. `{"quick": "40 s", "full": "3 h"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Value>,
    /// In a run's `config.json`: how that run was invoked (experiment, source config, quick,
    /// overrides, command). Ignored when the file is used as a config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Value>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl ExperimentConfig {
    /// Load and check a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let cfg: ExperimentConfig = crate::io::read_json(path)?;
        let file = path.display().to_string();
        if !cfg.params.is_object() {
            return Err(Error::config(file, "params", "must be a JSON object"));
        }
        if !cfg.quick.is_object() {
            return Err(Error::config(file, "quick", "must be a JSON object"));
        }
        Ok(cfg)
    }

    /// The parameters for a run: `params`, `quick` merged in when `quick`, then each
    /// `key.path=value` override (value parsed as JSON, else taken as a string).
    pub fn resolve(&self, quick: bool, sets: &[String]) -> Result<Value> {
        let mut p = self.params.clone();
        if quick {
            merge(&mut p, &self.quick);
        }
        for s in sets {
            apply_set(&mut p, s)?;
        }
        Ok(p)
    }
}

/// Deep-merge `over` into `base` (objects merge key by key; anything else replaces).
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Apply one `a.b.c=value` override. The path must exist in the parameters (a typo is an error
/// that lists the keys that do exist), except that new keys may be added to an object whose
/// parent exists when the value is an object.
pub fn apply_set(params: &mut Value, set: &str) -> Result<()> {
    let (path, raw) = set
        .split_once('=')
        .ok_or_else(|| Error::config("<--set>", set, "expected `key.path=value`, e.g. `--set train.epochs=5`"))?;
    let path = path.trim();
    if path.is_empty() {
        return Err(Error::config("<--set>", set, "empty key path"));
    }
    let value: Value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let keys: Vec<&str> = path.split('.').collect();
    let mut cur = params;
    for (i, k) in keys.iter().enumerate() {
        let obj = cur
            .as_object_mut()
            .ok_or_else(|| Error::config("<--set>", keys[..i].join("."), "is not an object, cannot index into it"))?;
        if i + 1 == keys.len() {
            if !obj.contains_key(*k) {
                let known: Vec<&String> = obj.keys().collect();
                return Err(Error::config("<--set>", path, format!("unknown key `{k}`; known keys here: {known:?}")));
            }
            obj.insert((*k).to_string(), value);
            return Ok(());
        }
        if !obj.contains_key(*k) {
            let known: Vec<&String> = obj.keys().collect();
            return Err(Error::config("<--set>", path, format!("unknown key `{k}`; known keys here: {known:?}")));
        }
        cur = obj.get_mut(*k).expect("checked above");
    }
    Ok(())
}

/// Deserialise `value` into `T`, reporting the field path of the first problem.
pub fn from_value<T: DeserializeOwned>(value: &Value, file: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        Error::config(file, field, e.into_inner().to_string())
    })
}

/// Everything an experiment entry point gets.
#[derive(Debug)]
pub struct RunContext {
    /// The experiment (config) name, e.g. `core-regression`.
    pub name: String,
    /// The config file it came from.
    pub config_file: PathBuf,
    /// The resolved parameters.
    pub params: Value,
    /// Whether this is the quick scale.
    pub quick: bool,
    /// Suppress progress bars.
    pub quiet: bool,
    /// The run directory (config.json already written).
    pub dir: RunDir,
    /// Whether this run continues an earlier one in the same directory (`--resume RUN_DIR`):
    /// experiments then continue training from the checkpoints they find there (see
    /// `Trainer::resume`) instead of starting over.
    pub resume: bool,
    /// Test hook for kill-and-resume tests: after this many durable saves ([`RunContext::saved`],
    /// [`RunContext::stage`]) the run returns [`Error::Interrupted`], leaving its folder as a
    /// SIGKILL right after that save would.
    pub stop_after_saves: Option<usize>,
    saves: std::cell::Cell<usize>,
    entry: String,
    description: String,
    /// Whether `config_file` was given with `--config` (not `configs/<name>.json`).
    config_given: bool,
    sets: Vec<String>,
    metrics: Option<JsonlWriter>,
    comm: std::rc::Rc<dyn crate::dist::Comm>,
}

impl RunContext {
    /// Create the context: writes `config.json` (entry, the resolved parameters, and how the
    /// run was invoked) into `dir` before anything else.
    pub fn new(
        name: &str,
        config_file: &Path,
        entry: &str,
        params: Value,
        quick: bool,
        quiet: bool,
        dir: RunDir,
    ) -> Result<Self> {
        let ctx = RunContext {
            name: name.to_string(),
            config_file: config_file.to_path_buf(),
            params,
            quick,
            quiet,
            dir,
            resume: false,
            stop_after_saves: None,
            saves: std::cell::Cell::new(0),
            entry: entry.to_string(),
            description: String::new(),
            config_given: false,
            sets: Vec::new(),
            metrics: None,
            comm: std::rc::Rc::new(crate::dist::Local),
        };
        ctx.write_config()?;
        Ok(ctx)
    }

    /// Record how the run was invoked, for `config.json` and [`RunContext::command`]: the
    /// config's description, whether the config file was given with `--config`, and the `--set`
    /// overrides in order.
    pub fn invoked_with(&mut self, description: &str, config_given: bool, sets: &[String]) -> Result<()> {
        self.description = description.to_string();
        self.config_given = config_given;
        self.sets = sets.to_vec();
        self.write_config()
    }

    fn write_config(&self) -> Result<()> {
        let cfg = ExperimentConfig {
            entry: self.entry.clone(),
            description: self.description.clone(),
            params: self.params.clone(),
            quick: empty_object(),
            runtime: None,
            run: Some(serde_json::json!({
                "experiment": self.name,
                "config_file": self.config_file.display().to_string(),
                "quick": self.quick,
                "sets": self.sets,
                "command": self.command(),
            })),
        };
        self.dir.write_config(&cfg)?;
        Ok(())
    }

    /// The parameters as a typed config (use `#[serde(deny_unknown_fields)]`); errors name the
    /// config file and the field path. The typed values (defaults filled in) replace the
    /// parameters in `config.json`, so that the file reproduces the run.
    pub fn params<T: DeserializeOwned + Serialize>(&mut self) -> Result<T> {
        let typed: T = from_value(&self.params, &self.config_file.display().to_string())?;
        self.params = serde_json::to_value(&typed)
            .map_err(|e| Error::config(self.config_file.display().to_string(), "params", e.to_string()))?;
        self.write_config()?;
        Ok(typed)
    }

    /// The run's `metrics.jsonl` writer (opened on first use).
    pub fn metrics(&mut self) -> Result<&mut JsonlWriter> {
        if self.metrics.is_none() {
            self.metrics = Some(self.dir.jsonl("metrics.jsonl")?);
        }
        Ok(self.metrics.as_mut().expect("just set"))
    }

    /// Record that a unit of work is durably saved in the run folder (a stage, a chunk, a point):
    /// counts it for the test hook [`RunContext::stop_after_saves`], which then stops the run.
    pub fn saved(&self) -> Result<()> {
        let n = self.saves.get() + 1;
        self.saves.set(n);
        match self.stop_after_saves {
            Some(stop) if n >= stop => Err(Error::Interrupted { saves: n }),
            _ => Ok(()),
        }
    }

    /// The ranks this run is split over: [`crate::dist::Local`] unless the runner was started
    /// under an MPI launcher (then rank 0 writes the run folder and rank `k > 0` writes only
    /// scratch records, in `<run>/ranks/rank-k`).
    pub fn comm(&self) -> &dyn crate::dist::Comm {
        &*self.comm
    }

    /// Sets the ranks of this run (see [`RunContext::comm`]).
    pub fn set_comm(&mut self, comm: std::rc::Rc<dyn crate::dist::Comm>) {
        self.comm = comm;
    }

    /// [`RunContext::stage`] for work split over the ranks: every rank calls it; rank 0 decides
    /// whether the stage is finished already (a resumed run with its file) and tells the others.
    /// If not, `compute` runs on every rank (it is collective, e.g. a gather) and must return
    /// `Some` on rank 0, whose value is written. Returns the value on rank 0, `None` elsewhere.
    pub fn stage_on<T, E>(
        &self,
        key: &str,
        compute: impl FnOnce() -> std::result::Result<Option<T>, E>,
    ) -> std::result::Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error> + std::fmt::Display,
    {
        let missing = || Error::invalid("stage value", "None on rank 0", "Some: rank 0 holds a stage's value");
        let comm = &*self.comm;
        if comm.size() == 1 {
            return self.stage(key, || compute()?.ok_or_else(|| missing().into())).map(Some);
        }
        let root = comm.is_root();
        let file = crate::dist::agree(comm, || -> std::result::Result<_, E> {
            Ok(if root { Some(self.stage_file(key)?) } else { None })
        })?;
        let done = file.as_ref().map(|f| self.resume && f.is_file());
        let done: bool = crate::dist::broadcast_json(comm, 0, done)?;
        match file {
            Some(file) if done => Ok(Some(self.read_stage(&file)?)),
            _ if done => Ok(None),
            file => {
                let value = compute()?;
                match file {
                    Some(file) => Ok(Some(self.write_stage(key, &file, value.ok_or_else(missing)?)?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// The file of stage `key`: `stages/<escaped key>.json`.
    fn stage_file(&self, key: &str) -> Result<std::path::PathBuf> {
        if key.is_empty() {
            return Err(Error::invalid("stage key", "\"\"", "a non-empty name"));
        }
        let mut name = String::new();
        for b in key.bytes() {
            if b.is_ascii_alphanumeric() || b"-_".contains(&b) || (b == b'.' && !name.is_empty()) {
                name.push(b as char);
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        Ok(self.dir.subdir("stages")?.join(format!("{name}.json")))
    }

    /// A finished stage of the run, kept in `stages/<key>.json`: when the run continues
    /// ([`RunContext::resume`]) and that file exists, its value is read back instead of calling
    /// `compute`; otherwise `compute` runs and its value is written (atomically) before it is
    /// returned. `key` is any non-empty text (characters other than letters, digits and `-_.`
    /// are percent-encoded in the file name). A stage's value must determine everything the run
    /// later does with it, so that a resumed run equals an uninterrupted one.
    pub fn stage<T, E>(
        &self,
        key: &str,
        compute: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
    {
        let file = self.stage_file(key)?;
        if self.resume && file.is_file() {
            return Ok(self.read_stage(&file)?);
        }
        let value = compute()?;
        Ok(self.write_stage(key, &file, value)?)
    }

    fn read_stage<T: DeserializeOwned>(&self, file: &Path) -> Result<T> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::Json { path: file.to_path_buf(), source: e })?;
        from_value(&v, &file.display().to_string())
    }

    fn write_stage<T: Serialize + DeserializeOwned>(&self, key: &str, file: &Path, value: T) -> Result<T> {
        let json = serde_json::to_value(&value).map_err(|e| Error::Json { path: file.to_path_buf(), source: e })?;
        // JSON has no NaN or infinity (serde writes them as null): a value that does not read
        // back is not kept, and the stage is computed again on resume.
        if from_value::<T>(&json, "").is_err() {
            eprintln!(
                "warning: stage `{key}` holds numbers JSON cannot keep (NaN or infinity); it is not saved and a resumed run computes it again"
            );
            return Ok(value);
        }
        crate::io::write_json(file, &json)?;
        self.saved()?;
        Ok(value)
    }

    /// The command line that reproduces this run: the experiment, `--quick`, `--config` when the
    /// config file was given, and every `--set` in order (shell-quoted where needed).
    pub fn command(&self) -> String {
        let mut c = format!("cargo xtask experiment {}", self.name);
        if self.quick {
            c.push_str(" --quick");
        }
        if self.config_given {
            c.push_str(&format!(" --config {}", shell_quote(&self.config_file.display().to_string())));
        }
        for s in &self.sets {
            c.push_str(&format!(" --set {}", shell_quote(s)));
        }
        c
    }
}

/// `s` quoted for a POSIX shell when it has characters the shell would interpret.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx_in(dir: &Path, existing: bool) -> RunContext {
        let d = RunDir::at(dir, existing).unwrap();
        RunContext::new("t", Path::new("t.json"), "core.t", json!({}), true, true, d).unwrap()
    }

    /// Stages are computed once: a resumed run reads them back, the test hook stops the run right
    /// after the n-th save, a value JSON cannot keep (NaN) is recomputed, and bad keys are refused.
    #[test]
    fn stages_are_kept_and_read_back_on_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let mut calls = 0;
        let mut ctx = ctx_in(tmp.path(), false);
        ctx.stop_after_saves = Some(2);
        let a: Vec<f64> = ctx
            .stage("a", || -> Result<_> {
                calls += 1;
                Ok(vec![0.1, 1e-300, -3.5])
            })
            .unwrap();
        let e = ctx
            .stage("b-1.x", || -> Result<_> {
                calls += 1;
                Ok(7u32)
            })
            .unwrap_err();
        assert!(matches!(e, Error::Interrupted { saves: 2 }), "{e}");
        assert_eq!(calls, 2);
        let mut ctx = ctx_in(tmp.path(), true);
        ctx.resume = true;
        let a2: Vec<f64> = ctx
            .stage("a", || -> Result<_> {
                calls += 1;
                Ok(vec![])
            })
            .unwrap();
        let b: u32 = ctx
            .stage("b-1.x", || -> Result<_> {
                calls += 1;
                Ok(0)
            })
            .unwrap();
        assert_eq!((a2, b, calls), (a, 7, 2));
        let nan: f64 = ctx
            .stage("nan", || -> Result<_> {
                calls += 1;
                Ok(f64::NAN)
            })
            .unwrap();
        assert!(nan.is_nan() && !tmp.path().join("stages/nan.json").exists());
        let again: f64 = ctx
            .stage("nan", || -> Result<_> {
                calls += 1;
                Ok(1.0)
            })
            .unwrap();
        assert_eq!((again, calls), (1.0, 4));
        // Without resume a stage is computed again and its file replaced.
        ctx.resume = false;
        let b: u32 = ctx.stage("b-1.x", || -> Result<_> { Ok(9) }).unwrap();
        assert_eq!(b, 9);
        let e = ctx.stage("", || -> Result<_> { Ok(1) }).unwrap_err().to_string();
        assert!(e.contains("stage key"), "{e}");
        // Any other key is a file of its own inside `stages/`.
        for (i, key) in ["../x", ".hidden", "a/b", "a b", "a%20b", "é"].into_iter().enumerate() {
            let _: usize = ctx.stage(key, || -> Result<_> { Ok(i) }).unwrap();
        }
        ctx.resume = true;
        for (i, key) in ["../x", ".hidden", "a/b", "a b", "a%20b", "é"].into_iter().enumerate() {
            assert_eq!(ctx.stage(key, || -> Result<_> { Ok(99) }).unwrap(), i, "{key}");
        }
        let files = std::fs::read_dir(tmp.path().join("stages")).unwrap().count();
        assert_eq!(files, 3 + 6, "a, b-1.x, nan (its finite value) and one per key");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        seed: u64,
        train: T,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        epochs: usize,
        lr: f64,
    }

    fn cfg() -> ExperimentConfig {
        serde_json::from_value(json!({
            "entry": "x", "description": "d",
            "params": {"seed": 1, "train": {"epochs": 100, "lr": 0.001}},
            "quick": {"train": {"epochs": 2}}
        }))
        .unwrap()
    }

    #[test]
    fn quick_merges_and_sets_apply() {
        let c = cfg();
        let p = c.resolve(false, &[]).unwrap();
        assert_eq!(p["train"]["epochs"], 100);
        let p = c.resolve(true, &["train.lr=0.1".into(), "seed=9".into()]).unwrap();
        assert_eq!(p["train"]["epochs"], 2);
        assert_eq!(p["train"]["lr"], 0.1);
        assert_eq!(p["seed"], 9);
    }

    #[test]
    fn unknown_set_key_is_named() {
        let e = cfg().resolve(false, &["train.epoch=3".into()]).unwrap_err().to_string();
        assert!(e.contains("train.epoch") && e.contains("epochs"), "{e}");
        assert!(cfg().resolve(false, &["novalue".into()]).is_err());
    }

    #[test]
    fn malformed_config_names_the_field() {
        let v = json!({"seed": 1, "train": {"epochs": "many", "lr": 0.1}});
        let e = from_value::<P>(&v, "configs/x.json").unwrap_err().to_string();
        assert!(e.contains("configs/x.json") && e.contains("train.epochs"), "{e}");
        let v = json!({"seed": 1, "train": {"epochs": 1, "lr": 0.1, "momentum": 0.9}});
        let e = from_value::<P>(&v, "c.json").unwrap_err().to_string();
        assert!(e.contains("momentum"), "{e}");
    }

    #[test]
    fn config_file_errors_name_file_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("bad.json");
        std::fs::write(&p, r#"{"entry": "x", "description": "d", "params": [1]}"#).unwrap();
        let e = ExperimentConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("params"), "{e}");
        std::fs::write(&p, r#"{"entry": 3, "description": "d"}"#).unwrap();
        let e = ExperimentConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("entry"), "{e}");
    }

    #[test]
    fn context_writes_config_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path(), "x").unwrap();
        let mut ctx =
            RunContext::new("x", Path::new("configs/x.json"), "core.x", json!({"seed": 1}), true, true, dir).unwrap();
        let c: Value = crate::io::read_json(&ctx.dir.path().join("config.json")).unwrap();
        assert_eq!(c["params"]["seed"], 1);
        ctx.metrics().unwrap().log(&json!({"a": 1})).unwrap();
        assert!(ctx.dir.path().join("metrics.jsonl").exists());
        assert_eq!(ctx.command(), "cargo xtask experiment x --quick");
        ctx.invoked_with("d", true, &["train.lr=0.1".into(), "name=a b".into()]).unwrap();
        assert_eq!(
            ctx.command(),
            "cargo xtask experiment x --quick --config configs/x.json --set train.lr=0.1 --set 'name=a b'"
        );
    }

    #[test]
    fn config_json_holds_typed_params_and_loads_as_a_config() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Q {
            seed: u64,
            #[serde(default = "three")]
            epochs: usize,
        }
        fn three() -> usize {
            3
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path(), "x").unwrap();
        let mut ctx =
            RunContext::new("x", Path::new("configs/x.json"), "core.x", json!({"seed": 1}), true, true, dir).unwrap();
        ctx.invoked_with("an experiment", false, &["seed=1".into()]).unwrap();
        let q: Q = ctx.params().unwrap();
        let file = ctx.dir.path().join("config.json");
        let back = ExperimentConfig::load(&file).unwrap();
        assert_eq!(back.entry, "core.x");
        assert_eq!(back.params, json!({"seed": 1, "epochs": 3}), "defaults are written out");
        assert_eq!(back.resolve(true, &[]).unwrap(), back.resolve(false, &[]).unwrap(), "quick is already applied");
        assert_eq!(from_value::<Q>(&back.params, "c").unwrap(), q);
        assert_eq!(back.run.unwrap()["command"], "cargo xtask experiment x --quick --set seed=1");
    }
}
