//! The lock retry policy: how long a change waits before it tries again after
//! a lock timeout.

/// Milliseconds to wait before lock retry `attempt` (1-based): 100 ms doubling
/// to at most 5 s, scaled by `jitter` in [0, 1) to between 50% and 100%, so
/// concurrent deployers do not retry in step.
pub fn retry_backoff_ms(attempt: u32, jitter: f64) -> u64 {
    let base = 100u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(10))
        .min(5_000);
    let scale = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    (base as f64 * scale) as u64
}

/// The table-lock modes as pg_locks names them, weakest first.
pub const LOCK_MODES: [&str; 8] = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

/// Whether a table lock in mode `wanted` must wait for one `held` by another
/// transaction: PostgreSQL's conflict table (lock.c, "Conflict table for the
/// standard lock methods"). Unknown names conflict, to be safe.
pub fn lock_conflicts(wanted: &str, held: &str) -> bool {
    let (Some(w), Some(h)) = (
        LOCK_MODES.iter().position(|m| *m == wanted),
        LOCK_MODES.iter().position(|m| *m == held),
    ) else {
        return true;
    };
    // Row = wanted, column = held, in LOCK_MODES order.
    const CONFLICTS: [[bool; 8]; 8] = [
        [false, false, false, false, false, false, false, true],
        [false, false, false, false, false, false, true, true],
        [false, false, false, false, true, true, true, true],
        [false, false, false, true, true, true, true, true],
        [false, false, true, true, false, true, true, true],
        [false, false, true, true, true, true, true, true],
        [false, true, true, true, true, true, true, true],
        [true, true, true, true, true, true, true, true],
    ];
    CONFLICTS[w][h]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_conflicts_follow_postgres() {
        // Symmetric, as PostgreSQL's table is.
        for a in LOCK_MODES {
            for b in LOCK_MODES {
                assert_eq!(lock_conflicts(a, b), lock_conflicts(b, a), "{a} {b}");
            }
        }
        assert!(lock_conflicts("AccessExclusiveLock", "AccessShareLock"));
        assert!(!lock_conflicts("ShareLock", "AccessShareLock"));
        assert!(lock_conflicts("ShareLock", "RowExclusiveLock"));
        assert!(!lock_conflicts("ShareLock", "ShareLock"));
        assert!(lock_conflicts("ShareUpdateExclusiveLock", "ShareUpdateExclusiveLock"));
        assert!(!lock_conflicts("RowExclusiveLock", "RowExclusiveLock"));
        assert!(lock_conflicts("SomethingNew", "AccessShareLock"));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        assert_eq!(retry_backoff_ms(1, 0.999_999), 99);
        assert_eq!(retry_backoff_ms(1, 0.0), 50);
        assert_eq!(retry_backoff_ms(2, 0.0), 100);
        assert_eq!(retry_backoff_ms(3, 0.0), 200);
        assert_eq!(retry_backoff_ms(30, 0.0), 2_500);
        assert!(retry_backoff_ms(30, 1.0) <= 5_000);
    }
}
