//! `deploy.revert(project, to_version, options)`: undo everything deployed
//! after `to_version`, in reverse order, in the caller's transaction.

use crate::analyze::{analyse_change, RunSettings};
use crate::author::Author;
use crate::catalog::SchemaCache;
use crate::deployment::{argument, guarded, open_project, to_json, Finished};
use crate::error::{ChangeLocation, DeployError};
use crate::execute::{run_change, ChangeWork};
use crate::jsonb_arg::JsonbArg;
use crate::owner::{Owner, Schema};
use crate::project_lock::LockWait;
use crate::record::ChangeRecord;
use crate::session::{session_facts, SessionFacts};
use crate::session_state;
use pg_deploy_core::checksum::sql_checksum;
use pg_deploy_core::hazards::Thresholds;
use pg_deploy_core::phases::{Step, StepKind};
use pg_deploy_core::report::{round_ms, RevertReport, RevertedChange};
use pg_deploy_core::revert::{plan_revert, LoggedEvent, RevertStep};
use pg_deploy_core::{Change, ChangeKind, Manifest, ManifestError, PlanError, RevertOptions};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use semver::Version;
use serde_json::Value;
use std::time::Instant;

/// Reverts `project_name` to `to_version` with the revert SQL stored with each
/// change; refuses when a needed revert is missing. Options: `allow` (hazards
/// the revert SQL may have), `wait`, `reason`.
#[pg_extern(volatile, parallel_unsafe)]
fn revert(
    project_name: Option<String>,
    to_version: Option<String>,
    options: default!(Option<JsonbArg>, "'{}'"),
) -> JsonB {
    guarded("deploy.revert", || {
        let options_doc = argument(options, "options").map_err(DeployError::Options)?;
        crate::encoding::check_argument("options", &options_doc)?;
        let project = project_name.ok_or_else(|| {
            DeployError::Options(ManifestError::Missing {
                path: "project_name".into(),
            })
        })?;
        let text = to_version.unwrap_or_default();
        let to = Version::parse(text.trim()).map_err(|e| {
            DeployError::Options(ManifestError::InvalidValue {
                path: "to_version".into(),
                reason: format!("\"{text}\" is not a semantic version: {e}"),
            })
        })?;
        let options = RevertOptions::from_value(&options_doc).map_err(DeployError::Options)?;
        let report = Spi::connect_mut(|client| run_revert(client, &project, &to, &options, options_doc))?;
        to_json(&report)
    })
}

fn events(client: &mut SpiClient<'_>, project: &str) -> Result<Vec<LoggedEvent>, DeployError> {
    let rows = client.update(
        "SELECT l.deployment_id, l.ordinal, d.version, d.outcome, d.manifest_sha256, l.change_id, l.kind,
                l.action, l.checksum, l.revert_sql, d.applied_by::pg_catalog.text
           FROM deploy.change_log l JOIN deploy.deployments d ON d.id = l.deployment_id
          WHERE l.project = $1
          ORDER BY l.deployment_id, l.ordinal",
        None,
        &[project.into()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let version = row.get::<String>(3)?.unwrap_or_default();
        let kind = row.get::<String>(7)?.unwrap_or_default();
        out.push(LoggedEvent {
            deployment_id: row.get::<i64>(1)?.unwrap_or(0),
            ordinal: row.get::<i32>(2)?.unwrap_or(0),
            deployment_version: Version::parse(&version)
                .map_err(|e| DeployError::Internal(format!("recorded version \"{version}\": {e}")))?,
            deployment_outcome: row.get::<String>(4)?.unwrap_or_default(),
            manifest_sha256: row.get::<String>(5)?,
            change_id: row.get::<String>(6)?.unwrap_or_default(),
            kind: ChangeKind::parse(&kind).ok_or_else(|| DeployError::Internal(format!("change kind \"{kind}\"")))?,
            action: row.get::<String>(8)?.unwrap_or_default(),
            checksum: row.get::<String>(9)?.unwrap_or_default(),
            revert_sql: row.get::<String>(10)?,
            recorded_by: row.get::<String>(11)?.unwrap_or_default(),
        });
    }
    Ok(out)
}

fn stored_manifest(client: &mut SpiClient<'_>, sha: &str, schema: Schema) -> Result<Option<Manifest>, DeployError> {
    let query = match schema {
        Schema::V0_1 => "SELECT manifest FROM deploy.manifests WHERE sha256 = $1",
        Schema::V0_2 => "SELECT deploy.manifest_document($1)",
    };
    let doc = client
        .update(query, Some(1), &[sha.into()])?
        .first()
        .get_one::<JsonB>()?;
    Ok(doc.and_then(|d| Manifest::from_value(&d.0).ok()))
}

/// What one revert step runs, and under which settings.
struct StepWork {
    change: Change,
    settings: RunSettings,
    action: &'static str,
    thresholds: Thresholds,
    /// The role the stored SQL runs as.
    author: Author,
}

fn step_work(
    client: &mut SpiClient<'_>,
    project: &str,
    owner: Owner,
    schema: Schema,
    step: &RevertStep,
    session: &SessionFacts,
    options: &RevertOptions,
) -> Result<StepWork, DeployError> {
    let (id, kind, sql, sha, action, author) = match step {
        RevertStep::Undo {
            change_id,
            kind,
            revert_sql,
            manifest_sha256,
            author,
            ..
        } => (
            change_id,
            *kind,
            Some(revert_sql.clone()),
            manifest_sha256.clone(),
            "reverted",
            author,
        ),
        RevertStep::Restore {
            change_id,
            kind,
            manifest_sha256,
            author,
        } => (change_id, *kind, None, Some(manifest_sha256.clone()), "rerun", author),
    };
    let author = Author::resolve(client, project, id, author)?;
    let manifest = match &sha {
        Some(sha) => owner.run(|| stored_manifest(client, sha, schema))?,
        None => None,
    };
    let original = manifest.as_ref().and_then(|m| m.changes.iter().find(|c| &c.id == id));
    let sql = match (sql, original) {
        (Some(sql), _) => sql,
        (None, Some(c)) => c.sql.clone(),
        (None, None) => {
            return Err(DeployError::Internal(format!(
                "the earlier SQL of repeatable change \"{id}\" is not stored"
            )))
        }
    };
    let change = Change {
        id: id.clone(),
        checksum: sql_checksum(&sql),
        sql,
        kind,
        requires: Vec::new(),
        settings: original.map(|c| c.settings.clone()).unwrap_or_default(),
        verify: None,
        revert: None,
        phase: Default::default(),
    };
    let mut settings = match &manifest {
        Some(m) => RunSettings::resolve(&change, m, session),
        None => RunSettings::resolve(&change, &Manifest::empty(), session),
    };
    settings.allow = options.allow.clone();
    let thresholds = manifest.map(|m| m.thresholds).unwrap_or_default();
    Ok(StepWork {
        change,
        settings,
        action,
        thresholds,
        author,
    })
}

fn run_revert(
    client: &mut SpiClient<'_>,
    project: &str,
    to: &Version,
    options: &RevertOptions,
    options_doc: Value,
) -> Result<RevertReport, DeployError> {
    let started = Instant::now();
    let _lineage = crate::lineage::deploying(project);
    let session = session_facts()?;
    let opened = open_project(
        client,
        session,
        project,
        Some(LockWait::new(
            options.wait.unwrap_or(true),
            options.wait_timeout.as_deref(),
        )),
    )?;
    let (owner, session) = (opened.owner, &opened.session);
    let Some(current) = opened.previous_version.clone() else {
        return Err(PlanError::RequirementNotMet {
            project: project.into(),
            what: "deployment",
            requirement: "to revert".into(),
            found: "the project has never been deployed".into(),
        }
        .into());
    };
    let deployed = Version::parse(&current).map_err(|e| DeployError::Internal(e.to_string()))?;
    if *to > deployed {
        return Err(DeployError::Revert {
            message: format!(
                "project \"{project}\": cannot revert to {to}, which is newer than the deployed version {deployed}"
            ),
            missing_reverts: false,
        });
    }
    let log = owner.run(|| events(client, project))?;
    let plan = plan_revert(&log, to).map_err(|missing| DeployError::Revert {
        message: format!(
            "project \"{project}\": cannot revert to {to}: no revert SQL for {}",
            missing
                .0
                .iter()
                .map(|id| format!("\"{id}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        missing_reverts: true,
    })?;

    // Analyse every step before running any, as apply does.
    let mut schemas = SchemaCache::default();
    let mut earlier = pg_deploy_core::hazards::Earlier::default();
    let mut works = Vec::with_capacity(plan.steps.len());
    let mut analyses = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        let work = step_work(client, project, owner, opened.schema, step, session, options)?;
        analyses.push(Some(analyse_change(
            client,
            &mut schemas,
            project,
            &work.change,
            work.settings.clone(),
            &work.thresholds,
            &mut earlier,
        )?));
        works.push(work);
    }
    // A revert is one transaction: every lock it takes is held until it commits.
    let ids = |i: usize| works.get(i).map_or_else(String::new, |w| w.change.id.clone());
    let whole = Step {
        kind: StepKind::Transaction,
        changes: (0..works.len()).collect(),
    };
    crate::analyze::add_held_lock_hazards(&ids, std::slice::from_ref(&whole), &mut analyses);
    let works: Vec<_> = works.into_iter().zip(analyses.into_iter().flatten()).collect();
    for (work, analysis) in &works {
        if let Some(objection) = analysis.first_objection(project, &work.change) {
            return Err(objection);
        }
    }
    let mut records = Vec::new();
    let mut reverted = Vec::new();
    session_state::guard_advisory_locks(client, |client| {
        for (ordinal, (work, analysis)) in works.iter().enumerate() {
            let statements = analysis.plain_statements();
            let change = &work.change;
            let job = ChangeWork::of(change, &statements);
            // Stored SQL never runs with more rights than the role that recorded it.
            let run = work
                .author
                .run(|| run_change(client, &job, &analysis.settings))
                .map_err(|failure| {
                    let location = match failure.statement {
                        Some(i) => ChangeLocation::of_statement(project, change, &statements, i, failure.at),
                        None => ChangeLocation::new(project, &change.id, &change.sql, failure.at),
                    };
                    DeployError::ChangeFailed {
                        location,
                        error: failure.error,
                    }
                })?;
            let ms = run.duration.as_secs_f64() * 1000.0;
            pgrx::notice!("pg_deploy: {project}: {} \"{}\" ({:.1} ms)", work.action, change.id, ms);
            reverted.push(RevertedChange {
                id: change.id.clone(),
                action: work.action.to_string(),
                duration_ms: round_ms(ms),
            });
            let checksum = match (&plan.steps[ordinal], work.action) {
                (RevertStep::Undo { checksum, .. }, _) => checksum.clone(),
                _ => change.checksum.clone(),
            };
            let mut record = ChangeRecord::of(ordinal, change, work.action);
            record.checksum = checksum;
            record.revert_sql = None;
            record.statements = statements.len() as i32;
            record.retries = run.retries as i32;
            record.duration_ms = ms;
            record.finished_after_ms = started.elapsed().as_secs_f64() * 1000.0;
            records.push(record);
        }
        Ok(())
    })?;
    let lineage_schema = opened.schema;
    let recorded = opened.finish(
        client,
        Finished {
            project,
            version: to.to_string(),
            outcome: "revert",
            manifest_sha256: plan.target_manifest.as_deref(),
            manifest: None,
            skipped: 0,
            options: options_doc,
            warnings: Vec::new(),
            fingerprint: None,
        },
        records,
    )?;
    if lineage_schema == Schema::V0_2 {
        crate::lineage::attach(client, owner, project, recorded.id)?;
    }
    Ok(RevertReport {
        project: project.to_string(),
        version: to.to_string(),
        previous_version: current,
        outcome: "revert".into(),
        deployment_id: recorded.id,
        chain_head: Some(recorded.row_hash),
        reverted,
        duration_ms: round_ms(started.elapsed().as_secs_f64() * 1000.0),
    })
}
