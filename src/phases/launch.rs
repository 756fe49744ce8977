//! Starting the phase worker: after the deploying transaction commits (so
//! the queue it wrote is there, and no worker slot is held while the caller's
//! transaction stays open), and again from deploy.wait / deploy.phase_status
//! when a queue is unfinished and nobody runs it.

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use pgrx::{register_xact_callback, PgXactCallbackEvent};

/// Who the worker connects as, who it runs statements as, and what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchTarget {
    pub database: pg_sys::Oid,
    /// A role that may log in: the one the deployer's session authenticated as.
    pub login: pg_sys::Oid,
    /// The role that called deploy.apply; every statement runs as it.
    pub run_as: pg_sys::Oid,
    pub deployment_id: i64,
}

impl LaunchTarget {
    /// As passed in bgw_extra (at most 127 bytes).
    pub fn to_extra(self) -> String {
        format!(
            "{} {} {} {}",
            self.database.to_u32(),
            self.login.to_u32(),
            self.run_as.to_u32(),
            self.deployment_id
        )
    }

    pub fn from_extra(extra: &str) -> Option<LaunchTarget> {
        let mut parts = extra.split_whitespace();
        let mut oid = || parts.next()?.parse::<u32>().ok().map(pg_sys::Oid::from);
        let (database, login, run_as) = (oid()?, oid()?, oid()?);
        let deployment_id = parts.next()?.parse::<i64>().ok()?;
        Some(LaunchTarget {
            database,
            login,
            run_as,
            deployment_id,
        })
    }
}

/// Starts a worker for `target` now. Err when no background worker slot is
/// free (max_worker_processes) or the server is shutting down.
pub fn launch(target: LaunchTarget) -> Result<i32, String> {
    let worker = BackgroundWorkerBuilder::new(&format!("pg_deploy phase of deployment {}", target.deployment_id))
        .set_type("pg_deploy phase worker")
        .set_library("pg_deploy")
        .set_function("pg_deploy_phase_worker")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_extra(&target.to_extra())
        .load_dynamic()
        .map_err(|_| {
            "no background worker slot is free (max_worker_processes); the phase waits for the next \
             deploy.wait, deploy.phase_status or deploy.apply of the project, or run it with the client"
                .to_string()
        })?;
    Ok(worker.pid().unwrap_or(0))
}

/// Starts a worker for `target` once the current transaction commits; nothing
/// happens if it rolls back. A failure to start is only logged: the queue
/// stays, and the next deploy.wait or deploy.phase_status starts it.
pub fn launch_after_commit(target: LaunchTarget) {
    register_xact_callback(PgXactCallbackEvent::Commit, move || {
        if let Err(why) = launch(target) {
            pgrx::log!("pg_deploy: deployment {}: {why}", target.deployment_id);
        }
    });
}

/// Whether a backend with this pid is alive (a runner recorded in
/// deploy.phase_runners); pid 0 is nobody.
pub fn backend_alive(pid: i32) -> bool {
    // SAFETY: BackendPidGetProc reads the proc array under its lock.
    pid != 0 && !unsafe { pg_sys::BackendPidGetProc(pid) }.is_null()
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn launch_targets_travel_in_bgw_extra() {
        let t = LaunchTarget {
            database: pg_sys::Oid::from(16384),
            login: pg_sys::Oid::from(10),
            run_as: pg_sys::Oid::from(4_294_967_295),
            deployment_id: i64::MAX,
        };
        assert!(t.to_extra().len() < 128);
        assert_eq!(LaunchTarget::from_extra(&t.to_extra()), Some(t));
        assert_eq!(LaunchTarget::from_extra("1 2 x 4"), None);
        assert_eq!(LaunchTarget::from_extra(""), None);
    }
}
