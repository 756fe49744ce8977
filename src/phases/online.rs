//! Running one online change: top level, outside any transaction block, with
//! the deployment's lock_timeout and retries, rounds for a batched backfill,
//! and no INVALID index left behind by a concurrent build that failed.

use super::run::{event, mark_running, record_done, record_failed, Finished, Row};
use super::toplevel::run_toplevel;
use super::worker::{in_transaction, set_session};
use crate::error::DeployError;
use crate::owner::Owner;
use crate::sqlstate::{pg_error, Coded};
use crate::statements;
use crate::subxact::PgError;
use pg_deploy_core::analysis::ObjectName;
use pg_deploy_core::phases::{after_interruption, AfterInterruption, OnlineKind};
use pg_deploy_core::retry::retry_backoff_ms;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode;
use std::time::Instant;

/// Runs `row`; returns false when it failed (recorded as such).
pub fn online_step(owner: Owner, project: &str, row: &Row) -> bool {
    let started = Instant::now();
    let _lineage = crate::lineage::deploying_in(project, Some(row.deployment_id));
    let _change = crate::lineage::running(&row.change_id);
    let facts = match in_transaction(|client| mark_running(client, owner, std::slice::from_ref(row))) {
        Ok(facts) => facts,
        Err(e) => {
            pgrx::warning!("pg_deploy: deployment {}: {}", row.deployment_id, e.message);
            return false;
        }
    };
    for (name, value) in row.settings.gucs() {
        set_session(name, Some(value));
    }
    let outcome = run(owner, row);
    // The record is written under the worker's own settings, not the change's
    // (a 1 s lock_timeout must not fail the record of a finished build).
    for (name, _) in row.settings.gucs() {
        set_session(name, None);
    }
    let recorded = match &outcome {
        Ok(finished) => in_transaction(|client| {
            let done = Finished {
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                ..*finished
            };
            owner.run(|| record_done(client, project, &facts, &[(row, done)]))
        }),
        Err(error) => in_transaction(|client| owner.run(|| record_failed(client, project, &facts, row, error))),
    };
    if let Err(e) = recorded {
        pgrx::warning!("pg_deploy: deployment {}: {}", row.deployment_id, e.message);
        return false;
    }
    outcome.is_ok()
}

fn run(owner: Owner, row: &Row) -> Result<Finished, PgError> {
    let kind = in_transaction(|_| describe(&row.sql))?;
    let index = || in_transaction(|client| index_state(client, &kind));
    if row.state == "running" {
        // The last worker on it is gone: find out what it left, never run twice blindly.
        let decision = after_interruption(&kind, index()?.map(|(_, valid)| valid));
        let note = format!("resumed after an interruption: {decision:?}");
        in_transaction(|client| owner.run(|| event(client, row, "reconciled", Some(&notice(&note)))))?;
        match decision {
            AfterInterruption::Done => return Ok(finished(0, 1, 0)),
            AfterInterruption::Unknown => {
                return Err(PgError {
                    sqlstate: crate::sqlstate::sqlstate(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    message: format!(
                        "online change \"{}\" was interrupted, and whether it ran cannot be told from the catalogs",
                        row.change_id
                    ),
                    detail: None,
                    hint: Some(
                        "Check its effect by hand, then apply again (or record it with deploy.baseline).".into(),
                    ),
                })
            }
            AfterInterruption::Run | AfterInterruption::DropInvalidThenRun => {}
        }
    }
    let mut retries = 0;
    let (mut rounds, mut rows) = (0i64, 0i64);
    loop {
        drop_invalid_index(&kind)?;
        match run_toplevel(&row.sql) {
            Ok(n) => {
                rounds += 1;
                rows += n as i64;
                let Some(pause) = &row.repeat_pause else { break };
                if n == 0 {
                    break;
                }
                in_transaction(|client| owner.run(|| count_round(client, row, rounds, rows)))?;
                crate::execute::sleep_ms(pg_deploy_core::manifest::duration_ms(pause).unwrap_or(100.0) as u64);
            }
            Err(error)
                if error.is(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE) && retries < row.settings.lock_retries =>
            {
                // The top of the loop drops what the failed build left.
                retries += 1;
                in_transaction(|client| owner.run(|| event(client, row, "retry", Some(&error))))?;
                crate::execute::sleep_ms(retry_backoff_ms(retries, 0.5));
            }
            Err(error) => {
                drop_invalid_index(&kind)?;
                return Err(error);
            }
        }
    }
    if let Some(verify) = &row.verify {
        in_transaction(|client| crate::execute::run_verify(client, verify).map_err(DeployError::Postgres))?;
    }
    Ok(finished(retries as i32, rounds, rows))
}

pub(super) fn finished(retries: i32, rounds: i64, rows: i64) -> Finished {
    Finished {
        statements: 1,
        retries,
        duration_ms: 0.0,
        rounds,
        rows,
    }
}

pub(super) fn notice(message: &str) -> PgError {
    pg_error(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message)
}

/// What the statement is, from its parse tree (call it in a transaction: the
/// parser runs in a subtransaction).
pub(super) fn describe(sql: &str) -> Result<OnlineKind, DeployError> {
    let parsed = statements::split(sql).map_err(|f| DeployError::Postgres(f.error))?;
    match parsed.as_slice() {
        [one] => Ok(one.online.clone()),
        _ => Err(DeployError::Postgres(pg_error(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("an online change must be exactly one statement, not {}", parsed.len()),
        ))),
    }
}

/// The named index of a CREATE INDEX CONCURRENTLY: its qualified name and
/// whether it is valid, if it exists (resolved with the change's search_path).
pub(super) fn index_state(
    client: &mut SpiClient<'_>,
    kind: &OnlineKind,
) -> Result<Option<(String, bool)>, DeployError> {
    let OnlineKind::CreateIndex {
        table: ObjectName { schema, name },
        index: Some(index),
    } = kind
    else {
        return Ok(None);
    };
    let table = match schema {
        Some(s) => format!("{}.{}", quote_ident(client, s)?, quote_ident(client, name)?),
        None => quote_ident(client, name)?,
    };
    let row = client.update(
        "SELECT pg_catalog.format('%I.%I', n.nspname, i.relname), x.indisvalid
               FROM pg_catalog.pg_class t
               JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
               JOIN pg_catalog.pg_class i ON i.relnamespace = t.relnamespace AND i.relname = $2
               JOIN pg_catalog.pg_index x ON x.indexrelid = i.oid AND x.indrelid = t.oid
              WHERE t.oid = pg_catalog.to_regclass($1)",
        Some(1),
        &[table.into(), index.as_str().into()],
    )?;
    if row.is_empty() {
        return Ok(None);
    }
    let row = row.first();
    Ok(Some((
        row.get::<String>(1)?.unwrap_or_default(),
        row.get::<bool>(2)?.unwrap_or(false),
    )))
}

fn quote_ident(client: &mut SpiClient<'_>, name: &str) -> Result<String, DeployError> {
    Ok(client
        .update("SELECT pg_catalog.quote_ident($1)", Some(1), &[name.into()])?
        .first()
        .get_one::<String>()?
        .unwrap_or_default())
}

/// A failed concurrent build leaves its index INVALID: drop it (concurrently,
/// so writes go on) before a retry, and after a final failure.
fn drop_invalid_index(kind: &OnlineKind) -> Result<(), PgError> {
    // Only a named concurrent build can leave one: no transaction for the rest
    // (a batched backfill comes here every round).
    if !matches!(kind, OnlineKind::CreateIndex { index: Some(_), .. }) {
        return Ok(());
    }
    if let Some((name, false)) = in_transaction(|client| index_state(client, kind))? {
        run_toplevel(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))?;
    }
    Ok(())
}

fn count_round(client: &mut SpiClient<'_>, row: &Row, rounds: i64, rows: i64) -> Result<(), DeployError> {
    client.update(
        "UPDATE deploy.phase_queue SET rounds = $3, rows_affected = $4 WHERE deployment_id = $1 AND ordinal = $2",
        None,
        &[row.deployment_id.into(), row.ordinal.into(), rounds.into(), rows.into()],
    )?;
    Ok(())
}
