//! Small readers of PostgreSQL's raw parse tree nodes, shared by the
//! classifier and the tree walk.

use pgrx::pg_sys::{self, NodeTag};
use pgrx::PgList;
use std::ffi::CStr;

/// # Safety
/// `ptr` is null or a NUL-terminated string that outlives the call.
pub unsafe fn text(ptr: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: per the contract.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned())
}

/// The elements of a pointer List, through pgrx's list type.
///
/// # Safety
/// `list` is null (NIL) or a valid pointer List.
pub unsafe fn items(list: *mut pg_sys::List) -> Vec<*mut pg_sys::Node> {
    // SAFETY: per the contract; PgList reads NIL as empty.
    unsafe { PgList::<pg_sys::Node>::from_pg(list) }.iter_ptr().collect()
}

/// # Safety
/// `node` is null or a valid Node.
pub unsafe fn tag(node: *mut pg_sys::Node) -> Option<NodeTag> {
    // SAFETY: per the contract.
    (!node.is_null()).then(|| unsafe { (*node).type_ })
}

/// The value of a String node.
///
/// # Safety
/// `node` is null or a valid Node.
pub unsafe fn string_value(node: *mut pg_sys::Node) -> Option<String> {
    // SAFETY: per the contract; the tag says it is a String.
    unsafe {
        (tag(node) == Some(NodeTag::T_String))
            .then(|| text((*(node as *mut pg_sys::String)).sval))
            .flatten()
    }
}
