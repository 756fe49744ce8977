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
}

pub const ALL_HAZARDS: [HazardKind; 5] = [
    HazardKind::TableRewrite,
    HazardKind::AccessExclusive,
    HazardKind::BlockingIndexBuild,
    HazardKind::ValidatingConstraint,
    HazardKind::DataLoss,
];

impl HazardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HazardKind::TableRewrite => "table_rewrite",
            HazardKind::AccessExclusive => "access_exclusive",
            HazardKind::BlockingIndexBuild => "blocking_index_build",
            HazardKind::ValidatingConstraint => "validating_constraint",
            HazardKind::DataLoss => "data_loss",
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
    /// Whether a validated CHECK constraint already proves `column IS NOT NULL`.
    fn not_null_proven(&mut self, table: &TableFacts, column: &str) -> bool;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hazard {
    pub kind: HazardKind,
    pub table: Option<TableFacts>,
    pub big: bool,
    pub reason: String,
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

/// The hazards of one statement. `lock` is the lock mode the statement takes
/// on its table ("AccessExclusiveLock", …), when known.
pub fn hazards(
    facts: &Facts,
    lock: Option<(&ObjectName, &str)>,
    catalog: &mut dyn Catalog,
    thresholds: &Thresholds,
) -> Vec<Hazard> {
    let mut out = Vec::new();
    let mut push = |kind, table: Option<TableFacts>, reason: String| {
        let big = table.as_ref().is_some_and(|t| thresholds.is_big(t));
        out.push(Hazard {
            kind,
            table,
            big,
            reason,
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
                );
            }
        }
        Facts::AlterTable { table, commands } => {
            let Some(t) = catalog.table(table) else {
                return out;
            };
            for command in commands {
                match command {
                    AlterCommand::AddColumn {
                        column,
                        default_functions,
                        serial,
                        ..
                    } if (*serial || catalog.any_volatile(default_functions)) => {
                        push(
                            HazardKind::TableRewrite,
                            Some(t.clone()),
                            format!("ADD COLUMN {column} with a volatile default rewrites every row"),
                        );
                    }
                    AlterCommand::AlterColumnType {
                        column,
                        new_type,
                        using,
                    } if (*using || catalog.type_change_rewrites(&t, column, new_type)) => {
                        push(
                            HazardKind::TableRewrite,
                            Some(t.clone()),
                            format!(
                                "ALTER COLUMN {column} TYPE {new_type} is not binary-coercible: the table is rewritten"
                            ),
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
                        push(HazardKind::ValidatingConstraint, Some(t.clone()), format!("ADD {what} without NOT VALID checks every row under lock; add it NOT VALID, then VALIDATE CONSTRAINT"));
                    }
                    AlterCommand::AddConstraint {
                        kind: ConstraintKind::Unique | ConstraintKind::PrimaryKey | ConstraintKind::Exclusion,
                        uses_index: false,
                        ..
                    } => {
                        push(HazardKind::BlockingIndexBuild, Some(t.clone()), "ADD CONSTRAINT builds its index under lock; build it CONCURRENTLY first, then ADD CONSTRAINT … USING INDEX".into());
                    }
                    AlterCommand::SetNotNull { column } if !catalog.not_null_proven(&t, column) => {
                        push(HazardKind::ValidatingConstraint, Some(t.clone()), format!("SET NOT NULL on {column} scans every row under ACCESS EXCLUSIVE; add a CHECK ({column} IS NOT NULL) NOT VALID and VALIDATE it first"));
                    }
                    AlterCommand::DropColumn { column } => {
                        push(
                            HazardKind::DataLoss,
                            Some(t.clone()),
                            format!("DROP COLUMN {column} destroys its data"),
                        );
                    }
                    _ => {}
                }
            }
            // Last: the specific hazards above explain more when both apply.
            if exclusive {
                push(
                    HazardKind::AccessExclusive,
                    Some(t),
                    "ALTER TABLE takes ACCESS EXCLUSIVE: every read and write of the table waits".into(),
                );
            }
        }
        Facts::Drop {
            object: DropKind::Table,
            names,
        } => {
            for name in names {
                if let Some(t) = catalog.table(name) {
                    push(HazardKind::DataLoss, Some(t), "DROP TABLE destroys its rows".into());
                }
            }
        }
        Facts::Drop {
            object: DropKind::Schema,
            names,
        } => {
            for name in names {
                if let Some(t) = catalog.schema_tables(&name.name) {
                    push(
                        HazardKind::DataLoss,
                        Some(t),
                        format!("DROP SCHEMA {} destroys the tables in it", name.name),
                    );
                }
            }
        }
        Facts::Truncate { tables } => {
            for name in tables {
                if let Some(t) = catalog.table(name) {
                    push(HazardKind::DataLoss, Some(t), "TRUNCATE destroys every row".into());
                }
            }
        }
        Facts::UnboundedDelete { table } => {
            if let Some(t) = catalog.table(table) {
                push(
                    HazardKind::DataLoss,
                    Some(t),
                    "DELETE without WHERE destroys every row".into(),
                );
            }
        }
        // Any other statement holding ACCESS EXCLUSIVE on an existing table (RENAME, …).
        Facts::Other if exclusive => {
            if let Some(t) = lock.and_then(|(table, _)| catalog.table(table)) {
                push(
                    HazardKind::AccessExclusive,
                    Some(t),
                    "the statement takes ACCESS EXCLUSIVE: every read and write of the table waits".into(),
                );
            }
        }
        _ => {}
    }
    out
}
