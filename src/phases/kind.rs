//! What an online statement is, read off its raw parse tree.

use crate::node::{tag, text};
use pg_deploy_core::analysis::ObjectName;
use pg_deploy_core::phases::OnlineKind;
use pgrx::pg_sys::{self, NodeTag};

/// # Safety
/// `stmt` is a valid node from `pg_parse_query`.
pub unsafe fn online_kind(stmt: *mut pg_sys::Node) -> OnlineKind {
    // SAFETY: each arm casts the node to the struct its tag names.
    unsafe {
        match tag(stmt) {
            Some(NodeTag::T_IndexStmt) => {
                let s = stmt as *mut pg_sys::IndexStmt;
                let rv = (*s).relation;
                let table = if rv.is_null() {
                    ObjectName::default()
                } else {
                    ObjectName {
                        schema: text((*rv).schemaname),
                        name: text((*rv).relname).unwrap_or_default(),
                    }
                };
                if (*s).concurrent {
                    OnlineKind::CreateIndex {
                        table,
                        index: text((*s).idxname),
                    }
                } else {
                    OnlineKind::Other
                }
            }
            Some(NodeTag::T_DropStmt) => {
                let s = stmt as *mut pg_sys::DropStmt;
                if (*s).concurrent && (*s).removeType == pg_sys::ObjectType::OBJECT_INDEX {
                    OnlineKind::DropIndex
                } else {
                    OnlineKind::Other
                }
            }
            Some(NodeTag::T_InsertStmt | NodeTag::T_UpdateStmt | NodeTag::T_DeleteStmt | NodeTag::T_MergeStmt) => {
                OnlineKind::Dml
            }
            Some(
                NodeTag::T_VacuumStmt
                | NodeTag::T_ReindexStmt
                | NodeTag::T_ClusterStmt
                | NodeTag::T_RefreshMatViewStmt
                | NodeTag::T_AlterSystemStmt,
            ) => OnlineKind::Rerunnable,
            _ => OnlineKind::Other,
        }
    }
}
