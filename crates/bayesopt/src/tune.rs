//! Tuning any program from the command line: the library side of
//! `cargo xtask tune --space space.json -- <command with {param} placeholders>`.
//!
//! For each trial, every `{name}` in the command's arguments is replaced by the trial's
//! value of parameter `name` (`{{` and `}}` give literal braces), the command runs (no
//! shell, unless the command itself is one), and the objective (minimised) is read from
//! the last non-empty line of its standard output: either the whole line is a number, or
//! its last token after whitespace, `=` or `:` is (`loss = 0.123`, `val_loss: 0.12`).
//! A non-zero exit, a timeout or an unparsable line records the trial as failed. The
//! study is saved after every ask and tell; running again with the same study file
//! resumes (re-running trials that were in flight) until the budget is reached.

use crate::error::{Error, Result};
use crate::minimize::{Minimizer, StopRule};
use crate::space::{Point, Space, Value};
use crate::study::{Study, StudyConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Options of [`run_tune`].
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// Search-space file `{"params": [...]}`.
    pub space: PathBuf,
    /// Study file: created, or resumed if it exists.
    pub study: PathBuf,
    /// Program and arguments with `{param}` placeholders.
    pub command: Vec<String>,
    /// Total evaluations (including those already in a resumed study).
    pub budget: usize,
    /// Configuration of a new study (ignored when resuming: the stored one is used).
    pub config: StudyConfig,
    /// Commands run at once (batch size q, parallel threads).
    pub parallel: usize,
    /// Per-evaluation time limit.
    pub timeout: Option<Duration>,
    /// Stopping rule.
    pub stop: StopRule,
    /// JSON-lines history (appended).
    pub history: Option<PathBuf>,
    /// Working directory of the command.
    pub workdir: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
}

impl TuneOptions {
    /// Options with defaults: budget 50, one command at a time, no timeout.
    pub fn new(space: impl Into<PathBuf>, study: impl Into<PathBuf>, command: Vec<String>) -> Self {
        TuneOptions {
            space: space.into(),
            study: study.into(),
            command,
            budget: 50,
            config: StudyConfig::default(),
            parallel: 1,
            timeout: None,
            stop: StopRule::default(),
            history: None,
            workdir: None,
            quiet: false,
        }
    }
}

/// Outcome of [`run_tune`].
#[derive(Clone, Debug, Serialize)]
pub struct TuneReport {
    /// Study file.
    pub study: PathBuf,
    /// True if an existing study was resumed.
    pub resumed: bool,
    /// Finished evaluations (all runs of this study).
    pub evaluations: usize,
    /// Failed evaluations.
    pub failed: usize,
    /// Best parameters by name.
    pub best_params: Option<BTreeMap<String, Value>>,
    /// Best objective value.
    pub best_value: Option<f64>,
    /// The command line of the best trial.
    pub best_command: Option<Vec<String>>,
    /// Why the run stopped.
    pub stopped_by: String,
}

/// Replaces `{name}` placeholders with the point's values.
pub fn substitute(args: &[String], space: &Space, point: &Point) -> Result<Vec<String>> {
    args.iter()
        .map(|a| {
            let mut out = String::with_capacity(a.len());
            let mut chars = a.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '{' if chars.peek() == Some(&'{') => {
                        chars.next();
                        out.push('{');
                    }
                    '}' if chars.peek() == Some(&'}') => {
                        chars.next();
                        out.push('}');
                    }
                    '{' => {
                        let mut name = String::new();
                        let mut closed = false;
                        for c in chars.by_ref() {
                            if c == '}' {
                                closed = true;
                                break;
                            }
                            name.push(c);
                        }
                        if !closed {
                            return Err(Error::invalid(
                                "command",
                                a,
                                format!("closed placeholders (`{{{name}` has no closing `}}`; write `{{{{` for a literal brace)"),
                            ));
                        }
                        let i = space.index_of(&name)?;
                        out.push_str(&point[i].to_string());
                    }
                    c => out.push(c),
                }
            }
            Ok(out)
        })
        .collect()
}

/// Parses the objective from a program's standard output (see the module docs).
pub fn parse_objective(stdout: &str) -> Option<f64> {
    let line = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    if let Ok(v) = line.parse::<f64>() {
        return Some(v);
    }
    line.rsplit(|c: char| c.is_whitespace() || c == '=' || c == ':' || c == ',')
        .find(|t| !t.is_empty())
        .and_then(|t| t.parse::<f64>().ok())
}

fn run_command(
    args: &[String],
    workdir: Option<&PathBuf>,
    timeout: Option<Duration>,
) -> std::result::Result<f64, String> {
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(w) = workdir {
        cmd.current_dir(w);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start `{}`: {e}", args[0]))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {
                if timeout.is_some_and(|t| start.elapsed() > t) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("timed out after {:.1} s", start.elapsed().as_secs_f64()));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if !status.success() {
        let tail = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("exit status {status}: {tail}"));
    }
    parse_objective(&stdout).ok_or_else(|| {
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        format!("no number on the last output line `{last}`")
    })
}

/// Runs or resumes a tuning study (see the module docs).
pub fn run_tune(opts: TuneOptions) -> Result<TuneReport> {
    if opts.command.is_empty() {
        return Err(Error::invalid("command", "[]", "a program and its arguments"));
    }
    let space: Space = gradlab_core::io::read_json(&opts.space)?;
    // Validate placeholders before running anything.
    let probe = space.decode(&vec![0.5; space.encoded_dim()])?;
    substitute(&opts.command, &space, &probe)?;
    let (study, resumed) = if opts.study.exists() {
        let s = Study::load(&opts.study)?;
        if s.space() != &space {
            return Err(Error::SpaceMismatch { path: opts.study.clone() });
        }
        (s, true)
    } else {
        (Study::new(space.clone(), opts.config.clone())?, false)
    };
    let m = Minimizer {
        config: study.config().clone(),
        budget: opts.budget,
        batch: opts.parallel,
        stop: opts.stop,
        save_to: Some(opts.study.clone()),
        history: opts.history.clone(),
        progress: !opts.quiet,
    };
    let command = opts.command.clone();
    let workdir = opts.workdir.clone();
    let timeout = opts.timeout;
    let sp = space.clone();
    let (study, r) = m.resume(study, move |p: &Point| {
        let args = substitute(&command, &sp, p).map_err(|e| e.to_string())?;
        run_command(&args, workdir.as_ref(), timeout)
    })?;
    let best = study.best();
    Ok(TuneReport {
        study: opts.study.clone(),
        resumed,
        evaluations: r.evaluations,
        failed: r.failed,
        best_params: best.map(|t| space.point_to_map(&t.params)),
        best_value: r.best_value,
        best_command: best.and_then(|t| substitute(&opts.command, &space, &t.params).ok()),
        stopped_by: r.stopped_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquisition::MaximizeOptions;
    use crate::gp::FitOptions;
    use crate::space::Param;

    fn space() -> Space {
        Space::new(vec![
            Param::Float { name: "x".into(), low: -2.0, high: 2.0 },
            Param::Int { name: "k".into(), low: 0, high: 3 },
            Param::Categorical { name: "mode".into(), choices: vec!["a".into(), "b".into()] },
        ])
        .unwrap()
    }

    #[test]
    fn substitution_and_parsing() {
        let s = space();
        let p = vec![Value::Float(0.25), Value::Int(2), Value::Choice("b".into())];
        let args: Vec<String> = ["run", "--x={x}", "{k}{mode}", "{{lit}}"].iter().map(|s| s.to_string()).collect();
        assert_eq!(substitute(&args, &s, &p).unwrap(), ["run", "--x=0.25", "2b", "{lit}"]);
        let e = substitute(&["{nope}".to_string()], &s, &p).unwrap_err();
        assert!(matches!(e, Error::UnknownParameter { .. }), "{e}");
        assert!(substitute(&["{x".to_string()], &s, &p).is_err());
        assert_eq!(parse_objective("epoch 1\n0.5\n\n"), Some(0.5));
        assert_eq!(parse_objective("loss = 1e-3"), Some(1e-3));
        assert_eq!(parse_objective("val_loss: -2.5\n"), Some(-2.5));
        assert_eq!(parse_objective("done"), None);
        assert_eq!(parse_objective(""), None);
    }

    #[test]
    fn tunes_a_program_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let space_path = dir.path().join("space.json");
        std::fs::write(&space_path, serde_json::to_string(&space()).unwrap()).unwrap();
        let study = dir.path().join("study.json");
        // Objective (x − 0.5)² + 0.1·k, +1 for mode b; k = 3 crashes.
        let script = "x={x}; k={k}; m={mode}; echo training...; \
                      if [ $k -eq 3 ]; then echo boom >&2; exit 2; fi; \
                      awk -v x=$x -v k=$k -v m=$m 'BEGIN {{ printf \"loss = %.10f\\n\", (x-0.5)^2 + 0.1*k + (m==\"b\") }}'";
        let command = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let mut opts = TuneOptions::new(&space_path, &study, command);
        opts.budget = 14;
        opts.quiet = true;
        opts.history = Some(dir.path().join("history.jsonl"));
        opts.config = StudyConfig {
            seed: 3,
            maximize: MaximizeOptions { candidates: 300, starts: 3, ..Default::default() },
            fit: FitOptions { restarts: 1, ..Default::default() },
            ..Default::default()
        };
        let r = run_tune(opts.clone()).unwrap();
        assert!(!r.resumed);
        assert_eq!(r.evaluations, 14);
        let best = r.best_value.unwrap();
        assert!(best < 0.3, "{r:?}");
        let s = Study::load(&study).unwrap();
        for t in s.trials() {
            let failed = t.state == crate::study::TrialState::Failed;
            assert_eq!(failed, t.params[1] == Value::Int(3), "{t:?}");
            if failed {
                assert!(t.error.as_deref().unwrap().contains("boom"));
            }
        }
        let bp = r.best_params.unwrap();
        let expect = (bp["x"].as_f64().unwrap() - 0.5).powi(2)
            + 0.1 * bp["k"].as_f64().unwrap()
            + if bp["mode"] == Value::Choice("b".into()) { 1.0 } else { 0.0 };
        assert!((expect - best).abs() < 1e-8);
        // Resume to a larger budget.
        opts.budget = 18;
        let r2 = run_tune(opts.clone()).unwrap();
        assert!(r2.resumed);
        assert_eq!(r2.evaluations, 18);
        assert!(r2.best_value.unwrap() <= best);
        // Different space: refused.
        std::fs::write(&space_path, r#"{"params":[{"type":"float","name":"x","low":0,"high":1}]}"#).unwrap();
        opts.command = vec!["echo".into(), "{x}".into()];
        assert!(matches!(run_tune(opts).unwrap_err(), Error::SpaceMismatch { .. }));
    }
}
