//! Hazards: statements that rewrite, block or destroy, judged with evidence
//! from the catalogs. The extension answers the `Catalog` questions; the
//! rules here decide.

use crate::analysis::{AlterCommand, ConstraintKind, DropKind, Facts, ObjectName};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HazardKind {
    /// The table is rewritten under ACCESS EXCLUSIVE (type change, volatile default).
    TableRewrite,
    /// ACCESS EXCLUSIVE on a big table: every query on it waits.
    AccessExclusive,
    /// An index built without CONCURRENTLY: writes wait for the whole build.
    BlockingIndexBuild,
    /// A constraint checked against every row while writes wait.
    ValidatingConstraint,
    /// Rows or columns are destroyed.
    DataLoss,
    /// A lock that blocks writes, taken earlier in the same transaction, is
    /// still held while this statement does long work (locks live until commit).
    HeldLock,
}

pub const ALL_HAZARDS: [HazardKind; 6] = [
    HazardKind::TableRewrite,
    HazardKind::AccessExclusive,
    HazardKind::BlockingIndexBuild,
    HazardKind::ValidatingConstraint,
    HazardKind::DataLoss,
    HazardKind::HeldLock,
];

impl HazardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HazardKind::TableRewrite => "table_rewrite",
            HazardKind::AccessExclusive => "access_exclusive",
            HazardKind::BlockingIndexBuild => "blocking_index_build",
            HazardKind::ValidatingConstraint => "validating_constraint",
            HazardKind::DataLoss => "data_loss",
            HazardKind::HeldLock => "lock_held_until_commit",
        }
    }

    pub fn parse(s: &str) -> Option<HazardKind> {
        ALL_HAZARDS.into_iter().find(|k| k.as_str() == s)
    }
}

/// Size of an existing table, from pg_class and pg_total_relation_size.
#[derive(Debug, Clone, PartialEq)]
pub struct TableFacts {
    /// The table's oid (0 for a summary of several tables).
    pub oid: u32,
    /// Schema-qualified name as resolved in the catalogs.
    pub name: String,
    /// Estimated rows (`reltuples`; negative when never analysed).
    pub rows: f64,
    /// Bytes including indexes and TOAST.
    pub bytes: i64,
    /// Bytes of the table's own rows (its main fork): 0 for an empty table.
    pub heap_bytes: i64,
}

impl TableFacts {
    /// Rows as of the last ANALYZE; for a never-analysed table, any heap pages.
    pub fn has_data(&self) -> bool {
        self.rows > 0.0 || (self.rows < 0.0 && self.heap_bytes > 0)
    }
}

/// When a table counts as big. Either bound makes it big.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub rows: f64,
    pub bytes: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            rows: 100_000.0,
            bytes: 100 * 1024 * 1024,
        }
    }
}

impl Thresholds {
    pub fn is_big(&self, t: &TableFacts) -> bool {
        t.rows >= self.rows || t.bytes >= self.bytes
    }
}

/// What the rules ask of the catalogs, answered by the extension.
pub trait Catalog {
    /// The table `name` resolves to, if it exists now.
    fn table(&mut self, name: &ObjectName) -> Option<TableFacts>;
    /// All tables of a schema, summed, if it exists and has any.
    fn schema_tables(&mut self, schema: &str) -> Option<TableFacts>;
    /// Whether any function of these names is volatile.
    fn any_volatile(&mut self, functions: &[String]) -> bool;
    /// Whether changing `column` of `table` to `new_type` rewrites the table
    /// (the types are not binary-coercible).
    fn type_change_rewrites(&mut self, table: &TableFacts, column: &str, new_type: &str) -> bool;
    /// Whether a CHECK constraint proves `column IS NOT NULL` and is validated
    /// (in the catalogs, or by a VALIDATE of one of `validated` earlier in the deployment).
    fn not_null_proven(&mut self, table: &TableFacts, column: &str, validated: &[String]) -> bool;
    /// The table an existing index is on.
    fn index_table(&mut self, index: &ObjectName) -> Option<TableFacts>;
    /// The existing tables with a column of this domain (or of a domain over it).
    fn domain_tables(&mut self, domain: &ObjectName) -> Vec<TableFacts>;
    /// Whether the table or index is partitioned.
    fn partitioned(&mut self, name: &ObjectName) -> bool;
    /// How other sessions use the table, when they use it much (the server's
    /// statistics, the sessions holding locks on it now): a small table
    /// blocked until commit stalls them as a big one would.
    fn busy(&mut self, _table: &TableFacts) -> Option<String> {
        None
    }
    /// Whether a subscription of this name exists in the database and has no
    /// replication slot (slot_name = NONE).
    fn subscription_without_slot(&mut self, _name: &str) -> bool {
        false
    }
}

/// What earlier statements of the deployment did that the catalogs cannot
/// show yet: constraints validated, NOT NULL proofs added.
#[derive(Debug, Clone, Default)]
pub struct Earlier {
    /// (table oid, constraint) validated by VALIDATE CONSTRAINT or added validated.
    validated: Vec<(u32, String)>,
    /// (table oid, constraint, column) CHECK (column IS NOT NULL) added.
    proofs: Vec<(u32, String, String)>,
}

impl Earlier {
    fn note(&mut self, table: u32, command: &AlterCommand) {
        match command {
            AlterCommand::ValidateConstraint { name } => self.validated.push((table, name.clone())),
            AlterCommand::AddConstraint {
                name,
                not_null_of,
                validated,
                ..
            } => {
                let name = name.clone().unwrap_or_default();
                if let Some(column) = not_null_of {
                    self.proofs.push((table, name.clone(), column.clone()));
                }
                if *validated {
                    self.validated.push((table, name));
                }
            }
            _ => {}
        }
    }

    fn validated_on(&self, table: u32) -> Vec<String> {
        self.validated
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// A proof added in this deployment and validated since.
    fn proves(&self, table: u32, column: &str) -> bool {
        self.proofs
            .iter()
            .any(|(t, name, c)| *t == table && c == column && self.validated.contains(&(table, name.clone())))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hazard {
    pub kind: HazardKind,
    pub table: Option<TableFacts>,
    pub big: bool,
    pub reason: String,
    /// The safe way to do it, in phases (docs/online.md).
    pub hint: String,
}

impl Hazard {
    /// Data loss is refused whenever there is data; the others only on big tables.
    pub fn refused(&self, allowed: &[HazardKind]) -> bool {
        if allowed.contains(&self.kind) {
            return false;
        }
        match self.kind {
            HazardKind::DataLoss => self.table.as_ref().is_none_or(TableFacts::has_data),
            _ => self.big,
        }
    }

    /// "shop.orders (~1200000 rows, 84 MB)"
    pub fn evidence(&self) -> String {
        match &self.table {
            None => String::new(),
            Some(t) => format!("{} ({}, {})", t.name, rows_text(t.rows), bytes_text(t.bytes)),
        }
    }
}

fn rows_text(rows: f64) -> String {
    if rows < 0.0 {
        "rows unknown, never analysed".into()
    } else {
        format!("~{rows:.0} rows")
    }
}

pub fn bytes_text(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["bytes", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// The safe ways out, each pointing at the phases (docs/online.md).
pub mod hints {
    pub const EXPAND_CONTRACT: &str = "Expand, backfill, contract: add a new column without a volatile default or \
        expression (no rewrite), fill it in batches in an online change (\"online\": true, \"repeat_until_no_rows\"), \
        then switch over and drop the old one in a later change with \"commit_before\": true.";
    pub const CLUSTER: &str = "CLUSTER has no online form: rebuild the table by expand, backfill, contract (a new \
        table filled in batches by an online change with \"repeat_until_no_rows\", switched over in a later change \
        with \"commit_before\": true), or run pg_repack outside the deployment.";
    pub const CREATE_INDEX: &str = "Build it with CREATE INDEX CONCURRENTLY, named, as the only statement of a change \
        with \"online\": true: it runs after the deployment commits and does not block writes.";
    pub const UNIQUE_INDEX: &str = "Build the index with CREATE UNIQUE INDEX CONCURRENTLY in a change with \
        \"online\": true, then ADD CONSTRAINT … UNIQUE (or PRIMARY KEY) USING INDEX in a later change with \
        \"commit_before\": true.";
    pub const ADD_COLUMN_UNIQUE: &str = "Add the column without UNIQUE / PRIMARY KEY, build the index with CREATE \
        UNIQUE INDEX CONCURRENTLY in a change with \"online\": true, then ADD CONSTRAINT … USING INDEX in a later \
        change with \"commit_before\": true.";
    pub const REINDEX: &str = "Use REINDEX … CONCURRENTLY as the only statement of a change with \"online\": true: \
        it runs after the deployment commits and does not block writes.";
    pub const VALIDATE_LATER: &str = "Add it NOT VALID (a short lock, no scan), then VALIDATE CONSTRAINT in a later \
        change with \"commit_before\": true: the scan then runs without blocking writes.";
    pub const NOT_NULL: &str = "Add CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it in a later change \
        with \"commit_before\": true, then SET NOT NULL: PostgreSQL uses the valid CHECK and skips the scan.";
    pub const DOMAIN: &str = "Add the domain constraint NOT VALID, then ALTER DOMAIN … VALIDATE CONSTRAINT in a later \
        change with \"commit_before\": true.";
    pub const DROP_INDEX: &str = "Use DROP INDEX CONCURRENTLY as the only statement of a change with \"online\": \
        true: it runs after the deployment commits without ACCESS EXCLUSIVE.";
    pub const SHORT_PHASE: &str = "ACCESS EXCLUSIVE is held until the transaction commits: give this change a short \
        phase of its own (\"commit_before\": true on it and on the change after it), with a low lock_timeout.";
    pub const DATA_LOSS: &str = "Make sure nothing reads the data any more (the contract step of expand, backfill, \
        contract, in a later deployment), then allow it.";
}

/// The hazards of one statement. `lock` is the lock mode the statement takes
/// on its table ("AccessExclusiveLock", …), when known. `earlier` carries
/// what earlier statements of the deployment did; this one is added to it.
pub fn hazards(
    facts: &Facts,
    lock: Option<(&ObjectName, &str)>,
    catalog: &mut dyn Catalog,
    thresholds: &Thresholds,
    earlier: &mut Earlier,
) -> Vec<Hazard> {
    let mut out = Vec::new();
    let mut push = |kind, table: Option<TableFacts>, reason: String, hint: &str| {
        let big = table.as_ref().is_some_and(|t| thresholds.is_big(t));
        out.push(Hazard {
            kind,
            table,
            big,
            reason,
            hint: hint.to_string(),
        });
    };
    let exclusive = lock.is_some_and(|(_, mode)| mode == "AccessExclusiveLock");
    match facts {
        Facts::CreateIndex {
            table,
            concurrent: false,
        } => {
            if let Some(t) = catalog.table(table) {
                push(
                    HazardKind::BlockingIndexBuild,
                    Some(t),
                    "CREATE INDEX without CONCURRENTLY blocks writes for the whole build".into(),
                    hints::CREATE_INDEX,
                );
            }
        }
        Facts::AlterTable { table, commands } => {
            let Some(t) = catalog.table(table) else {
                return out;
            };
            // VALIDATE runs before the NOT NULL check of the same statement.
            for command in commands {
                if matches!(command, AlterCommand::ValidateConstraint { .. }) {
                    earlier.note(t.oid, command);
                }
            }
            for command in commands {
                alter_command_hazards(command, &t, catalog, earlier, &mut push);
                if !matches!(command, AlterCommand::ValidateConstraint { .. }) {
                    earlier.note(t.oid, command);
                }
            }
            // Last: the specific hazards above explain more when both apply.
            if exclusive {
                push(
                    HazardKind::AccessExclusive,
                    Some(t),
                    "ALTER TABLE takes ACCESS EXCLUSIVE: every read and write of the table waits".into(),
                    hints::SHORT_PHASE,
                );
            }
        }
        Facts::Drop { object, names } => {
            for name in names {
                let (kind, table, reason, hint) = match object {
                    DropKind::Table => (
                        HazardKind::DataLoss,
                        catalog.table(name),
                        "DROP TABLE destroys its rows".to_string(),
                        hints::DATA_LOSS,
                    ),
                    DropKind::Schema => (
                        HazardKind::DataLoss,
                        catalog.schema_tables(&name.name),
                        format!("DROP SCHEMA {} destroys the tables in it", name.name),
                        hints::DATA_LOSS,
                    ),
                    DropKind::Index => (
                        HazardKind::AccessExclusive,
                        catalog.index_table(name),
                        format!(
                            "DROP INDEX {name} without CONCURRENTLY takes ACCESS EXCLUSIVE on its table until commit"
                        ),
                        hints::DROP_INDEX,
                    ),
                    DropKind::OnTable => (
                        HazardKind::AccessExclusive,
                        catalog.table(name),
                        "the statement takes ACCESS EXCLUSIVE on the table until commit".to_string(),
                        hints::SHORT_PHASE,
                    ),
                    DropKind::Other => continue,
                };
                if let Some(t) = table {
                    push(kind, Some(t), reason, hint);
                }
            }
        }
        Facts::Truncate { tables } => {
            for name in tables {
                if let Some(t) = catalog.table(name) {
                    push(
                        HazardKind::DataLoss,
                        Some(t),
                        "TRUNCATE destroys every row".into(),
                        hints::DATA_LOSS,
                    );
                }
            }
        }
        Facts::UnboundedDelete { table } => {
            if let Some(t) = catalog.table(table) {
                push(
                    HazardKind::DataLoss,
                    Some(t),
                    "DELETE without WHERE destroys every row".into(),
                    hints::DATA_LOSS,
                );
            }
        }
        Facts::Reindex { target, index } => {
            let table = if *index {
                catalog.index_table(target)
            } else {
                catalog.table(target)
            };
            if let Some(t) = table {
                push(
                    HazardKind::BlockingIndexBuild,
                    Some(t),
                    "REINDEX without CONCURRENTLY blocks writes for the whole rebuild, and queries that use the \
                     index wait too"
                        .into(),
                    hints::REINDEX,
                );
            }
        }
        Facts::Cluster { table } => {
            if let Some(t) = catalog.table(table) {
                push(
                    HazardKind::TableRewrite,
                    Some(t.clone()),
                    "CLUSTER rewrites the table".into(),
                    hints::CLUSTER,
                );
                push(
                    HazardKind::AccessExclusive,
                    Some(t),
                    "CLUSTER takes ACCESS EXCLUSIVE: every read and write of the table waits".into(),
                    hints::CLUSTER,
                );
            }
        }
        Facts::DomainValidation { domain } => {
            for t in catalog.domain_tables(domain) {
                push(
                    HazardKind::ValidatingConstraint,
                    Some(t),
                    format!("ALTER DOMAIN {domain} checks every row of each table that uses it, blocking writes"),
                    hints::DOMAIN,
                );
            }
        }
        // Any other statement holding ACCESS EXCLUSIVE on an existing table (RENAME, …).
        Facts::Other | Facts::RenameTable { .. } if exclusive => {
            if let Some(t) = lock.and_then(|(table, _)| catalog.table(table)) {
                push(
                    HazardKind::AccessExclusive,
                    Some(t),
                    "the statement takes ACCESS EXCLUSIVE: every read and write of the table waits".into(),
                    hints::SHORT_PHASE,
                );
            }
        }
        _ => {}
    }
    out
}

/// Records one hazard: kind, table, reason, hint.
type Push<'a> = dyn FnMut(HazardKind, Option<TableFacts>, String, &str) + 'a;

fn alter_command_hazards(
    command: &AlterCommand,
    table: &TableFacts,
    catalog: &mut dyn Catalog,
    earlier: &Earlier,
    push: &mut Push<'_>,
) {
    let t = || Some(table.clone());
    match command {
        AlterCommand::AddColumn {
            column,
            default_functions,
            serial,
            stored_generated,
            builds_index,
            ..
        } => {
            if *stored_generated {
                push(
                    HazardKind::TableRewrite,
                    t(),
                    format!("ADD COLUMN {column} GENERATED … STORED computes it for every row: the table is rewritten"),
                    hints::EXPAND_CONTRACT,
                );
            } else if *serial || catalog.any_volatile(default_functions) {
                push(
                    HazardKind::TableRewrite,
                    t(),
                    format!("ADD COLUMN {column} with a volatile default rewrites every row"),
                    hints::EXPAND_CONTRACT,
                );
            }
            if *builds_index {
                push(
                    HazardKind::BlockingIndexBuild,
                    t(),
                    format!("ADD COLUMN {column} UNIQUE / PRIMARY KEY builds a unique index over the whole table under lock"),
                    hints::ADD_COLUMN_UNIQUE,
                );
            }
        }
        AlterCommand::AlterColumnType {
            column,
            new_type,
            using,
        } if (*using || catalog.type_change_rewrites(table, column, new_type)) => {
            push(
                HazardKind::TableRewrite,
                t(),
                format!("ALTER COLUMN {column} TYPE {new_type} is not binary-coercible: the table is rewritten"),
                hints::EXPAND_CONTRACT,
            );
        }
        AlterCommand::AddConstraint {
            kind: kind @ (ConstraintKind::ForeignKey | ConstraintKind::Check),
            validated: true,
            ..
        } => {
            let what = if *kind == ConstraintKind::ForeignKey {
                "FOREIGN KEY"
            } else {
                "CHECK"
            };
            push(
                HazardKind::ValidatingConstraint,
                t(),
                format!("ADD {what} without NOT VALID checks every row under lock"),
                hints::VALIDATE_LATER,
            );
        }
        AlterCommand::AddConstraint {
            kind: ConstraintKind::Unique | ConstraintKind::PrimaryKey | ConstraintKind::Exclusion,
            uses_index: false,
            ..
        } => push(
            HazardKind::BlockingIndexBuild,
            t(),
            "ADD CONSTRAINT builds its index under lock".into(),
            hints::UNIQUE_INDEX,
        ),
        AlterCommand::SetNotNull { column } => {
            let proven = earlier.proves(table.oid, column)
                || catalog.not_null_proven(table, column, &earlier.validated_on(table.oid));
            if !proven {
                push(
                    HazardKind::ValidatingConstraint,
                    t(),
                    format!("SET NOT NULL on {column} scans every row under ACCESS EXCLUSIVE"),
                    hints::NOT_NULL,
                );
            }
        }
        AlterCommand::DropColumn { column } => push(
            HazardKind::DataLoss,
            t(),
            format!("DROP COLUMN {column} destroys its data"),
            hints::DATA_LOSS,
        ),
        _ => {}
    }
}
