//! Putting a deployment's pending changes in phases, before anything runs:
//! online changes checked, commit boundaries the analysis proves necessary
//! refused (by default) or placed (`"phases": "auto"`), the steps computed.

use crate::analyze::{enum_value_uses, step_locking, ChangeAnalysis};
use crate::error::{ChangeLocation, DeployError};
use crate::sqlstate::sqlstate;
use crate::subxact::PgError;
use pg_deploy_core::locks::held_across;
use pg_deploy_core::phases::{self, OnlineKind, Step};
use pg_deploy_core::{Change, Manifest, PhasePlacement};
use pgrx::PgSqlErrorCode;

/// The steps of a deployment, which step each change runs in, and what was
/// decided on the way (boundaries placed by the analysis).
pub struct Phased {
    pub steps: Vec<Step>,
    pub step_of: Vec<Option<usize>>,
    pub warnings: Vec<String>,
}

impl Phased {
    /// Whether anything runs after the deployment commits.
    pub fn has_later_steps(&self) -> bool {
        self.steps.len() > 1
    }
}

pub fn place(
    manifest: &Manifest,
    analyses: &[Option<ChangeAnalysis>],
    placement: PhasePlacement,
) -> Result<Phased, DeployError> {
    let project = manifest.project.as_str();
    let mut online_errors =
        manifest
            .changes
            .iter()
            .zip(analyses)
            .filter_map(|(change, analysis)| match (change.phase.online, analysis) {
                (true, Some(analysis)) => check_online(project, change, analysis).err(),
                _ => None,
            });
    if let Some(first) = online_errors.next() {
        return Err(with_the_others(first, online_errors));
    }
    let runs: Vec<bool> = analyses.iter().map(Option::is_some).collect();
    let index_of = |id: &str| manifest.changes.iter().position(|c| c.id == id);
    let pending: Vec<(&Change, &ChangeAnalysis)> = manifest
        .changes
        .iter()
        .zip(analyses)
        .filter_map(|(c, a)| a.as_ref().map(|a| (c, a)))
        .collect();
    let needs_commit = enum_value_uses(&pending);
    let mut warnings = Vec::new();
    let mut boundaries = Vec::new();
    for (adder, user, what) in &needs_commit {
        if adder == user {
            return Err(refuse(
                format!(
                    "project \"{project}\": change \"{user}\" adds {what} and uses it; PostgreSQL refuses a new enum \
                     value before the transaction that added it commits"
                ),
                format!("Move the use of the value out of change \"{user}\" into a later change with \"commit_before\": true."),
            ));
        }
    }
    if placement == PhasePlacement::Auto {
        // As few boundaries as needed: one between each adder and its first
        // user, unless an earlier boundary already lies between them.
        let mut needs: Vec<(usize, usize, &str, &str, &str)> = needs_commit
            .iter()
            .filter_map(|(a, u, what)| Some((index_of(u)?, index_of(a)?, u.as_str(), a.as_str(), what.as_str())))
            .collect();
        needs.sort_by_key(|&(u, a, ..)| (u, a));
        for (u, a, user, adder, what) in needs {
            if boundaries.iter().any(|&b| a < b && b <= u)
                || manifest.changes[a + 1..=u].iter().any(|c| c.phase.commit_before)
            {
                continue;
            }
            boundaries.push(u);
            warnings.push(format!(
                "phases: change \"{user}\" starts a new phase (committed after the ones before it): it uses \
                 {what}, added by change \"{adder}\""
            ));
        }
    }
    let steps_with = |boundaries: &[usize]| {
        phases::steps(project, &manifest.changes, &runs, boundaries).map_err(|e| {
            DeployError::Postgres(PgError {
                sqlstate: e.sqlstate.code().to_string(),
                message: e.message,
                detail: None,
                hint: Some(e.hint),
            })
        })
    };
    if placement == PhasePlacement::Auto {
        held_lock_boundaries(manifest, analyses, &mut boundaries, &mut warnings, &steps_with)?;
    }
    let steps = steps_with(&boundaries)?;
    let step_of = phases::step_of_changes(&steps, manifest.changes.len());
    for (adder, user, what) in &needs_commit {
        let (Some(a), Some(u)) = (index_of(adder), index_of(user)) else {
            continue;
        };
        if step_of[a].is_some() && step_of[a] == step_of[u] {
            return Err(refuse(
                format!(
                    "project \"{project}\": change \"{user}\" uses {what}, added by change \"{adder}\" in the same \
                     transaction; PostgreSQL refuses a new enum value before the transaction that added it commits"
                ),
                format!(
                    "Set \"commit_before\": true on change \"{user}\" (it then runs after \"{adder}\" commits), or \
                     pass options {{\"phases\": \"auto\"}} to let pg_deploy place the boundary."
                ),
            ));
        }
    }
    Ok(Phased {
        steps,
        step_of,
        warnings,
    })
}

/// The steps for a set of boundaries.
type StepsWith<'a> = dyn Fn(&[usize]) -> Result<Vec<Step>, DeployError> + 'a;

/// With `"phases": "auto"`: a boundary before each change that would run a
/// long statement under a lock an earlier change of its phase holds. The
/// earliest first, then again: one boundary often settles later findings.
fn held_lock_boundaries(
    manifest: &Manifest,
    analyses: &[Option<ChangeAnalysis>],
    boundaries: &mut Vec<usize>,
    warnings: &mut Vec<String>,
    steps_with: &StepsWith<'_>,
) -> Result<(), DeployError> {
    let ids = |i: usize| manifest.changes.get(i).map_or_else(String::new, |c| c.id.clone());
    for _ in 0..manifest.changes.len() {
        let mut next = None;
        for step in steps_with(boundaries)? {
            let locking = step_locking(&step, analyses);
            let found = held_across(&locking, &ids);
            let first = found
                .iter()
                .filter(|f| locking[f.holder].change != locking[f.long].change)
                .min_by_key(|f| locking[f.long].change);
            if let Some(f) = first {
                let change = locking[f.long].change;
                if next.as_ref().is_none_or(|(c, _)| change < *c) {
                    next = Some((change, f.hazard.reason.clone()));
                }
            }
        }
        let Some((change, reason)) = next else { break };
        boundaries.push(change);
        warnings.push(format!(
            "phases: change \"{}\" starts a new phase (committed after the ones before it): otherwise {reason}",
            ids(change)
        ));
    }
    Ok(())
}

fn refuse(message: String, hint: String) -> DeployError {
    DeployError::Postgres(PgError {
        sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_UNSAFE_NEW_ENUM_VALUE_USAGE),
        message,
        detail: None,
        hint: Some(hint),
    })
}

/// The first refusal, its hint naming every later one too: one run shows
/// all the online changes to fix.
fn with_the_others(first: DeployError, others: impl Iterator<Item = DeployError>) -> DeployError {
    let others: Vec<String> = others.map(|e| format!("- {e}")).collect();
    match first {
        DeployError::Refused { location, mut refusal } if !others.is_empty() => {
            refusal.hint = format!(
                "{}\nAlso refused, {} more:\n{}",
                refusal.hint,
                others.len(),
                others.join("\n")
            );
            DeployError::Refused { location, refusal }
        }
        first => first,
    }
}

/// An online change is one statement; a concurrent index build names its
/// index (so an interrupted build can be found again); a batched change is DML.
fn check_online(project: &str, change: &Change, analysis: &ChangeAnalysis) -> Result<(), DeployError> {
    let statements = analysis.plain_statements();
    let unsupported = |message: String, hint: &str, at: usize| DeployError::Refused {
        location: ChangeLocation::of_statement(project, change, &statements, at, None),
        refusal: pg_deploy_core::analysis::Refusal {
            sqlstate: pg_deploy_core::SqlState::FeatureNotSupported,
            reason: message,
            hint: hint.to_string(),
        },
    };
    if statements.len() != 1 {
        return Err(unsupported(
            format!(
                "an online change must be exactly one statement, and it has {}",
                statements.len()
            ),
            "Split it into one online change per statement: each runs top level, in its own transaction.",
            statements.len().min(2) - 1,
        ));
    }
    let statement = &statements[0];
    if let OnlineKind::CreateIndex { index: None, .. } = statement.online {
        return Err(unsupported(
            "an online CREATE INDEX CONCURRENTLY must name its index".into(),
            "Name the index (CREATE INDEX CONCURRENTLY name ON …): pg_deploy finds an interrupted build by its name.",
            0,
        ));
    }
    if change.phase.repeat.is_some() && statement.online != OnlineKind::Dml {
        return Err(unsupported(
            format!(
                "\"repeat_until_no_rows\" needs an INSERT, UPDATE, DELETE or MERGE, and this is {}",
                statement.kind
            ),
            "Write the batch as one DML statement that affects no rows once the work is done, e.g. UPDATE … \
             WHERE id IN (SELECT id … WHERE NOT done LIMIT 10000).",
            0,
        ));
    }
    Ok(())
}
