//! The trigger's read of what a command touched, run read-only. pgrx runs
//! every SPI query of a transaction that has an xid read-write, and a
//! read-write query bumps the command counter and takes a new snapshot
//! first: in a deployment that was most of each firing's cost (measured in
//! docs/benchmarks.md). The read needs neither: PostgreSQL makes the
//! command's catalog changes visible before ddl_command_end and sql_drop
//! fire, and the read looks only at the catalogs and the trigger's own lists.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;

thread_local! {
    /// The reads, planned once per backend (they name only pg_catalog).
    static PLANS: RefCell<HashMap<&'static str, NonNull<pg_sys::_SPI_plan>>> = RefCell::new(HashMap::new());
}

/// The single jsonb value `sql` returns (None for no row or NULL).
pub fn json(sql: &'static str) -> Result<Option<Value>, String> {
    Spi::connect(|_client| {
        let plan = plan(sql)?;
        // SAFETY: reads a backend global.
        let read_only = unsafe { pg_sys::ActiveSnapshotSet() };
        // SAFETY: `plan` is a kept plan of `sql`, which has no parameters; we
        // are connected to SPI. Read-only runs under the active snapshot,
        // checked to be set (it is, inside an event trigger).
        let status =
            unsafe { pg_sys::SPI_execute_plan(plan.as_ptr(), std::ptr::null_mut(), std::ptr::null(), read_only, 1) };
        if status != pg_sys::SPI_OK_SELECT as i32 {
            return Err(format!("SPI_execute_plan returned {status}"));
        }
        // SAFETY: after a successful SELECT, SPI_tuptable holds SPI_processed
        // rows of the plan's one jsonb column, alive until SPI_finish; the
        // value is copied into a serde value before that.
        unsafe {
            let table = pg_sys::SPI_tuptable;
            if table.is_null() || pg_sys::SPI_processed == 0 {
                return Ok(None);
            }
            let mut is_null = false;
            let datum = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut is_null);
            Ok(JsonB::from_polymorphic_datum(datum, is_null, pg_sys::JSONBOID).map(|j| j.0))
        }
    })
}

fn plan(sql: &'static str) -> Result<NonNull<pg_sys::_SPI_plan>, String> {
    PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        if let Some(plan) = plans.get(sql) {
            return Ok(*plan);
        }
        let text = CString::new(sql).map_err(|e| e.to_string())?;
        // SAFETY: connected to SPI; `text` is a valid C string; SPI_keepplan
        // moves the plan out of SPI's memory so it outlives this call.
        let plan = unsafe {
            let prepared = pg_sys::SPI_prepare(text.as_ptr(), 0, std::ptr::null_mut());
            let code = pg_sys::SPI_result;
            let plan = NonNull::new(prepared).ok_or_else(|| format!("SPI_prepare failed ({code})"))?;
            if pg_sys::SPI_keepplan(plan.as_ptr()) != 0 {
                return Err("SPI_keepplan failed".to_string());
            }
            plan
        };
        plans.insert(sql, plan);
        Ok(plan)
    })
}
