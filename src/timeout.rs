//! A statement timeout per statement of a change.
//!
//! `statement_timeout` is armed once per client statement, so setting the GUC
//! inside `deploy.apply` would change nothing. We arm PostgreSQL's own
//! STATEMENT_TIMEOUT timer around each statement instead, never later than the
//! caller's own deadline, and put the caller's timer back afterwards.

use pgrx::pg_sys;

/// `STATEMENT_TIMEOUT` in `enum TimeoutId` (utils/timeout.h); its position has
/// not changed from PostgreSQL 9.3 to 18.
const STATEMENT_TIMEOUT: u32 = 3;

// utils/timeout.h is not in pgrx's bindings; these four are exported by every server.
// The "statement timeout" case of pg_tests' refusals test fires this timer on every
// major the suite runs (15, 16, 18), which checks the id and the signatures.
mod raw {
    unsafe extern "C-unwind" {
        pub fn enable_timeout_at(id: u32, fin_time: pgrx::pg_sys::TimestampTz);
        pub fn disable_timeout(id: u32, keep_indicator: bool);
        pub fn get_timeout_active(id: u32) -> bool;
        pub fn get_timeout_finish_time(id: u32) -> pgrx::pg_sys::TimestampTz;
    }
}

// Each call goes through pgrx's FFI guard, so a PostgreSQL error becomes a Rust unwind.
unsafe fn enable_timeout_at(id: u32, at: pg_sys::TimestampTz) {
    // SAFETY: the caller passes a registered timeout id.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| raw::enable_timeout_at(id, at)) }
}
unsafe fn disable_timeout(id: u32, keep_indicator: bool) {
    // SAFETY: the caller passes a registered timeout id.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| raw::disable_timeout(id, keep_indicator)) }
}
unsafe fn get_timeout_active(id: u32) -> bool {
    // SAFETY: the caller passes a registered timeout id.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| raw::get_timeout_active(id)) }
}
unsafe fn get_timeout_finish_time(id: u32) -> pg_sys::TimestampTz {
    // SAFETY: the caller passes a registered timeout id.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| raw::get_timeout_finish_time(id)) }
}

/// The caller's statement timer, saved before a change runs.
pub struct CallerTimer {
    finish: Option<pg_sys::TimestampTz>,
}

impl CallerTimer {
    pub fn save() -> CallerTimer {
        // SAFETY: plain reads of the timeout module's state.
        let finish =
            unsafe { get_timeout_active(STATEMENT_TIMEOUT).then(|| get_timeout_finish_time(STATEMENT_TIMEOUT)) };
        CallerTimer { finish }
    }

    /// Arms the timer for one statement, from the `statement_timeout` now in
    /// force (0 = none), unless the caller's deadline comes first.
    pub fn arm_for_statement(&self) {
        // SAFETY: reading a GUC variable of the backend.
        let ms = unsafe { pg_sys::StatementTimeout };
        if ms <= 0 {
            return;
        }
        // SAFETY: plain call; returns the current time.
        let ours = unsafe { pg_sys::GetCurrentTimestamp() } + i64::from(ms) * 1000;
        if self.finish.is_some_and(|theirs| theirs <= ours) {
            return;
        }
        // SAFETY: STATEMENT_TIMEOUT is registered in every backend.
        unsafe { enable_timeout_at(STATEMENT_TIMEOUT, ours) };
    }

    /// Puts the caller's timer back as it was.
    pub fn restore(&self) {
        // SAFETY: STATEMENT_TIMEOUT is registered in every backend.
        unsafe {
            match self.finish {
                Some(at) => enable_timeout_at(STATEMENT_TIMEOUT, at),
                None => disable_timeout(STATEMENT_TIMEOUT, false),
            }
        }
    }
}
