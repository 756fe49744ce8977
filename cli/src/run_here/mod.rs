//! When the server reports that no background worker slot is free for a
//! project's phase, the client runs the phase itself from its own session
//! through `deploy.phase_client(project, request)` (docs/online.md, "When no
//! worker can run it"), then goes back to waiting: claim, then step after
//! step, transactional steps run in the server, online statements sent from
//! here, top level, in autocommit, with the change's settings, lock retries
//! and rounds. The server keeps the bookkeeping and the one-runner rule; if
//! this client dies, its backend ends and the claim with it, and the next
//! runner reconciles what it left.

pub mod protocol;
pub mod session;
#[cfg(test)]
mod tests;

use crate::error::CliError;
use crate::phase::{PhaseStatus, State};
use protocol::{request, Failure, Next, OnlineStep, Outcome, LOCK_NOT_AVAILABLE, NO_SLOT};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The session the client runs the phase from: the calls it makes. A fake
/// one in tests.
pub trait Session {
    /// `deploy.phase_client(project, request)`: the answer, and the backend
    /// pid that gave it.
    fn call(&mut self, request: &Value) -> Result<(Value, i32), CliError>;
    /// A setting's current value, read on backend `pid` only (None: another
    /// backend answered, as behind a transaction-mode pooler).
    fn setting(&mut self, name: &str, pid: i32) -> Result<Option<String>, CliError>;
    /// Sets a setting for the session (set_config, not SET: the value is a
    /// parameter), on backend `pid` only; false when another backend answered.
    fn set(&mut self, name: &str, value: &str, pid: i32) -> Result<bool, CliError>;
    /// Sends one statement as a simple query, top level, in autocommit; the
    /// rows it affected.
    fn execute(&mut self, sql: &str) -> Result<u64, CliError>;
    fn sleep(&mut self, d: Duration);
    fn now(&self) -> Instant;
}

/// How running the phase here ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// Nothing is left to run here: the phase is done, or a step failed (the
    /// status says which).
    Finished,
    /// Another live runner holds the phase: keep waiting.
    Taken,
    /// The phase cannot run from this connection; why, to say once. Not tried again.
    Cannot(String),
    /// --phase-timeout passed between two steps; the claim was given back.
    OutOfTime,
}

/// Whether to run the phase here: it is unfinished, it is the one waited for
/// (not a later deployment's), and the server could not start a worker
/// because no background worker slot is free.
pub fn wanted(s: &PhaseStatus, mine: Option<i64>) -> bool {
    let ours = match (mine, s.deployment_id) {
        (Some(mine), Some(theirs)) => theirs == mine,
        (None, Some(_)) => true,
        (_, None) => false,
    };
    ours && matches!(s.state, State::Pending | State::Running)
        && s.worker.as_deref().is_some_and(|w| w.starts_with(NO_SLOT))
}

/// Whether the client runs phases itself while it waits (`--no-run-here`
/// turns it off), and what it does with each run's ending.
#[derive(Debug)]
pub struct Here {
    enabled: bool,
    /// False right after a run: the next poll only looks, so that a phase
    /// the server keeps reporting unfinished is not claimed again and again
    /// without a pause.
    rested: bool,
}

impl Here {
    pub fn new(enabled: bool) -> Here {
        Here { enabled, rested: true }
    }

    /// Whether to run the phase of this status here.
    pub fn wants(&mut self, s: &PhaseStatus, mine: Option<i64>) -> bool {
        if !(self.enabled && wanted(s, mine)) {
            return false;
        }
        std::mem::replace(&mut self.rested, true)
    }

    /// Runs the phase of `status` from `session`. Ok(true) when it ran
    /// something (poll again at once); a phase that cannot run from this
    /// connection is said once through `warn` and not tried again. Err when
    /// the connection was lost.
    pub fn run(
        &mut self,
        status: &PhaseStatus,
        session: &mut dyn Session,
        out_of_time: &mut dyn FnMut() -> bool,
        say: &mut dyn FnMut(&str),
        warn: &mut dyn FnMut(&str),
    ) -> Result<bool, CliError> {
        match run_phase(session, &status.label(), out_of_time, say)? {
            Ran::Finished | Ran::OutOfTime => {
                self.rested = false;
                Ok(true)
            }
            Ran::Taken => Ok(false),
            Ran::Cannot(note) => {
                self.enabled = false;
                warn(&note);
                Ok(false)
            }
        }
    }
}

/// What to say when the connection ended while the client ran the phase.
pub fn lost_note(e: &CliError) -> String {
    let why = match e {
        CliError::Server { error, .. } => format!("ERROR {}: {}", error.sqlstate, error.message),
        CliError::Connect { message, .. } | CliError::Refused { message, .. } | CliError::Input { message, .. } => {
            message.clone()
        }
    };
    format!(
        "the connection ended while this client ran the phase ({why}); connecting again: the server finds \
         what was left running, and the phase goes on"
    )
}

/// Why a run stopped early.
enum Stop {
    /// The connection is gone: connect again, then start over from claim.
    Lost(CliError),
    /// This connection cannot run it (pooled, an old extension, another role).
    Cannot(String),
}

type Step<T> = Result<T, Stop>;

/// A transaction-mode pooler hands each statement to some backend: the claim
/// belongs to another one.
fn pooled_note(label: &str) -> String {
    format!(
        "{label}: no background worker slot is free, and this connection is pooled per transaction \
         (deploy.phase_client: this session does not run the phase), so the client cannot run the phase \
         itself: it waits for a worker slot. A session connection (not through a transaction-mode pooler) \
         lets the client run it."
    )
}

/// Runs the phase of `label` here, from claim to the last step. `out_of_time`
/// is checked between steps; `say` gets the progress lines. Err only when
/// the connection was lost (the caller connects again and polls; the server
/// reconciles what was left running).
pub fn run_phase(
    s: &mut dyn Session,
    label: &str,
    out_of_time: &mut dyn FnMut() -> bool,
    say: &mut dyn FnMut(&str),
) -> Result<Ran, CliError> {
    let mut run = Runner {
        s,
        label,
        say,
        pid: 0,
        restore: Vec::new(),
    };
    let result = run.phase(out_of_time);
    match result {
        Ok(ran) => Ok(ran),
        Err(Stop::Lost(e)) => Err(e),
        Err(Stop::Cannot(note)) => {
            // Best effort: the settings back, the claim back (a later runner reconciles).
            run.reset_settings();
            if run.release() {
                return Ok(Ran::Cannot(note));
            }
            Ok(Ran::Cannot(format!("{note}\n{}", kept_note(run.pid))))
        }
    }
}

/// How many times to send "release" (or a setting back) until the backend
/// that holds the claim answers (behind a transaction-mode pooler, each goes
/// to some backend), and the pause between two tries.
const SAME_BACKEND_TRIES: usize = 50;
const SAME_BACKEND_PAUSE: Duration = Duration::from_millis(100);

/// What to say when the claim could not be given back.
fn kept_note(pid: i32) -> String {
    format!(
        "The claim could not be given back: pooled backend {pid} holds it, and no worker starts for the \
         phase until that server connection closes (SELECT pg_terminate_backend({pid}) ends it)."
    )
}

struct Runner<'a> {
    s: &'a mut dyn Session,
    label: &'a str,
    say: &'a mut dyn FnMut(&str),
    /// The backend that holds the claim.
    pid: i32,
    /// Settings changed for the running step, with their values before.
    restore: Vec<(&'static str, String)>,
}

impl Runner<'_> {
    fn say(&mut self, text: &str) {
        (self.say)(&format!("{}: {text}", self.label));
    }

    /// A phase_client call; server errors other than a lost connection mean
    /// this connection cannot run the phase.
    fn call(&mut self, what: &str, req: &Value) -> Step<Value> {
        self.s
            .call(req)
            .map(|(answer, _)| answer)
            .map_err(|e| self.stop(what, e))
    }

    fn stop(&self, what: &str, e: CliError) -> Stop {
        match e {
            e if crate::wait::reconnectable(&e) => Stop::Lost(e),
            CliError::Server { error, .. } if error.sqlstate == "55000" && what != "claim" => {
                Stop::Cannot(pooled_note(self.label))
            }
            e => Stop::Cannot(format!(
                "{}: no background worker slot is free, and the client cannot run the phase itself \
                 ({e}); it waits for a worker slot",
                self.label
            )),
        }
    }

    fn phase(&mut self, out_of_time: &mut dyn FnMut() -> bool) -> Step<Ran> {
        if out_of_time() {
            return Ok(Ran::OutOfTime);
        }
        let answer = match self.s.call(&request::claim()) {
            Ok((answer, pid)) => {
                self.pid = pid;
                answer
            }
            Err(e) => return Err(self.stop("claim", e)),
        };
        if !protocol::claimed(&answer).map_err(|e| Stop::Cannot(format!("{}: {e}", self.label)))? {
            return Ok(Ran::Taken);
        }
        self.say("no background worker slot is free: this client runs the phase itself");
        loop {
            if out_of_time() {
                if !self.release() {
                    self.say(&kept_note(self.pid));
                }
                self.say("--phase-timeout passed: this client gives the phase back; it waits for a worker slot");
                return Ok(Ran::OutOfTime);
            }
            let answer = self.call("next", &request::next())?;
            let next = protocol::read_next(&answer).map_err(|e| Stop::Cannot(format!("{}: {e}", self.label)))?;
            match next {
                Next::Finished { .. } => return Ok(Ran::Finished),
                Next::Failed(f) => self.failed_line(f.id.as_deref().unwrap_or("a change"), &f),
                Next::AlreadyDone { step, id } => {
                    self.say(&format!(
                        "{id} (step {step}, online) was done already, found after an interruption"
                    ));
                }
                Next::Transaction { step, changes } => {
                    self.say(&format!(
                        "running step {step} (transaction: {}) from this client",
                        changes.join(", ")
                    ));
                    let answer = self.call("run", &request::run())?;
                    match protocol::failure_in(&answer) {
                        Some(f) => self.failed_line(&format!("step {step}"), &f),
                        None => self.say(&format!("step {step} (transaction) done from this client")),
                    }
                }
                Next::Online(step) => self.online(&step)?,
            }
        }
    }

    /// Gives the claim back. Only the backend that holds it can: a pooled
    /// backend that took it stays alive, and with it the claim, which would
    /// keep any worker from the phase; so "release" goes again until that
    /// backend answers (at once on a session connection).
    /// True when given back (or never taken, or the connection is gone and
    /// its backend with it).
    fn release(&mut self) -> bool {
        if self.pid == 0 {
            return true;
        }
        for i in 0..SAME_BACKEND_TRIES {
            if i > 0 {
                self.s.sleep(SAME_BACKEND_PAUSE);
            }
            match self.s.call(&request::release()) {
                Ok((_, pid)) if pid != self.pid => continue,
                Ok(_) => return true,
                Err(e) => return crate::wait::reconnectable(&e),
            }
        }
        false
    }

    fn failed_line(&mut self, what: &str, f: &Failure) {
        self.say(&format!("{what} FAILED: {}", f.text()));
    }

    /// One online change: its settings, its cleanup, the statement (rounds,
    /// lock retries), then done or failed, then the settings back.
    fn online(&mut self, step: &OnlineStep) -> Step<()> {
        let started = self.s.now();
        self.say(&format!(
            "running {} (step {}, online) from this client",
            step.id, step.step
        ));
        // A setting the server refuses fails the change like its statement would.
        let outcome = self.set_settings(step).and_then(|()| self.statement(step, started));
        match outcome {
            Ok(o) => {
                let answer = self.call("done", &request::done(&o))?;
                match protocol::failure_in(&answer) {
                    Some(f) => self.failed_line(&step.id, &f),
                    None => self.say(&format!("{} done from this client{}", step.id, outcome_text(&o))),
                }
            }
            Err(StmtError::Lost(e)) => return Err(Stop::Lost(e)),
            Err(StmtError::Cannot(note)) => return Err(Stop::Cannot(note)),
            Err(StmtError::Failed(f)) => {
                self.cleanup()?;
                self.call("failed", &request::failed(&f))?;
                self.failed_line(&step.id, &f);
            }
        }
        self.reset_settings();
        Ok(())
    }

    /// The statement, round after round for a batched change, retried after
    /// a lock timeout (the cleanup sent before each attempt).
    fn statement(&mut self, step: &OnlineStep, started: Instant) -> Result<Outcome, StmtError> {
        let mut o = Outcome::default();
        let mut cleanup = step.cleanup.clone();
        let mut said = started;
        loop {
            let attempt = self.attempt(step, cleanup.take(), &mut o, &mut said);
            match attempt {
                Ok(()) => {
                    o.duration = self.s.now().saturating_duration_since(started);
                    return Ok(o);
                }
                Err(StmtError::Failed(f))
                    if f.sqlstate == LOCK_NOT_AVAILABLE && o.retries < step.settings.lock_retries =>
                {
                    o.retries += 1;
                    let wait = protocol::backoff(o.retries, jitter());
                    self.say(&format!(
                        "{}: {}; retry {} of {} in {}ms",
                        step.id,
                        f.text(),
                        o.retries,
                        step.settings.lock_retries,
                        wait.as_millis()
                    ));
                    self.call("retry", &request::retry(&f)).map_err(StmtError::from)?;
                    let answer = self.call("cleanup", &request::cleanup()).map_err(StmtError::from)?;
                    cleanup = protocol::cleanup_sql(&answer);
                    self.s.sleep(wait);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn attempt(
        &mut self,
        step: &OnlineStep,
        cleanup: Option<String>,
        o: &mut Outcome,
        said: &mut Instant,
    ) -> Result<(), StmtError> {
        if let Some(sql) = cleanup {
            self.execute(&sql)?;
        }
        loop {
            let n = self.execute(&step.sql)?;
            o.rounds += 1;
            o.rows += n;
            let Some(pause) = step.repeat_pause else {
                return Ok(());
            };
            if n == 0 {
                return Ok(());
            }
            let now = self.s.now();
            if now.saturating_duration_since(*said) >= PROGRESS_EVERY {
                *said = now;
                self.say(&format!("{}: round {}, {} row(s) so far", step.id, o.rounds, o.rows));
            }
            self.s.sleep(pause);
        }
    }

    fn execute(&mut self, sql: &str) -> Result<u64, StmtError> {
        self.s.execute(sql).map_err(StmtError::of_statement)
    }

    /// After a final failure: what a failed concurrent build left, dropped.
    fn cleanup(&mut self) -> Step<()> {
        let answer = self.call("cleanup", &request::cleanup())?;
        if let Some(sql) = protocol::cleanup_sql(&answer) {
            match self.execute(&sql) {
                Ok(_) => {}
                Err(StmtError::Lost(e)) => return Err(Stop::Lost(e)),
                Err(StmtError::Cannot(note)) => return Err(Stop::Cannot(note)),
                // The next runner drops it before building again.
                Err(StmtError::Failed(f)) => self.say(&format!("{sql}: {}", f.text())),
            }
        }
        Ok(())
    }

    /// The change's settings on the session, remembering the values before.
    fn set_settings(&mut self, step: &OnlineStep) -> Result<(), StmtError> {
        for (name, value) in step.settings.gucs() {
            let before = match self.s.setting(name, self.pid) {
                Ok(Some(v)) => v,
                Ok(None) => return Err(StmtError::Cannot(pooled_note(self.label))),
                Err(e) => return Err(StmtError::of_statement(e)),
            };
            match self.s.set(name, value, self.pid) {
                Ok(true) => self.restore.push((name, before)),
                Ok(false) => return Err(StmtError::Cannot(pooled_note(self.label))),
                Err(e) => return Err(StmtError::of_statement(e)),
            }
        }
        Ok(())
    }

    /// The settings back as they were, on the backend that holds the claim
    /// (tried again while a pooler hands the call to others), best effort: a
    /// lost connection takes them with it.
    fn reset_settings(&mut self) {
        for (name, before) in std::mem::take(&mut self.restore).into_iter().rev() {
            for i in 0..SAME_BACKEND_TRIES {
                if i > 0 {
                    self.s.sleep(SAME_BACKEND_PAUSE);
                }
                if !matches!(self.s.set(name, &before, self.pid), Ok(false)) {
                    break;
                }
            }
        }
    }
}

/// How often a batched change says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What went wrong sending a statement.
enum StmtError {
    Lost(CliError),
    Cannot(String),
    /// The statement failed: its SQLSTATE and message.
    Failed(Failure),
}

impl StmtError {
    fn of_statement(e: CliError) -> StmtError {
        if crate::wait::reconnectable(&e) {
            return StmtError::Lost(e);
        }
        match e {
            CliError::Server { error, .. } => StmtError::Failed(Failure::new(&error.sqlstate, &error.message)),
            other => StmtError::Failed(Failure::new("XX000", &other.to_string())),
        }
    }
}

impl From<Stop> for StmtError {
    fn from(s: Stop) -> StmtError {
        match s {
            Stop::Lost(e) => StmtError::Lost(e),
            Stop::Cannot(note) => StmtError::Cannot(note),
        }
    }
}

/// ` (12 round(s), 11000 row(s), 1 lock retry, 3s)`.
fn outcome_text(o: &Outcome) -> String {
    let mut parts = Vec::new();
    if o.rounds > 1 || o.rows > 0 {
        parts.push(format!("{} round(s), {} row(s)", o.rounds, o.rows));
    }
    if o.retries > 0 {
        parts.push(format!(
            "{} lock retr{}",
            o.retries,
            if o.retries == 1 { "y" } else { "ies" }
        ));
    }
    parts.push(crate::phase::elapsed_text(o.duration));
    format!(" ({})", parts.join(", "))
}

/// A number in [0, 1) for the retry jitter, from the clock.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}
