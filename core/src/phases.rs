//! Phases: which changes run in the caller's transaction and which run after
//! it commits, in what order, as what units. Pure decisions; the extension
//! queues the later steps and a background worker runs them (docs/online.md).
//!
//! Step 0 is the main phase, run by `deploy.apply` in the caller's
//! transaction. Every later step is either a transactional phase (several
//! changes, one atomic transaction) or one online change (one statement, top
//! level, outside any transaction block). Walking the changes in manifest
//! order: a transactional change joins the current transactional phase unless
//! it starts a new one (`commit_before`, or a boundary the analysis placed);
//! an online change runs after the transactional phase it appears in commits.

use crate::analysis::ObjectName;
use crate::error::SqlState;
use crate::manifest::Change;

/// How a change asked to run, from its manifest fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseMarks {
    /// Run after commit, outside any transaction block (`online`).
    pub online: bool,
    /// The changes before this one commit first (`commit_before`).
    pub commit_before: bool,
    /// Repeat until no rows are affected, pausing between rounds (`repeat_until_no_rows`).
    pub repeat: Option<Repeat>,
}

/// A batched online change: rounds until one affects no rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    /// The pause between rounds, as written (a duration).
    pub pause: String,
}

/// The pause between rounds unless the change sets `repeat_pause`.
pub const DEFAULT_REPEAT_PAUSE: &str = "100ms";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Changes run together in one transaction (step 0: the caller's).
    Transaction,
    /// One online change, top level, outside any transaction block.
    Online,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Transaction => "transaction",
            StepKind::Online => "online",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    /// Indexes into the manifest's changes, in manifest order.
    pub changes: Vec<usize>,
}

/// Why the changes cannot be put in phases as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseError {
    pub sqlstate: SqlState,
    pub message: String,
    pub hint: String,
}

/// The steps of a deployment: step 0 (the main phase, possibly empty) and the
/// steps that run after it commits. `runs[i]` says whether change i runs at
/// all; `boundaries` are changes the analysis says must start a new phase.
pub fn steps(project: &str, changes: &[Change], runs: &[bool], boundaries: &[usize]) -> Result<Vec<Step>, PhaseError> {
    let mut steps = vec![Step {
        kind: StepKind::Transaction,
        changes: Vec::new(),
    }];
    let mut current = 0;
    let mut online_waiting: Vec<usize> = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        if !runs.get(i).copied().unwrap_or(false) {
            continue;
        }
        if change.phase.online {
            online_waiting.push(i);
            continue;
        }
        let boundary = change.phase.commit_before || boundaries.contains(&i);
        if boundary && (!steps[current].changes.is_empty() || !online_waiting.is_empty()) {
            steps.extend(online_waiting.drain(..).map(|o| Step {
                kind: StepKind::Online,
                changes: vec![o],
            }));
            steps.push(Step {
                kind: StepKind::Transaction,
                changes: Vec::new(),
            });
            current = steps.len() - 1;
        }
        steps[current].changes.push(i);
    }
    steps.extend(online_waiting.into_iter().map(|o| Step {
        kind: StepKind::Online,
        changes: vec![o],
    }));
    check_requirements(project, changes, &steps)?;
    Ok(steps)
}

/// A change must not run before a change it requires: with phases, a change
/// that requires an online change of its own phase would.
fn check_requirements(project: &str, changes: &[Change], steps: &[Step]) -> Result<(), PhaseError> {
    let mut step_of = vec![None; changes.len()];
    for (s, step) in steps.iter().enumerate() {
        for &i in &step.changes {
            step_of[i] = Some(s);
        }
    }
    for (i, change) in changes.iter().enumerate() {
        let Some(mine) = step_of[i] else { continue };
        for required in &change.requires {
            let Some(r) = changes.iter().position(|c| &c.id == required) else {
                continue;
            };
            if step_of[r].is_some_and(|theirs| theirs > mine) {
                return Err(PhaseError {
                    sqlstate: SqlState::ForeignKeyViolation,
                    message: format!(
                        "project \"{project}\": change \"{}\" requires change \"{required}\", which is online and \
                         runs only after the phase of \"{}\" commits",
                        change.id, change.id
                    ),
                    hint: format!(
                        "Set \"commit_before\": true on change \"{}\" so that it runs after \"{required}\".",
                        change.id
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The step each change runs in (None: it does not run).
pub fn step_of_changes(steps: &[Step], changes: usize) -> Vec<Option<usize>> {
    let mut out = vec![None; changes];
    for (s, step) in steps.iter().enumerate() {
        for &i in &step.changes {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(s);
            }
        }
    }
    out
}

/// What an online statement is, for running it and for finding out, after
/// an interruption, whether it already ran.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnlineKind {
    /// CREATE INDEX CONCURRENTLY on `table`, named `index` (None: unnamed).
    CreateIndex { table: ObjectName, index: Option<String> },
    /// DROP INDEX CONCURRENTLY.
    DropIndex,
    /// INSERT, UPDATE, DELETE or MERGE.
    Dml,
    /// Harmless to run again: VACUUM, ANALYZE, REINDEX, CLUSTER, REFRESH
    /// MATERIALIZED VIEW, ALTER SYSTEM.
    Rerunnable,
    /// Anything else: running it twice may not be harmless.
    #[default]
    Other,
}

/// What the worker does with an online change it finds "running" with no
/// live worker (the last one died, the server restarted, the compute slept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterInterruption {
    /// Run it (again): nothing of it can be half there, or running it twice is harmless.
    Run,
    /// It finished before the interruption: record it as done.
    Done,
    /// A concurrent build left an INVALID index: drop it, then run again.
    DropInvalidThenRun,
    /// Nothing tells whether it ran: fail, and let a person look.
    Unknown,
}

/// `index_valid`: the named index of a CREATE INDEX CONCURRENTLY, if it
/// exists (Some(valid)) or not (None).
pub fn after_interruption(kind: &OnlineKind, index_valid: Option<bool>) -> AfterInterruption {
    match (kind, index_valid) {
        (OnlineKind::CreateIndex { index: Some(_), .. }, Some(true)) => AfterInterruption::Done,
        (OnlineKind::CreateIndex { index: Some(_), .. }, Some(false)) => AfterInterruption::DropInvalidThenRun,
        (OnlineKind::CreateIndex { index: Some(_), .. }, None) => AfterInterruption::Run,
        (OnlineKind::CreateIndex { index: None, .. }, _) => AfterInterruption::Unknown,
        (OnlineKind::DropIndex | OnlineKind::Dml | OnlineKind::Rerunnable, _) => AfterInterruption::Run,
        (OnlineKind::Other, _) => AfterInterruption::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manifest;
    use serde_json::json;

    fn manifest(changes: serde_json::Value) -> Manifest {
        Manifest::from_value(&json!({"project": "p", "version": "1.0.0", "changes": changes})).unwrap()
    }

    fn shape(steps: &[Step]) -> Vec<(StepKind, Vec<usize>)> {
        steps.iter().map(|s| (s.kind, s.changes.clone())).collect()
    }

    use StepKind::{Online as O, Transaction as T};

    #[test]
    fn steps_follow_the_marks() {
        type Case = (serde_json::Value, Vec<bool>, Vec<usize>, Vec<(StepKind, Vec<usize>)>);
        let cases: Vec<Case> = vec![
            // No marks: everything in the caller's transaction.
            (
                json!([{"id": "a", "sql": "x"}, {"id": "b", "sql": "x"}]),
                vec![true, true],
                vec![],
                vec![(T, vec![0, 1])],
            ),
            // An online change runs after its phase commits, even if written first.
            (
                json!([{"id": "a", "sql": "x", "online": true}, {"id": "b", "sql": "x"}]),
                vec![true, true],
                vec![],
                vec![(T, vec![1]), (O, vec![0])],
            ),
            // commit_before starts a new phase after the online changes before it.
            (
                json!([{"id": "a", "sql": "x"}, {"id": "i", "sql": "x", "online": true},
                       {"id": "b", "sql": "x", "commit_before": true}, {"id": "c", "sql": "x"}]),
                vec![true, true, true, true],
                vec![],
                vec![(T, vec![0]), (O, vec![1]), (T, vec![2, 3])],
            ),
            // A boundary with nothing before it changes nothing.
            (
                json!([{"id": "a", "sql": "x", "commit_before": true}, {"id": "b", "sql": "x"}]),
                vec![true, true],
                vec![],
                vec![(T, vec![0, 1])],
            ),
            // Skipped changes take no part; boundaries placed by the analysis count.
            (
                json!([{"id": "a", "sql": "x"}, {"id": "b", "sql": "x"}, {"id": "c", "sql": "x"}]),
                vec![false, true, true],
                vec![2],
                vec![(T, vec![1]), (T, vec![2])],
            ),
            // Only online changes: the main phase is empty.
            (
                json!([{"id": "a", "sql": "x", "online": true}, {"id": "b", "sql": "x", "online": true}]),
                vec![true, true],
                vec![],
                vec![(T, vec![]), (O, vec![0]), (O, vec![1])],
            ),
        ];
        for (changes, runs, boundaries, want) in cases {
            let m = manifest(changes.clone());
            let got = steps("p", &m.changes, &runs, &boundaries).unwrap();
            assert_eq!(shape(&got), want, "{changes}");
        }
    }

    #[test]
    fn interrupted_changes_are_reconciled_never_run_twice_blindly() {
        use AfterInterruption::*;
        let index = |name: Option<&str>| OnlineKind::CreateIndex {
            table: ObjectName::default(),
            index: name.map(str::to_string),
        };
        let cases = [
            (index(Some("i")), Some(true), Done),
            (index(Some("i")), Some(false), DropInvalidThenRun),
            (index(Some("i")), None, Run),
            (index(None), None, Unknown),
            (OnlineKind::Dml, None, Run),
            (OnlineKind::Rerunnable, None, Run),
            (OnlineKind::DropIndex, None, Run),
            (OnlineKind::Other, None, Unknown),
        ];
        for (kind, valid, want) in cases {
            assert_eq!(after_interruption(&kind, valid), want, "{kind:?} {valid:?}");
        }
    }

    #[test]
    fn a_change_cannot_require_a_later_online_change() {
        let m = manifest(json!([
            {"id": "idx", "sql": "x", "online": true},
            {"id": "use", "sql": "x", "requires": ["idx"]}
        ]));
        let e = steps("p", &m.changes, &[true, true], &[]).unwrap_err();
        assert_eq!(e.sqlstate.code(), "23503");
        assert!(e.message.contains("\"use\" requires change \"idx\""), "{}", e.message);
        assert!(
            e.hint.contains("\"commit_before\": true on change \"use\""),
            "{}",
            e.hint
        );
        let m = manifest(json!([
            {"id": "idx", "sql": "x", "online": true},
            {"id": "use", "sql": "x", "requires": ["idx"], "commit_before": true}
        ]));
        assert_eq!(
            shape(&steps("p", &m.changes, &[true, true], &[]).unwrap()),
            vec![(T, vec![]), (O, vec![0]), (T, vec![1])]
        );
    }
}
