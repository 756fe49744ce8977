//! What a statement's raw parse tree holds that the analysis reads off
//! expressions: the functions it calls and the string constants it carries.
//!
//! PostgreSQL's `raw_expression_tree_walker` walks expressions and DML; the
//! utility statements whose expressions matter here (defaults, checks,
//! views, index predicates, triggers, policies, domains, DO) are opened by
//! hand, and only node kinds the walker knows are handed to it (it raises an
//! ERROR on any other). Comments never reach the tree, and dollar-quoted or
//! `E''` strings arrive as the constants they denote.

use crate::node::{items, string_value, tag};
use pgrx::pg_sys::{self, NodeTag};
use std::ffi::c_void;

/// Functions called and string constants found in a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeFacts {
    /// Unqualified names of the functions called.
    pub functions: Vec<String>,
    /// Every string constant (`'…'`, `$$…$$`, `E'…'`), as the lexer decoded it,
    /// whose type the statement does not write next to it.
    pub strings: Vec<String>,
    /// String constants whose type is written next to them (`'x'::t`, a
    /// column's `DEFAULT 'x'`), with that type's unqualified name.
    pub typed_strings: Vec<(String, String)>,
    /// Bodies of DO blocks: code in another language, run by the statement.
    pub do_bodies: Vec<String>,
    /// Temporary tables it creates ON COMMIT DROP: gone when the deployment commits.
    pub dropped_at_commit: Vec<String>,
}

impl TreeFacts {
    /// Whether the tree may use `value` as a value of the type named
    /// `type_name` (unqualified): a constant of unknown type, one written as
    /// of that type, or `literal` (the value quoted as SQL writes it) in a DO
    /// body. A constant written as of another type (another enum with the
    /// same label) is not a use.
    pub fn uses_string(&self, value: &str, literal: &str, type_name: &str) -> bool {
        self.strings.iter().any(|s| s == value)
            || self.typed_strings.iter().any(|(s, t)| s == value && t == type_name)
            || self.do_bodies.iter().any(|b| b.contains(literal))
    }
}

/// Walks one raw expression.
///
/// # Safety
/// `expr` is null or a valid raw expression node.
pub unsafe fn walk_expression(expr: *mut pg_sys::Node) -> TreeFacts {
    let mut facts = TreeFacts::default();
    // SAFETY: per the contract.
    unsafe { expression(expr, &mut facts) };
    facts
}

/// Walks a raw statement: its expressions, and the statements it holds.
///
/// # Safety
/// `stmt` is a valid raw statement node from `pg_parse_query`.
pub unsafe fn walk_statement(stmt: *mut pg_sys::Node) -> TreeFacts {
    let mut facts = TreeFacts::default();
    // SAFETY: per the contract.
    unsafe { statement(stmt, &mut facts) };
    facts
}

/// Node kinds handed to PostgreSQL's walker whole.
fn walker_knows(t: NodeTag) -> bool {
    use NodeTag::*;
    matches!(
        t,
        T_SelectStmt
            | T_InsertStmt
            | T_UpdateStmt
            | T_DeleteStmt
            | T_A_Expr
            | T_A_Const
            | T_BoolExpr
            | T_FuncCall
            | T_TypeCast
            | T_ColumnRef
            | T_SubLink
            | T_CaseExpr
            | T_CoalesceExpr
            | T_MinMaxExpr
            | T_NullTest
            | T_BooleanTest
            | T_A_ArrayExpr
            | T_RowExpr
            | T_A_Indirection
            | T_CollateClause
            | T_ResTarget
            | T_ColumnDef
    )
}

/// # Safety
/// `node` is null or a valid raw node.
unsafe fn expression(node: *mut pg_sys::Node, facts: &mut TreeFacts) {
    // SAFETY: per the contract; `facts` outlives the walk.
    unsafe {
        match tag(node) {
            Some(t) if walker_knows(t) => {
                visit(node, (facts as *mut TreeFacts).cast());
            }
            Some(NodeTag::T_Constraint) => constraint(node as *mut pg_sys::Constraint, facts),
            Some(NodeTag::T_IndexElem) => expression((*(node as *mut pg_sys::IndexElem)).expr, facts),
            _ => {}
        }
    }
}

/// The walker's callback: notes what `node` is, then walks its children.
unsafe extern "C-unwind" fn visit(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: `context` is the `TreeFacts` passed by `expression`; `node` is a
    // valid raw node handed over by PostgreSQL's walker.
    unsafe {
        let facts = &mut *(context as *mut TreeFacts);
        match (*node).type_ {
            NodeTag::T_FuncCall => {
                let name = items((*(node as *mut pg_sys::FuncCall)).funcname).pop();
                facts.functions.extend(name.and_then(|n| string_value(n)));
            }
            NodeTag::T_A_Const => {
                let c = node as *mut pg_sys::A_Const;
                if !(*c).isnull {
                    let value = std::ptr::addr_of_mut!((*c).val) as *mut pg_sys::Node;
                    facts.strings.extend(string_value(value));
                }
            }
            NodeTag::T_TypeCast => {
                let cast = node as *mut pg_sys::TypeCast;
                if let Some(value) = string_constant((*cast).arg) {
                    facts.typed_strings.push((value, type_name((*cast).typeName)));
                    return false;
                }
            }
            NodeTag::T_ColumnDef => {
                // The walker leaves a column's constraints (DEFAULT, CHECK) alone.
                let column = node as *mut pg_sys::ColumnDef;
                for c in items((*column).constraints) {
                    let default = c as *mut pg_sys::Constraint;
                    if tag(c) == Some(NodeTag::T_Constraint) && (*default).contype == pg_sys::ConstrType::CONSTR_DEFAULT
                    {
                        if let Some(value) = string_constant((*default).raw_expr) {
                            facts.typed_strings.push((value, type_name((*column).typeName)));
                            continue;
                        }
                    }
                    expression(c, facts);
                }
            }
            _ => {}
        }
        pg_sys::raw_expression_tree_walker(node, Some(visit), context)
    }
}

/// The value of a string constant node, if `node` is one.
///
/// # Safety
/// `node` is null or a valid raw node.
unsafe fn string_constant(node: *mut pg_sys::Node) -> Option<String> {
    // SAFETY: per the contract; the cast follows the node's tag.
    unsafe {
        if tag(node) != Some(NodeTag::T_A_Const) || (*(node as *mut pg_sys::A_Const)).isnull {
            return None;
        }
        string_value(std::ptr::addr_of_mut!((*(node as *mut pg_sys::A_Const)).val) as *mut pg_sys::Node)
    }
}

/// The unqualified name of a type as written (`"FieldType"[]` → `FieldType`).
///
/// # Safety
/// `name` is null or a valid TypeName.
unsafe fn type_name(name: *mut pg_sys::TypeName) -> String {
    // SAFETY: per the contract.
    unsafe {
        if name.is_null() {
            return String::new();
        }
        items((*name).names)
            .pop()
            .and_then(|n| string_value(n))
            .unwrap_or_default()
    }
}

/// # Safety
/// `c` is a valid Constraint.
unsafe fn constraint(c: *mut pg_sys::Constraint, facts: &mut TreeFacts) {
    // SAFETY: per the contract.
    unsafe {
        expression((*c).raw_expr, facts);
        expression((*c).where_clause, facts);
    }
}

/// # Safety
/// `rv` is null or a valid RangeVar.
unsafe fn relation_name(rv: *mut pg_sys::RangeVar) -> Option<String> {
    // SAFETY: per the contract.
    unsafe { (!rv.is_null()).then(|| crate::node::text((*rv).relname)).flatten() }
}

/// # Safety
/// `stmt` is null or a valid raw statement node.
unsafe fn statement(stmt: *mut pg_sys::Node, facts: &mut TreeFacts) {
    use NodeTag::*;
    // SAFETY: per the contract; each cast follows the node's tag.
    unsafe {
        match tag(stmt) {
            Some(T_SelectStmt | T_InsertStmt | T_UpdateStmt | T_DeleteStmt) => expression(stmt, facts),
            Some(T_CreateStmt) => {
                let create = stmt as *mut pg_sys::CreateStmt;
                for element in items((*create).tableElts) {
                    expression(element, facts);
                }
                if (*create).oncommit == pg_sys::OnCommitAction::ONCOMMIT_DROP {
                    facts.dropped_at_commit.extend(relation_name((*create).relation));
                }
            }
            Some(T_AlterTableStmt) => {
                for cmd in items((*(stmt as *mut pg_sys::AlterTableStmt)).cmds) {
                    if tag(cmd) == Some(T_AlterTableCmd) {
                        expression((*(cmd as *mut pg_sys::AlterTableCmd)).def, facts);
                    }
                }
            }
            Some(T_ViewStmt) => expression((*(stmt as *mut pg_sys::ViewStmt)).query, facts),
            Some(T_CreateTableAsStmt) => {
                let create = stmt as *mut pg_sys::CreateTableAsStmt;
                expression((*create).query, facts);
                let into = (*create).into;
                if !into.is_null() && (*into).onCommit == pg_sys::OnCommitAction::ONCOMMIT_DROP {
                    facts.dropped_at_commit.extend(relation_name((*into).rel));
                }
            }
            Some(T_IndexStmt) => {
                let index = stmt as *mut pg_sys::IndexStmt;
                for elem in items((*index).indexParams) {
                    expression(elem, facts);
                }
                expression((*index).whereClause, facts);
            }
            Some(T_CreateTrigStmt) => expression((*(stmt as *mut pg_sys::CreateTrigStmt)).whenClause, facts),
            Some(T_CreatePolicyStmt) => {
                let policy = stmt as *mut pg_sys::CreatePolicyStmt;
                expression((*policy).qual, facts);
                expression((*policy).with_check, facts);
            }
            Some(T_AlterPolicyStmt) => {
                let policy = stmt as *mut pg_sys::AlterPolicyStmt;
                expression((*policy).qual, facts);
                expression((*policy).with_check, facts);
            }
            Some(T_CreateDomainStmt) => {
                for c in items((*(stmt as *mut pg_sys::CreateDomainStmt)).constraints) {
                    expression(c, facts);
                }
            }
            Some(T_AlterDomainStmt) => expression((*(stmt as *mut pg_sys::AlterDomainStmt)).def, facts),
            Some(T_CallStmt) => expression((*(stmt as *mut pg_sys::CallStmt)).funccall as *mut pg_sys::Node, facts),
            Some(T_ExplainStmt) => statement((*(stmt as *mut pg_sys::ExplainStmt)).query, facts),
            Some(T_RuleStmt) => {
                let rule = stmt as *mut pg_sys::RuleStmt;
                expression((*rule).whereClause, facts);
                for action in items((*rule).actions) {
                    statement(action, facts);
                }
            }
            Some(T_DoStmt) => {
                for arg in items((*(stmt as *mut pg_sys::DoStmt)).args) {
                    if tag(arg) == Some(T_DefElem) {
                        facts
                            .do_bodies
                            .extend(string_value((*(arg as *mut pg_sys::DefElem)).arg));
                    }
                }
            }
            _ => {}
        }
    }
}
