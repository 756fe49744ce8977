//! Locks held until commit. In one transaction every lock a statement takes
//! lives until the end, so a short statement that takes a strong lock early
//! blocks the application for as long as everything after it runs. Pure
//! rules over what the extension found per statement.

use crate::analysis::{AlterCommand, DropKind, Facts, ObjectName};
use crate::hazards::{Catalog, Hazard, HazardKind, TableFacts, Thresholds};

/// PostgreSQL's table lock modes, weakest first (pg_locks.mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

const MODES: [(LockMode, &str); 8] = [
    (LockMode::AccessShare, "AccessShareLock"),
    (LockMode::RowShare, "RowShareLock"),
    (LockMode::RowExclusive, "RowExclusiveLock"),
    (LockMode::ShareUpdateExclusive, "ShareUpdateExclusiveLock"),
    (LockMode::Share, "ShareLock"),
    (LockMode::ShareRowExclusive, "ShareRowExclusiveLock"),
    (LockMode::Exclusive, "ExclusiveLock"),
    (LockMode::AccessExclusive, "AccessExclusiveLock"),
];

impl LockMode {
    pub fn parse(name: &str) -> Option<LockMode> {
        MODES.iter().find(|(_, n)| *n == name).map(|(m, _)| *m)
    }

    pub fn as_str(self) -> &'static str {
        MODES.iter().find(|(m, _)| *m == self).map_or("", |(_, n)| n)
    }

    /// Conflicts with ROW EXCLUSIVE, the lock INSERT, UPDATE and DELETE take.
    pub fn blocks_writes(self) -> bool {
        self >= LockMode::Share
    }

    /// Conflicts with ACCESS SHARE, the lock SELECT takes.
    pub fn blocks_reads(self) -> bool {
        self == LockMode::AccessExclusive
    }

    fn blocks(self) -> &'static str {
        if self.blocks_reads() {
            "every read and write"
        } else {
            "every write"
        }
    }
}

/// A lock a statement takes on an existing table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableLock {
    pub table: TableFacts,
    pub mode: LockMode,
    pub big: bool,
    /// How other sessions use the table, when they use it much (only asked
    /// for write-blocking locks on tables that are not big).
    pub busy: Option<String>,
}

impl TableLock {
    /// Whether holding it until commit stalls others: it blocks writes on a
    /// big or busy table.
    pub fn stalls_others(&self) -> bool {
        (self.big || self.busy.is_some()) && self.mode.blocks_writes()
    }
}

/// One statement of a transactional step, in the order it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Locking {
    /// Index of its change in the manifest, and of the statement in the change.
    pub change: usize,
    pub statement: usize,
    pub locks: Vec<TableLock>,
    /// What makes it long (a backfill, an index build, a validation, a
    /// rewrite), when it works on a big table.
    pub long: Option<String>,
}

/// The strongest lock a step takes on a table, who takes it first, and the
/// changes that run after it while it is held.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldLock {
    pub table: TableFacts,
    pub mode: LockMode,
    pub change: usize,
    pub statement: usize,
    pub during: Vec<usize>,
    pub big: bool,
    pub busy: Option<String>,
}

/// A long statement that runs while an earlier one's lock blocks the table.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldAcross {
    /// Position (in the step's statements) of the statement that took the lock.
    pub holder: usize,
    /// Position of the long statement.
    pub long: usize,
    pub hazard: Hazard,
}

/// Per table, the strongest lock of the step (statements in run order).
pub fn held_locks(step: &[Locking]) -> Vec<HeldLock> {
    let mut out: Vec<HeldLock> = Vec::new();
    for s in step {
        for lock in &s.locks {
            match out.iter_mut().find(|h| h.table.oid == lock.table.oid) {
                Some(held) if lock.mode > held.mode => {
                    held.mode = lock.mode;
                    held.change = s.change;
                    held.statement = s.statement;
                    held.busy = held.busy.take().or_else(|| lock.busy.clone());
                }
                Some(_) => {}
                None => out.push(HeldLock {
                    table: lock.table.clone(),
                    mode: lock.mode,
                    change: s.change,
                    statement: s.statement,
                    during: Vec::new(),
                    big: lock.big,
                    busy: lock.busy.clone(),
                }),
            }
        }
    }
    for held in &mut out {
        let mut during: Vec<usize> = step
            .iter()
            .filter(|s| s.change > held.change)
            .map(|s| s.change)
            .collect();
        during.dedup();
        held.during = during;
    }
    out
}

/// Long statements that run while an earlier statement of the same step holds
/// a lock that blocks writes on a big or busy table, stronger than what the long
/// statement needs there itself (when it needs as much, it is its own hazard).
/// `ids` names the changes by manifest index.
pub fn held_across(step: &[Locking], ids: &dyn Fn(usize) -> String) -> Vec<HeldAcross> {
    let mut out = Vec::new();
    for (j, long) in step.iter().enumerate() {
        let Some(what) = &long.long else { continue };
        // The strongest earlier lock per table.
        let mut strongest: Vec<(usize, &TableLock)> = Vec::new();
        for (i, s) in step[..j].iter().enumerate() {
            for lock in s.locks.iter().filter(|l| l.stalls_others()) {
                match strongest.iter_mut().find(|(_, l)| l.table.oid == lock.table.oid) {
                    Some(slot) if lock.mode > slot.1.mode => *slot = (i, lock),
                    Some(_) => {}
                    None => strongest.push((i, lock)),
                }
            }
        }
        for (i, held) in strongest {
            let own = long
                .locks
                .iter()
                .filter(|l| l.table.oid == held.table.oid)
                .map(|l| l.mode)
                .max();
            if own.is_some_and(|own| own >= held.mode) {
                continue;
            }
            let holder = &step[i];
            let (holder_id, long_id) = (ids(holder.change), ids(long.change));
            let hint = if holder.change == long.change {
                format!(
                    "Split change \"{long_id}\": put statement {} and what follows in a new change with \
                     \"commit_before\": true, so that the lock is released before the long part runs.",
                    long.statement + 1
                )
            } else {
                format!(
                    "Move the long part to a later phase: set \"commit_before\": true on change \"{long_id}\" (or \
                     pass {{\"phases\": \"auto\"}}), so that change \"{holder_id}\" commits and releases the lock first."
                )
            };
            out.push(HeldAcross {
                holder: i,
                long: j,
                hazard: Hazard {
                    kind: HazardKind::HeldLock,
                    table: Some(held.table.clone()),
                    // A busy table weighs as a big one: its users wait as long.
                    big: held.big || held.busy.is_some(),
                    reason: format!(
                        "{} taken by change \"{holder_id}\" (statement {}) is held until commit, blocking {} of {}{}, \
                         while this statement {what}",
                        held.mode.as_str(),
                        holder.statement + 1,
                        held.mode.blocks(),
                        held.table.name,
                        held.busy.as_ref().map_or(String::new(), |b| format!(" (busy: {b})"))
                    ),
                    hint,
                },
            });
        }
    }
    out
}

/// The changes that must start a new phase so that no long statement runs
/// under an earlier change's lock: the long statement's change, once per
/// finding, unless the holder is in the same change (no boundary helps).
pub fn boundaries(step: &[Locking], found: &[HeldAcross]) -> Vec<usize> {
    let mut out: Vec<usize> = found
        .iter()
        .filter(|f| step[f.holder].change != step[f.long].change)
        .map(|f| step[f.long].change)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The locks a statement takes on existing tables: its own table (as written),
/// the table of an index it drops or rebuilds, the tables using a domain it
/// validates. `lock` is what the parse tree says (table as written, mode).
pub fn statement_locks(
    facts: &Facts,
    lock: Option<(&ObjectName, &str)>,
    catalog: &mut dyn Catalog,
    thresholds: &Thresholds,
) -> Vec<TableLock> {
    let taken: Vec<(TableFacts, LockMode)> = match facts {
        Facts::Drop {
            object: DropKind::Index,
            names,
        } => names
            .iter()
            .filter_map(|n| catalog.index_table(n))
            .map(|t| (t, LockMode::AccessExclusive))
            .collect(),
        Facts::Reindex { target, index: true } => catalog
            .index_table(target)
            .map(|t| (t, LockMode::Share))
            .into_iter()
            .collect(),
        // validateDomainCheckConstraint opens each table with SHARE.
        Facts::DomainValidation { domain } => catalog
            .domain_tables(domain)
            .into_iter()
            .map(|t| (t, LockMode::Share))
            .collect(),
        _ => {
            let Some((table, mode)) = lock.and_then(|(t, m)| Some((t, LockMode::parse(m)?))) else {
                return Vec::new();
            };
            // A weak lock of a short statement (INSERT … VALUES, …) neither
            // blocks anyone nor runs long: no lookup for each row of a seed.
            let may_be_long = matches!(facts, Facts::BulkWrite { .. } | Facts::AlterTable { .. });
            if !mode.blocks_writes() && !may_be_long {
                return Vec::new();
            }
            catalog.table(table).map(|t| (t, mode)).into_iter().collect()
        }
    };
    taken
        .into_iter()
        .map(|(table, mode)| {
            let big = thresholds.is_big(&table);
            // Only a write-blocking lock on a small table asks how busy it is.
            let busy = (!big && mode.blocks_writes()).then(|| catalog.busy(&table)).flatten();
            TableLock { table, mode, big, busy }
        })
        .collect()
}

/// From this many scans and row writes a second (the server's statistics,
/// averaged since they were reset or the server started, over five minutes
/// at least) a table is busy.
pub const BUSY_PER_SECOND: f64 = 1.0;

/// How busy a table is, from its average `rate` of scans and row writes a
/// second and the number of other sessions holding a lock on it now; None
/// when it is neither.
pub fn busy_description(rate: f64, holders: i64) -> Option<String> {
    let sessions = match holders {
        0 => None,
        1 => Some("1 other session holds a lock on it now".to_string()),
        n => Some(format!("{n} other sessions hold a lock on it now")),
    };
    let traffic = (rate >= BUSY_PER_SECOND).then(|| format!("~{rate:.0} scans and row writes a second"));
    match (traffic, sessions) {
        (Some(t), Some(s)) => Some(format!("{t}; {s}")),
        (t, s) => t.or(s),
    }
}

/// What makes a statement long, when it works on a big table: a rewrite, an
/// index build, a validation scan or a backfill.
pub fn long_work(facts: &Facts, hazards: &[Hazard], locks: &[TableLock]) -> Option<String> {
    let on = |t: &Option<TableFacts>| t.as_ref().map_or(String::new(), |t| t.name.clone());
    let long = hazards.iter().filter(|h| h.big).find_map(|h| match h.kind {
        HazardKind::TableRewrite => Some(format!("rewrites {}", on(&h.table))),
        HazardKind::BlockingIndexBuild => Some(format!("builds an index on {}", on(&h.table))),
        HazardKind::ValidatingConstraint => Some(format!("scans {} to validate a constraint", on(&h.table))),
        _ => None,
    });
    if long.is_some() {
        return long;
    }
    let big = locks.iter().find(|l| l.big)?;
    match facts {
        Facts::AlterTable { commands, .. }
            if commands
                .iter()
                .any(|c| matches!(c, AlterCommand::ValidateConstraint { .. })) =>
        {
            Some(format!("scans {} to validate a constraint", big.table.name))
        }
        Facts::BulkWrite { .. } => Some(format!("writes to {}, a backfill", big.table.name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(oid: u32, rows: f64) -> TableFacts {
        TableFacts {
            oid,
            name: format!("public.t{oid}"),
            rows,
            bytes: 0,
            heap_bytes: 0,
        }
    }

    /// Tables 9 and 8 are small; 8 is busy.
    fn lock(oid: u32, mode: LockMode) -> TableLock {
        TableLock {
            table: table(oid, 1e6),
            mode,
            big: oid < 8,
            busy: (oid == 8).then(|| "40 scans and row writes a second".to_string()),
        }
    }

    fn st(change: usize, statement: usize, locks: Vec<TableLock>, long: Option<&str>) -> Locking {
        Locking {
            change,
            statement,
            locks,
            long: long.map(str::to_string),
        }
    }

    fn ids(i: usize) -> String {
        format!("c{i}")
    }

    use LockMode::*;

    #[test]
    fn modes_parse_and_order_like_postgres() {
        for (m, n) in MODES {
            assert_eq!(LockMode::parse(n), Some(m));
            assert_eq!(m.as_str(), n);
        }
        assert!(!ShareUpdateExclusive.blocks_writes() && Share.blocks_writes());
        assert!(AccessExclusive.blocks_reads() && !Exclusive.blocks_reads());
        assert_eq!(LockMode::parse("nope"), None);
    }

    #[test]
    fn validate_after_not_valid_runs_under_the_first_lock() {
        // ADD CHECK … NOT VALID (ACCESS EXCLUSIVE), then VALIDATE (SHARE UPDATE EXCLUSIVE, a scan).
        let step = [
            st(0, 0, vec![lock(1, AccessExclusive)], None),
            st(
                1,
                0,
                vec![lock(1, ShareUpdateExclusive)],
                Some("validates a constraint"),
            ),
        ];
        let found = held_across(&step, &ids);
        assert_eq!(found.len(), 1);
        let h = &found[0].hazard;
        assert_eq!((h.kind, h.big), (HazardKind::HeldLock, true));
        assert!(
            h.reason.starts_with("AccessExclusiveLock taken by change \"c0\""),
            "{}",
            h.reason
        );
        assert!(
            h.hint.contains("\"commit_before\": true on change \"c1\""),
            "{}",
            h.hint
        );
        assert_eq!(boundaries(&step, &found), vec![1]);
        // In one change, no boundary helps: split it.
        let same = [
            st(0, 0, vec![lock(1, AccessExclusive)], None),
            st(0, 1, vec![lock(1, ShareUpdateExclusive)], Some("validates")),
        ];
        let found = held_across(&same, &ids);
        assert!(found[0].hazard.hint.starts_with("Split change \"c0\": put statement 2"));
        assert!(boundaries(&same, &found).is_empty());
    }

    #[test]
    fn busy_means_traffic_or_holders_now() {
        let cases: &[(f64, i64, Option<&str>)] = &[
            (0.0, 0, None),
            (0.99, 0, None),
            (1.0, 0, Some("~1 scans and row writes a second")),
            (0.2, 1, Some("1 other session holds a lock on it now")),
            (
                250.4,
                3,
                Some("~250 scans and row writes a second; 3 other sessions hold a lock on it now"),
            ),
        ];
        for (rate, holders, want) in cases {
            assert_eq!(busy_description(*rate, *holders).as_deref(), *want, "{rate} {holders}");
        }
    }

    #[test]
    fn a_busy_small_table_held_across_long_work_says_how_busy() {
        let step = [
            st(0, 0, vec![lock(8, AccessExclusive)], None),
            st(
                1,
                0,
                vec![lock(2, RowExclusive)],
                Some("writes to public.t2, a backfill"),
            ),
        ];
        let found = held_across(&step, &ids);
        assert_eq!(found.len(), 1);
        let h = &found[0].hazard;
        assert!(h.big, "a busy table's hazard is refused like a big one's");
        assert!(
            h.reason.contains("public.t8 (busy: 40 scans and row writes a second)"),
            "{}",
            h.reason
        );
        assert_eq!(
            held_locks(&step)[0].busy.as_deref(),
            Some("40 scans and row writes a second")
        );
    }

    #[test]
    fn only_write_blocking_locks_on_big_tables_weaker_than_the_long_work_needs() {
        type Case = (Vec<Locking>, usize);
        let cases: Vec<Case> = vec![
            // An index build on another table while the first is locked.
            (
                vec![
                    st(0, 0, vec![lock(1, Share)], None),
                    st(1, 0, vec![lock(2, Share)], Some("builds an index")),
                ],
                1,
            ),
            // A backfill of the same table under an earlier ACCESS EXCLUSIVE.
            (
                vec![
                    st(0, 0, vec![lock(1, AccessExclusive)], None),
                    st(1, 0, vec![lock(1, RowExclusive)], Some("writes every row")),
                ],
                1,
            ),
            // The long statement takes the same lock itself: its own hazard, not this one.
            (
                vec![
                    st(0, 0, vec![lock(1, AccessExclusive)], None),
                    st(1, 0, vec![lock(1, AccessExclusive)], Some("rewrites")),
                ],
                0,
            ),
            // SHARE UPDATE EXCLUSIVE blocks no writes.
            (
                vec![
                    st(0, 0, vec![lock(1, ShareUpdateExclusive)], None),
                    st(1, 0, vec![lock(1, ShareUpdateExclusive)], Some("validates")),
                ],
                0,
            ),
            // A small table (oid 9) is not worth a phase.
            (
                vec![
                    st(0, 0, vec![lock(9, AccessExclusive)], None),
                    st(1, 0, vec![lock(2, Share)], Some("builds an index")),
                ],
                0,
            ),
            // A small but busy one (oid 8) is.
            (
                vec![
                    st(0, 0, vec![lock(8, AccessExclusive)], None),
                    st(1, 0, vec![lock(2, Share)], Some("builds an index")),
                ],
                1,
            ),
            // Nothing long afterwards.
            (
                vec![
                    st(0, 0, vec![lock(1, AccessExclusive)], None),
                    st(1, 0, vec![lock(1, RowExclusive)], None),
                ],
                0,
            ),
            // The long statement comes first: the lock is taken after it.
            (
                vec![
                    st(0, 0, vec![lock(2, Share)], Some("builds an index")),
                    st(1, 0, vec![lock(1, AccessExclusive)], None),
                ],
                0,
            ),
        ];
        for (step, want) in cases {
            assert_eq!(held_across(&step, &ids).len(), want, "{step:?}");
        }
    }

    #[test]
    fn per_table_the_strongest_lock_who_takes_it_and_what_runs_under_it() {
        let step = [
            st(0, 0, vec![lock(1, RowExclusive)], None),
            st(1, 0, vec![lock(1, AccessExclusive), lock(2, Share)], None),
            st(1, 1, vec![lock(1, ShareUpdateExclusive)], None),
            st(2, 0, vec![lock(2, RowExclusive)], None),
            st(3, 0, vec![], None),
        ];
        let held = held_locks(&step);
        let got: Vec<(u32, LockMode, usize, Vec<usize>)> = held
            .iter()
            .map(|h| (h.table.oid, h.mode, h.change, h.during.clone()))
            .collect();
        assert_eq!(
            got,
            vec![(1, AccessExclusive, 1, vec![2, 3]), (2, Share, 1, vec![2, 3])]
        );
    }
}
