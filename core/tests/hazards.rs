//! Hazard rules against an in-memory catalog: one big table, one empty.
use pg_deploy_core::analysis::{AlterCommand, ConstraintKind, DropKind, Facts, ObjectName};
use pg_deploy_core::hazards::*;

/// An in-memory catalog: one big table "big", one empty table "empty".
struct Tables;

impl Catalog for Tables {
    fn table(&mut self, name: &ObjectName) -> Option<TableFacts> {
        match name.name.as_str() {
            "big" => Some(TableFacts {
                oid: 1,
                name: "public.big".into(),
                rows: 1_000_000.0,
                bytes: 40 << 20,
                heap_bytes: 40 << 20,
            }),
            "empty" => Some(TableFacts {
                oid: 2,
                name: "public.empty".into(),
                rows: 0.0,
                bytes: 0,
                heap_bytes: 0,
            }),
            _ => None,
        }
    }
    fn schema_tables(&mut self, schema: &str) -> Option<TableFacts> {
        (schema == "app").then(|| TableFacts {
            oid: 0,
            name: "app.*".into(),
            rows: 10.0,
            bytes: 8192,
            heap_bytes: 8192,
        })
    }
    fn any_volatile(&mut self, functions: &[String]) -> bool {
        functions.iter().any(|f| f == "random")
    }
    fn type_change_rewrites(&mut self, _: &TableFacts, _: &str, new_type: &str) -> bool {
        new_type != "text"
    }
    fn not_null_proven(&mut self, _: &TableFacts, column: &str) -> bool {
        column == "checked"
    }
}

fn name(n: &str) -> ObjectName {
    ObjectName {
        schema: None,
        name: n.into(),
    }
}

fn alter(table: &str, command: AlterCommand) -> Facts {
    Facts::AlterTable {
        table: name(table),
        commands: vec![command],
    }
}

fn kinds(facts: &Facts, lock: Option<&str>) -> Vec<(&'static str, bool)> {
    let target = name("big");
    hazards(
        facts,
        lock.map(|mode| (&target, mode)),
        &mut Tables,
        &Thresholds::default(),
    )
    .iter()
    .map(|h| (h.kind.as_str(), h.refused(&[])))
    .collect()
}

#[test]
fn hazards_with_verdicts() {
    let add = |f: &[&str], serial| AlterCommand::AddColumn {
        column: "c".into(),
        default_functions: f.iter().map(|s| s.to_string()).collect(),
        serial,
        not_null_without_default: false,
    };
    // (facts, the lock it takes, the hazards it has: kind and whether refused)
    type Case<'a> = (Facts, Option<&'a str>, Vec<(&'a str, bool)>);
    let cases: Vec<Case> = vec![
        (
            Facts::CreateIndex {
                table: name("big"),
                concurrent: false,
            },
            Some("ShareLock"),
            vec![("blocking_index_build", true)],
        ),
        (
            Facts::CreateIndex {
                table: name("empty"),
                concurrent: false,
            },
            Some("ShareLock"),
            vec![("blocking_index_build", false)],
        ),
        (
            Facts::CreateIndex {
                table: name("new"),
                concurrent: false,
            },
            Some("ShareLock"),
            vec![],
        ),
        (
            alter("big", add(&["random"], false)),
            None,
            vec![("table_rewrite", true)],
        ),
        (alter("big", add(&["now"], false)), None, vec![]),
        (alter("big", add(&[], true)), None, vec![("table_rewrite", true)]),
        (
            alter(
                "big",
                AlterCommand::AlterColumnType {
                    column: "c".into(),
                    new_type: "int8".into(),
                    using: false,
                },
            ),
            None,
            vec![("table_rewrite", true)],
        ),
        (
            alter(
                "big",
                AlterCommand::AlterColumnType {
                    column: "c".into(),
                    new_type: "text".into(),
                    using: false,
                },
            ),
            None,
            vec![],
        ),
        (
            alter(
                "big",
                AlterCommand::AddConstraint {
                    kind: ConstraintKind::ForeignKey,
                    validated: true,
                    uses_index: false,
                },
            ),
            None,
            vec![("validating_constraint", true)],
        ),
        (
            alter(
                "big",
                AlterCommand::AddConstraint {
                    kind: ConstraintKind::ForeignKey,
                    validated: false,
                    uses_index: false,
                },
            ),
            None,
            vec![],
        ),
        (
            alter(
                "big",
                AlterCommand::AddConstraint {
                    kind: ConstraintKind::Unique,
                    validated: true,
                    uses_index: true,
                },
            ),
            None,
            vec![],
        ),
        (
            alter(
                "big",
                AlterCommand::AddConstraint {
                    kind: ConstraintKind::PrimaryKey,
                    validated: true,
                    uses_index: false,
                },
            ),
            None,
            vec![("blocking_index_build", true)],
        ),
        (
            alter("big", AlterCommand::SetNotNull { column: "c".into() }),
            None,
            vec![("validating_constraint", true)],
        ),
        (
            alter(
                "big",
                AlterCommand::SetNotNull {
                    column: "checked".into(),
                },
            ),
            None,
            vec![],
        ),
        (
            alter("empty", AlterCommand::DropColumn { column: "c".into() }),
            Some("AccessExclusiveLock"),
            vec![("data_loss", false), ("access_exclusive", false)],
        ),
        (
            alter("big", AlterCommand::DropColumn { column: "c".into() }),
            Some("AccessExclusiveLock"),
            vec![("data_loss", true), ("access_exclusive", true)],
        ),
        (
            Facts::Drop {
                object: DropKind::Table,
                names: vec![name("empty"), name("big")],
            },
            None,
            vec![("data_loss", false), ("data_loss", true)],
        ),
        (
            Facts::Drop {
                object: DropKind::Schema,
                names: vec![name("app")],
            },
            None,
            vec![("data_loss", true)],
        ),
        (
            Facts::Truncate {
                tables: vec![name("big")],
            },
            None,
            vec![("data_loss", true)],
        ),
        (
            Facts::UnboundedDelete { table: name("big") },
            None,
            vec![("data_loss", true)],
        ),
        (Facts::Other, None, vec![]),
        (
            Facts::Other,
            Some("AccessExclusiveLock"),
            vec![("access_exclusive", true)],
        ),
        (Facts::Other, Some("RowExclusiveLock"), vec![]),
    ];
    for (facts, lock, want) in cases {
        assert_eq!(kinds(&facts, lock), want, "{facts:?}");
    }
}

#[test]
fn allowing_a_kind_lifts_its_refusal() {
    let h = &hazards(
        &Facts::Truncate {
            tables: vec![name("big")],
        },
        None,
        &mut Tables,
        &Thresholds::default(),
    )[0];
    assert!(h.refused(&[HazardKind::TableRewrite]));
    assert!(!h.refused(&[HazardKind::DataLoss]));
    assert_eq!(h.evidence(), "public.big (~1000000 rows, 40 MB)");
}

#[test]
fn thresholds_are_configurable() {
    let small = Thresholds {
        rows: 10.0,
        bytes: i64::MAX,
    };
    let t = TableFacts {
        oid: 3,
        name: "x".into(),
        rows: 11.0,
        bytes: 0,
        heap_bytes: 0,
    };
    assert!(small.is_big(&t));
    assert!(!Thresholds::default().is_big(&t));
    assert_eq!(HazardKind::parse("data_loss"), Some(HazardKind::DataLoss));
    assert_eq!(HazardKind::parse("nope"), None);
}
