//! What can go wrong, and the exit code each maps to (docs/cli.md#exit-codes).

/// Exit codes: 0 success; these for the rest.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_CANNOT_CONNECT: i32 = 3;

/// An error reported by PostgreSQL (or raised by pg_deploy inside it): the
/// same type the extension and the core use.
pub use pg_deploy_core::error::PgError as ServerError;

/// `\n<LABEL>: <text>` when there is a text, else nothing.
fn line(label: &str, text: &Option<String>) -> String {
    text.as_ref().map_or_else(String::new, |t| format!("\n{label}: {t}"))
}

/// The problems a message lists: the lines of an earlier [`CliError::all_inputs`]
/// report (so reports gathered file by file stay one flat list), or itself.
fn problem_lines(message: &str) -> Vec<String> {
    let mut lines = message.lines();
    let head = lines.next().unwrap_or_default();
    let combined = head
        .strip_suffix(" problems:")
        .is_some_and(|n| n.parse::<usize>().is_ok());
    if !combined {
        return vec![message.to_string()];
    }
    lines.map(|l| l.strip_prefix("  ").unwrap_or(l).to_string()).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Bad input found locally: unreadable folder or file, unknown layout,
    /// duplicate versions, a manifest that does not validate. Exit 2.
    #[error("bad input: {message}{}", line("HINT", .hint))]
    Input { message: String, hint: Option<String> },
    /// The database refused: a change failed, apply was refused, or the state
    /// of the database does not allow what was asked. Exit 1.
    #[error("{context} failed: {error}")]
    Server { context: String, error: ServerError },
    /// Something refused that is not a server error (e.g. a dirty golang-migrate history). Exit 1.
    #[error("refused: {message}{}", line("HINT", .hint))]
    Refused { message: String, hint: Option<String> },
    /// No connection could be made within `--connect-retry`, or it was lost. Exit 3.
    #[error("cannot connect: {message}{}", line("HINT", .hint))]
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

    /// Several bad-input errors as one, so a run reports every offending
    /// file at once; each distinct hint once. None for an empty list.
    pub fn all_inputs(errors: Vec<CliError>) -> Option<CliError> {
        if errors.len() <= 1 {
            return errors.into_iter().next();
        }
        let (mut messages, mut hints) = (Vec::new(), Vec::<String>::new());
        for e in &errors {
            if let CliError::Input { message, hint } = e {
                messages.extend(problem_lines(message));
                if let Some(h) = hint.as_ref().filter(|h| !hints.contains(h)) {
                    hints.push(h.clone());
                }
            }
        }
        Some(CliError::Input {
            message: format!("{} problems:\n  {}", messages.len(), messages.join("\n  ")),
            hint: (!hints.is_empty()).then(|| hints.join("\n")),
        })
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
        let bare = CliError::Server {
            context: "status".into(),
            error: ServerError {
                sqlstate: "3F000".into(),
                message: "schema \"deploy\" does not exist".into(),
                detail: None,
                hint: None,
            },
        };
        assert_eq!(
            bare.to_string(),
            "status failed: ERROR 3F000: schema \"deploy\" does not exist"
        );
    }

    #[test]
    fn several_inputs_become_one_error() {
        assert_eq!(CliError::all_inputs(Vec::new()), None);
        assert_eq!(
            CliError::all_inputs(vec![CliError::input("x")]),
            Some(CliError::input("x"))
        );
        let e = CliError::all_inputs(vec![
            CliError::input_hint("a.sql: bad", "split it"),
            CliError::input_hint("b.sql: bad", "split it"),
            CliError::input("c.sql: worse"),
        ])
        .expect("one");
        assert_eq!(
            e.to_string(),
            "bad input: 3 problems:\n  a.sql: bad\n  b.sql: bad\n  c.sql: worse\nHINT: split it"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn local_errors_keep_their_prefix_and_hint() {
        assert_eq!(CliError::input("x").to_string(), "bad input: x");
        assert_eq!(CliError::input_hint("x", "y").to_string(), "bad input: x\nHINT: y");
        let refused = CliError::Refused {
            message: "dirty".into(),
            hint: Some("repair".into()),
        };
        assert_eq!(refused.to_string(), "refused: dirty\nHINT: repair");
        let connect = CliError::Connect {
            message: "down".into(),
            hint: None,
        };
        assert_eq!(connect.to_string(), "cannot connect: down");
    }
}
