//! The catalogs' locks, held for the rest of a deployment's transaction.
//!
//! DDL opens and closes catalog tables and indexes thousands of times, each
//! time taking and releasing a lock. A backend has 16 fast-path slots for
//! such locks; a deployment's transaction fills them early with locks it
//! keeps, and from then on every one of those takes the shared lock table's
//! partition lock and hash entries, twice. Holding each catalog's two modes
//! (AccessShareLock for reads, RowExclusiveLock for writes) makes every later
//! one a count in the backend's own table: on harbor's history 55 M
//! instructions fewer in 832 M (bench/instructions.sh). The deployment's own
//! bookkeeping (history, fingerprint, lineage) touches the catalogs too, so
//! even one CREATE TABLE gains (26.6 → 26.1 M).
//!
//! Those two modes conflict only with what rewrites a catalog (VACUUM FULL,
//! CLUSTER, REINDEX, LOCK TABLE … IN SHARE MODE or stronger): that now waits
//! for the deployment to commit, where it waited only while a statement read
//! the catalog. Autovacuum and other sessions' DDL do not wait. A catalog
//! some session has locked that way is skipped, never waited for; so are the
//! shared catalogs, which other databases use.

use crate::fingerprint::scan::{oid, Catalog};
use pg_deploy_core::capacity::LockTable;
use pgrx::pg_sys;

/// Holds the locks, unless the deployment's largest transaction (`budget`:
/// the locks it needs and the table, when counted) leaves too little of the
/// lock table to others. Returns how many catalogs it holds.
pub fn hold(budget: Option<(u64, LockTable)>) -> usize {
    let catalogs = catalog_relations();
    let count = u64::try_from(catalogs.len()).unwrap_or(u64::MAX);
    if budget.is_some_and(|(needed, table)| !table.room_for_catalogs(needed, count)) {
        return 0;
    }
    let modes = [pg_sys::AccessShareLock, pg_sys::RowExclusiveLock];
    catalogs
        .into_iter()
        .filter(|&relation| {
            // SAFETY: a relation lock by oid, taken only when free (no wait),
            // kept by the current resource owner until the transaction ends.
            modes
                .iter()
                .all(|&mode| unsafe { pg_sys::ConditionalLockRelationOid(relation, mode as i32) })
        })
        .count()
}

/// This database's catalog tables and indexes (schema pg_catalog, not shared).
fn catalog_relations() -> Vec<pg_sys::Oid> {
    let mut relations = Vec::new();
    let class = Catalog::open(oid::PG_CLASS);
    let catalog_schema = pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE);
    class.rows_where("relnamespace", catalog_schema, |row| {
        if matches!(row.byte("relkind"), b'r' | b'i') && row.byte("relisshared") == 0 {
            relations.push(row.oid("oid"));
        }
    });
    class.close();
    relations
}
