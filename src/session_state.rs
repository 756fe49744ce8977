//! What a change must not leave in the session: a pooler hands the session to
//! other clients after the deployment. Checked after each change runs, so
//! dynamic SQL (`DO … EXECUTE`) is caught too, and a change that creates a
//! temporary table and drops it again is fine.
//!
//! Temporary objects roll back with the change's subtransaction. Prepared
//! statements do not: those a change added are removed again (also after a
//! failed change), and the change fails with 0A000. Session advisory locks
//! are checked around all the changes of a call (`guard_advisory_locks`):
//! the lock table holds every lock of the server, which the deployment's own locks
//! make longer with each change, so reading it after each one would cost
//! O(n²).

use crate::sqlstate::pg_error;
use crate::subxact::{set_local, PgError};
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{pg_sys, PgSqlErrorCode};
use std::collections::BTreeSet;
use std::ffi::CString;

/// What the session holds beyond a transaction, but advisory locks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    prepared: BTreeSet<String>,
    temporary: BTreeSet<String>,
}

/// Advisory locks held by this backend: "classid objid objsubid mode".
type AdvisoryLocks = BTreeSet<String>;

/// Every name is schema-qualified: the change's search_path is in force. No
/// relation is read (a relation lock taken in every change's subtransaction
/// would overflow its resource owner's lock cache, making each release scan
/// all the deployment's locks): prepared statements through the function
/// behind pg_prepared_statements, and the temporary schema's oid.
const HOLDINGS: &str = "
    SELECT ARRAY(SELECT s.name::pg_catalog.text FROM pg_catalog.pg_prepared_statement() s),
           pg_catalog.pg_my_temp_schema()::pg_catalog.int8";

/// Once the session has a temporary schema: what is in it.
const TEMPORARY: &str = "
    SELECT pg_catalog.array_cat(
               ARRAY(SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_class c
                      WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
                        AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,S,f,c}'::pg_catalog.char[])),
               pg_catalog.array_cat(
                   ARRAY(SELECT pg_catalog.concat(p.proname, '()') FROM pg_catalog.pg_proc p
                          WHERE p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()),
                   ARRAY(SELECT t.typname::pg_catalog.text FROM pg_catalog.pg_type t
                          WHERE t.typnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
                            AND t.typtype OPERATOR(pg_catalog.=) ANY ('{e,d,r}'::pg_catalog.char[]))))";

/// An SPI error of pg_deploy's own queries, as data.
fn failed(e: pgrx::spi::Error) -> PgError {
    pg_error(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string())
}

/// This backend's granted advisory locks, as pg_locks would list them, read
/// from the lock table directly: a query over the pg_locks view costs a new
/// backend more to parse and plan than the read itself.
fn advisory_locks() -> AdvisoryLocks {
    let mut held = AdvisoryLocks::new();
    // SAFETY: GetLockStatusData copies the lock table into memory palloc'd in
    // the current context (freed with it) and returns `nelements` valid entries.
    unsafe {
        let data = pg_sys::GetLockStatusData();
        let Some(data) = data.as_ref() else {
            return held;
        };
        let count = usize::try_from(data.nelements).unwrap_or(0);
        if count == 0 || data.locks.is_null() {
            return held;
        }
        for lock in std::slice::from_raw_parts(data.locks, count) {
            let tag = &lock.locktag;
            if lock.pid != pg_sys::MyProcPid || u32::from(tag.locktag_type) != pg_sys::LockTagType::LOCKTAG_ADVISORY {
                continue;
            }
            for mode in 1..=pg_sys::MaxLockMode as i32 {
                if lock.holdMask & (1 << mode) == 0 {
                    continue;
                }
                let name = std::ffi::CStr::from_ptr(pg_sys::GetLockmodeName(tag.locktag_lockmethodid.into(), mode));
                held.insert(format!(
                    "{} {} {} {}",
                    tag.locktag_field2,
                    tag.locktag_field3,
                    tag.locktag_field4,
                    name.to_string_lossy()
                ));
            }
        }
    }
    held
}

/// Runs `work` (every change of a call) and then checks that it left no
/// session-level advisory lock: those it took are released, and a `work`
/// that succeeded fails with 0A000 (a failed one keeps its own error).
pub fn guard_advisory_locks<R>(
    client: &mut SpiClient<'_>,
    work: impl FnOnce(&mut SpiClient<'_>) -> Result<R, crate::error::DeployError>,
) -> Result<R, crate::error::DeployError> {
    let before = advisory_locks();
    let outcome = work(client);
    let level = crate::subxact::GucLevel::open();
    let released = release_session_locks(client, &before, &advisory_locks());
    level.restore();
    let released = released.map_err(crate::error::DeployError::Postgres)?;
    match (outcome, released.first()) {
        (Ok(_), Some(lock)) => Err(crate::error::DeployError::Postgres(leak(format!(
            "the deployment left a session-level advisory lock ({lock}) in the session; it was released"
        )))),
        (outcome, _) => outcome,
    }
}

/// As `guard_advisory_locks` when `changes_run`: a call that runs no change
/// takes no lock, and skips the two reads of the lock table.
pub fn guard_advisory_locks_if<R>(
    changes_run: bool,
    client: &mut SpiClient<'_>,
    work: impl FnOnce(&mut SpiClient<'_>) -> Result<R, crate::error::DeployError>,
) -> Result<R, crate::error::DeployError> {
    if changes_run {
        guard_advisory_locks(client, work)
    } else {
        work(client)
    }
}

fn leak(message: String) -> PgError {
    let mut e = pg_error(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, message);
    e.hint = Some(
        "A deployment must not leave session state behind: poolers hand the session to other clients. \
         Use pg_advisory_xact_lock, ON COMMIT DROP temporary tables (or drop them in the change), and no \
         PREPARE; run anything else outside pg_deploy."
            .into(),
    );
    e
}

thread_local! {
    /// HOLDINGS, planned once per backend: it runs twice for every change.
    static HOLDINGS_PLAN: std::cell::RefCell<Option<OwnedPreparedStatement>> = const { std::cell::RefCell::new(None) };
}

pub fn holdings(client: &mut SpiClient<'_>) -> Result<Holdings, PgError> {
    let planned = HOLDINGS_PLAN.with(|plan| plan.borrow().is_some());
    if !planned {
        let plan = client.prepare(HOLDINGS, &[]).map_err(failed)?.keep();
        HOLDINGS_PLAN.with(|cell| *cell.borrow_mut() = Some(plan));
    }
    let table = HOLDINGS_PLAN.with(|plan| match plan.borrow().as_ref() {
        Some(plan) => client.update(plan, Some(1), &[]).map_err(failed),
        None => Err(pg_error(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "no plan for the session check",
        )),
    })?;
    let row = table.first();
    let prepared = row
        .get::<Vec<String>>(1)
        .map_err(failed)?
        .unwrap_or_default()
        .into_iter()
        .collect();
    let temp_schema = row.get::<i64>(2).map_err(failed)?;
    let temporary = match temp_schema {
        Some(0) | None => BTreeSet::new(),
        Some(_) => client
            .update(TEMPORARY, Some(1), &[])
            .map_err(failed)?
            .first()
            .get::<Vec<String>>(1)
            .map_err(failed)?
            .unwrap_or_default()
            .into_iter()
            .collect(),
    };
    Ok(Holdings { prepared, temporary })
}

/// The first thing a change left in the session since `before`, as a 0A000
/// error; what outlives the rollback of the change is removed first.
/// `dropped_at_commit`: temporary tables the change creates ON COMMIT DROP.
pub fn left_behind(client: &mut SpiClient<'_>, before: &Holdings, dropped_at_commit: &[String]) -> Result<(), PgError> {
    let after = holdings(client)?;
    let prepared: Vec<&String> = after.prepared.difference(&before.prepared).collect();
    for name in &prepared {
        deallocate(name);
    }
    let leak = |what: String| leak(format!("it left {what} in the session"));
    if let Some(name) = prepared.first() {
        return Err(leak(format!("the prepared statement \"{name}\"")));
    }
    if let Some(name) = before.prepared.difference(&after.prepared).next() {
        return Err(leak(format!(
            "the session without its prepared statement \"{name}\" (DEALLOCATE)"
        )));
    }
    let kept: Vec<&String> = after
        .temporary
        .difference(&before.temporary)
        .filter(|name| !dropped_at_commit.contains(name))
        .collect();
    if let Some(name) = kept.first() {
        return Err(leak(format!("the temporary object \"{name}\"")));
    }
    Ok(())
}

/// After a failed change: removes the prepared statements it added, which
/// its rollback does not undo.
pub fn clean_up(client: &mut SpiClient<'_>, before: &Holdings) -> Result<(), PgError> {
    let after = holdings(client)?;
    for name in after.prepared.difference(&before.prepared) {
        deallocate(name);
    }
    Ok(())
}

fn deallocate(name: &str) {
    if let Ok(name) = CString::new(name) {
        // SAFETY: a valid C string; showError = false ignores a missing statement.
        unsafe { pgrx::pg_sys::DropPreparedStatement(name.as_ptr(), false) };
    }
}

/// Releases the session-level advisory locks among the advisory locks taken
/// since `before` (pg_advisory_unlock releases only those; transaction-level
/// ones stay) and returns them.
fn release_session_locks(
    client: &mut SpiClient<'_>,
    before: &AdvisoryLocks,
    after: &AdvisoryLocks,
) -> Result<Vec<String>, PgError> {
    let new: Vec<&String> = after.difference(before).collect();
    if new.is_empty() {
        return Ok(Vec::new());
    }
    // pg_advisory_unlock warns about locks held only by the transaction.
    set_local("client_min_messages", "error")?;
    let mut released = Vec::new();
    for lock in new {
        let parts: Vec<&str> = lock.split(' ').collect();
        let [classid, objid, objsubid, mode] = parts[..] else {
            continue;
        };
        let (Ok(classid), Ok(objid)) = (classid.parse::<i64>(), objid.parse::<i64>()) else {
            continue;
        };
        let shared = mode == "ShareLock";
        // objsubid 1: one bigint key (classid, objid its two halves); 2: two int keys.
        let (query, args): (&str, Vec<pgrx::datum::DatumWithOid>) = match (objsubid, shared) {
            ("1", false) => (
                "SELECT pg_catalog.pg_advisory_unlock($1::pg_catalog.int8)",
                vec![((classid << 32) | objid).into()],
            ),
            ("1", true) => (
                "SELECT pg_catalog.pg_advisory_unlock_shared($1::pg_catalog.int8)",
                vec![((classid << 32) | objid).into()],
            ),
            (_, false) => (
                "SELECT pg_catalog.pg_advisory_unlock($1::pg_catalog.int4, $2::pg_catalog.int4)",
                vec![(classid as u32 as i32).into(), (objid as u32 as i32).into()],
            ),
            (_, true) => (
                "SELECT pg_catalog.pg_advisory_unlock_shared($1::pg_catalog.int4, $2::pg_catalog.int4)",
                vec![(classid as u32 as i32).into(), (objid as u32 as i32).into()],
            ),
        };
        // A lock taken several times is held as many times.
        let mut session = false;
        for _ in 0..1000 {
            let unlocked = client
                .update(query, Some(1), &args)
                .map_err(failed)?
                .first()
                .get_one::<bool>()
                .map_err(failed)?;
            if unlocked != Some(true) {
                break;
            }
            session = true;
        }
        if session {
            released.push(lock.clone());
        }
    }
    Ok(released)
}
