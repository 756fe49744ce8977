//! Reading the recorded history: the deployed version and what is applied.
//! Every query is schema-qualified and runs under `search_path = pg_catalog,
//! pg_temp`; manifest strings only travel as parameters.

use crate::error::DeployError;
use pg_deploy_core::{AppliedChange, ChangeKind};
use pgrx::spi::SpiClient;
use std::collections::HashMap;

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
