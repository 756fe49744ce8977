//! deploy.phase_status(project) and deploy.wait(project, timeout): where a
//! project's latest phase stands, and waiting for it to end. Both start a
//! worker again when the phase is unfinished and nobody runs it (the last one
//! died, the server restarted, the compute was suspended).

use super::launch::{backend_alive, launch, LaunchTarget};
use super::queue::{state_of, PhaseState};
use crate::deployment::guarded;
use crate::error::DeployError;
use crate::owner::{Owner, Schema};
use crate::sqlstate::{pg_error, sqlstate};
use crate::subxact::PgError;
use pgrx::datum::Interval;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Where the project's latest phase stands; starts a worker if one is needed.
#[pg_extern(volatile, parallel_unsafe)]
pub fn phase_status(project: Option<&str>) -> JsonB {
    guarded("deploy.phase_status", || {
        let project = project.ok_or_else(|| null_argument("project"))?;
        Spi::connect_mut(|client| status(client, project, true))
    })
}

/// Blocks until the project's latest phase ends, then returns its report;
/// raises the failed change's error if it failed. Cancellable.
#[pg_extern(volatile, parallel_unsafe)]
fn wait(project: Option<&str>, timeout: default!(Option<Interval>, "'1 hour'")) -> JsonB {
    guarded("deploy.wait", || {
        let project = project.ok_or_else(|| null_argument("project"))?;
        let limit = timeout.map(interval_duration).unwrap_or(Duration::from_secs(3600));
        // SAFETY: reads the transaction's isolation level.
        if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
            return Err(DeployError::Postgres(PgError {
                sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION),
                message: "deploy.wait needs READ COMMITTED: under one snapshot it would never see the phase end".into(),
                detail: None,
                hint: Some("Call it on its own, outside a REPEATABLE READ or SERIALIZABLE transaction.".into()),
            }));
        }
        let report = Spi::connect_mut(|client| until_finished(client, project, limit))?;
        match report.get("state").and_then(Value::as_str) {
            Some("failed") => Err(failed(project, &report)),
            _ => Ok(report),
        }
    })
}

/// Polls the project's phase (starting a worker when needed) until it is no
/// longer pending or running, and returns its report; errors when it was
/// queued by this very transaction or `limit` passes.
pub fn until_finished(client: &mut SpiClient<'_>, project: &str, limit: Duration) -> Result<Value, DeployError> {
    let started = Instant::now();
    loop {
        let report = status(client, project, true)?;
        let state = report.get("state").and_then(Value::as_str).unwrap_or("none");
        if !matches!(state, "pending" | "running") {
            return Ok(report);
        }
        if report.get("queued_by_this_transaction") == Some(&Value::Bool(true)) {
            return Err(DeployError::Postgres(PgError {
                sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                message: format!(
                    "the phase of project \"{project}\" was queued by this transaction, and runs only once it commits"
                ),
                detail: None,
                hint: Some("Commit, then call deploy.wait in a new transaction.".into()),
            }));
        }
        if started.elapsed() >= limit {
            return Err(DeployError::Postgres(PgError {
                sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_QUERY_CANCELED),
                message: format!(
                    "deploy.wait: the phase of project \"{project}\" is still {state} after {:?}",
                    limit
                ),
                detail: Some(summary(&report)),
                hint: Some("It goes on without you: call deploy.wait again, or see deploy.phase_status.".into()),
            }));
        }
        sleep_without_xmin(200);
    }
}

fn null_argument(name: &str) -> DeployError {
    DeployError::Postgres(pg_error(
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        format!("{name} must not be NULL"),
    ))
}

fn interval_duration(i: Interval) -> Duration {
    let micros = i.micros() + i64::from(i.days()) * 86_400_000_000 + i64::from(i.months()) * 30 * 86_400_000_000;
    Duration::from_micros(micros.max(0) as u64)
}

fn summary(report: &Value) -> String {
    format!(
        "Deployment {}: {} of {} step(s) done; current change: {}.",
        report.get("deployment_id").unwrap_or(&Value::Null),
        report.get("done").unwrap_or(&Value::Null),
        report.get("total").unwrap_or(&Value::Null),
        report.get("current").and_then(Value::as_str).unwrap_or("none")
    )
}

/// The error of a failed phase: the failed change's SQLSTATE and message.
fn failed(project: &str, report: &Value) -> DeployError {
    let failed = report.get("changes").and_then(Value::as_array).and_then(|c| {
        c.iter()
            .find(|c| c.get("state").and_then(Value::as_str) == Some("failed"))
    });
    let field = |k: &str| {
        failed
            .and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let code = field("sqlstate");
    DeployError::Postgres(PgError {
        sqlstate: if code.len() == 5 { code } else { "XX000".into() },
        message: format!(
            "the phase of project \"{project}\" failed at change \"{}\": {}",
            field("id"),
            field("message")
        ),
        detail: Some(summary(report)),
        hint: Some(
            "What committed before it stays. Fix the cause, then apply the manifest again: the changes left undone \
             run again (docs/online.md)."
                .into(),
        ),
    })
}

/// Sleeps on the latch; while asleep, this session advertises no snapshot
/// when that is safe, so that CREATE INDEX CONCURRENTLY in the worker, which
/// waits for every older snapshot, does not wait for the session waiting for it.
fn sleep_without_xmin(ms: u64) {
    if xmin_release_is_safe() {
        // SAFETY: MyProc is this backend's PGPROC; no snapshot of this
        // statement is used to read a table again (checked above), and the next
        // snapshot taken sets a fresh xmin.
        unsafe { (*pg_sys::MyProc).xmin = pg_sys::InvalidTransactionId };
    }
    crate::execute::sleep_ms(ms);
}

/// True when the statement calling deploy.wait reads no table (e.g. `SELECT
/// deploy.wait('shop')`) and is not inside an explicit transaction block,
/// whose earlier statements or cursors could still use a snapshot.
fn xmin_release_is_safe() -> bool {
    // SAFETY: reads backend globals; the portal's statements are valid while it runs.
    unsafe {
        if pg_sys::IsTransactionBlock() || pg_sys::ActivePortal.is_null() {
            return false;
        }
        let stmts: Vec<*mut pg_sys::Node> = pgrx::PgList::<pg_sys::Node>::from_pg((*pg_sys::ActivePortal).stmts)
            .iter_ptr()
            .collect();
        stmts.into_iter().all(|node| {
            if (*node).type_ != pg_sys::NodeTag::T_PlannedStmt {
                return false;
            }
            let rtable: Vec<*mut pg_sys::RangeTblEntry> =
                pgrx::PgList::<pg_sys::RangeTblEntry>::from_pg((*(node as *mut pg_sys::PlannedStmt)).rtable)
                    .iter_ptr()
                    .collect();
            rtable
                .into_iter()
                .all(|rte| (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION)
        })
    }
}

/// Starts a worker for the project's unfinished phase if nobody runs it
/// (deploy.apply, which finds the phase unfinished); says what it did.
pub fn resume(client: &mut SpiClient<'_>, project: &str) -> Result<Option<String>, DeployError> {
    let report = status(client, project, true)?;
    Ok(report.get("worker").and_then(Value::as_str).map(str::to_string))
}

/// The report of the project's latest phase (state "none" when it never had
/// one); with `resume`, starts a worker when the phase is unfinished and no
/// live worker runs it.
fn status(client: &mut SpiClient<'_>, project: &str, resume: bool) -> Result<Value, DeployError> {
    let (owner, schema) = Owner::of_extension()?;
    if schema == Schema::V0_1 {
        return Ok(json!({"project": project, "state": "none",
                         "note": "phases need pg_deploy 0.2.0: ALTER EXTENSION pg_deploy UPDATE"}));
    }
    let mut report = owner.run(|| read(client, project))?;
    let state = report.get("state").and_then(Value::as_str).unwrap_or("none");
    if resume && matches!(state, "pending" | "running") {
        let worker = owner.run(|| resume_worker(client, project, &report))?;
        report["worker"] = Value::String(worker);
    }
    Ok(report)
}

fn read(client: &mut SpiClient<'_>, project: &str) -> Result<Value, DeployError> {
    let rows = client.update(
        "SELECT q.deployment_id, q.step, q.state, q.xmin::pg_catalog.text,
                pg_catalog.jsonb_build_object(
                    'id', q.change_id, 'step', q.step, 'kind', CASE WHEN q.online THEN 'online' ELSE 'transaction' END,
                    'state', q.state, 'attempts', q.attempts, 'rounds', q.rounds, 'rows', q.rows_affected,
                    'sqlstate', q.sqlstate, 'message', q.message,
                    'started_at', q.started_at, 'finished_at', q.finished_at)
           FROM deploy.phase_queue q
          WHERE q.project = $1
            AND q.deployment_id = (SELECT max(l.deployment_id) FROM deploy.phase_queue l WHERE l.project = $1)
          ORDER BY q.step, q.ordinal",
        None,
        &[project.into()],
    )?;
    let mut deployment_id = None;
    let (mut states, mut changes, mut steps) = (Vec::new(), Vec::new(), Vec::<(i32, bool)>::new());
    let mut mine = false;
    for row in rows {
        deployment_id = row.get::<i64>(1)?;
        let step = row.get::<i32>(2)?.unwrap_or_default();
        let state = row.get::<String>(3)?.unwrap_or_default();
        let xmin = row.get::<String>(4)?.and_then(|x| x.parse::<u32>().ok()).unwrap_or(0);
        // SAFETY: asks whether an xid is this transaction's (or a subtransaction's).
        mine |= xmin != 0 && unsafe { pg_sys::TransactionIdIsCurrentTransactionId(pg_sys::TransactionId::from(xmin)) };
        match steps.last_mut() {
            Some((s, done)) if *s == step => *done &= state == "done",
            _ => steps.push((step, state == "done")),
        }
        changes.push(row.get::<JsonB>(5)?.map(|j| j.0).unwrap_or(Value::Null));
        states.push(state);
    }
    let Some(deployment_id) = deployment_id else {
        return Ok(json!({"project": project, "state": "none", "done": 0, "total": 0, "changes": []}));
    };
    let state = state_of(&states);
    let current = changes
        .iter()
        .find(|c| c["state"] == "running")
        .or_else(|| changes.iter().find(|c| c["state"] == "failed"))
        .or_else(|| changes.iter().find(|c| c["state"] == "pending"));
    let since = current
        .and_then(|c| c.get("started_at").cloned())
        .filter(|v| !v.is_null())
        .or_else(|| {
            changes
                .iter()
                .rev()
                .find_map(|c| c.get("finished_at").cloned().filter(|v| !v.is_null()))
        });
    Ok(json!({
        "project": project,
        "deployment_id": deployment_id,
        "state": state.as_str(),
        "done": steps.iter().filter(|(_, done)| *done).count(),
        "total": steps.len(),
        "current": if state == PhaseState::Done { Value::Null } else { current.map_or(Value::Null, |c| c["id"].clone()) },
        "since": since.unwrap_or(Value::Null),
        "queued_by_this_transaction": mine,
        "changes": changes,
    }))
}

/// Starts a worker for the project's unfinished phase unless a live one runs
/// it; says what it did.
fn resume_worker(client: &mut SpiClient<'_>, project: &str, report: &Value) -> Result<String, DeployError> {
    if report.get("queued_by_this_transaction") == Some(&Value::Bool(true)) {
        return Ok("starts when this transaction commits".into());
    }
    // SAFETY: reads whether this server is a standby.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Ok("not started: this server is a standby".into());
    }
    let runner = client
        .update(
            "SELECT coalesce((SELECT pid FROM deploy.phase_runners WHERE project = $1), 0)",
            Some(1),
            &[project.into()],
        )?
        .first()
        .get_one::<i32>()?
        .unwrap_or(0);
    if backend_alive(runner) {
        return Ok(format!("running (pid {runner})"));
    }
    let deployment_id = report.get("deployment_id").and_then(Value::as_i64).unwrap_or_default();
    let roles = client.update(
        "SELECT l.oid, r.oid FROM deploy.phase_queue q
               JOIN pg_catalog.pg_roles l ON l.rolname = q.login_role
               JOIN pg_catalog.pg_roles r ON r.rolname = q.run_as
              WHERE q.deployment_id = $1 LIMIT 1",
        Some(1),
        &[deployment_id.into()],
    )?;
    if roles.is_empty() {
        return Ok("not started: the role that deployed it no longer exists".into());
    }
    let roles = roles.first();
    let (Some(login), Some(run_as)) = (roles.get::<pg_sys::Oid>(1)?, roles.get::<pg_sys::Oid>(2)?) else {
        return Ok("not started: the role that deployed it no longer exists".into());
    };
    let target = LaunchTarget {
        // SAFETY: reads this backend's database.
        database: unsafe { pg_sys::MyDatabaseId },
        login,
        run_as,
        deployment_id,
    };
    Ok(match launch(target) {
        Ok(_) => "started".into(),
        Err(why) => format!("not started: {why}"),
    })
}
