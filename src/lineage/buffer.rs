//! Inside deploy.apply and deploy.revert the trigger does not write: it reads
//! what the command touched (a read of the trigger's own command list and of
//! the catalog rows just written, which fails only where the command itself
//! would) into this backend-local buffer, and the deployment writes it all at
//! once when it is recorded, in one subtransaction (a failure there becomes
//! gap rows). A subtransaction per firing costs PostgreSQL work in proportion
//! to the relations the transaction created so far (see group.rs): quadratic
//! over a deployment of thousands of changes. Firings of changes (or groups)
//! that were rolled back are left out: their (sub)transaction ids aborted.

use super::seal::LineageRow;
use super::Context;
use crate::error::DeployError;
use crate::owner::Owner;
use crate::subxact::in_subtransaction;
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use std::cell::RefCell;

struct Firing {
    /// The (sub)transaction the command ran in.
    xid: pg_sys::TransactionId,
    tag: String,
    role: String,
    change: Option<String>,
    /// The rows, less the firing's role and change (added when written).
    rows: Vec<LineageRow>,
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

/// Reads the firing command's objects into the buffer.
pub fn collect(event: &str, tag: &str, user: &str, context: &Context) {
    let touched = if event == "sql_drop" {
        super::read::dropped_objects()
    } else {
        super::read::ddl_commands()
    };
    let event = if event == "sql_drop" { "drop" } else { "ddl" };
    // One clock reading for the command's rows (the query before read
    // clock_timestamp() per row, microseconds apart).
    let at = super::seal::now_epoch();
    let rows = match touched {
        Ok(touched) => touched
            .into_iter()
            .map(|mut object| {
                object.tag = Some(object.tag.take().unwrap_or_else(|| tag.to_string()));
                LineageRow {
                    at: Some(at),
                    event,
                    object,
                    ..LineageRow::default()
                }
            })
            .collect(),
        // Text this database cannot give exactly: a gap, never a failed command.
        Err(unreadable) => vec![LineageRow {
            at: Some(at),
            ..LineageRow::gap(tag, unreadable.reason())
        }],
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

/// Writes what the deployment's committed changes did, as the extension's
/// owner, and empties the buffer; a failure writes one gap per firing instead.
pub fn flush(client: &mut SpiClient<'_>, owner: Owner, project: &str, deployment_id: i64) -> Result<(), DeployError> {
    let firings = BUFFER.with(|b| b.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default());
    // SAFETY: TransactionIdDidAbort reads the commit log for ids of this transaction's subtransactions.
    let mut kept: Vec<Firing> = firings
        .into_iter()
        .filter(|f| f.xid == pg_sys::InvalidTransactionId || !unsafe { pg_sys::TransactionIdDidAbort(f.xid) })
        .collect();
    if kept.is_empty() {
        return Ok(());
    }
    // Moved out of the firings, not copied: at 10,000 changes they are most of lineage's memory.
    let rows: Vec<LineageRow> = kept
        .iter_mut()
        .flat_map(|f| {
            let (role, change) = (&f.role, &f.change);
            f.rows.drain(..).map(move |r| LineageRow {
                role: Some(role.clone()),
                change: change.clone(),
                ..r
            })
        })
        .collect();
    let sealed = in_subtransaction(|| {
        super::injected_failure()?;
        super::seal::insert(client, owner, &rows, project, deployment_id, true)
    });
    if sealed.is_ok() {
        return Ok(());
    }
    // Sealing can fail where inserting does not (a serialization failure on
    // the chain's head under REPEATABLE READ): the rows go in unsealed, and
    // the next seal chains them.
    let written = in_subtransaction(|| {
        super::injected_failure()?;
        super::seal::insert(client, owner, &rows, project, deployment_id, false)
    });
    let Err(error) = written else { return Ok(()) };
    let message = format!("{}: {}", error.sqlstate, error.message);
    let gaps: Vec<LineageRow> = kept
        .iter()
        .map(|f| LineageRow {
            role: Some(f.role.clone()),
            change: f.change.clone(),
            ..LineageRow::gap(&f.tag, message.clone())
        })
        .collect();
    let gap = in_subtransaction(|| super::seal::insert(client, owner, &gaps, project, deployment_id, false));
    if let Err(also) = gap {
        pgrx::warning!(
            "pg_deploy: {project}: the lineage of deployment {deployment_id} was not recorded ({message}), nor its gaps ({})",
            also.message
        );
    }
    Ok(())
}
