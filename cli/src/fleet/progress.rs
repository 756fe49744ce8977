//! Progress on stderr while a fleet runs: on a terminal one live line per
//! stage (done, failed, running), with a line of its own for each failure;
//! otherwise (CI logs) one plain line per target as it ends.

use super::report::{Outcome, Row};
use super::runner::Event;

pub struct Progress {
    live: bool,
    quiet: bool,
    stage: &'static str,
    total: usize,
    done: usize,
    failed: usize,
    running: usize,
}

impl Progress {
    pub fn new(live: bool, quiet: bool) -> Progress {
        Progress {
            live,
            quiet,
            stage: "",
            total: 0,
            done: 0,
            failed: 0,
            running: 0,
        }
    }

    /// The text to print on stderr for an event (may be empty).
    pub fn update(&mut self, e: Event) -> String {
        if self.quiet {
            return String::new();
        }
        let clear = if self.live { "\r\x1b[2K" } else { "" };
        match e {
            Event::Stage(name, n) => {
                let end = self.finish();
                self.stage = name;
                self.total = n;
                self.done = 0;
                self.failed = 0;
                self.running = 0;
                format!("{end}pg-deploy: {name}: {n} target(s)\n")
            }
            Event::Started => {
                self.running += 1;
                if self.live {
                    format!("{clear}{}", self.line())
                } else {
                    String::new()
                }
            }
            Event::Done(row) => {
                self.running = self.running.saturating_sub(1);
                self.done += 1;
                if row.outcome.failed() {
                    self.failed += 1;
                }
                if self.live {
                    let above = if row.outcome.failed() {
                        format!("{clear}pg-deploy: {}\n", target_line(row))
                    } else {
                        String::new()
                    };
                    format!("{above}{clear}{}", self.line())
                } else {
                    format!(
                        "pg-deploy: {} [{}/{}] {}\n",
                        self.stage,
                        self.done,
                        self.total,
                        target_line(row)
                    )
                }
            }
        }
    }

    fn line(&self) -> String {
        format!(
            "pg-deploy: {}: {}/{} done, {} failed, {} running",
            self.stage, self.done, self.total, self.failed, self.running
        )
    }

    /// Ends the live line, if any.
    pub fn finish(&mut self) -> String {
        if self.live && !self.quiet && !self.stage.is_empty() && self.total > 0 {
            self.total = 0;
            return "\n".into();
        }
        String::new()
    }
}

/// One target's outcome in a line.
pub fn target_line(r: &Row) -> String {
    let mut s = format!("{}: {}", r.target, r.outcome.word());
    if let (Some(b), Some(a)) = (&r.version_before, &r.version_after) {
        if b != a {
            s.push_str(&format!(" {b} -> {a}"));
        }
    }
    if let Some(n) = r.changes {
        if r.outcome == Outcome::Applied || r.outcome == Outcome::WouldApply {
            s.push_str(&format!(", {n} change(s)"));
        }
    }
    if r.outcome != Outcome::Skipped {
        s.push_str(&format!(" ({:.0} ms)", r.duration_ms));
    }
    if let Some(e) = &r.error {
        s.push_str(&format!(": {e}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_when_not_a_terminal() {
        let mut p = Progress::new(false, false);
        assert_eq!(p.update(Event::Stage("canary", 2)), "pg-deploy: canary: 2 target(s)\n");
        assert_eq!(p.update(Event::Started), "");
        let mut r = Row::new("h:1/a", "canary", Outcome::Applied);
        r.version_before = Some("0.1.0".into());
        r.version_after = Some("0.2.0".into());
        r.changes = Some(3);
        r.duration_ms = 4.2;
        assert_eq!(
            p.update(Event::Done(&r)),
            "pg-deploy: canary [1/2] h:1/a: applied 0.1.0 -> 0.2.0, 3 change(s) (4 ms)\n"
        );
        assert_eq!(p.finish(), "");
        let mut q = Progress::new(false, true);
        assert_eq!(q.update(Event::Done(&r)), "");
    }

    #[test]
    fn a_live_line_on_a_terminal() {
        let mut p = Progress::new(true, false);
        p.update(Event::Stage("rollout", 3));
        assert_eq!(
            p.update(Event::Started),
            "\r\x1b[2Kpg-deploy: rollout: 0/3 done, 0 failed, 1 running"
        );
        let mut r = Row::new("h:1/b", "rollout", Outcome::Failed);
        r.error = Some("apply failed: ERROR 23514: x".into());
        let out = p.update(Event::Done(&r));
        assert!(
            out.starts_with("\r\x1b[2Kpg-deploy: h:1/b: FAILED (0 ms): apply failed: ERROR 23514: x\n"),
            "{out:?}"
        );
        assert!(out.ends_with("rollout: 1/3 done, 1 failed, 0 running"), "{out:?}");
        assert_eq!(p.finish(), "\n");
        assert_eq!(p.finish(), "");
    }
}
