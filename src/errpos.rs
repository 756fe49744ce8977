//! Where inside a query text an error happened.
//!
//! pgrx's caught errors carry no cursor position, so a probe sits on
//! PostgreSQL's error context stack while a query runs and copies the position
//! out of each report as it is raised.
//!
//! SPI's own error callback, which runs before ours, moves a statement's
//! cursor position into the "internal" position. An internal position can also
//! come from code the statement called (a function body), so it is trusted only
//! when at most two callbacks sit above ours: SPI's, and the parser's
//! position callback.

use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::c_void;

struct Slot {
    callback: pg_sys::ErrorContextCallback,
    cursor: Cell<i32>,
}

/// Callbacks that may sit above the probe while the position is still ours.
const OWN_CALLBACKS_ABOVE: usize = 2;

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
        let mut above = 0;
        let mut entry = pg_sys::error_context_stack;
        while !entry.is_null() && !std::ptr::eq(entry, &slot.callback) {
            above += 1;
            entry = (*entry).previous;
        }
        let cursor = pg_sys::geterrposition();
        let internal = pg_sys::getinternalerrposition();
        slot.cursor.set(if cursor > 0 {
            cursor
        } else if above <= OWN_CALLBACKS_ABOVE {
            internal
        } else {
            0
        });
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
        usize::try_from(self.slot.cursor.get()).ok().filter(|&c| c > 0)
    }
}
