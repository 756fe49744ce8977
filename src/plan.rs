//! `deploy.plan(manifest, options)`: what apply would do, with the statement
//! kinds, locks and hazards of every pending change, and proof that they run,
//! without leaving any trace.

use crate::analyze::ChangeAnalysis;
use crate::apply::{guarded, prepare, round, Prepared};
use crate::error::{ChangeLocation, DeployError};
use crate::execute::{run_change, ChangeWork};
use crate::subxact::{in_subtransaction, CaughtPgError};
use pg_deploy_core::hazards::Hazard;
use pg_deploy_core::position::{line_col, skip_blank};
use pg_deploy_core::{Action, Change, Manifest, PlanOptions};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::time::Instant;

/// Reports what `deploy.apply` would do. Takes no lock and writes no history;
/// with `{"execute": true}` (the default) it runs the pending changes in a
/// subtransaction that it rolls back.
#[pg_extern(volatile, parallel_unsafe)]
fn plan(manifest: Option<JsonB>, options: default!(Option<JsonB>, "'{}'")) -> JsonB {
    let manifest = manifest.map_or(Value::Null, |m| m.0);
    let options = options.map_or(Value::Null, |o| o.0);
    guarded("deploy.plan", || {
        let manifest = Manifest::from_value(&manifest).map_err(DeployError::Manifest)?;
        let options = PlanOptions::from_value(&options).map_err(DeployError::Options)?;
        Spi::connect_mut(|client| report(client, &manifest, &options))
    })
}

fn report(client: &mut SpiClient<'_>, manifest: &Manifest, options: &PlanOptions) -> Result<Value, DeployError> {
    let started = Instant::now();
    let project = manifest.project.as_str();
    let Prepared {
        previous_version,
        plan,
        analyses,
        internal,
        ..
    } = prepare(client, manifest, &options.apply, false)?;
    let mut refused = false;
    let mut changes = Vec::with_capacity(manifest.changes.len());
    for ((change, action), analysis) in manifest.changes.iter().zip(&plan.actions).zip(&analyses) {
        let objection = analysis.as_ref().and_then(|a| a.first_objection(project, change));
        refused |= objection.is_some();
        changes.push(change_report(change, *action, analysis.as_ref(), objection));
    }
    let execution = if !options.execute {
        json!({"executed": false, "reason": "not asked for"})
    } else if refused {
        json!({"executed": false, "reason": "a change is refused"})
    } else if plan.is_noop() {
        json!({"executed": false, "reason": "nothing to run"})
    } else {
        execute_and_roll_back(client, manifest, &plan.actions, &analyses)
    };
    internal.restore();
    let outcome = if refused {
        "refused"
    } else if plan.is_noop() {
        "no-op"
    } else {
        "would apply"
    };
    Ok(json!({
        "project": project,
        "version": manifest.version.to_string(),
        "previous_version": previous_version,
        "outcome": outcome,
        "changes": changes,
        "warnings": plan.warnings,
        "execution": execution,
        "duration_ms": round(started.elapsed().as_secs_f64() * 1000.0),
    }))
}

fn hazard_report(h: &Hazard, allowed: &[pg_deploy_core::hazards::HazardKind]) -> Value {
    json!({
        "kind": h.kind.as_str(),
        "table": h.table.as_ref().map(|t| t.name.clone()),
        "rows": h.table.as_ref().map(|t| t.rows),
        "bytes": h.table.as_ref().map(|t| t.bytes),
        "big": h.big,
        "allowed": allowed.contains(&h.kind),
        "refused": h.refused(allowed),
        "reason": h.reason,
    })
}

fn change_report(
    change: &Change,
    action: Action,
    analysis: Option<&ChangeAnalysis>,
    objection: Option<DeployError>,
) -> Value {
    let action_name = match (action, &objection) {
        (_, Some(_)) => "refuse",
        (Action::Apply, _) => "apply",
        (Action::Rerun, _) => "rerun",
        (Action::Skip, _) => "skip",
        (Action::Accept, _) => "accept",
    };
    let mut out = json!({"id": change.id, "kind": change.kind.as_str(), "action": action_name});
    let Some(analysis) = analysis else { return out };
    let allow = &analysis.settings.allow;
    let statements: Vec<Value> = analysis
        .statements
        .iter()
        .map(|s| {
            let (line, column) = line_col(&change.sql, skip_blank(&change.sql, s.statement.start));
            json!({
                "line": line,
                "column": column,
                "kind": s.statement.kind,
                "locks": s.statement.lock.as_ref().map(|(table, mode)| vec![json!({"table": table.to_string(), "mode": mode})]).unwrap_or_default(),
                "hazards": s.hazards.iter().map(|h| hazard_report(h, allow)).collect::<Vec<_>>(),
                "refusal": s.refusal.as_ref().map(|r| json!({"sqlstate": r.sqlstate.code(), "reason": r.reason, "hint": r.hint})),
            })
        })
        .collect();
    let settings = &analysis.settings;
    out["settings"] = json!({
        "search_path": settings.search_path,
        "lock_timeout": settings.lock_timeout,
        "statement_timeout": settings.statement_timeout,
        "lock_retries": settings.lock_retries,
        "allow": settings.allow.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
    });
    out["statements"] = Value::Array(statements);
    if let Some(objection) = objection {
        out["objection"] = json!({"sqlstate": objection.code_text(), "message": objection.to_string()});
    }
    out
}

/// Runs every pending change inside one subtransaction and always rolls it
/// back: proof that the changes run, with nothing left behind.
fn execute_and_roll_back(
    client: &mut SpiClient<'_>,
    manifest: &Manifest,
    actions: &[Action],
    analyses: &[Option<ChangeAnalysis>],
) -> Value {
    let started = Instant::now();
    let failed: RefCell<Option<Value>> = RefCell::new(None);
    let outcome = in_subtransaction(|| {
        for ((change, action), analysis) in manifest.changes.iter().zip(actions).zip(analyses) {
            let (true, Some(analysis)) = (action.runs(), analysis) else {
                continue;
            };
            let statements = analysis.plain_statements();
            let work = ChangeWork {
                id: &change.id,
                sql: &change.sql,
                statements: &statements,
                verify: change.verify.as_deref(),
            };
            if let Err(failure) = run_change(client, &work, &analysis.settings) {
                let location = match failure.statement {
                    Some(i) => ChangeLocation::of_statement(&manifest.project, change, &statements, i, failure.at),
                    None => ChangeLocation::new(&manifest.project, &change.id, &change.sql, failure.at),
                };
                let error = DeployError::ChangeFailed {
                    location: location.clone(),
                    error: failure.error,
                };
                *failed.borrow_mut() = Some(json!({
                    "executed": true, "ok": false, "change": change.id,
                    "sqlstate": error.code_text(), "message": error.to_string(),
                    "line": location.line_col.map(|lc| lc.0), "column": location.line_col.map(|lc| lc.1),
                }));
                break;
            }
        }
        Err::<(), _>(CaughtPgError::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "plan rolls back",
        ))
    });
    let ms = round(started.elapsed().as_secs_f64() * 1000.0);
    match (failed.into_inner(), outcome) {
        (Some(report), _) => report,
        (None, Err(e)) if e.code != PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION => {
            json!({"executed": true, "ok": false, "sqlstate": "XX000", "message": e.message})
        }
        _ => json!({"executed": true, "ok": true, "rolled_back": true, "duration_ms": ms}),
    }
}
