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
    }
}
