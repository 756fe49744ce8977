//! Runs one job per target with bounded parallelism: first a canary stage
//! (the first N targets alone; any failure stops the rollout), then the rest,
//! either continuing past failures or starting nothing new after the first.
//! Each job runs on a thread of its own connection, so one slow or sleeping
//! target holds up one slot only.

use super::report::{Outcome, Row};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// How a rollout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// Targets at once (at least 1).
    pub parallel: usize,
    /// The first N targets run alone first; any failure there stops everything.
    pub canary: usize,
    /// After the canary: start no new target once one failed.
    pub stop_on_failure: bool,
}

/// What the runner tells its watcher.
pub enum Event<'a> {
    /// A stage begins with this many targets.
    Stage(&'static str, usize),
    Started,
    Done(&'a Row),
}

/// Runs `job(index, stage)` for every target index `0..count`, returning
/// the rows in target order; targets not run get a Skipped row from `skipped`.
pub fn run(
    count: usize,
    plan: Rollout,
    job: &(dyn Fn(usize, &'static str) -> Row + Sync),
    skipped: &dyn Fn(usize, &'static str, &str) -> Row,
    watch: &mut dyn FnMut(Event),
) -> Vec<Row> {
    let mut rows: Vec<Option<Row>> = (0..count).map(|_| None).collect();
    let canary = plan.canary.min(count);
    let mut stopped: Option<&str> = None;
    if canary > 0 {
        watch(Event::Stage("canary", canary));
        let failed = stage(0..canary, "canary", plan.parallel, true, job, &mut rows, watch);
        if failed {
            stopped = Some("not run: the canary failed");
        }
    }
    if stopped.is_none() && canary < count {
        watch(Event::Stage("rollout", count - canary));
        let failed = stage(
            canary..count,
            "rollout",
            plan.parallel,
            plan.stop_on_failure,
            job,
            &mut rows,
            watch,
        );
        if failed && plan.stop_on_failure {
            stopped = Some("not run: a target failed (--on-failure stop)");
        }
    }
    let reason = stopped.unwrap_or("not run");
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| skipped(i, if i < canary { "canary" } else { "rollout" }, reason)))
        .collect()
}

/// Runs one stage; returns whether any target failed. With `stop`, no new
/// target starts once one failed (those running finish).
fn stage(
    range: std::ops::Range<usize>,
    name: &'static str,
    parallel: usize,
    stop: bool,
    job: &(dyn Fn(usize, &'static str) -> Row + Sync),
    rows: &mut [Option<Row>],
    watch: &mut dyn FnMut(Event),
) -> bool {
    let next = AtomicUsize::new(range.start);
    let halt = AtomicBool::new(false);
    let mut any_failed = false;
    let (tx, rx) = mpsc::channel::<Option<(usize, Row)>>();
    std::thread::scope(|s| {
        let workers = parallel.max(1).min(range.len());
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, halt) = (&next, &halt);
            let end = range.end;
            s.spawn(move || loop {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= end {
                    break;
                }
                let _ = tx.send(None);
                let row = job(i, name);
                if stop && row.outcome.failed() {
                    halt.store(true, Ordering::SeqCst);
                }
                if tx.send(Some((i, row))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // The watcher runs on this thread, so progress lines never interleave.
        for msg in rx {
            match msg {
                None => watch(Event::Started),
                Some((i, row)) => {
                    any_failed |= row.outcome.failed();
                    watch(Event::Done(&row));
                    rows[i] = Some(row);
                }
            }
        }
    });
    any_failed
}

/// A Skipped row.
pub fn skipped_row(target: &str, stage: &'static str, why: &str) -> Row {
    let mut r = Row::new(target, stage, Outcome::Skipped);
    r.error = Some(why.to_string());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    /// Runs with targets whose index is in `bad` failing; returns outcomes and the max seen running at once.
    fn go(n: usize, plan: Rollout, bad: &[usize]) -> (Vec<(Outcome, &'static str)>, usize) {
        let names = names(n);
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let job = |i: usize, stage: &'static str| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            let outcome = if bad.contains(&i) {
                Outcome::Failed
            } else {
                Outcome::Applied
            };
            Row::new(&names[i], stage, outcome)
        };
        let skipped = |i: usize, stage: &'static str, why: &str| skipped_row(&names[i], stage, why);
        let events = Mutex::new(Vec::new());
        let rows = run(n, plan, &job, &skipped, &mut |e| {
            if let Event::Stage(s, k) = e {
                events.lock().map(|mut v| v.push((s, k))).ok();
            }
        });
        assert!(
            rows.iter().enumerate().all(|(i, r)| r.target == names[i]),
            "in target order"
        );
        (
            rows.iter().map(|r| (r.outcome, r.stage)).collect(),
            peak.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn parallelism_is_bounded() {
        let plan = Rollout {
            parallel: 3,
            canary: 0,
            stop_on_failure: false,
        };
        let (out, peak) = go(20, plan, &[]);
        assert!(out.iter().all(|(o, s)| *o == Outcome::Applied && *s == "rollout"));
        assert!((1..=3).contains(&peak), "peak {peak}");
    }

    #[test]
    fn a_failed_canary_stops_the_rollout() {
        let plan = Rollout {
            parallel: 4,
            canary: 2,
            stop_on_failure: false,
        };
        let (out, _) = go(10, plan, &[1]);
        assert_eq!(out[0], (Outcome::Applied, "canary"));
        assert_eq!(out[1], (Outcome::Failed, "canary"));
        assert!(out[2..].iter().all(|(o, s)| *o == Outcome::Skipped && *s == "rollout"));
    }

    #[test]
    fn continue_mode_runs_everyone_else() {
        let plan = Rollout {
            parallel: 4,
            canary: 1,
            stop_on_failure: false,
        };
        let (out, _) = go(10, plan, &[5]);
        assert_eq!(out.iter().filter(|(o, _)| *o == Outcome::Applied).count(), 9);
        assert_eq!(out[5].0, Outcome::Failed);
    }

    #[test]
    fn stop_mode_starts_nothing_after_a_failure() {
        let plan = Rollout {
            parallel: 1,
            canary: 0,
            stop_on_failure: true,
        };
        let (out, _) = go(10, plan, &[3]);
        assert!(out[..3].iter().all(|(o, _)| *o == Outcome::Applied));
        assert_eq!(out[3].0, Outcome::Failed);
        assert!(out[4..].iter().all(|(o, _)| *o == Outcome::Skipped));
    }

    #[test]
    fn a_canary_larger_than_the_fleet_is_the_fleet() {
        let plan = Rollout {
            parallel: 2,
            canary: 50,
            stop_on_failure: false,
        };
        let (out, _) = go(3, plan, &[]);
        assert!(out.iter().all(|(o, s)| *o == Outcome::Applied && *s == "canary"));
    }
}
