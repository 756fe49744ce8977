//! Functions, procedures and aggregates: owner, privileges and the
//! definition as `pg_get_functiondef` prints it (an aggregate: its arguments
//! and result type). Named with their identity arguments, as overloads are.

use super::scan::{self, oid, Catalog, Joined};
use super::{each_reset, Described, Namespaces, Quals};
use pgrx::pg_sys;

struct Routine {
    oid: pg_sys::Oid,
    kind: u8,
    /// schema.name, without the arguments yet.
    name: Vec<u8>,
    /// Owner and privileges, joined.
    head: Joined,
    sql_body: bool,
    returns: pg_sys::Oid,
}

pub fn describe(namespaces: &Namespaces, quals: &Quals, out: &mut Vec<Described>) {
    let proc = Catalog::open(oid::PG_PROC);
    let mut routines = Vec::new();
    namespaces.each_row(&proc, "pronamespace", |ns, row| {
        let name = ns.qualified(row.text("proname"));
        let mut head = Joined::new(b'|');
        head.part(Some(scan::role_name(row.oid("proowner"))))
            .part(row.text("proacl"));
        routines.push(Routine {
            oid: row.oid("oid"),
            kind: row.byte("prokind"),
            name,
            head,
            sql_body: row.datum("prosqlbody").is_some(),
            returns: row.oid("prorettype"),
        });
    });
    proc.close();
    each_reset(&mut routines, |routine| {
        let id = routine.oid;
        let mut name = std::mem::take(&mut routine.name);
        name.push(b'(');
        name.extend(scan::deparse(pg_sys::F_PG_GET_FUNCTION_IDENTITY_ARGUMENTS, id).unwrap_or_default());
        name.push(b')');
        let definition = if routine.kind == b'a' {
            Some(
                Joined::new(b':')
                    .part(scan::deparse(pg_sys::F_PG_GET_FUNCTION_ARGUMENTS, id))
                    .part(scan::format_type(routine.returns, None))
                    .done(),
            )
        } else if routine.sql_body {
            quals.strip(scan::deparse(pg_sys::F_PG_GET_FUNCTIONDEF, id))
        } else {
            scan::deparse(pg_sys::F_PG_GET_FUNCTIONDEF, id)
        };
        out.push(Described {
            kind: match routine.kind {
                b'p' => "procedure",
                b'a' => "aggregate",
                _ => "function",
            },
            name,
            description: routine.head.part(definition).done(),
        });
    });
}
