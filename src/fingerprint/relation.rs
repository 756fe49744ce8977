//! Tables, partitioned tables, views, materialized views, sequences, foreign
//! tables and indexes: owner, privileges, persistence, row security, access
//! method, options; columns; constraints, triggers, policies and rules;
//! the index's or sequence's own definition.

use super::scan::{self, aggregated, oid, Catalog, Joined, Row};
use super::{each_reset, Described, Namespaces, Quals};
use pgrx::pg_sys;

/// What the pg_class scan keeps of a relation.
struct Relation {
    oid: pg_sys::Oid,
    kind: u8,
    name: Vec<u8>,
    /// relkind, owner, acl, persistence, row security, forced: already joined.
    head: Joined,
    access_method: pg_sys::Oid,
    options: Option<Vec<u8>>,
    /// relhastriggers and relhasrules: false means none (true: has or had some).
    has_triggers: bool,
    has_rules: bool,
}

const KINDS: &[u8] = b"rpvmSfiI";

fn kind_name(relkind: u8) -> &'static str {
    match relkind {
        b'r' | b'p' => "table",
        b'v' => "view",
        b'm' => "materialized view",
        b'S' => "sequence",
        b'f' => "foreign table",
        _ => "index",
    }
}

/// Names by (catalog, oid); None for an object that is gone.
type NameCache = std::collections::HashMap<(u32, pg_sys::Oid), Option<Vec<u8>>>;

/// The catalogs a relation's description reads.
struct Catalogs {
    attribute: Catalog,
    attrdef: Catalog,
    constraint: Catalog,
    trigger: Catalog,
    policy: Catalog,
    rewrite: Catalog,
    sequence: Catalog,
    am: Catalog,
    collation: Catalog,
    /// Access method and collation names by oid: a few, asked for again and again.
    names: std::cell::RefCell<NameCache>,
}

impl Catalogs {
    fn cached(&self, catalog: u32, id: pg_sys::Oid, read: impl FnOnce() -> Option<Vec<u8>>) -> Option<Vec<u8>> {
        if let Some(name) = self.names.borrow().get(&(catalog, id)) {
            return name.clone();
        }
        let name = read();
        self.names.borrow_mut().insert((catalog, id), name.clone());
        name
    }

    fn access_method(&self, method: pg_sys::Oid) -> Option<Vec<u8>> {
        if method == pg_sys::InvalidOid {
            return None;
        }
        self.cached(oid::PG_AM, method, || {
            self.am.text_of(oid::PG_AM_OID_INDEX, method, "amname")
        })
    }

    fn collation_name(&self, id: pg_sys::Oid) -> Option<Vec<u8>> {
        self.cached(oid::PG_COLLATION, id, || collation_name(&self.collation, id))
    }
}

pub fn describe(namespaces: &Namespaces, quals: &Quals, out: &mut Vec<Described>) {
    let class = Catalog::open(oid::PG_CLASS);
    let mut relations = Vec::new();
    namespaces.each_row(&class, "relnamespace", |ns, row| {
        let kind = row.byte("relkind");
        if !KINDS.contains(&kind) {
            return;
        }
        let name = ns.qualified(row.text("relname"));
        let mut head = Joined::new(b'|');
        head.part(row.text("relkind"))
            .part(Some(scan::role_name(row.oid("relowner"))))
            .part(row.text("relacl"))
            .part(row.text("relpersistence"))
            .part(row.text("relrowsecurity"))
            .part(row.text("relforcerowsecurity"));
        relations.push(Relation {
            oid: row.oid("oid"),
            kind,
            name,
            head,
            access_method: row.oid("relam"),
            options: row.text("reloptions"),
            has_triggers: row.byte("relhastriggers") != 0,
            has_rules: row.byte("relhasrules") != 0,
        });
    });
    class.close();
    if relations.is_empty() {
        return;
    }
    let catalogs = Catalogs {
        attribute: Catalog::open(oid::PG_ATTRIBUTE),
        attrdef: Catalog::open(oid::PG_ATTRDEF),
        constraint: Catalog::open(oid::PG_CONSTRAINT),
        trigger: Catalog::open(oid::PG_TRIGGER),
        policy: Catalog::open(oid::PG_POLICY),
        rewrite: Catalog::open(oid::PG_REWRITE),
        sequence: Catalog::open(oid::PG_SEQUENCE),
        am: Catalog::open(oid::PG_AM),
        collation: Catalog::open(oid::PG_COLLATION),
        names: Default::default(),
    };
    each_reset(&mut relations, |relation| {
        let description = describe_one(relation, &catalogs, quals);
        out.push(Described {
            kind: kind_name(relation.kind),
            name: std::mem::take(&mut relation.name),
            description,
        });
    });
    let Catalogs {
        attribute,
        attrdef,
        constraint,
        trigger,
        policy,
        rewrite,
        sequence,
        am,
        collation,
        names: _,
    } = catalogs;
    for catalog in [
        attribute, attrdef, constraint, trigger, policy, rewrite, sequence, am, collation,
    ] {
        catalog.close();
    }
}

fn describe_one(relation: &mut Relation, c: &Catalogs, quals: &Quals) -> Vec<u8> {
    let id = relation.oid;
    // Indexes and sequences have no constraints, triggers, policies or rules.
    let has_parts = !matches!(relation.kind, b'i' | b'I' | b'S');
    let head = &mut relation.head;
    head.part(c.access_method(relation.access_method))
        .part(relation.options.take())
        .part(columns(c, id));
    if has_parts {
        head.part(constraints(&c.constraint, id))
            .part(relation.has_triggers.then(|| triggers(&c.trigger, id)).flatten())
            .part(policies(&c.policy, id))
            .part(relation.has_rules.then(|| rules(&c.rewrite, id, quals)).flatten());
    }
    if matches!(relation.kind, b'i' | b'I') {
        head.part(scan::deparse(pg_sys::F_PG_GET_INDEXDEF_OID, id));
    }
    if relation.kind == b'S' {
        head.part(sequence(&c.sequence, id));
    }
    head.done()
}

/// The collation's name; None for none (0) or one that is gone.
pub fn collation_name(collation: &Catalog, id: pg_sys::Oid) -> Option<Vec<u8>> {
    if id == pg_sys::InvalidOid {
        return None;
    }
    collation.text_of(oid::PG_COLLATION_OID_INDEX, id, "collname")
}

/// name:type:not null:default:identity:generated:collation:privileges, by attnum.
fn columns(c: &Catalogs, relation: pg_sys::Oid) -> Option<Vec<u8>> {
    let mut items = Vec::new();
    c.attribute
        .rows_of(oid::PG_ATTRIBUTE_RELID_ATTNUM_INDEX, "attrelid", relation, |row| {
            let number = row.int("attnum") as i16;
            if number <= 0 || row.byte("attisdropped") != 0 {
                return;
            }
            // pg_attrdef is read only for columns that have a default.
            let default = (row.byte("atthasdef") != 0)
                .then(|| default_of(&c.attrdef, relation, number))
                .flatten();
            items.push(
                Joined::new(b':')
                    .part(row.text("attname"))
                    .part(scan::format_type(
                        row.oid("atttypid"),
                        Some(row.int("atttypmod") as i32),
                    ))
                    .part(row.text("attnotnull"))
                    .part(default)
                    .part(row.text("attidentity"))
                    .part(row.text("attgenerated"))
                    .part(c.collation_name(row.oid("attcollation")))
                    .part(row.text("attacl"))
                    .done(),
            );
        });
    aggregated(items)
}

/// `pg_get_expr(adbin, adrelid)` of column `number`'s default.
fn default_of(attrdef: &Catalog, relation: pg_sys::Oid, number: i16) -> Option<Vec<u8>> {
    let mut tree = None;
    attrdef.rows_of(oid::PG_ATTRDEF_ADRELID_ADNUM_INDEX, "adrelid", relation, |row| {
        if row.int("adnum") as i16 == number {
            // SAFETY: copies the pg_node_tree out of the scan's tuple into the current context.
            tree = row
                .datum("adbin")
                .map(|d| unsafe { pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(d.cast_mut_ptr())) });
        }
    });
    scan::expression(tree, relation)
}

/// Items sorted by name (a `name` column sorts bytewise, its collation is C).
fn by_name(mut items: Vec<(Vec<u8>, Vec<u8>)>) -> Option<Vec<u8>> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    aggregated(items.into_iter().map(|(_, item)| item).collect())
}

/// name:definition:deferrable:deferred:validated, by name; PostgreSQL 18's
/// NOT NULL constraints are left out (attnotnull says it).
fn constraints(constraint: &Catalog, relation: pg_sys::Oid) -> Option<Vec<u8>> {
    let index = oid::PG_CONSTRAINT_CONRELID_CONTYPID_CONNAME_INDEX;
    constraints_of(constraint, index, "conrelid", relation, true)
}

/// The constraints of a relation (`conrelid`) or a domain (`contypid`) by
/// name, without PostgreSQL 18's NOT NULL ones: name:definition, and with
/// `states` :deferrable:deferred:validated.
pub fn constraints_of(
    constraint: &Catalog,
    index: u32,
    column: &str,
    key: pg_sys::Oid,
    states: bool,
) -> Option<Vec<u8>> {
    let mut items = Vec::new();
    constraint.rows_of(index, column, key, |row| {
        if row.byte("contype") == b'n' {
            return;
        }
        let name = row.text("conname").unwrap_or_default();
        let mut item = Joined::new(b':');
        item.raw(&name)
            .part(scan::deparse(pg_sys::F_PG_GET_CONSTRAINTDEF_OID, row.oid("oid")));
        if states {
            item.part(row.text("condeferrable"))
                .part(row.text("condeferred"))
                .part(row.text("convalidated"));
        }
        items.push((name, item.done()));
    });
    by_name(items)
}

/// name:definition:enabled, by name, without internal triggers.
fn triggers(trigger: &Catalog, relation: pg_sys::Oid) -> Option<Vec<u8>> {
    let mut items = Vec::new();
    trigger.rows_of(oid::PG_TRIGGER_TGRELID_TGNAME_INDEX, "tgrelid", relation, |row| {
        if row.byte("tgisinternal") != 0 {
            return;
        }
        let name = row.text("tgname").unwrap_or_default();
        let item = Joined::new(b':')
            .raw(&name)
            .part(scan::deparse(pg_sys::F_PG_GET_TRIGGERDEF_OID, row.oid("oid")))
            .part(row.text("tgenabled"))
            .done();
        items.push((name, item));
    });
    by_name(items)
}

/// name:command:permissive:roles:using:with check, by name.
fn policies(policy: &Catalog, relation: pg_sys::Oid) -> Option<Vec<u8>> {
    let mut items = Vec::new();
    policy.rows_of(oid::PG_POLICY_POLRELID_POLNAME_INDEX, "polrelid", relation, |row| {
        let name = row.text("polname").unwrap_or_default();
        let item = Joined::new(b':')
            .raw(&name)
            .part(row.text("polcmd"))
            .part(row.text("polpermissive"))
            .part(roles(row))
            .part(scan::expression(row.datum("polqual"), relation))
            .part(scan::expression(row.datum("polwithcheck"), relation))
            .done();
        items.push((name, item));
    });
    by_name(items)
}

/// A policy's roles by name ("public" for 0), in the array's order: the
/// SQL function's `ORDER BY 1` inside string_agg sorted by the constant 1.
fn roles(row: &Row) -> Option<Vec<u8>> {
    let array = row.datum("polroles")?;
    // SAFETY: polroles is an oid[] datum of the scan's tuple.
    let oids = unsafe { <Vec<Option<pg_sys::Oid>> as pgrx::FromDatum>::from_datum(array, false) }?;
    let names = oids
        .into_iter()
        .flatten()
        .map(|r| {
            if r == pg_sys::InvalidOid {
                b"public".to_vec()
            } else {
                scan::role_name(r)
            }
        })
        .collect();
    aggregated(names)
}

/// name:definition (column qualifiers stripped), by name.
fn rules(rewrite: &Catalog, relation: pg_sys::Oid, quals: &Quals) -> Option<Vec<u8>> {
    let mut items = Vec::new();
    rewrite.rows_of(oid::PG_REWRITE_REL_RULENAME_INDEX, "ev_class", relation, |row| {
        let name = row.text("rulename").unwrap_or_default();
        let rule = row.oid("oid");
        items.push((name, rule));
    });
    // Deparsed after the scan: pg_get_ruledef reads pg_rewrite itself.
    let items = items
        .into_iter()
        .map(|(name, rule)| {
            let item = Joined::new(b':')
                .raw(&name)
                .part(quals.strip(scan::deparse(pg_sys::F_PG_GET_RULEDEF_OID, rule)))
                .done();
            (name, item)
        })
        .collect();
    by_name(items)
}

/// type:start:increment:max:min:cache:cycle.
fn sequence(sequence: &Catalog, relation: pg_sys::Oid) -> Option<Vec<u8>> {
    let mut found = None;
    sequence.rows_of(oid::PG_SEQUENCE_SEQRELID_INDEX, "seqrelid", relation, |row| {
        found = Some(
            Joined::new(b':')
                .part(scan::format_type(row.oid("seqtypid"), None))
                .part(row.text("seqstart"))
                .part(row.text("seqincrement"))
                .part(row.text("seqmax"))
                .part(row.text("seqmin"))
                .part(row.text("seqcache"))
                .part(row.text("seqcycle"))
                .done(),
        );
    });
    found
}
