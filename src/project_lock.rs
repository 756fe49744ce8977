//! Serialising the deployments of one project, and saying who is in the way.

use crate::error::DeployError;
use crate::owner::{Owner, Schema};
use crate::sqlstate::{pg_error, Coded};
use crate::subxact::{in_subtransaction, set_local, GucLevel};
use pg_deploy_core::options::DEFAULT_WAIT_TIMEOUT;
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode;

/// How a deployment waits for another one of the same project.
#[derive(Debug, Clone)]
pub struct LockWait {
    /// false: fail at once (55P03) when another session holds the project.
    pub wait: bool,
    /// The longest wait, as a duration (options.wait_timeout, default 5min).
    pub timeout: String,
}

impl LockWait {
    pub fn new(wait: bool, timeout: Option<&str>) -> LockWait {
        LockWait {
            wait,
            timeout: timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT).to_string(),
        }
    }
}

/// Takes the project's row (creating it on first use, owned by `caller`),
/// which serialises deployments of the project until the transaction ends.
/// Only pg_deploy (as the extension's owner) can lock that row, unlike an
/// advisory lock whose key any role could take. The wait is bounded: past it,
/// 55P03 names the session holding the project.
pub fn claim_with_wait(
    client: &mut SpiClient<'_>,
    owner: Owner,
    project: &str,
    caller: &str,
    schema: Schema,
    lock: &LockWait,
) -> Result<Claimed, DeployError> {
    let level = GucLevel::open();
    let timeout = if lock.wait { lock.timeout.as_str() } else { "1ms" };
    let claimed = in_subtransaction(|| {
        set_local("lock_timeout", timeout)?;
        owner
            .run(|| claim_project(client, project, caller, schema))
            .map_err(|e| pg_error(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()))
    });
    level.restore();
    match claimed {
        Ok(claimed) => Ok(claimed),
        Err(e) if e.is(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE) => Err(DeployError::Locked {
            project: project.to_string(),
            holder: owner.run(|| holder(client, project)).ok().flatten(),
            waited: lock.wait.then(|| lock.timeout.clone()),
        }),
        Err(e) => Err(DeployError::Postgres(e)),
    }
}

/// The session whose transaction holds the project's row. The row's xmax is
/// the xid that locked it, often a subtransaction's (pg_deploy claims inside
/// one): PostgreSQL's own subtrans map gives its top-level transaction, which
/// pg_stat_activity shows as backend_xid.
fn holder(client: &mut SpiClient<'_>, project: &str) -> Result<Option<String>, DeployError> {
    let xmax = client
        .update(
            "SELECT p.xmax::pg_catalog.text FROM deploy.projects p WHERE p.project = $1",
            Some(1),
            &[project.into()],
        )?
        .first()
        .get_one::<String>()?;
    let Some(xid) = xmax.and_then(|x| x.parse::<u32>().ok()).filter(|&x| x != 0) else {
        return Ok(None);
    };
    let xid = pg_sys::TransactionId::from(xid);
    // SAFETY: both read shared state; the subtrans lookup is only made for an
    // xid still in progress, which pg_subtrans keeps.
    let top = unsafe {
        if !pg_sys::TransactionIdIsInProgress(xid) {
            return Ok(None);
        }
        pg_sys::SubTransGetTopmostTransaction(xid)
    };
    Ok(client
        .update(
            "SELECT pg_catalog.format('pid %s (role %s, application \"%s\", in its transaction since %s)',
                        a.pid, a.usename, a.application_name, a.xact_start)
               FROM pg_catalog.pg_stat_activity a
              WHERE a.backend_xid OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.xid
              LIMIT 1",
            Some(1),
            &[top.into_inner().to_string().into()],
        )?
        .first()
        .get_one::<String>()?)
}

/// What the project's row said when it was claimed.
pub struct Claimed {
    /// The deployed version.
    pub version: Option<String>,
    /// The project's owner (None before 0.2.0).
    pub owner: Option<String>,
    /// The schemas of its last fingerprint (None before the first).
    pub schemas: Option<Vec<String>>,
    /// Whether any deployment of it is recorded (each one sets
    /// last_deployment_id): without one it has no change_log or phase_queue
    /// rows. Read from the claimed row, not queried: a statement's snapshot
    /// predates the claim's wait, and would miss the deployment waited for.
    pub deployed: bool,
    /// The manifest of the project's last deployment when that one applied
    /// all of it (outcome 'applied', without `through`, which leaves later
    /// changes for another apply); None when it did something else, or when
    /// the claim's snapshot, taken before it waited, does not show it yet.
    pub last_applied_manifest: Option<String>,
    /// The `jsonb_manifest::digest` of that manifest as it was sent (None
    /// before 0.2.0 recorded it): the same bytes sent again are that manifest.
    pub last_applied_jsonb: Option<String>,
}

/// What the claim returns of the project's row (see Claimed): `$last` is
/// what it takes of the last deployment when that one applied its whole
/// manifest, read in one subquery; then `$more`.
macro_rules! claim_returning {
    ($last:literal, $more:literal) => {
        concat!(
            "
             RETURNING p.version, p.schemas, p.last_deployment_id IS NOT NULL,
                       (SELECT ",
            $last,
            " FROM deploy.deployments d
                         WHERE d.id = p.last_deployment_id AND d.outcome = 'applied'
                           AND d.options ->> 'through' IS NULL)",
            $more
        )
    };
}

/// Claims the project's row (creating it on first use, owned by `caller`)
/// and returns what it says. Writing the row
/// makes a REPEATABLE READ or SERIALIZABLE caller fail with a serialization
/// error, instead of re-applying, when another deployment committed after its
/// snapshot was taken.
fn claim_project(
    client: &mut SpiClient<'_>,
    project: &str,
    caller: &str,
    schema: Schema,
) -> Result<Claimed, DeployError> {
    let (sql, args): (&str, Vec<pgrx::datum::DatumWithOid>) = match schema {
        Schema::V0_1 => (
            concat!(
                "INSERT INTO deploy.projects AS p (project) VALUES ($1)
                 ON CONFLICT (project) DO UPDATE SET updated_at = p.updated_at",
                claim_returning!("d.manifest_sha256", "")
            ),
            vec![project.into()],
        ),
        Schema::V0_2 => (
            concat!(
                "INSERT INTO deploy.projects AS p (project, owner) VALUES ($1, $2)
                 ON CONFLICT (project) DO UPDATE SET updated_at = p.updated_at",
                claim_returning!(
                    "ARRAY[d.manifest_sha256, d.manifest_jsonb_sha256]",
                    ", p.owner::pg_catalog.text"
                )
            ),
            vec![project.into(), caller.into()],
        ),
    };
    let row = client.update(sql, Some(1), &args)?.first();
    let (last_applied_manifest, last_applied_jsonb) = match schema {
        Schema::V0_1 => (row.get::<String>(4)?, None),
        Schema::V0_2 => {
            let mut both = row.get::<Vec<Option<String>>>(4)?.unwrap_or_default().into_iter();
            (both.next().flatten(), both.next().flatten())
        }
    };
    let mut claimed = Claimed {
        version: row.get::<String>(1)?,
        schemas: row.get::<Vec<String>>(2)?,
        deployed: row.get::<bool>(3)?.unwrap_or(true),
        last_applied_manifest,
        owner: match schema {
            Schema::V0_1 => None,
            Schema::V0_2 => row.get::<String>(5)?,
        },
        last_applied_jsonb,
    };
    if schema == Schema::V0_2 && claimed.owner.is_none() {
        // Restored from a 0.1.0 dump: the owner is the first deployer, as the upgrade sets it.
        claimed.owner = client
            .update(
                "UPDATE deploy.projects AS p
                    SET owner = coalesce((SELECT d.applied_by FROM deploy.deployments d
                                           WHERE d.project = p.project ORDER BY d.id LIMIT 1), $2)
                  WHERE p.project = $1
                 RETURNING p.owner::pg_catalog.text",
                Some(1),
                &[project.into(), caller.into()],
            )?
            .first()
            .get_one::<String>()?;
    }
    Ok(claimed)
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
