//! A study's batches evaluated over the ranks of a [`Comm`] (MPI through `gradlab-mpi`, or one
//! process).
//!
//! Rank 0 runs the study: it asks for `q` points, sends one to each idle worker rank (ranks
//! `1..size`), and as results come back (in completion order) records them in the study's
//! metadata and saves it, so that a killed job loses only the evaluations still running. When
//! the whole batch is back, the results are told in trial order — the model therefore sees the
//! same data in the same order for any rank count and timing, and a study run over ranks equals
//! the same study run in one process, trial for trial. A resumed study first completes its
//! pending batch (re-evaluating only what has no recorded result), then goes on.
//!
//! With one rank, rank 0 evaluates the batch itself, in trial order.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use gradlab_core::dist::{Comm, recv_json, send_json};

use crate::error::{Error, Result};
use crate::space::Point;
use crate::study::Study;

/// Tag of the messages from rank 0 to a worker: `Some((trial id, point))`, or `None` to stop.
const TASK: u16 = 101;
/// Tag of the messages from a worker to rank 0: `(trial id, value or error)`.
const RESULT: u16 = 102;
/// Study metadata key of the results of the batch in flight (trial id → value or error).
pub const RESULTS_KEY: &str = "dist_batch_results";

/// How [`run_batches`] runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Points per batch; 0 = one per worker rank (`size − 1`, or 1 in one process).
    pub q: usize,
    /// Stop once the study holds this many finished (told) trials.
    pub trials: usize,
    /// Where rank 0 saves the study after every result (`None`: not saved).
    pub save: Option<PathBuf>,
}

type Outcome = std::result::Result<f64, String>;

/// Runs `study` (on rank 0; the other ranks pass `None`) until it holds `opts.trials` finished
/// trials, evaluating each batch over the ranks of `comm`. `eval` maps a point to its objective
/// value, or to an error message (the trial is then told as failed). Every rank must call it.
///
/// # Errors
/// Rank 0 without a study, a failing ask or save. Rank 0 stops the workers before returning an
/// error, so no rank is left waiting.
pub fn run_batches<F>(comm: &dyn Comm, study: Option<&mut Study>, opts: &BatchOptions, mut eval: F) -> Result<()>
where
    F: FnMut(&Point) -> Outcome,
{
    if comm.rank() != 0 {
        loop {
            let (_, task): (usize, Option<(u64, Point)>) = recv_json(comm, TASK)?;
            let Some((id, point)) = task else { return Ok(()) };
            let out = eval(&point);
            send_json(comm, 0, RESULT, &(id, out))?;
        }
    }
    let out = match study {
        Some(study) => coordinate(comm, study, opts, &mut eval),
        None => Err(Error::invalid("study", "None on rank 0", "the study to run (rank 0 runs it)")),
    };
    for w in 1..comm.size() {
        send_json(comm, w, TASK, &None::<(u64, Point)>)?;
    }
    out
}

fn save(study: &Study, opts: &BatchOptions) -> Result<()> {
    match &opts.save {
        Some(p) => study.save(p),
        None => Ok(()),
    }
}

/// Rank 0's loop.
fn coordinate<F>(comm: &dyn Comm, study: &mut Study, opts: &BatchOptions, eval: &mut F) -> Result<()>
where
    F: FnMut(&Point) -> Outcome,
{
    let workers = comm.size() - 1;
    loop {
        let mut batch: Vec<(u64, Point)> = study.pending().iter().map(|t| (t.id, t.params.clone())).collect();
        if batch.is_empty() {
            let finished = study.n_finished();
            if finished >= opts.trials {
                return Ok(());
            }
            let q = if opts.q == 0 { workers.max(1) } else { opts.q };
            let q = q.min(opts.trials - finished);
            batch = study.ask_batch(q)?.into_iter().map(|t| (t.id, t.params)).collect();
            save(study, opts)?;
        }
        // Results recorded before a kill are kept; only the rest is evaluated.
        let mut results: BTreeMap<u64, Outcome> =
            study.metadata().get(RESULTS_KEY).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
        results.retain(|id, _| batch.iter().any(|(b, _)| b == id));
        let mut todo: VecDeque<(u64, Point)> =
            batch.iter().filter(|(id, _)| !results.contains_key(id)).cloned().collect();
        let record = |study: &mut Study, results: &mut BTreeMap<u64, Outcome>, id: u64, out: Outcome| -> Result<()> {
            results.insert(id, out);
            study.set_metadata(
                RESULTS_KEY,
                serde_json::to_value(&*results)
                    .map_err(|e| gradlab_core::Error::external("recording a batch result", e))?,
            );
            save(study, opts)
        };
        if workers == 0 {
            while let Some((id, p)) = todo.pop_front() {
                let out = eval(&p);
                record(study, &mut results, id, out)?;
            }
        } else {
            let mut in_flight = 0usize;
            for w in 1..=workers {
                let Some(task) = todo.pop_front() else { break };
                send_json(comm, w, TASK, &Some(task))?;
                in_flight += 1;
            }
            while in_flight > 0 {
                let (src, (id, out)): (usize, (u64, Outcome)) = recv_json(comm, RESULT)?;
                in_flight -= 1;
                if let Some(task) = todo.pop_front() {
                    send_json(comm, src, TASK, &Some(task))?;
                    in_flight += 1;
                }
                record(study, &mut results, id, out)?;
            }
        }
        // Told in trial order: the model sees the same sequence for any rank count.
        for (id, out) in results {
            match out {
                Ok(v) => study.tell(id, v)?,
                Err(e) => study.tell_failed(id, e)?,
            }
        }
        study.remove_metadata(RESULTS_KEY);
        save(study, opts)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::StudyConfig;
    use crate::testfns::TestFunction;
    use gradlab_core::dist::Local;

    fn branin(p: &Point) -> Outcome {
        let x: Vec<f64> = p.iter().map(|v| v.as_f64().unwrap()).collect();
        Ok(TestFunction::Branin.eval(&x))
    }

    fn new_study() -> Study {
        Study::new(TestFunction::Branin.space(), StudyConfig { seed: 9, ..Default::default() }).unwrap()
    }

    #[test]
    fn one_process_equals_an_ask_tell_loop() {
        let mut reference = new_study();
        while reference.n_finished() < 13 {
            let q = 3.min(13 - reference.n_finished());
            for t in reference.ask_batch(q).unwrap() {
                reference.tell(t.id, branin(&t.params).unwrap()).unwrap();
            }
        }
        let mut study = new_study();
        run_batches(&Local, Some(&mut study), &BatchOptions { q: 3, trials: 13, save: None }, branin).unwrap();
        assert_eq!(study.trials(), reference.trials());
        assert!(study.metadata().get(RESULTS_KEY).is_none());
    }

    #[test]
    fn a_killed_batch_reevaluates_only_what_has_no_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.json");
        let opts = BatchOptions { q: 4, trials: 12, save: Some(path.clone()) };
        // uninterrupted reference
        let mut reference = new_study();
        run_batches(&Local, Some(&mut reference), &BatchOptions { save: None, ..opts.clone() }, branin).unwrap();
        // killed in the third batch after two of its four results: the objective panics there
        let mut study = new_study();
        let mut calls = 0;
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_batches(&Local, Some(&mut study), &opts, |p| {
                calls += 1;
                if calls == 11 {
                    panic!("killed");
                }
                branin(p)
            })
        }));
        assert!(killed.is_err());
        let mut resumed = Study::load(&path).unwrap();
        assert_eq!(resumed.pending().len(), 4);
        assert_eq!(resumed.metadata()[RESULTS_KEY].as_object().unwrap().len(), 2);
        let mut evals = 0;
        run_batches(&Local, Some(&mut resumed), &opts, |p| {
            evals += 1;
            branin(p)
        })
        .unwrap();
        assert_eq!(evals, 2, "only the batch's two missing points");
        assert_eq!(resumed.trials(), reference.trials());
        assert_eq!(Study::load(&path).unwrap().trials(), reference.trials());
    }

    #[test]
    fn failures_are_told_and_rank_zero_needs_the_study() {
        let mut study = new_study();
        run_batches(&Local, Some(&mut study), &BatchOptions { q: 2, trials: 4, save: None }, |p| {
            if p[0].as_f64().unwrap() > 2.5 { Err("out of budget".into()) } else { branin(p) }
        })
        .unwrap();
        assert_eq!(study.n_finished(), 4);
        assert!(study.trials().iter().all(|t| t.value.is_some() || t.error.as_deref() == Some("out of budget")));
        assert!(run_batches(&Local, None, &BatchOptions { q: 2, trials: 4, save: None }, branin).is_err());
    }
}
