//! Running the queued steps: a transactional phase as one atomic transaction,
//! and the bookkeeping every step shares (what runs next, started, done,
//! failed), recorded in the queue, its events and the hash-chained log.

use super::queue::settings_of;
use super::worker::in_transaction;
use crate::analyze::RunSettings;
use crate::drift;
use crate::error::DeployError;
use crate::execute::{run_change, ChangeWork};
use crate::owner::{Owner, Schema};
use crate::record::{self, ChangeRecord, Counts, DeploymentRecord};
use crate::session::{session_facts, SessionFacts};
use crate::statements;
use crate::subxact::PgError;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::json;

/// One queued change, as the worker reads it.
#[derive(Debug, Clone)]
pub struct Row {
    pub deployment_id: i64,
    pub step: i32,
    pub ordinal: i32,
    pub change_id: String,
    pub kind: String,
    pub action: String,
    pub checksum: String,
    pub online: bool,
    pub repeat_pause: Option<String>,
    pub sql: String,
    pub verify: Option<String>,
    pub revert_sql: Option<String>,
    pub settings: RunSettings,
    /// "running" when a worker was on it and is gone.
    pub state: String,
}

/// The rows of the first unfinished step of `deployment_id`; None when the
/// queue is finished, failed or superseded by a later deployment.
pub fn next_step(client: &mut SpiClient<'_>, deployment_id: i64) -> Result<Option<Vec<Row>>, DeployError> {
    let rows = client.update(
        "SELECT q.step, q.ordinal, q.change_id, q.kind, q.action, q.checksum, q.online,
                CASE WHEN q.repeat_until_no_rows THEN q.repeat_pause END,
                q.sql, q.verify, q.revert_sql, q.settings, q.state
           FROM deploy.phase_queue q
          WHERE q.deployment_id = $1
            AND q.step = (SELECT min(m.step) FROM deploy.phase_queue m
                           WHERE m.deployment_id = $1 AND m.state IN ('pending', 'running'))
            AND NOT EXISTS (SELECT FROM deploy.phase_queue f
                             WHERE f.deployment_id = $1 AND f.state IN ('failed', 'superseded'))
          ORDER BY q.ordinal
          FOR UPDATE OF q",
        None,
        &[deployment_id.into()],
    )?;
    let mut out = Vec::new();
    for row in rows {
        let text = |v: Option<String>| v.unwrap_or_default();
        out.push(Row {
            deployment_id,
            step: row.get::<i32>(1)?.unwrap_or_default(),
            ordinal: row.get::<i32>(2)?.unwrap_or_default(),
            change_id: text(row.get::<String>(3)?),
            kind: text(row.get::<String>(4)?),
            action: text(row.get::<String>(5)?),
            checksum: text(row.get::<String>(6)?),
            online: row.get::<bool>(7)?.unwrap_or(false),
            repeat_pause: row.get::<String>(8)?,
            sql: text(row.get::<String>(9)?),
            verify: row.get::<String>(10)?,
            revert_sql: row.get::<String>(11)?,
            settings: settings_of(&row.get::<JsonB>(12)?.unwrap_or(JsonB(json!({})))),
            state: text(row.get::<String>(13)?),
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Marks the rows of a step running and returns who runs it (for the record).
pub fn mark_running(client: &mut SpiClient<'_>, owner: Owner, rows: &[Row]) -> Result<SessionFacts, DeployError> {
    let facts = session_facts()?;
    owner.run(|| -> Result<(), DeployError> {
        for row in rows {
            client.update(
                "UPDATE deploy.phase_queue
                    SET state = 'running', attempts = attempts + 1,
                        started_at = coalesce(started_at, pg_catalog.clock_timestamp())
                  WHERE deployment_id = $1 AND ordinal = $2",
                None,
                &[row.deployment_id.into(), row.ordinal.into()],
            )?;
            event(client, row, "started", None)?;
        }
        Ok(())
    })?;
    Ok(facts)
}

/// Appends an event for `row`.
pub fn event(client: &mut SpiClient<'_>, row: &Row, event: &str, error: Option<&PgError>) -> Result<(), DeployError> {
    client.update(
        "INSERT INTO deploy.phase_events (deployment_id, project, step, change_id, event, sqlstate, message)
         SELECT q.deployment_id, q.project, q.step, q.change_id, $3, $4, $5
           FROM deploy.phase_queue q WHERE q.deployment_id = $1 AND q.ordinal = $2",
        None,
        &[
            row.deployment_id.into(),
            row.ordinal.into(),
            event.into(),
            error.map(|e| e.sqlstate.clone()).into(),
            error.map(|e| e.message.clone()).into(),
        ],
    )?;
    Ok(())
}

/// What a finished change adds to the step's record.
pub struct Finished {
    pub statements: i32,
    pub retries: i32,
    pub duration_ms: f64,
    pub rounds: i64,
    pub rows: i64,
}

/// Records a step as done: its rows, an event each, and a 'phase' deployment
/// in the project's hash chain with the changes in its change_log, so that
/// the history (and the next plan) sees them applied. Run as the owner.
pub fn record_done(
    client: &mut SpiClient<'_>,
    project: &str,
    facts: &SessionFacts,
    done: &[(&Row, Finished)],
) -> Result<(), DeployError> {
    let Some((first, _)) = done.first() else {
        return Ok(());
    };
    let mut records = Vec::new();
    for (row, f) in done {
        client.update(
            "UPDATE deploy.phase_queue
                SET state = 'done', finished_at = pg_catalog.clock_timestamp(),
                    rounds = $3, rows_affected = $4, sqlstate = NULL, message = NULL
              WHERE deployment_id = $1 AND ordinal = $2",
            None,
            &[
                row.deployment_id.into(),
                row.ordinal.into(),
                f.rounds.into(),
                f.rows.into(),
            ],
        )?;
        event(client, row, "done", None)?;
        records.push(ChangeRecord {
            ordinal: row.ordinal,
            id: row.change_id.clone(),
            kind: if row.kind == "repeatable" {
                "repeatable"
            } else {
                "versioned"
            },
            action: if row.action == "rerun" { "rerun" } else { "applied" },
            checksum: row.checksum.clone(),
            statements: f.statements,
            retries: f.retries,
            duration_ms: f.duration_ms,
            finished_after_ms: f.duration_ms,
            revert_sql: row.revert_sql.clone(),
        });
    }
    let options = json!({"phase_of": first.deployment_id, "step": first.step});
    record_step(
        client,
        project,
        facts,
        first.deployment_id,
        "phase",
        options,
        Vec::new(),
        records,
    )
}

/// Records a step as failed: the failing row, an event, and a
/// 'phase-failed' deployment in the hash chain. Run as the owner.
pub fn record_failed(
    client: &mut SpiClient<'_>,
    project: &str,
    facts: &SessionFacts,
    row: &Row,
    error: &PgError,
) -> Result<(), DeployError> {
    client.update(
        "UPDATE deploy.phase_queue
            SET state = 'failed', finished_at = pg_catalog.clock_timestamp(), sqlstate = $3, message = $4
          WHERE deployment_id = $1 AND ordinal = $2",
        None,
        &[
            row.deployment_id.into(),
            row.ordinal.into(),
            error.sqlstate.as_str().into(),
            error.message.as_str().into(),
        ],
    )?;
    client.update(
        "UPDATE deploy.phase_queue SET state = 'pending'
          WHERE deployment_id = $1 AND step = $2 AND state = 'running'",
        None,
        &[row.deployment_id.into(), row.step.into()],
    )?;
    event(client, row, "failed", Some(error))?;
    let options = json!({"phase_of": row.deployment_id, "step": row.step, "change": row.change_id,
                         "sqlstate": error.sqlstate});
    let warning = format!(
        "change \"{}\" failed: {} {}",
        row.change_id, error.sqlstate, error.message
    );
    record_step(
        client,
        project,
        facts,
        row.deployment_id,
        "phase-failed",
        options,
        vec![warning],
        Vec::new(),
    )
}

#[allow(clippy::too_many_arguments)]
fn record_step(
    client: &mut SpiClient<'_>,
    project: &str,
    facts: &SessionFacts,
    deployment_id: i64,
    outcome: &'static str,
    options: serde_json::Value,
    warnings: Vec<String>,
    changes: Vec<ChangeRecord>,
) -> Result<(), DeployError> {
    let parent = client
        .update(
            "SELECT version, manifest_sha256 FROM deploy.deployments WHERE id = $1",
            Some(1),
            &[deployment_id.into()],
        )?
        .first();
    let version = parent.get::<String>(1)?.unwrap_or_default();
    let manifest_sha256 = parent.get::<String>(2)?;
    let fingerprint = match drift::recorded_schemas(client, project)? {
        Some(schemas) if !changes.is_empty() => Some(drift::fingerprint(client, project, &schemas, Schema::V0_2)?),
        _ => None,
    };
    // The step's events (started, retries, reconciliations, the outcome) go
    // into the options, which the row's hash covers: the chain keeps them.
    let step = options
        .get("step")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or_default() as i32;
    let events = client
        .update(
            "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                        'event', e.event, 'change', e.change_id, 'sqlstate', e.sqlstate, 'message', e.message,
                        'pid', e.pid, 'at', e.at)) ORDER BY e.id), '[]')
               FROM deploy.phase_events e
              WHERE e.deployment_id = $1 AND e.step = $2",
            Some(1),
            &[deployment_id.into(), step.into()],
        )?
        .first()
        .get_one::<JsonB>()?
        .map(|j| j.0)
        .unwrap_or_default();
    let mut options = options;
    options["events"] = events;
    let counts = Counts::of(&changes, 0);
    record::record(
        client,
        DeploymentRecord {
            project,
            version: version.clone(),
            previous_version: Some(version),
            outcome,
            manifest_sha256: manifest_sha256.as_deref(),
            manifest: None,
            session: facts,
            counts,
            options,
            warnings,
            fingerprint,
            schema: Schema::V0_2,
        },
        changes,
    )?;
    Ok(())
}

/// Runs the changes of a transactional step in the current transaction, each
/// in its subtransaction with lock retries, then records the step as done.
/// `failed_at` is left at the index of the change that failed.
pub fn run_changes(
    client: &mut SpiClient<'_>,
    owner: Owner,
    project: &str,
    facts: &SessionFacts,
    rows: &[Row],
    failed_at: &mut usize,
) -> Result<(), DeployError> {
    let mut done = Vec::new();
    let _lineage = crate::lineage::deploying_in(project, rows.first().map(|r| r.deployment_id));
    for (i, row) in rows.iter().enumerate() {
        *failed_at = i;
        let statements = statements::split(&row.sql).map_err(|f| DeployError::Postgres(f.error))?;
        let work = ChangeWork {
            id: &row.change_id,
            sql: &row.sql,
            statements: &statements,
            verify: row.verify.as_deref(),
        };
        let run = run_change(client, &work, &row.settings).map_err(|f| DeployError::Postgres(f.error))?;
        done.push((
            row,
            Finished {
                statements: statements.len() as i32,
                retries: run.retries as i32,
                duration_ms: run.duration.as_secs_f64() * 1000.0,
                rounds: 1,
                rows: 0,
            },
        ));
    }
    owner.run(|| record_done(client, project, facts, &done))
}

/// Runs a transactional phase: every change of the step in one transaction,
/// each in its subtransaction with lock retries, and the record of it in the
/// same transaction, so the step is either done and recorded or not at all.
/// Returns false when it failed (recorded as such).
pub fn transaction_step(owner: Owner, project: &str, rows: &[Row]) -> bool {
    let facts = match in_transaction(|client| mark_running(client, owner, rows)) {
        Ok(facts) => facts,
        Err(e) => {
            pgrx::warning!("pg_deploy: deployment {}: {}", rows[0].deployment_id, e.message);
            return false;
        }
    };
    let mut failed_at = 0;
    let outcome = in_transaction(|client| run_changes(client, owner, project, &facts, rows, &mut failed_at));
    match outcome {
        Ok(()) => true,
        Err(error) => {
            let row = &rows[failed_at];
            if let Err(e) = in_transaction(|client| owner.run(|| record_failed(client, project, &facts, row, &error))) {
                pgrx::warning!("pg_deploy: deployment {}: {}", row.deployment_id, e.message);
            }
            false
        }
    }
}
