//! Whether one transaction of a deployment fits PostgreSQL's shared lock
//! table, decided before anything runs: every relation a transaction creates
//! stays locked until it commits, and a lock table that runs out fails the
//! deployment halfway (53200 "out of shared memory") after minutes of work.

/// Relations a statement creates, by its command tag: each one is locked until
/// commit. A lower bound: the indexes behind inline PRIMARY KEY and UNIQUE
/// constraints, TOAST tables and the sequences of serial columns come on top.
pub fn relations_created(tag: &str) -> u64 {
    match tag {
        "CREATE TABLE"
        | "CREATE TABLE AS"
        | "SELECT INTO"
        | "CREATE INDEX"
        | "CREATE SEQUENCE"
        | "CREATE VIEW"
        | "CREATE MATERIALIZED VIEW"
        | "CREATE FOREIGN TABLE" => 1,
        _ => 0,
    }
}

/// A column of a CREATE TABLE or ALTER TABLE ADD COLUMN, as the parser wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnShape {
    /// The type as written, schema-qualified when the grammar qualifies it
    /// ("pg_catalog.int8", "text", "varchar[]").
    pub type_name: String,
    /// A length, precision or other modifier was given: `varchar(20)`.
    pub has_typmod: bool,
    /// A column PRIMARY KEY or UNIQUE constraint: an index.
    pub builds_index: bool,
    /// GENERATED … AS IDENTITY: a sequence.
    pub identity: bool,
}

impl ColumnShape {
    /// Relations the column adds to its table: its index and its sequence
    /// (identity or serial).
    pub fn relations(&self) -> u64 {
        u64::from(self.builds_index) + u64::from(self.identity || is_serial(&self.type_name))
    }
}

/// serial, bigserial and smallserial make a sequence; PostgreSQL takes them
/// for what they are only unqualified.
pub fn is_serial(type_name: &str) -> bool {
    matches!(
        type_name,
        "serial" | "bigserial" | "smallserial" | "serial4" | "serial8" | "serial2"
    )
}

/// Whether a column of this type certainly gives its table a TOAST table:
/// PostgreSQL makes one when a column's type is variable-length, not stored
/// plain, and unbounded (`needs_toast_table`). Types it cannot know here
/// (domains, extensions' types) count as not toasted: the count stays a
/// lower bound.
pub fn certainly_toasted(type_name: &str, has_typmod: bool) -> bool {
    if type_name.ends_with("[]") {
        return true;
    }
    match type_name.strip_prefix("pg_catalog.").unwrap_or(type_name) {
        "varchar" | "bpchar" | "numeric" | "varbit" | "bit" => !has_typmod,
        "text" | "bytea" | "json" | "jsonb" | "xml" | "tsvector" | "tsquery" | "inet" | "cidr" | "path" | "polygon"
        | "int4range" | "int8range" | "numrange" | "daterange" | "tsrange" | "tstzrange" => true,
        _ => false,
    }
}

/// Relations a CREATE TABLE makes: the table, the indexes of its PRIMARY
/// KEY, UNIQUE and EXCLUDE constraints, a sequence per identity or serial
/// column, and a TOAST table with its index when a column needs one (a
/// partitioned table stores nothing, so has none).
pub fn relations_of_table(columns: &[ColumnShape], table_constraint_indexes: u64, partitioned: bool) -> u64 {
    let toast = !partitioned && columns.iter().any(|c| certainly_toasted(&c.type_name, c.has_typmod));
    1 + table_constraint_indexes + columns.iter().map(ColumnShape::relations).sum::<u64>() + if toast { 2 } else { 0 }
}

/// PostgreSQL's lock table, sized for max_locks_per_transaction ×
/// (server processes + max_prepared_transactions) locks in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockTable {
    pub per_transaction: u64,
    pub backends: u64,
    pub prepared: u64,
}

impl LockTable {
    pub fn capacity(&self) -> u64 {
        self.per_transaction * (self.backends + self.prepared)
    }

    /// The smallest max_locks_per_transaction, in steps of 64, that sizes the
    /// table for `needed` locks.
    pub fn setting_for(&self, needed: u64) -> u64 {
        let slots = (self.backends + self.prepared).max(1);
        needed.div_ceil(slots).div_ceil(64).max(1) * 64
    }

    /// Whether `needed` locks (one transaction's lower bound) do not fit.
    pub fn too_small_for(&self, needed: u64) -> bool {
        needed > self.capacity()
    }

    /// Whether a deployment needing `needed` locks may also hold `catalogs`
    /// more (its database's catalogs, for speed alone): only while both
    /// together leave a tenth of the table to the other sessions.
    pub fn room_for_catalogs(&self, needed: u64, catalogs: u64) -> bool {
        needed.saturating_add(catalogs) <= self.capacity() - self.capacity() / 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_by_tag() {
        for (tag, n) in [
            ("CREATE TABLE", 1),
            ("CREATE INDEX", 1),
            ("CREATE MATERIALIZED VIEW", 1),
            ("CREATE TABLE AS", 1),
            ("ALTER TABLE", 0),
            ("INSERT", 0),
            ("CREATE FUNCTION", 0),
        ] {
            assert_eq!(relations_created(tag), n, "{tag}");
        }
    }

    fn column(type_name: &str, has_typmod: bool) -> ColumnShape {
        ColumnShape {
            type_name: type_name.to_string(),
            has_typmod,
            builds_index: false,
            identity: false,
        }
    }

    #[test]
    fn toasted_types() {
        for (type_name, has_typmod, toasted) in [
            ("text", false, true),
            ("pg_catalog.varchar", false, true),
            ("pg_catalog.varchar", true, false),
            ("pg_catalog.numeric", true, false),
            ("pg_catalog.numeric", false, true),
            ("jsonb", false, true),
            ("pg_catalog.int4[]", false, true),
            ("pg_catalog.int8", false, false),
            ("pg_catalog.timestamptz", false, false),
            ("uuid", false, false),
            ("my_domain", false, false),
        ] {
            assert_eq!(
                certainly_toasted(type_name, has_typmod),
                toasted,
                "{type_name} {has_typmod}"
            );
        }
    }

    #[test]
    fn serial_types() {
        assert!(is_serial("bigserial") && is_serial("serial4"));
        assert!(
            !is_serial("pg_catalog.serial"),
            "only unqualified, as PostgreSQL reads it"
        );
        assert!(!is_serial("pg_catalog.int8"));
    }

    #[test]
    fn relations_of_a_table() {
        let id = ColumnShape {
            builds_index: true,
            ..column("pg_catalog.int8", false)
        };
        let serial = column("bigserial", false);
        let identity = ColumnShape {
            identity: true,
            ..column("pg_catalog.int4", false)
        };
        let text = column("text", false);
        let bounded = column("pg_catalog.varchar", true);
        // (id bigint PRIMARY KEY, name text): table, index, TOAST table and its index.
        assert_eq!(relations_of_table(&[id.clone(), text.clone()], 0, false), 4);
        assert_eq!(relations_of_table(&[id, bounded], 0, false), 2);
        assert_eq!(relations_of_table(&[serial, identity], 1, false), 4);
        assert_eq!(
            relations_of_table(&[text], 0, true),
            1,
            "a partitioned table has no TOAST table"
        );
        assert_eq!(relations_of_table(&[], 0, false), 1);
    }

    #[test]
    fn capacity_and_the_setting_to_raise() {
        // Debian's defaults: 64 × (100 connections + 3 autovacuum + 1 + 8 workers + 10 walsenders).
        let table = LockTable {
            per_transaction: 64,
            backends: 122,
            prepared: 0,
        };
        assert_eq!(table.capacity(), 7_808);
        assert!(!table.too_small_for(7_808));
        assert!(table.too_small_for(7_809));
        // 20,000 relations need 20,000 / 122 = 164 per transaction, rounded up to 192.
        assert_eq!(table.setting_for(20_000), 192);
        assert_eq!(table.setting_for(1), 64);
        // The catalogs' locks only while the deployment leaves a tenth of the table to others.
        assert!(table.room_for_catalogs(6_828, 200));
        assert!(!table.room_for_catalogs(6_829, 200));
        assert!(!table.room_for_catalogs(u64::MAX, 200));
    }
}
