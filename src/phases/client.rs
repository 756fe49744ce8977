//! deploy.phase_client(project, request): a client runs a phase itself when
//! no background worker can (no free slot), with the same bookkeeping and the
//! same one-runner rule as the worker. The client's session claims the
//! project's runner row (its backend pid, so it needs a session connection,
//! not a transaction-mode pooler), asks for each step in turn, sends online
//! statements itself, top level, and reports how they went. Transactional
//! steps run here, in the call. See docs/online.md.

use super::online::{describe, finished, index_state, notice};
use super::queue;
use super::run::{event, mark_running, next_step, record_done, record_failed, run_changes, Finished, Row};
use super::worker::{claim, release};
use crate::deployment::guarded;
use crate::error::DeployError;
use crate::owner::{Owner, Schema};
use crate::session::session_facts;
use crate::sqlstate::sqlstate;
use crate::subxact::{in_subtransaction, PgError};
use pg_deploy_core::phases::{after_interruption, AfterInterruption};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::{json, Value};

/// One request of the client protocol: {"do": "claim" | "next" | "run" |
/// "cleanup" | "retry" | "done" | "failed" | "release", …}; see docs/online.md.
#[pg_extern(volatile, parallel_unsafe)]
fn phase_client(project: Option<&str>, request: Option<JsonB>) -> JsonB {
    guarded("deploy.phase_client", || {
        let project = project.ok_or_else(|| bad("project must not be NULL"))?;
        let request = request.map(|r| r.0).unwrap_or(Value::Null);
        let action = request.get("do").and_then(Value::as_str).unwrap_or("").to_string();
        Spi::connect_mut(|client| {
            let (owner, schema) = Owner::of_extension()?;
            if schema == Schema::V0_1 {
                return Err(bad("phases need pg_deploy 0.2.0: ALTER EXTENSION pg_deploy UPDATE"));
            }
            match action.as_str() {
                "claim" => claim_phase(client, owner, project),
                "release" => {
                    owner.run(|| release(client, project))?;
                    Ok(json!({"released": true}))
                }
                _ => {
                    let deployment_id = runner_of(client, owner, project)?;
                    serve(client, owner, project, deployment_id, &action, &request)
                }
            }
        })
    })
}

fn bad(message: &str) -> DeployError {
    DeployError::Postgres(PgError::new(
        sqlstate(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE),
        message,
    ))
}

fn state_error(message: String, hint: &str) -> DeployError {
    DeployError::Postgres(PgError {
        sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
        message,
        detail: None,
        hint: Some(hint.into()),
    })
}

/// Claims the project's unfinished phase for this session, if no live
/// worker or client runs it; only the role that queued it may.
fn claim_phase(client: &mut SpiClient<'_>, owner: Owner, project: &str) -> Result<Value, DeployError> {
    let Some(latest) = owner.run(|| queue::latest(client, project))? else {
        return Ok(json!({"claimed": false, "state": "none"}));
    };
    if !latest.state.unfinished() {
        return Ok(json!({"claimed": false, "state": latest.state.as_str()}));
    }
    check_role(client, owner, latest.deployment_id)?;
    let claimed = owner.run(|| claim(client, latest.deployment_id))?;
    Ok(
        json!({"claimed": claimed.is_some(), "deployment_id": latest.deployment_id,
              "state": latest.state.as_str()}),
    )
}

/// Statements of a phase run as the role that queued it, from a client too.
fn check_role(client: &mut SpiClient<'_>, owner: Owner, deployment_id: i64) -> Result<(), DeployError> {
    let caller = client
        .update("SELECT current_user::pg_catalog.text", Some(1), &[])?
        .first()
        .get_one::<String>()?
        .unwrap_or_default();
    let queued_by = owner
        .run(|| {
            client
                .update(
                    "SELECT (SELECT run_as::pg_catalog.text FROM deploy.phase_queue WHERE deployment_id = $1 LIMIT 1)",
                    Some(1),
                    &[deployment_id.into()],
                )?
                .first()
                .get_one::<String>()
        })?
        .unwrap_or_default();
    if caller != queued_by {
        return Err(DeployError::Postgres(PgError {
            sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE),
            message: format!(
                "the phase of deployment {deployment_id} was queued by role \"{queued_by}\", and runs only as it"
            ),
            detail: None,
            hint: Some(format!("Connect as \"{queued_by}\" (or SET ROLE to it) to run it.")),
        }));
    }
    Ok(())
}

/// The deployment whose phase this session runs (it claimed it).
fn runner_of(client: &mut SpiClient<'_>, owner: Owner, project: &str) -> Result<i64, DeployError> {
    let id = owner.run(|| {
        client
            .update(
                "SELECT (SELECT deployment_id FROM deploy.phase_runners
                          WHERE project = $1 AND pid = pg_catalog.pg_backend_pid())",
                Some(1),
                &[project.into()],
            )?
            .first()
            .get_one::<i64>()
    })?;
    let Some(id) = id else {
        return Err(state_error(
            format!("this session does not run the phase of project \"{project}\""),
            "Claim it first with {\"do\": \"claim\"} on a session connection: a transaction-mode pooler hands \
             each call to another backend.",
        ));
    };
    check_role(client, owner, id)?;
    Ok(id)
}

fn serve(
    client: &mut SpiClient<'_>,
    owner: Owner,
    project: &str,
    deployment_id: i64,
    action: &str,
    request: &Value,
) -> Result<Value, DeployError> {
    let rows = owner.run(|| next_step(client, deployment_id))?;
    let Some(rows) = rows else {
        owner.run(|| release(client, project))?;
        let state = owner
            .run(|| queue::latest(client, project))?
            .map_or("none", |l| l.state.as_str());
        return Ok(json!({"step": null, "state": state}));
    };
    let row = &rows[0];
    match (action, row.online) {
        ("next", false) => Ok(json!({"step": row.step, "kind": "transaction",
                                     "changes": rows.iter().map(|r| r.change_id.clone()).collect::<Vec<_>>()})),
        ("next", true) => next_online(client, owner, project, row),
        ("run", false) => run_transaction(client, owner, project, &rows),
        ("cleanup", true) => Ok(json!({"sql": cleanup_sql(client, row)?})),
        ("retry", true) => {
            let error = error_of(request);
            owner.run(|| event(client, row, "retry", Some(&error)))?;
            Ok(json!({"recorded": "retry"}))
        }
        ("done", true) => {
            let facts = session_facts()?;
            let number = |k: &str| request.get(k).and_then(Value::as_i64).unwrap_or(0);
            let done = Finished {
                duration_ms: request.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0),
                ..finished(number("retries") as i32, number("rounds").max(1), number("rows"))
            };
            if let Some(verify) = &row.verify {
                if let Err(e) = in_subtransaction(|| crate::execute::run_verify(client, verify)) {
                    owner.run(|| record_failed(client, project, &facts, row, &e))?;
                    return Ok(json!({"failed": {"id": row.change_id, "sqlstate": e.sqlstate, "message": e.message}}));
                }
            }
            owner.run(|| record_done(client, project, &facts, &[(row, done)]))?;
            Ok(json!({"recorded": "done", "id": row.change_id}))
        }
        ("failed", true) => {
            let facts = session_facts()?;
            let error = error_of(request);
            owner.run(|| record_failed(client, project, &facts, row, &error))?;
            Ok(json!({"recorded": "failed", "id": row.change_id}))
        }
        (other, online) => Err(bad(&format!(
            "\"{other}\" is not a request for the {} step {} of project \"{project}\"",
            if online { "online" } else { "transactional" },
            row.step
        ))),
    }
}

/// Hands the next online change to the client, after reconciling one a
/// runner left "running".
fn next_online(client: &mut SpiClient<'_>, owner: Owner, project: &str, row: &Row) -> Result<Value, DeployError> {
    let facts = mark_running(client, owner, std::slice::from_ref(row))?;
    if row.state == "running" {
        let kind = describe(&row.sql)?;
        let valid = index_state(client, &kind)?.map(|(_, valid)| valid);
        let decision = after_interruption(&kind, valid);
        let note = format!("resumed after an interruption: {decision:?}");
        owner.run(|| event(client, row, "reconciled", Some(&notice(&note))))?;
        match decision {
            AfterInterruption::Done => {
                owner.run(|| record_done(client, project, &facts, &[(row, finished(0, 1, 0))]))?;
                return Ok(json!({"step": row.step, "kind": "online", "id": row.change_id, "already_done": true}));
            }
            AfterInterruption::Unknown => {
                let e = PgError {
                    sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    message: format!(
                        "online change \"{}\" was interrupted, and whether it ran cannot be told from the catalogs",
                        row.change_id
                    ),
                    detail: None,
                    hint: None,
                };
                owner.run(|| record_failed(client, project, &facts, row, &e))?;
                return Ok(json!({"failed": {"id": row.change_id, "sqlstate": e.sqlstate, "message": e.message}}));
            }
            AfterInterruption::Run | AfterInterruption::DropInvalidThenRun => {}
        }
    }
    let settings = &row.settings;
    Ok(json!({
        "step": row.step, "kind": "online", "id": row.change_id, "sql": row.sql,
        "settings": {"search_path": settings.search_path, "lock_timeout": settings.lock_timeout,
                     "statement_timeout": settings.statement_timeout, "lock_retries": settings.lock_retries},
        "repeat_pause": row.repeat_pause,
        "cleanup": cleanup_sql(client, row)?,
    }))
}

/// A transactional step, run in this call: done and recorded, or rolled back
/// and recorded failed.
fn run_transaction(
    client: &mut SpiClient<'_>,
    owner: Owner,
    project: &str,
    rows: &[Row],
) -> Result<Value, DeployError> {
    let facts = mark_running(client, owner, rows)?;
    let mut failed_at = 0;
    let outcome =
        in_subtransaction(|| run_changes(client, owner, project, &facts, rows, &mut failed_at).map_err(as_pg));
    match outcome {
        Ok(()) => Ok(json!({"step": rows[0].step, "done": true})),
        Err(e) => {
            let row = &rows[failed_at];
            owner.run(|| record_failed(client, project, &facts, row, &e))?;
            Ok(json!({"step": row.step, "failed": {"id": row.change_id, "sqlstate": e.sqlstate, "message": e.message}}))
        }
    }
}

/// The statement that drops what a failed concurrent build of `row` left
/// behind (an INVALID index), or null. The name is the catalog's, quoted.
fn cleanup_sql(client: &mut SpiClient<'_>, row: &Row) -> Result<Value, DeployError> {
    let kind = describe(&row.sql)?;
    Ok(match index_state(client, &kind)? {
        Some((name, false)) => Value::String(format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")),
        _ => Value::Null,
    })
}

fn error_of(request: &Value) -> PgError {
    let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let code = text("sqlstate");
    PgError {
        sqlstate: if code.len() == 5 { code } else { "XX000".into() },
        message: text("message"),
        detail: None,
        hint: None,
    }
}

fn as_pg(e: DeployError) -> PgError {
    PgError {
        sqlstate: e.code_text(),
        message: e.to_string(),
        detail: None,
        hint: None,
    }
}
