//! Memory scopes: what PostgreSQL allocates for one change (SPI results,
//! catalog reads, parse trees) goes when the change is done, so a deployment
//! of thousands of changes does not grow with each of them.

use pgrx::{pg_sys, PgMemoryContexts};

/// Runs `work` in a memory context of its own, deleted afterwards. Nothing
/// allocated by PostgreSQL inside may be kept: copy results into Rust values.
pub fn scoped<R>(name: &str, work: impl FnOnce() -> R) -> R {
    let scope = PgMemoryContexts::new(name);
    // SAFETY: `scope` is a live context; `_back` switches to the caller's
    // context on return and on unwind alike, before `scope` is deleted.
    let previous = unsafe { pg_sys::MemoryContextSwitchTo(scope.value()) };
    let _back = SwitchBack(previous);
    work()
}

struct SwitchBack(pg_sys::MemoryContext);

impl Drop for SwitchBack {
    fn drop(&mut self) {
        // SAFETY: the caller's context, which outlives the scope.
        unsafe { pg_sys::MemoryContextSwitchTo(self.0) };
    }
}
