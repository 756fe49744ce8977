//! Writing the deployment log: a deployment, its changes, its link in the
//! project's hash chain. Run as the extension's owner.

use crate::error::DeployError;
use crate::jsonb_arg::StoredJsonb;
use crate::owner::Schema;
use crate::session::SessionFacts;
use pg_deploy_core::Change;
use pgrx::spi::SpiClient;
use pgrx::JsonB;

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
             RETURNING id, duration_ms"
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
                client.update(STORE_MANIFEST, None, &[sha.into(), manifest.into()])?;
            }
        }
    }
    let c = d.counts;
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
                JsonB(d.options).into(),
                d.warnings.into(),
                pg_deploy_core::VERSION.into(),
                d.fingerprint.into(),
                d.session.current_user.as_str().into(),
                d.session.session_user.as_str().into(),
                d.manifest.map(crate::jsonb_manifest::digest).into(),
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
        // The unnests in the select list run in lockstep without copying each
        // array into a tuplestore first, as ROWS FROM would.
        client.update(
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
                            pg_catalog.unnest($13::pg_catalog.text[]) AS v) AS u",
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
    // The row's hash covers its change_log rows, so it is written last; the
    // project's new head in the same statement.
    let row_hash = client
        .update(
            "WITH head AS (UPDATE deploy.projects
                              SET version = $3, last_deployment_id = $1, updated_at = pg_catalog.clock_timestamp()
                            WHERE project = $2)
             UPDATE deploy.deployments d SET row_hash = deploy.deployment_digest(d) WHERE d.id = $1
             RETURNING d.row_hash",
            Some(1),
            &[id.into(), d.project.into(), d.version.into()],
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

/// Stores a manifest with each change's "sql" in deploy.change_sql, once by
/// the sha256 of its exact text, and "sql_sha256" in its place; a manifest
/// stored already is left as it is, without taking it apart again.
const STORE_MANIFEST: &str = "
    WITH doc AS (SELECT $2::pg_catalog.jsonb AS m
                  WHERE NOT EXISTS (SELECT FROM deploy.manifests WHERE sha256 = $1)),
         ch AS (SELECT e.ord, e.c,
                       pg_catalog.concat('sha256:', pg_catalog.encode(deploy.sha256(
                           pg_catalog.convert_to(e.c ->> 'sql', 'UTF8')), 'hex')) AS s
                  FROM doc, pg_catalog.jsonb_array_elements(doc.m -> 'changes') WITH ORDINALITY AS e(c, ord)),
         put AS (INSERT INTO deploy.change_sql (sha256, sql)
                 SELECT DISTINCT ON (ch.s) ch.s, ch.c ->> 'sql' FROM ch
                 ON CONFLICT (sha256) DO NOTHING)
    INSERT INTO deploy.manifests (sha256, manifest)
    SELECT $1, pg_catalog.jsonb_set(doc.m, '{changes}', coalesce(
               (SELECT pg_catalog.jsonb_agg((ch.c - 'sql') || pg_catalog.jsonb_build_object('sql_sha256', ch.s)
                                            ORDER BY ch.ord) FROM ch), '[]'::pg_catalog.jsonb))
      FROM doc
    ON CONFLICT (sha256) DO NOTHING";

/// A deployment as recorded: its id, its duration, its hash (the chain's new
/// head) and the version deployed before it.
pub struct Recorded {
    pub id: i64,
    pub duration_ms: f64,
    pub row_hash: String,
    pub previous_version: Option<String>,
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
