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
/// is applied now (not reverted since). The latest row of each change is
/// picked here, not by a DISTINCT ON: hashing 10,000 rows costs a third of
/// sorting them.
pub fn applied_changes(
    client: &mut SpiClient<'_>,
    project: &str,
) -> Result<HashMap<String, AppliedChange>, DeployError> {
    let rows = client.update(
        "SELECT change_id, kind, checksum, action OPERATOR(pg_catalog.=) 'reverted', deployment_id, ordinal
           FROM deploy.change_log
          WHERE project = $1",
        None,
        &[project.into()],
    )?;
    // change id -> ((deployment, ordinal) of its latest row, that row's change, or None when it reverted it)
    let mut latest: HashMap<String, ((i64, i32), Option<AppliedChange>)> = HashMap::with_capacity(rows.len());
    for row in rows {
        let (Some(id), Some(kind), Some(checksum), Some(reverted), Some(deployment), Some(ordinal)) = (
            row.get::<String>(1)?,
            row.get::<String>(2)?,
            row.get::<String>(3)?,
            row.get::<bool>(4)?,
            row.get::<i64>(5)?,
            row.get::<i32>(6)?,
        ) else {
            return Err(DeployError::Internal("NULL in deploy.change_log".into()));
        };
        let at = (deployment, ordinal);
        if latest.get(&id).is_some_and(|(seen, _)| *seen > at) {
            continue;
        }
        let change = if reverted {
            None
        } else {
            let kind = ChangeKind::parse(&kind)
                .ok_or_else(|| DeployError::Internal(format!("unknown change kind \"{kind}\" in deploy.change_log")))?;
            Some(AppliedChange { checksum, kind })
        };
        latest.insert(id, (at, change));
    }
    Ok(latest
        .into_iter()
        .filter_map(|(id, (_, change))| Some((id, change?)))
        .collect())
}
