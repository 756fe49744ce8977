//! pg_deploy: whole schema deployments inside PostgreSQL.
//!
//! `deploy.apply(manifest)` validates, locks, plans, runs every pending change
//! in a subtransaction through SPI, records history and returns a report, all
//! inside the caller's transaction. The PostgreSQL-free logic lives in the
//! `pg_deploy_core` crate; this crate is the thin edge that touches the server.
#![forbid(unsafe_op_in_unsafe_fn)]
// DeployError carries the whole story of a failure; it is built once per call, so its size does not matter.
#![allow(clippy::result_large_err)]

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod analyze;
mod apply;
mod author;
mod baseline;
mod catalog;
mod catalog_locks;
mod classify;
mod deployment;
mod drift;
mod encoding;
mod error;
mod errpos;
mod execute;
mod fingerprint;
mod group;
mod guc;
mod history;
mod jsonb_arg;
mod jsonb_manifest;
mod lineage;
mod lock_capacity;
mod locks;
mod memory;
mod node;
mod owner;
mod ownership;
mod phases;
mod plan;
mod project_lock;
mod record;
mod revert;
mod session;
mod session_state;
mod sha256;
mod sqlstate;
mod statements;
mod subxact;
mod timeout;
mod tree_walk;

/// Registers pg_deploy's settings when the library loads.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::register();
}

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/lineage.sql", name = "lineage", requires = ["schema"]);
extension_sql_file!(
    "../sql/status.sql",
    name = "status",
    requires = [phases::wait::phase_status, "lineage"]
);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
