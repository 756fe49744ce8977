//! Consecutive changes of plain DDL in one subtransaction.
//!
//! Every subtransaction end costs PostgreSQL work in proportion to the
//! relations created so far in the transaction (AtSubCommit_smgr, the relation
//! cache's end-of-subtransaction scan, lock reassignment), so one per change
//! is O(n²) over a deployment that creates thousands (bench/scale.sh). Changes
//! that cannot leave session state and have no verify run together, in groups
//! that grow with the deployment (`group_size`). If anything in a group fails
//! (an error, a busy table), the group is rolled back and its changes run
//! again one by one, each in its own subtransaction with its lock retries,
//! which finds and reports the failing change exactly as before.

use crate::analyze::RunSettings;
use crate::execute::{lock_unless_held_long, spi_failure, ChangeRun, ChangeWork};
use crate::subxact::{in_subtransaction, set_local, GucLevel};
use crate::timeout::CallerTimer;
use pgrx::spi::SpiClient;
use std::time::Instant;

/// Changes that share a subtransaction at the start of a deployment.
const FIRST_GROUP_SIZE: usize = 64;
/// The most that ever share one: a group that fails runs again one by one.
const LARGEST_GROUP_SIZE: usize = 1024;

/// How many changes share the subtransaction of a group that starts at change
/// `ordinal`. Groups grow with the deployment, an eighth of the changes
/// before them: a group's end costs in proportion to the relations made so
/// far, so fixed-size groups still add up to O(n²) over 10,000 changes, while
/// growing ones keep the total near linear.
pub fn group_size(ordinal: usize) -> usize {
    (ordinal / 8).clamp(FIRST_GROUP_SIZE, LARGEST_GROUP_SIZE)
}

/// Whether a change may share a subtransaction with its neighbours.
pub fn groupable(work: &ChangeWork<'_>, settings: &RunSettings) -> bool {
    work.verify.is_none()
        && !settings.search_path.contains("pg_temp")
        && work.statements.iter().all(|s| s.leaves_no_session_state)
}

/// Runs `works` in one subtransaction: the run of each, or None when the
/// group was rolled back (then the caller runs them one by one).
pub fn run_group(client: &mut SpiClient<'_>, works: &[(ChangeWork<'_>, &RunSettings)]) -> Option<Vec<ChangeRun>> {
    crate::memory::scoped("pg_deploy change group", || {
        let timer = CallerTimer::save();
        let outcome = in_subtransaction(|| {
            let mut runs = Vec::with_capacity(works.len());
            for (work, settings) in works {
                let started = Instant::now();
                let _attributed = crate::lineage::running(work.id);
                // A failure unwinds past this level: the subtransaction's rollback pops it.
                let level = GucLevel::open();
                for (name, value) in settings.gucs() {
                    set_local(name, value)?;
                }
                for statement in work.statements {
                    if let Some((table, mode)) = &statement.lock {
                        lock_unless_held_long(client, table, mode, settings)?;
                    }
                    timer.arm_for_statement();
                    let text = &work.sql[statement.start..statement.end];
                    client.update(text, None, &[]).map_err(spi_failure)?;
                }
                level.restore();
                runs.push(ChangeRun {
                    duration: started.elapsed(),
                    retries: 0,
                });
            }
            Ok(runs)
        });
        timer.restore();
        outcome.ok()
    })
}

#[cfg(test)]
mod tests {
    use super::group_size;

    #[test]
    fn groups_grow_with_the_deployment() {
        for (ordinal, size) in [
            (0, 64),
            (511, 64),
            (1024, 128),
            (8000, 1000),
            (9000, 1024),
            (20_000, 1024),
        ] {
            assert_eq!(group_size(ordinal), size, "at {ordinal}");
        }
    }
}
