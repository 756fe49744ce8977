//! Running one statement top level from the phase worker, the way
//! PostgreSQL's exec_simple_query does (and pg_background, pg_cron's worker
//! mode): parse, analyse, plan, then an unnamed portal run with isTopLevel =
//! true, in a transaction of its own. SPI cannot do this (it is never top
//! level), and CREATE INDEX CONCURRENTLY, VACUUM and friends need it.

use crate::subxact::{from_caught, PgError};
use pgrx::pg_sys::{self, PgTryBuilder};
use std::ffi::CString;
use std::panic::AssertUnwindSafe;

/// Runs `sql` (exactly one statement, checked by the caller) top level and
/// commits; returns the rows it processed (INSERT, UPDATE, DELETE, MERGE).
/// On error the transaction is aborted, which also releases the session-level
/// lock a concurrent index build holds, and the error comes back as data.
///
/// Must be called outside a transaction (the worker's idle state), with the
/// statement's settings already set at session level.
pub fn run_toplevel(sql: &str) -> Result<u64, PgError> {
    let text = CString::new(sql).map_err(|_| {
        crate::sqlstate::pg_error(
            pgrx::PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "SQL contains a NUL byte",
        )
    })?;
    // The parse tree, the plan and the portal's source text must outlive the
    // transactions a concurrent build commits internally: a context of their
    // own under TopMemoryContext, deleted at the end.
    // SAFETY: TopMemoryContext is valid in every backend; the new context is
    // deleted below on every path.
    let context = unsafe {
        pg_sys::AllocSetContextCreateExtended(
            pg_sys::TopMemoryContext,
            c"pg_deploy online statement".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    };
    // SAFETY: not in a transaction (the caller's contract); StartTransactionCommand
    // switches to the transaction's context, and we switch to ours after it.
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::MemoryContextSwitchTo(context);
    }
    let source = text.as_ptr();
    let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
        // SAFETY: a transaction is open and `source` is a valid C string that
        // outlives the portal; each call follows exec_simple_query's order.
        unsafe { run_in_portal(source) }
    }))
    .catch_others(|caught| Err(from_caught(caught)))
    .execute();
    // SAFETY: ending the transaction this function started (or the one a
    // concurrent build left open), then leaving and deleting our context.
    unsafe {
        match outcome {
            Ok(_) => pg_sys::CommitTransactionCommand(),
            Err(_) => pg_sys::AbortCurrentTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        pg_sys::MemoryContextDelete(context);
    }
    outcome
}

/// # Safety
/// A transaction is open; `source` is a valid C string holding one statement.
unsafe fn run_in_portal(source: *const std::ffi::c_char) -> Result<u64, PgError> {
    // SAFETY: per the contract; every pointer comes from the call before it.
    unsafe {
        let parsed = pgrx::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(source));
        if parsed.len() != 1 {
            return Err(crate::sqlstate::pg_error(
                pgrx::PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
                format!("an online change must be exactly one statement, not {}", parsed.len()),
            ));
        }
        let raw = parsed.get_ptr(0).unwrap_or(std::ptr::null_mut());
        let tag = pg_sys::CreateCommandTag((*raw).stmt);
        // No outer snapshot around PortalRun: a concurrent build commits
        // internally, and an active snapshot would outlive its transaction.
        let needs_snapshot = pg_sys::analyze_requires_snapshot(raw);
        if needs_snapshot {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        let queries =
            pg_sys::pg_analyze_and_rewrite_fixedparams(raw, source, std::ptr::null(), 0, std::ptr::null_mut());
        let plans = pg_sys::pg_plan_queries(
            queries,
            source,
            pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
            std::ptr::null_mut(),
        );
        if needs_snapshot {
            pg_sys::PopActiveSnapshot();
        }
        let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
        (*portal).visible = false;
        pg_sys::PortalDefineQuery(portal, std::ptr::null(), source, tag, plans, std::ptr::null_mut());
        pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
        let receiver = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestNone);
        let mut completion = pg_sys::QueryCompletion {
            commandTag: pg_sys::CommandTag::CMDTAG_UNKNOWN,
            nprocessed: 0,
        };
        #[cfg(not(feature = "pg18"))]
        pg_sys::PortalRun(
            portal,
            std::ffi::c_long::MAX,
            true,
            true,
            receiver,
            receiver,
            &mut completion,
        );
        #[cfg(feature = "pg18")]
        pg_sys::PortalRun(portal, std::ffi::c_long::MAX, true, receiver, receiver, &mut completion);
        if let Some(destroy) = (*receiver).rDestroy {
            destroy(receiver);
        }
        pg_sys::PortalDrop(portal, false);
        Ok(completion.nprocessed)
    }
}
