//! `deploy.object_fingerprints(schemas)`: every object in `schemas`, described
//! in names, not OIDs, and hashed (docs/drift.md). The descriptions are
//! byte for byte those of the SQL function it replaces
//! (`pg_test/fixtures/fingerprint_reference.sql`, which the tests compare it
//! with), so fingerprints taken before stay valid.
//!
//! It reads the catalogs directly. The SQL function parsed, analysed and
//! planned a query of some forty subqueries in every new backend, which was
//! most of a first deployment's fingerprint (docs/benchmarks.md).

mod quals;
mod relation;
mod routine;
pub(crate) mod scan;
mod types;

use crate::encoding::ServerText;
use crate::subxact::{set_local, GucLevel};
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
pub use quals::Quals;
use scan::{oid, Catalog, Joined};
use std::collections::HashSet;

/// A described object: its kind, name and description (server encoding).
pub struct Described {
    kind: &'static str,
    name: Vec<u8>,
    description: Vec<u8>,
}

/// A schema fingerprinted: its oid and name.
pub struct Namespace {
    oid: pg_sys::Oid,
    name: Vec<u8>,
}

impl Namespace {
    /// `schema.name`, as the SQL function's `nspname || '.' || name` built it.
    fn qualified(&self, name: Option<Vec<u8>>) -> Vec<u8> {
        let mut qualified = self.name.clone();
        qualified.push(b'.');
        qualified.extend(name.unwrap_or_default());
        qualified
    }
}

/// The schemas asked for, by oid.
pub struct Namespaces(Vec<Namespace>);

impl Namespaces {
    /// Calls `row` for each row of `catalog` in one of the schemas, whose
    /// schema column is `column`.
    fn each_row(&self, catalog: &Catalog, column: &str, mut row: impl FnMut(&Namespace, &scan::Row)) {
        for ns in &self.0 {
            catalog.rows_where(column, ns.oid, |r| row(ns, r));
        }
    }
}

#[pg_extern(sql = false)]
fn object_fingerprints(
    schemas: Option<Vec<Option<String>>>,
) -> TableIterator<'static, (name!(kind, String), name!(name, ServerText), name!(sha256, String))> {
    let wanted: HashSet<Vec<u8>> = schemas
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .map(String::into_bytes)
        .collect();
    // Deparsed names are qualified unless visible: the same path as the SQL function's SET.
    let level = GucLevel::open();
    if let Err(e) = set_local("search_path", "pg_catalog, pg_temp") {
        pgrx::error!("{e}");
    }
    let described = describe_all(&wanted);
    level.restore();
    let rows: Vec<_> = described
        .into_iter()
        .map(|d| {
            (
                d.kind.to_string(),
                ServerText(d.name),
                pg_deploy_core::checksum::sha256_hex(&utf8(d.description)),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// `convert_to(text, 'UTF8')`: the description's bytes in UTF-8.
fn utf8(bytes: Vec<u8>) -> Vec<u8> {
    // SAFETY: reads the database encoding; pg_server_to_any converts a
    // NUL-free string of `len` bytes (descriptions come from C strings) and
    // returns the input itself when nothing changes.
    unsafe {
        if pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 || bytes.is_empty() {
            return bytes;
        }
        let mut nul_terminated = bytes.clone();
        nul_terminated.push(0);
        let converted = pg_sys::pg_server_to_any(
            nul_terminated.as_ptr().cast(),
            bytes.len() as i32,
            pg_sys::pg_enc::PG_UTF8 as i32,
        );
        std::ffi::CStr::from_ptr(converted).to_bytes().to_vec()
    }
}

fn describe_all(wanted: &HashSet<Vec<u8>>) -> Vec<Described> {
    let mut context = PgMemoryContexts::new("pg_deploy fingerprint");
    // SAFETY: everything palloc'd in the context is garbage once an object
    // is described (the results are Rust-owned); nothing outlives the drop.
    unsafe { context.switch_to(|_| describe_in(wanted)) }
}

fn describe_in(wanted: &HashSet<Vec<u8>>) -> Vec<Described> {
    let mut out = Vec::new();
    let (namespaces, all_names) = namespaces(wanted, &mut out);
    if namespaces.0.is_empty() {
        return out;
    }
    let quals = Quals::new(all_names);
    relation::describe(&namespaces, &quals, &mut out);
    routine::describe(&namespaces, &quals, &mut out);
    types::describe(&namespaces, &mut out);
    out
}

/// The schemas in `wanted` (each described into `out`) and the names of
/// every schema in the database (for `Quals`).
fn namespaces(wanted: &HashSet<Vec<u8>>, out: &mut Vec<Described>) -> (Namespaces, Vec<Vec<u8>>) {
    let catalog = Catalog::open(oid::PG_NAMESPACE);
    let mut found = Vec::new();
    let mut all = Vec::new();
    catalog.all_rows(|row| {
        let name = row.text("nspname").unwrap_or_default();
        if wanted.contains(&name) {
            let description = Joined::new(b'|')
                .part(Some(scan::role_name(row.oid("nspowner"))))
                .part(row.text("nspacl"))
                .done();
            out.push(Described {
                kind: "schema",
                name: name.clone(),
                description,
            });
            found.push(Namespace {
                oid: row.oid("oid"),
                name: name.clone(),
            });
        }
        all.push(name);
    });
    catalog.close();
    (Namespaces(found), all)
}

/// `regexp_replace(source, pattern, replacement, 'g')` in the default collation.
pub(crate) fn regexp_replace(source: &[u8], pattern: &[u8], replacement: &[u8]) -> Option<Vec<u8>> {
    scan::call_text_collated(
        pg_sys::F_REGEXP_REPLACE_TEXT_TEXT_TEXT_TEXT,
        pg_sys::DEFAULT_COLLATION_OID,
        &[
            Some(scan::text_datum(source)),
            Some(scan::text_datum(pattern)),
            Some(scan::text_datum(replacement)),
            Some(scan::text_datum(b"g")),
        ],
    )
}

/// Describes each item in a memory context reset after it: the deparsing
/// functions leave their palloc'd text behind.
fn each_reset<T>(items: &mut [T], mut describe: impl FnMut(&mut T)) {
    let mut context = PgMemoryContexts::new("pg_deploy fingerprint object");
    for item in items {
        // SAFETY: `describe` keeps only Rust-owned results; the reset frees
        // what it palloc'd in the context.
        unsafe {
            context.switch_to(|_| describe(item));
            context.reset();
        }
    }
}
