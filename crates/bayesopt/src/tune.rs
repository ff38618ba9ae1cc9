//! Tuning any program from the command line: the library side of
//! `cargo xtask tune --space space.json -- <command with {param} placeholders>`.
//!
//! For each trial, every `{name}` in the command's arguments is replaced by the trial's
//! value of parameter `name` (`{{` and `}}` give literal braces) and the command runs (no
//! shell, unless the command itself is one) in a process group of its own. The objective
//! (minimised) is read from its standard output ([`read_objective`]):
//!
//! - by default from the last non-empty line: either the whole line is a number (`0.123`), or
//!   it ends in a `key=value` or `key: value` pair whose key holds a letter (`loss = 0.123`,
//!   `epoch 3 val_loss: 0.12`). Any other line, such as `finished epoch 10`, holds no
//!   objective. A line with more than one number (`lr=0.01 loss=0.3`) gives the last pair's
//!   value and a warning on stderr (once per run);
//! - with [`TuneOptions::objective_regex`], from the first capture group of the regular
//!   expression's last match anywhere in the output (`val_loss=([-0-9.eE+]+)`).
//!
//! A non-zero exit, a timeout ([`DEFAULT_TIMEOUT_S`] unless changed) or no objective records
//! the trial as failed; [`TuneReport::failures`] counts the failures per reason. A trial that
//! times out is killed with its whole process group, and whatever a program leaves running in
//! its group when it exits is killed too, so no trial outlives its evaluation (on Unix; a
//! program that leaves its group, e.g. with `setsid`, escapes this). With
//! [`end_trials_on_signal`], a Ctrl-C or `kill` of the tuning process ends the running
//! trials' groups as well.
//!
//! The study is saved after every ask and tell; running again with the same study file
//! resumes (re-running trials that were in flight) until the budget is reached. The study
//! stores the command and the objective rule (its `metadata`), and a resume with a different
//! one is refused.

use crate::error::{Error, Result};
use crate::minimize::{Minimizer, StopRule};
use crate::space::{Point, Space, Value};
use crate::study::{Study, StudyConfig, TrialState};
use regex::Regex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Default per-trial time limit in seconds (one hour) of [`TuneOptions::new`] and
/// `cargo xtask tune`.
pub const DEFAULT_TIMEOUT_S: f64 = 3600.0;

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
    /// Per-evaluation time limit (`None`: none). A trial that exceeds it is killed with its
    /// process group and recorded as failed.
    pub timeout: Option<Duration>,
    /// Read the objective as the first capture group of this regular expression's last match
    /// in the output, instead of from the last line (see the module docs).
    pub objective_regex: Option<String>,
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
    /// Options with defaults: budget 50, one command at a time, a time limit of
    /// [`DEFAULT_TIMEOUT_S`] per trial, the objective from the last output line.
    pub fn new(space: impl Into<PathBuf>, study: impl Into<PathBuf>, command: Vec<String>) -> Self {
        TuneOptions {
            space: space.into(),
            study: study.into(),
            command,
            budget: 50,
            config: StudyConfig::default(),
            parallel: 1,
            timeout: Some(Duration::from_secs_f64(DEFAULT_TIMEOUT_S)),
            objective_regex: None,
            stop: StopRule::default(),
            history: None,
            workdir: None,
            quiet: false,
        }
    }
}

/// How many failed trials share one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureCount {
    /// The reason: the failure message up to its first `: ` (`exit status 2`, `timed out`,
    /// `no objective`, `cannot start`, …).
    pub reason: String,
    /// Failed trials with this reason.
    pub count: usize,
    /// The full message of the last of them (standard error's last line for a crash).
    pub example: String,
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
    /// Failed evaluations per reason (all runs of this study), most frequent first.
    pub failures: Vec<FailureCount>,
    /// Best parameters by name.
    pub best_params: Option<BTreeMap<String, Value>>,
    /// Best objective value.
    pub best_value: Option<f64>,
    /// The command line of the best trial.
    pub best_command: Option<Vec<String>>,
    /// Why the run stopped.
    pub stopped_by: String,
}

impl TuneReport {
    /// True when there were evaluations and every one failed.
    pub fn all_failed(&self) -> bool {
        self.evaluations > 0 && self.failed == self.evaluations
    }

    /// The failure counts in one line: `3 × exit status 2 (last: `exit status 2: boom`); …`.
    pub fn failure_summary(&self) -> String {
        self.failures
            .iter()
            .map(|f| format!("{} × {} (last: `{}`)", f.count, f.reason, f.example))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The reason of a failure message: the text before its first `: `.
pub fn failure_reason(message: &str) -> &str {
    message.split_once(": ").map_or(message, |(r, _)| r).trim()
}

/// Failed trials of `study` counted per [`failure_reason`], most frequent first.
pub fn count_failures(study: &Study) -> Vec<FailureCount> {
    let mut by: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for t in study.told() {
        if t.state == TrialState::Failed {
            let msg = t.error.as_deref().unwrap_or("unknown");
            let e = by.entry(failure_reason(msg).to_string()).or_default();
            e.0 += 1;
            e.1 = msg.to_string();
        }
    }
    let mut out: Vec<FailureCount> =
        by.into_iter().map(|(reason, (count, example))| FailureCount { reason, count, example }).collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    out
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

/// Compiles an objective regular expression; it must have a capture group (the number).
pub fn objective_regex(pattern: &str) -> Result<Regex> {
    let re = Regex::new(pattern)
        .map_err(|e| Error::invalid("objective_regex", pattern, format!("a regular expression ({e})")))?;
    if re.captures_len() < 2 {
        return Err(Error::invalid(
            "objective_regex",
            pattern,
            "a regular expression with a capture group `(…)` around the number",
        ));
    }
    Ok(re)
}

/// An objective read from a program's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    /// The value.
    pub value: f64,
    /// Set when the choice was ambiguous (more than one number on the last line).
    pub warning: Option<String>,
}

/// Numbers among the tokens of a line (split at whitespace and `=:,;()[]`).
fn count_numbers(line: &str) -> usize {
    line.split(|c: char| c.is_whitespace() || "=:,;()[]".contains(c)).filter(|t| t.parse::<f64>().is_ok()).count()
}

/// Reads the objective from a program's standard output (the rules are in the module docs);
/// the error says why there is none.
pub fn read_objective(stdout: &str, regex: Option<&Regex>) -> std::result::Result<Objective, String> {
    if let Some(re) = regex {
        let caps =
            re.captures_iter(stdout).last().ok_or_else(|| format!("no objective: no match of `{re}` in the output"))?;
        let text = caps.get(1).map_or("", |m| m.as_str()).trim();
        return text
            .parse::<f64>()
            .map(|value| Objective { value, warning: None })
            .map_err(|_| format!("no objective: `{re}` captured `{text}`, not a number"));
    }
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or_else(|| "no objective: the program printed nothing on standard output".to_string())?;
    if let Ok(value) = line.parse::<f64>() {
        return Ok(Objective { value, warning: None });
    }
    let pair = line.rfind(['=', ':']).and_then(|i| {
        let value = line[i + 1..].trim().parse::<f64>().ok()?;
        let key = line[..i].trim_end().rsplit(|c: char| c.is_whitespace() || "=:,;".contains(c)).next()?;
        key.chars().any(|c| c.is_alphabetic() || c == '_').then_some((key, value))
    });
    match pair {
        Some((key, value)) => {
            let n = count_numbers(line);
            let warning = (n > 1).then(|| {
                format!(
                    "the objective line `{line}` holds {n} numbers; took the last `key=value`, {key} = {value} \
                     (pass an objective regex to choose another)"
                )
            });
            Ok(Objective { value, warning })
        }
        None => Err(format!(
            "no objective: the last output line `{line}` is neither a number nor ends in `key=value` or \
             `key: value` (print the objective alone, or pass an objective regex)"
        )),
    }
}

/// Parses the objective from a program's standard output with the default rule (see the
/// module docs); `None` where [`read_objective`] finds none.
pub fn parse_objective(stdout: &str) -> Option<f64> {
    read_objective(stdout, None).ok().map(|o| o.value)
}

/// The running trials' process groups, so that a kill of the tuner ends them (Unix).
#[cfg(unix)]
mod groups {
    use std::sync::atomic::{AtomicI32, Ordering};

    const SLOTS: usize = 256;
    /// Process-group ids of running trials (0: free slot). Read by the signal handler, so
    /// a fixed array of atomics (no allocation, no lock).
    static ACTIVE: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

    /// A running trial's process group; dropping it kills whatever is left in the group.
    pub(super) struct Group {
        pgid: i32,
        slot: Option<usize>,
    }

    impl Group {
        /// The group led by `pid` (a child started with `process_group(0)`).
        pub(super) fn register(pid: u32) -> Group {
            let pgid = pid as i32;
            let slot =
                ACTIVE.iter().position(|a| a.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst).is_ok());
            Group { pgid, slot }
        }

        /// Sends SIGKILL to every process in the group.
        pub(super) fn kill(&self) {
            // SAFETY: killpg has no memory-safety preconditions; a group that no longer
            // exists gives ESRCH, which is ignored.
            unsafe {
                libc::killpg(self.pgid, libc::SIGKILL);
            }
        }
    }

    impl Drop for Group {
        fn drop(&mut self) {
            self.kill();
            if let Some(s) = self.slot {
                ACTIVE[s].store(0, Ordering::SeqCst);
            }
        }
    }

    /// Sends `sig` to the groups in `slots`; false if there were none (async-signal-safe).
    fn signal_all(slots: &[AtomicI32], sig: i32) -> bool {
        let mut any = false;
        for a in slots {
            let g = a.load(Ordering::SeqCst);
            if g > 0 {
                any = true;
                // SAFETY: killpg is async-signal-safe and has no memory preconditions.
                unsafe {
                    libc::killpg(g, sig);
                }
            }
        }
        any
    }

    /// Ends the groups in `slots`: SIGTERM (a program may clean up), `grace`, then SIGKILL
    /// (async-signal-safe).
    pub(super) fn end_all(slots: &[AtomicI32], grace: libc::timespec) {
        if signal_all(slots, libc::SIGTERM) {
            // SAFETY: nanosleep is async-signal-safe; `grace` outlives the call.
            unsafe {
                libc::nanosleep(&grace, std::ptr::null_mut());
            }
            signal_all(slots, libc::SIGKILL);
        }
    }

    /// True if `pgid` is registered (tests).
    #[cfg(test)]
    pub(super) fn is_registered(pgid: i32) -> bool {
        ACTIVE.iter().any(|a| a.load(Ordering::SeqCst) == pgid)
    }

    extern "C" fn handler(sig: libc::c_int) {
        end_all(&ACTIVE, libc::timespec { tv_sec: 1, tv_nsec: 0 });
        // SAFETY: signal and raise are async-signal-safe; restoring the default action and
        // re-raising ends the process as the signal would have without the handler.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }

    pub(super) fn install() {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: `handler` only calls async-signal-safe functions.
            unsafe {
                libc::signal(sig, handler as extern "C" fn(libc::c_int) as libc::sighandler_t);
            }
        }
    }
}

/// Makes SIGINT (Ctrl-C), SIGTERM and SIGHUP of this process end the trials running at that
/// moment with their process groups — SIGTERM, one second for them to clean up, then SIGKILL
/// — and then end this process as the signal would have. Trials run in process groups of
/// their own (so that a timeout can kill a trial with its children), which a terminal's
/// Ctrl-C no longer reaches; their results would be lost anyway (a resumed study re-runs
/// them). Up to 256 trials at once are covered (more still run, and are still killed on a
/// timeout). Process-wide: meant for a binary's `main` (`cargo xtask tune` calls it). A no-op
/// off Unix.
pub fn end_trials_on_signal() {
    #[cfg(unix)]
    groups::install();
}

/// The exit of a finished program, as a failure reason.
fn exit_reason(status: std::process::ExitStatus) -> String {
    if let Some(c) = status.code() {
        return format!("exit status {c}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(s) = status.signal() {
            return format!("killed by signal {s}");
        }
    }
    status.to_string()
}

/// Runs one trial's command and returns its standard output; the error is the failure
/// message (`<reason>: <detail>`).
pub fn run_command(
    args: &[String],
    workdir: Option<&PathBuf>,
    timeout: Option<Duration>,
) -> std::result::Result<String, String> {
    let Some(program) = args.first() else {
        return Err("cannot start: the command is empty".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(&args[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(w) = workdir {
        cmd.current_dir(w);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: `{program}`: {e}"))?;
    #[cfg(unix)]
    let group = groups::Group::register(child.id());
    let start = Instant::now();
    let (tx_out, rx_out) = mpsc::channel();
    let (tx_err, rx_err) = mpsc::channel();
    let mut out = child.stdout.take().ok_or("cannot start: no stdout")?;
    let mut err = child.stderr.take().ok_or("cannot start: no stderr")?;
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx_out.send(s);
    });
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx_err.send(s);
    });
    let timed_out =
        |t: Duration| format!("timed out: no result within {} s; its process group was killed", t.as_secs_f64());
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {
                if let Some(t) = timeout.filter(|&t| start.elapsed() > t) {
                    #[cfg(unix)]
                    group.kill();
                    #[cfg(not(unix))]
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(timed_out(t));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    };
    // What the program left running in its group ends with it (and releases the pipes).
    #[cfg(unix)]
    drop(group);
    // The pipes close once the group is gone; only a process that left the group can hold
    // them open. Wait for that until the time limit, but at least a few seconds (a program
    // that exits just before its limit still has its output read).
    let recv = |rx: &mpsc::Receiver<String>| match timeout {
        Some(t) => {
            rx.recv_timeout(t.saturating_sub(start.elapsed()).max(Duration::from_secs(5))).map_err(|_| timed_out(t))
        }
        None => rx.recv().map_err(|_| "output lost".to_string()),
    };
    let stdout = recv(&rx_out)?;
    let stderr = recv(&rx_err)?;
    if !status.success() {
        let mut msg = exit_reason(status);
        if let Some(tail) = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            msg = format!("{msg}: {tail}");
        }
        return Err(msg);
    }
    Ok(stdout)
}

/// Shell-like display of a command line (arguments with spaces or quotes single-quoted).
fn show_command(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_alphanumeric() || "-_./=:,+@%{}".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Refuses to resume a study started with another command or objective rule; records both
/// in a study that has none (new, or written before they were stored).
fn check_command(study: &mut Study, opts: &TuneOptions) -> Result<()> {
    let stored_cmd = study.metadata().get("command").cloned();
    let Some(stored_cmd) = stored_cmd else {
        study.set_metadata("command", serde_json::json!(opts.command));
        study.set_metadata("objective_regex", serde_json::json!(opts.objective_regex));
        return Ok(());
    };
    let path = opts.study.display();
    let stored: Vec<String> = serde_json::from_value(stored_cmd.clone()).map_err(|_| {
        Error::invalid(format!("{path}: metadata.command"), stored_cmd.to_string(), "a list of strings")
    })?;
    if stored != opts.command {
        return Err(Error::invalid(
            "command",
            show_command(&opts.command),
            format!(
                "the command that started the study in {path}: {} (a study resumes only with its own command; \
                 pass another study file to start a new one)",
                show_command(&stored)
            ),
        ));
    }
    let stored_re: Option<String> =
        study.metadata().get("objective_regex").and_then(|v| v.as_str().map(str::to_string));
    if stored_re != opts.objective_regex {
        let show =
            |r: &Option<String>| r.as_ref().map_or("none (the last-line rule)".to_string(), |r| format!("`{r}`"));
        return Err(Error::invalid(
            "objective_regex",
            show(&opts.objective_regex),
            format!(
                "the objective rule of the study in {path}: {} (its values were read that way; pass another \
                 study file to start a new one)",
                show(&stored_re)
            ),
        ));
    }
    Ok(())
}

/// The study of a tuning run: created, or resumed (with its command checked); the space and the
/// objective rule; whether it was resumed.
fn open_study(opts: &TuneOptions) -> Result<(Study, Space, Option<Regex>, bool)> {
    if opts.command.is_empty() {
        return Err(Error::invalid("command", "[]", "a program and its arguments"));
    }
    let regex = opts.objective_regex.as_deref().map(objective_regex).transpose()?;
    let space: Space = gradlab_core::io::read_json(&opts.space)?;
    // Validate placeholders before running anything.
    let probe = space.decode(&vec![0.5; space.encoded_dim()])?;
    substitute(&opts.command, &space, &probe)?;
    let (mut study, resumed) = if opts.study.exists() {
        let s = Study::load(&opts.study)?;
        if s.space() != &space {
            return Err(Error::SpaceMismatch { path: opts.study.clone() });
        }
        (s, true)
    } else {
        (Study::new(space.clone(), opts.config.clone())?, false)
    };
    check_command(&mut study, opts)?;
    Ok((study, space, regex, resumed))
}

/// One trial: the command with the point substituted, run, and its objective read (the first
/// warning about the objective line is printed once).
fn trial<'a>(
    opts: &'a TuneOptions,
    space: &'a Space,
    regex: Option<&'a Regex>,
    warned: &'a AtomicBool,
) -> impl Fn(&Point) -> std::result::Result<f64, String> + Sync + 'a {
    move |p: &Point| {
        let args = substitute(&opts.command, space, p).map_err(|e| e.to_string())?;
        let stdout = run_command(&args, opts.workdir.as_ref(), opts.timeout)?;
        let o = read_objective(&stdout, regex)?;
        if let Some(w) = o.warning
            && !warned.swap(true, Ordering::Relaxed)
        {
            eprintln!("warning: {w}");
        }
        Ok(o.value)
    }
}

/// Runs or resumes a tuning study (see the module docs).
pub fn run_tune(opts: TuneOptions) -> Result<TuneReport> {
    let (study, space, regex, resumed) = open_study(&opts)?;
    let m = Minimizer {
        config: study.config().clone(),
        budget: opts.budget,
        batch: opts.parallel,
        stop: opts.stop,
        save_to: Some(opts.study.clone()),
        history: opts.history.clone(),
        progress: !opts.quiet,
    };
    let warned = AtomicBool::new(false);
    let (study, r) = m.resume(study, trial(&opts, &space, regex.as_ref(), &warned))?;
    let best = study.best();
    Ok(TuneReport {
        study: opts.study.clone(),
        resumed,
        evaluations: r.evaluations,
        failed: r.failed,
        failures: count_failures(&study),
        best_params: best.map(|t| space.point_to_map(&t.params)),
        best_value: r.best_value,
        best_command: best.and_then(|t| substitute(&opts.command, &space, &t.params).ok()),
        stopped_by: r.stopped_by,
    })
}

/// [`run_tune`] over the ranks of `comm` (MPI through `gradlab-mpi`; one process: `run_tune`):
/// rank 0 keeps the study and asks batches of `opts.parallel` points — with the default 1, one
/// per worker rank — and the worker ranks run the command, one trial each at a time
/// ([`crate::dist::run_batches`]: results saved as they complete, told in trial order, a killed
/// batch re-runs only the trials without a result). Every rank calls it with the same options;
/// the report comes back on rank 0 (`None` elsewhere).
///
/// # Errors
/// As [`run_tune`] (on every rank when the study cannot be opened). Stopping rules and a history
/// file are not supported over ranks yet and are refused rather than ignored.
pub fn run_tune_on(comm: &dyn gradlab_core::dist::Comm, opts: TuneOptions) -> Result<Option<TuneReport>> {
    if comm.size() == 1 {
        return run_tune(opts).map(Some);
    }
    let opened = gradlab_core::dist::agree(comm, || -> Result<(Option<Study>, Space, Option<Regex>, bool)> {
        if opts.stop != StopRule::default() {
            return Err(Error::invalid(
                "stop rule",
                format!("{:?}", opts.stop),
                "none over MPI ranks (not supported yet)",
            ));
        }
        if opts.history.is_some() {
            return Err(Error::invalid("history", "a file", "none over MPI ranks (not supported yet)"));
        }
        if comm.is_root() {
            // rank 0 alone opens (and later writes) the study file
            let (study, space, regex, resumed) = open_study(&opts)?;
            return Ok((Some(study), space, regex, resumed));
        }
        let regex = opts.objective_regex.as_deref().map(objective_regex).transpose()?;
        let space: Space = gradlab_core::io::read_json(&opts.space)?;
        Ok((None, space, regex, false))
    })?;
    let (mut study, space, regex, resumed) = opened;
    let before = study.as_ref().map_or(0, |s| s.n_finished());
    let q = if opts.parallel <= 1 { 0 } else { opts.parallel };
    let batch = crate::dist::BatchOptions { q, trials: opts.budget, save: Some(opts.study.clone()) };
    let warned = AtomicBool::new(false);
    crate::dist::run_batches(comm, study.as_mut(), &batch, trial(&opts, &space, regex.as_ref(), &warned))?;
    let Some(study) = study else { return Ok(None) };
    let told: Vec<_> = study.told();
    let failed = told.iter().filter(|t| t.state == TrialState::Failed).count();
    let best = study.best();
    Ok(Some(TuneReport {
        study: opts.study.clone(),
        resumed,
        evaluations: told.len(),
        failed,
        failures: count_failures(&study),
        best_params: best.map(|t| space.point_to_map(&t.params)),
        best_value: best.and_then(|t| t.value),
        best_command: best.and_then(|t| substitute(&opts.command, &space, &t.params).ok()),
        stopped_by: format!(
            "budget ({} evaluations, {} in this run, over {} ranks)",
            told.len(),
            told.len() - before,
            comm.size()
        ),
    }))
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
    fn objective_rule_refuses_a_bare_trailing_number() {
        // A number after a word is not an objective (it was read as 10 before).
        for line in ["finished epoch 10", "step 3 of 10", "ETA 12:30", "time=12:30", "= 4"] {
            let e = read_objective(&format!("training\n{line}\n"), None).unwrap_err();
            assert!(e.starts_with("no objective") && e.contains(line), "{line}: {e}");
        }
        assert!(read_objective("", None).unwrap_err().contains("printed nothing"));
        // key=value / key: value, the last pair; a warning when the line holds more numbers.
        let o = read_objective("epoch=10 loss=0.25", None).unwrap();
        assert_eq!(o.value, 0.25);
        assert!(o.warning.as_deref().unwrap().contains("2 numbers"), "{o:?}");
        assert_eq!(read_objective("val_loss: 0.5\n", None).unwrap(), Objective { value: 0.5, warning: None });
        assert_eq!(read_objective("-1.5e-2", None).unwrap().value, -1.5e-2);
        // A regex: first capture group of the last match anywhere in the output.
        let re = objective_regex(r"val_loss=([-0-9.eE+]+)").unwrap();
        let out = "val_loss=0.9\nval_loss=0.25 acc=0.7\nfinished epoch 10\n";
        assert_eq!(read_objective(out, Some(&re)).unwrap().value, 0.25);
        assert!(read_objective("loss 3", Some(&re)).unwrap_err().contains("no match"));
        let re = objective_regex(r"epoch (\w+)").unwrap();
        assert!(read_objective("epoch ten", Some(&re)).unwrap_err().contains("not a number"));
        for bad in ["val_loss=[0-9.]+", "(unclosed"] {
            let e = objective_regex(bad).unwrap_err();
            assert!(matches!(&e, Error::Invalid { field, .. } if field == "objective_regex"), "{e}");
        }
    }

    #[test]
    fn default_timeout_is_one_hour() {
        let o = TuneOptions::new("s.json", "t.json", vec!["prog".into()]);
        assert_eq!(o.timeout, Some(Duration::from_secs(3600)));
        assert_eq!(DEFAULT_TIMEOUT_S, 3600.0);
    }

    /// True while process `pid` runs (a zombie counts as ended).
    #[cfg(unix)]
    fn alive(pid: i32) -> bool {
        if std::path::Path::new("/proc/self").exists() {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(s) => !matches!(s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()), Some('Z' | 'X')),
                Err(_) => false,
            }
        } else {
            // SAFETY: signal 0 only checks that the process exists.
            unsafe { libc::kill(pid, 0) == 0 }
        }
    }

    /// Waits (bounded) for `pid` to end; false if it still runs.
    #[cfg(unix)]
    fn ends(pid: i32) -> bool {
        for _ in 0..1000 {
            if !alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[cfg(unix)]
    fn read_pid(path: &std::path::Path) -> i32 {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.trim().parse().unwrap()
    }

    #[cfg(unix)]
    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[cfg(unix)]
    #[test]
    fn timeout_kills_the_trials_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        // The program starts a child and waits for it: a timeout must end both.
        let script = format!("sleep 1000 & echo $! > '{}'; wait", pid_file.display());
        let e = run_command(&sh(&script), None, Some(Duration::from_secs(2))).unwrap_err();
        assert_eq!(failure_reason(&e), "timed out", "{e}");
        let child = read_pid(&pid_file);
        assert!(ends(child), "the trial's child {child} survived the timeout");
    }

    #[cfg(unix)]
    #[test]
    fn processes_left_by_a_trial_end_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        // A background child that outlives the program (output elsewhere).
        let script = format!("sleep 1000 >/dev/null 2>&1 & echo $! > '{}'; echo 0.5", pid_file.display());
        assert_eq!(run_command(&sh(&script), None, None).unwrap().trim(), "0.5");
        let child = read_pid(&pid_file);
        assert!(ends(child), "the trial's child {child} outlived it");
        // A background child holding standard output open does not hold the trial (without a
        // time limit this would wait for the `sleep`).
        assert_eq!(run_command(&sh("sleep 1000 & echo 0.25"), None, None).unwrap().trim(), "0.25");
        let e = run_command(&sh("echo oops >&2; exit 3"), None, None).unwrap_err();
        assert_eq!((failure_reason(&e), e.as_str()), ("exit status 3", "exit status 3: oops"));
        let e = run_command(&["/nonexistent/program".to_string()], None, None).unwrap_err();
        assert_eq!(failure_reason(&e), "cannot start", "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_kill_of_the_tuner_ends_the_trial_groups() {
        use std::os::unix::process::CommandExt;
        use std::sync::atomic::AtomicI32;
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        // A trial whose child ignores SIGTERM (as `sh` makes background jobs ignore SIGINT):
        // SIGKILL after the grace must end it.
        let script = format!("trap '' TERM; sleep 1000 & echo $! > '{}'; wait", pid_file.display());
        let mut child = Command::new("sh").args(["-c", &script]).process_group(0).spawn().unwrap();
        let group = groups::Group::register(child.id());
        assert!(groups::is_registered(child.id() as i32));
        for _ in 0..1000 {
            if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let grandchild = read_pid(&pid_file);
        // What the signal handler does, on a private slot list (the global one may hold the
        // groups of trials that other tests run at the same time).
        let slots = [AtomicI32::new(child.id() as i32), AtomicI32::new(0)];
        groups::end_all(&slots, libc::timespec { tv_sec: 0, tv_nsec: 100_000_000 });
        assert!(!child.wait().unwrap().success());
        assert!(ends(grandchild), "the trial's child {grandchild} survived");
        drop(group);
        assert!(!groups::is_registered(child.id() as i32));
    }

    fn float_space(dir: &std::path::Path) -> PathBuf {
        let path = dir.join("space.json");
        std::fs::write(&path, r#"{"params":[{"type":"float","name":"x","low":0,"high":1}]}"#).unwrap();
        path
    }

    #[test]
    fn failures_are_counted_per_reason() {
        let dir = tempfile::tempdir().unwrap();
        let space = float_space(dir.path());
        let mut opts = TuneOptions::new(
            &space,
            dir.path().join("crash.json"),
            vec!["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()],
        );
        opts.budget = 3;
        opts.quiet = true;
        let r = run_tune(opts).unwrap();
        assert!(r.all_failed(), "{r:?}");
        assert_eq!(
            r.failures,
            [FailureCount { reason: "exit status 3".into(), count: 3, example: "exit status 3: oops".into() }]
        );
        assert_eq!(r.failure_summary(), "3 × exit status 3 (last: `exit status 3: oops`)");
        // `finished epoch 10` is no objective: every trial fails, none records 10.
        let mut opts =
            TuneOptions::new(&space, dir.path().join("epoch.json"), vec!["echo".into(), "finished epoch 10".into()]);
        opts.budget = 2;
        opts.quiet = true;
        let r = run_tune(opts.clone()).unwrap();
        assert!(r.all_failed() && r.best_value.is_none(), "{r:?}");
        assert_eq!((r.failures[0].reason.as_str(), r.failures[0].count), ("no objective", 2));
        // With a regex the same output gives the epoch (a new study: the rule is part of it).
        opts.study = dir.path().join("epoch_regex.json");
        opts.objective_regex = Some(r"epoch (\d+)".into());
        let r = run_tune(opts).unwrap();
        assert_eq!((r.failed, r.best_value), (0, Some(10.0)));
    }

    #[test]
    fn resume_with_another_command_or_objective_rule_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let space = float_space(dir.path());
        let study = dir.path().join("study.json");
        let mut opts = TuneOptions::new(&space, &study, vec!["echo".into(), "{x}".into()]);
        opts.budget = 2;
        opts.quiet = true;
        run_tune(opts.clone()).unwrap();
        assert_eq!(Study::load(&study).unwrap().metadata()["command"], serde_json::json!(["echo", "{x}"]));
        opts.budget = 3;
        let mut other = opts.clone();
        other.command = vec!["echo".into(), "x = {x}".into()];
        let e = run_tune(other).unwrap_err();
        match &e {
            Error::Invalid { field, value, allowed } => {
                assert_eq!((field.as_str(), value.as_str()), ("command", "echo 'x = {x}'"));
                assert!(allowed.contains("echo {x}") && allowed.contains("study.json"), "{e}");
            }
            _ => panic!("{e}"),
        }
        let mut other = opts.clone();
        other.objective_regex = Some("(.*)".into());
        let e = run_tune(other).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "objective_regex"), "{e}");
        // Nothing was run by the refused resumes; the same command resumes.
        assert_eq!(Study::load(&study).unwrap().n_finished(), 2);
        assert_eq!(run_tune(opts).unwrap().evaluations, 3);
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
