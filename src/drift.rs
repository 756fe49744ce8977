//! Drift: fingerprints of the objects a project manages, taken after each
//! deployment that changed something, and compared with the catalogs later
//! (`deploy.drift`, `deploy.status`, apply's `drift` option).

use crate::analyze::ChangeAnalysis;
use crate::catalog::SchemaCache;
use crate::error::DeployError;
use crate::owner::Schema;
use crate::sqlstate::sqlstate;
use crate::subxact::PgError;
// Schemas that are never a project's.
use pg_deploy_core::manifest::is_system_schema as is_system;
use pg_deploy_core::Manifest;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode;
use std::collections::BTreeSet;

/// The schemas a project manages: the manifest's `schemas` when given, else
/// those it managed before plus every schema this deployment's changes create
/// or alter objects in (an unqualified name counts for the first schema of the
/// change's search_path).
pub fn managed_schemas(
    client: &mut SpiClient<'_>,
    schemas: &mut SchemaCache,
    manifest: &Manifest,
    analyses: &[Option<ChangeAnalysis>],
    before: Option<Vec<String>>,
) -> Result<Vec<String>, DeployError> {
    if let Some(explicit) = &manifest.schemas {
        refuse_schemas_without_usage(client, explicit)?;
        return Ok(explicit.clone());
    }
    let mut found: BTreeSet<String> = before.unwrap_or_default().into_iter().collect();
    for analysis in analyses.iter().flatten() {
        for s in &analysis.statements {
            let Some(object) = &s.statement.object else { continue };
            let schema = match &object.schema {
                Some(schema) => Some(schema.clone()),
                None => schemas
                    .get(client, &analysis.settings.search_path)?
                    .into_iter()
                    .find(|s| !is_system(s)),
            };
            found.extend(schema.filter(|s| !is_system(s)));
        }
    }
    Ok(found.into_iter().collect())
}

/// The caller may only have a schema fingerprinted (and its objects listed in
/// drift reports) if it may look into it: USAGE, checked as the caller.
fn refuse_schemas_without_usage(client: &mut SpiClient<'_>, schemas: &[String]) -> Result<(), DeployError> {
    let hidden = client
        .update(
            "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(n.nspname), ', ' ORDER BY n.nspname)
               FROM pg_catalog.pg_namespace n
              WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
                AND NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE')",
            Some(1),
            &[schemas.to_vec().into()],
        )?
        .first()
        .get_one::<String>()?;
    match hidden {
        None => Ok(()),
        Some(names) => Err(DeployError::Postgres(PgError {
            sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE),
            message: format!("manifest \"schemas\": current_user has no USAGE on schema {names}"),
            detail: None,
            hint: Some("List only the schemas the project's changes create and the deploying role may use.".into()),
        })),
    }
}

/// The schemas recorded for a project by its last fingerprint.
pub fn recorded_schemas(client: &mut SpiClient<'_>, project: &str) -> Result<Option<Vec<String>>, DeployError> {
    let rows = client.update(
        "SELECT schemas FROM deploy.projects WHERE project = $1",
        Some(1),
        &[project.into()],
    )?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(rows.first().get_one::<Vec<String>>()?)
}

/// Stores the project's fingerprints, sets its schemas (and `$set`) and
/// returns the sha256 over the fingerprints, in one statement: a new backend
/// parses and plans each statement of a deployment once more.
macro_rules! fingerprint_store {
    ($set:literal, $sha256:literal) => {
        concat!(
            "WITH put AS (INSERT INTO deploy.fingerprints (project, kind, name, sha256)
                          SELECT $1, f.kind, f.name, f.sha256 FROM deploy.object_fingerprints($2) f
                          RETURNING kind, name, sha256),
                  scope AS (UPDATE deploy.projects SET schemas = $2",
            $set,
            " WHERE project = $1)
             SELECT pg_catalog.concat('sha256:', pg_catalog.encode(",
            $sha256,
            "(pg_catalog.convert_to(
                    coalesce(pg_catalog.string_agg(pg_catalog.concat_ws(' ', kind, name, sha256), E'\\n' ORDER BY kind, name), ''),
                    'UTF8')), 'hex'))
               FROM put"
        )
    };
}

/// Replaces the project's fingerprints with the objects in `schemas` now;
/// returns the sha256 over all of them. Run it as the extension's owner.
pub fn fingerprint(
    client: &mut SpiClient<'_>,
    project: &str,
    schemas: &[String],
    schema: Schema,
) -> Result<String, DeployError> {
    client.update(
        "DELETE FROM deploy.fingerprints WHERE project = $1",
        None,
        &[project.into()],
    )?;
    let store = match schema {
        Schema::V0_1 => fingerprint_store!("", "pg_catalog.sha256"),
        // Fingerprints by name from now on: they survive a dump and restore.
        // Hashed without OpenSSL (src/sha256.rs), which 0.1.0 does not have.
        Schema::V0_2 => fingerprint_store!(", fingerprint_version = 2", "deploy.sha256"),
    };
    let whole = client
        .update(store, Some(1), &[project.into(), schemas.to_vec().into()])?
        .first()
        .get_one::<String>()?;
    whole.ok_or_else(|| DeployError::Internal("fingerprint query returned no row".into()))
}

/// One line on the project's drift, naming the first objects, or None without drift.
pub fn summary(client: &mut SpiClient<'_>, project: &str) -> Result<Option<String>, DeployError> {
    const LISTED: usize = 10;
    let drifted = drift(client, project)?;
    if drifted.is_empty() {
        return Ok(None);
    }
    let listed: Vec<String> = drifted
        .iter()
        .take(LISTED)
        .map(|(change, kind, name)| format!("{change} {kind} {name}"))
        .collect();
    let more = match drifted.len().checked_sub(LISTED) {
        Some(n) if n > 0 => format!(" and {n} more"),
        _ => String::new(),
    };
    Ok(Some(format!(
        "{} object(s) changed outside deployments since the last one: {}{more}",
        drifted.len(),
        listed.join(", ")
    )))
}

/// Objects added, removed or changed since the last fingerprint: (change, kind, name).
pub fn drift(client: &mut SpiClient<'_>, project: &str) -> Result<Vec<(String, String, String)>, DeployError> {
    let rows = client.update(
        "SELECT change, kind, name FROM deploy.drift($1)",
        None,
        &[project.into()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push((
            row.get::<String>(1)?.unwrap_or_default(),
            row.get::<String>(2)?.unwrap_or_default(),
            row.get::<String>(3)?.unwrap_or_default(),
        ));
    }
    Ok(out)
}
