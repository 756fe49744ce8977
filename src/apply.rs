//! `deploy.apply(manifest, options)`: validate, lock, plan, run, record, report.

use crate::error::{ChangeLocation, DeployError};
use crate::execute::run_change;
use crate::history::{self, ChangeRecord, DeploymentRecord};
use crate::statements::{self, Statement};
use crate::subxact::{from_caught, GucLevel};
use pg_deploy_core::plan::{check_requirements, plan, postgres_version, ServerFacts};
use pg_deploy_core::{Action, ApplyOptions, History, Manifest};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

/// Applies every pending change of `manifest` in the caller's transaction and
/// returns a report. See docs/manifest.md and docs/errors.md.
#[pg_extern(volatile, parallel_unsafe)]
fn apply(manifest: Option<JsonB>, options: default!(Option<JsonB>, "'{}'")) -> JsonB {
    let manifest = manifest.map_or(Value::Null, |m| m.0);
    let options = options.map_or(Value::Null, |o| o.0);
    // Errors raised by PostgreSQL outside a change are re-raised as they came,
    // without pgrx's Rust backtrace in their detail.
    let outcome = PgTryBuilder::new(AssertUnwindSafe(|| deploy(manifest, options)))
        .catch_others(|caught| Err(DeployError::Postgres(from_caught(caught))))
        .execute();
    match outcome {
        Ok(report) => JsonB(report),
        Err(error) => error.raise("deploy.apply"),
    }
}

fn deploy(manifest_doc: Value, options_doc: Value) -> Result<Value, DeployError> {
    let manifest = Manifest::from_value(&manifest_doc).map_err(DeployError::Manifest)?;
    let options = ApplyOptions::from_value(&options_doc).map_err(DeployError::Options)?;
    Spi::connect_mut(|client| deploy_with(client, &manifest, manifest_doc, &options, options_doc))
}

fn deploy_with(
    client: &mut SpiClient<'_>,
    manifest: &Manifest,
    manifest_doc: Value,
    options: &ApplyOptions,
    options_doc: Value,
) -> Result<Value, DeployError> {
    let started = Instant::now();
    let session = history::session_facts(client)?;
    let facts = ServerFacts {
        postgres: postgres_version(session.server_version_num),
        installed_extensions: session.extensions.clone(),
        pg_deploy: semver::Version::parse(pg_deploy_core::VERSION)
            .map_err(|e| DeployError::Internal(e.to_string()))?,
    };
    check_requirements(manifest, &facts)?;

    let internal = GucLevel::open();
    history::use_internal_search_path(client)?;
    let project = manifest.project.as_str();
    history::lock_project(client, project, options.wait)?;
    let previous_version = history::claim_project(client, project)?;
    let deployed_version = match &previous_version {
        None => None,
        Some(v) => Some(semver::Version::parse(v).map_err(|e| {
            DeployError::Internal(format!(
                "deployed version \"{v}\" of \"{project}\" is not semver: {e}"
            ))
        })?),
    };
    let history = History {
        deployed_version,
        applied: history::applied_changes(client, project)?,
    };
    let plan = plan(manifest, &history, options)?;
    for warning in &plan.warnings {
        pgrx::warning!("pg_deploy: {project}: {warning}");
    }

    // Parse everything that will run before anything runs.
    let mut parsed: Vec<Option<Vec<Statement>>> = Vec::with_capacity(plan.actions.len());
    for (change, action) in manifest.changes.iter().zip(&plan.actions) {
        if !action.runs() {
            parsed.push(None);
            continue;
        }
        let statements = statements::split(&change.sql).map_err(|failure| DeployError::Syntax {
            location: ChangeLocation::new(project, &change.id, &change.sql, failure.at),
            error: failure.error,
        })?;
        parsed.push(Some(statements));
    }

    let mut records = Vec::new();
    let (mut applied, mut rerun, mut skipped, mut accepted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (ordinal, ((change, action), statements)) in manifest
        .changes
        .iter()
        .zip(&plan.actions)
        .zip(&parsed)
        .enumerate()
    {
        let mut record = ChangeRecord {
            ordinal: ordinal as i32,
            id: change.id.clone(),
            kind: change.kind.as_str(),
            action: action.as_str(),
            checksum: change.checksum.clone(),
            statements: 0,
            duration_ms: 0.0,
            finished_after_ms: 0.0,
        };
        match (action, statements) {
            (Action::Skip, _) => {
                skipped.push(json!(change.id));
                continue;
            }
            (Action::Accept, _) => accepted.push(json!(change.id)),
            (Action::Apply | Action::Rerun, Some(statements)) => {
                let mut settings = change.settings.over(&manifest.defaults);
                settings
                    .search_path
                    .get_or_insert_with(|| session.search_path.clone());
                let took =
                    run_change(client, &change.sql, statements, &settings).map_err(|failure| {
                        let mut location =
                            ChangeLocation::new(project, &change.id, &change.sql, failure.at);
                        location.statement = failure.statement.map(|i| {
                            let s = &statements[i];
                            (
                                i,
                                statements.len(),
                                s.kind.clone(),
                                change.sql[s.start..s.end].to_string(),
                            )
                        });
                        DeployError::ChangeFailed {
                            location,
                            error: failure.error,
                        }
                    })?;
                let ms = took.as_secs_f64() * 1000.0;
                record.statements = statements.len() as i32;
                record.duration_ms = ms;
                let entry = json!({"id": change.id, "kind": change.kind.as_str(),
                                   "statements": statements.len(), "duration_ms": round(ms)});
                let verb = if *action == Action::Apply {
                    "applied"
                } else {
                    "re-ran"
                };
                pgrx::notice!(
                    "pg_deploy: {project}: {verb} \"{}\" ({} statement(s), {:.1} ms)",
                    change.id,
                    statements.len(),
                    ms
                );
                if *action == Action::Apply {
                    applied.push(entry)
                } else {
                    rerun.push(entry)
                }
            }
            (Action::Apply | Action::Rerun, None) => {
                return Err(DeployError::Internal(format!(
                    "change \"{}\" was not parsed",
                    change.id
                )))
            }
        }
        record.finished_after_ms = started.elapsed().as_secs_f64() * 1000.0;
        records.push(record);
    }

    let outcome = if plan.is_noop() { "no-op" } else { "applied" };
    let counts = [
        applied.len() as i32,
        rerun.len() as i32,
        skipped.len() as i32,
        accepted.len() as i32,
    ];
    let (deployment_id, duration_ms) = history::record(
        client,
        DeploymentRecord {
            project,
            version: manifest.version.to_string(),
            previous_version: previous_version.clone(),
            outcome,
            manifest_sha256: &manifest.sha256,
            manifest: manifest_doc,
            started_at: session.started_at,
            counts,
            options: options_doc,
            warnings: plan.warnings.clone(),
        },
        records,
    )?;
    internal.restore();

    Ok(json!({
        "project": project,
        "version": manifest.version.to_string(),
        "previous_version": previous_version,
        "outcome": outcome,
        "deployment_id": deployment_id,
        "manifest_sha256": manifest.sha256,
        "applied": applied,
        "rerun": rerun,
        "skipped": skipped,
        "accepted": accepted,
        "warnings": plan.warnings,
        "duration_ms": round(duration_ms),
    }))
}

/// Milliseconds to three decimals, so reports stay readable.
fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
