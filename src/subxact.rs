//! Subtransactions and GUC nesting, done once and safely.
//!
//! pgrx 0.18 has no subtransaction API, so this mirrors PL/Python
//! (`plpy_spi.c`): remember the memory context and resource owner, begin an
//! internal subtransaction, run the work under `PgTryBuilder`, then release or
//! roll back and restore both.

use crate::sqlstate::{pg_error, sqlstate};
pub use pg_deploy_core::error::PgError;
use pgrx::pg_sys::{self, panic::CaughtError, PgTryBuilder};
use pgrx::PgSqlErrorCode;
use std::panic::AssertUnwindSafe;

/// A PostgreSQL error caught inside a subtransaction is kept as plain data
/// (`PgError`, shared with the core and the client) so it can be re-raised
/// with more context once the subtransaction is gone.
pub fn from_caught(error: CaughtError) -> PgError {
    match error {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => PgError {
            sqlstate: sqlstate(report.sql_error_code()),
            message: report.message().to_string(),
            detail: report.detail().map(str::to_string),
            hint: report.hint().map(str::to_string),
        },
        CaughtError::RustPanic { ereport, .. } => {
            // A bug of ours: keep the panic text in the server log, not in the user's error.
            pgrx::log!("pg_deploy: internal panic: {}", ereport.message());
            PgError {
                sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR),
                message: "pg_deploy hit an internal error; the server log has details".into(),
                detail: None,
                hint: Some("Please report this as a pg_deploy bug.".into()),
            }
        }
    }
}

/// Runs `work` in its own subtransaction. When `work` returns `Ok`, the
/// subtransaction is released and its effects stay in the caller's
/// transaction; when it returns `Err` or raises an error, everything it did is
/// rolled back and the error comes back as data.
pub fn in_subtransaction<R>(work: impl FnOnce() -> Result<R, PgError>) -> Result<R, PgError> {
    // SAFETY: reading two backend globals; we are in a transaction on the main thread.
    let (old_context, old_owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    // SAFETY: we are inside a transaction (called from a SQL function); the
    // subtransaction is closed on every path below.
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_context);
    }
    let restore = move || {
        // SAFETY: both values were valid when saved and outlive the subtransaction.
        unsafe {
            pg_sys::MemoryContextSwitchTo(old_context);
            pg_sys::CurrentResourceOwner = old_owner;
        }
    };
    let rollback = move || {
        // SAFETY: the subtransaction begun above is still the current one: `work`
        // cannot close it (it has no handle) and errors inside it were caught here.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
    };
    PgTryBuilder::new(AssertUnwindSafe(|| match work() {
        Ok(value) => {
            // SAFETY: as for `rollback`: the subtransaction is still current.
            unsafe { pg_sys::ReleaseCurrentSubTransaction() };
            restore();
            Ok(value)
        }
        Err(error) => {
            rollback();
            Err(error)
        }
    }))
    .catch_others(move |caught| {
        rollback();
        Err(from_caught(caught))
    })
    .execute()
}

/// A GUC nesting level, like the one a function with `SET` clauses gets.
/// Anything set after it is opened, by pg_deploy or by a change's own `SET`,
/// is undone by `restore`, so nothing leaks into the caller's session.
#[must_use = "a GUC level must be restored"]
pub struct GucLevel(i32);

impl GucLevel {
    pub fn open() -> GucLevel {
        // SAFETY: plain call into guc.c; paired with `restore`.
        GucLevel(unsafe { pg_sys::NewGUCNestLevel() })
    }

    /// Restores every setting changed since `open`, `SET` and `SET LOCAL` alike
    /// (the abort path of `AtEOXact_GUC`, as a rolled-back subtransaction does).
    pub fn restore(self) {
        // SAFETY: the level was opened by us and every deeper level (subtransactions)
        // has already been closed.
        unsafe { pg_sys::AtEOXact_GUC(false, self.0) };
    }
}

/// `SET LOCAL name = value`, without a query: the setting lives until the
/// current GUC level is restored. Raises PostgreSQL's error for a bad value.
pub fn set_local(name: &str, value: &str) -> Result<(), PgError> {
    let bad = |what: &str| {
        pg_error(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{what} contains a NUL byte"),
        )
    };
    let name_c = std::ffi::CString::new(name).map_err(|_| bad(name))?;
    let value_c = std::ffi::CString::new(value).map_err(|_| bad(name))?;
    // SAFETY: valid C strings; with elevel ERROR a bad value raises, which the
    // enclosing subtransaction (or the caller's transaction) handles.
    unsafe {
        pg_sys::set_config_option(
            name_c.as_ptr(),
            value_c.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            pg_sys::PGERROR as i32,
            false,
        )
    };
    Ok(())
}
