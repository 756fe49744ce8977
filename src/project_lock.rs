//! Serialising the deployments of one project, and saying who is in the way.

use crate::error::DeployError;
use crate::owner::Schema;
use pg_deploy_core::checksum::sha256_hex;
use pgrx::spi::SpiClient;

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

/// Claims the project's row (creating it on first use, owned by `caller`)
/// and returns the deployed version and the project's owner. Writing the row
/// makes a REPEATABLE READ or SERIALIZABLE caller fail with a serialization
/// error, instead of re-applying, when another deployment committed after its
/// snapshot was taken.
pub fn claim_project(
    client: &mut SpiClient<'_>,
    project: &str,
    caller: &str,
    schema: Schema,
) -> Result<(Option<String>, Option<String>), DeployError> {
    if schema == Schema::V0_1 {
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
        return Ok((version, None));
    }
    let row = client
        .update(
            "INSERT INTO deploy.projects AS p (project, owner) VALUES ($1, $2)
             ON CONFLICT (project) DO UPDATE
                SET updated_at = p.updated_at,
                    -- restored from a 0.1.0 dump: the owner is the first deployer, as the upgrade sets it
                    owner = coalesce(p.owner, (SELECT d.applied_by FROM deploy.deployments d
                                                WHERE d.project = p.project ORDER BY d.id LIMIT 1), EXCLUDED.owner)
             RETURNING p.version, p.owner::pg_catalog.text",
            Some(1),
            &[project.into(), caller.into()],
        )?
        .first();
    Ok((row.get::<String>(1)?, row.get::<String>(2)?))
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
