//! PostgreSQL's error codes and `pg_deploy_core::error::PgError`, the one
//! "error with a SQLSTATE" the extension, the core and the client share.

use pg_deploy_core::error::PgError;
use pgrx::PgSqlErrorCode;

/// The five characters of a SQLSTATE code (`ERRCODE_UNDEFINED_TABLE` → `42P01`).
pub fn sqlstate(code: PgSqlErrorCode) -> String {
    let packed = code as i32;
    (0..5)
        .map(|i| char::from(b'0' + ((packed >> (6 * i)) & 0x3f) as u8))
        .collect()
}

/// A SQLSTATE's five characters as PostgreSQL's code (its MAKE_SQLSTATE).
pub fn code(sqlstate: &str) -> PgSqlErrorCode {
    let bytes = sqlstate.as_bytes();
    if bytes.len() != 5 {
        return PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;
    }
    let packed = bytes.iter().enumerate().fold(0i32, |acc, (i, &c)| {
        acc | ((i32::from(c.wrapping_sub(b'0')) & 0x3f) << (6 * i))
    });
    PgSqlErrorCode::from(packed)
}

/// A PgError with PostgreSQL's `code` and `message`.
pub fn pg_error(code: PgSqlErrorCode, message: impl Into<String>) -> PgError {
    PgError::new(sqlstate(code), message)
}

/// Reading a PgError's SQLSTATE as PostgreSQL's code.
pub trait Coded {
    fn code(&self) -> PgSqlErrorCode;
    fn is(&self, code: PgSqlErrorCode) -> bool;
}

impl Coded for PgError {
    fn code(&self) -> PgSqlErrorCode {
        code(&self.sqlstate)
    }

    fn is(&self, code: PgSqlErrorCode) -> bool {
        self.sqlstate == sqlstate(code)
    }
}
