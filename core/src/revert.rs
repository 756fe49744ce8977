//! Reverting a project to an earlier version: which recorded events to undo,
//! in which order, and with what. Pure decisions over the deployment log.

use crate::manifest::ChangeKind;
use semver::Version;
use std::collections::{HashMap, HashSet};

/// One change_log row with what its deployment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub deployment_id: i64,
    pub ordinal: i32,
    pub deployment_version: Version,
    pub deployment_outcome: String,
    pub manifest_sha256: Option<String>,
    pub change_id: String,
    pub kind: ChangeKind,
    /// applied, rerun, accepted, baseline or reverted
    pub action: String,
    pub checksum: String,
    pub revert_sql: Option<String>,
    /// The role that recorded the event (its deployment's `applied_by`): stored
    /// SQL runs as this role, never with the rights of whoever reverts later.
    pub recorded_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertStep {
    /// Run the change's revert SQL: it was first applied after the target.
    /// `manifest_sha256`: the manifest it was applied with, whose settings apply.
    Undo {
        change_id: String,
        kind: ChangeKind,
        checksum: String,
        revert_sql: String,
        manifest_sha256: Option<String>,
        /// The role that recorded `revert_sql`; it runs as this role.
        author: String,
    },
    /// Run a repeatable change's SQL as it was before a later re-run: take it
    /// from the manifest stored under `manifest_sha256`.
    Restore {
        change_id: String,
        kind: ChangeKind,
        manifest_sha256: String,
        /// The role that deployed that manifest; the SQL runs as this role.
        author: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevertPlan {
    /// The deployment whose state is restored (None: before the first one).
    pub target_deployment: Option<i64>,
    pub target_manifest: Option<String>,
    pub steps: Vec<RevertStep>,
}

/// Changes that must be undone but carry no revert SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingReverts(pub Vec<String>);

fn runs(action: &str) -> bool {
    matches!(action, "applied" | "rerun" | "baseline")
}

/// Plans a revert to `to`: the state right after the last deployment whose
/// version is at most `to` (before everything, when there is none). Every
/// event after it, of a change still applied, is undone in reverse order:
/// a first application by the change's revert SQL, a re-run of a repeatable
/// change by running its previous SQL again. `events` are in log order.
pub fn plan_revert(events: &[LoggedEvent], to: &Version) -> Result<RevertPlan, MissingReverts> {
    let target = events
        .iter()
        .filter(|e| e.deployment_outcome != "revert" && e.deployment_version <= *to)
        .map(|e| (e.deployment_id, e.manifest_sha256.clone()))
        .max_by_key(|(id, _)| *id);
    let target_id = target.as_ref().map_or(0, |(id, _)| *id);

    // Changes whose latest event is a revert are not applied: nothing to undo.
    let mut latest: HashMap<&str, &LoggedEvent> = HashMap::new();
    for e in events {
        latest.insert(&e.change_id, e);
    }
    let still_applied: HashSet<&str> = latest
        .iter()
        .filter(|(_, e)| e.action != "reverted")
        .map(|(id, _)| *id)
        .collect();

    let mut steps = Vec::new();
    let mut missing = Vec::new();
    // A later revert already undid the application before it: skip that
    // application (and the re-runs in between) instead of undoing it twice.
    let mut cancelled: HashMap<&str, usize> = HashMap::new();
    for (i, e) in events.iter().enumerate().rev() {
        if e.deployment_id <= target_id || !still_applied.contains(e.change_id.as_str()) {
            continue;
        }
        if e.action == "reverted" {
            *cancelled.entry(&e.change_id).or_default() += 1;
            continue;
        }
        if !runs(&e.action) {
            continue;
        }
        if let Some(n) = cancelled.get_mut(e.change_id.as_str()).filter(|n| **n > 0) {
            if e.action != "rerun" {
                *n -= 1;
            }
            continue;
        }
        let previous_run = events[..i]
            .iter()
            .rev()
            .find(|p| p.change_id == e.change_id && runs(&p.action));
        match (previous_run, e.kind) {
            (Some(previous), ChangeKind::Repeatable) => match &previous.manifest_sha256 {
                Some(sha) => steps.push(RevertStep::Restore {
                    change_id: e.change_id.clone(),
                    kind: e.kind,
                    manifest_sha256: sha.clone(),
                    author: previous.recorded_by.clone(),
                }),
                None => missing.push(e.change_id.clone()),
            },
            _ => match &e.revert_sql {
                Some(sql) => steps.push(RevertStep::Undo {
                    change_id: e.change_id.clone(),
                    kind: e.kind,
                    checksum: e.checksum.clone(),
                    revert_sql: sql.clone(),
                    manifest_sha256: e.manifest_sha256.clone(),
                    author: e.recorded_by.clone(),
                }),
                None => missing.push(e.change_id.clone()),
            },
        }
    }
    if !missing.is_empty() {
        missing.dedup();
        return Err(MissingReverts(missing));
    }
    Ok(RevertPlan {
        target_deployment: target.as_ref().map(|(id, _)| *id),
        target_manifest: target.and_then(|(_, m)| m),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(dep: i64, version: &str, id: &str, kind: ChangeKind, action: &str, revert: Option<&str>) -> LoggedEvent {
        LoggedEvent {
            deployment_id: dep,
            ordinal: 0,
            deployment_version: Version::parse(version).unwrap(),
            deployment_outcome: "applied".into(),
            manifest_sha256: Some(format!("m{dep}")),
            change_id: id.into(),
            kind,
            action: action.into(),
            checksum: format!("c-{id}-{dep}"),
            revert_sql: revert.map(str::to_string),
            recorded_by: format!("deployer{dep}"),
        }
    }

    use ChangeKind::{Repeatable as R, Versioned as V};

    fn log() -> Vec<LoggedEvent> {
        vec![
            ev(1, "1.0.0", "a", V, "applied", Some("DROP a")),
            ev(1, "1.0.0", "view", R, "applied", Some("DROP view")),
            ev(2, "1.1.0", "b", V, "applied", Some("DROP b")),
            ev(2, "1.1.0", "view", R, "rerun", None),
            ev(3, "1.2.0", "c", V, "applied", Some("DROP c")),
        ]
    }

    #[test]
    fn undoes_everything_after_the_target_in_reverse() {
        let plan = plan_revert(&log(), &Version::parse("1.0.0").unwrap()).unwrap();
        assert_eq!(plan.target_deployment, Some(1));
        let ids: Vec<String> = plan
            .steps
            .iter()
            .map(|s| match s {
                RevertStep::Undo { change_id, .. } => format!("undo {change_id}"),
                RevertStep::Restore {
                    change_id,
                    manifest_sha256,
                    ..
                } => format!("restore {change_id} from {manifest_sha256}"),
            })
            .collect();
        assert_eq!(ids, vec!["undo c", "restore view from m1", "undo b"]);
    }

    #[test]
    fn each_step_runs_as_the_role_that_recorded_its_sql() {
        let plan = plan_revert(&log(), &Version::parse("1.0.0").unwrap()).unwrap();
        let authors: Vec<&str> = plan
            .steps
            .iter()
            .map(|s| match s {
                RevertStep::Undo { author, .. } | RevertStep::Restore { author, .. } => author.as_str(),
            })
            .collect();
        // c's revert SQL came with deployment 3; the view's earlier SQL with deployment 1.
        assert_eq!(authors, vec!["deployer3", "deployer1", "deployer2"]);
    }

    #[test]
    fn reverting_to_the_current_version_does_nothing() {
        assert!(plan_revert(&log(), &Version::parse("1.2.0").unwrap())
            .unwrap()
            .steps
            .is_empty());
    }

    #[test]
    fn reverting_before_the_first_deployment_undoes_all() {
        let plan = plan_revert(&log(), &Version::parse("0.1.0").unwrap()).unwrap();
        assert_eq!(plan.target_deployment, None);
        assert_eq!(plan.steps.len(), 5);
    }

    #[test]
    fn missing_reverts_are_all_named() {
        let mut events = log();
        events[2].revert_sql = None;
        events[4].revert_sql = None;
        let err = plan_revert(&events, &Version::parse("1.0.0").unwrap()).unwrap_err();
        assert_eq!(err.0, vec!["c".to_string(), "b".to_string()]);
    }

    #[test]
    fn an_application_undone_by_an_earlier_revert_is_not_undone_again() {
        let mut revert = ev(3, "1.0.0", "b", V, "reverted", None);
        revert.deployment_outcome = "revert".into();
        let events = vec![
            ev(1, "1.0.0", "a", V, "applied", Some("DROP a")),
            ev(2, "1.1.0", "b", V, "applied", Some("DROP b")),
            revert,
            ev(4, "1.1.0", "b", V, "applied", Some("DROP b")),
        ];
        let plan = plan_revert(&events, &Version::parse("0.1.0").unwrap()).unwrap();
        let undone: Vec<&str> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                RevertStep::Undo { change_id, .. } => Some(change_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(undone, vec!["b", "a"]);
    }

    #[test]
    fn already_reverted_changes_are_skipped() {
        let mut events = log();
        let mut reverted = ev(4, "1.1.0", "c", V, "reverted", None);
        reverted.deployment_outcome = "revert".into();
        events.push(reverted);
        let plan = plan_revert(&events, &Version::parse("1.0.0").unwrap()).unwrap();
        assert_eq!(plan.steps.len(), 2);
    }
}
