//! Writing the deployment log: a deployment, its changes, its link in the
//! project's hash chain. Run as the extension's owner.

use crate::error::DeployError;
use crate::jsonb_arg::StoredJsonb;
use crate::owner::Schema;
use crate::session::SessionFacts;
use pg_deploy_core::Change;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::spi::SpiClient;
use pgrx::{pg_sys, JsonB};

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

impl ChangeRecord {
    /// The record of `change` at `ordinal`, before it runs (times and counts zero).
    pub fn of(ordinal: usize, change: &Change, action: &'static str) -> ChangeRecord {
        ChangeRecord {
            ordinal: ordinal as i32,
            id: change.id.clone(),
            kind: change.kind.as_str(),
            action,
            checksum: change.checksum.clone(),
            statements: 0,
            retries: 0,
            duration_ms: 0.0,
            finished_after_ms: 0.0,
            revert_sql: change.revert.clone(),
        }
    }
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

impl Counts {
    /// The counts of a deployment's change records, and of `skipped` changes left alone.
    pub fn of(changes: &[ChangeRecord], skipped: usize) -> Counts {
        let count = |action: &str| changes.iter().filter(|c| c.action == action).count() as i32;
        Counts {
            applied: count("applied"),
            rerun: count("rerun"),
            skipped: skipped as i32,
            accepted: count("accepted"),
            baselined: count("baseline"),
            reverted: count("reverted"),
        }
    }
}

pub struct DeploymentRecord<'a> {
    pub project: &'a str,
    pub version: String,
    pub previous_version: Option<String>,
    pub outcome: &'static str,
    pub manifest_sha256: Option<&'a str>,
    /// The manifest, stored once per sha256; None when there is none (revert).
    pub manifest: Option<StoredJsonb>,
    /// The caller: when the call started and who made it.
    pub session: &'a SessionFacts,
    pub counts: Counts,
    pub options: serde_json::Value,
    pub warnings: Vec<String>,
    pub fingerprint: Option<String>,
    /// Which release's objects the database has (0.1.0's have no digest_version).
    pub schema: Schema,
}

/// The deployment's row, with `$column` and `$value` added to its columns
/// and values: 0.2.0's objects write the digest version at once, not after.
macro_rules! deployment_insert {
    ($column:literal, $value:literal) => {
        concat!(
            "INSERT INTO deploy.deployments
               (project, version, previous_version, outcome, manifest_sha256,
                applied_by, session_user_name, application_name, client_addr, backend_pid,
                started_at, finished_at, duration_ms,
                changes_applied, changes_rerun, changes_skipped, changes_accepted, changes_baselined, changes_reverted,
                options, warnings, pg_deploy_version, fingerprint, prev_hash",
            $column,
            ")
             VALUES ($1, $2, $3, $4, $5,
                     $17, $18, pg_catalog.current_setting('application_name'),
                     pg_catalog.inet_client_addr(), pg_catalog.pg_backend_pid(),
                     $6, pg_catalog.clock_timestamp(),
                     pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - $6) * 1000, 3)::pg_catalog.float8,
                     $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     coalesce((SELECT row_hash FROM deploy.deployments WHERE project = $1 ORDER BY id DESC LIMIT 1), '')",
            $value,
            ")
             RETURNING id, duration_ms, finished_at, application_name, pg_catalog.host(client_addr),
                       backend_pid, prev_hash"
        )
    };
}

/// Writes the deployment, its changes, its link in the project's hash chain
/// and the project's new head; returns the deployment id and its duration as
/// recorded. Run it as the extension's owner.
pub fn record(
    client: &mut SpiClient<'_>,
    d: DeploymentRecord<'_>,
    changes: Vec<ChangeRecord>,
) -> Result<Recorded, DeployError> {
    // The stored manifest's text digest, when this statement stored or found it.
    let mut manifest_text_sha256 = None;
    if let (Some(manifest), Some(sha)) = (d.manifest, d.manifest_sha256) {
        match d.schema {
            Schema::V0_1 => {
                client.update(
                    "INSERT INTO deploy.manifests (sha256, manifest) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
                    None,
                    &[sha.into(), manifest.into()],
                )?;
            }
            // Each change's SQL once in deploy.change_sql; the manifest names it.
            Schema::V0_2 => {
                let stored = client.update(STORE_MANIFEST, None, &[sha.into(), manifest.into()])?;
                if !stored.is_empty() {
                    manifest_text_sha256 = stored.first().get_one::<String>()?;
                }
            }
        }
    }
    let c = d.counts;
    let jsonb_sha256 = d.manifest.map(crate::jsonb_manifest::digest);
    let row = client
        .update(
            match d.schema {
                Schema::V0_1 => deployment_insert!("", ""),
                // The digest of the manifest's bytes: sent again, they need not be read (apply::prepare).
                Schema::V0_2 => deployment_insert!(", digest_version, manifest_jsonb_sha256", ", 2, $19"),
            },
            Some(1),
            &[
                d.project.into(),
                d.version.clone().into(),
                d.previous_version.clone().into(),
                d.outcome.into(),
                d.manifest_sha256.into(),
                d.session.started_at.into(),
                c.applied.into(),
                c.rerun.into(),
                c.skipped.into(),
                c.accepted.into(),
                c.baselined.into(),
                c.reverted.into(),
                JsonB(d.options.clone()).into(),
                d.warnings.clone().into(),
                pg_deploy_core::VERSION.into(),
                d.fingerprint.clone().into(),
                d.session.current_user.as_str().into(),
                d.session.session_user.as_str().into(),
                jsonb_sha256.clone().into(),
            ],
        )?
        .first();
    let missing = || DeployError::Internal("INSERT INTO deploy.deployments returned no row".into());
    let id = row.get::<i64>(1)?.ok_or_else(missing)?;
    let duration_ms = row.get::<f64>(2)?.ok_or_else(missing)?;
    let inserted = Inserted {
        finished_at: row.get::<TimestampWithTimeZone>(3)?.ok_or_else(missing)?.into(),
        application_name: row.get::<String>(4)?,
        client_addr: row.get::<String>(5)?,
        backend_pid: row.get::<i32>(6)?.ok_or_else(missing)?.into(),
        prev_hash: row.get::<String>(7)?.unwrap_or_default(),
    };

    let mut applied_at = Vec::new();
    if !changes.is_empty() {
        let cols = ChangeColumns::of(&changes);
        // The unnests in the select list run in lockstep without copying each
        // array into a tuplestore first, as ROWS FROM would.
        for row in client.update(
            "INSERT INTO deploy.change_log
               (deployment_id, ordinal, project, change_id, kind, action, checksum, statements,
                lock_retries, duration_ms, applied_at, revert_sql)
             SELECT $1, u.o, $2, u.i, u.k, u.a, u.c, u.s, u.r, u.d,
                    $3 + pg_catalog.make_interval(secs => u.f / 1000), u.v
               FROM (SELECT pg_catalog.unnest($4::pg_catalog.int4[]) AS o, pg_catalog.unnest($5::pg_catalog.text[]) AS i,
                            pg_catalog.unnest($6::pg_catalog.text[]) AS k, pg_catalog.unnest($7::pg_catalog.text[]) AS a,
                            pg_catalog.unnest($8::pg_catalog.text[]) AS c, pg_catalog.unnest($9::pg_catalog.int4[]) AS s,
                            pg_catalog.unnest($10::pg_catalog.int4[]) AS r, pg_catalog.unnest($11::pg_catalog.float8[]) AS d,
                            pg_catalog.unnest($12::pg_catalog.float8[]) AS f,
                            pg_catalog.unnest($13::pg_catalog.text[]) AS v) AS u
             RETURNING ordinal, applied_at",
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
        )? {
            let ordinal = row.get::<i32>(1)?.ok_or_else(missing)?;
            let at: pg_sys::TimestampTz = row.get::<TimestampWithTimeZone>(2)?.ok_or_else(missing)?.into();
            applied_at.push((ordinal, at));
        }
    }
    // The row's hash covers its change_log rows, so it is written last, with
    // the project's new head. Computed here ($4) when every value prints here
    // as jsonb prints it, else (NULL) by deploy.deployment_digest: coalesce
    // evaluates no further than its first non-NULL argument.
    let computed = match d.schema {
        Schema::V0_2
            if crate::encoding::utf8_database() && (d.manifest_sha256.is_none() || manifest_text_sha256.is_some()) =>
        {
            row_digest(
                &d,
                id,
                duration_ms,
                &inserted,
                &changes,
                &applied_at,
                manifest_text_sha256.as_deref(),
                jsonb_sha256.as_deref(),
            )
        }
        _ => None,
    };
    let row_hash = client
        .update(
            "WITH head AS (UPDATE deploy.projects
                              SET version = $3, last_deployment_id = $1, updated_at = pg_catalog.clock_timestamp()
                            WHERE project = $2)
             UPDATE deploy.deployments d SET row_hash = coalesce($4, deploy.deployment_digest(d)) WHERE d.id = $1
             RETURNING d.row_hash",
            Some(1),
            &[id.into(), d.project.into(), d.version.clone().into(), computed.into()],
        )?
        .first()
        .get_one::<String>()?
        .unwrap_or_default();
    Ok(Recorded {
        id,
        duration_ms,
        row_hash,
        previous_version: d.previous_version,
    })
}

/// What the deployment's INSERT set in SQL, read back for its digest.
struct Inserted {
    finished_at: pg_sys::TimestampTz,
    application_name: Option<String>,
    client_addr: Option<String>,
    backend_pid: i64,
    prev_hash: String,
}

/// deploy.deployment_digest (version 2) of the row just inserted, or None.
#[allow(clippy::too_many_arguments)]
fn row_digest(
    d: &DeploymentRecord<'_>,
    id: i64,
    duration_ms: f64,
    inserted: &Inserted,
    changes: &[ChangeRecord],
    applied_at: &[(i32, pg_sys::TimestampTz)],
    manifest_text_sha256: Option<&str>,
    manifest_jsonb_sha256: Option<&str>,
) -> Option<String> {
    use pg_deploy_core::deployment_digest::{deployment_digest, ChangeRow, DeploymentRow};
    if applied_at.len() != changes.len() {
        return None;
    }
    let at: std::collections::HashMap<i32, pg_sys::TimestampTz> = applied_at.iter().copied().collect();
    let rows = changes
        .iter()
        .map(|c| {
            Some(ChangeRow {
                ordinal: c.ordinal.into(),
                change_id: &c.id,
                kind: c.kind,
                action: c.action,
                checksum: &c.checksum,
                statements: c.statements.into(),
                lock_retries: c.retries.into(),
                duration_ms: c.duration_ms,
                applied_at: *at.get(&c.ordinal)?,
                revert_sql: c.revert_sql.as_deref(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let c = d.counts;
    deployment_digest(&DeploymentRow {
        id,
        project: d.project,
        version: &d.version,
        previous_version: d.previous_version.as_deref(),
        outcome: d.outcome,
        manifest_sha256: d.manifest_sha256,
        applied_by: &d.session.current_user,
        session_user: &d.session.session_user,
        application_name: inserted.application_name.as_deref(),
        client_addr: inserted.client_addr.as_deref(),
        backend_pid: inserted.backend_pid,
        started_at: d.session.started_at.into(),
        finished_at: inserted.finished_at,
        duration_ms,
        counts: [c.applied, c.rerun, c.skipped, c.accepted, c.baselined, c.reverted].map(i64::from),
        options: &d.options,
        warnings: &d.warnings,
        pg_deploy_version: pg_deploy_core::VERSION,
        fingerprint: d.fingerprint.as_deref(),
        prev_hash: &inserted.prev_hash,
        changes: &rows,
        manifest_text_sha256,
        manifest_jsonb_sha256,
    })
}

/// Stores a manifest with each change's "sql" in deploy.change_sql, once by
/// the sha256 of its exact text, and "sql_sha256" in its place; a manifest
/// stored already is left as it is, without taking it apart again. Returns
/// the sha256 (hex) of the stored manifest's text, which the deployment's
/// digest covers (no row: stored by a transaction this one cannot see).
const STORE_MANIFEST: &str = "
    WITH doc AS (SELECT $2::pg_catalog.jsonb AS m
                  WHERE NOT EXISTS (SELECT FROM deploy.manifests WHERE sha256 = $1)),
         ch AS (SELECT e.ord, e.c,
                       pg_catalog.concat('sha256:', pg_catalog.encode(deploy.sha256(
                           pg_catalog.convert_to(e.c ->> 'sql', 'UTF8')), 'hex')) AS s
                  FROM doc, pg_catalog.jsonb_array_elements(doc.m -> 'changes') WITH ORDINALITY AS e(c, ord)),
         put AS (INSERT INTO deploy.change_sql (sha256, sql)
                 SELECT DISTINCT ON (ch.s) ch.s, ch.c ->> 'sql' FROM ch
                 ON CONFLICT (sha256) DO NOTHING),
         ins AS (INSERT INTO deploy.manifests (sha256, manifest)
                 SELECT $1, pg_catalog.jsonb_set(doc.m, '{changes}', coalesce(
                            (SELECT pg_catalog.jsonb_agg((ch.c - 'sql') || pg_catalog.jsonb_build_object('sql_sha256', ch.s)
                                                         ORDER BY ch.ord) FROM ch), '[]'::pg_catalog.jsonb))
                   FROM doc
                 ON CONFLICT (sha256) DO NOTHING
                 RETURNING manifest)
    SELECT pg_catalog.encode(deploy.sha256(pg_catalog.convert_to(s.manifest::pg_catalog.text, 'UTF8')), 'hex')
      FROM (SELECT manifest FROM ins UNION ALL SELECT manifest FROM deploy.manifests WHERE sha256 = $1) AS s
     LIMIT 1";

/// A deployment as recorded: its id, its duration, its hash (the chain's new
/// head) and the version deployed before it.
pub struct Recorded {
    pub id: i64,
    pub duration_ms: f64,
    pub row_hash: String,
    pub previous_version: Option<String>,
}

/// The change records as the INSERT's parallel arrays.
struct ChangeColumns<'a> {
    ordinal: Vec<i32>,
    id: Vec<&'a str>,
    kind: Vec<&'a str>,
    action: Vec<&'a str>,
    checksum: Vec<&'a str>,
    statements: Vec<i32>,
    retries: Vec<i32>,
    duration_ms: Vec<f64>,
    finished_after_ms: Vec<f64>,
    revert_sql: Vec<Option<&'a str>>,
}

impl<'a> ChangeColumns<'a> {
    fn of(changes: &'a [ChangeRecord]) -> Self {
        ChangeColumns {
            ordinal: changes.iter().map(|c| c.ordinal).collect(),
            id: changes.iter().map(|c| c.id.as_str()).collect(),
            kind: changes.iter().map(|c| c.kind).collect(),
            action: changes.iter().map(|c| c.action).collect(),
            checksum: changes.iter().map(|c| c.checksum.as_str()).collect(),
            statements: changes.iter().map(|c| c.statements).collect(),
            retries: changes.iter().map(|c| c.retries).collect(),
            duration_ms: changes.iter().map(|c| c.duration_ms).collect(),
            finished_after_ms: changes.iter().map(|c| c.finished_after_ms).collect(),
            revert_sql: changes.iter().map(|c| c.revert_sql.as_deref()).collect(),
        }
    }
}
