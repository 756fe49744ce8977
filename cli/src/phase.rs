//! The steps of a deployment that run after it commits, as the extension
//! reports them: deploy.apply's `"phases"` (which steps, in what order) and
//! deploy.phase_status(project) (how far they got); and how the client shows
//! them: the steps after an apply, a progress line while waiting, a summary
//! at the end, and the error of a failed step.

use crate::error::{CliError, ServerError};
use crate::output::table;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// deploy.apply's `"phases"`: the steps that run after the deployment commits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Steps {
    pub deployment_id: i64,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Step {
    pub step: u32,
    /// "transaction" or "online".
    pub kind: String,
    #[serde(default)]
    pub changes: Vec<String>,
}

/// The steps in an apply report, None when nothing runs after commit
/// (`"phases"` absent, null, or without steps).
pub fn steps_of(answer: &Value) -> Result<Option<Steps>, CliError> {
    match answer.get("phases") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let steps = crate::output::read("apply", v, serde_json::from_value::<Steps>)?;
            Ok(Some(steps).filter(|s| !s.steps.is_empty()))
        }
    }
}

/// deploy.phase_status(project).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhaseStatus {
    pub project: String,
    pub deployment_id: Option<i64>,
    pub state: State,
    #[serde(default)]
    pub done: u64,
    #[serde(default)]
    pub total: u64,
    /// The change running now.
    pub current: Option<String>,
    pub since: Option<String>,
    #[serde(default)]
    pub changes: Vec<PhaseChange>,
    /// Why there is no phase, when the extension says (e.g. it needs an update).
    #[serde(default)]
    pub note: Option<String>,
    /// What the extension did about the background worker ("running (pid 42)",
    /// "started", "not started: no background worker slot is free …").
    #[serde(default)]
    pub worker: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The project's last deployment runs nothing after commit.
    None,
    /// Queued; no worker has started the next step yet.
    Pending,
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhaseChange {
    pub id: String,
    #[serde(default)]
    pub step: u32,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub state: String,
    pub attempts: Option<u64>,
    pub rounds: Option<u64>,
    pub rows: Option<u64>,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl PhaseStatus {
    /// `shop #7`, or `shop` when there is no deployment to name.
    pub fn label(&self) -> String {
        match self.deployment_id {
            Some(id) => format!("{} #{id}", self.project),
            None => self.project.clone(),
        }
    }

    fn change(&self, id: Option<&str>) -> Option<&PhaseChange> {
        id.and_then(|id| self.changes.iter().find(|c| c.id == id))
    }

    /// Why no worker runs the phase, when the extension could not start one.
    pub fn worker_problem(&self) -> Option<&str> {
        self.worker.as_deref().filter(|w| w.starts_with("not started"))
    }

    /// The change that failed: the one named current, else the first failed one.
    pub fn failed_change(&self) -> Option<&PhaseChange> {
        self.change(self.current.as_deref())
            .filter(|c| c.state == "failed")
            .or_else(|| self.changes.iter().find(|c| c.state == "failed"))
    }
}

/// Rounds and rows, when there is more to say than one round of no rows
/// (every statement runs one round; a batched change runs until no rows).
fn rounds_and_rows(c: &PhaseChange) -> Option<(u64, u64)> {
    let (rounds, rows) = (c.rounds.unwrap_or(0), c.rows.unwrap_or(0));
    (rounds > 1 || rows > 0).then_some((rounds, rows))
}

/// `0003_idx (step 2, online)`, with the rounds of a batched change.
fn describe(c: &PhaseChange) -> String {
    let mut out = format!("{} (step {}, {})", c.id, c.step, c.kind);
    if let Some((rounds, rows)) = rounds_and_rows(c) {
        out.push_str(&format!(", round {rounds}, {rows} row(s)"));
    }
    out
}

/// One line saying where the phase is.
pub fn line(s: &PhaseStatus) -> String {
    let label = s.label();
    let mut count = format!("{}/{} step(s) done", s.done, s.total);
    if let Some(problem) = s.worker_problem() {
        count.push_str(&format!(" (worker {problem})"));
    }
    match s.state {
        State::None => match &s.note {
            Some(note) => format!("{label}: nothing runs after commit ({note})"),
            None => format!("{label}: nothing runs after commit"),
        },
        State::Pending => format!("{label}: waiting for the background worker, {count}"),
        State::Running => match s.change(s.current.as_deref()) {
            Some(c) => format!("{label}: running {}, {count}", describe(c)),
            None => format!("{label}: running, {count}"),
        },
        State::Done => format!("{label}: done, {count}"),
        State::Failed => match s.failed_change() {
            Some(c) => format!(
                "{label}: FAILED at {}: ERROR {}: {}",
                describe(c),
                c.sqlstate.as_deref().unwrap_or("?"),
                c.message.as_deref().unwrap_or("?")
            ),
            None => format!("{label}: FAILED, {count}"),
        },
    }
}

/// `700ms`, `42s`, `3min 05s`, `1h 02min`.
pub fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}min {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}min", s / 3600, s % 3600 / 60),
    }
}

/// Progress on stderr while waiting: a plain line each time the state, the
/// running change or the count changes; on a terminal, one live line
/// rewritten at every poll (with the time waited), a new one per change.
#[derive(Debug)]
pub struct Progress {
    live: bool,
    last: Option<(State, Option<String>, u64, Option<String>)>,
    open: bool,
}

impl Progress {
    pub fn new(live: bool) -> Progress {
        Progress {
            live,
            last: None,
            open: false,
        }
    }

    /// What to write to stderr after a poll ("" for nothing).
    pub fn update(&mut self, s: &PhaseStatus, waited: Duration) -> String {
        let key = (
            s.state,
            s.current.clone(),
            s.done,
            s.worker_problem().map(str::to_string),
        );
        let changed = self.last.as_ref() != Some(&key);
        self.last = Some(key);
        if !self.live {
            return if changed {
                format!("pg-deploy: {}\n", line(s))
            } else {
                String::new()
            };
        }
        let mut out = String::new();
        if changed && self.open {
            out.push('\n');
        }
        out.push_str(&format!("\r\x1b[2Kpg-deploy: {} [{}]", line(s), elapsed_text(waited)));
        self.open = true;
        out
    }

    /// Ends an open live line.
    pub fn finish(&mut self) -> String {
        if std::mem::take(&mut self.open) {
            "\n".into()
        } else {
            String::new()
        }
    }
}

/// The steps after an apply, under its report.
pub fn steps_text(s: &Steps, waiting: bool) -> String {
    let mut out = format!("  after commit{}:\n", if waiting { "" } else { ", in the background" });
    let rows = s
        .steps
        .iter()
        .map(|st| vec![format!("step {}", st.step), st.kind.clone(), st.changes.join(", ")])
        .collect();
    out.push_str(&table(None, rows, "    "));
    out
}

/// The end of a phase: a line, how long the client waited, each change's outcome.
pub fn summary(s: &PhaseStatus, waited: Duration) -> String {
    let mut out = format!("{} (waited {})\n", line(s), elapsed_text(waited));
    let rows = s
        .changes
        .iter()
        .map(|c| {
            let mut what = format!("step {}, {}", c.step, c.kind);
            if let Some((rounds, rows)) = rounds_and_rows(c) {
                what.push_str(&format!(", {rounds} round(s), {rows} row(s)"));
            }
            if let Some(a) = c.attempts.filter(|&a| a > 1) {
                what.push_str(&format!(", {a} attempts"));
            }
            vec![c.state.clone(), c.id.clone(), what]
        })
        .collect();
    out.push_str(&table(None, rows, "  "));
    out
}

/// The error of a failed phase: the failed change's SQLSTATE and message (exit 1).
pub fn failure(s: &PhaseStatus) -> CliError {
    let (sqlstate, message) = match s.failed_change() {
        Some(c) => (
            c.sqlstate.clone().unwrap_or_else(|| "XX000".into()),
            format!(
                "change \"{}\" (step {}, {}): {}",
                c.id,
                c.step,
                c.kind,
                c.message.as_deref().unwrap_or("failed")
            ),
        ),
        None => ("XX000".into(), "a step failed".into()),
    };
    CliError::Server {
        context: format!("phase of {}", s.label()),
        error: ServerError {
            sqlstate,
            message,
            detail: None,
            hint: Some(format!(
                "The steps before it stay committed. `pg-deploy wait {}` shows the phase again.",
                s.project
            )),
        },
    }
}

/// The apply report's `"phases"` once waited for: the final status, with the
/// steps apply announced kept under `"steps"`.
pub fn merged(announced: &Value, status: &Value) -> Value {
    let mut out = status.clone();
    if let (Some(obj), Some(steps)) = (out.as_object_mut(), announced.get("steps")) {
        obj.entry("steps").or_insert_with(|| steps.clone());
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn status(v: Value) -> PhaseStatus {
        serde_json::from_value(v).expect("a phase status")
    }

    pub fn running() -> Value {
        json!({"project": "shop", "deployment_id": 7, "state": "running", "done": 1, "total": 3,
               "current": "0003_fill", "since": "2024-05-01T12:00:00+00:00",
               "changes": [
                   {"id": "0002_idx", "step": 1, "kind": "online", "state": "done", "attempts": 1, "rounds": 0,
                    "rows": 0, "sqlstate": null, "message": null, "started_at": "2024-05-01T12:00:00+00:00",
                    "finished_at": "2024-05-01T12:00:04+00:00"},
                   {"id": "0003_fill", "step": 2, "kind": "online", "state": "running", "attempts": 1, "rounds": 12,
                    "rows": 12000, "sqlstate": null, "message": null, "started_at": null, "finished_at": null},
                   {"id": "0004_check", "step": 3, "kind": "transaction", "state": "pending", "attempts": 0,
                    "rounds": 0, "rows": 0, "sqlstate": null, "message": null, "started_at": null,
                    "finished_at": null}]})
    }

    fn with(mut v: Value, changes: &[(&str, Value)]) -> Value {
        for (k, x) in changes {
            v[*k] = x.clone();
        }
        v
    }

    #[test]
    fn reads_the_apply_steps() {
        assert_eq!(steps_of(&json!({"outcome": "applied"})).expect("ok"), None);
        assert_eq!(steps_of(&json!({"phases": null})).expect("ok"), None);
        assert_eq!(
            steps_of(&json!({"phases": {"deployment_id": 3, "steps": []}})).expect("ok"),
            None
        );
        let s = steps_of(&json!({"phases": {"deployment_id": 3, "steps": [
            {"step": 1, "kind": "online", "changes": ["0002_idx"]},
            {"step": 2, "kind": "transaction", "changes": ["0003_a", "0004_b"]}]}}))
        .expect("ok")
        .expect("steps");
        assert_eq!(s.deployment_id, 3);
        assert_eq!(
            steps_text(&s, true),
            "  after commit:\n    step 1  online       0002_idx\n    step 2  transaction  0003_a, 0004_b\n"
        );
        assert!(steps_text(&s, false).starts_with("  after commit, in the background:\n"));
        let e = steps_of(&json!({"phases": {"steps": "x"}})).expect_err("odd shape");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn lines_say_where_the_phase_is() {
        let s = status(running());
        assert_eq!(
            line(&s),
            "shop #7: running 0003_fill (step 2, online), round 12, 12000 row(s), 1/3 step(s) done"
        );
        let stuck = status(with(
            running(),
            &[
                ("state", json!("pending")),
                ("worker", json!("not started: no background worker slot is free")),
            ],
        ));
        assert_eq!(
            line(&stuck),
            "shop #7: waiting for the background worker, 1/3 step(s) done \
             (worker not started: no background worker slot is free)"
        );
        let mut one_round = running();
        one_round["changes"][1]["rounds"] = json!(1);
        one_round["changes"][1]["rows"] = json!(0);
        assert_eq!(
            line(&status(one_round)),
            "shop #7: running 0003_fill (step 2, online), 1/3 step(s) done",
            "one round of no rows says nothing"
        );
        let fine = status(with(running(), &[("worker", json!("running (pid 42)"))]));
        assert!(!line(&fine).contains("worker"), "{}", line(&fine));
        let pending = status(with(
            running(),
            &[("state", json!("pending")), ("current", json!(null))],
        ));
        assert_eq!(
            line(&pending),
            "shop #7: waiting for the background worker, 1/3 step(s) done"
        );
        let done = status(with(running(), &[("state", json!("done")), ("done", json!(3))]));
        assert_eq!(line(&done), "shop #7: done, 3/3 step(s) done");
        let none = status(
            json!({"project": "shop", "deployment_id": null, "state": "none", "done": 0, "total": 0,
                                 "current": null, "since": null, "changes": []}),
        );
        assert_eq!(line(&none), "shop: nothing runs after commit");
        let old = status(json!({"project": "shop", "state": "none",
                                "note": "phases need pg_deploy 0.2.0: ALTER EXTENSION pg_deploy UPDATE"}));
        assert_eq!(
            line(&old),
            "shop: nothing runs after commit (phases need pg_deploy 0.2.0: ALTER EXTENSION pg_deploy UPDATE)"
        );
        let mut failed = running();
        failed["state"] = json!("failed");
        failed["changes"][1]["state"] = json!("failed");
        failed["changes"][1]["sqlstate"] = json!("23505");
        failed["changes"][1]["message"] = json!("duplicate key value violates unique constraint \"u\"");
        let failed = status(failed);
        assert_eq!(
            line(&failed),
            "shop #7: FAILED at 0003_fill (step 2, online), round 12, 12000 row(s): ERROR 23505: \
             duplicate key value violates unique constraint \"u\""
        );
        let e = failure(&failed);
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "phase of shop #7 failed: ERROR 23505: change \"0003_fill\" (step 2, online): duplicate key value \
             violates unique constraint \"u\"\nHINT: The steps before it stay committed. `pg-deploy wait shop` \
             shows the phase again."
        );
        assert_eq!(e.to_json()["error"]["sqlstate"], "23505");
        let bare = status(json!({"project": "p", "deployment_id": 1, "state": "failed"}));
        assert_eq!(line(&bare), "p #1: FAILED, 0/0 step(s) done");
        assert!(failure(&bare).to_string().contains("XX000"));
        assert!(serde_json::from_value::<PhaseStatus>(json!({"project": "p", "state": "paused"})).is_err());
    }

    #[test]
    fn plain_progress_prints_only_changes() {
        let mut p = Progress::new(false);
        let s = status(running());
        assert_eq!(
            p.update(&s, Duration::from_secs(1)),
            "pg-deploy: shop #7: running 0003_fill (step 2, online), round 12, 12000 row(s), 1/3 step(s) done\n"
        );
        let more_rounds = status(with(running(), &[("since", json!("later"))]));
        assert_eq!(
            p.update(&more_rounds, Duration::from_secs(2)),
            "",
            "same state, same change"
        );
        let next = status(with(running(), &[("current", json!("0004_check")), ("done", json!(2))]));
        assert_eq!(
            p.update(&next, Duration::from_secs(3)),
            "pg-deploy: shop #7: running 0004_check (step 3, transaction), 2/3 step(s) done\n"
        );
        assert_eq!(p.finish(), "");
    }

    #[test]
    fn live_progress_rewrites_one_line() {
        let mut p = Progress::new(true);
        let s = status(running());
        let first = p.update(&s, Duration::from_secs(5));
        assert!(
            first.starts_with("\r\x1b[2Kpg-deploy: shop #7: running 0003_fill"),
            "{first:?}"
        );
        assert!(first.ends_with(" [5s]"), "{first:?}");
        let again = p.update(&s, Duration::from_secs(65));
        assert!(again.starts_with('\r') && again.ends_with(" [1min 05s]"), "{again:?}");
        let done = status(with(
            running(),
            &[("state", json!("done")), ("done", json!(3)), ("current", json!(null))],
        ));
        let last = p.update(&done, Duration::from_secs(3725));
        assert!(last.starts_with("\n\r\x1b[2K"), "a new line for a new state: {last:?}");
        assert!(last.ends_with("done, 3/3 step(s) done [1h 02min]"), "{last:?}");
        assert_eq!(p.finish(), "\n");
        assert_eq!(p.finish(), "");
    }

    #[test]
    fn elapsed_times() {
        let t = |ms: u64| elapsed_text(Duration::from_millis(ms));
        assert_eq!(
            [t(700), t(1_000), t(59_999), t(65_000), t(3_725_000)],
            ["700ms", "1s", "59s", "1min 05s", "1h 02min"]
        );
    }

    #[test]
    fn summary_lists_each_change() {
        let done = status(with(running(), &[("state", json!("done")), ("done", json!(3))]));
        assert_eq!(
            summary(&done, Duration::from_secs(14)),
            "shop #7: done, 3/3 step(s) done (waited 14s)\n\
             \x20 done     0002_idx    step 1, online\n\
             \x20 running  0003_fill   step 2, online, 12 round(s), 12000 row(s)\n\
             \x20 pending  0004_check  step 3, transaction\n"
        );
    }

    #[test]
    fn merged_keeps_the_steps() {
        let announced = json!({"deployment_id": 7, "steps": [{"step": 1, "kind": "online", "changes": ["a"]}]});
        let m = merged(&announced, &running());
        assert_eq!(m["state"], "running");
        assert_eq!(m["steps"][0]["changes"][0], "a");
        assert_eq!(merged(&json!(null), &running()), running());
    }
}
