//! Running one change: its settings, its statements, one subtransaction.

use crate::errpos::PositionProbe;
use crate::statements::Statement;
use crate::subxact::{in_subtransaction, CaughtPgError, GucLevel};
use crate::timeout::CallerTimer;
use pg_deploy_core::Settings;
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
}

/// Runs `statements` of `sql` under `settings`, in a subtransaction inside its
/// own GUC level: on success its effects stay in the caller's transaction and
/// any settings it changed are undone; on failure nothing of it remains.
pub fn run_change(
    client: &mut SpiClient<'_>,
    sql: &str,
    statements: &[Statement],
    settings: &Settings,
) -> Result<Duration, ChangeFailure> {
    let started = Instant::now();
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
            probe
                .watch(|| client.update(text, None, &[]))
                .map_err(spi_failure)?;
        }
        Ok(())
    });
    timer.restore();
    level.restore();
    match outcome {
        Ok(()) => Ok(started.elapsed()),
        Err(mut error) => {
            if error.code == PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION
                && error.hint.is_none()
            {
                error.hint = Some(TRANSACTION_CONTROL_HINT.to_string());
            }
            let statement = current.get();
            let at = statement.map(|i| {
                let s = &statements[i];
                match probe.cursor() {
                    Some(c) => {
                        s.start + pg_deploy_core::position::cursor_to_byte(&sql[s.start..s.end], c)
                    }
                    None => pg_deploy_core::position::skip_blank(sql, s.start),
                }
            });
            Err(ChangeFailure {
                error,
                statement,
                at,
            })
        }
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
