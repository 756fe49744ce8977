//! The phase worker: a dynamic background worker, never restarted by the
//! postmaster, connected to the deployment's database and running as the
//! role that called deploy.apply. It claims the project's queue (one runner
//! per project), runs each step in order, records every outcome, and exits.

use super::launch::{backend_alive, LaunchTarget};
use super::online;
use super::run::{self, Row};
use crate::error::DeployError;
use crate::owner::Owner;
use crate::subxact::{from_caught, PgError};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::panic::AssertUnwindSafe;

extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (postgres.c), unwrapped.
    #[link_name = "die"]
    fn postgres_die(postgres_signal_arg: std::ffi::c_int);
}

/// The worker's entry point (bgw_function_name).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_deploy_phase_worker(_arg: pg_sys::Datum) {
    // PostgreSQL's own SIGTERM handler: a terminate or a fast shutdown
    // interrupts a long build at its next CHECK_FOR_INTERRUPTS, which a
    // flag-only handler would not.
    // SAFETY: installing a signal handler PostgreSQL provides for backends,
    // then unblocking signals, as every background worker must.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let Some(target) = LaunchTarget::from_extra(BackgroundWorker::get_extra()) else {
        pgrx::warning!("pg_deploy phase worker: bad launch arguments");
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(target.database), Some(target.login));
    // Statements run as the deployer, who cannot SET ROLE away from it; the
    // bookkeeping switches to the extension's owner and back.
    // SAFETY: run_as names a role that existed at launch; the connection is up.
    unsafe {
        pg_sys::SetUserIdAndSecContext(target.run_as, pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    set_session("application_name", Some("pg_deploy phase worker"));
    match run_queue(target.deployment_id) {
        Ok(summary) => pgrx::log!("pg_deploy: deployment {}: {summary}", target.deployment_id),
        Err(error) => pgrx::warning!(
            "pg_deploy: deployment {}: the phase worker stopped: {}",
            target.deployment_id,
            error.message
        ),
    }
}

/// Runs `work` with SPI in a transaction of its own and commits; on error
/// the transaction is aborted and the error comes back as data.
pub fn in_transaction<R>(work: impl FnOnce(&mut SpiClient<'_>) -> Result<R, DeployError>) -> Result<R, PgError> {
    // SAFETY: the worker is between transactions here (every path below ends
    // the one it starts).
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
        Spi::connect_mut(|client| work(client)).map_err(|e| crate::sqlstate::pg_error(e.code(), e.to_string()))
    }))
    .catch_others(|caught| Err(from_caught(caught)))
    .execute();
    // SAFETY: ends the transaction begun above.
    unsafe {
        match &outcome {
            Ok(_) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Err(_) => pg_sys::AbortCurrentTransaction(),
        }
    }
    outcome
}

/// A setting for the rest of the worker's session; None resets it.
pub fn set_session(name: &str, value: Option<&str>) {
    let Ok(name) = std::ffi::CString::new(name) else {
        return;
    };
    let value = match value.map(std::ffi::CString::new) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return,
    };
    // SAFETY: valid C strings (a null value resets the setting); with elevel
    // WARNING a bad value is reported, not raised.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            pg_sys::WARNING as i32,
            false,
        )
    };
}

/// Claims the queue of `deployment_id` and runs its steps in order.
fn run_queue(deployment_id: i64) -> Result<String, PgError> {
    let owner = in_transaction(|_| Ok(Owner::of_extension()?.0))?;
    let claimed = in_transaction(|client| owner.run(|| claim(client, deployment_id)))?;
    let Some(project) = claimed else {
        return Ok("another worker runs the project's queue, or it is finished".into());
    };
    let mut steps = 0;
    let outcome = loop {
        let next = in_transaction(|client| owner.run(|| run::next_step(client, deployment_id)));
        let rows: Vec<Row> = match next {
            Ok(Some(rows)) => rows,
            Ok(None) => break Ok(format!("{steps} step(s) run, the queue is finished")),
            Err(e) => break Err(e),
        };
        steps += 1;
        let ok = if rows.first().is_some_and(|r| r.online) {
            online::online_step(owner, &project, &rows[0])
        } else {
            run::transaction_step(owner, &project, &rows)
        };
        if !ok {
            break Ok(format!("step {} failed; the queue stops", rows[0].step));
        }
    };
    let _ = in_transaction(|client| owner.run(|| release(client, &project)));
    outcome
}

/// Takes the project's runner row, unless a live worker holds it. The row
/// lock serialises workers started at once; the loser sees the winner alive.
pub(super) fn claim(client: &mut SpiClient<'_>, deployment_id: i64) -> Result<Option<String>, DeployError> {
    let project = client
        .update(
            "SELECT (SELECT project FROM deploy.phase_queue WHERE deployment_id = $1
                        AND state IN ('pending', 'running') LIMIT 1)",
            Some(1),
            &[deployment_id.into()],
        )?
        .first()
        .get_one::<String>()?;
    let Some(project) = project else {
        return Ok(None);
    };
    client.update(
        "INSERT INTO deploy.phase_runners (project, pid, backend_start, deployment_id)
         VALUES ($1, 0, pg_catalog.clock_timestamp(), $2) ON CONFLICT (project) DO NOTHING",
        None,
        &[project.as_str().into(), deployment_id.into()],
    )?;
    let holder = client
        .update(
            "SELECT pid FROM deploy.phase_runners WHERE project = $1 FOR UPDATE",
            Some(1),
            &[project.as_str().into()],
        )?
        .first()
        .get_one::<i32>()?
        .unwrap_or(0);
    // SAFETY: reading this backend's pid.
    let me = unsafe { pg_sys::MyProcPid };
    if holder != me && backend_alive(holder) {
        return Ok(None);
    }
    client.update(
        "UPDATE deploy.phase_runners
            SET pid = pg_catalog.pg_backend_pid(), backend_start = pg_catalog.clock_timestamp(),
                deployment_id = $2, since = pg_catalog.clock_timestamp()
          WHERE project = $1",
        None,
        &[project.as_str().into(), deployment_id.into()],
    )?;
    Ok(Some(project))
}

pub(super) fn release(client: &mut SpiClient<'_>, project: &str) -> Result<(), DeployError> {
    client.update(
        "DELETE FROM deploy.phase_runners WHERE project = $1 AND pid = pg_catalog.pg_backend_pid()",
        None,
        &[project.into()],
    )?;
    Ok(())
}
