//! Stored SQL runs as the role that recorded it.
//!
//! Revert SQL, and the earlier SQL of a repeatable change that a revert runs
//! again, were written by whoever deployed them. Run later by another role
//! (a superuser, say), they must not gain that role's rights: each runs as its
//! author, and only a caller who has the author's privileges may run it.

use crate::error::DeployError;
use crate::owner::run_as_role;
use pgrx::pg_sys;
use pgrx::spi::SpiClient;

/// The role stored SQL runs as.
#[derive(Clone, Copy)]
pub enum Author {
    /// The caller recorded it: run as the caller, as apply does.
    Caller,
    /// Another role recorded it, and the caller has its privileges.
    Other(pg_sys::Oid),
}

impl Author {
    /// Resolves the role named `author` that recorded the stored SQL of
    /// `change`, and checks that the caller (current_user) has its privileges.
    pub fn resolve(
        client: &mut SpiClient<'_>,
        project: &str,
        change: &str,
        author: &str,
    ) -> Result<Author, DeployError> {
        let rows = client.update(
            "SELECT r.oid, r.rolname OPERATOR(pg_catalog.=) current_user,
                    pg_catalog.pg_has_role(r.oid, 'USAGE'), current_user::pg_catalog.text
               FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            Some(1),
            &[author.into()],
        )?;
        let refuse = |reason| DeployError::NotAuthor {
            project: project.to_string(),
            change: change.to_string(),
            author: author.to_string(),
            reason,
        };
        if rows.is_empty() {
            return Err(refuse(NotAuthor::Dropped));
        }
        let row = rows.first();
        let oid = row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid);
        let is_caller = row.get::<bool>(2)?.unwrap_or(false);
        let has_privileges = row.get::<bool>(3)?.unwrap_or(false);
        let caller = row.get::<String>(4)?.unwrap_or_default();
        match (is_caller, has_privileges) {
            (true, _) => Ok(Author::Caller),
            (false, true) => Ok(Author::Other(oid)),
            (false, false) => Err(refuse(NotAuthor::NotMember { caller })),
        }
    }

    /// Runs `work` as this author.
    pub fn run<R>(self, work: impl FnOnce() -> R) -> R {
        match self {
            Author::Caller => work(),
            Author::Other(role) => run_as_role(role, work),
        }
    }
}

/// Why stored SQL may not run.
#[derive(Debug, Clone)]
pub enum NotAuthor {
    /// The recording role is gone (42704).
    Dropped,
    /// The caller does not have the recording role's privileges (42501).
    NotMember { caller: String },
}
