//! History is written as the extension's owner, not as the caller.
//!
//! Callers get EXECUTE on deploy.apply, never privileges on the history
//! tables, so they cannot edit history by hand. pg_deploy's own fixed,
//! schema-qualified history queries run under the owner's user id, the way
//! PostgreSQL itself runs maintenance as a table's owner; the changes
//! themselves always run as the caller.

use crate::error::DeployError;
use pgrx::pg_sys;
use pgrx::spi::SpiClient;

#[derive(Clone, Copy)]
pub struct Owner(pg_sys::Oid);

impl Owner {
    pub fn of_extension(client: &mut SpiClient<'_>) -> Result<Owner, DeployError> {
        let owner = client
            .update(
                "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_deploy'",
                Some(1),
                &[],
            )?
            .first()
            .get_one::<pg_sys::Oid>()?
            .ok_or_else(|| DeployError::Internal("pg_deploy is not installed in this database".into()))?;
        Ok(Owner(owner))
    }

    /// Runs `work` with the owner's user id, in a restricted security context
    /// (no SET ROLE, no temporary objects); the caller's id comes back on
    /// return and on unwind alike.
    pub fn run<R>(self, work: impl FnOnce() -> R) -> R {
        run_as_role(self.0, work)
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
