//! `deploy.plan(manifest, options)`: what apply would do, with the statement
//! kinds, locks and hazards of every pending change, and proof that they run,
//! without leaving any trace.

use crate::analyze::{step_locking, ChangeAnalysis};
use crate::apply::{prepare, Prepared};
use crate::deployment::{with_manifest, Call, Reading};
use crate::error::{ChangeLocation, DeployError};
use crate::execute::{run_change, ChangeWork};
use crate::jsonb_arg::JsonbArg;
use crate::session_state;
use crate::sqlstate::{pg_error, Coded};
use crate::subxact::in_subtransaction;
use pg_deploy_core::analysis::escapes_rollback;
use pg_deploy_core::hazards::Hazard;
use pg_deploy_core::locks::held_locks;
use pg_deploy_core::position::{line_col, skip_blank};
use pg_deploy_core::report::{
    round_ms, Objection, PlanOutcome, PlanReport, PlannedChange, PlannedHazard, PlannedHeldLock, PlannedLock,
    PlannedRefusal, PlannedSettings, PlannedStatement, TrialRun,
};
use pg_deploy_core::{Action, Change, Manifest, PlanOptions};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgSqlErrorCode};
use std::cell::RefCell;
use std::time::Instant;

/// Reports what `deploy.apply` would do. Takes no lock and writes no history;
/// with `{"execute": true}` (the default) it runs the pending changes in a
/// subtransaction that it rolls back.
#[pg_extern(volatile, parallel_unsafe)]
fn plan(manifest: Option<JsonbArg>, options: default!(Option<JsonbArg>, "'{}'")) -> JsonB {
    with_manifest(
        "deploy.plan",
        manifest,
        options,
        Reading::ChecksumsDeferred,
        PlanOptions::from_value,
        report,
    )
}

fn report(client: &mut SpiClient<'_>, mut call: Call<PlanOptions>) -> Result<PlanReport, DeployError> {
    let started = Instant::now();
    let Prepared {
        opened,
        plan,
        analyses,
        phased,
        ..
    } = prepare(
        client,
        &mut call.manifest,
        call.manifest_jsonb,
        &call.options.apply,
        false,
    )?;
    let (manifest, options) = (&call.manifest, &call.options);
    let project = manifest.project.as_str();
    let mut refused = false;
    let mut changes = Vec::with_capacity(manifest.changes.len());
    for ((change, action), analysis) in manifest.changes.iter().zip(&plan.actions).zip(&analyses) {
        let objection = analysis.as_ref().and_then(|a| a.first_objection(project, change));
        refused |= objection.is_some();
        changes.push(change_report(change, *action, analysis.as_ref(), objection));
    }
    for (planned, step) in changes.iter_mut().zip(&phased.step_of) {
        planned.step = *step;
    }
    let locks_held = held_lock_report(manifest, &phased.steps, &analyses);
    // The trial runs what the deployment's own transaction would: later steps
    // run after commit, top level, which a rolled-back trial cannot show.
    let trial_actions: Vec<Action> = plan
        .actions
        .iter()
        .zip(&phased.step_of)
        .map(|(a, step)| if step.is_some_and(|s| s > 0) { Action::Skip } else { *a })
        .collect();
    let execution = if !options.execute {
        TrialRun::skipped("not asked for")
    } else if refused {
        TrialRun::skipped("a change is refused")
    } else if plan.is_noop() {
        TrialRun::skipped("nothing to run")
    } else {
        // A session-level advisory lock taken by dynamic SQL outlives the rollback: released, and said.
        session_state::guard_advisory_locks(client, |client| {
            Ok(execute_and_roll_back(client, manifest, &trial_actions, &analyses))
        })
        .unwrap_or_else(|e| TrialRun {
            executed: true,
            ok: Some(false),
            sqlstate: Some(e.code_text()),
            message: Some(e.to_string()),
            ..TrialRun::default()
        })
    };
    let previous_version = opened.previous_version.clone();
    opened.close();
    let outcome = if refused {
        PlanOutcome::Refused
    } else if plan.is_noop() {
        PlanOutcome::NoOp
    } else {
        PlanOutcome::WouldApply
    };
    Ok(PlanReport {
        project: project.to_string(),
        version: manifest.version.to_string(),
        previous_version,
        outcome,
        changes,
        warnings: plan.warnings,
        locks_held,
        execution,
        duration_ms: round_ms(started.elapsed().as_secs_f64() * 1000.0),
    })
}

/// Per step and table: the strongest lock, who takes it, what runs under it.
fn held_lock_report(
    manifest: &Manifest,
    steps: &[pg_deploy_core::phases::Step],
    analyses: &[Option<ChangeAnalysis>],
) -> Vec<PlannedHeldLock> {
    let mut out = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        for held in held_locks(&step_locking(step, analyses)) {
            let Some(change) = manifest.changes.get(held.change) else {
                continue;
            };
            let line = analyses
                .get(held.change)
                .and_then(Option::as_ref)
                .and_then(|a| a.statements.get(held.statement))
                .map_or(1, |s| {
                    line_col(&change.sql, skip_blank(&change.sql, s.statement.start)).0
                });
            out.push(PlannedHeldLock {
                step: n,
                table: held.table.name,
                mode: held.mode.as_str().to_string(),
                change: change.id.clone(),
                line,
                held_during: held
                    .during
                    .iter()
                    .filter_map(|&i| manifest.changes.get(i).map(|c| c.id.clone()))
                    .collect(),
                big: held.big,
                busy: held.busy,
            });
        }
    }
    out
}

fn hazard_report(h: &Hazard, allowed: &[pg_deploy_core::hazards::HazardKind]) -> PlannedHazard {
    PlannedHazard {
        kind: h.kind.as_str().to_string(),
        table: h.table.as_ref().map(|t| t.name.clone()),
        rows: h.table.as_ref().map(|t| t.rows),
        bytes: h.table.as_ref().map(|t| t.bytes),
        big: h.big,
        allowed: allowed.contains(&h.kind),
        refused: h.refused(allowed),
        reason: h.reason.clone(),
        hint: h.hint.clone(),
    }
}

fn change_report(
    change: &Change,
    action: Action,
    analysis: Option<&ChangeAnalysis>,
    objection: Option<DeployError>,
) -> PlannedChange {
    let action_name = match (action, &objection) {
        (_, Some(_)) => "refuse",
        (Action::Apply, _) => "apply",
        (Action::Rerun, _) => "rerun",
        (Action::Skip, _) => "skip",
        (Action::Accept, _) => "accept",
    };
    let mut out = PlannedChange {
        id: change.id.clone(),
        kind: change.kind.as_str().to_string(),
        action: action_name.to_string(),
        settings: None,
        statements: None,
        objection: None,
        step: None,
    };
    let Some(analysis) = analysis else { return out };
    let allow = &analysis.settings.allow;
    let statements = analysis
        .statements
        .iter()
        .map(|s| {
            let (line, column) = line_col(&change.sql, skip_blank(&change.sql, s.statement.start));
            PlannedStatement {
                line,
                column,
                kind: s.statement.kind.clone(),
                // Resolved in the catalogs when the table exists, else as written.
                locks: if s.locks.is_empty() {
                    s.statement
                        .lock
                        .iter()
                        .map(|(table, mode)| PlannedLock {
                            table: table.to_string(),
                            mode: mode.to_string(),
                        })
                        .collect()
                } else {
                    s.locks
                        .iter()
                        .map(|l| PlannedLock {
                            table: l.table.name.clone(),
                            mode: l.mode.as_str().to_string(),
                        })
                        .collect()
                },
                hazards: s.hazards.iter().map(|h| hazard_report(h, allow)).collect(),
                refusal: s.refusal.as_ref().map(|r| PlannedRefusal {
                    sqlstate: r.sqlstate.code().to_string(),
                    reason: r.reason.clone(),
                    hint: r.hint.clone(),
                }),
            }
        })
        .collect();
    let settings = &analysis.settings;
    out.settings = Some(PlannedSettings {
        search_path: settings.search_path.clone(),
        lock_timeout: settings.lock_timeout.clone(),
        statement_timeout: settings.statement_timeout.clone(),
        lock_retries: settings.lock_retries,
        allow: settings.allow.iter().map(|k| k.as_str().to_string()).collect(),
    });
    out.statements = Some(statements);
    out.objection = objection.map(|o| Objection {
        sqlstate: o.code_text(),
        message: o.to_string(),
    });
    out
}

/// Runs every pending change inside one subtransaction and always rolls it
/// back: proof that the changes run, with nothing left behind.
fn execute_and_roll_back(
    client: &mut SpiClient<'_>,
    manifest: &Manifest,
    actions: &[Action],
    analyses: &[Option<ChangeAnalysis>],
) -> TrialRun {
    let started = Instant::now();
    // What a rollback cannot undo is not run at all.
    for ((change, action), analysis) in manifest.changes.iter().zip(actions).zip(analyses) {
        let (true, Some(analysis)) = (action.runs(), analysis) else {
            continue;
        };
        for s in &analysis.statements {
            if let Some(why) = escapes_rollback(&s.statement.kind, &s.statement.tree.functions) {
                let (line, column) = line_col(&change.sql, skip_blank(&change.sql, s.statement.start));
                return TrialRun {
                    executed: false,
                    ok: Some(false),
                    change: Some(change.id.clone()),
                    sqlstate: Some("0A000".into()),
                    message: Some(format!(
                        "change \"{}\" of project \"{}\" cannot run in a trial run at line {line}, column {column}: {why}",
                        change.id, manifest.project
                    )),
                    line: Some(line),
                    column: Some(column),
                    reason: Some("a change acts outside the transaction".into()),
                    ..TrialRun::default()
                };
            }
        }
    }
    let failed: RefCell<Option<TrialRun>> = RefCell::new(None);
    let outcome = in_subtransaction(|| {
        for ((change, action), analysis) in manifest.changes.iter().zip(actions).zip(analyses) {
            let (true, Some(analysis)) = (action.runs(), analysis) else {
                continue;
            };
            let statements = analysis.plain_statements();
            let work = ChangeWork::of(change, &statements);
            if let Err(failure) = run_change(client, &work, &analysis.settings) {
                let location = match failure.statement {
                    Some(i) => ChangeLocation::of_statement(&manifest.project, change, &statements, i, failure.at),
                    None => ChangeLocation::new(&manifest.project, &change.id, &change.sql, failure.at),
                };
                let error = DeployError::ChangeFailed {
                    location: location.clone(),
                    error: failure.error,
                };
                *failed.borrow_mut() = Some(TrialRun {
                    executed: true,
                    ok: Some(false),
                    change: Some(change.id.clone()),
                    sqlstate: Some(error.code_text()),
                    message: Some(error.to_string()),
                    line: location.line_col.map(|lc| lc.0),
                    column: location.line_col.map(|lc| lc.1),
                    ..TrialRun::default()
                });
                break;
            }
        }
        Err::<(), _>(pg_error(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "plan rolls back",
        ))
    });
    let ms = round_ms(started.elapsed().as_secs_f64() * 1000.0);
    match (failed.into_inner(), outcome) {
        (Some(report), _) => report,
        (None, Err(e)) if !e.is(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION) => TrialRun {
            executed: true,
            ok: Some(false),
            sqlstate: Some("XX000".into()),
            message: Some(e.message),
            ..TrialRun::default()
        },
        _ => TrialRun {
            executed: true,
            ok: Some(true),
            rolled_back: Some(true),
            duration_ms: Some(ms),
            ..TrialRun::default()
        },
    }
}
