//! Refuses, before anything runs, a deployment whose transaction would hold
//! more locks than PostgreSQL's lock table is sized for (see core's capacity).

use crate::analyze::ChangeAnalysis;
use crate::error::DeployError;
use crate::sqlstate::sqlstate;
use crate::subxact::PgError;
use pg_deploy_core::capacity::{relations_created, LockTable};
use pg_deploy_core::phases::{Step, StepKind};
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode;

pub fn check(
    client: &mut SpiClient<'_>,
    project: &str,
    steps: &[Step],
    analyses: &[Option<ChangeAnalysis>],
) -> Result<(), DeployError> {
    let needed = steps
        .iter()
        .filter(|s| s.kind == StepKind::Transaction)
        .map(|step| {
            step.changes
                .iter()
                .filter_map(|&i| analyses.get(i)?.as_ref())
                .flat_map(|a| a.statements.iter())
                .map(|s| relations_created(&s.statement.kind))
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    if needed == 0 {
        return Ok(());
    }
    let table = lock_table(client)?;
    if !table.too_small_for(needed) {
        return Ok(());
    }
    Err(DeployError::Postgres(PgError {
        sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY),
        message: format!(
            "project \"{project}\": one transaction of this deployment creates {needed} relations, each locked until it \
             commits, more than PostgreSQL's lock table is sized for: {} locks (max_locks_per_transaction {} × {} server \
             processes and prepared transactions)",
            table.capacity(),
            table.per_transaction,
            table.backends + table.prepared
        ),
        detail: Some(
            "Counted before anything ran: a relation per CREATE TABLE, INDEX, SEQUENCE, VIEW or MATERIALIZED VIEW \
             (inline keys and TOAST tables need more)."
                .into(),
        ),
        hint: Some(format!(
            "Set max_locks_per_transaction to at least {} (a restart is needed), or split the deployment with \
             \"commit_before\": true on a change (each phase commits, and releases, its own locks).",
            table.setting_for(needed)
        )),
    }))
}

fn lock_table(client: &mut SpiClient<'_>) -> Result<LockTable, DeployError> {
    let row = client
        .select(
            "SELECT pg_catalog.current_setting('max_locks_per_transaction')::int8,
                    pg_catalog.current_setting('max_prepared_transactions')::int8",
            Some(1),
            &[],
        )
        .map_err(|e| DeployError::Internal(e.to_string()))?
        .first()
        .get_two::<i64, i64>()
        .map_err(|e| DeployError::Internal(e.to_string()))?;
    // SAFETY: MaxBackends is set once at postmaster start and only read after.
    let backends = unsafe { pgrx::pg_sys::MaxBackends };
    let positive = |v: Option<i64>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
    Ok(LockTable {
        per_transaction: positive(row.0),
        backends: u64::try_from(backends).unwrap_or(0),
        prepared: positive(row.1),
    })
}
