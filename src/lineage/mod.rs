//! Lineage (docs/lineage.md): the event triggers record every DDL command;
//! this module holds which deployment and change is running in this backend,
//! so the commands a deployment runs are attributed to it. It is a plain
//! backend-local static, set only by the apply and revert loops (no setting a
//! user could forge), and cleared by guards on every exit, unwinds included.

mod buffer;
pub mod downstream;
mod read;
mod seal;
mod trigger;

use crate::error::DeployError;
use crate::owner::Owner;
use pgrx::spi::SpiClient;
use std::cell::RefCell;

#[derive(Clone, Default)]
pub struct Context {
    pub project: Option<String>,
    pub change: Option<String>,
    /// Known up front only for the steps run after commit (phases); apply
    /// and revert attach theirs when they record the deployment.
    pub deployment: Option<i64>,
}

thread_local! {
    static CONTEXT: RefCell<Context> = RefCell::new(Context::default());
}

/// Fails when the test setting pg_deploy.lineage_fail is on: how the tests
/// make recording fail, to show that a failure becomes a gap.
pub(crate) fn injected_failure() -> Result<(), crate::subxact::PgError> {
    if crate::guc::LINEAGE_FAIL.get() {
        return Err(crate::sqlstate::pg_error(
            pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pg_deploy.lineage_fail is on",
        ));
    }
    Ok(())
}

/// What the backend is deploying now.
pub fn current() -> Context {
    CONTEXT.with(|c| c.borrow().clone())
}

/// While alive, DDL is attributed to `project`.
#[must_use = "the project is attributed only while the guard lives"]
pub struct Deploying(());

/// deploy.apply and deploy.revert: the firings are buffered and written when
/// the deployment is recorded (`attach`; buffer.rs says why).
pub fn deploying(project: &str) -> Deploying {
    let guard = deploying_in(project, None);
    buffer::start();
    guard
}

/// As `deploying`, for a deployment recorded already (a phase's steps).
pub fn deploying_in(project: &str, deployment: Option<i64>) -> Deploying {
    CONTEXT.with(|c| {
        *c.borrow_mut() = Context {
            project: Some(project.to_string()),
            change: None,
            deployment,
        }
    });
    Deploying(())
}

impl Drop for Deploying {
    fn drop(&mut self) {
        CONTEXT.with(|c| *c.borrow_mut() = Context::default());
        buffer::stop();
    }
}

/// While alive, DDL is attributed to change `id` (of the project being deployed).
#[must_use = "the change is attributed only while the guard lives"]
pub struct Running(());

pub fn running(id: &str) -> Running {
    CONTEXT.with(|c| c.borrow_mut().change = Some(id.to_string()));
    Running(())
}

impl Drop for Running {
    fn drop(&mut self) {
        CONTEXT.with(|c| c.borrow_mut().change = None);
    }
}

/// After a deployment is recorded: the rows its changes left in the buffer
/// are written with its id, sealed, and the rest of the log is sealed after them.
/// Sealing waits for a concurrent sealer; if it fails (e.g. a serialization
/// failure under REPEATABLE READ) the rows stay unsealed until the next seal,
/// with a warning, and the deployment goes on.
pub fn attach(client: &mut SpiClient<'_>, owner: Owner, project: &str, deployment_id: i64) -> Result<(), DeployError> {
    buffer::flush(client, owner, project, deployment_id)?;
    let sealed = crate::subxact::in_subtransaction(|| {
        owner
            .run(|| {
                // The deployment's own rows went in sealed: most of the time
                // nothing else waits, and the seal (a PL/pgSQL function, costly in
                // a new session) is skipped.
                // Read-write, so that it sees the rows just written in this transaction.
                let unsealed = client
                    .update(
                        "SELECT EXISTS (SELECT FROM deploy.lineage WHERE seq IS NULL)",
                        Some(1),
                        &[],
                    )?
                    .first()
                    .get_one::<bool>()?;
                if unsealed == Some(true) {
                    client.update("SELECT deploy.seal_lineage()", Some(1), &[])?;
                }
                Ok::<(), pgrx::spi::SpiError>(())
            })
            .map_err(|e| crate::sqlstate::pg_error(pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()))
    });
    if let Err(e) = sealed {
        pgrx::warning!(
            "pg_deploy: {project}: the lineage log was left unsealed ({}); SELECT deploy.seal_lineage() seals it",
            e.message
        );
    }
    Ok(())
}
