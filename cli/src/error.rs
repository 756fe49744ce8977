//! What can go wrong, and the exit code each maps to (docs/cli.md#exit-codes).

use std::fmt;

/// Exit codes: 0 success; these for the rest.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_CANNOT_CONNECT: i32 = 3;

/// An error reported by PostgreSQL (or raised by pg_deploy inside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Bad input found locally: unreadable folder or file, unknown layout,
    /// duplicate versions, a manifest that does not validate. Exit 2.
    Input { message: String, hint: Option<String> },
    /// The database refused: a change failed, apply was refused, or the state
    /// of the database does not allow what was asked. Exit 1.
    Server { context: String, error: ServerError },
    /// Something refused that is not a server error (e.g. a dirty golang-migrate history). Exit 1.
    Refused { message: String, hint: Option<String> },
    /// No connection could be made within the wait, or it was lost. Exit 3.
    Connect { message: String, hint: Option<String> },
}

impl CliError {
    pub fn input(message: impl Into<String>) -> Self {
        CliError::Input {
            message: message.into(),
            hint: None,
        }
    }

    pub fn input_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Input {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Input { .. } => EXIT_BAD_INPUT,
            CliError::Server { .. } | CliError::Refused { .. } => EXIT_FAILED,
            CliError::Connect { .. } => EXIT_CANNOT_CONNECT,
        }
    }

    /// The error as JSON, for `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            CliError::Input { message, hint } => {
                json!({"error": {"kind": "bad input", "message": message, "hint": hint}, "exit_code": self.exit_code()})
            }
            CliError::Refused { message, hint } => {
                json!({"error": {"kind": "refused", "message": message, "hint": hint}, "exit_code": self.exit_code()})
            }
            CliError::Connect { message, hint } => {
                json!({"error": {"kind": "cannot connect", "message": message, "hint": hint}, "exit_code": self.exit_code()})
            }
            CliError::Server { context, error } => json!({
                "error": {"kind": "server", "context": context, "sqlstate": error.sqlstate, "message": error.message,
                          "detail": error.detail, "hint": error.hint},
                "exit_code": self.exit_code()
            }),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (message, hint) = match self {
            CliError::Input { message, hint } => (format!("bad input: {message}"), hint.as_deref()),
            CliError::Refused { message, hint } => (format!("refused: {message}"), hint.as_deref()),
            CliError::Connect { message, hint } => (format!("cannot connect: {message}"), hint.as_deref()),
            CliError::Server { context, error } => {
                write!(f, "{context} failed: ERROR {}: {}", error.sqlstate, error.message)?;
                if let Some(detail) = &error.detail {
                    write!(f, "\nDETAIL: {detail}")?;
                }
                if let Some(hint) = &error.hint {
                    write!(f, "\nHINT: {hint}")?;
                }
                return Ok(());
            }
        };
        write!(f, "{message}")?;
        if let Some(hint) = hint {
            write!(f, "\nHINT: {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::input("x").exit_code(), 2);
        let server = CliError::Server {
            context: "apply".into(),
            error: ServerError {
                sqlstate: "42P07".into(),
                message: "m".into(),
                detail: None,
                hint: None,
            },
        };
        assert_eq!(server.exit_code(), 1);
        assert_eq!(
            CliError::Refused {
                message: "m".into(),
                hint: None
            }
            .exit_code(),
            1
        );
        assert_eq!(
            CliError::Connect {
                message: "m".into(),
                hint: None
            }
            .exit_code(),
            3
        );
    }

    #[test]
    fn server_error_shows_sqlstate_detail_and_hint() {
        let e = CliError::Server {
            context: "apply".into(),
            error: ServerError {
                sqlstate: "42703".into(),
                message: "change \"a\" failed".into(),
                detail: Some("Statement 1 of 1".into()),
                hint: Some("fix it".into()),
            },
        };
        assert_eq!(
            e.to_string(),
            "apply failed: ERROR 42703: change \"a\" failed\nDETAIL: Statement 1 of 1\nHINT: fix it"
        );
        assert_eq!(e.to_json()["error"]["sqlstate"], "42703");
    }
}
