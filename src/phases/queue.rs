//! The durable queue of a deployment's later steps: written by deploy.apply
//! in the deployment's own transaction, read and updated by the worker, all
//! as the extension's owner.

use crate::analyze::RunSettings;
use crate::error::DeployError;
use pg_deploy_core::phases::{Step, StepKind};
use pg_deploy_core::{AppliedChange, Change, ChangeKind};
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::json;

/// One change of a queued step, as apply hands it over.
pub struct Queued<'a> {
    pub step: usize,
    pub ordinal: usize,
    pub change: &'a Change,
    pub action: &'static str,
    pub settings: &'a RunSettings,
}

/// The queued changes of every step after the main one, in order.
pub fn queued<'a>(
    steps: &[Step],
    changes: &'a [Change],
    actions: &[&'static str],
    settings: &[Option<&'a RunSettings>],
) -> Vec<Queued<'a>> {
    let mut out = Vec::new();
    for (s, step) in steps.iter().enumerate().skip(1) {
        for &i in &step.changes {
            if let Some(settings) = settings[i] {
                out.push(Queued {
                    step: s,
                    ordinal: i,
                    change: &changes[i],
                    action: actions[i],
                    settings,
                });
            }
        }
    }
    out
}

/// Writes the queue of deployment `deployment_id`. Run as the extension's owner.
pub fn enqueue(
    client: &mut SpiClient<'_>,
    deployment_id: i64,
    project: &str,
    queued: &[Queued<'_>],
    steps: &[Step],
    run_as: &str,
    login_role: &str,
) -> Result<(), DeployError> {
    if queued.is_empty() {
        return Ok(());
    }
    let mut cols = Columns::default();
    for q in queued {
        let c = q.change;
        cols.step.push(q.step as i32);
        cols.ordinal.push(q.ordinal as i32);
        cols.id.push(c.id.clone());
        cols.kind.push(c.kind.as_str().to_string());
        cols.action.push(q.action.to_string());
        cols.checksum.push(c.checksum.clone());
        cols.online.push(steps[q.step].kind == StepKind::Online);
        cols.repeat.push(c.phase.repeat.is_some());
        cols.pause.push(c.phase.repeat.as_ref().map(|r| r.pause.clone()));
        cols.sql.push(c.sql.clone());
        cols.verify.push(c.verify.clone());
        cols.revert.push(c.revert.clone());
        cols.settings.push(
            json!({
                "search_path": q.settings.search_path,
                "lock_timeout": q.settings.lock_timeout,
                "statement_timeout": q.settings.statement_timeout,
                "lock_retries": q.settings.lock_retries,
            })
            .to_string(),
        );
    }
    client.update(
        "INSERT INTO deploy.phase_queue
           (deployment_id, project, step, ordinal, change_id, kind, action, checksum, online,
            repeat_until_no_rows, repeat_pause, sql, verify, revert_sql, settings, run_as, login_role)
         SELECT $1, $2, u.st, u.o, u.i, u.k, u.a, u.c, u.onl, u.rep, u.pau, u.q, u.v, u.r, u.s::pg_catalog.jsonb, $3, $4
           FROM (SELECT pg_catalog.unnest($5::pg_catalog.int4[]) AS st, pg_catalog.unnest($6::pg_catalog.int4[]) AS o,
                        pg_catalog.unnest($7::pg_catalog.text[]) AS i, pg_catalog.unnest($8::pg_catalog.text[]) AS k,
                        pg_catalog.unnest($9::pg_catalog.text[]) AS a, pg_catalog.unnest($10::pg_catalog.text[]) AS c,
                        pg_catalog.unnest($11::pg_catalog.bool[]) AS onl, pg_catalog.unnest($12::pg_catalog.bool[]) AS rep,
                        pg_catalog.unnest($13::pg_catalog.text[]) AS pau, pg_catalog.unnest($14::pg_catalog.text[]) AS q,
                        pg_catalog.unnest($15::pg_catalog.text[]) AS v, pg_catalog.unnest($16::pg_catalog.text[]) AS r,
                        pg_catalog.unnest($17::pg_catalog.text[]) AS s) AS u",
        None,
        &[
            deployment_id.into(),
            project.into(),
            run_as.into(),
            login_role.into(),
            cols.step.into(),
            cols.ordinal.into(),
            cols.id.into(),
            cols.kind.into(),
            cols.action.into(),
            cols.checksum.into(),
            cols.online.into(),
            cols.repeat.into(),
            cols.pause.into(),
            cols.sql.into(),
            cols.verify.into(),
            cols.revert.into(),
            cols.settings.into(),
        ],
    )?;
    Ok(())
}

#[derive(Default)]
struct Columns {
    step: Vec<i32>,
    ordinal: Vec<i32>,
    id: Vec<String>,
    kind: Vec<String>,
    action: Vec<String>,
    checksum: Vec<String>,
    online: Vec<bool>,
    repeat: Vec<bool>,
    pause: Vec<Option<String>>,
    sql: Vec<String>,
    verify: Vec<Option<String>>,
    revert: Vec<Option<String>>,
    settings: Vec<String>,
}

/// Where the project's latest queued deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseState {
    Pending,
    Running,
    Done,
    Failed,
    Superseded,
}

impl PhaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseState::Pending => "pending",
            PhaseState::Running => "running",
            PhaseState::Done => "done",
            PhaseState::Failed => "failed",
            PhaseState::Superseded => "superseded",
        }
    }

    /// Its changes may still run: a worker should be on it.
    pub fn unfinished(self) -> bool {
        matches!(self, PhaseState::Pending | PhaseState::Running)
    }
}

/// The project's latest queued deployment: its id, its state, and the
/// changes still to run (id, checksum, kind).
pub struct Latest {
    pub deployment_id: i64,
    pub state: PhaseState,
    pub waiting: Vec<(String, AppliedChange)>,
}

/// The state of the latest deployment of `project` that queued anything.
pub fn latest(client: &mut SpiClient<'_>, project: &str) -> Result<Option<Latest>, DeployError> {
    let rows = client.update(
        "SELECT q.deployment_id, q.change_id, q.kind, q.checksum, q.state
           FROM deploy.phase_queue q
          WHERE q.project = $1
            AND q.deployment_id = (SELECT max(l.deployment_id) FROM deploy.phase_queue l WHERE l.project = $1)
          ORDER BY q.step, q.ordinal",
        None,
        &[project.into()],
    )?;
    let mut latest: Option<Latest> = None;
    let mut states = Vec::new();
    for row in rows {
        let id = row.get::<i64>(1)?.unwrap_or_default();
        let change = row.get::<String>(2)?.unwrap_or_default();
        let kind = ChangeKind::parse(&row.get::<String>(3)?.unwrap_or_default()).unwrap_or(ChangeKind::Versioned);
        let checksum = row.get::<String>(4)?.unwrap_or_default();
        let state = row.get::<String>(5)?.unwrap_or_default();
        let entry = latest.get_or_insert_with(|| Latest {
            deployment_id: id,
            state: PhaseState::Done,
            waiting: Vec::new(),
        });
        if state == "pending" || state == "running" {
            entry.waiting.push((change, AppliedChange { checksum, kind }));
        }
        states.push(state);
    }
    if let Some(entry) = latest.as_mut() {
        entry.state = state_of(&states);
    }
    Ok(latest)
}

/// A deployment's phase state from its rows' states.
pub fn state_of(states: &[String]) -> PhaseState {
    let any = |s: &str| states.iter().any(|x| x == s);
    if any("failed") {
        PhaseState::Failed
    } else if any("running") {
        PhaseState::Running
    } else if any("pending") {
        PhaseState::Pending
    } else if any("superseded") {
        PhaseState::Superseded
    } else {
        PhaseState::Done
    }
}

/// A new deployment replaces a failed phase: what it left undone will be
/// planned again from the history. Run as the extension's owner.
pub fn supersede(client: &mut SpiClient<'_>, deployment_id: i64) -> Result<(), DeployError> {
    client.update(
        "WITH s AS (UPDATE deploy.phase_queue SET state = 'superseded'
                     WHERE deployment_id = $1 AND state IN ('pending', 'running', 'failed')
                     RETURNING deployment_id, project, step, change_id)
         INSERT INTO deploy.phase_events (deployment_id, project, step, change_id, event, message)
         SELECT s.deployment_id, s.project, s.step, s.change_id, 'superseded', 'a later deployment replaced it' FROM s",
        None,
        &[deployment_id.into()],
    )?;
    Ok(())
}

/// The steps after the main one, for the apply report.
pub fn report_steps(steps: &[Step], changes: &[Change]) -> Vec<serde_json::Value> {
    steps
        .iter()
        .enumerate()
        .skip(1)
        .map(|(s, step)| {
            json!({
                "step": s,
                "kind": step.kind.as_str(),
                "changes": step.changes.iter().map(|&i| changes[i].id.clone()).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The settings of a queued change, as apply resolved them.
pub fn settings_of(value: &JsonB) -> RunSettings {
    let v = &value.0;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    RunSettings {
        search_path: text("search_path"),
        lock_timeout: text("lock_timeout"),
        statement_timeout: text("statement_timeout"),
        lock_retries: v.get("lock_retries").and_then(|x| x.as_u64()).unwrap_or(0) as u32,
        allow: Vec::new(),
    }
}
