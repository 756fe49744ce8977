//! Reading the recorded history: the deployed version and what is applied.
//! Every query is schema-qualified and runs under `search_path = pg_catalog,
//! pg_temp`; manifest strings only travel as parameters.

use crate::error::DeployError;
use pg_deploy_core::{AppliedChange, ChangeKind};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use pgrx::FromDatum;
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
/// picked here, not by a DISTINCT ON (hashing 10,000 rows costs a third of
/// sorting them), and each row is deformed once rather than read column by
/// column.
pub fn applied_changes(
    client: &mut SpiClient<'_>,
    project: &str,
) -> Result<HashMap<String, AppliedChange>, DeployError> {
    let rows = client.update(
        "SELECT deployment_id, ordinal, action OPERATOR(pg_catalog.=) 'reverted', change_id, kind, checksum
           FROM deploy.change_log
          WHERE project = $1",
        None,
        &[project.into()],
    )?;
    // change id -> ((deployment, ordinal) of its latest row, that row's change, or None when it reverted it)
    let mut latest: HashMap<String, ((i64, i32), Option<AppliedChange>)> = HashMap::with_capacity(rows.len());
    each_latest_row(rows.len(), |at, reverted, id, kind, checksum| {
        if latest.get(id).is_some_and(|(seen, _)| *seen > at) {
            return Ok(());
        }
        let change = if reverted {
            None
        } else {
            let kind = ChangeKind::parse(kind)
                .ok_or_else(|| DeployError::Internal(format!("unknown change kind \"{kind}\" in deploy.change_log")))?;
            Some(AppliedChange {
                checksum: checksum.to_string(),
                kind,
            })
        };
        latest.insert(id.to_string(), (at, change));
        Ok(())
    })?;
    Ok(latest
        .into_iter()
        .filter_map(|(id, (_, change))| Some((id, change?)))
        .collect())
}

/// Hands `row` each of the `count` rows of the SPI result just produced by
/// applied_changes' query: ((deployment, ordinal), reverted, change id, kind,
/// checksum), borrowed from the result; stops at the first error `row` returns.
fn each_latest_row(
    count: usize,
    mut row: impl FnMut((i64, i32), bool, &str, &str, &str) -> Result<(), DeployError>,
) -> Result<(), DeployError> {
    let null = || DeployError::Internal("NULL in deploy.change_log".into());
    // SAFETY: SPI_tuptable is the result of the query just run on this SPI
    // connection (count rows of the six columns its SELECT lists, checked
    // against the descriptor); each tuple is deformed into arrays of that
    // width, and the text datums are read in place, within the SPI
    // connection's memory, before the next SPI call.
    unsafe {
        let table = pg_sys::SPI_tuptable;
        if count == 0 {
            return Ok(());
        }
        if table.is_null() || (*(*table).tupdesc).natts != 6 {
            return Err(DeployError::Internal(
                "unexpected result reading deploy.change_log".into(),
            ));
        }
        let desc = (*table).tupdesc;
        let mut values = [pg_sys::Datum::from(0usize); 6];
        let mut nulls = [false; 6];
        for i in 0..count {
            let tuple = *(*table).vals.add(i);
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            if nulls.iter().any(|&n| n) {
                return Err(null());
            }
            let text = |i: usize| <&str as FromDatum>::from_datum(values[i], false).ok_or_else(null);
            row(
                (
                    i64::from_datum(values[0], false).ok_or_else(null)?,
                    i32::from_datum(values[1], false).ok_or_else(null)?,
                ),
                bool::from_datum(values[2], false).ok_or_else(null)?,
                text(3)?,
                text(4)?,
                text(5)?,
            )?;
        }
    }
    Ok(())
}
