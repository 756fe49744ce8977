//! What happens on one target: connect (with the cold-start retry, bounded
//! by the per-target timeout), make the one call, turn the answer or the
//! error into a report row. A watchdog cancels the call when the timeout
//! passes; the extension then rolls the deployment back, so a timed-out
//! target is left as it was.

use super::report::{one_line, Outcome, Row};
use super::targets::Target;
use crate::connect::{self, Source};
use crate::error::CliError;
use crate::run_here::session::ClientRunner;
use crate::{db, output, phase, wait};
use pg_deploy_core::report::{ApplyOutcome, ApplyReport, PlanReport};
use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Settings shared by every target's job.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--connect-retry`: how long to retry while a server is not up.
    pub connect_retry: Duration,
    /// `--target-timeout`: all the time one target may take.
    pub timeout: Option<Duration>,
}

/// A target's clock: when it started and when it must be done.
struct Clock {
    start: Instant,
    deadline: Option<Instant>,
}

impl Clock {
    fn new(l: &Limits) -> Clock {
        let start = Instant::now();
        Clock {
            start,
            deadline: l.timeout.map(|t| start + t),
        }
    }

    fn left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
}

/// Why a target stopped at its timeout.
fn timed_out(l: &Limits, what: &str) -> CliError {
    let t = l
        .timeout
        .map_or_else(String::new, |t| format!(" {}", crate::phase::elapsed_text(t)));
    CliError::Refused {
        message: format!("timed out after{t} (--target-timeout) {what}"),
        hint: None,
    }
}

fn plain(t: &Target) -> bool {
    t.cfg.get_ssl_mode() == SslMode::Disable || t.cfg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)))
}

/// Connects within what is left of the target's time; NOTICEs are dropped
/// (one per change, times the fleet, would drown the report).
fn open(t: &Target, l: &Limits, clock: &Clock) -> Result<Client, CliError> {
    let mut cfg = t.cfg.clone();
    cfg.notice_callback(|_| {});
    let mut retry = l.connect_retry;
    // Whether the target's time, not --connect-retry, ends the retries.
    let mut cut_short = false;
    if let Some(left) = clock.left() {
        if left.is_zero() {
            return Err(timed_out(l, "before connecting"));
        }
        cut_short = left < retry;
        retry = retry.min(left);
        let per_try = cfg.get_connect_timeout().copied().unwrap_or(left).min(left);
        cut_short |= per_try >= left;
        cfg.connect_timeout(per_try.max(Duration::from_secs(1)));
    }
    connect::connect(&cfg, &Source::Flag, &t.tls, retry).map_err(|e| {
        // Retried until the target's time ran out; a login refused at once
        // (a password, a missing database) is not a timeout.
        let spent = clock.left().is_some_and(|left| left < Duration::from_secs(1));
        match e {
            CliError::Connect { .. } if cut_short && spent => timed_out(l, &format!("while connecting ({e})")),
            e => e,
        }
    })
}

/// Runs `f` on the client; when the target's time runs out meanwhile, a
/// watchdog cancels the running statement and the error says so.
fn guarded<T>(
    c: &mut Client,
    t: &Target,
    l: &Limits,
    clock: &Clock,
    what: &str,
    f: impl FnOnce(&mut Client) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let Some(left) = clock.left() else { return f(c) };
    let token = c.cancel_token();
    let fired = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<()>();
    let tls = if plain(t) {
        None
    } else {
        crate::tls::connector(&t.tls).ok()
    };
    let flag = fired.clone();
    let dog = std::thread::spawn(move || {
        if rx.recv_timeout(left) == Err(mpsc::RecvTimeoutError::Timeout) {
            flag.store(true, Ordering::SeqCst);
            let _ = match tls {
                None => token.cancel_query(NoTls),
                Some(tls) => token.cancel_query(tls),
            };
        }
    });
    let out = f(c);
    drop(tx);
    let _ = dog.join();
    match out {
        Err(_) if fired.load(Ordering::SeqCst) => Err(timed_out(l, what)),
        other => other,
    }
}

/// A row for an error; a timeout is its own outcome.
fn failure(t: &Target, stage: &'static str, e: &CliError, clock: &Clock) -> Row {
    let mut r = Row::failed(&t.name, stage, e);
    if e.to_string().contains("(--target-timeout)") {
        r.outcome = Outcome::TimedOut;
        r.sqlstate = Some("57014".into());
    }
    r.duration_ms = clock.ms();
    r
}

/// The project's deployed version, read after a failure to show that it stayed.
fn version_now(c: &mut Client, project: &str) -> Option<String> {
    let v = db::status(c, Some(project)).ok()?;
    v.get(0)?.get("version")?.as_str().map(str::to_string)
}

/// What apply does on one target.
pub struct ApplyJob<'a> {
    pub manifest: &'a str,
    pub options: &'a str,
    pub project: &'a str,
    /// Wait for the steps after commit for at most this long; None: do not wait.
    pub phase_timeout: Option<Duration>,
    /// When no background worker slot is free, run the steps from this
    /// target's connection (as a single apply does; docs/cli.md).
    pub run_here: bool,
}

pub fn apply(t: &Target, stage: &'static str, job: &ApplyJob, l: &Limits) -> Row {
    let clock = Clock::new(l);
    let mut c = match open(t, l, &clock) {
        Ok(c) => c,
        Err(e) => return failure(t, stage, &e, &clock),
    };
    let answer = guarded(
        &mut c,
        t,
        l,
        &clock,
        "during apply; it was cancelled and rolled back",
        |c| db::apply(c, job.manifest, job.options),
    );
    let report = answer.and_then(|a| {
        let r = output::read("apply", &a, serde_json::from_value::<ApplyReport>)?;
        Ok((a, r))
    });
    let (answer, report) = match report {
        Ok(x) => x,
        Err(e) => {
            let mut r = failure(t, stage, &e, &clock);
            if matches!(e, CliError::Server { .. }) {
                r.version_before = version_now(&mut c, job.project);
                r.version_after = r.version_before.clone();
            }
            return r;
        }
    };
    // The server's word: a deployment whose changes all run after commit
    // (online ones) applied nothing in its transaction, yet is no no-op.
    let outcome = match report.outcome {
        ApplyOutcome::NoOp => Outcome::NoOp,
        ApplyOutcome::Applied => Outcome::Applied,
    };
    let later: usize = phase::steps_of(&answer)
        .ok()
        .flatten()
        .map_or(0, |s| s.steps.iter().map(|x| x.changes.len()).sum());
    let mut row = Row::new(&t.name, stage, outcome);
    row.version_before = report.previous_version.clone();
    row.version_after = Some(report.version.clone());
    row.changes = Some(report.applied.len() + report.rerun.len() + later);
    if let Err(e) = follow_phases(&mut c, t, job, &answer, l, &clock) {
        let version = (row.version_before.clone(), row.version_after.clone());
        row = failure(t, stage, &e, &clock);
        (row.version_before, row.version_after) = version;
    }
    row.duration_ms = clock.ms();
    row
}

/// Waits for the steps after commit, if any (the extension's worker runs them).
fn follow_phases(
    c: &mut Client,
    t: &Target,
    job: &ApplyJob,
    answer: &Value,
    l: &Limits,
    clock: &Clock,
) -> Result<(), CliError> {
    let Some(limit) = job.phase_timeout else { return Ok(()) };
    let Some(steps) = phase::steps_of(answer)? else {
        return Ok(());
    };
    let limit = clock.left().map_or(limit, |left| left.min(limit));
    let mut wclock = wait::RealClock::start();
    let mut here = ClientRunner::new(job.run_here, job.project, Some(steps.deployment_id), limit);
    let followed = guarded(c, t, l, clock, "waiting for the steps after commit", |c| {
        let c = std::cell::RefCell::new(c);
        // Its lines would interleave with the other targets': the row says how it ended.
        let mut run_here =
            |s: &phase::PhaseStatus| here.run_if_wanted(s, &mut c.borrow_mut(), &mut || {}, &mut |_| {}, &mut |_| {});
        wait::follow(
            &mut || db::phase_status(&mut c.borrow_mut(), job.project),
            Some(steps.deployment_id),
            limit,
            &mut wclock,
            &mut |_, _| {},
            &mut run_here,
        )
    })?;
    match followed.error(limit) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// What plan says for one target (a dry run: nothing changes).
pub fn plan(t: &Target, stage: &'static str, manifest: &str, options: &str, l: &Limits) -> Row {
    let clock = Clock::new(l);
    let result = open(t, l, &clock).and_then(|mut c| {
        let a = guarded(&mut c, t, l, &clock, "during plan", |c| db::plan(c, manifest, options))?;
        output::read("plan", &a, serde_json::from_value::<PlanReport>)
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => return failure(t, stage, &e, &clock),
    };
    let changes = report.changes.iter().filter(|c| c.action != "skip").count();
    let refused = output::plan_failed(&report);
    let mut row = Row::new(
        &t.name,
        stage,
        match (refused, changes) {
            (true, _) => Outcome::Failed,
            (false, 0) => Outcome::NoOp,
            (false, _) => Outcome::WouldApply,
        },
    );
    row.version_before = report.previous_version.clone();
    row.version_after = Some(report.version.clone());
    row.changes = Some(changes);
    if refused {
        row.exit_code = crate::error::EXIT_FAILED;
        let objection = report.changes.iter().find_map(|c| c.objection.as_ref());
        let e = &report.execution;
        if let Some(o) = objection {
            row.sqlstate = Some(o.sqlstate.clone());
            row.error = Some(one_line(&format!("plan refused: ERROR {}: {}", o.sqlstate, o.message)));
        } else if e.failed() {
            row.sqlstate = e.sqlstate.clone();
            row.error = Some(one_line(&format!(
                "trial run failed: change {}: {}",
                e.change.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or("?")
            )));
        } else {
            row.error = Some("plan refused".into());
        }
    }
    row.duration_ms = clock.ms();
    row
}

/// deploy.status() of one target, as the server wrote it.
pub fn status(t: &Target, project: Option<&str>, l: &Limits) -> Result<Value, CliError> {
    let clock = Clock::new(l);
    let mut c = open(t, l, &clock)?;
    guarded(&mut c, t, l, &clock, "during status", |c| db::status(c, project))
}
