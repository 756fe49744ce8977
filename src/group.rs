//! Consecutive changes of plain DDL in one subtransaction.
//!
//! Every subtransaction end costs PostgreSQL work in proportion to the
//! relations created so far in the transaction (AtSubCommit_smgr, the relation
//! cache's end-of-subtransaction scan, lock reassignment), so one per change
//! is O(n²) over a deployment that creates thousands (bench/scale.sh). Changes
//! that cannot leave session state and have no verify run together, up to
//! GROUP_SIZE at a time. If anything in a group fails (an error, a busy
//! table), the group is rolled back and its changes run again one by one, each
//! in its own subtransaction with its lock retries, which finds and reports
//! the failing change exactly as before.

use crate::analyze::RunSettings;
use crate::execute::{lock_unless_held_long, spi_failure, ChangeRun, ChangeWork};
use crate::subxact::{in_subtransaction, set_local, GucLevel};
use crate::timeout::CallerTimer;
use pgrx::spi::SpiClient;
use std::time::Instant;

/// At most this many changes share a subtransaction.
pub const GROUP_SIZE: usize = 64;

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
