//! The client running a phase, against a scripted session: what it sends,
//! in what order, and how it reads what comes back.

use super::*;
use crate::error::ServerError;
use crate::phase::tests::{running, status};
use serde_json::json;
use std::collections::{HashMap, VecDeque};

struct Fake {
    /// Answers to phase_client calls, in order.
    answers: VecDeque<Result<Value, CliError>>,
    /// Results of the statements sent, in order (Ok(0) when none is left).
    results: VecDeque<Result<u64, CliError>>,
    settings: HashMap<String, String>,
    /// Another backend answers the settings (a transaction-mode pooler).
    pooled: bool,
    /// How many "release" calls other backends answer first.
    foreign_releases: usize,
    /// Which set_config calls (in order) another backend answers.
    foreign_sets: VecDeque<bool>,
    log: Vec<String>,
    start: Instant,
    elapsed: Duration,
}

const PID: i32 = 4242;

impl Fake {
    fn new(answers: Vec<Value>) -> Fake {
        Fake {
            answers: answers.into_iter().map(Ok).collect(),
            results: VecDeque::new(),
            settings: [
                ("search_path", "\"$user\", public"),
                ("lock_timeout", "0"),
                ("statement_timeout", "0"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            pooled: false,
            foreign_releases: 0,
            foreign_sets: VecDeque::new(),
            log: Vec::new(),
            start: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }

    fn results(mut self, results: Vec<Result<u64, CliError>>) -> Fake {
        self.results = results.into();
        self
    }

    fn run(&mut self, out_of_time_after: usize) -> (Result<Ran, CliError>, Vec<String>) {
        let mut said = Vec::new();
        let mut checks = 0;
        let result = run_phase(
            self,
            "shop #7",
            &mut || {
                checks += 1;
                checks > out_of_time_after
            },
            &mut |line| said.push(line.to_string()),
        );
        (result, said)
    }
}

impl Session for Fake {
    fn call(&mut self, request: &Value) -> Result<(Value, i32), CliError> {
        let what = request["do"].as_str().unwrap_or("?");
        let mut entry = format!("call {what}");
        if let Some(obj) = request.as_object() {
            for (k, v) in obj.iter().filter(|(k, _)| *k != "do") {
                entry.push_str(&format!(" {k}={v}"));
            }
        }
        self.log.push(entry);
        let answer = if what == "release" {
            if self.foreign_releases > 0 {
                self.foreign_releases -= 1;
                return Ok((json!({"released": true}), PID + 1));
            }
            Ok(json!({"released": true}))
        } else {
            self.answers
                .pop_front()
                .unwrap_or_else(|| Ok(json!({"step": null, "state": "done"})))
        };
        answer.map(|a| (a, PID))
    }

    fn setting(&mut self, name: &str, pid: i32) -> Result<Option<String>, CliError> {
        assert_eq!(pid, PID);
        Ok((!self.pooled).then(|| self.settings.get(name).cloned().unwrap_or_default()))
    }

    fn set(&mut self, name: &str, value: &str, pid: i32) -> Result<bool, CliError> {
        assert_eq!(pid, PID);
        if self.pooled || self.foreign_sets.pop_front() == Some(true) {
            self.log.push(format!("set {name} elsewhere"));
            return Ok(false);
        }
        self.log.push(format!("set {name}={value}"));
        self.settings.insert(name.into(), value.into());
        Ok(true)
    }

    fn execute(&mut self, sql: &str) -> Result<u64, CliError> {
        self.log.push(format!("exec {sql}"));
        self.results.pop_front().unwrap_or(Ok(0))
    }

    fn sleep(&mut self, d: Duration) {
        self.log.push(format!("sleep {}ms", d.as_millis()));
        self.elapsed += d;
    }

    fn now(&self) -> Instant {
        self.start + self.elapsed
    }
}

fn server(code: &str, message: &str) -> CliError {
    CliError::Server {
        context: "x".into(),
        error: ServerError {
            sqlstate: code.into(),
            message: message.into(),
            detail: None,
            hint: None,
        },
    }
}

const CIC: &str = "CREATE INDEX CONCURRENTLY users_email_idx ON users (email)";

fn claim() -> Value {
    json!({"claimed": true, "deployment_id": 7, "state": "pending"})
}

fn online(repeat_pause: Option<&str>, cleanup: Option<&str>) -> Value {
    json!({"step": 1, "kind": "online", "id": "2_idx", "sql": CIC,
           "settings": {"search_path": "app, public", "lock_timeout": "1s", "statement_timeout": "0",
                        "lock_retries": 2},
           "repeat_pause": repeat_pause, "cleanup": cleanup})
}

fn lock_timeout() -> CliError {
    server("55P03", "canceling statement due to lock timeout")
}

#[test]
fn decides_to_run_only_without_a_free_slot() {
    let no_slot = "not started: no background worker slot is free (max_worker_processes); the phase waits";
    let with = |state: &str, worker: Option<&str>, id: i64| {
        let mut v = running();
        v["state"] = json!(state);
        v["worker"] = json!(worker);
        v["deployment_id"] = json!(id);
        status(v)
    };
    assert!(wanted(&with("pending", Some(no_slot), 7), Some(7)));
    assert!(wanted(&with("running", Some(no_slot), 7), Some(7)), "its runner died");
    assert!(wanted(&with("pending", Some(no_slot), 7), None), "pg-deploy wait");
    assert!(
        !wanted(&with("pending", Some(no_slot), 8), Some(7)),
        "a later deployment's"
    );
    assert!(!wanted(&with("pending", Some("started"), 7), Some(7)));
    assert!(!wanted(&with("running", Some("running (pid 42)"), 7), Some(7)));
    assert!(!wanted(
        &with("pending", Some("not started: this server is a standby"), 7),
        Some(7)
    ));
    assert!(!wanted(&with("pending", None, 7), Some(7)));
    assert!(!wanted(&with("done", Some(no_slot), 7), Some(7)));
    assert!(!wanted(&with("failed", Some(no_slot), 7), Some(7)));
}

#[test]
fn here_runs_once_per_pause_and_stops_after_a_refusal() {
    let mut v = running();
    v["state"] = json!("pending");
    v["worker"] = json!("not started: no background worker slot is free (max_worker_processes)");
    let stuck = status(v);
    let mut off = Here::new(false);
    assert!(!off.wants(&stuck, Some(7)), "--no-run-here");
    let mut here = Here::new(true);
    assert!(here.wants(&stuck, Some(7)));
    let mut quiet = |_: &str| {};
    let mut warned = Vec::new();
    let mut s = Fake::new(vec![claim(), json!({"step": null, "state": "pending"})]);
    let ran = here.run(&stuck, &mut s, &mut || false, &mut quiet, &mut |n| {
        warned.push(n.to_string())
    });
    assert!(ran.expect("ran"), "poll again at once");
    assert!(!here.wants(&stuck, Some(7)), "still unfinished: a pause first");
    assert!(here.wants(&stuck, Some(7)), "then again");
    let mut s = Fake::new(vec![json!({"claimed": false, "state": "running"})]);
    let ran = here.run(&stuck, &mut s, &mut || false, &mut quiet, &mut |n| {
        warned.push(n.to_string())
    });
    assert!(!ran.expect("ran"), "taken: the usual pause");
    assert!(here.wants(&stuck, Some(7)));
    let mut s = Fake::new(vec![]);
    s.answers.push_back(Err(server(
        "42883",
        "function deploy.phase_client(unknown, jsonb) does not exist",
    )));
    let ran = here.run(&stuck, &mut s, &mut || false, &mut quiet, &mut |n| {
        warned.push(n.to_string())
    });
    assert!(!ran.expect("ran"));
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("ERROR 42883"), "{warned:?}");
    assert!(!here.wants(&stuck, Some(7)), "not tried again");
    assert!(!here.wants(&stuck, Some(7)));
    let lost = CliError::Connect {
        message: "connection closed".into(),
        hint: None,
    };
    assert_eq!(
        lost_note(&lost),
        "the connection ended while this client ran the phase (connection closed); connecting again: the server \
         finds what was left running, and the phase goes on"
    );
}

#[test]
fn runs_an_online_step_then_a_transactional_one() {
    let mut s = Fake::new(vec![
        claim(),
        online(None, None),
        json!({"recorded": "done", "id": "2_idx"}),
        json!({"step": 2, "kind": "transaction", "changes": ["3_key"]}),
        json!({"step": 2, "done": true}),
        json!({"step": null, "state": "done"}),
    ]);
    let (r, said) = s.run(usize::MAX);
    assert_eq!(r.expect("ran"), Ran::Finished);
    assert_eq!(
        s.log,
        [
            "call claim",
            "call next",
            "set search_path=app, public",
            "set lock_timeout=1s",
            "set statement_timeout=0",
            &format!("exec {CIC}"),
            "call done duration_ms=0.0 retries=0 rounds=1 rows=0",
            "set statement_timeout=0",
            "set lock_timeout=0",
            "set search_path=\"$user\", public",
            "call next",
            "call run",
            "call next",
        ]
    );
    assert_eq!(
        said,
        [
            "shop #7: no background worker slot is free: this client runs the phase itself",
            "shop #7: running 2_idx (step 1, online) from this client",
            "shop #7: 2_idx done from this client (0ms)",
            "shop #7: running step 2 (transaction: 3_key) from this client",
            "shop #7: step 2 (transaction) done from this client",
        ]
    );
    assert_eq!(s.settings["lock_timeout"], "0", "settings back as they were");
}

#[test]
fn a_batched_change_repeats_until_no_rows() {
    let mut s = Fake::new(vec![claim(), online(Some("2s"), None), json!({"recorded": "done"})]).results(vec![
        Ok(500),
        Ok(500),
        Ok(0),
    ]);
    let (r, said) = s.run(usize::MAX);
    assert_eq!(r.expect("ran"), Ran::Finished);
    let sent: Vec<&str> = s
        .log
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("set "))
        .collect();
    assert_eq!(
        sent,
        [
            "call claim",
            "call next",
            &format!("exec {CIC}"),
            "sleep 2000ms",
            &format!("exec {CIC}"),
            "sleep 2000ms",
            &format!("exec {CIC}"),
            "call done duration_ms=4000.0 retries=0 rounds=3 rows=1000",
            "call next",
        ][..]
    );
    assert!(
        said.contains(&"shop #7: 2_idx done from this client (3 round(s), 1000 row(s), 4s)".to_string()),
        "{said:?}"
    );
}

#[test]
fn lock_timeouts_are_retried_with_the_cleanup_first() {
    let drop = "DROP INDEX CONCURRENTLY IF EXISTS public.users_email_idx";
    let mut s = Fake::new(vec![
        claim(),
        online(None, Some(drop)),
        json!({"recorded": "retry"}),
        json!({"sql": drop}),
        json!({"recorded": "retry"}),
        json!({"sql": null}),
        json!({"recorded": "done"}),
    ])
    .results(vec![Ok(0), Err(lock_timeout()), Ok(0), Err(lock_timeout()), Ok(0)]);
    let (r, said) = s.run(usize::MAX);
    assert_eq!(r.expect("ran"), Ran::Finished);
    let sent: Vec<String> = s
        .log
        .iter()
        .filter(|l| !l.starts_with("set "))
        .map(|l| match l.split_once(" duration_ms=") {
            _ if l.starts_with("sleep") => "sleep".into(),
            // The time counts the sleeps of the backoff, with their jitter.
            Some((call, rest)) => format!("{call} {}", rest.split_once(' ').map_or("", |(_, r)| r)),
            None => l.clone(),
        })
        .collect();
    let retry = "call retry message=\"canceling statement due to lock timeout\" sqlstate=\"55P03\"";
    assert_eq!(
        sent,
        [
            "call claim",
            "call next",
            &format!("exec {drop}"),
            &format!("exec {CIC}"),
            retry,
            "call cleanup",
            "sleep",
            &format!("exec {drop}"),
            &format!("exec {CIC}"),
            retry,
            "call cleanup",
            "sleep",
            &format!("exec {CIC}"),
            "call done retries=2 rounds=1 rows=0",
            "call next",
        ]
    );
    assert!(said.iter().any(|l| l.contains("retry 1 of 2 in")), "{said:?}");
}

#[test]
fn a_failure_cleans_up_and_is_recorded() {
    let drop = "DROP INDEX CONCURRENTLY IF EXISTS public.users_email_idx";
    // Past lock_retries: the last lock timeout is the failure.
    let mut s = Fake::new(vec![
        claim(),
        online(None, None),
        json!({"recorded": "retry"}),
        json!({"sql": null}),
        json!({"recorded": "retry"}),
        json!({"sql": null}),
        json!({"sql": drop}),
        json!({"recorded": "failed"}),
        json!({"step": null, "state": "failed"}),
    ])
    .results(vec![Err(lock_timeout()), Err(lock_timeout()), Err(lock_timeout())]);
    let (r, said) = s.run(usize::MAX);
    assert_eq!(r.expect("ran"), Ran::Finished);
    let tail: Vec<&str> = s.log.iter().rev().take(8).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            &format!("exec {CIC}"),
            "call cleanup",
            &format!("exec {drop}"),
            "call failed message=\"canceling statement due to lock timeout\" sqlstate=\"55P03\"",
            "set statement_timeout=0",
            "set lock_timeout=0",
            "set search_path=\"$user\", public",
            "call next",
        ]
    );
    assert_eq!(s.log.iter().filter(|l| l.starts_with("call retry")).count(), 2);
    assert!(
        said.contains(&"shop #7: 2_idx FAILED: ERROR 55P03: canceling statement due to lock timeout".to_string()),
        "{said:?}"
    );
    // Any other error is not retried.
    let mut s = Fake::new(vec![
        claim(),
        online(None, None),
        json!({"sql": null}),
        json!({"recorded": "failed"}),
    ])
    .results(vec![Err(server("23505", "could not create unique index"))]);
    let (r, _) = s.run(usize::MAX);
    assert_eq!(r.expect("ran"), Ran::Finished);
    assert!(s.log.iter().all(|l| !l.starts_with("call retry")), "{:?}", s.log);
    assert!(s
        .log
        .contains(&"call failed message=\"could not create unique index\" sqlstate=\"23505\"".to_string()));
}

#[test]
fn another_runner_keeps_it() {
    let mut s = Fake::new(vec![json!({"claimed": false, "deployment_id": 7, "state": "running"})]);
    let (r, said) = s.run(usize::MAX);
    assert_eq!(r.expect("ran"), Ran::Taken);
    assert_eq!(s.log, ["call claim"]);
    assert!(said.is_empty());
}

#[test]
fn a_transaction_mode_pooler_cannot_run_it() {
    let mut s = Fake::new(vec![claim()]);
    s.answers.push_back(Err(server(
        "55000",
        "this session does not run the phase of project \"shop\"",
    )));
    let (r, _) = s.run(usize::MAX);
    let Ran::Cannot(note) = r.expect("ran") else {
        panic!("cannot")
    };
    assert!(
        note.starts_with("shop #7: no background worker slot is free, and this connection is pooled per transaction"),
        "{note}"
    );
    assert!(note.contains("it waits for a worker slot"), "{note}");
    assert_eq!(s.log, ["call claim", "call next", "call release"]);
    // The settings answered by another backend: nothing is set, nothing sent;
    // "release" goes again until the backend that holds the claim answers.
    let mut s = Fake::new(vec![claim(), online(None, None)]);
    s.pooled = true;
    s.foreign_releases = 2;
    let (r, _) = s.run(usize::MAX);
    assert!(matches!(r.expect("ran"), Ran::Cannot(n) if n.contains("pooled per transaction")));
    assert_eq!(
        s.log,
        [
            "call claim",
            "call next",
            "call release",
            "sleep 100ms",
            "call release",
            "sleep 100ms",
            "call release"
        ]
    );
    // Caught after the statement: the settings go back on the claim's backend.
    let mut s = Fake::new(vec![claim(), online(None, None)]);
    s.answers
        .push_back(Err(server("55000", "this session does not run the phase")));
    s.foreign_sets = [false, false, false, true, false, true, true, false].into();
    let (r, _) = s.run(usize::MAX);
    assert!(matches!(r.expect("ran"), Ran::Cannot(_)));
    assert_eq!(
        s.log[5..],
        [
            &format!("exec {CIC}"),
            "call done duration_ms=0.0 retries=0 rounds=1 rows=0",
            "set statement_timeout elsewhere",
            "sleep 100ms",
            "set statement_timeout=0",
            "set lock_timeout elsewhere",
            "sleep 100ms",
            "set lock_timeout elsewhere",
            "sleep 100ms",
            "set lock_timeout=0",
            "set search_path=\"$user\", public",
            "call release",
        ]
    );
    assert_eq!(s.settings["lock_timeout"], "0");
    let mut s = Fake::new(vec![claim()]);
    s.answers
        .push_back(Err(server("55000", "this session does not run the phase")));
    s.foreign_releases = usize::MAX;
    let (r, _) = s.run(usize::MAX);
    let Ran::Cannot(note) = r.expect("ran") else {
        panic!("cannot")
    };
    assert_eq!(
        s.log.iter().filter(|l| *l == "call release").count(),
        SAME_BACKEND_TRIES,
        "not forever"
    );
    assert!(
        note.ends_with(
            "\nThe claim could not be given back: pooled backend 4242 holds it, and no worker starts for the \
             phase until that server connection closes (SELECT pg_terminate_backend(4242) ends it)."
        ),
        "{note}"
    );
}

#[test]
fn a_lost_connection_ends_the_run_for_a_new_claim() {
    let lost = CliError::Connect {
        message: "the connection failed: connection closed".into(),
        hint: None,
    };
    let mut s = Fake::new(vec![claim(), online(None, None)]).results(vec![Err(lost)]);
    let (r, _) = s.run(usize::MAX);
    let e = r.expect_err("lost");
    assert!(crate::wait::reconnectable(&e));
    assert_eq!(
        s.log.last().map(String::as_str),
        Some(&*format!("exec {CIC}")),
        "nothing after"
    );
    let mut s = Fake::new(vec![claim()]);
    s.answers.push_back(Err(server(
        "57P01",
        "terminating connection due to administrator command",
    )));
    assert!(s.run(usize::MAX).0.is_err());
}

#[test]
fn the_phase_timeout_is_checked_between_steps() {
    let mut s = Fake::new(vec![claim()]);
    assert_eq!(s.run(0).0.expect("ran"), Ran::OutOfTime);
    assert!(s.log.is_empty(), "not even claimed");
    let mut s = Fake::new(vec![claim(), online(None, None), json!({"recorded": "done"})]);
    let (r, said) = s.run(2);
    assert_eq!(r.expect("ran"), Ran::OutOfTime);
    assert_eq!(s.log.first().map(String::as_str), Some("call claim"));
    assert_eq!(s.log.last().map(String::as_str), Some("call release"));
    assert!(
        said.last().is_some_and(|l| l.contains("--phase-timeout passed")),
        "{said:?}"
    );
}

#[test]
fn refusals_are_said_once_and_not_retried() {
    let mut s = Fake::new(vec![]);
    s.answers.push_back(Err(server(
        "42501",
        "the phase of deployment 7 was queued by role \"deployer\", and runs only as it",
    )));
    let (r, _) = s.run(usize::MAX);
    let Ran::Cannot(note) = r.expect("ran") else {
        panic!("cannot")
    };
    assert!(note.contains("the client cannot run the phase itself"), "{note}");
    assert!(note.contains("ERROR 42501"), "{note}");
    assert_eq!(s.log, ["call claim"], "nothing to give back");
    let mut s = Fake::new(vec![json!({"surprise": 1})]);
    assert!(matches!(s.run(usize::MAX).0.expect("ran"), Ran::Cannot(_)));
    let mut s = Fake::new(vec![claim(), json!({"step": 1, "kind": "sideways"})]);
    let (r, _) = s.run(usize::MAX);
    assert!(matches!(r.expect("ran"), Ran::Cannot(n) if n.contains("not the expected one")));
    assert_eq!(s.log.last().map(String::as_str), Some("call release"));
}

#[test]
fn failures_the_server_reports_end_in_its_status() {
    let mut s = Fake::new(vec![
        claim(),
        json!({"step": 1, "kind": "online", "id": "2_idx", "already_done": true}),
        online(None, None),
        json!({"failed": {"id": "2_idx", "sqlstate": "23514", "message": "verify returned false"}}),
        json!({"step": 2, "kind": "transaction", "changes": ["3_a"]}),
        json!({"step": 2, "failed": {"id": "3_a", "sqlstate": "22012", "message": "division by zero"}}),
        json!({"failed": {"id": "4_b", "sqlstate": "55000", "message": "whether it ran cannot be told"}}),
        json!({"step": null, "state": "failed"}),
    ]);
    let (r, said) = s.run(usize::MAX);
    assert_eq!(r.expect("ran"), Ran::Finished);
    assert_eq!(
        said[1..],
        [
            "shop #7: 2_idx (step 1, online) was done already, found after an interruption",
            "shop #7: running 2_idx (step 1, online) from this client",
            "shop #7: 2_idx FAILED: ERROR 23514: verify returned false",
            "shop #7: running step 2 (transaction: 3_a) from this client",
            "shop #7: step 2 FAILED: ERROR 22012: division by zero",
            "shop #7: 4_b FAILED: ERROR 55000: whether it ran cannot be told",
        ]
    );
}
