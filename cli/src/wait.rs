//! Waiting for the steps that run after a deployment commits, by polling
//! `deploy.phase_status(project)`: one short autocommit statement every
//! 500 ms, never inside a transaction, since an open transaction or snapshot
//! on this connection would hold up a CREATE INDEX CONCURRENTLY the worker
//! runs. (deploy.wait would block in one long statement.) Each poll also lets
//! the extension restart a worker that is gone.

use crate::error::CliError;
use crate::phase::{failure, line, PhaseStatus, State};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How often the client asks.
pub const POLL: Duration = Duration::from_millis(500);

/// Time, as the loop sees it (a fake one in tests).
pub trait Clock {
    /// Time since waiting began.
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, d: Duration);
}

pub struct RealClock(Instant);

impl RealClock {
    pub fn start() -> RealClock {
        RealClock(Instant::now())
    }
}

impl Clock for RealClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// How waiting ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Done,
    Failed,
    /// The project's last deployment runs nothing after commit.
    Nothing,
    /// `--phase-timeout` passed; the steps go on in the background.
    TimedOut,
    /// A later deployment of the project (this one) took over while waiting.
    Superseded(i64),
}

/// The last status read, as the server sent it and as read.
#[derive(Debug, Clone)]
pub struct Followed {
    pub answer: Value,
    pub status: PhaseStatus,
    pub ending: Ending,
    pub waited: Duration,
}

impl Followed {
    /// The error this ending is for the user (exit 1), None when all is well.
    pub fn error(&self, timeout: Duration) -> Option<CliError> {
        let s = &self.status;
        match &self.ending {
            Ending::Done | Ending::Nothing => None,
            Ending::Failed => Some(failure(s)),
            Ending::TimedOut => Some(CliError::Refused {
                message: format!(
                    "gave up waiting after {} (--phase-timeout): {}",
                    crate::phase::elapsed_text(timeout),
                    line(s)
                ),
                hint: Some(format!(
                    "The steps go on in the background; `pg-deploy wait {}` waits for them again.",
                    s.project
                )),
            }),
            Ending::Superseded(later) => Some(CliError::Refused {
                message: format!(
                    "{}: deployment #{later} of the project took over while waiting for #{}",
                    s.project,
                    s.deployment_id.map_or_else(|| "?".into(), |d| d.to_string())
                ),
                hint: Some(format!("`pg-deploy wait {}` follows deployment #{later}.", s.project)),
            }),
        }
    }
}

/// Whether a failed poll is worth a new connection: the connection broke,
/// or the server ended the session (shutdown, restart, terminated backend).
/// The steps run in the server's worker, so waiting can go on.
pub fn reconnectable(e: &CliError) -> bool {
    match e {
        CliError::Connect { .. } => true,
        CliError::Server { error, .. } => {
            error.sqlstate.starts_with("08") || matches!(error.sqlstate.as_str(), "57P01" | "57P02" | "57P03")
        }
        _ => false,
    }
}

/// What to say when a poll lost the connection.
pub fn reconnect_note(e: &CliError) -> String {
    let why = match e {
        CliError::Server { error, .. } => format!("ERROR {}: {}", error.sqlstate, error.message),
        CliError::Connect { message, .. } | CliError::Refused { message, .. } | CliError::Input { message, .. } => {
            message.clone()
        }
    };
    format!("the connection ended while waiting ({why}); connecting again, the steps go on in the background")
}

/// Polls until the phase ends or `timeout` passes. `fetch` returns one
/// deploy.phase_status answer; `report` sees every status read, with the time
/// waited. With `deployment`, a status of another deployment ends the wait.
/// `run_here` sees every status that does not end the wait, and may run the
/// phase from the client (no worker slot free); when it says it did
/// something, the next poll comes at once.
pub fn follow(
    fetch: &mut dyn FnMut() -> Result<Value, CliError>,
    deployment: Option<i64>,
    timeout: Duration,
    clock: &mut dyn Clock,
    report: &mut dyn FnMut(&PhaseStatus, Duration),
    run_here: &mut dyn FnMut(&PhaseStatus) -> Result<bool, CliError>,
) -> Result<Followed, CliError> {
    loop {
        let answer = fetch()?;
        let status = crate::output::read("phase status", &answer, serde_json::from_value::<PhaseStatus>)?;
        let waited = clock.elapsed();
        let ending = match (deployment, status.deployment_id) {
            (Some(mine), Some(theirs)) if theirs > mine => Some(Ending::Superseded(theirs)),
            _ => match status.state {
                State::Done => Some(Ending::Done),
                State::Failed => Some(Ending::Failed),
                State::None => Some(Ending::Nothing),
                State::Pending | State::Running if waited >= timeout => Some(Ending::TimedOut),
                State::Pending | State::Running => None,
            },
        };
        // Nothing to follow, or not ours: the caller says so once, not the progress.
        if !matches!(ending, Some(Ending::Superseded(_) | Ending::Nothing)) {
            report(&status, waited);
        }
        if let Some(ending) = ending {
            return Ok(Followed {
                answer,
                status,
                ending,
                waited,
            });
        }
        if !run_here(&status)? {
            clock.sleep(POLL.min(timeout.saturating_sub(waited)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phase::tests::running;
    use serde_json::json;

    struct FakeClock {
        now: Duration,
        slept: Vec<Duration>,
    }

    impl Clock for FakeClock {
        fn elapsed(&self) -> Duration {
            self.now
        }
        fn sleep(&mut self, d: Duration) {
            self.slept.push(d);
            self.now += d;
        }
    }

    fn run(
        answers: Vec<Value>,
        deployment: Option<i64>,
        timeout: Duration,
    ) -> (Result<Followed, CliError>, Vec<String>, FakeClock) {
        let mut answers = answers.into_iter();
        let mut last = None;
        let mut fetch = || {
            let a = answers
                .next()
                .or_else(|| last.clone())
                .ok_or_else(|| CliError::input("no answer"))?;
            last = Some(a.clone());
            Ok(a)
        };
        let mut clock = FakeClock {
            now: Duration::ZERO,
            slept: Vec::new(),
        };
        let mut seen = Vec::new();
        let result = follow(
            &mut fetch,
            deployment,
            timeout,
            &mut clock,
            &mut |s, _| seen.push(line(s)),
            &mut |_| Ok(false),
        );
        (result, seen, clock)
    }

    fn state(state: &str, current: Option<&str>, done: u64) -> Value {
        let mut v = running();
        v["state"] = json!(state);
        v["current"] = json!(current);
        v["done"] = json!(done);
        v
    }

    #[test]
    fn polls_every_half_second_until_done() {
        let (r, seen, clock) = run(
            vec![
                state("pending", None, 0),
                state("running", Some("0002_idx"), 0),
                state("running", Some("0003_fill"), 1),
                state("done", None, 3),
            ],
            Some(7),
            Duration::from_secs(3600),
        );
        let f = r.expect("followed");
        assert_eq!(f.ending, Ending::Done);
        assert!(f.error(Duration::from_secs(3600)).is_none());
        assert_eq!(clock.slept, vec![POLL; 3]);
        assert_eq!(seen.len(), 4);
        assert_eq!(f.waited, Duration::from_millis(1500));
    }

    #[test]
    fn a_failed_phase_is_an_error_with_its_sqlstate() {
        let mut failed = state("failed", Some("0003_fill"), 1);
        failed["changes"][1]["state"] = json!("failed");
        failed["changes"][1]["sqlstate"] = json!("57014");
        failed["changes"][1]["message"] = json!("canceling statement due to statement timeout");
        let (r, _, _) = run(
            vec![state("running", Some("0003_fill"), 1), failed],
            Some(7),
            Duration::from_secs(60),
        );
        let f = r.expect("followed");
        assert_eq!(f.ending, Ending::Failed);
        let e = f.error(Duration::from_secs(60)).expect("an error");
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.to_string()
                .contains("ERROR 57014: change \"0003_fill\" (step 2, online)"),
            "{e}"
        );
    }

    #[test]
    fn runs_here_between_polls() {
        let mut answers = vec![
            state("pending", None, 0),
            state("pending", None, 0),
            state("running", Some("0003_fill"), 1),
            state("done", None, 3),
        ]
        .into_iter();
        let mut fetch = || answers.next().ok_or_else(|| CliError::input("no answer"));
        let mut clock = FakeClock {
            now: Duration::ZERO,
            slept: Vec::new(),
        };
        let mut asked = Vec::new();
        let f = follow(
            &mut fetch,
            Some(7),
            Duration::from_secs(60),
            &mut clock,
            &mut |_, _| {},
            &mut |s| {
                asked.push(s.state);
                // Ran the first time: poll again at once.
                Ok(asked.len() == 1)
            },
        )
        .expect("followed");
        assert_eq!(f.ending, Ending::Done);
        assert_eq!(
            asked,
            [State::Pending, State::Pending, State::Running],
            "never on the last"
        );
        assert_eq!(clock.slept, vec![POLL; 2], "no sleep after a run");
        let mut answers = vec![state("pending", None, 0)].into_iter();
        let mut fetch = || answers.next().ok_or_else(|| CliError::input("no answer"));
        let e = follow(
            &mut fetch,
            Some(7),
            Duration::from_secs(60),
            &mut clock,
            &mut |_, _| {},
            &mut |_| Err(CliError::input("cannot")),
        )
        .expect_err("its error ends the wait");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn gives_up_at_the_timeout() {
        let (r, seen, clock) = run(
            vec![state("running", Some("0003_fill"), 1)],
            Some(7),
            Duration::from_millis(1200),
        );
        let f = r.expect("followed");
        assert_eq!(f.ending, Ending::TimedOut);
        assert_eq!(
            clock.slept,
            vec![POLL, POLL, Duration::from_millis(200)],
            "the last sleep ends at the timeout"
        );
        assert_eq!(seen.len(), 4);
        let e = f.error(Duration::from_millis(1200)).expect("an error");
        assert!(
            e.to_string()
                .contains("gave up waiting after 1s (--phase-timeout): shop #7: running 0003_fill"),
            "{e}"
        );
        assert!(e.to_string().contains("`pg-deploy wait shop`"), "{e}");
    }

    #[test]
    fn nothing_to_wait_for_and_a_later_deployment() {
        let none = json!({"project": "shop", "deployment_id": null, "state": "none", "done": 0, "total": 0,
                          "current": null, "since": null, "changes": []});
        let (r, seen, clock) = run(vec![none], None, Duration::from_secs(60));
        let f = r.expect("followed");
        assert_eq!(f.ending, Ending::Nothing);
        assert!(seen.is_empty());
        assert!(f.error(Duration::from_secs(60)).is_none());
        assert!(clock.slept.is_empty());
        let mut later = state("running", Some("x"), 0);
        later["deployment_id"] = json!(9);
        let (r, seen, _) = run(vec![later], Some(7), Duration::from_secs(60));
        let f = r.expect("followed");
        assert_eq!(f.ending, Ending::Superseded(9));
        assert!(seen.is_empty());
        let e = f.error(Duration::from_secs(60)).expect("an error");
        assert!(e.to_string().contains("deployment #9 of the project took over"), "{e}");
    }

    #[test]
    fn which_failures_reconnect() {
        let server = |code: &str| CliError::Server {
            context: "wait".into(),
            error: crate::error::ServerError {
                sqlstate: code.into(),
                message: "m".into(),
                detail: None,
                hint: None,
            },
        };
        for code in ["57P01", "57P02", "57P03", "08006"] {
            assert!(reconnectable(&server(code)), "{code}");
        }
        for code in ["42883", "57014", "XX000"] {
            assert!(!reconnectable(&server(code)), "{code}");
        }
        assert!(reconnectable(&CliError::Connect {
            message: "gone".into(),
            hint: None
        }));
        assert!(!reconnectable(&CliError::input("x")));
        assert_eq!(
            reconnect_note(&server("57P01")),
            "the connection ended while waiting (ERROR 57P01: m); connecting again, the steps go on in the background"
        );
    }

    #[test]
    fn an_unreadable_status_stops_the_wait() {
        let (r, _, _) = run(
            vec![json!({"project": "shop", "state": "paused"})],
            Some(7),
            Duration::from_secs(60),
        );
        let e = r.expect_err("refused");
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.to_string()
                .contains("phase status: the server's answer is not the report"),
            "{e}"
        );
        let (r, _, _) = run(vec![], Some(7), Duration::from_secs(60));
        assert!(r.is_err(), "a fetch error ends the wait");
    }
}
