//! Running one change: its settings, its statements, one subtransaction.

use crate::analyze::RunSettings;
use crate::errpos::PositionProbe;
use crate::statements::Statement;
use crate::subxact::{in_subtransaction, CaughtPgError, GucLevel};
use crate::timeout::CallerTimer;
use pg_deploy_core::hazards::retry_backoff_ms;
use pgrx::spi::{SpiClient, SpiError, SpiErrorCodes};
use pgrx::PgSqlErrorCode;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Why a change failed and where: `statement` is the index of the statement
/// that failed (None when applying its settings failed), `at` the byte offset
/// in the change's SQL the error points to.
#[derive(Debug, Clone)]
pub struct ChangeFailure {
    pub error: CaughtPgError,
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
    change_id: &str,
    sql: &str,
    statements: &[Statement],
    settings: &RunSettings,
) -> Result<ChangeRun, ChangeFailure> {
    let started = Instant::now();
    let mut retries = 0;
    loop {
        match attempt(client, sql, statements, settings) {
            Ok(()) => {
                return Ok(ChangeRun {
                    duration: started.elapsed(),
                    retries,
                })
            }
            Err(failure)
                if failure.error.code == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
                    && retries < settings.lock_retries =>
            {
                retries += 1;
                let wait = retry_backoff_ms(retries, jitter());
                pgrx::notice!(
                    "pg_deploy: change \"{change_id}\" timed out waiting for a lock (lock_timeout {}); \
                     retry {retries} of {} in {wait} ms",
                    settings.lock_timeout,
                    settings.lock_retries
                );
                sleep_ms(wait);
            }
            Err(failure) => return Err(ChangeFailure { retries, ..failure }),
        }
    }
}

fn attempt(
    client: &mut SpiClient<'_>,
    sql: &str,
    statements: &[Statement],
    settings: &RunSettings,
) -> Result<(), ChangeFailure> {
    let level = GucLevel::open();
    let timer = CallerTimer::save();
    let current = Cell::new(None::<usize>);
    let mut probe = PositionProbe::new();
    let outcome = in_subtransaction(|| {
        for (name, value) in settings.gucs() {
            client
                .update(
                    "SELECT pg_catalog.set_config($1, $2, true)",
                    None,
                    &[name.into(), value.into()],
                )
                .map_err(spi_failure)?;
        }
        for (i, statement) in statements.iter().enumerate() {
            current.set(Some(i));
            timer.arm_for_statement();
            let text = &sql[statement.start..statement.end];
            probe.watch(|| client.update(text, None, &[])).map_err(spi_failure)?;
        }
        Ok(())
    });
    timer.restore();
    level.restore();
    outcome.map_err(|mut error| {
        if error.code == PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION && error.hint.is_none() {
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

/// A number in [0, 1) that differs between backends and calls, for jitter.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) ^ (u64::from(std::process::id()) << 32) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % 1_000_000) as f64 / 1_000_000.0
}

/// Sleeps in short steps so a cancel or terminate is honoured promptly.
fn sleep_ms(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        pgrx::check_for_interrupts!();
        let left = until
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(10));
        // SAFETY: plain sleep; interrupts are checked between steps.
        unsafe { pgrx::pg_sys::pg_usleep(left.as_micros() as std::ffi::c_long) };
    }
}

const TRANSACTION_CONTROL_HINT: &str = "pg_deploy runs the whole deployment in the caller's transaction: \
     remove BEGIN/COMMIT/ROLLBACK/SAVEPOINT from the change (also inside DO blocks and procedures).";

/// SPI refuses some statements with a status code instead of an error.
fn spi_failure(error: SpiError) -> CaughtPgError {
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
    CaughtPgError {
        code,
        message,
        detail: None,
        hint: hint.map(str::to_string),
    }
}
