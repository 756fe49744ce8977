//! Statements PostgreSQL refuses inside a transaction block, as PostgreSQL
//! itself decides: one entry per `PreventInTransactionBlock` call in
//! src/backend of PostgreSQL 15, 16, 17 and 18 (REL_15_STABLE to
//! REL_18_STABLE). A deployment is one transaction, so each of these is
//! refused before anything runs (25001), unless the change is online.
//!
//! Not listed: the walsender's replication commands (CREATE_REPLICATION_SLOT
//! …), which `pg_parse_query` does not accept.

/// One call site of `PreventInTransactionBlock`, named after what it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutsideTransaction {
    CreateIndexConcurrently,
    DropIndexConcurrently,
    ReindexConcurrently,
    ReindexSchema,
    ReindexSystem,
    ReindexDatabase,
    /// REINDEX TABLE | INDEX of a partitioned table or index (from the catalogs).
    ReindexPartitioned,
    Vacuum,
    /// CLUSTER without a table: every previously clustered table.
    ClusterAll,
    /// CLUSTER of a partitioned table (from the catalogs).
    ClusterPartitioned,
    CreateDatabase,
    DropDatabase,
    AlterDatabaseSetTablespace,
    CreateTablespace,
    DropTablespace,
    AlterSystem,
    DetachPartitionConcurrently,
    /// CREATE SUBSCRIPTION unless WITH (create_slot = false) or (connect = false).
    CreateSubscriptionWithSlot,
    /// ALTER SUBSCRIPTION … REFRESH PUBLICATION, and SET | ADD | DROP
    /// PUBLICATION unless WITH (refresh = false).
    AlterSubscriptionRefresh,
    /// ALTER SUBSCRIPTION … SET (failover) (17+) or SET (two_phase = false) (18):
    /// they alter the replication slot.
    AlterSubscriptionSlotOption,
    /// DROP SUBSCRIPTION of a subscription with a slot (pg_subscription.subslotname
    /// set), or of one not in the catalogs before the deployment.
    DropSubscription,
    /// Refused as session state (0A000): it has no place online either.
    DiscardAll,
    /// Refused as transaction control (2D000).
    CommitPrepared,
    RollbackPrepared,
}

/// (what, PostgreSQL's name for it in the error, where PostgreSQL refuses it).
pub const OUTSIDE_TRANSACTION: &[(OutsideTransaction, &str, &str)] = &[
    (
        OutsideTransaction::CreateIndexConcurrently,
        "CREATE INDEX CONCURRENTLY",
        "tcop/utility.c ProcessUtilitySlow",
    ),
    (
        OutsideTransaction::DropIndexConcurrently,
        "DROP INDEX CONCURRENTLY",
        "tcop/utility.c ExecDropStmt",
    ),
    (
        OutsideTransaction::ReindexConcurrently,
        "REINDEX CONCURRENTLY",
        "commands/indexcmds.c ExecReindex",
    ),
    (
        OutsideTransaction::ReindexSchema,
        "REINDEX SCHEMA",
        "commands/indexcmds.c ReindexMultipleTables",
    ),
    (
        OutsideTransaction::ReindexSystem,
        "REINDEX SYSTEM",
        "commands/indexcmds.c ReindexMultipleTables",
    ),
    (
        OutsideTransaction::ReindexDatabase,
        "REINDEX DATABASE",
        "commands/indexcmds.c ReindexMultipleTables",
    ),
    (
        OutsideTransaction::ReindexPartitioned,
        "REINDEX TABLE | INDEX of a partitioned table or index",
        "commands/indexcmds.c ReindexPartitions",
    ),
    (OutsideTransaction::Vacuum, "VACUUM", "commands/vacuum.c vacuum"),
    (OutsideTransaction::ClusterAll, "CLUSTER", "commands/cluster.c cluster"),
    (
        OutsideTransaction::ClusterPartitioned,
        "CLUSTER of a partitioned table",
        "commands/cluster.c cluster",
    ),
    (
        OutsideTransaction::CreateDatabase,
        "CREATE DATABASE",
        "tcop/utility.c standard_ProcessUtility",
    ),
    (
        OutsideTransaction::DropDatabase,
        "DROP DATABASE",
        "tcop/utility.c standard_ProcessUtility",
    ),
    (
        OutsideTransaction::AlterDatabaseSetTablespace,
        "ALTER DATABASE SET TABLESPACE",
        "commands/dbcommands.c AlterDatabase",
    ),
    (
        OutsideTransaction::CreateTablespace,
        "CREATE TABLESPACE",
        "tcop/utility.c standard_ProcessUtility",
    ),
    (
        OutsideTransaction::DropTablespace,
        "DROP TABLESPACE",
        "tcop/utility.c standard_ProcessUtility",
    ),
    (
        OutsideTransaction::AlterSystem,
        "ALTER SYSTEM",
        "tcop/utility.c standard_ProcessUtility",
    ),
    (
        OutsideTransaction::DetachPartitionConcurrently,
        "ALTER TABLE ... DETACH CONCURRENTLY",
        "tcop/utility.c ProcessUtilitySlow",
    ),
    (
        OutsideTransaction::CreateSubscriptionWithSlot,
        "CREATE SUBSCRIPTION ... WITH (create_slot = true)",
        "commands/subscriptioncmds.c CreateSubscription",
    ),
    (
        OutsideTransaction::AlterSubscriptionRefresh,
        "ALTER SUBSCRIPTION with refresh",
        "commands/subscriptioncmds.c AlterSubscription",
    ),
    (
        OutsideTransaction::AlterSubscriptionSlotOption,
        "ALTER SUBSCRIPTION ... SET (failover | two_phase)",
        "commands/subscriptioncmds.c AlterSubscription (17+: failover; 18: two_phase, CheckAlterSubOption)",
    ),
    (
        OutsideTransaction::DropSubscription,
        "DROP SUBSCRIPTION",
        "commands/subscriptioncmds.c DropSubscription",
    ),
    (
        OutsideTransaction::DiscardAll,
        "DISCARD ALL",
        "commands/discard.c DiscardAll",
    ),
    (
        OutsideTransaction::CommitPrepared,
        "COMMIT PREPARED",
        "tcop/utility.c standard_ProcessUtility",
    ),
    (
        OutsideTransaction::RollbackPrepared,
        "ROLLBACK PREPARED",
        "tcop/utility.c standard_ProcessUtility",
    ),
];

impl OutsideTransaction {
    /// PostgreSQL's own name for the statement, as in its error message.
    pub fn postgres_name(self) -> &'static str {
        OUTSIDE_TRANSACTION
            .iter()
            .find(|(o, ..)| *o == self)
            .map_or("the statement", |(_, name, _)| name)
    }

    /// A form that runs inside a transaction, when there is one.
    pub fn in_transaction_form(self) -> Option<&'static str> {
        use OutsideTransaction::*;
        match self {
            CreateIndexConcurrently => Some("CREATE INDEX without CONCURRENTLY (it blocks writes)"),
            DropIndexConcurrently => Some("DROP INDEX without CONCURRENTLY (ACCESS EXCLUSIVE until commit)"),
            ReindexConcurrently => Some("REINDEX without CONCURRENTLY (it blocks writes)"),
            ReindexSchema | ReindexSystem | ReindexDatabase => Some("one REINDEX TABLE per table"),
            ReindexPartitioned | ClusterPartitioned => Some("the same statement on each partition"),
            ClusterAll => Some("CLUSTER with a table"),
            DetachPartitionConcurrently => Some("DETACH PARTITION without CONCURRENTLY"),
            CreateSubscriptionWithSlot => Some("WITH (create_slot = false)"),
            AlterSubscriptionRefresh => Some("WITH (refresh = false)"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_site_is_listed_once_with_its_source() {
        for (i, (what, name, source)) in OUTSIDE_TRANSACTION.iter().enumerate() {
            assert!(!name.is_empty() && source.contains(".c "), "{what:?}");
            assert_eq!(what.postgres_name(), *name);
            assert!(
                OUTSIDE_TRANSACTION[i + 1..].iter().all(|(o, ..)| o != what),
                "{what:?} twice"
            );
        }
        assert_eq!(OUTSIDE_TRANSACTION.len(), 24);
    }
}
