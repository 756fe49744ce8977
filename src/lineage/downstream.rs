//! Downstream hazards found in the catalogs (core/src/downstream.rs has the
//! rules): who depends on a table or column a pending change drops or retypes.
//! The catalogs are read through their indexes, without SPI: the query this
//! replaced (a five-way UNION) took longer to plan in a new session than
//! anything it found (12 M instructions for one table of harbor's history).

use crate::analyze::ChangeAnalysis;
use crate::catalog::{SchemaCache, SpiCatalog};
use crate::error::DeployError;
use crate::fingerprint::scan::{oid, role_name, Catalog};
use pg_deploy_core::downstream::{outside, touched, warning, Dependant};
use pg_deploy_core::hazards::Catalog as _;
use pg_deploy_core::Manifest;
use pgrx::spi::SpiClient;
use pgrx::{pg_sys, FromDatum};
use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;

/// One warning per touched table or column that something outside the
/// project (`managed`: its schemas) depends on. Tables the deployment itself
/// creates are not in the catalogs yet, and have no dependants outside it.
pub fn warnings(
    client: &mut SpiClient<'_>,
    manifest: &Manifest,
    analyses: &[Option<ChangeAnalysis>],
    managed: &[String],
) -> Result<Vec<String>, DeployError> {
    let mut schemas = SchemaCache::default();
    let mut out = Vec::new();
    for (change, analysis) in manifest.changes.iter().zip(analyses) {
        let Some(analysis) = analysis else { continue };
        for statement in &analysis.statements {
            for touch in touched(&statement.statement.facts) {
                let path = schemas.get(client, &analysis.settings.search_path)?;
                let Some(table) = SpiCatalog::new(client, path).table(&touch.table) else {
                    continue;
                };
                let found = dependants(table.oid, touch.column.as_deref());
                let mut managed = managed.to_vec();
                if let Some(schema) = table.name.split('.').next() {
                    managed.push(schema.to_string());
                }
                if let Some(w) = warning(&change.id, &touch, &table.name, &outside(&found, &managed)) {
                    out.push(w);
                }
            }
        }
    }
    Ok(out)
}

/// (kind, name, schema) of each dependant, in that order, once each.
type Found = BTreeSet<(String, String, Option<String>)>;

/// Publications (FOR ALL TABLES, FOR TABLES IN SCHEMA, or listing the table,
/// with the column when it has a column list), views and functions that
/// depend on the table or column, foreign keys of other tables on it, and its
/// owner when that is not the current user. A column the table does not have
/// stands for the whole table.
pub(crate) fn dependants(table: u32, column: Option<&str>) -> Vec<Dependant> {
    let rel = pg_sys::Oid::from(table);
    let column = column.and_then(|name| attnum(rel, name));
    let mut found = Found::new();
    publications(rel, column, &mut found);
    rules_and_routines(rel, column, &mut found);
    foreign_keys(rel, column, &mut found);
    owner(rel, &mut found);
    found
        .into_iter()
        .map(|(kind, name, schema)| Dependant { kind, name, schema })
        .collect()
}

/// The column's number (system columns included, dropped ones not).
fn attnum(rel: pg_sys::Oid, name: &str) -> Option<i16> {
    let name = CString::new(name).ok()?;
    // SAFETY: a syscache lookup by name; InvalidAttrNumber (0) when there is none.
    let number = unsafe { pg_sys::get_attnum(rel, name.as_ptr()) };
    (number != 0).then_some(number)
}

fn publications(rel: pg_sys::Oid, column: Option<i16>, found: &mut Found) {
    let mut publishing = HashSet::new();
    let listed = Catalog::open(oid::PG_PUBLICATION_REL);
    listed.rows_of(oid::PG_PUBLICATION_REL_PRRELID_PRPUBID_INDEX, "prrelid", rel, |row| {
        let covered = match (column, row.datum("prattrs")) {
            (Some(column), Some(attrs)) => attnums(attrs).contains(&column),
            _ => true,
        };
        if covered {
            publishing.insert(row.oid("prpubid"));
        }
    });
    listed.close();
    // SAFETY: a syscache lookup; InvalidOid when the relation is gone.
    let namespace = unsafe { pg_sys::get_rel_namespace(rel) };
    let schemas = Catalog::open(oid::PG_PUBLICATION_NAMESPACE);
    schemas.rows_of(
        oid::PG_PUBLICATION_NAMESPACE_PNNSPID_PNPUBID_INDEX,
        "pnnspid",
        namespace,
        |row| {
            publishing.insert(row.oid("pnpubid"));
        },
    );
    schemas.close();
    let all = Catalog::open(oid::PG_PUBLICATION);
    all.all_rows(|row| {
        if row.byte("puballtables") != 0 || publishing.contains(&row.oid("oid")) {
            found.insert(("publication".into(), lossy(row.text("pubname")), None));
        }
    });
    all.close();
}

/// Views and materialized views (through their rules) and functions (SQL
/// bodies) recorded in pg_depend as depending on the table or column.
fn rules_and_routines(rel: pg_sys::Oid, column: Option<i16>, found: &mut Found) {
    let (mut rules, mut routines) = (Vec::new(), Vec::new());
    let depend = Catalog::open(oid::PG_DEPEND);
    let keys = [("refclassid", pg_sys::Oid::from(oid::PG_CLASS)), ("refobjid", rel)];
    depend.rows_by(oid::PG_DEPEND_REFERENCE_INDEX, &keys, |row| {
        if column.is_some_and(|c| row.int("refobjsubid") != i64::from(c)) {
            return;
        }
        match u32::from(row.oid("classid")) {
            oid::PG_REWRITE => rules.push(row.oid("objid")),
            oid::PG_PROC => routines.push(row.oid("objid")),
            _ => {}
        }
    });
    depend.close();
    let rewrite = Catalog::open(oid::PG_REWRITE);
    for rule in rules {
        rewrite.rows_of(oid::PG_REWRITE_OID_INDEX, "oid", rule, |row| {
            let view = row.oid("ev_class");
            if view == rel {
                return;
            }
            // SAFETY: syscache lookups of a relation the rule belongs to.
            let materialized = unsafe { pg_sys::get_rel_relkind(view) } as u8 == b'm';
            if let Some((schema, name)) = relation_name(view) {
                let kind = if materialized { "materialized view" } else { "view" };
                found.insert((kind.into(), format!("{schema}.{name}"), Some(schema)));
            }
        });
    }
    rewrite.close();
    for routine in routines {
        // SAFETY: format_procedure prints any oid (a vanished one as a number);
        // get_func_namespace is InvalidOid for a vanished function.
        let (signature, namespace) = unsafe {
            (
                crate::node::text(pg_sys::format_procedure(routine)),
                pg_sys::get_func_namespace(routine),
            )
        };
        if let (Some(signature), Some(schema)) = (signature, namespace_name(namespace)) {
            found.insert(("function".into(), signature, Some(schema)));
        }
    }
}

fn foreign_keys(rel: pg_sys::Oid, column: Option<i16>, found: &mut Found) {
    let constraints = Catalog::open(oid::PG_CONSTRAINT);
    constraints.rows_where("confrelid", rel, |row| {
        let other = row.oid("conrelid");
        if row.byte("contype") != b'f' || other == rel {
            return;
        }
        if let Some(column) = column {
            if !row.datum("confkey").map(attnums).unwrap_or_default().contains(&column) {
                return;
            }
        }
        if let Some((schema, table)) = relation_name(other) {
            let name = format!("{} on {schema}.{table}", lossy(row.text("conname")));
            found.insert(("foreign key".into(), name, Some(schema)));
        }
    });
    constraints.close();
}

fn owner(rel: pg_sys::Oid, found: &mut Found) {
    let mut owner = pg_sys::InvalidOid;
    let class = Catalog::open(oid::PG_CLASS);
    class.rows_of(oid::PG_CLASS_OID_INDEX, "oid", rel, |row| owner = row.oid("relowner"));
    class.close();
    // SAFETY: the backend's current user, always set in a transaction.
    if owner != pg_sys::InvalidOid && owner != unsafe { pg_sys::GetUserId() } {
        found.insert((
            "owner".into(),
            String::from_utf8_lossy(&role_name(owner)).into_owned(),
            None,
        ));
    }
}

/// (schema, name) of a relation, unquoted; None when it is gone.
fn relation_name(rel: pg_sys::Oid) -> Option<(String, String)> {
    // SAFETY: syscache lookups; NULL for a relation that is gone.
    let (name, namespace) = unsafe {
        (
            crate::node::text(pg_sys::get_rel_name(rel)),
            pg_sys::get_rel_namespace(rel),
        )
    };
    Some((namespace_name(namespace)?, name?))
}

fn namespace_name(namespace: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup; NULL for a schema that is gone.
    unsafe { crate::node::text(pg_sys::get_namespace_name(namespace)) }
}

fn lossy(text: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&text.unwrap_or_default()).into_owned()
}

/// An int2vector or int2[] column (prattrs, confkey): its numbers.
fn attnums(datum: pg_sys::Datum) -> Vec<i16> {
    // SAFETY: both types are one-dimensional arrays of int2; from_datum detoasts.
    let numbers = unsafe { Vec::<Option<i16>>::from_datum(datum, false) };
    numbers.unwrap_or_default().into_iter().flatten().collect()
}
