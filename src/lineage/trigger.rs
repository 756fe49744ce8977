//! The event triggers' function, `deploy.lineage_event()`: a C function so it
//! runs as the role whose command fired it (current_user is that role, not a
//! SECURITY DEFINER owner), needs no privilege of that role on the deploy
//! schema, and is never callable as a plain function (PostgreSQL refuses to
//! call an event_trigger function outside an event trigger).

use super::Context;
use crate::owner::Owner;
use crate::sqlstate::pg_error;
use crate::subxact::{in_subtransaction, PgError};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::PgSqlErrorCode;
use pgrx::{PgBuiltInOids, PgOid};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;

/// The version-1 calling convention for `pg_deploy_lineage_event`.
#[no_mangle]
pub extern "C" fn pg_finfo_pg_deploy_lineage_event() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// Records the firing command's objects; any failure becomes a gap row (or,
/// if even that fails, a warning): it never fails the user's DDL.
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pg_deploy_lineage_event(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid for this call; its context, when it is an
    // EventTriggerData node, lives for the whole trigger call.
    let fired = unsafe { fired_by(fcinfo) };
    if let Some((event, tag)) = fired {
        record(&event, &tag);
    }
    pg_sys::Datum::from(0usize)
}

/// The event ("ddl_command_end", "sql_drop") and command tag, or None when not
/// called by the event trigger manager.
///
/// # Safety
/// `fcinfo` must be a valid function call info.
unsafe fn fired_by(fcinfo: pg_sys::FunctionCallInfo) -> Option<(String, String)> {
    // SAFETY: the caller guarantees fcinfo; context is NULL or a Node.
    let context = unsafe { fcinfo.as_ref()?.context };
    if context.is_null() {
        return None;
    }
    // SAFETY: a non-NULL context is a Node; its tag says whether it is EventTriggerData.
    if unsafe { (*context).type_ } != pg_sys::NodeTag::T_EventTriggerData {
        return None;
    }
    let data = context as *const pg_sys::EventTriggerData;
    // SAFETY: checked to be EventTriggerData; `event` is a static C string and
    // GetCommandTagName returns a static C string for any tag.
    unsafe {
        let event = CStr::from_ptr((*data).event).to_string_lossy().into_owned();
        let tag = CStr::from_ptr(pg_sys::GetCommandTagName((*data).tag))
            .to_string_lossy()
            .into_owned();
        Some((event, tag))
    }
}

fn record(event: &str, tag: &str) {
    let context = super::current();
    let user = current_user();
    if super::buffer::on() {
        super::buffer::collect(event, tag, &user, &context);
        return;
    }
    let recorded = in_subtransaction(|| insert(event, tag, &user, &context));
    let Err(error) = recorded else { return };
    let message = format!("{}: {}", error.sqlstate, error.message);
    let gap = in_subtransaction(|| insert_gap(tag, &user, &context, &message));
    if let Err(also) = gap {
        pgrx::warning!(
            "pg_deploy: the lineage of {tag} was not recorded ({message}), nor its gap ({})",
            also.message
        );
    }
}

/// The role the command runs as, read before switching to the owner.
fn current_user() -> String {
    // SAFETY: GetUserId reads a backend global.
    crate::session::role_name(unsafe { pg_sys::GetUserId() })
}

fn spi_error(e: pgrx::spi::SpiError) -> PgError {
    pg_error(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string())
}

const DDL: &str = "
    INSERT INTO deploy.lineage (event, command_tag, object_type, schema_name, object_identity, object_names,
                                object_args, session_user_name, current_user_name, application_name, client_addr,
                                backend_pid, xid, project, change_id, deployment_id, error)
    SELECT 'ddl', coalesce(c.command_tag, $4), c.object_type, c.schema_name, c.object_identity, a.object_names, a.object_args,
           session_user, $1, pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
           pg_catalog.pg_backend_pid(), pg_catalog.pg_current_xact_id(), $2, $3, $5, $6
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
      LEFT JOIN LATERAL pg_catalog.pg_identify_object_as_address(c.classid, c.objid, c.objsubid) a ON true
     WHERE NOT c.in_extension AND coalesce(c.schema_name OPERATOR(pg_catalog.<>) 'pg_temp', true)";

const DROP: &str = "
    INSERT INTO deploy.lineage (event, command_tag, object_type, schema_name, object_identity, object_names,
                                object_args, session_user_name, current_user_name, application_name, client_addr,
                                backend_pid, xid, project, change_id, deployment_id, error)
    SELECT 'drop', $4, d.object_type, d.schema_name, d.object_identity, d.address_names, d.address_args,
           session_user, $1, pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
           pg_catalog.pg_backend_pid(), pg_catalog.pg_current_xact_id(), $2, $3, $5, $6
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE (d.original OR d.normal) AND NOT d.is_temporary";

fn insert(event: &str, tag: &str, user: &str, context: &Context) -> Result<(), PgError> {
    super::injected_failure()?;
    let sql = if event == "sql_drop" { DROP } else { DDL };
    write(sql, tag, user, context, None)
}

const GAP: &str = "
    INSERT INTO deploy.lineage (event, command_tag, session_user_name, current_user_name, application_name,
                                client_addr, backend_pid, xid, project, change_id, deployment_id, error)
    VALUES ('gap', $4, session_user, $1, pg_catalog.current_setting('application_name'),
            pg_catalog.inet_client_addr(), pg_catalog.pg_backend_pid(), pg_catalog.pg_current_xact_id(),
            $2, $3, $5, $6)";

fn insert_gap(tag: &str, user: &str, context: &Context, error: &str) -> Result<(), PgError> {
    write(GAP, tag, user, context, Some(error))
}

/// Runs one of the inserts above as the extension's owner: $1 the role, $2
/// project, $3 change, $4 command tag, $5 deployment, $6 error.
fn write(sql: &'static str, tag: &str, user: &str, context: &Context, error: Option<&str>) -> Result<(), PgError> {
    let internal = |e: String| pg_error(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e);
    Spi::connect_mut(|client| {
        let owner = owner().map_err(|e| internal(e.to_string()))?;
        PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            // Planned and run as the owner: the role of the command may not even see schema deploy.
            owner
                .run(|| {
                    if !plans.contains_key(sql) {
                        let text = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
                        let types = [text, text, text, text, PgOid::BuiltIn(PgBuiltInOids::INT8OID), text];
                        let plan = client.prepare_mut(sql, &types)?;
                        plans.insert(sql, plan.keep());
                    }
                    let Some(plan) = plans.get(sql) else {
                        return Ok(());
                    };
                    client.update(
                        plan,
                        None,
                        &[
                            user.into(),
                            context.project.clone().into(),
                            context.change.clone().into(),
                            tag.into(),
                            context.deployment.into(),
                            error.into(),
                        ],
                    )?;
                    Ok(())
                })
                .map_err(spi_error)
        })
    })
}

thread_local! {
    /// The inserts, planned once per backend: a deployment fires thousands.
    static PLANS: RefCell<HashMap<&'static str, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
    /// The extension's owner, looked up once per transaction.
    static OWNER: Cell<Option<(pg_sys::TimestampTz, Owner)>> = const { Cell::new(None) };
}

fn owner() -> Result<Owner, crate::error::DeployError> {
    // SAFETY: reads the start time of the current transaction, a backend global.
    let started = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    if let Some((_, owner)) = OWNER.get().filter(|(at, _)| *at == started) {
        return Ok(owner);
    }
    let (owner, _) = Owner::of_extension()?;
    OWNER.set(Some((started, owner)));
    Ok(owner)
}
