//! Reading the facts pg_deploy's rules need off PostgreSQL's raw parse tree.
//! The rules themselves are in `pg_deploy_core::analysis`.

use crate::node::{items, tag, text};
use crate::tree_walk;
use pg_deploy_core::analysis::{AlterCommand, ConstraintKind, DropKind, Facts, ObjectName};
use pgrx::pg_sys::{self, NodeTag};
use std::ffi::CStr;

/// # Safety
/// `rv` is null or a valid RangeVar.
unsafe fn range_var(rv: *mut pg_sys::RangeVar) -> ObjectName {
    if rv.is_null() {
        return ObjectName::default();
    }
    // SAFETY: per the contract.
    unsafe {
        ObjectName {
            schema: text((*rv).schemaname),
            name: text((*rv).relname).unwrap_or_default(),
        }
    }
}

/// A dotted name from a List of String nodes (`schema.name` or `name`).
///
/// # Safety
/// `list` is a valid List of String nodes.
unsafe fn dotted(list: *mut pg_sys::List) -> ObjectName {
    // SAFETY: per the contract.
    let mut parts: Vec<String> = unsafe { items(list) }
        .into_iter()
        .filter(|n| unsafe { tag(*n) } == Some(NodeTag::T_String))
        .filter_map(|n| unsafe { text((*(n as *mut pg_sys::String)).sval) })
        .collect();
    let name = parts.pop().unwrap_or_default();
    ObjectName {
        schema: parts.pop(),
        name,
    }
}

/// # Safety
/// `list` is a valid List of DefElem.
unsafe fn has_option(list: *mut pg_sys::List, name: &str) -> bool {
    // SAFETY: per the contract.
    unsafe { items(list) }.into_iter().any(|n| unsafe {
        tag(n) == Some(NodeTag::T_DefElem) && text((*(n as *mut pg_sys::DefElem)).defname).as_deref() == Some(name)
    })
}

/// The type name of a column definition, as `to_regtype` reads it.
///
/// # Safety
/// `type_name` is null or a valid TypeName.
pub unsafe fn type_name_text(type_name: *mut pg_sys::TypeName) -> Option<String> {
    if type_name.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    unsafe {
        let name = dotted((*type_name).names);
        let arrays = "[]".repeat(items((*type_name).arrayBounds).len());
        Some(format!("{name}{arrays}"))
    }
}

/// The facts of one raw statement.
///
/// # Safety
/// `stmt` is a valid node from `pg_parse_query`.
pub unsafe fn facts_of(stmt: *mut pg_sys::Node) -> Facts {
    // SAFETY: each arm casts the node to the struct its tag names.
    unsafe {
        match tag(stmt) {
            Some(NodeTag::T_TransactionStmt) => Facts::TransactionControl,
            Some(NodeTag::T_IndexStmt) => {
                let s = stmt as *mut pg_sys::IndexStmt;
                if (*s).concurrent {
                    Facts::NonTransactional
                } else {
                    Facts::CreateIndex {
                        table: range_var((*s).relation),
                        concurrent: false,
                    }
                }
            }
            Some(NodeTag::T_DropStmt) => {
                let s = stmt as *mut pg_sys::DropStmt;
                if (*s).concurrent {
                    return Facts::NonTransactional;
                }
                let object = match (*s).removeType {
                    pg_sys::ObjectType::OBJECT_TABLE => DropKind::Table,
                    pg_sys::ObjectType::OBJECT_SCHEMA => DropKind::Schema,
                    _ => DropKind::Other,
                };
                let names = items((*s).objects)
                    .into_iter()
                    .map(|o| match tag(o) {
                        Some(NodeTag::T_List) => dotted(o as *mut pg_sys::List),
                        Some(NodeTag::T_String) => ObjectName {
                            schema: None,
                            name: text((*(o as *mut pg_sys::String)).sval).unwrap_or_default(),
                        },
                        _ => ObjectName::default(),
                    })
                    .collect();
                Facts::Drop { object, names }
            }
            Some(NodeTag::T_ReindexStmt) => {
                let s = stmt as *mut pg_sys::ReindexStmt;
                let whole = matches!(
                    (*s).kind,
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_DATABASE
                        | pg_sys::ReindexObjectType::REINDEX_OBJECT_SYSTEM
                );
                if whole || has_option((*s).params, "concurrently") {
                    Facts::NonTransactional
                } else {
                    Facts::Other
                }
            }
            Some(NodeTag::T_VacuumStmt) => {
                if (*(stmt as *mut pg_sys::VacuumStmt)).is_vacuumcmd {
                    Facts::NonTransactional
                } else {
                    Facts::Other
                }
            }
            Some(NodeTag::T_ClusterStmt) => {
                if (*(stmt as *mut pg_sys::ClusterStmt)).relation.is_null() {
                    Facts::NonTransactional
                } else {
                    Facts::Other
                }
            }
            Some(NodeTag::T_AlterDatabaseStmt) => {
                if has_option((*(stmt as *mut pg_sys::AlterDatabaseStmt)).options, "tablespace") {
                    Facts::NonTransactional
                } else {
                    Facts::Other
                }
            }
            Some(
                NodeTag::T_CreatedbStmt
                | NodeTag::T_DropdbStmt
                | NodeTag::T_CreateTableSpaceStmt
                | NodeTag::T_DropTableSpaceStmt
                | NodeTag::T_AlterSystemStmt
                | NodeTag::T_CreateSubscriptionStmt
                | NodeTag::T_DropSubscriptionStmt,
            ) => Facts::NonTransactional,
            Some(
                NodeTag::T_DiscardStmt
                | NodeTag::T_ListenStmt
                | NodeTag::T_UnlistenStmt
                | NodeTag::T_PrepareStmt
                | NodeTag::T_DeallocateStmt
                | NodeTag::T_LoadStmt,
            ) => Facts::SessionState,
            Some(NodeTag::T_DeclareCursorStmt) => {
                if (*(stmt as *mut pg_sys::DeclareCursorStmt)).options & pg_sys::CURSOR_OPT_HOLD as i32 != 0 {
                    Facts::SessionState
                } else {
                    Facts::Other
                }
            }
            // Temporary tables are not refused from the text (a change may
            // create one and drop it again): what a change leaves in the
            // session is checked after it runs (execute::session_left).
            Some(NodeTag::T_CopyStmt) => {
                let s = stmt as *mut pg_sys::CopyStmt;
                if (*s).filename.is_null() && !(*s).is_program {
                    Facts::ClientCopy
                } else {
                    Facts::Other
                }
            }
            Some(NodeTag::T_AlterEnumStmt) => {
                let s = stmt as *mut pg_sys::AlterEnumStmt;
                match (text((*s).oldVal), text((*s).newVal)) {
                    (None, Some(value)) => Facts::AddEnumValue {
                        type_name: dotted((*s).typeName),
                        value,
                    },
                    _ => Facts::Other,
                }
            }
            Some(NodeTag::T_AlterTableStmt) => {
                let s = stmt as *mut pg_sys::AlterTableStmt;
                let commands = items((*s).cmds)
                    .into_iter()
                    .filter(|c| tag(*c) == Some(NodeTag::T_AlterTableCmd))
                    .map(|c| alter_command(c as *mut pg_sys::AlterTableCmd))
                    .collect();
                Facts::AlterTable {
                    table: range_var((*s).relation),
                    commands,
                }
            }
            Some(NodeTag::T_TruncateStmt) => {
                let s = stmt as *mut pg_sys::TruncateStmt;
                let tables = items((*s).relations)
                    .into_iter()
                    .map(|r| range_var(r as *mut pg_sys::RangeVar))
                    .collect();
                Facts::Truncate { tables }
            }
            Some(NodeTag::T_DeleteStmt) => {
                let s = stmt as *mut pg_sys::DeleteStmt;
                if (*s).whereClause.is_null() {
                    Facts::UnboundedDelete {
                        table: range_var((*s).relation),
                    }
                } else {
                    Facts::Other
                }
            }
            _ => Facts::Other,
        }
    }
}

/// # Safety
/// `cmd` is a valid AlterTableCmd.
unsafe fn alter_command(cmd: *mut pg_sys::AlterTableCmd) -> AlterCommand {
    use pg_sys::AlterTableType as At;
    // SAFETY: per the contract; `def` is cast to what its subtype carries.
    unsafe {
        let column = text((*cmd).name).unwrap_or_default();
        match (*cmd).subtype {
            At::AT_AddColumn if tag((*cmd).def) == Some(NodeTag::T_ColumnDef) => {
                let def = (*cmd).def as *mut pg_sys::ColumnDef;
                let mut has_default = !(*def).raw_default.is_null();
                let mut not_null = (*def).is_not_null;
                let mut default_expr = None;
                for c in items((*def).constraints) {
                    if tag(c) != Some(NodeTag::T_Constraint) {
                        continue;
                    }
                    let c = c as *mut pg_sys::Constraint;
                    match (*c).contype {
                        pg_sys::ConstrType::CONSTR_DEFAULT => {
                            has_default = true;
                            default_expr = Some((*c).raw_expr);
                        }
                        pg_sys::ConstrType::CONSTR_IDENTITY => has_default = true,
                        pg_sys::ConstrType::CONSTR_NOTNULL => not_null = true,
                        _ => {}
                    }
                }
                let type_name = type_name_text((*def).typeName).unwrap_or_default();
                let serial = matches!(
                    type_name.as_str(),
                    "serial" | "bigserial" | "smallserial" | "serial4" | "serial8" | "serial2"
                );
                AlterCommand::AddColumn {
                    column: text((*def).colname).unwrap_or_default(),
                    default_functions: default_expr
                        .map(|e| tree_walk::walk_expression(e).functions)
                        .unwrap_or_default(),
                    serial,
                    not_null_without_default: not_null && !has_default && !serial,
                }
            }
            At::AT_AlterColumnType if tag((*cmd).def) == Some(NodeTag::T_ColumnDef) => {
                let def = (*cmd).def as *mut pg_sys::ColumnDef;
                AlterCommand::AlterColumnType {
                    column,
                    new_type: type_name_text((*def).typeName).unwrap_or_default(),
                    using: !(*def).raw_default.is_null(),
                }
            }
            At::AT_AddConstraint if tag((*cmd).def) == Some(NodeTag::T_Constraint) => {
                let c = (*cmd).def as *mut pg_sys::Constraint;
                let kind = match (*c).contype {
                    pg_sys::ConstrType::CONSTR_FOREIGN => ConstraintKind::ForeignKey,
                    pg_sys::ConstrType::CONSTR_CHECK => ConstraintKind::Check,
                    pg_sys::ConstrType::CONSTR_UNIQUE => ConstraintKind::Unique,
                    pg_sys::ConstrType::CONSTR_PRIMARY => ConstraintKind::PrimaryKey,
                    pg_sys::ConstrType::CONSTR_EXCLUSION => ConstraintKind::Exclusion,
                    _ => ConstraintKind::Other,
                };
                let uses_index = !(*c).indexname.is_null();
                AlterCommand::AddConstraint {
                    kind,
                    validated: !(*c).skip_validation,
                    uses_index,
                }
            }
            At::AT_SetNotNull => AlterCommand::SetNotNull { column },
            At::AT_DropColumn => AlterCommand::DropColumn { column },
            At::AT_DetachPartition if tag((*cmd).def) == Some(NodeTag::T_PartitionCmd) => {
                if (*((*cmd).def as *mut pg_sys::PartitionCmd)).concurrent {
                    AlterCommand::DetachConcurrently
                } else {
                    AlterCommand::Other
                }
            }
            _ => AlterCommand::Other,
        }
    }
}

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
            NodeTag::T_DropStmt | NodeTag::T_TruncateStmt | NodeTag::T_RenameStmt => pg_sys::AccessExclusiveLock as i32,
            NodeTag::T_CreateTrigStmt => pg_sys::ShareRowExclusiveLock as i32,
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
        Facts::CreateIndex { table, .. } | Facts::AlterTable { table, .. } | Facts::UnboundedDelete { table } => {
            Some(table.clone())
        }
        Facts::Drop {
            object: DropKind::Table,
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
