//! Settings an administrator sets for pg_deploy (postgresql.conf or ALTER
//! SYSTEM / ALTER DATABASE, superuser only); a manifest cannot override them.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// The longest statement_timeout a change may run under, in milliseconds
/// (0: no maximum). A manifest's "0" (no timeout) counts as over it.
pub static MAX_STATEMENT_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(0);

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
}
