//! Planning: what apply does with each change, given the recorded history.
//! Pure decisions; the extension supplies the history and runs the plan.

use crate::error::PlanError;
use crate::manifest::{ChangeKind, Manifest};
use crate::options::ApplyOptions;
use semver::Version;
use std::collections::{HashMap, HashSet};

/// What the history says about one change id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedChange {
    pub checksum: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub deployed_version: Option<Version>,
    pub applied: HashMap<String, AppliedChange>,
    /// The project's last deployment applied this very manifest (same
    /// sha256): every change is applied as it stands, and `applied` is not
    /// read (a no-op re-apply of 10,000 changes need not build and look up
    /// a map of them).
    pub manifest_applied: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Never applied: run it.
    Apply,
    /// Repeatable whose SQL changed: run it again.
    Rerun,
    /// Already applied with this exact SQL.
    Skip,
    /// Versioned whose applied SQL changed, accepted by the caller: record, do not run.
    Accept,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "applied",
            Action::Rerun => "rerun",
            Action::Skip => "skipped",
            Action::Accept => "accepted",
        }
    }

    pub fn runs(self) -> bool {
        matches!(self, Action::Apply | Action::Rerun)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One action per manifest change, in manifest order.
    pub actions: Vec<Action>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.actions.iter().all(|a| *a == Action::Skip)
    }
}

const LISTED: usize = 10;

fn list(ids: &[&str]) -> String {
    let mut shown: Vec<String> = ids.iter().take(LISTED).map(|id| format!("\"{id}\"")).collect();
    if ids.len() > LISTED {
        shown.push(format!("and {} more", ids.len() - LISTED));
    }
    shown.join(", ")
}

pub fn plan(manifest: &Manifest, history: &History, options: &ApplyOptions) -> Result<Plan, PlanError> {
    let project = &manifest.project;
    let mut warnings = Vec::new();
    if let Some(deployed) = &history.deployed_version {
        if manifest.version < *deployed {
            if !options.allow_downgrade {
                return Err(PlanError::OlderVersion {
                    project: project.clone(),
                    version: manifest.version.to_string(),
                    deployed: deployed.to_string(),
                });
            }
            warnings.push(format!(
                "downgrade from {deployed} to {} allowed by option",
                manifest.version
            ));
        }
    }

    let accept: HashSet<&str> = options.accept_changed.iter().map(String::as_str).collect();
    let mut accepted_used = HashSet::new();
    let mut modified = Vec::new();
    let mut actions = Vec::with_capacity(manifest.changes.len());
    for change in &manifest.changes {
        if history.manifest_applied {
            actions.push(Action::Skip);
            continue;
        }
        let action = match history.applied.get(&change.id) {
            None => Action::Apply,
            Some(applied) if applied.kind != change.kind => {
                return Err(PlanError::KindChanged {
                    project: project.clone(),
                    id: change.id.clone(),
                    was: applied.kind.as_str(),
                    now: change.kind.as_str(),
                })
            }
            Some(applied) if change.is_recorded_as(&applied.checksum) => Action::Skip,
            Some(_) if change.kind == ChangeKind::Repeatable => Action::Rerun,
            Some(applied) => {
                if accept.contains(change.id.as_str()) {
                    accepted_used.insert(change.id.as_str());
                    Action::Accept
                } else {
                    modified.push(format!(
                        "\"{}\" was applied as {} but the manifest has {}",
                        change.id, applied.checksum, change.checksum
                    ));
                    Action::Skip
                }
            }
        };
        actions.push(action);
    }
    if !modified.is_empty() {
        return Err(PlanError::AppliedChangeModified {
            project: project.clone(),
            count: modified.len(),
            details: modified.join("; "),
        });
    }

    let unused: Vec<&str> = options
        .accept_changed
        .iter()
        .map(String::as_str)
        .filter(|id| !accepted_used.contains(id))
        .collect();
    if !unused.is_empty() {
        warnings.push(format!("accept_changed: nothing to accept for {}", list(&unused)));
    }
    if let Some(through) = &options.through {
        let Some(at) = manifest.changes.iter().position(|c| &c.id == through) else {
            return Err(PlanError::UnknownThrough {
                project: project.clone(),
                id: through.clone(),
            });
        };
        let mut left: Vec<&str> = Vec::new();
        for (change, action) in manifest.changes.iter().zip(actions.iter_mut()).skip(at + 1) {
            if *action != Action::Skip {
                left.push(&change.id);
                *action = Action::Skip;
            }
        }
        if !left.is_empty() {
            warnings.push(format!(
                "through \"{through}\": {} later change(s) left for a later apply: {}",
                left.len(),
                list(&left)
            ));
        }
    }
    let mut missing: Vec<&str> = Vec::new();
    if !history.manifest_applied && !history.applied.is_empty() {
        let in_manifest: HashSet<&str> = manifest.changes.iter().map(|c| c.id.as_str()).collect();
        missing.extend(
            history
                .applied
                .keys()
                .map(String::as_str)
                .filter(|id| !in_manifest.contains(id)),
        );
    }
    if !missing.is_empty() {
        missing.sort_unstable();
        warnings.push(format!(
            "{} applied change(s) are not in this manifest: {}",
            missing.len(),
            list(&missing)
        ));
    }
    Ok(Plan { actions, warnings })
}

/// What the server offers, checked against `requires` before anything runs.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub postgres: Version,
    pub installed_extensions: Vec<String>,
    pub pg_deploy: Version,
}

/// `server_version_num` (e.g. 150018) as a semantic version (15.18.0).
pub fn postgres_version(server_version_num: i64) -> Version {
    let major = (server_version_num / 10000) as u64;
    let minor = (server_version_num % 10000) as u64;
    Version::new(major, minor, 0)
}

pub fn check_requirements(manifest: &Manifest, facts: &ServerFacts) -> Result<(), PlanError> {
    let project = &manifest.project;
    let req = &manifest.requires;
    if let Some(range) = &req.postgres {
        if !range.matches(&facts.postgres) {
            return Err(PlanError::RequirementNotMet {
                project: project.clone(),
                what: "postgres",
                requirement: range.to_string(),
                found: format!("this server is PostgreSQL {}", facts.postgres),
            });
        }
    }
    if let Some(range) = &req.pg_deploy {
        if !range.matches(&facts.pg_deploy) {
            return Err(PlanError::RequirementNotMet {
                project: project.clone(),
                what: "pg_deploy",
                requirement: range.to_string(),
                found: format!("this is pg_deploy {}", facts.pg_deploy),
            });
        }
    }
    let missing: Vec<&str> = req
        .extensions
        .iter()
        .map(String::as_str)
        .filter(|e| !facts.installed_extensions.iter().any(|i| i == e))
        .collect();
    if !missing.is_empty() {
        return Err(PlanError::RequirementNotMet {
            project: project.clone(),
            what: "extensions",
            requirement: list(&req.extensions.iter().map(String::as_str).collect::<Vec<_>>()),
            found: format!("not installed in this database: {}", list(&missing)),
        });
    }
    Ok(())
}
