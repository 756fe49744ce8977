//! The requests the client sends to `deploy.phase_client(project, request)`
//! and how it reads the answers (docs/online.md, "When no worker can run it:
//! the client runs it").

use crate::error::CliError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// What phase_status's `"worker"` starts with when no background worker slot
/// was free to run the phase.
pub const NO_SLOT: &str = "not started: no background worker slot is free";

/// The SQLSTATE of a lock timeout, retried up to the change's `lock_retries`.
pub const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The pause between rounds when the server's text cannot be read (the
/// extension's default).
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(100);

/// The requests, `{"do": …}`.
pub mod request {
    use super::*;

    pub fn claim() -> Value {
        json!({"do": "claim"})
    }

    pub fn next() -> Value {
        json!({"do": "next"})
    }

    pub fn run() -> Value {
        json!({"do": "run"})
    }

    pub fn cleanup() -> Value {
        json!({"do": "cleanup"})
    }

    pub fn release() -> Value {
        json!({"do": "release"})
    }

    /// A lock timeout of the online change, retried.
    pub fn retry(e: &Failure) -> Value {
        json!({"do": "retry", "sqlstate": e.sqlstate, "message": e.message})
    }

    /// The online change ran to its end.
    pub fn done(o: &Outcome) -> Value {
        json!({"do": "done", "rounds": o.rounds, "rows": o.rows, "retries": o.retries,
               "duration_ms": (o.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0})
    }

    /// The online change failed for good.
    pub fn failed(e: &Failure) -> Value {
        json!({"do": "failed", "sqlstate": e.sqlstate, "message": e.message})
    }
}

/// An error of a statement or a step: its SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Failure {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default = "unknown_state")]
    pub sqlstate: String,
    #[serde(default)]
    pub message: String,
}

fn unknown_state() -> String {
    "XX000".into()
}

impl Failure {
    pub fn new(sqlstate: &str, message: &str) -> Failure {
        Failure {
            id: None,
            sqlstate: sqlstate.into(),
            message: message.into(),
        }
    }

    /// `ERROR 23505: duplicate key …`
    pub fn text(&self) -> String {
        format!("ERROR {}: {}", self.sqlstate, self.message)
    }
}

/// How an online change went, for `{"do": "done"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub rounds: u64,
    pub rows: u64,
    pub retries: u32,
    pub duration: Duration,
}

/// The session settings of an online change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub search_path: Option<String>,
    #[serde(default)]
    pub lock_timeout: Option<String>,
    #[serde(default)]
    pub statement_timeout: Option<String>,
    #[serde(default)]
    pub lock_retries: u32,
}

impl Settings {
    /// The (setting, value) pairs to set on the session before the
    /// statement; an empty or missing value leaves the session's own.
    pub fn gucs(&self) -> Vec<(&'static str, &str)> {
        [
            ("search_path", &self.search_path),
            ("lock_timeout", &self.lock_timeout),
            ("statement_timeout", &self.statement_timeout),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().filter(|v| !v.is_empty()).map(|v| (name, v)))
        .collect()
    }
}

/// An online step to run from this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineStep {
    pub step: u32,
    pub id: String,
    pub sql: String,
    pub settings: Settings,
    /// The pause between rounds of a batched change; None: one round.
    pub repeat_pause: Option<Duration>,
    /// A statement to send first (the DROP of an INVALID index a failed build left).
    pub cleanup: Option<String>,
}

/// The answer to `{"do": "next"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing is left; the server gave the claim back.
    Finished {
        state: String,
    },
    /// A transactional step: `{"do": "run"}` runs it in the server.
    Transaction {
        step: u32,
        changes: Vec<String>,
    },
    Online(OnlineStep),
    /// An interrupted change found done already (a valid index): nothing to send.
    AlreadyDone {
        step: u32,
        id: String,
    },
    /// An interrupted change whose outcome cannot be told: recorded failed.
    Failed(Failure),
}

#[derive(Deserialize)]
struct NextAnswer {
    #[serde(default)]
    step: Option<u32>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    changes: Vec<String>,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    settings: Option<Settings>,
    #[serde(default)]
    repeat_pause: Option<String>,
    #[serde(default)]
    cleanup: Option<String>,
    #[serde(default)]
    already_done: bool,
    #[serde(default)]
    failed: Option<Failure>,
}

fn odd(what: &str, answer: &Value) -> CliError {
    CliError::Refused {
        message: format!("deploy.phase_client: the answer to {what} is not the expected one: {answer}"),
        hint: Some("The client and the extension may be of different versions.".into()),
    }
}

/// Reads the answer to `{"do": "next"}`.
pub fn read_next(answer: &Value) -> Result<Next, CliError> {
    let a: NextAnswer = serde_json::from_value(answer.clone()).map_err(|_| odd("\"next\"", answer))?;
    if let Some(f) = a.failed {
        return Ok(Next::Failed(f));
    }
    let Some(step) = a.step else {
        return Ok(Next::Finished {
            state: a.state.unwrap_or_else(|| "unknown".into()),
        });
    };
    match a.kind.as_deref() {
        Some("transaction") => Ok(Next::Transaction {
            step,
            changes: a.changes,
        }),
        Some("online") => {
            let id = a.id.unwrap_or_default();
            if a.already_done {
                return Ok(Next::AlreadyDone { step, id });
            }
            let sql = a
                .sql
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| odd("\"next\"", answer))?;
            Ok(Next::Online(OnlineStep {
                step,
                id,
                sql,
                settings: a.settings.unwrap_or_default(),
                repeat_pause: a.repeat_pause.as_deref().map(pause),
                cleanup: a.cleanup.filter(|s| !s.trim().is_empty()),
            }))
        }
        _ => Err(odd("\"next\"", answer)),
    }
}

/// `{"claimed": true|false, …}`.
pub fn claimed(answer: &Value) -> Result<bool, CliError> {
    answer
        .get("claimed")
        .and_then(Value::as_bool)
        .ok_or_else(|| odd("\"claim\"", answer))
}

/// The failure in an answer to "run" or "done" (`{"failed": {…}}`), if any.
pub fn failure_in(answer: &Value) -> Option<Failure> {
    answer
        .get("failed")
        .filter(|f| !f.is_null())
        .map(|f| serde_json::from_value(f.clone()).unwrap_or_else(|_| Failure::new("XX000", &f.to_string())))
}

/// The statement in an answer to "cleanup" (`{"sql": …}`), if any.
pub fn cleanup_sql(answer: &Value) -> Option<String> {
    answer
        .get("sql")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// A PostgreSQL duration such as "100ms", "2s", "1min" (a bare number is
/// milliseconds), as the extension reads `repeat_pause`; the default pause
/// when it cannot be read.
pub fn pause(text: &str) -> Duration {
    match pg_deploy_core::manifest::duration_ms(text) {
        Some(ms) if ms.is_finite() && ms >= 0.0 => Duration::from_millis(ms.min(86_400_000.0) as u64),
        _ => DEFAULT_PAUSE,
    }
}

/// How long to wait before lock retry `attempt` (1-based): 100 ms doubling
/// to at most 5 s, with some jitter, as the extension's worker does.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    Duration::from_millis(pg_deploy_core::retry::retry_backoff_ms(attempt, jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_what_the_server_reads() {
        assert_eq!(request::claim(), json!({"do": "claim"}));
        assert_eq!(request::next(), json!({"do": "next"}));
        assert_eq!(request::run(), json!({"do": "run"}));
        assert_eq!(request::cleanup(), json!({"do": "cleanup"}));
        assert_eq!(request::release(), json!({"do": "release"}));
        let lock = Failure::new("55P03", "canceling statement due to lock timeout");
        assert_eq!(
            request::retry(&lock),
            json!({"do": "retry", "sqlstate": "55P03", "message": "canceling statement due to lock timeout"})
        );
        assert_eq!(
            request::failed(&lock),
            json!({"do": "failed", "sqlstate": "55P03", "message": "canceling statement due to lock timeout"})
        );
        let o = Outcome {
            rounds: 12,
            rows: 11000,
            retries: 2,
            duration: Duration::from_micros(1_234_567),
        };
        assert_eq!(
            request::done(&o),
            json!({"do": "done", "rounds": 12, "rows": 11000, "retries": 2, "duration_ms": 1234.567})
        );
    }

    #[test]
    fn reads_each_kind_of_next() {
        assert_eq!(
            read_next(&json!({"step": null, "state": "done"})).expect("read"),
            Next::Finished { state: "done".into() }
        );
        assert_eq!(
            read_next(&json!({"step": 2, "kind": "transaction", "changes": ["3_a", "4_b"]})).expect("read"),
            Next::Transaction {
                step: 2,
                changes: vec!["3_a".into(), "4_b".into()]
            }
        );
        let online = json!({"step": 1, "kind": "online", "id": "2_idx",
            "sql": "CREATE INDEX CONCURRENTLY i ON t (a)",
            "settings": {"search_path": "app, public", "lock_timeout": "1s", "statement_timeout": "0",
                         "lock_retries": 3},
            "repeat_pause": null, "cleanup": "DROP INDEX CONCURRENTLY IF EXISTS public.i"});
        let Next::Online(step) = read_next(&online).expect("read") else {
            panic!("online")
        };
        assert_eq!((step.step, step.id.as_str()), (1, "2_idx"));
        assert_eq!(step.repeat_pause, None);
        assert_eq!(step.settings.lock_retries, 3);
        assert_eq!(
            step.settings.gucs(),
            vec![
                ("search_path", "app, public"),
                ("lock_timeout", "1s"),
                ("statement_timeout", "0")
            ]
        );
        assert_eq!(
            step.cleanup.as_deref(),
            Some("DROP INDEX CONCURRENTLY IF EXISTS public.i")
        );
        let mut batched = online.clone();
        batched["repeat_pause"] = json!("2s");
        batched["cleanup"] = json!(null);
        batched["settings"] = json!({"search_path": "", "lock_retries": 0});
        let Next::Online(step) = read_next(&batched).expect("read") else {
            panic!("online")
        };
        assert_eq!(step.repeat_pause, Some(Duration::from_secs(2)));
        assert_eq!(step.cleanup, None);
        assert!(step.settings.gucs().is_empty(), "empty values are left alone");
        assert_eq!(
            read_next(&json!({"step": 1, "kind": "online", "id": "2_idx", "already_done": true})).expect("read"),
            Next::AlreadyDone {
                step: 1,
                id: "2_idx".into()
            }
        );
        assert_eq!(
            read_next(&json!({"failed": {"id": "2_x", "sqlstate": "55000", "message": "cannot be told"}}))
                .expect("read"),
            Next::Failed(Failure {
                id: Some("2_x".into()),
                sqlstate: "55000".into(),
                message: "cannot be told".into()
            })
        );
    }

    #[test]
    fn odd_answers_are_refused_not_guessed() {
        for odd in [
            json!({"step": 1, "kind": "mystery"}),
            json!({"step": 1, "kind": "online", "id": "x"}),
            json!({"step": 1, "kind": "online", "id": "x", "sql": "  "}),
            json!({"step": "one"}),
            json!([1, 2]),
        ] {
            let e = read_next(&odd).expect_err("odd");
            assert_eq!(e.exit_code(), 1, "{odd}");
            assert!(e.to_string().contains("not the expected one"), "{e}");
        }
        assert!(claimed(&json!({"claimed": true, "deployment_id": 3})).expect("read"));
        assert!(!claimed(&json!({"claimed": false, "state": "running"})).expect("read"));
        assert!(claimed(&json!({"state": "none"})).is_err());
    }

    #[test]
    fn failures_and_cleanups_in_answers() {
        assert_eq!(failure_in(&json!({"done": true})), None);
        assert_eq!(failure_in(&json!({"recorded": "done", "failed": null})), None);
        let f = failure_in(&json!({"failed": {"id": "a", "sqlstate": "23514", "message": "verify returned false"}}))
            .expect("failed");
        assert_eq!(f.text(), "ERROR 23514: verify returned false");
        let f = failure_in(&json!({"failed": "broken"})).expect("failed");
        assert_eq!(f.sqlstate, "XX000");
        let f = failure_in(&json!({"failed": {"message": "m"}})).expect("failed");
        assert_eq!(f.sqlstate, "XX000");
        assert_eq!(cleanup_sql(&json!({"sql": null})), None);
        assert_eq!(cleanup_sql(&json!({})), None);
        assert_eq!(
            cleanup_sql(&json!({"sql": "DROP INDEX CONCURRENTLY IF EXISTS s.i"})).as_deref(),
            Some("DROP INDEX CONCURRENTLY IF EXISTS s.i")
        );
    }

    #[test]
    fn repeat_pauses_are_postgres_durations() {
        let ms = |t: &str| pause(t).as_millis();
        assert_eq!(
            [
                ms("100ms"),
                ms("2s"),
                ms("1min"),
                ms("250"),
                ms(" 20 ms"),
                ms("1.5s"),
                ms("0")
            ],
            [100, 2000, 60_000, 250, 20, 1500, 0]
        );
        assert_eq!(pause("soon"), DEFAULT_PAUSE, "unreadable: the extension's default");
        assert_eq!(pause(""), DEFAULT_PAUSE);
        assert_eq!(pause("-1s"), DEFAULT_PAUSE);
        assert_eq!(pause("99999999h"), Duration::from_secs(86_400), "capped at a day");
    }

    #[test]
    fn lock_retries_back_off() {
        let ms = |n: u32| backoff(n, 0.999_999).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(7), ms(8), ms(30)],
            [99, 199, 399, 4999, 4999, 4999]
        );
        assert_eq!(backoff(1, 0.0), Duration::from_millis(50));
    }
}
