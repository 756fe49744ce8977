//! Splitting a change into statements with PostgreSQL's own parser.

use crate::classify;
use crate::errpos::PositionProbe;
use crate::sqlstate::{pg_error, Coded};
use crate::subxact::{in_subtransaction, PgError};
use crate::tree_walk::{self, TreeFacts};
use pg_deploy_core::analysis::{Facts, ObjectName};
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use std::ffi::{CStr, CString};

/// One statement of a change: its byte range in the change's SQL, its
/// command tag ("CREATE TABLE", "INSERT", ...), the facts read off its parse
/// tree and the lock it takes on its main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub start: usize,
    pub end: usize,
    pub kind: String,
    pub facts: Facts,
    pub lock: Option<(ObjectName, &'static str)>,
    /// The object it creates or alters, as named.
    pub object: Option<ObjectName>,
    /// Functions it calls and string constants it carries, from its parse tree.
    pub tree: TreeFacts,
    /// What it is when it runs online (after commit, top level).
    pub online: pg_deploy_core::phases::OnlineKind,
    /// It cannot leave a prepared statement or a temporary object behind.
    pub leaves_no_session_state: bool,
    /// Relations it creates, each locked until commit (a lower bound).
    pub relations: u64,
}

/// A change whose SQL does not parse: the parser's error and its position.
#[derive(Debug, Clone)]
pub struct ParseFailure {
    pub error: PgError,
    /// Byte offset in the SQL, when the parser gave a position.
    pub at: Option<usize>,
}

pub fn split(sql: &str) -> Result<Vec<Statement>, ParseFailure> {
    let text = CString::new(sql).map_err(|e| ParseFailure {
        error: pg_error(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "SQL contains a NUL byte",
        ),
        at: Some(e.nul_position()),
    })?;
    let mut probe = PositionProbe::new();
    let mut statements = None;
    // The subtransaction is always rolled back: the parse trees go with it once
    // their facts are copied out, so a deployment of thousands of changes does
    // not hold thousands of trees.
    let parsed = in_subtransaction(|| {
        // SAFETY: `text` is a valid C string; the parser allocates in the current
        // memory context and raises errors, which the subtransaction catches.
        statements = Some(probe.watch(|| unsafe { Ok(collect(pg_sys::pg_parse_query(text.as_ptr()), sql.len())) })?);
        Err::<(), _>(pg_error(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, "parsed"))
    });
    match (parsed, statements) {
        (Err(e), Some(statements)) if e.is(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION) => Ok(statements),
        (Err(error), _) => Err(ParseFailure {
            error,
            at: probe.cursor().map(|c| pg_deploy_core::position::cursor_to_byte(sql, c)),
        }),
        (Ok(()), _) => Err(ParseFailure {
            error: pg_error(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "the parser's subtransaction was kept",
            ),
            at: None,
        }),
    }
}

/// Reads the parser's `List` of `RawStmt`s.
///
/// # Safety
/// `list` must be what `pg_parse_query` returned for a text of `len` bytes.
unsafe fn collect(list: *mut pg_sys::List, len: usize) -> Vec<Statement> {
    // SAFETY: per the contract, a valid List of RawStmt, read through pgrx's list type.
    unsafe {
        let raws = pgrx::PgList::<pg_sys::RawStmt>::from_pg(list);
        let mut out = Vec::with_capacity(raws.len());
        for raw in raws.iter_ptr() {
            let start = usize::try_from((*raw).stmt_location).unwrap_or(0).min(len);
            let end = match usize::try_from((*raw).stmt_len).unwrap_or(0) {
                0 => len,
                n => (start + n).min(len),
            };
            let node = (*raw).stmt;
            let tag = pg_sys::CreateCommandTag(node);
            let kind = CStr::from_ptr(pg_sys::GetCommandTagName(tag))
                .to_string_lossy()
                .into_owned();
            let facts = classify::facts_of(node);
            let lock = match (crate::locks::lock_target(node, &facts), crate::locks::lock_of(node)) {
                (Some(table), Some(mode)) => Some((table, mode)),
                _ => None,
            };
            let object = crate::locks::object_of(node, &facts);
            let tree = tree_walk::walk_statement(node);
            let online = crate::phases::kind::online_kind(node);
            let leaves_no_session_state = classify::leaves_no_session_state(node);
            let relations = crate::lock_capacity::relations_of(node, &kind);
            out.push(Statement {
                start,
                end,
                kind,
                facts,
                lock,
                object,
                tree,
                online,
                leaves_no_session_state,
                relations,
            });
        }
        out
    }
}
