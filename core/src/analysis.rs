//! Statement analysis: what a statement is, read off PostgreSQL's parse tree
//! by the extension, and what pg_deploy decides about it. Pure rules, tested
//! with plain unit tests; the extension only extracts the facts.

use crate::error::SqlState;
use crate::outside::OutsideTransaction;

/// A possibly schema-qualified relation or object name, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectName {
    pub schema: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// The facts about one statement that the rules below need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    /// BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, RELEASE,
    /// PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED.
    TransactionControl,
    /// A statement PostgreSQL refuses inside a transaction block.
    NonTransactional(OutsideTransaction),
    /// DROP SUBSCRIPTION: refused in a transaction block when the
    /// subscription has a replication slot, which its catalog row tells.
    DropSubscription {
        name: String,
    },
    /// A statement whose effect outlives the transaction in the session, where
    /// a pooler would hand it to the next client.
    SessionState,
    /// COPY from STDIN or to STDOUT: there is no client inside apply.
    ClientCopy,
    CreateIndex {
        table: ObjectName,
        concurrent: bool,
    },
    /// ALTER TYPE … ADD VALUE: the new value cannot be used before commit (55P04).
    AddEnumValue {
        type_name: ObjectName,
        value: String,
    },
    AlterTable {
        table: ObjectName,
        commands: Vec<AlterCommand>,
    },
    Drop {
        object: DropKind,
        names: Vec<ObjectName>,
    },
    /// ALTER TABLE … RENAME TO (or ALTER … RENAME of a table): what others
    /// know it by changes.
    RenameTable {
        table: ObjectName,
    },
    Truncate {
        tables: Vec<ObjectName>,
    },
    /// DELETE without WHERE.
    UnboundedDelete {
        table: ObjectName,
    },
    /// UPDATE, MERGE, DELETE with WHERE, INSERT … SELECT: work that grows
    /// with the table (a backfill).
    BulkWrite {
        table: ObjectName,
    },
    /// REINDEX TABLE | INDEX without CONCURRENTLY.
    Reindex {
        target: ObjectName,
        index: bool,
    },
    /// CLUSTER of one table.
    Cluster {
        table: ObjectName,
    },
    /// ALTER DOMAIN … ADD CONSTRAINT (validated) or SET NOT NULL: every
    /// column of the domain is checked.
    DomainValidation {
        domain: ObjectName,
    },
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    Table,
    Schema,
    /// `names` are the indexes.
    Index,
    /// A trigger, rule or policy: `names` are their tables.
    OnTable,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterCommand {
    /// ADD COLUMN, with the functions its default calls.
    AddColumn {
        column: String,
        default_functions: Vec<String>,
        serial: bool,
        not_null_without_default: bool,
        /// GENERATED ALWAYS AS (…) STORED: computed for every row.
        stored_generated: bool,
        /// UNIQUE or PRIMARY KEY written on the column: an index is built.
        builds_index: bool,
    },
    /// ALTER COLUMN … TYPE `new_type` [USING …].
    AlterColumnType {
        column: String,
        new_type: String,
        using: bool,
    },
    /// ADD CONSTRAINT; `validated` unless NOT VALID; `uses_index` for USING INDEX.
    AddConstraint {
        kind: ConstraintKind,
        validated: bool,
        uses_index: bool,
        name: Option<String>,
        /// A CHECK (`column` IS NOT NULL): proves the column NOT NULL once validated.
        not_null_of: Option<String>,
    },
    /// VALIDATE CONSTRAINT `name`: scans the table under SHARE UPDATE EXCLUSIVE.
    ValidateConstraint {
        name: String,
    },
    SetNotNull {
        column: String,
    },
    DropColumn {
        column: String,
    },
    /// DETACH PARTITION … CONCURRENTLY.
    DetachConcurrently,
    /// Anything else; only its lock matters.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    ForeignKey,
    Check,
    Unique,
    PrimaryKey,
    Exclusion,
    Other,
}

/// Why a statement cannot run inside a deployment, and the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub sqlstate: SqlState,
    pub reason: String,
    pub hint: String,
}

/// The statement kinds pg_deploy refuses before anything runs.
/// Why a statement's effects would escape the rollback of plan's trial run:
/// it calls a function that acts outside the transaction (session advisory
/// locks, signals to other backends, other connections, notifications, server
/// files and settings), or it is a NOTIFY. None when nothing known escapes.
pub fn escapes_rollback(tag: &str, functions: &[String]) -> Option<String> {
    if tag == "NOTIFY" {
        return Some("NOTIFY reaches listeners outside the transaction".into());
    }
    const ESCAPING: &[&str] = &[
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_notify",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_logical_emit_message",
        "pg_file_write",
        "lo_export",
    ];
    functions
        .iter()
        .find(|f| ESCAPING.contains(&f.as_str()) || f.starts_with("dblink") || f.starts_with("pg_stat_reset"))
        .map(|f| format!("{f}() acts outside the transaction, so a rollback cannot undo it"))
}

pub fn refusal(tag: &str, facts: &Facts) -> Option<Refusal> {
    let refuse = |sqlstate, reason: String, hint: &str| {
        Some(Refusal {
            sqlstate,
            reason,
            hint: hint.to_string(),
        })
    };
    match facts {
        Facts::TransactionControl => refuse(
            SqlState::InvalidTransactionTermination,
            format!("{tag} is transaction control, and a deployment is one transaction"),
            "Remove it: deploy.apply runs in the caller's transaction, which commits or rolls back the whole deployment.",
        ),
        Facts::NonTransactional(OutsideTransaction::DiscardAll) => refuse(
            SqlState::FeatureNotSupported,
            format!("{tag} would leave state in the session beyond the deployment (and cannot run inside a transaction block)"),
            "Deployments must not depend on session state: poolers hand the session to other clients. Run it outside pg_deploy.",
        ),
        Facts::NonTransactional(OutsideTransaction::CommitPrepared | OutsideTransaction::RollbackPrepared) => refuse(
            SqlState::InvalidTransactionTermination,
            format!("{tag} is transaction control, and a deployment is one transaction"),
            "Remove it: deploy.apply runs in the caller's transaction, which commits or rolls back the whole deployment.",
        ),
        Facts::NonTransactional(what) => outside_transaction(*what),
        Facts::AlterTable { commands, .. } if commands.contains(&AlterCommand::DetachConcurrently) => {
            outside_transaction(OutsideTransaction::DetachPartitionConcurrently)
        }
        Facts::ClientCopy => refuse(
            SqlState::FeatureNotSupported,
            format!("{tag} from STDIN or to STDOUT needs a client, and there is none inside a deployment"),
            "Load data with INSERT … VALUES, or COPY from a server-side file.",
        ),
        Facts::SessionState => refuse(
            SqlState::FeatureNotSupported,
            format!("{tag} would leave state in the session beyond the deployment"),
            "Deployments must not depend on session state: poolers hand the session to other clients. \
             Use SET LOCAL, ON COMMIT DROP temporary tables, or run it outside pg_deploy.",
        ),
        _ => None,
    }
}

/// The refusal of a statement PostgreSQL runs only outside a transaction block.
pub fn outside_transaction(what: OutsideTransaction) -> Option<Refusal> {
    let instead = what
        .in_transaction_form()
        .map_or(String::new(), |form| format!(", or use {form}"));
    Some(Refusal {
        sqlstate: SqlState::ActiveSqlTransaction,
        reason: format!("{} cannot run inside a transaction block", what.postgres_name()),
        hint: format!("Run it outside pg_deploy, before or after the deployment{instead}."),
    })
}

/// Refusals that need the catalogs: REINDEX and CLUSTER of a partitioned
/// table (or index) process each partition in its own transaction.
pub fn refusal_from_catalog(facts: &Facts, catalog: &mut dyn crate::hazards::Catalog) -> Option<Refusal> {
    match facts {
        Facts::Reindex { target, .. } if catalog.partitioned(target) => {
            outside_transaction(OutsideTransaction::ReindexPartitioned)
        }
        Facts::Cluster { table } if catalog.partitioned(table) => {
            outside_transaction(OutsideTransaction::ClusterPartitioned)
        }
        // One made earlier in the same deployment is not in the catalogs yet:
        // refused, as its slot_name is set unless it says NONE.
        Facts::DropSubscription { name } if !catalog.subscription_without_slot(name) => {
            outside_transaction(OutsideTransaction::DropSubscription)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_runs_leave_out_what_a_rollback_cannot_undo() {
        let f = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(escapes_rollback("SELECT", &f(&["pg_advisory_lock"])).is_some());
        assert!(escapes_rollback("SELECT", &f(&["now", "pg_terminate_backend"])).is_some());
        assert!(escapes_rollback("SELECT", &f(&["dblink_exec"])).is_some());
        assert!(escapes_rollback("NOTIFY", &[]).is_some());
        assert!(escapes_rollback("SELECT", &f(&["pg_advisory_xact_lock", "nextval"])).is_none());
    }

    #[test]
    fn refusals_by_kind() {
        let n = ObjectName {
            schema: None,
            name: "t".into(),
        };
        let cases = [
            ("COMMIT", Facts::TransactionControl, Some("2D000")),
            (
                "CREATE INDEX",
                Facts::NonTransactional(OutsideTransaction::CreateIndexConcurrently),
                Some("25001"),
            ),
            (
                "DISCARD ALL",
                Facts::NonTransactional(OutsideTransaction::DiscardAll),
                Some("0A000"),
            ),
            (
                "COMMIT PREPARED",
                Facts::NonTransactional(OutsideTransaction::CommitPrepared),
                Some("2D000"),
            ),
            ("DISCARD ALL", Facts::SessionState, Some("0A000")),
            ("COPY", Facts::ClientCopy, Some("0A000")),
            (
                "ALTER TABLE",
                Facts::AlterTable {
                    table: n.clone(),
                    commands: vec![AlterCommand::DetachConcurrently],
                },
                Some("25001"),
            ),
            (
                "ALTER TABLE",
                Facts::AlterTable {
                    table: n.clone(),
                    commands: vec![AlterCommand::Other],
                },
                None,
            ),
            (
                "CREATE INDEX",
                Facts::CreateIndex {
                    table: n,
                    concurrent: false,
                },
                None,
            ),
            ("SELECT", Facts::Other, None),
        ];
        for (tag, facts, want) in cases {
            assert_eq!(refusal(tag, &facts).map(|r| r.sqlstate.code()), want, "{tag} {facts:?}");
        }
    }
}
