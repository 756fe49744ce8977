//! History is written as the extension's owner, not as the caller.
//!
//! Callers get EXECUTE on deploy.apply, never privileges on the history
//! tables, so they cannot edit history by hand. pg_deploy's own fixed,
//! schema-qualified history queries run under the owner's user id, the way
//! PostgreSQL itself runs maintenance as a table's owner; the changes
//! themselves always run as the caller.

use crate::error::DeployError;
use crate::fingerprint::scan::{oid, Catalog};
use pgrx::pg_sys;

#[derive(Clone, Copy)]
pub struct Owner(pg_sys::Oid);

/// The SQL objects of this database's pg_deploy: who owns them, and which
/// release created them. The library serves a database still at 0.1.0 (before
/// ALTER EXTENSION pg_deploy UPDATE) without what needs 0.2.0's objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    V0_1,
    V0_2,
}

impl Owner {
    /// The extension's owner and the version of its SQL objects, read from
    /// pg_extension directly (a query here was planned in every new session).
    pub fn of_extension() -> Result<(Owner, Schema), DeployError> {
        let catalog = Catalog::open(oid::PG_EXTENSION);
        let mut found = None;
        catalog.all_rows(|row| {
            if row.text("extname").as_deref() == Some(b"pg_deploy".as_slice()) {
                found = Some((row.oid("extowner"), row.text("extversion")));
            }
        });
        catalog.close();
        let Some((owner, version)) = found else {
            return Err(DeployError::Internal(
                "pg_deploy is not installed in this database".into(),
            ));
        };
        let schema = match version.as_deref() {
            Some(b"0.1.0") => Schema::V0_1,
            _ => Schema::V0_2,
        };
        Ok((Owner(owner), schema))
    }

    /// Runs `work` with the owner's user id, in a restricted security context
    /// (no SET ROLE, no temporary objects), with names resolved in
    /// pg_catalog only (a caller's or a change's search_path must not decide
    /// which `max` or `=` the owner runs); the caller's id and search_path
    /// come back on return (and, on an error, with the (sub)transaction's abort).
    pub fn run<R>(self, work: impl FnOnce() -> R) -> R {
        let level = crate::subxact::GucLevel::open();
        // A fixed, valid value: set_local cannot fail on it.
        let _ = crate::subxact::set_local("search_path", "pg_catalog, pg_temp");
        let out = run_as_role(self.0, work);
        level.restore();
        out
    }
}

/// Runs `work` as `role`, the way PostgreSQL runs a SECURITY DEFINER function
/// and, restricted, maintenance as a table's owner: no SET ROLE, no temporary
/// objects, no LISTEN. The caller's user id and context come back on return
/// and on unwind alike.
pub fn run_as_role<R>(role: pg_sys::Oid, work: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads the current user id and security context into locals.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let _restore = Restore { user, context };
    let restricted =
        context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
    // SAFETY: `role` names an existing role (from the catalogs); `_restore` puts the caller back.
    unsafe { pg_sys::SetUserIdAndSecContext(role, restricted) };
    work()
}

struct Restore {
    user: pg_sys::Oid,
    context: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: two plain assignments inside miscinit.c; cannot raise an error.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}
