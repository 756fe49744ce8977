//! Reading the facts pg_deploy's rules need off PostgreSQL's raw parse tree.
//! The rules themselves are in `pg_deploy_core::analysis`.

use crate::node::{items, string_value, tag, text};
use crate::tree_walk;
use pg_deploy_core::analysis::{AlterCommand, ConstraintKind, DropKind, Facts, ObjectName};
use pg_deploy_core::outside::OutsideTransaction as Outside;
use pgrx::pg_sys::{self, NodeTag};

/// # Safety
/// `rv` is null or a valid RangeVar.
pub unsafe fn range_var(rv: *mut pg_sys::RangeVar) -> ObjectName {
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
pub unsafe fn dotted(list: *mut pg_sys::List) -> ObjectName {
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

/// The value of a boolean option (`WITH (create_slot = false)`), as
/// PostgreSQL's defGetBoolean reads it; None when absent, true when written
/// without a value.
///
/// # Safety
/// `list` is a valid List of DefElem.
unsafe fn bool_option(list: *mut pg_sys::List, name: &str) -> Option<bool> {
    // SAFETY: per the contract; each cast follows the node's tag.
    unsafe {
        let def = items(list).into_iter().find(|n| {
            tag(*n) == Some(NodeTag::T_DefElem)
                && text((*(*n as *mut pg_sys::DefElem)).defname).as_deref() == Some(name)
        })? as *mut pg_sys::DefElem;
        let arg = (*def).arg;
        Some(match tag(arg) {
            None => true,
            Some(NodeTag::T_Integer) => (*(arg as *mut pg_sys::Integer)).ival != 0,
            Some(NodeTag::T_Boolean) => (*(arg as *mut pg_sys::Boolean)).boolval,
            // `off` and other bare words arrive as a type name (gram.y def_arg: func_type).
            Some(NodeTag::T_TypeName) => !is_false(type_name_text(arg as *mut pg_sys::TypeName)),
            _ => !is_false(string_value(arg)),
        })
    }
}

/// A false boolean option value, as parse_bool reads it.
fn is_false(value: Option<String>) -> bool {
    matches!(
        value.map(|v| v.to_ascii_lowercase()).as_deref(),
        Some("false" | "off" | "0" | "f" | "n" | "no" | "fa" | "fal" | "fals" | "of")
    )
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
                    Facts::NonTransactional(Outside::CreateIndexConcurrently)
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
                    return Facts::NonTransactional(Outside::DropIndexConcurrently);
                }
                use pg_sys::ObjectType as O;
                let object = match (*s).removeType {
                    O::OBJECT_TABLE => DropKind::Table,
                    O::OBJECT_SCHEMA => DropKind::Schema,
                    O::OBJECT_INDEX => DropKind::Index,
                    O::OBJECT_TRIGGER | O::OBJECT_RULE | O::OBJECT_POLICY => DropKind::OnTable,
                    _ => DropKind::Other,
                };
                let names = items((*s).objects)
                    .into_iter()
                    .map(|o| match tag(o) {
                        // trigger ON table: [schema,] table, trigger; the lock is on the table.
                        Some(NodeTag::T_List) if object == DropKind::OnTable => {
                            let mut parts = items(o as *mut pg_sys::List);
                            parts.pop();
                            let mut names: Vec<String> = parts.into_iter().filter_map(|n| string_value(n)).collect();
                            let name = names.pop().unwrap_or_default();
                            ObjectName {
                                schema: names.pop(),
                                name,
                            }
                        }
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
                use pg_sys::ReindexObjectType as R;
                let s = stmt as *mut pg_sys::ReindexStmt;
                match (*s).kind {
                    _ if bool_option((*s).params, "concurrently") == Some(true) => {
                        Facts::NonTransactional(Outside::ReindexConcurrently)
                    }
                    R::REINDEX_OBJECT_SCHEMA => Facts::NonTransactional(Outside::ReindexSchema),
                    R::REINDEX_OBJECT_SYSTEM => Facts::NonTransactional(Outside::ReindexSystem),
                    R::REINDEX_OBJECT_DATABASE => Facts::NonTransactional(Outside::ReindexDatabase),
                    kind => Facts::Reindex {
                        target: range_var((*s).relation),
                        index: kind == R::REINDEX_OBJECT_INDEX,
                    },
                }
            }
            Some(NodeTag::T_VacuumStmt) => {
                if (*(stmt as *mut pg_sys::VacuumStmt)).is_vacuumcmd {
                    Facts::NonTransactional(Outside::Vacuum)
                } else {
                    Facts::Other
                }
            }
            Some(NodeTag::T_ClusterStmt) => {
                let relation = (*(stmt as *mut pg_sys::ClusterStmt)).relation;
                if relation.is_null() {
                    Facts::NonTransactional(Outside::ClusterAll)
                } else {
                    Facts::Cluster {
                        table: range_var(relation),
                    }
                }
            }
            Some(NodeTag::T_AlterDatabaseStmt) => {
                if has_option((*(stmt as *mut pg_sys::AlterDatabaseStmt)).options, "tablespace") {
                    Facts::NonTransactional(Outside::AlterDatabaseSetTablespace)
                } else {
                    Facts::Other
                }
            }
            Some(NodeTag::T_CreatedbStmt) => Facts::NonTransactional(Outside::CreateDatabase),
            Some(NodeTag::T_DropdbStmt) => Facts::NonTransactional(Outside::DropDatabase),
            Some(NodeTag::T_CreateTableSpaceStmt) => Facts::NonTransactional(Outside::CreateTablespace),
            Some(NodeTag::T_DropTableSpaceStmt) => Facts::NonTransactional(Outside::DropTablespace),
            Some(NodeTag::T_AlterSystemStmt) => Facts::NonTransactional(Outside::AlterSystem),
            Some(NodeTag::T_DropSubscriptionStmt) => Facts::DropSubscription {
                name: text((*(stmt as *mut pg_sys::DropSubscriptionStmt)).subname).unwrap_or_default(),
            },
            Some(NodeTag::T_CreateSubscriptionStmt) => {
                let options = (*(stmt as *mut pg_sys::CreateSubscriptionStmt)).options;
                // connect = false implies create_slot = false (parse_subscription_options).
                if bool_option(options, "create_slot") == Some(false) || bool_option(options, "connect") == Some(false)
                {
                    Facts::Other
                } else {
                    Facts::NonTransactional(Outside::CreateSubscriptionWithSlot)
                }
            }
            Some(NodeTag::T_AlterSubscriptionStmt) => alter_subscription(stmt as *mut pg_sys::AlterSubscriptionStmt),
            Some(NodeTag::T_DiscardStmt)
                if (*(stmt as *mut pg_sys::DiscardStmt)).target == pg_sys::DiscardMode::DISCARD_ALL =>
            {
                Facts::NonTransactional(Outside::DiscardAll)
            }
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
            Some(NodeTag::T_RenameStmt) => {
                let s = stmt as *mut pg_sys::RenameStmt;
                // A table renamed (RENAME TO), not one of its columns or constraints.
                if (*s).renameType == pg_sys::ObjectType::OBJECT_TABLE && !(*s).relation.is_null() {
                    Facts::RenameTable {
                        table: range_var((*s).relation),
                    }
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
                let table = range_var((*s).relation);
                if (*s).whereClause.is_null() {
                    Facts::UnboundedDelete { table }
                } else {
                    Facts::BulkWrite { table }
                }
            }
            Some(NodeTag::T_UpdateStmt) => Facts::BulkWrite {
                table: range_var((*(stmt as *mut pg_sys::UpdateStmt)).relation),
            },
            Some(NodeTag::T_MergeStmt) => Facts::BulkWrite {
                table: range_var((*(stmt as *mut pg_sys::MergeStmt)).relation),
            },
            Some(NodeTag::T_InsertStmt) => {
                let s = stmt as *mut pg_sys::InsertStmt;
                let select = (*s).selectStmt;
                // INSERT … VALUES is a SelectStmt with valuesLists: short.
                let values = tag(select) == Some(NodeTag::T_SelectStmt)
                    && !(*(select as *mut pg_sys::SelectStmt)).valuesLists.is_null();
                if select.is_null() || values {
                    Facts::Other
                } else {
                    Facts::BulkWrite {
                        table: range_var((*s).relation),
                    }
                }
            }
            Some(NodeTag::T_AlterDomainStmt) => {
                let s = stmt as *mut pg_sys::AlterDomainStmt;
                let def = (*s).def;
                let validated_constraint =
                    tag(def) == Some(NodeTag::T_Constraint) && !(*(def as *mut pg_sys::Constraint)).skip_validation;
                // 'C' ADD CONSTRAINT, 'O' SET NOT NULL: both check every stored value.
                match (*s).subtype as u8 {
                    b'C' if validated_constraint => Facts::DomainValidation {
                        domain: dotted((*s).typeName),
                    },
                    b'O' => Facts::DomainValidation {
                        domain: dotted((*s).typeName),
                    },
                    _ => Facts::Other,
                }
            }
            _ => Facts::Other,
        }
    }
}

/// ALTER SUBSCRIPTION: the forms that refresh or alter the slot run only
/// outside a transaction block (subscriptioncmds.c AlterSubscription).
///
/// # Safety
/// `s` is a valid AlterSubscriptionStmt.
unsafe fn alter_subscription(s: *mut pg_sys::AlterSubscriptionStmt) -> Facts {
    use pg_sys::AlterSubscriptionType as A;
    // SAFETY: per the contract.
    unsafe {
        let options = (*s).options;
        match (*s).kind {
            A::ALTER_SUBSCRIPTION_REFRESH => Facts::NonTransactional(Outside::AlterSubscriptionRefresh),
            A::ALTER_SUBSCRIPTION_SET_PUBLICATION
            | A::ALTER_SUBSCRIPTION_ADD_PUBLICATION
            | A::ALTER_SUBSCRIPTION_DROP_PUBLICATION
                if bool_option(options, "refresh") != Some(false) =>
            {
                Facts::NonTransactional(Outside::AlterSubscriptionRefresh)
            }
            A::ALTER_SUBSCRIPTION_OPTIONS
                if bool_option(options, "failover").is_some() || bool_option(options, "two_phase") == Some(false) =>
            {
                Facts::NonTransactional(Outside::AlterSubscriptionSlotOption)
            }
            _ => Facts::Other,
        }
    }
}

/// The column a CHECK expression proves NOT NULL: `column IS NOT NULL`.
///
/// # Safety
/// `expr` is null or a valid raw expression.
unsafe fn not_null_of(expr: *mut pg_sys::Node) -> Option<String> {
    // SAFETY: per the contract; each cast follows the node's tag.
    unsafe {
        if tag(expr) != Some(NodeTag::T_NullTest) {
            return None;
        }
        let test = expr as *mut pg_sys::NullTest;
        if (*test).nulltesttype != pg_sys::NullTestType::IS_NOT_NULL
            || tag((*test).arg as *mut pg_sys::Node) != Some(NodeTag::T_ColumnRef)
        {
            return None;
        }
        let fields = items((*((*test).arg as *mut pg_sys::ColumnRef)).fields);
        match fields.as_slice() {
            [only] => string_value(*only),
            _ => None,
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
                let mut stored_generated = false;
                let mut builds_index = false;
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
                        pg_sys::ConstrType::CONSTR_GENERATED => stored_generated = generated_stored(c),
                        pg_sys::ConstrType::CONSTR_UNIQUE | pg_sys::ConstrType::CONSTR_PRIMARY => builds_index = true,
                        _ => {}
                    }
                }
                let type_name = type_name_text((*def).typeName).unwrap_or_default();
                let serial = pg_deploy_core::capacity::is_serial(&type_name);
                AlterCommand::AddColumn {
                    column: text((*def).colname).unwrap_or_default(),
                    default_functions: default_expr
                        .map(|e| tree_walk::walk_expression(e).functions)
                        .unwrap_or_default(),
                    serial,
                    not_null_without_default: not_null && !has_default && !serial,
                    stored_generated,
                    builds_index,
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
                    name: text((*c).conname),
                    not_null_of: if kind == ConstraintKind::Check {
                        not_null_of((*c).raw_expr)
                    } else {
                        None
                    },
                }
            }
            At::AT_ValidateConstraint => AlterCommand::ValidateConstraint { name: column },
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

/// Whether a GENERATED column is stored (computed for every row when added);
/// PostgreSQL 18 also has virtual ones, computed when read.
///
/// # Safety
/// `c` is a valid Constraint of type CONSTR_GENERATED.
#[allow(unused_variables)]
unsafe fn generated_stored(c: *mut pg_sys::Constraint) -> bool {
    #[cfg(feature = "pg18")]
    {
        // SAFETY: per the contract.
        (unsafe { (*c).generated_kind }) as u8 != pg_sys::ATTRIBUTE_GENERATED_VIRTUAL
    }
    #[cfg(not(feature = "pg18"))]
    {
        true
    }
}

/// Whether a statement cannot leave anything in the session (a prepared
/// statement, a temporary object): DDL that runs no user code when it runs
/// (defaults, checks and view queries are stored, not evaluated; index
/// expressions are immutable; DROP, RENAME, ALTER … OWNER/SET SCHEMA and an
/// ALTER TABLE or ALTER DOMAIN calling no function only change the catalogs
/// or rewrite and check rows with built-in code) and creates nothing
/// temporary. Not covered: a user-defined cast or type input function that
/// leaves session state when a column's type changes. For a change made
/// only of these the session check before and after it is skipped: it
/// re-plans on every call in a transaction full of catalog changes.
///
/// # Safety
/// `stmt` is a valid node from `pg_parse_query`.
pub unsafe fn leaves_no_session_state(stmt: *mut pg_sys::Node) -> bool {
    let in_temp_schema = |schema: Option<String>| schema.is_some_and(|s| s.starts_with("pg_temp"));
    let temporary = |rv: *mut pg_sys::RangeVar| {
        // SAFETY: rv is null or a RangeVar of the statement.
        !rv.is_null()
            && unsafe {
                (*rv).relpersistence == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char
                    || in_temp_schema(text((*rv).schemaname))
            }
    };
    // A qualified name (a List of String) whose schema is pg_temp.
    let temporary_name = |names: *mut pg_sys::List| {
        // SAFETY: names is a name list of the statement.
        let names = unsafe { items(names) };
        names.len() > 1 && in_temp_schema(unsafe { string_value(names[0]) })
    };
    // SAFETY: each arm casts the node to the struct its tag names.
    unsafe {
        match tag(stmt) {
            Some(NodeTag::T_CreateStmt) => !temporary((*(stmt as *mut pg_sys::CreateStmt)).relation),
            Some(NodeTag::T_ViewStmt) => !temporary((*(stmt as *mut pg_sys::ViewStmt)).view),
            Some(NodeTag::T_CreateSeqStmt) => !temporary((*(stmt as *mut pg_sys::CreateSeqStmt)).sequence),
            Some(NodeTag::T_IndexStmt) => !temporary((*(stmt as *mut pg_sys::IndexStmt)).relation),
            Some(NodeTag::T_CompositeTypeStmt) => !temporary((*(stmt as *mut pg_sys::CompositeTypeStmt)).typevar),
            Some(NodeTag::T_CreateEnumStmt) => !temporary_name((*(stmt as *mut pg_sys::CreateEnumStmt)).typeName),
            Some(NodeTag::T_CreateRangeStmt) => !temporary_name((*(stmt as *mut pg_sys::CreateRangeStmt)).typeName),
            Some(NodeTag::T_CreateDomainStmt) => !temporary_name((*(stmt as *mut pg_sys::CreateDomainStmt)).domainname),
            Some(NodeTag::T_CreateFunctionStmt) => {
                !temporary_name((*(stmt as *mut pg_sys::CreateFunctionStmt)).funcname)
            }
            Some(
                NodeTag::T_CreateSchemaStmt
                | NodeTag::T_CommentStmt
                | NodeTag::T_GrantStmt
                | NodeTag::T_DropStmt
                | NodeTag::T_RenameStmt
                | NodeTag::T_AlterEnumStmt
                | NodeTag::T_AlterSeqStmt
                | NodeTag::T_AlterOwnerStmt
                | NodeTag::T_AlterObjectSchemaStmt
                | NodeTag::T_CreateTrigStmt
                | NodeTag::T_CreatePolicyStmt
                | NodeTag::T_AlterPolicyStmt,
            ) => true,
            // A rewrite or a validation evaluates the expressions the statement
            // carries: inert only when they call no function.
            Some(NodeTag::T_AlterTableStmt | NodeTag::T_AlterDomainStmt) => {
                crate::tree_walk::walk_statement(stmt).functions.is_empty()
            }
            _ => false,
        }
    }
}
