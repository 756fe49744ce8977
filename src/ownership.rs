//! Who may deploy a project: members of its owner role.
//!
//! A project's owner is the role that first deployed it (for projects from
//! 0.1.0, the first deployment's role, set by the upgrade). Only roles with
//! the owner's privileges (members of it, or superusers) may apply, baseline,
//! revert or accept changes for it; `deploy.transfer_project` hands it to
//! another role, recorded as a deployment in the hash-chained log.

use crate::deployment::{guarded, open_project, to_json, Finished};
use crate::error::DeployError;
use crate::owner::Schema;
use crate::project_lock::LockWait;
use crate::session::session_facts;
use crate::sqlstate::sqlstate;
use crate::subxact::PgError;
use pg_deploy_core::report::{round_ms, TransferReport};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::json;
use std::time::Instant;

/// Refuses (42501) a caller without the privileges of `owner`, the role that
/// owns `project`. Checked as the caller.
pub fn check_member(project: &str, owner: &str) -> Result<(), DeployError> {
    // pg_has_role(owner, 'USAGE') when the owner exists; a superuser otherwise.
    let name = std::ffi::CString::new(owner).unwrap_or_default();
    // SAFETY: get_role_oid with missing_ok returns InvalidOid for no such role;
    // has_privs_of_role and superuser_arg read the role catalogs for valid ids.
    let (allowed, me) = unsafe {
        let me = pg_sys::GetUserId();
        let role = pg_sys::get_role_oid(name.as_ptr(), true);
        let allowed = if role == pg_sys::InvalidOid {
            pg_sys::superuser_arg(me)
        } else {
            pg_sys::has_privs_of_role(me, role)
        };
        (allowed, me)
    };
    if allowed {
        return Ok(());
    }
    let caller = crate::session::role_name(me);
    Err(DeployError::Postgres(PgError {
        sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE),
        message: format!(
            "project \"{project}\" is owned by role \"{owner}\", and current_user \"{caller}\" does not have its privileges"
        ),
        detail: None,
        hint: Some(format!(
            "Deploy it as a member of \"{owner}\" (GRANT \"{owner}\" TO \"{caller}\"), or have a member hand it over: \
             SELECT deploy.transfer_project(project_name, new_owner)."
        )),
    }))
}

/// Hands `project_name` to the role `new_owner`. Only a member of the current
/// owner may; the transfer is recorded as a deployment (outcome `transfer`).
#[pg_extern(volatile, parallel_unsafe)]
fn transfer_project(project_name: Option<String>, new_owner: Option<String>) -> JsonB {
    guarded("deploy.transfer_project", || {
        let (Some(project), Some(new_owner)) = (project_name, new_owner) else {
            return Err(refuse(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "project_name and new_owner must not be NULL".into(),
            ));
        };
        let report = Spi::connect_mut(|client| transfer(client, &project, &new_owner))?;
        to_json(&report)
    })
}

fn refuse(code: PgSqlErrorCode, message: String) -> DeployError {
    DeployError::Postgres(PgError {
        sqlstate: sqlstate(code),
        message,
        detail: None,
        hint: None,
    })
}

fn transfer(client: &mut SpiClient<'_>, project: &str, new_owner: &str) -> Result<TransferReport, DeployError> {
    let started = Instant::now();
    let session = session_facts()?;
    let opened = open_project(client, session, project, Some(LockWait::new(true, None)))?;
    if opened.schema == Schema::V0_1 {
        return Err(refuse(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "project ownership needs pg_deploy 0.2.0's objects: run ALTER EXTENSION pg_deploy UPDATE".into(),
        ));
    }
    let Some(version) = opened.previous_version.clone() else {
        return Err(refuse(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("project \"{project}\" has never been deployed"),
        ));
    };
    let exists = client
        .update(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1)",
            Some(1),
            &[new_owner.into()],
        )?
        .first()
        .get_one::<bool>()?;
    if exists != Some(true) {
        return Err(refuse(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("role \"{new_owner}\" does not exist"),
        ));
    }
    let previous_owner = opened.project_owner.clone();
    opened.owner.run(|| {
        client.update(
            "UPDATE deploy.projects SET owner = $2 WHERE project = $1",
            None,
            &[project.into(), new_owner.into()],
        )
    })?;
    let recorded = opened.finish(
        client,
        Finished {
            project,
            version: version.clone(),
            outcome: "transfer",
            manifest_sha256: None,
            manifest: None,
            skipped: 0,
            options: json!({"from": previous_owner, "to": new_owner}),
            warnings: Vec::new(),
            fingerprint: None,
        },
        Vec::new(),
    )?;
    Ok(TransferReport {
        project: project.to_string(),
        version,
        outcome: "transfer".into(),
        previous_owner,
        owner: new_owner.to_string(),
        deployment_id: recorded.id,
        chain_head: Some(recorded.row_hash),
        duration_ms: round_ms(started.elapsed().as_secs_f64() * 1000.0),
    })
}
