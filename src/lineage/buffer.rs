//! Inside deploy.apply and deploy.revert the trigger does not write: it reads
//! what the command touched (a read of the trigger's own command list and of
//! the catalog rows just written, which fails only where the command itself
//! would) into this backend-local buffer, and the deployment writes it all at
//! once when it is recorded, in one subtransaction (a failure there becomes
//! gap rows). A subtransaction per firing costs PostgreSQL work in proportion
//! to the relations the transaction created so far (see group.rs): quadratic
//! over a deployment of thousands of changes. Firings of changes (or groups)
//! that were rolled back are left out: their (sub)transaction ids aborted.

use super::Context;
use crate::error::DeployError;
use crate::owner::Owner;
use crate::sqlstate::pg_error;
use crate::subxact::{in_subtransaction, PgError};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::{json, Value};
use std::cell::RefCell;

struct Firing {
    /// The (sub)transaction the command ran in.
    xid: pg_sys::TransactionId,
    tag: String,
    role: String,
    change: Option<String>,
    /// The rows, as jsonb_to_recordset reads them in `flush`.
    rows: Vec<Value>,
}

thread_local! {
    /// Some while a deployment buffers (its `Deploying` guard lives).
    static BUFFER: RefCell<Option<Vec<Firing>>> = const { RefCell::new(None) };
}

pub fn start() {
    BUFFER.with(|b| *b.borrow_mut() = Some(Vec::new()));
}

pub fn stop() {
    BUFFER.with(|b| *b.borrow_mut() = None);
}

pub fn on() -> bool {
    BUFFER.with(|b| b.borrow().is_some())
}

// Each read returns the command's objects as one jsonb array of the rows
// flush writes (a missing tag is the firing's own).
const DDL: &str = "
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'event', 'ddl', 'tag', c.command_tag, 'object_type', c.object_type, 'schema_name', c.schema_name,
               'object_identity', c.object_identity, 'names', a.object_names, 'args', a.object_args,
               'at', pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())))
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
      LEFT JOIN LATERAL pg_catalog.pg_identify_object_as_address(c.classid, c.objid, c.objsubid) a ON true
     WHERE NOT c.in_extension AND coalesce(c.schema_name OPERATOR(pg_catalog.<>) 'pg_temp', true)";

const DROP: &str = "
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'event', 'drop', 'object_type', d.object_type, 'schema_name', d.schema_name,
               'object_identity', d.object_identity, 'names', d.address_names, 'args', d.address_args,
               'at', pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())))
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE (d.original OR d.normal) AND NOT d.is_temporary";

/// Reads the firing command's objects into the buffer.
pub fn collect(event: &str, tag: &str, user: &str, context: &Context) {
    let sql = if event == "sql_drop" { DROP } else { DDL };
    let read = super::read::json(sql).map(|rows| match rows {
        Some(Value::Array(mut rows)) => {
            for row in &mut rows {
                if row.get("tag").is_none_or(Value::is_null) {
                    row["tag"] = json!(tag);
                }
            }
            rows
        }
        _ => Vec::new(),
    });
    let rows = match read {
        Ok(rows) => rows,
        Err(e) => vec![json!({"event": "gap", "tag": tag, "error": e.to_string()})],
    };
    // SAFETY: reads the current (sub)transaction's id, if it has one.
    let xid = unsafe { pg_sys::GetCurrentTransactionIdIfAny() };
    BUFFER.with(|b| {
        if let Some(buffer) = b.borrow_mut().as_mut() {
            buffer.push(Firing {
                xid,
                tag: tag.to_string(),
                role: user.to_string(),
                change: context.change.clone(),
                rows,
            });
        }
    });
}

const WRITE: &str = "
    INSERT INTO deploy.lineage (at, event, command_tag, object_type, schema_name, object_identity, object_names,
                                object_args, session_user_name, current_user_name, application_name, client_addr,
                                backend_pid, xid, project, change_id, deployment_id, error)
    SELECT coalesce(pg_catalog.to_timestamp(r.at), pg_catalog.clock_timestamp()), r.event, r.tag, r.object_type,
           r.schema_name, r.object_identity,
           CASE WHEN pg_catalog.jsonb_typeof(r.names) OPERATOR(pg_catalog.=) 'array'
                THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(r.names)) END,
           CASE WHEN pg_catalog.jsonb_typeof(r.args) OPERATOR(pg_catalog.=) 'array'
                THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(r.args)) END,
           session_user, r.role, pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
           pg_catalog.pg_backend_pid(), pg_catalog.pg_current_xact_id(), $2, r.change, $3, r.error
      FROM pg_catalog.jsonb_to_recordset($1) AS r(at pg_catalog.float8, event text, tag text,
             object_type text, schema_name text, object_identity text, names jsonb, args jsonb, role name,
             change text, error text, ord bigint)
     ORDER BY r.ord";

/// Writes what the deployment's committed changes did, as the extension's
/// owner, and empties the buffer; a failure writes one gap per firing instead.
pub fn flush(client: &mut SpiClient<'_>, owner: Owner, project: &str, deployment_id: i64) -> Result<(), DeployError> {
    let firings = BUFFER.with(|b| b.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default());
    // SAFETY: TransactionIdDidAbort reads the commit log for ids of this transaction's subtransactions.
    let kept: Vec<Firing> = firings
        .into_iter()
        .filter(|f| f.xid == pg_sys::InvalidTransactionId || !unsafe { pg_sys::TransactionIdDidAbort(f.xid) })
        .collect();
    if kept.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = kept
        .iter()
        .flat_map(|f| {
            f.rows.iter().map(move |r| {
                let mut r = r.clone();
                r["role"] = json!(f.role);
                r["change"] = json!(f.change);
                r
            })
        })
        .collect();
    let failing = || {
        crate::guc::LINEAGE_FAIL
            .get()
            .then(|| pg_error(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "pg_deploy.lineage_fail is on"))
    };
    let sealed = in_subtransaction(|| match failing() {
        Some(e) => Err(e),
        None => super::seal::write_sealed(client, owner, rows.clone(), project, deployment_id),
    });
    if sealed.is_ok() {
        return Ok(());
    }
    // Sealing can fail where inserting does not (a serialization failure on
    // the chain's head under REPEATABLE READ): the rows go in unsealed, and
    // the next seal chains them.
    let written = in_subtransaction(|| match failing() {
        Some(e) => Err(e),
        None => write(client, owner, rows.clone(), project, deployment_id),
    });
    let Err(error) = written else { return Ok(()) };
    let message = format!("{}: {}", error.sqlstate, error.message);
    let gaps = kept
        .iter()
        .map(|f| json!({"event": "gap", "tag": f.tag, "role": f.role, "change": f.change, "error": message}))
        .collect();
    let gap = in_subtransaction(|| write(client, owner, gaps, project, deployment_id));
    if let Err(also) = gap {
        pgrx::warning!(
            "pg_deploy: {project}: the lineage of deployment {deployment_id} was not recorded ({message}), nor its gaps ({})",
            also.message
        );
    }
    Ok(())
}

/// Inserts `rows` in their order (numbered here: jsonb_to_recordset keeps no ordinality).
fn write(
    client: &mut SpiClient<'_>,
    owner: Owner,
    mut rows: Vec<Value>,
    project: &str,
    deployment: i64,
) -> Result<(), PgError> {
    for (i, row) in rows.iter_mut().enumerate() {
        row["ord"] = json!(i);
    }
    let rows = Value::Array(rows);
    owner
        .run(|| client.update(WRITE, None, &[JsonB(rows).into(), project.into(), deployment.into()]))
        .map(|_| ())
        .map_err(|e| pg_error(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()))
}
