//! Running experiments from config files, and `quickstart`.

use crate::registry;
use anyhow::{Context, Result, anyhow, bail};
use gradlab_core::dist::Comm;
use gradlab_core::experiment::{ExperimentConfig, RunContext};
use gradlab_core::report::Report;
use gradlab_core::run::RunDir;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

thread_local! {
    /// The ranks the experiments run on (set once by `main`; one process by default).
    static COMM: std::cell::RefCell<Rc<dyn Comm>> = std::cell::RefCell::new(Rc::new(gradlab_core::dist::Local));
}

/// Sets the ranks that experiments run on (`gradlab_mpi::world()` in `main`).
pub fn set_comm(comm: Rc<dyn Comm>) {
    COMM.with(|c| *c.borrow_mut() = comm);
}

/// The ranks set by `main` (one process unless started by an MPI launcher).
pub fn comm() -> Rc<dyn Comm> {
    COMM.with(|c| c.borrow().clone())
}

/// Refuses an experiment that does not split its work over ranks when there are several: every
/// rank would do the whole run.
fn check_ranks(comm: &dyn Comm, name: &str, exp: Option<&gradlab_core::experiment::Experiment>) -> Result<()> {
    if comm.size() > 1 && !exp.is_some_and(|e| e.uses_ranks) {
        let using: Vec<&str> = registry::all().iter().filter(|e| e.uses_ranks).map(|e| e.entry).collect();
        bail!(
            "experiment `{name}` does not split its work over MPI ranks, and this is rank {} of {}; run it as one \
             process, or choose one whose entry does ({})",
            comm.rank(),
            comm.size(),
            using.join(", ")
        );
    }
    Ok(())
}

/// The run folder of this rank: rank 0 makes (or takes) `make()`'s folder and tells the others,
/// which write their scratch records under `<run>/ranks/rank-<k>`. One process: `make()`.
fn rank_dir(comm: &dyn Comm, make: impl FnOnce() -> Result<RunDir>) -> Result<RunDir> {
    if comm.size() == 1 {
        return make();
    }
    let made =
        if comm.is_root() { Some(make().map(|d| d.path().to_path_buf()).map_err(|e| format!("{e:#}"))) } else { None };
    let made: std::result::Result<PathBuf, String> = gradlab_core::dist::broadcast_json(comm, 0, made)?;
    let path = made.map_err(|e| anyhow!("rank 0 could not make the run folder: {e}"))?;
    if comm.is_root() {
        return Ok(RunDir::at(path, true)?);
    }
    Ok(RunDir::at(path.join("ranks").join(format!("rank-{}", comm.rank())), true)?)
}

/// The entry name of the quickstart pseudo-experiment (handled here, not by a crate).
pub const QUICKSTART_ENTRY: &str = "xtask.quickstart";

/// Experiment names: the config files in `configs/` (excluding non-experiment configs).
pub fn known(root: &Path) -> Result<Vec<(String, ExperimentConfig)>> {
    let dir = root.join("configs");
    let mut out = Vec::new();
    let rd = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    for e in rd {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            // Configs that are not experiments (detector geometries etc.) have no `entry`.
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| anyhow!("{}: invalid JSON: {e}", p.display()))?;
            if v.get("entry").is_none() {
                continue;
            }
            let cfg = ExperimentConfig::load(&p)?;
            let name = p.file_stem().unwrap_or_default().to_string_lossy().to_string();
            out.push((name, cfg));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `cargo xtask list`.
pub fn list(root: &Path) -> Result<()> {
    let exps = known(root)?;
    let w = exps.iter().map(|(n, _)| n.len()).max().unwrap_or(10);
    for (name, cfg) in &exps {
        let rt = cfg
            .runtime
            .as_ref()
            .map(|r| {
                format!(" [quick {}, full {}]", r["quick"].as_str().unwrap_or("?"), r["full"].as_str().unwrap_or("?"))
            })
            .unwrap_or_default();
        println!("{name:<w$}  {}{rt}", cfg.description);
    }
    Ok(())
}

/// Run `configs/<name>.json` (or `config_override`); returns the run directory.
pub fn run_named(
    root: &Path,
    name: &str,
    quick: bool,
    out: Option<PathBuf>,
    sets: &[String],
    quiet: bool,
    config_override: Option<PathBuf>,
) -> Result<PathBuf> {
    let own = root.join("configs").join(format!("{name}.json"));
    let config_given = config_override.is_some();
    let path = match config_override {
        Some(p) => p,
        None => {
            if !own.exists() {
                let names: Vec<String> = known(root)?.into_iter().map(|(n, _)| n).collect();
                bail!("unknown experiment `{name}`; known experiments: {}", names.join(", "));
            }
            own.clone()
        }
    };
    let cfg = ExperimentConfig::load(&path)?;
    if config_given && own.exists() {
        // A config (or a run's config.json) of another experiment is refused, not run under this name.
        let expected = ExperimentConfig::load(&own)?.entry;
        if cfg.entry != expected {
            bail!(
                "{}: field `entry` is `{}`, but experiment `{name}` runs `{expected}`; \
                 use that config with the experiment it belongs to",
                path.display(),
                cfg.entry
            );
        }
    }
    let params = cfg.resolve(quick, sets)?;
    let comm = comm();
    check_ranks(&*comm, name, registry::find(&cfg.entry).as_ref())?;
    let dir = rank_dir(&*comm, || {
        Ok(match out {
            Some(o) => RunDir::at(o, false)?,
            None => RunDir::create(root.join("runs"), name)?,
        })
    })?;
    if cfg.entry == QUICKSTART_ENTRY {
        return quickstart(root, &path, &cfg, params, quiet, dir, Invocation { config_given, sets });
    }
    let exp = registry::find(&cfg.entry).ok_or_else(|| {
        let entries: Vec<&str> = registry::all().iter().map(|e| e.entry).collect();
        anyhow!("{}: field `entry`: unknown entry point `{}`; known: {}", path.display(), cfg.entry, entries.join(", "))
    })?;
    let mut ctx = RunContext::new(name, &path, &cfg.entry, params, quick, quiet, dir)?;
    ctx.set_comm(comm.clone());
    ctx.invoked_with(&cfg.description, config_given, sets)?;
    if comm.is_root() {
        let ranks = if comm.size() > 1 { format!(" on {} ranks", comm.size()) } else { String::new() };
        eprintln!("running {name}{}{ranks} → {}", if quick { " (quick)" } else { "" }, ctx.dir.path().display());
    }
    execute(&exp, &mut ctx)
}

/// The file a run leaves when its experiment returned successfully; `--resume` of such a run has
/// nothing to do.
pub const FINISHED: &str = "finished.json";

/// Run the entry point in `ctx`, then mark the run finished and say where its report is.
fn execute(exp: &gradlab_core::experiment::Experiment, ctx: &mut RunContext) -> Result<PathBuf> {
    let name = ctx.name.clone();
    let t0 = Instant::now();
    (exp.run)(ctx).map_err(|e| anyhow!("experiment {name} failed: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    ctx.dir.write_json(
        FINISHED,
        &serde_json::json!({"finished": gradlab_core::run::timestamp(), "last_invocation_s": secs}),
    )?;
    if ctx.comm().is_root() {
        eprintln!("{name} finished in {secs:.1} s; report: {}", ctx.dir.path().join("report.md").display());
    }
    Ok(ctx.dir.path().to_path_buf())
}

/// Continue the run in `run_dir` (`--resume`): its `config.json` must belong to experiment `name`;
/// the run keeps its parameters, scale and invocation, and its directory.
pub fn resume_named(root: &Path, name: &str, run_dir: &Path, quiet: bool) -> Result<PathBuf> {
    let file = run_dir.join("config.json");
    if !file.is_file() {
        bail!("--resume {}: no config.json there; give the folder of an earlier run of `{name}`", run_dir.display());
    }
    let cfg = ExperimentConfig::load(&file)?;
    let run = cfg.run.clone().unwrap_or_default();
    let experiment = run.get("experiment").and_then(|v| v.as_str()).unwrap_or_default();
    if experiment != name {
        bail!(
            "{}: field `run.experiment` is `{experiment}`, not `{name}`; resume it as `cargo xtask experiment {experiment} --resume {}`",
            file.display(),
            run_dir.display()
        );
    }
    if cfg.entry == QUICKSTART_ENTRY {
        bail!("--resume continues one experiment's run, not a quickstart; resume the experiment folders inside it");
    }
    let exp = registry::find(&cfg.entry)
        .ok_or_else(|| anyhow!("{}: field `entry`: unknown entry point `{}`", file.display(), cfg.entry))?;
    let quick = run.get("quick").and_then(|v| v.as_bool()).unwrap_or(false);
    let config_file = run.get("config_file").and_then(|v| v.as_str()).map(PathBuf::from).unwrap_or(file.clone());
    let sets: Vec<String> = match run.get("sets") {
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| anyhow!("{}: field `run.sets`: {e}", file.display()))?
        }
        None => Vec::new(),
    };
    let config_given = config_file != root.join("configs").join(format!("{name}.json"));
    if run_dir.join(FINISHED).is_file() {
        eprintln!(
            "{name}: the run in {} finished already ({FINISHED}); nothing to resume. Report: {}",
            run_dir.display(),
            run_dir.join("report.md").display()
        );
        return Ok(run_dir.to_path_buf());
    }
    let params = cfg.resolve(false, &[])?;
    let comm = comm();
    check_ranks(&*comm, name, Some(&exp))?;
    let dir = rank_dir(&*comm, || Ok(RunDir::at(run_dir, true)?))?;
    let mut ctx = RunContext::new(name, &config_file, &cfg.entry, params, quick, quiet, dir)?;
    ctx.set_comm(comm);
    ctx.resume = true;
    ctx.invoked_with(&cfg.description, config_given, &sets)?;
    eprintln!("resuming {name} in {}", ctx.dir.path().display());
    execute(&exp, &mut ctx)
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct QuickstartParams {
    /// Experiments to run at quick scale, in order.
    experiments: Vec<String>,
}

/// How a run was asked for: whether `--config` named the file, and the `--set` overrides.
struct Invocation<'a> {
    config_given: bool,
    sets: &'a [String],
}

fn quickstart(
    root: &Path,
    path: &Path,
    cfg: &ExperimentConfig,
    params: serde_json::Value,
    quiet: bool,
    dir: RunDir,
    Invocation { config_given, sets }: Invocation<'_>,
) -> Result<PathBuf> {
    let mut ctx = RunContext::new("quickstart", path, &cfg.entry, params, true, quiet, dir)?;
    ctx.invoked_with(&cfg.description, config_given, sets)?;
    let qp: QuickstartParams = ctx.params()?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let t_all = Instant::now();
    for name in &qp.experiments {
        if name == "quickstart" {
            bail!("{}: field `experiments` must not contain `quickstart` itself", path.display());
        }
        let out = ctx.dir.path().join(name);
        let t0 = Instant::now();
        let r = run_named(root, name, true, Some(out.clone()), &[], quiet, None);
        let secs = t0.elapsed().as_secs_f64();
        match r {
            Ok(_) => {
                rows.push(vec![name.clone(), "ok".into(), format!("{secs:.1}"), format!("[report]({name}/report.md)")])
            }
            Err(e) => {
                eprintln!("quickstart: {name} failed: {e:#}");
                rows.push(vec![name.clone(), format!("FAILED: {e}"), format!("{secs:.1}"), String::new()]);
                failed.push(name.clone());
            }
        }
    }
    let mut rep = Report::new("gradlab quickstart: every experiment at quick scale");
    rep.code("sh", "cargo xtask experiment quickstart");
    rep.table(&["experiment", "status", "seconds", "report"], &rows);
    rep.paragraph(&format!("Total: {:.1} s.", t_all.elapsed().as_secs_f64()));
    rep.write(&ctx.dir)?;
    ctx.dir.write_summary(&serde_json::json!({ "experiments": qp.experiments, "failed": failed }))?;
    eprintln!("quickstart index: {}", ctx.dir.path().join("report.md").display());
    if !failed.is_empty() {
        bail!("quickstart: {} experiment(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(ctx.dir.path().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_names_a_registered_entry_and_resolves() {
        let root = crate::project_root();
        let exps = known(&root).unwrap();
        assert!(exps.iter().any(|(n, _)| n == "core-regression"));
        for (name, cfg) in &exps {
            if cfg.entry != QUICKSTART_ENTRY {
                assert!(registry::find(&cfg.entry).is_some(), "{name}: entry {} not registered", cfg.entry);
            }
            cfg.resolve(true, &[]).unwrap();
            cfg.resolve(false, &[]).unwrap();
        }
    }

    #[test]
    fn quickstart_lists_only_known_experiments() {
        let root = crate::project_root();
        let exps = known(&root).unwrap();
        let qs = exps.iter().find(|(n, _)| n == "quickstart").expect("configs/quickstart.json");
        let names: Vec<&String> = exps.iter().map(|(n, _)| n).collect();
        for e in qs.1.params["experiments"].as_array().unwrap() {
            let e = e.as_str().unwrap().to_string();
            assert!(names.contains(&&e), "quickstart lists unknown experiment {e}");
        }
    }

    #[test]
    fn resume_refuses_a_folder_without_a_run_or_of_another_experiment() {
        let root = crate::project_root();
        let tmp = tempfile::tempdir().unwrap();
        let e = resume_named(&root, "core-regression", tmp.path(), true).unwrap_err().to_string();
        assert!(e.contains("no config.json"), "{e}");
        let sets = ["train.epochs=2".to_string()];
        let run = run_named(&root, "core-regression", true, Some(tmp.path().join("a")), &sets, true, None).unwrap();
        let e = resume_named(&root, "track-pat", &run, true).unwrap_err().to_string();
        assert!(e.contains("run.experiment") && e.contains("core-regression"), "{e}");
        // resuming a finished run reproduces it in place, scale and overrides kept
        let before = std::fs::read_to_string(run.join("summary.json")).unwrap();
        resume_named(&root, "core-regression", &run, true).unwrap();
        let after: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
        let before: serde_json::Value = serde_json::from_str(&before).unwrap();
        assert_eq!(before["r2"], after["r2"]);
        let cfg = ExperimentConfig::load(&run.join("config.json")).unwrap().run.unwrap();
        assert_eq!(cfg["quick"], true);
        assert_eq!(cfg["sets"][0], "train.epochs=2");
    }

    #[test]
    fn unknown_experiment_lists_known_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let e = run_named(&crate::project_root(), "no-such-thing", true, Some(tmp.path().join("o")), &[], true, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown experiment") && e.contains("core-regression"), "{e}");
    }

    #[test]
    fn a_runs_config_json_reproduces_the_run() {
        let root = crate::project_root();
        let tmp = tempfile::tempdir().unwrap();
        let sets = ["train.epochs=40".to_string()];
        let first = run_named(&root, "core-regression", true, Some(tmp.path().join("a")), &sets, true, None).unwrap();
        let cfg_file = first.join("config.json");
        let saved = ExperimentConfig::load(&cfg_file).unwrap();
        assert_eq!(saved.params["train"]["epochs"], 40, "overrides are in the resolved config");
        assert!(saved.params["train"].get("grad_accum").is_some(), "defaults are written out");
        let run = saved.run.clone().unwrap();
        assert_eq!(run["command"], "cargo xtask experiment core-regression --quick --set train.epochs=40");
        // Fed back (with or without --quick: the quick scale is already applied), it repeats the run.
        for quick in [false, true] {
            let out = tmp.path().join(format!("b{quick}"));
            let again =
                run_named(&root, "core-regression", quick, Some(out), &[], true, Some(cfg_file.clone())).unwrap();
            let again_cfg = ExperimentConfig::load(&again.join("config.json")).unwrap();
            assert_eq!(again_cfg.params, saved.params);
            let s1: serde_json::Value = gradlab_core::io::read_json(&first.join("summary.json")).unwrap();
            let s2: serde_json::Value = gradlab_core::io::read_json(&again.join("summary.json")).unwrap();
            for key in ["r2", "rmse", "mae", "r2_per_output", "best_val_loss", "steps"] {
                assert!(s1.get(key).is_some(), "summary has {key}: {s1}");
                assert_eq!(s1[key], s2[key], "{key}");
            }
            let cmd = again_cfg.run.unwrap()["command"].as_str().unwrap().to_string();
            assert!(cmd.contains("--config") && cmd.contains("config.json"), "{cmd}");
        }
        // Another experiment's config is refused by name.
        let e = run_named(&root, "landscape-demo", true, Some(tmp.path().join("c")), &[], true, Some(cfg_file))
            .unwrap_err()
            .to_string();
        assert!(e.contains("core.regression") && e.contains("landscape-demo"), "{e}");
    }

    #[test]
    fn bad_entry_and_bad_set_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.json");
        std::fs::write(&p, r#"{"entry": "nope.nothing", "description": "d", "params": {"a": 1}}"#).unwrap();
        let e = run_named(&crate::project_root(), "x", true, Some(tmp.path().join("o1")), &[], true, Some(p.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry") && e.contains("nope.nothing"), "{e}");
        let e =
            run_named(&crate::project_root(), "x", true, Some(tmp.path().join("o2")), &["b=2".into()], true, Some(p))
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown key `b`"), "{e}");
    }
}
