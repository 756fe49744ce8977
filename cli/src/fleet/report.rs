//! The fleet report: one row per target (what happened, version before and
//! after, changes, duration, the error with its SQLSTATE), as a table or as
//! JSON with the same rows, and the exit code it means.

use crate::error::{CliError, EXIT_CANNOT_CONNECT, EXIT_FAILED};
use crate::output::table;
use serde::Serialize;
use serde_json::{json, Value};

/// What happened on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// apply ran changes.
    Applied,
    /// apply found nothing to do (or plan: nothing would change).
    NoOp,
    /// plan: apply would run changes.
    WouldApply,
    /// The target failed: connection, refusal, a failed change.
    Failed,
    /// The per-target timeout passed (the deployment was cancelled and rolled back).
    TimedOut,
    /// Not run: the canary failed, or a failure stopped the rollout.
    Skipped,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::NoOp => "no-op",
            Outcome::WouldApply => "would apply",
            Outcome::Failed => "FAILED",
            Outcome::TimedOut => "TIMED OUT",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn failed(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::TimedOut)
    }
}

/// One target's line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub target: String,
    /// "canary" or "rollout".
    pub stage: &'static str,
    pub outcome: Outcome,
    pub version_before: Option<String>,
    pub version_after: Option<String>,
    /// Changes run (apply) or that would run (plan).
    pub changes: Option<usize>,
    pub duration_ms: f64,
    pub sqlstate: Option<String>,
    /// One line: why it failed or was skipped.
    pub error: Option<String>,
    /// The exit code this target alone would have had.
    pub exit_code: i32,
}

impl Row {
    pub fn new(target: &str, stage: &'static str, outcome: Outcome) -> Row {
        Row {
            target: target.to_string(),
            stage,
            outcome,
            version_before: None,
            version_after: None,
            changes: None,
            duration_ms: 0.0,
            sqlstate: None,
            error: None,
            exit_code: 0,
        }
    }

    /// A failed target: the error on one line, with its SQLSTATE.
    pub fn failed(target: &str, stage: &'static str, e: &CliError) -> Row {
        let mut r = Row::new(target, stage, Outcome::Failed);
        r.sqlstate = sqlstate_of(e);
        r.error = Some(one_line(&e.to_string()));
        r.exit_code = e.exit_code();
        r
    }
}

/// The SQLSTATE of an error: the server's, or the one a connection error quotes (28P01, 3D000).
pub fn sqlstate_of(e: &CliError) -> Option<String> {
    match e {
        CliError::Server { error, .. } => Some(error.sqlstate.clone()),
        CliError::Connect { message, .. } => {
            let at = message.find("ERROR ")? + 6;
            let code: String = message[at..].chars().take(5).collect();
            (code.len() == 5 && code.chars().all(|c| c.is_ascii_alphanumeric())).then_some(code)
        }
        _ => None,
    }
}

/// The first line of a message (DETAIL and HINT lines are for one database, not a table).
pub fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// Counts of the rows by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub targets: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
}

pub fn summary(rows: &[Row]) -> Summary {
    let mut s = Summary {
        targets: rows.len(),
        ..Summary::default()
    };
    for r in rows {
        match r.outcome {
            o if o.failed() => s.failed += 1,
            Outcome::Skipped => s.skipped += 1,
            _ => s.succeeded += 1,
        }
    }
    s
}

/// The exit code of the whole run: 0 when no target failed; 3 when every
/// failure was a connection that could not be made; else 1.
pub fn exit_code(rows: &[Row]) -> i32 {
    let failed: Vec<&Row> = rows.iter().filter(|r| r.outcome.failed()).collect();
    if failed.is_empty() {
        0
    } else if failed.iter().all(|r| r.exit_code == EXIT_CANNOT_CONNECT) {
        EXIT_CANNOT_CONNECT
    } else {
        EXIT_FAILED
    }
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// The text report: a table, then a line of counts.
pub fn text(command: &str, rows: &[Row]) -> String {
    let header = [
        "TARGET", "STAGE", "OUTCOME", "VERSION", "CHANGES", "MS", "SQLSTATE", "ERROR",
    ];
    let body = rows
        .iter()
        .map(|r| {
            let version = match (&r.version_before, &r.version_after) {
                (b, a) if b == a => or_dash(a),
                (b, a) => format!("{} -> {}", or_dash(b), or_dash(a)),
            };
            vec![
                r.target.clone(),
                r.stage.to_string(),
                r.outcome.word().to_string(),
                version,
                r.changes.map_or_else(|| "-".into(), |c| c.to_string()),
                if r.outcome == Outcome::Skipped {
                    "-".into()
                } else {
                    format!("{:.0}", r.duration_ms)
                },
                or_dash(&r.sqlstate),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let s = summary(rows);
    format!(
        "{}{command}: {} target(s): {} succeeded, {} failed, {} skipped\n",
        table(Some(&header), body, ""),
        s.targets,
        s.succeeded,
        s.failed,
        s.skipped
    )
}

/// The JSON report: the same rows, the counts and the exit code. Reports of
/// several runs (shards) merge by concatenating their `rows`.
pub fn json(command: &str, project: Option<&str>, version: Option<&str>, rows: &[Row]) -> Value {
    json!({
        "command": command,
        "project": project,
        "version": version,
        "summary": summary(rows),
        "rows": rows,
        "exit_code": exit_code(rows),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServerError;

    fn server(code: &str) -> CliError {
        CliError::Server {
            context: "apply".into(),
            error: ServerError {
                sqlstate: code.into(),
                message: "change \"3_check\" failed".into(),
                detail: Some("Statement 1 of 1".into()),
                hint: None,
            },
        }
    }

    fn connect_error(m: &str) -> CliError {
        CliError::Connect {
            message: m.into(),
            hint: Some("h".into()),
        }
    }

    #[test]
    fn errors_become_one_line_rows_with_their_sqlstate() {
        let r = Row::failed("h:1/a", "rollout", &server("23514"));
        assert_eq!(r.sqlstate.as_deref(), Some("23514"));
        assert_eq!(
            r.error.as_deref(),
            Some("apply failed: ERROR 23514: change \"3_check\" failed")
        );
        assert_eq!(r.exit_code, 1);
        let r = Row::failed(
            "h:1/a",
            "rollout",
            &connect_error(
                "server h:1 (database a, user u): ERROR 28P01: password authentication failed for user \"u\"",
            ),
        );
        assert_eq!(r.sqlstate.as_deref(), Some("28P01"));
        assert_eq!(r.exit_code, 3);
        assert_eq!(sqlstate_of(&connect_error("refused, still after 0s")), None);
        assert_eq!(sqlstate_of(&CliError::input("x")), None);
    }

    #[test]
    fn exit_codes_follow_the_worst_failure() {
        let ok = Row::new("a", "rollout", Outcome::Applied);
        let skipped = Row::new("b", "rollout", Outcome::Skipped);
        let down = Row::failed("c", "rollout", &connect_error("down"));
        let refused = Row::failed("d", "rollout", &server("55000"));
        assert_eq!(exit_code(&[ok.clone(), skipped.clone()]), 0);
        assert_eq!(exit_code(&[ok.clone(), down.clone()]), 3);
        assert_eq!(exit_code(&[down.clone(), refused.clone(), ok.clone()]), 1);
        let mut timed_out = Row::new("e", "rollout", Outcome::TimedOut);
        timed_out.exit_code = 1;
        assert_eq!(exit_code(&[timed_out]), 1);
        assert_eq!(
            summary(&[ok, skipped, down, refused]),
            Summary {
                targets: 4,
                succeeded: 1,
                failed: 2,
                skipped: 1
            }
        );
    }

    #[test]
    fn table_and_json_carry_the_same_rows() {
        let mut a = Row::new("h:5432/a", "canary", Outcome::Applied);
        a.version_before = Some("0.1.0".into());
        a.version_after = Some("0.2.0".into());
        a.changes = Some(2);
        a.duration_ms = 12.4;
        let mut b = Row::failed("h:5432/b", "rollout", &server("23514"));
        b.version_before = Some("0.1.0".into());
        b.version_after = Some("0.1.0".into());
        b.duration_ms = 8.0;
        let mut c = Row::new("h:5432/c", "rollout", Outcome::Skipped);
        c.error = Some("not run: the canary failed".into());
        let rows = vec![a, b, c];
        let t = text("apply", &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "TARGET    STAGE    OUTCOME  VERSION         CHANGES  MS  SQLSTATE  ERROR"
        );
        assert_eq!(lines[1], "h:5432/a  canary   applied  0.1.0 -> 0.2.0  2        12  -");
        assert_eq!(
            lines[2],
            "h:5432/b  rollout  FAILED   0.1.0           -        8   23514     apply failed: ERROR 23514: change \"3_check\" failed"
        );
        assert_eq!(
            lines[3],
            "h:5432/c  rollout  skipped  -               -        -   -         not run: the canary failed"
        );
        assert_eq!(lines[4], "apply: 3 target(s): 1 succeeded, 1 failed, 1 skipped");
        let j = json("apply", Some("shop"), Some("0.2.0"), &rows);
        assert_eq!(j["exit_code"], 1);
        assert_eq!(j["summary"]["failed"], 1);
        assert_eq!(j["rows"][1]["sqlstate"], "23514");
        assert_eq!(j["rows"][1]["outcome"], "failed");
        assert_eq!(j["rows"][0]["outcome"], "applied");
        assert_eq!(j["rows"][2]["outcome"], "skipped");
        assert_eq!(j["rows"][0]["version_after"], "0.2.0");
    }
}
