//! The recorded history: the project lock, what was applied, and the
//! deployment log. Every query is schema-qualified and runs under
//! `search_path = pg_catalog, pg_temp`; manifest strings only travel as parameters.

use crate::error::DeployError;
use crate::owner::Owner;
use crate::subxact::GucLevel;
use pg_deploy_core::checksum::sha256_hex;
use pg_deploy_core::{AppliedChange, ChangeKind};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use std::collections::HashMap;

/// What the session looks like before pg_deploy touches it.
pub struct SessionFacts {
    pub server_version_num: i64,
    pub search_path: String,
    pub lock_timeout: String,
    /// Who called, taken before history is written as the extension's owner.
    pub current_user: String,
    pub session_user: String,
    pub extensions: Vec<String>,
    pub started_at: TimestampWithTimeZone,
}

pub fn session_facts(client: &mut SpiClient<'_>) -> Result<SessionFacts, DeployError> {
    let row = client
        .update(
            "SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int8,
                    pg_catalog.current_setting('search_path'),
                    ARRAY(SELECT extname::pg_catalog.text FROM pg_catalog.pg_extension),
                    pg_catalog.clock_timestamp(),
                    pg_catalog.current_setting('lock_timeout'),
                    current_user::pg_catalog.text, session_user::pg_catalog.text",
            Some(1),
            &[],
        )?
        .first();
    let missing = || DeployError::Internal("session facts query returned no row".into());
    Ok(SessionFacts {
        server_version_num: row.get::<i64>(1)?.ok_or_else(missing)?,
        search_path: row.get::<String>(2)?.unwrap_or_default(),
        extensions: row.get::<Vec<String>>(3)?.unwrap_or_default(),
        started_at: row.get::<TimestampWithTimeZone>(4)?.ok_or_else(missing)?,
        lock_timeout: row.get::<String>(5)?.unwrap_or_default(),
        current_user: row.get::<String>(6)?.unwrap_or_default(),
        session_user: row.get::<String>(7)?.unwrap_or_default(),
    })
}

/// What every call that works on a project's history starts with.
pub struct Opened {
    pub session: SessionFacts,
    /// The GUC level of the internal search_path; restored when the call succeeds.
    pub internal: GucLevel,
    pub owner: Owner,
    /// The deployed version before this call.
    pub previous_version: Option<String>,
}

/// Switches to the internal search_path and, with `lock: Some(wait)`, takes the
/// project's lock and claims its row (apply, baseline, revert); with `None` it
/// only reads (plan).
pub fn open_project(
    client: &mut SpiClient<'_>,
    session: SessionFacts,
    project: &str,
    lock: Option<bool>,
) -> Result<Opened, DeployError> {
    let internal = GucLevel::open();
    use_internal_search_path(client)?;
    let owner = Owner::of_extension(client)?;
    let previous_version = match lock {
        Some(wait) => {
            lock_project(client, project, wait)?;
            owner.run(|| claim_project(client, project))?
        }
        None => owner.run(|| deployed_version(client, project))?,
    };
    Ok(Opened {
        session,
        internal,
        owner,
        previous_version,
    })
}

/// Internal queries resolve functions and operators in pg_catalog only.
fn use_internal_search_path(client: &mut SpiClient<'_>) -> Result<(), DeployError> {
    client.update(
        "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)",
        None,
        &[],
    )?;
    Ok(())
}

/// First key of pg_deploy's transaction-scoped advisory locks ('PDEP'); the
/// second is taken from the project name's sha256.
pub const LOCK_CLASS: i32 = 0x5044_4550;

pub fn lock_key(project: &str) -> i32 {
    let hex = sha256_hex(project.as_bytes());
    u32::from_str_radix(&hex[..8], 16).map(|k| k as i32).unwrap_or(0)
}

/// Serialises deployments of one project until the transaction ends.
pub fn lock_project(client: &mut SpiClient<'_>, project: &str, wait: bool) -> Result<(), DeployError> {
    let key = lock_key(project);
    if wait {
        client.update(
            "SELECT pg_catalog.pg_advisory_xact_lock($1, $2)",
            None,
            &[LOCK_CLASS.into(), key.into()],
        )?;
        return Ok(());
    }
    let got = client
        .update(
            "SELECT pg_catalog.pg_try_advisory_xact_lock($1, $2)",
            Some(1),
            &[LOCK_CLASS.into(), key.into()],
        )?
        .first()
        .get_one::<bool>()?;
    if got == Some(true) {
        Ok(())
    } else {
        Err(DeployError::Locked {
            project: project.to_string(),
        })
    }
}

/// Claims the project's row (creating it on first use) and returns the
/// deployed version. Writing the row makes a REPEATABLE READ or SERIALIZABLE
/// caller fail with a serialization error, instead of re-applying, when another
/// deployment committed after its snapshot was taken.
pub fn claim_project(client: &mut SpiClient<'_>, project: &str) -> Result<Option<String>, DeployError> {
    let version = client
        .update(
            "INSERT INTO deploy.projects AS p (project) VALUES ($1)
             ON CONFLICT (project) DO UPDATE SET updated_at = p.updated_at
             RETURNING p.version",
            Some(1),
            &[project.into()],
        )?
        .first()
        .get_one::<String>()?;
    Ok(version)
}

/// The deployed version, read without claiming the project (for deploy.plan).
pub fn deployed_version(client: &mut SpiClient<'_>, project: &str) -> Result<Option<String>, DeployError> {
    let rows = client.update(
        "SELECT version FROM deploy.projects WHERE project = $1",
        Some(1),
        &[project.into()],
    )?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(rows.first().get_one::<String>()?)
}

/// The latest recorded checksum and kind of every change of the project that
/// is applied now (not reverted since).
pub fn applied_changes(
    client: &mut SpiClient<'_>,
    project: &str,
) -> Result<HashMap<String, AppliedChange>, DeployError> {
    let rows = client.update(
        "SELECT change_id, kind, checksum
           FROM (SELECT DISTINCT ON (change_id) change_id, kind, checksum, action
                   FROM deploy.change_log
                  WHERE project = $1
                  ORDER BY change_id, deployment_id DESC) latest
          WHERE action <> 'reverted'",
        None,
        &[project.into()],
    )?;
    let mut applied = HashMap::with_capacity(rows.len());
    for row in rows {
        let (Some(id), Some(kind), Some(checksum)) =
            (row.get::<String>(1)?, row.get::<String>(2)?, row.get::<String>(3)?)
        else {
            return Err(DeployError::Internal("NULL in deploy.change_log".into()));
        };
        let kind = ChangeKind::parse(&kind)
            .ok_or_else(|| DeployError::Internal(format!("unknown change kind \"{kind}\" in deploy.change_log")))?;
        applied.insert(id, AppliedChange { checksum, kind });
    }
    Ok(applied)
}

/// Who holds locks on a table now, for the error when a change could not get its lock.
pub fn lock_holders(client: &mut SpiClient<'_>, table_oid: u32) -> Result<Option<String>, DeployError> {
    let holders = client
        .update(
            "SELECT pg_catalog.string_agg(pg_catalog.format('pid %s (%s, application \"%s\", %s)',
                        l.pid, l.mode, a.application_name, a.state), '; ' ORDER BY l.pid)
               FROM pg_catalog.pg_locks l
               LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'relation' AND l.relation = $1::pg_catalog.oid AND l.granted
                AND l.pid <> pg_catalog.pg_backend_pid()",
            Some(1),
            &[i64::from(table_oid).into()],
        )?
        .first()
        .get_one::<String>()?;
    Ok(holders)
}

/// One change that ran, or was accepted, baselined or reverted, in this deployment.
pub struct ChangeRecord {
    pub ordinal: i32,
    pub id: String,
    pub kind: &'static str,
    pub action: &'static str,
    pub checksum: String,
    pub statements: i32,
    pub retries: i32,
    pub duration_ms: f64,
    /// Milliseconds from the start of the deployment to the end of this change.
    pub finished_after_ms: f64,
    pub revert_sql: Option<String>,
}

/// How many changes a deployment applied, re-ran, skipped, accepted, baselined, reverted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub applied: i32,
    pub rerun: i32,
    pub skipped: i32,
    pub accepted: i32,
    pub baselined: i32,
    pub reverted: i32,
}

pub struct DeploymentRecord<'a> {
    pub project: &'a str,
    pub version: String,
    pub previous_version: Option<String>,
    pub outcome: &'static str,
    pub manifest_sha256: Option<&'a str>,
    /// The manifest, stored once per sha256; None when there is none (revert).
    pub manifest: Option<serde_json::Value>,
    /// The caller: when the call started and who made it.
    pub session: &'a SessionFacts,
    pub counts: Counts,
    pub options: serde_json::Value,
    pub warnings: Vec<String>,
    pub fingerprint: Option<String>,
}

/// Writes the deployment, its changes, its link in the project's hash chain
/// and the project's new head; returns the deployment id and its duration as
/// recorded. Run it as the extension's owner.
pub fn record(
    client: &mut SpiClient<'_>,
    d: DeploymentRecord<'_>,
    changes: Vec<ChangeRecord>,
) -> Result<(i64, f64), DeployError> {
    if let (Some(manifest), Some(sha)) = (d.manifest, d.manifest_sha256) {
        // A re-applied manifest is stored already: skip turning it back into jsonb.
        let stored = client
            .update(
                "SELECT EXISTS (SELECT FROM deploy.manifests WHERE sha256 = $1)",
                Some(1),
                &[sha.into()],
            )?
            .first()
            .get_one::<bool>()?;
        if stored != Some(true) {
            client.update(
                "INSERT INTO deploy.manifests (sha256, manifest) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
                None,
                &[sha.into(), JsonB(manifest).into()],
            )?;
        }
    }
    let c = d.counts;
    let row = client
        .update(
            "INSERT INTO deploy.deployments
               (project, version, previous_version, outcome, manifest_sha256,
                applied_by, session_user_name, application_name, client_addr, backend_pid,
                started_at, finished_at, duration_ms,
                changes_applied, changes_rerun, changes_skipped, changes_accepted, changes_baselined, changes_reverted,
                options, warnings, pg_deploy_version, fingerprint, prev_hash)
             VALUES ($1, $2, $3, $4, $5,
                     $17, $18, pg_catalog.current_setting('application_name'),
                     pg_catalog.inet_client_addr(), pg_catalog.pg_backend_pid(),
                     $6, pg_catalog.clock_timestamp(),
                     pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - $6) * 1000, 3)::pg_catalog.float8,
                     $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     coalesce((SELECT row_hash FROM deploy.deployments WHERE project = $1 ORDER BY id DESC LIMIT 1), ''))
             RETURNING id, duration_ms",
            Some(1),
            &[
                d.project.into(),
                d.version.clone().into(),
                d.previous_version.into(),
                d.outcome.into(),
                d.manifest_sha256.into(),
                d.session.started_at.into(),
                c.applied.into(),
                c.rerun.into(),
                c.skipped.into(),
                c.accepted.into(),
                c.baselined.into(),
                c.reverted.into(),
                JsonB(d.options).into(),
                d.warnings.into(),
                pg_deploy_core::VERSION.into(),
                d.fingerprint.into(),
                d.session.current_user.as_str().into(),
                d.session.session_user.as_str().into(),
            ],
        )?
        .first();
    let missing = || DeployError::Internal("INSERT INTO deploy.deployments returned no row".into());
    let id = row.get::<i64>(1)?.ok_or_else(missing)?;
    let duration_ms = row.get::<f64>(2)?.ok_or_else(missing)?;

    if !changes.is_empty() {
        let mut cols = ChangeColumns::default();
        for c in changes {
            cols.ordinal.push(c.ordinal);
            cols.id.push(c.id);
            cols.kind.push(c.kind.to_string());
            cols.action.push(c.action.to_string());
            cols.checksum.push(c.checksum);
            cols.statements.push(c.statements);
            cols.retries.push(c.retries);
            cols.duration_ms.push(c.duration_ms);
            cols.finished_after_ms.push(c.finished_after_ms);
            cols.revert_sql.push(c.revert_sql);
        }
        client.update(
            "INSERT INTO deploy.change_log
               (deployment_id, ordinal, project, change_id, kind, action, checksum, statements,
                lock_retries, duration_ms, applied_at, revert_sql)
             SELECT $1, u.o, $2, u.i, u.k, u.a, u.c, u.s, u.r, u.d,
                    $3 + pg_catalog.make_interval(secs => u.f / 1000), u.v
               FROM ROWS FROM (pg_catalog.unnest($4::pg_catalog.int4[]), pg_catalog.unnest($5::pg_catalog.text[]),
                               pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.text[]),
                               pg_catalog.unnest($8::pg_catalog.text[]), pg_catalog.unnest($9::pg_catalog.int4[]),
                               pg_catalog.unnest($10::pg_catalog.int4[]), pg_catalog.unnest($11::pg_catalog.float8[]),
                               pg_catalog.unnest($12::pg_catalog.float8[]), pg_catalog.unnest($13::pg_catalog.text[]))
                    AS u(o, i, k, a, c, s, r, d, f, v)",
            None,
            &[
                id.into(),
                d.project.into(),
                d.session.started_at.into(),
                cols.ordinal.into(),
                cols.id.into(),
                cols.kind.into(),
                cols.action.into(),
                cols.checksum.into(),
                cols.statements.into(),
                cols.retries.into(),
                cols.duration_ms.into(),
                cols.finished_after_ms.into(),
                cols.revert_sql.into(),
            ],
        )?;
    }
    // The row's hash covers its change_log rows, so it is written last.
    client.update(
        "UPDATE deploy.deployments d SET row_hash = deploy.deployment_digest(d) WHERE d.id = $1",
        None,
        &[id.into()],
    )?;
    client.update(
        "UPDATE deploy.projects
            SET version = $2, last_deployment_id = $3, updated_at = pg_catalog.clock_timestamp()
          WHERE project = $1",
        None,
        &[d.project.into(), d.version.into(), id.into()],
    )?;
    Ok((id, duration_ms))
}

#[derive(Default)]
struct ChangeColumns {
    ordinal: Vec<i32>,
    id: Vec<String>,
    kind: Vec<String>,
    action: Vec<String>,
    checksum: Vec<String>,
    statements: Vec<i32>,
    retries: Vec<i32>,
    duration_ms: Vec<f64>,
    finished_after_ms: Vec<f64>,
    revert_sql: Vec<Option<String>>,
}
