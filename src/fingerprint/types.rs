//! Enums, domains, ranges, multiranges and composite types: owner,
//! privileges, a domain's base type, NOT NULL and default, enum labels in
//! their order, domain constraints, composite attributes, a range's subtype,
//! collation and operator class.

use super::relation::{collation_name, constraints_of};
use super::scan::{self, aggregated, oid, Catalog, Joined};
use super::{each_reset, Described, Namespaces};
use pgrx::pg_sys;

struct Type {
    oid: pg_sys::Oid,
    name: Vec<u8>,
    /// typtype, owner, privileges, domain base, not null, default: joined.
    head: Joined,
    /// A composite type's relation.
    relation: pg_sys::Oid,
}

pub fn describe(namespaces: &Namespaces, out: &mut Vec<Described>) {
    let pg_type = Catalog::open(oid::PG_TYPE);
    let class = Catalog::open(oid::PG_CLASS);
    let mut types = Vec::new();
    namespaces.each_row(&pg_type, "typnamespace", |ns, row| {
        let kind = row.byte("typtype");
        let relation = row.oid("typrelid");
        let composite = kind == b'c' && relation_kind(&class, relation) == Some(b'c');
        if !(b"edrm".contains(&kind) || composite) {
            return;
        }
        let name = ns.qualified(row.text("typname"));
        let base = (kind == b'd')
            .then(|| scan::format_type(row.oid("typbasetype"), Some(row.int("typtypmod") as i32)))
            .flatten();
        let mut head = Joined::new(b'|');
        head.part(row.text("typtype"))
            .part(Some(scan::role_name(row.oid("typowner"))))
            .part(row.text("typacl"))
            .part(base)
            .part(row.text("typnotnull"))
            .part(row.text("typdefault"));
        types.push(Type {
            oid: row.oid("oid"),
            name,
            head,
            relation: if composite { relation } else { pg_sys::InvalidOid },
        });
    });
    pg_type.close();
    if types.is_empty() {
        class.close();
        return;
    }
    let enums = Catalog::open(oid::PG_ENUM);
    let constraint = Catalog::open(oid::PG_CONSTRAINT);
    let attribute = Catalog::open(oid::PG_ATTRIBUTE);
    let range = Catalog::open(oid::PG_RANGE);
    let collation = Catalog::open(oid::PG_COLLATION);
    let opclass = Catalog::open(oid::PG_OPCLASS);
    each_reset(&mut types, |t| {
        let id = t.oid;
        let mut labels = Vec::new();
        enums.rows_of(oid::PG_ENUM_TYPID_SORTORDER_INDEX, "enumtypid", id, |row| {
            labels.push(row.text("enumlabel").unwrap_or_default());
        });
        let checks = constraints_of(&constraint, oid::PG_CONSTRAINT_CONTYPID_INDEX, "contypid", id, false);
        let mut attributes = Vec::new();
        if t.relation != pg_sys::InvalidOid {
            attribute.rows_of(oid::PG_ATTRIBUTE_RELID_ATTNUM_INDEX, "attrelid", t.relation, |row| {
                if row.int("attnum") as i16 <= 0 || row.byte("attisdropped") != 0 {
                    return;
                }
                attributes.push(
                    Joined::new(b':')
                        .part(row.text("attname"))
                        .part(scan::format_type(
                            row.oid("atttypid"),
                            Some(row.int("atttypmod") as i32),
                        ))
                        .done(),
                );
            });
        }
        let mut subtype = None;
        range.rows_of(oid::PG_RANGE_RNGTYPID_INDEX, "rngtypid", id, |row| {
            let opclass_name = opclass.text_of(oid::PG_OPCLASS_OID_INDEX, row.oid("rngsubopc"), "opcname");
            subtype = Some(
                Joined::new(b':')
                    .part(scan::format_type(row.oid("rngsubtype"), None))
                    .part(collation_name(&collation, row.oid("rngcollation")))
                    .part(opclass_name)
                    .done(),
            );
        });
        let description = t
            .head
            .part(aggregated(labels))
            .part(checks)
            .part(aggregated(attributes))
            .part(subtype)
            .done();
        out.push(Described {
            kind: "type",
            name: std::mem::take(&mut t.name),
            description,
        });
    });
    for catalog in [enums, constraint, attribute, range, collation, opclass, class] {
        catalog.close();
    }
}

fn relation_kind(class: &Catalog, relation: pg_sys::Oid) -> Option<u8> {
    if relation == pg_sys::InvalidOid {
        return None;
    }
    let mut kind = None;
    class.rows_of(oid::PG_CLASS_OID_INDEX, "oid", relation, |row| {
        kind = Some(row.byte("relkind"))
    });
    kind
}
