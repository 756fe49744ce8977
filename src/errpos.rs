//! Where inside a query text an error happened.
//!
//! pgrx's caught errors carry no cursor position, so a probe sits on
//! PostgreSQL's error context stack while a query runs and copies the cursor
//! position out of each report as it is raised.

use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::c_void;

struct Slot {
    callback: pg_sys::ErrorContextCallback,
    cursor: Cell<i32>,
}

/// Records the cursor position of the last report raised while `watch` runs.
pub struct PositionProbe {
    slot: Box<Slot>,
}

unsafe extern "C-unwind" fn record_cursor(arg: *mut c_void) {
    // SAFETY: `arg` is the `Slot` that `watch` pushed, which lives in a Box that
    // outlives its time on the stack; geterrposition only reads the report
    // being raised, which is what error context callbacks are for.
    unsafe {
        let slot = &*(arg as *const Slot);
        slot.cursor.set(pg_sys::geterrposition());
    }
}

/// Pops the probe off the error context stack, on success and on unwind alike.
struct Pop(*mut pg_sys::ErrorContextCallback);

impl Drop for Pop {
    fn drop(&mut self) {
        // SAFETY: restores the pointer saved when the probe was pushed; no call into PostgreSQL.
        unsafe { pg_sys::error_context_stack = self.0 };
    }
}

impl PositionProbe {
    pub fn new() -> Self {
        PositionProbe {
            slot: Box::new(Slot {
                callback: pg_sys::ErrorContextCallback::default(),
                cursor: Cell::new(0),
            }),
        }
    }

    pub fn watch<R>(&mut self, work: impl FnOnce() -> R) -> R {
        self.slot.cursor.set(0);
        let arg = &*self.slot as *const Slot as *mut c_void;
        // SAFETY: single-threaded backend; the entry is popped by `Pop` before
        // `self.slot` can move or drop.
        let _pop = unsafe {
            let previous = pg_sys::error_context_stack;
            self.slot.callback.previous = previous;
            self.slot.callback.callback = Some(record_cursor);
            self.slot.callback.arg = arg;
            pg_sys::error_context_stack = &mut self.slot.callback;
            Pop(previous)
        };
        work()
    }

    /// PostgreSQL's cursor position (1-based, in characters) of the last report, if it had one.
    pub fn cursor(&self) -> Option<usize> {
        usize::try_from(self.slot.cursor.get())
            .ok()
            .filter(|&c| c > 0)
    }
}
