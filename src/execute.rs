//! Running one change: its settings, its statements, one subtransaction.

use crate::analyze::RunSettings;
use crate::errpos::PositionProbe;
use crate::session_state;
use crate::sqlstate::{pg_error, sqlstate, Coded};
use crate::statements::Statement;
use crate::subxact::{from_caught, in_subtransaction, set_local, GucLevel, PgError};
use crate::timeout::CallerTimer;
use pg_deploy_core::analysis::ObjectName;
use pg_deploy_core::retry::retry_backoff_ms;
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::spi::{SpiClient, SpiError, SpiErrorCodes};
use pgrx::PgSqlErrorCode;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Why a change failed and where: `statement` is the index of the statement
/// that failed (None when applying its settings failed), `at` the byte offset
/// in the change's SQL the error points to.
#[derive(Debug, Clone)]
pub struct ChangeFailure {
    pub error: PgError,
    pub statement: Option<usize>,
    pub at: Option<usize>,
    pub retries: u32,
}

/// A change that ran: how long it took (all attempts) and how often it was
/// retried after a lock timeout.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRun {
    pub duration: Duration,
    pub retries: u32,
}

/// Runs `statements` of `sql` under `settings`, each attempt in a
/// subtransaction inside its own GUC level: on success its effects stay in the
/// caller's transaction and any settings it changed are undone; on failure
/// nothing of it remains. An attempt that fails on a lock timeout (55P03) is
/// rolled back, which leaves the lock queue, and retried after a backoff, up to
/// `settings.lock_retries` times; locks taken by earlier changes stay held.
pub fn run_change(
    client: &mut SpiClient<'_>,
    work: &ChangeWork<'_>,
    settings: &RunSettings,
) -> Result<ChangeRun, ChangeFailure> {
    let _attributed = crate::lineage::running(work.id);
    crate::memory::scoped("pg_deploy change", || run_attempts(client, work, settings))
}

fn run_attempts(
    client: &mut SpiClient<'_>,
    work: &ChangeWork<'_>,
    settings: &RunSettings,
) -> Result<ChangeRun, ChangeFailure> {
    let started = Instant::now();
    let mut retries = 0;
    loop {
        // Every attempt but the last takes its table locks only when free, so a
        // busy table is waited for outside the lock queue; the last one queues
        // (for lock_timeout at most) and fails naming the holders.
        let queue = retries >= settings.lock_retries;
        match attempt(client, work, settings, queue) {
            Ok(()) => {
                return Ok(ChangeRun {
                    duration: started.elapsed(),
                    retries,
                })
            }
            Err(failure)
                if failure.error.is(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE) && retries < settings.lock_retries =>
            {
                // Wait outside the lock queue (where the application's queries
                // would line up behind us) until the holders are gone; a retry
                // period that ends with them still there counts, without queueing.
                let target = failure.statement.and_then(|i| lock_target(client, work, settings, i));
                loop {
                    retries += 1;
                    let wait = retry_backoff_ms(retries, jitter());
                    if failure.error.message.starts_with(BUSY) {
                        pgrx::notice!(
                            "pg_deploy: change \"{}\": {}; retry {retries} of {} when it is free (at most {wait} ms)",
                            work.id,
                            failure.error.message,
                            settings.lock_retries
                        );
                    } else {
                        pgrx::notice!(
                            "pg_deploy: change \"{}\" timed out waiting for a lock (lock_timeout {}); retry {retries} of {} \
                             when the table is free (at most {wait} ms)",
                            work.id,
                            settings.lock_timeout,
                            settings.lock_retries
                        );
                    }
                    let free = match &target {
                        Some((oid, mode)) => wait_until_free(client, *oid, mode, settings, wait),
                        None => {
                            sleep_ms(wait);
                            true
                        }
                    };
                    if free || retries >= settings.lock_retries {
                        break;
                    }
                }
            }
            Err(failure) => return Err(ChangeFailure { retries, ..failure }),
        }
    }
}

/// What one change runs: its statements, then its verify query.
pub struct ChangeWork<'a> {
    pub id: &'a str,
    pub sql: &'a str,
    pub statements: &'a [Statement],
    pub verify: Option<&'a str>,
}

impl<'a> ChangeWork<'a> {
    /// `statements` of `change` (its plain statements, as analysed), then its verify.
    pub fn of(change: &'a pg_deploy_core::Change, statements: &'a [Statement]) -> ChangeWork<'a> {
        ChangeWork {
            id: &change.id,
            sql: &change.sql,
            statements,
            verify: change.verify.as_deref(),
        }
    }
}

fn attempt(
    client: &mut SpiClient<'_>,
    work: &ChangeWork<'_>,
    settings: &RunSettings,
    queue: bool,
) -> Result<(), ChangeFailure> {
    let (sql, statements) = (work.sql, work.statements);
    let level = GucLevel::open();
    let timer = CallerTimer::save();
    let current = Cell::new(None::<usize>);
    let mut probe = PositionProbe::new();
    let dropped_at_commit: Vec<String> = statements
        .iter()
        .flat_map(|s| s.tree.dropped_at_commit.iter().cloned())
        .collect();
    let mut before = None;
    // An unqualified CREATE goes to pg_temp when the search_path puts it first.
    let check_session = statements.iter().any(|s| !s.leaves_no_session_state)
        || work.verify.is_some()
        || settings.search_path.contains("pg_temp");
    let outcome = in_subtransaction(|| {
        if check_session {
            before = Some(session_state::holdings(client)?);
        }
        for (name, value) in settings.gucs() {
            set_local(name, value)?;
        }
        for (i, statement) in statements.iter().enumerate() {
            current.set(Some(i));
            if let (false, Some((table, mode))) = (queue, &statement.lock) {
                lock_unless_held_long(client, table, mode, settings)?;
            }
            timer.arm_for_statement();
            let text = &sql[statement.start..statement.end];
            probe.watch(|| client.update(text, None, &[])).map_err(spi_failure)?;
        }
        if let Some(verify) = work.verify {
            current.set(None);
            timer.arm_for_statement();
            run_verify(client, verify)?;
        }
        current.set(None);
        if let Some(before) = &before {
            session_state::left_behind(client, before, &dropped_at_commit)?;
        }
        Ok(())
    });
    if let (Err(_), Some(before)) = (&outcome, &before) {
        // What the rollback does not undo: prepared statements, session locks.
        let _ = session_state::clean_up(client, before);
    }
    timer.restore();
    level.restore();
    outcome.map_err(|mut error| {
        if error.is(PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION) && error.hint.is_none() {
            error.hint = Some(TRANSACTION_CONTROL_HINT.to_string());
        }
        let statement = current.get();
        let at = statement.map(|i| {
            let s = &statements[i];
            let text = &sql[s.start..s.end];
            match probe.cursor().filter(|&c| c <= text.chars().count()) {
                Some(c) => s.start + pg_deploy_core::position::cursor_to_byte(text, c),
                None => pg_deploy_core::position::skip_blank(sql, s.start),
            }
        });
        ChangeFailure {
            error,
            statement,
            at,
            retries: 0,
        }
    })
}

/// Runs a change's verify query: its first column of its first row must be true.
pub fn run_verify(client: &mut SpiClient<'_>, verify: &str) -> Result<(), PgError> {
    let got: Result<Option<bool>, PgError> = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let table = client.update(verify, Some(1), &[]).map_err(spi_failure)?;
        if table.is_empty() {
            return Ok(None);
        }
        table.first().get::<bool>(1).map_err(|_| {
            pg_error(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                "verify: the first column of the verify query is not a boolean",
            )
        })
    }))
    .catch_others(|caught| {
        let mut e = from_caught(caught);
        e.message = format!("verify: {}", e.message);
        Err(e)
    })
    .execute();
    match got? {
        Some(true) => Ok(()),
        other => Err(PgError {
            sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION),
            message: format!(
                "verify returned {}",
                other.map_or("NULL or no row".to_string(), |b| b.to_string())
            ),
            detail: Some(format!("Verify: {}", verify.trim())),
            hint: Some("The verify query must return true in its first column once the change has run.".into()),
        }),
    }
}

/// The table (oid) and mode the statement `index` of `work` locks, when the
/// table exists.
fn lock_target(
    client: &mut SpiClient<'_>,
    work: &ChangeWork<'_>,
    settings: &RunSettings,
    index: usize,
) -> Option<(u32, &'static str)> {
    let (table, mode) = work.statements.get(index)?.lock.as_ref()?;
    let schemas = crate::catalog::schemas_of(client, &settings.search_path).ok()?;
    use pg_deploy_core::hazards::Catalog;
    let facts = crate::catalog::SpiCatalog::new(client, schemas).table(table)?;
    Some((facts.oid, mode))
}

/// How the error of a table found locked (without queueing) begins.
const BUSY: &str = "table is busy";

/// Takes `mode` on `table` now if no other session holds a conflicting lock.
/// Otherwise, when a conflicting holder's transaction has already run longer
/// than LONG_HOLDER_MS (queueing behind it would stall the application's
/// queries behind us), fails at once with 55P03, outside the lock queue; the
/// caller waits for it to go. Short holders (a busy table's own traffic) are
/// queued behind as usual, for lock_timeout at most. A table that does not
/// exist (yet) is left to the statement.
pub(crate) fn lock_unless_held_long(
    client: &mut SpiClient<'_>,
    table: &ObjectName,
    mode: &str,
    settings: &RunSettings,
) -> Result<(), PgError> {
    let Some(lockmode) = lock_mode(mode) else {
        return Ok(());
    };
    let oid = relation_oid(table);
    if oid == pg_sys::InvalidOid {
        return Ok(());
    }
    // SAFETY: a relation lock in the current (sub)transaction, released by it.
    if unsafe { pg_sys::ConditionalLockRelationOid(oid, lockmode) } {
        return Ok(());
    }
    let long = long_holders(client, u32::from(oid), mode, settings);
    if long.is_empty() {
        return Ok(());
    }
    Err(PgError {
        sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE),
        message: format!(
            "{BUSY}: {} on {table} conflicts with {mode}, in a long-running transaction",
            long.join(", ")
        ),
        detail: None,
        hint: None,
    })
}

/// An application's own transactions end well within this; a holder older
/// than it (or than lock_timeout, if shorter) is waited for outside the queue.
const LONG_HOLDER_MS: f64 = 100.0;

/// Other sessions holding a lock on `oid` that conflicts with `mode`, whose
/// transaction began more than LONG_HOLDER_MS (or lock_timeout, if shorter)
/// ago ("pid N (Mode)"). A holder whose start the caller may not see (another
/// role's session without pg_read_all_stats) is not counted: it is queued
/// behind, as before.
fn long_holders(client: &mut SpiClient<'_>, oid: u32, mode: &str, settings: &RunSettings) -> Vec<String> {
    let older_than_ms = pg_deploy_core::manifest::duration_ms(&settings.lock_timeout)
        .unwrap_or(0.0)
        .min(LONG_HOLDER_MS);
    // pg_stat_activity is read once per transaction and kept; we need it now.
    // SAFETY: drops this backend's cached statistics snapshot, nothing else.
    unsafe { pg_sys::pgstat_clear_snapshot() };
    client
        .update(
            "SELECT l.pid, l.mode FROM pg_catalog.pg_locks l
               JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'relation' AND l.relation = $1::pg_catalog.oid AND l.granted
                AND l.pid <> pg_catalog.pg_backend_pid()
                AND a.xact_start < pg_catalog.clock_timestamp() - $2::float8 * interval '1 ms'",
            None,
            &[i64::from(oid).into(), older_than_ms.into()],
        )
        .map(|rows| {
            rows.filter_map(|r| {
                let pid = r.get::<i32>(1).ok().flatten()?;
                let held = r.get::<String>(2).ok().flatten()?;
                pg_deploy_core::retry::lock_conflicts(mode, &held).then(|| format!("pid {pid} ({held})"))
            })
            .collect()
        })
        .unwrap_or_default()
}

/// The lock mode PostgreSQL names `name` (as pg_locks shows it).
fn lock_mode(name: &str) -> Option<pg_sys::LOCKMODE> {
    let index = pg_deploy_core::retry::LOCK_MODES.iter().position(|m| *m == name)?;
    pg_sys::LOCKMODE::try_from(index + 1).ok()
}

/// The relation `name` resolves to under the current search_path, or InvalidOid.
fn relation_oid(name: &ObjectName) -> pg_sys::Oid {
    let (Ok(rel), schema) = (
        std::ffi::CString::new(name.name.as_str()),
        name.schema.as_deref().map(std::ffi::CString::new),
    ) else {
        return pg_sys::InvalidOid;
    };
    let schema = match schema {
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return pg_sys::InvalidOid,
        None => None,
    };
    // SAFETY: makeRangeVar copies nothing, so both strings are pstrdup'd into the
    // current memory context; the lookup takes no lock and returns InvalidOid
    // for a missing relation or schema (RVR_MISSING_OK).
    unsafe {
        let rv = pg_sys::makeRangeVar(
            schema.map_or(std::ptr::null_mut(), |s| pg_sys::pstrdup(s.as_ptr())),
            pg_sys::pstrdup(rel.as_ptr()),
            -1,
        );
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    }
}

/// Polls every 50 ms, for at most `ms`, until no other session holds a lock
/// on `oid` that conflicts with `mode` in a long-running transaction (see
/// long_holders); true when none is left.
fn wait_until_free(client: &mut SpiClient<'_>, oid: u32, mode: &str, settings: &RunSettings, ms: u64) -> bool {
    let until = Instant::now() + Duration::from_millis(ms);
    loop {
        if long_holders(client, oid, mode, settings).is_empty() {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        sleep_ms(left.as_millis().min(50) as u64);
    }
}

/// A number in [0, 1) from PostgreSQL's own PRNG (seeded per backend), for jitter.
fn jitter() -> f64 {
    // SAFETY: the backend's global PRNG state, used from this backend only.
    unsafe { pg_sys::pg_prng_double(std::ptr::addr_of_mut!(pg_sys::pg_global_prng_state)) }
}

/// Sleeps on the backend's latch: a cancel, a terminate or the postmaster's
/// death wakes it at once (and is acted on by CHECK_FOR_INTERRUPTS).
pub fn sleep_ms(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    loop {
        pgrx::check_for_interrupts!();
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let timeout = std::ffi::c_long::try_from(left.as_millis()).unwrap_or(std::ffi::c_long::MAX);
        // SAFETY: MyLatch is the backend's own latch; WaitLatch returns on a
        // timeout, a set latch or (exiting the process) the postmaster's death.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                timeout,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
    }
}

const TRANSACTION_CONTROL_HINT: &str = "pg_deploy runs the whole deployment in the caller's transaction: \
     remove BEGIN/COMMIT/ROLLBACK/SAVEPOINT from the change (also inside DO blocks and procedures).";

/// SPI refuses some statements with a status code instead of an error.
pub(crate) fn spi_failure(error: SpiError) -> PgError {
    let (code, message, hint) = match &error {
        SpiError::SpiError(SpiErrorCodes::Transaction) => (
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION,
            "transaction control statements cannot run inside a change".to_string(),
            Some(TRANSACTION_CONTROL_HINT),
        ),
        SpiError::SpiError(SpiErrorCodes::Copy) => (
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "COPY to or from the client cannot run inside a change".to_string(),
            Some("Load data with INSERT ... VALUES, or COPY from a server-side file."),
        ),
        other => (
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("SPI refused the statement: {other}"),
            None,
        ),
    };
    PgError {
        sqlstate: sqlstate(code),
        message,
        detail: None,
        hint: hint.map(str::to_string),
    }
}
