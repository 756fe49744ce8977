//! Refuses, before anything runs, a deployment whose transaction would hold
//! more locks than PostgreSQL's lock table is sized for (see core's capacity).

use crate::analyze::ChangeAnalysis;
use crate::classify::type_name_text;
use crate::error::DeployError;
use crate::node::{items, tag};
use crate::sqlstate::sqlstate;
use crate::subxact::PgError;
use pg_deploy_core::capacity::{relations_created, relations_of_table, ColumnShape, LockTable};
use pg_deploy_core::phases::{Step, StepKind};
use pgrx::pg_sys::{self, ConstrType, NodeTag};
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode;

/// Refuses the deployment when its largest transaction cannot fit; else
/// returns the locks that transaction needs and the table, when it counted
/// any (None: it creates no relation, and the table was not read).
pub fn check(
    client: &mut SpiClient<'_>,
    project: &str,
    steps: &[Step],
    analyses: &[Option<ChangeAnalysis>],
) -> Result<Option<(u64, LockTable)>, DeployError> {
    let needed = steps
        .iter()
        .filter(|s| s.kind == StepKind::Transaction)
        .map(|step| {
            step.changes
                .iter()
                .filter_map(|&i| analyses.get(i)?.as_ref())
                .flat_map(|a| a.statements.iter())
                .map(|s| s.statement.relations)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    if needed == 0 {
        return Ok(None);
    }
    let table = lock_table(client)?;
    if !table.too_small_for(needed) {
        return Ok(Some((needed, table)));
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
            "Counted before anything ran from the statements' parse trees: each table, index, sequence, view and \
             materialized view, with a table's key and unique indexes, identity and serial sequences, and TOAST table \
             (a lower bound: what is not written in the statement is not counted)."
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

/// Relations a raw statement creates, each locked until its transaction
/// commits: a lower bound read off the parse tree (core's capacity rules).
///
/// # Safety
/// `stmt` is a valid node from `pg_parse_query`, whose command tag is `kind`.
pub unsafe fn relations_of(stmt: *mut pg_sys::Node, kind: &str) -> u64 {
    // SAFETY: each arm casts the node to the struct its tag names.
    unsafe {
        match tag(stmt) {
            Some(NodeTag::T_CreateStmt) => {
                let create = stmt as *mut pg_sys::CreateStmt;
                let mut columns = Vec::new();
                let mut constraint_indexes = 0;
                for element in items((*create).tableElts) {
                    match tag(element) {
                        Some(NodeTag::T_ColumnDef) => columns.push(column_shape(element as *mut pg_sys::ColumnDef)),
                        Some(NodeTag::T_Constraint) => constraint_indexes += builds_index(element),
                        _ => {}
                    }
                }
                relations_of_table(&columns, constraint_indexes, !(*create).partspec.is_null())
            }
            Some(NodeTag::T_AlterTableStmt) => items((*(stmt as *mut pg_sys::AlterTableStmt)).cmds)
                .into_iter()
                .filter(|&cmd| tag(cmd) == Some(NodeTag::T_AlterTableCmd))
                .map(|cmd| {
                    let def = (*(cmd as *mut pg_sys::AlterTableCmd)).def;
                    match tag(def) {
                        Some(NodeTag::T_ColumnDef) => column_shape(def as *mut pg_sys::ColumnDef).relations(),
                        // ADD CONSTRAINT, or ALTER COLUMN … ADD GENERATED AS IDENTITY (a sequence).
                        Some(NodeTag::T_Constraint) => {
                            let identity = (*(def as *mut pg_sys::Constraint)).contype == ConstrType::CONSTR_IDENTITY;
                            builds_index(def) + u64::from(identity)
                        }
                        _ => 0,
                    }
                })
                .sum(),
            _ => relations_created(kind),
        }
    }
}

/// The column as the capacity rules read it.
///
/// # Safety
/// `def` is a valid ColumnDef.
unsafe fn column_shape(def: *mut pg_sys::ColumnDef) -> ColumnShape {
    // SAFETY: per the contract; constraints are checked by tag before the cast.
    unsafe {
        let type_name = (*def).typeName;
        let mut shape = ColumnShape {
            type_name: type_name_text(type_name).unwrap_or_default(),
            has_typmod: !type_name.is_null() && !(*type_name).typmods.is_null(),
            builds_index: false,
            identity: false,
        };
        for c in items((*def).constraints) {
            shape.builds_index |= builds_index(c) > 0;
            shape.identity |= tag(c) == Some(NodeTag::T_Constraint)
                && (*(c as *mut pg_sys::Constraint)).contype == ConstrType::CONSTR_IDENTITY;
        }
        shape
    }
}

/// 1 for a PRIMARY KEY, UNIQUE or EXCLUDE constraint that builds its own
/// index (not USING INDEX), else 0.
///
/// # Safety
/// `node` is null or a valid Node.
unsafe fn builds_index(node: *mut pg_sys::Node) -> u64 {
    // SAFETY: per the contract; cast after the tag says Constraint.
    unsafe {
        if tag(node) != Some(NodeTag::T_Constraint) {
            return 0;
        }
        let c = node as *mut pg_sys::Constraint;
        let kind = matches!(
            (*c).contype,
            ConstrType::CONSTR_PRIMARY | ConstrType::CONSTR_UNIQUE | ConstrType::CONSTR_EXCLUSION
        );
        u64::from(kind && (*c).indexname.is_null())
    }
}
