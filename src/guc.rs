//! Settings an administrator sets for pg_deploy (postgresql.conf or ALTER
//! SYSTEM / ALTER DATABASE, superuser only); a manifest cannot override them.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// The longest statement_timeout a change may run under, in milliseconds
/// (0: no maximum). A manifest's "0" (no timeout) counts as over it.
pub static MAX_STATEMENT_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(0);

/// How long deploy.trim_lineage() keeps lineage rows (read by the SQL function).
pub static LINEAGE_RETENTION: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"90 days"));

/// Makes every lineage recording fail, to prove a failure is a gap, not a
/// failed command (tests). Superuser only, so nobody can hide their DDL with it.
pub static LINEAGE_FAIL: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn register() {
    GucRegistry::define_int_guc(
        c"pg_deploy.max_statement_timeout",
        c"The longest statement_timeout a deployment's change may run under (0: no maximum).",
        c"Set by the administrator; a manifest asking for a longer statement_timeout, or none, is refused.",
        &MAX_STATEMENT_TIMEOUT,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pg_deploy.lineage_retention",
        c"How long deploy.trim_lineage() keeps lineage rows (an interval).",
        c"deploy.trim_lineage(older_than) overrides it; nothing is trimmed unless that function runs.",
        &LINEAGE_RETENTION,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_deploy.lineage_fail",
        c"Makes the lineage event triggers fail (they record a gap instead); for tests.",
        c"Superuser only.",
        &LINEAGE_FAIL,
        GucContext::Suset,
        GucFlags::default(),
    );
}
