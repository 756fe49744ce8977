//! The lock a statement takes on its main table, read off its parse tree
//! (what the catalogs add is in `pg_deploy_core::locks`), and the object it
//! creates or alters.

use crate::classify::{dotted, range_var};
use crate::node::{items, tag, text};
use pg_deploy_core::analysis::{DropKind, Facts, ObjectName};
use pgrx::pg_sys::{self, NodeTag};
use std::ffi::CStr;

/// PostgreSQL's name of a lock mode (as in pg_locks.mode).
fn lock_name(mode: i32) -> Option<&'static str> {
    if !(1..=pg_sys::AccessExclusiveLock as i32).contains(&mode) {
        return None;
    }
    // SAFETY: GetLockmodeName returns a pointer into a static table of the
    // default lock method for every mode in 1..=AccessExclusiveLock.
    let name = unsafe { CStr::from_ptr(pg_sys::GetLockmodeName(pg_sys::DEFAULT_LOCKMETHOD as _, mode)) };
    name.to_str().ok()
}

/// The lock a statement takes on its main table, when it has one.
///
/// # Safety
/// `stmt` is a valid node from `pg_parse_query`; may raise an ERROR, so call
/// it inside a subtransaction.
pub unsafe fn lock_of(stmt: *mut pg_sys::Node) -> Option<&'static str> {
    // SAFETY: each arm casts the node to the struct its tag names.
    unsafe {
        let mode = match tag(stmt)? {
            NodeTag::T_AlterTableStmt => pg_sys::AlterTableGetLockLevel((*(stmt as *mut pg_sys::AlterTableStmt)).cmds),
            NodeTag::T_IndexStmt if (*(stmt as *mut pg_sys::IndexStmt)).concurrent => {
                pg_sys::ShareUpdateExclusiveLock as i32
            }
            NodeTag::T_IndexStmt => pg_sys::ShareLock as i32,
            // REINDEX TABLE | INDEX: SHARE on the table (and ACCESS EXCLUSIVE on the indexes).
            NodeTag::T_ReindexStmt => pg_sys::ShareLock as i32,
            NodeTag::T_ClusterStmt => pg_sys::AccessExclusiveLock as i32,
            NodeTag::T_DropStmt | NodeTag::T_TruncateStmt | NodeTag::T_RenameStmt => pg_sys::AccessExclusiveLock as i32,
            NodeTag::T_CreateTrigStmt => pg_sys::ShareRowExclusiveLock as i32,
            // LOCK TABLE: the mode it names (ACCESS EXCLUSIVE by default), held until commit.
            NodeTag::T_LockStmt => (*(stmt as *mut pg_sys::LockStmt)).mode,
            NodeTag::T_InsertStmt | NodeTag::T_UpdateStmt | NodeTag::T_DeleteStmt | NodeTag::T_MergeStmt => {
                pg_sys::RowExclusiveLock as i32
            }
            _ => return None,
        };
        lock_name(mode)
    }
}

/// The table a statement's lock is on, from its facts or its parse tree.
///
/// # Safety
/// `stmt` is a valid node from `pg_parse_query`.
pub unsafe fn lock_target(stmt: *mut pg_sys::Node, facts: &Facts) -> Option<ObjectName> {
    let from_facts = match facts {
        Facts::CreateIndex { table, .. }
        | Facts::AlterTable { table, .. }
        | Facts::UnboundedDelete { table }
        | Facts::BulkWrite { table }
        | Facts::Cluster { table }
        | Facts::Reindex {
            target: table,
            index: false,
        } => Some(table.clone()),
        // An index's table is found in the catalogs (pg_deploy_core::locks).
        Facts::Reindex { index: true, .. } => return None,
        Facts::Drop {
            object: DropKind::Table | DropKind::OnTable,
            names,
        } => names.first().cloned(),
        Facts::Truncate { tables } => tables.first().cloned(),
        _ => None,
    };
    if from_facts.is_some() {
        return from_facts;
    }
    // SAFETY: each arm casts the node to the struct its tag names.
    unsafe {
        match tag(stmt)? {
            NodeTag::T_InsertStmt => Some(range_var((*(stmt as *mut pg_sys::InsertStmt)).relation)),
            NodeTag::T_UpdateStmt => Some(range_var((*(stmt as *mut pg_sys::UpdateStmt)).relation)),
            NodeTag::T_DeleteStmt => Some(range_var((*(stmt as *mut pg_sys::DeleteStmt)).relation)),
            NodeTag::T_CreateTrigStmt => Some(range_var((*(stmt as *mut pg_sys::CreateTrigStmt)).relation)),
            NodeTag::T_LockStmt => {
                let first = items((*(stmt as *mut pg_sys::LockStmt)).relations).first().copied();
                first.map(|rv| range_var(rv as *mut pg_sys::RangeVar))
            }
            NodeTag::T_RenameStmt => {
                let rv = (*(stmt as *mut pg_sys::RenameStmt)).relation;
                (!rv.is_null()).then(|| range_var(rv))
            }
            _ => None,
        }
    }
}

/// The object a statement creates or alters, as named (schema or not), for
/// working out which schemas a project manages.
///
/// # Safety
/// `stmt` is a valid node from `pg_parse_query`.
pub unsafe fn object_of(stmt: *mut pg_sys::Node, facts: &Facts) -> Option<ObjectName> {
    if let Facts::CreateIndex { table, .. } | Facts::AlterTable { table, .. } = facts {
        return Some(table.clone());
    }
    // SAFETY: each arm casts the node to the struct its tag names.
    unsafe {
        match tag(stmt)? {
            NodeTag::T_CreateSchemaStmt => {
                let name = text((*(stmt as *mut pg_sys::CreateSchemaStmt)).schemaname)?;
                Some(ObjectName {
                    schema: Some(name),
                    name: String::new(),
                })
            }
            NodeTag::T_CreateStmt => Some(range_var((*(stmt as *mut pg_sys::CreateStmt)).relation)),
            NodeTag::T_ViewStmt => Some(range_var((*(stmt as *mut pg_sys::ViewStmt)).view)),
            NodeTag::T_CreateSeqStmt => Some(range_var((*(stmt as *mut pg_sys::CreateSeqStmt)).sequence)),
            NodeTag::T_CompositeTypeStmt => Some(range_var((*(stmt as *mut pg_sys::CompositeTypeStmt)).typevar)),
            NodeTag::T_CreateTableAsStmt => {
                let into = (*(stmt as *mut pg_sys::CreateTableAsStmt)).into;
                (!into.is_null()).then(|| range_var((*into).rel))
            }
            NodeTag::T_CreateFunctionStmt => Some(dotted((*(stmt as *mut pg_sys::CreateFunctionStmt)).funcname)),
            NodeTag::T_CreateEnumStmt => Some(dotted((*(stmt as *mut pg_sys::CreateEnumStmt)).typeName)),
            NodeTag::T_CreateDomainStmt => Some(dotted((*(stmt as *mut pg_sys::CreateDomainStmt)).domainname)),
            NodeTag::T_CreateRangeStmt => Some(dotted((*(stmt as *mut pg_sys::CreateRangeStmt)).typeName)),
            NodeTag::T_DefineStmt => Some(dotted((*(stmt as *mut pg_sys::DefineStmt)).defnames)),
            NodeTag::T_CreateTrigStmt => Some(range_var((*(stmt as *mut pg_sys::CreateTrigStmt)).relation)),
            _ => None,
        }
    }
}
