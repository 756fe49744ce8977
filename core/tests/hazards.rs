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
    fn not_null_proven(&mut self, _: &TableFacts, column: &str, validated: &[String]) -> bool {
        column == "checked" || (column == "later" && validated.iter().any(|c| c == "later_nn"))
    }
    fn index_table(&mut self, index: &ObjectName) -> Option<TableFacts> {
        (index.name == "big_idx").then(|| self.table(&name("big"))).flatten()
    }
    fn domain_tables(&mut self, domain: &ObjectName) -> Vec<TableFacts> {
        let used = if domain.name == "d" {
            self.table(&name("big"))
        } else {
            None
        };
        used.into_iter().collect()
    }
    fn partitioned(&mut self, name: &ObjectName) -> bool {
        name.name == "parted"
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
        &mut Earlier::default(),
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
        stored_generated: false,
        builds_index: false,
    };
    let generated = AlterCommand::AddColumn {
        column: "g".into(),
        default_functions: vec![],
        serial: false,
        not_null_without_default: false,
        stored_generated: true,
        builds_index: false,
    };
    let unique = AlterCommand::AddColumn {
        column: "u".into(),
        default_functions: vec![],
        serial: false,
        not_null_without_default: false,
        stored_generated: false,
        builds_index: true,
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
                    name: None,
                    not_null_of: None,
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
                    name: None,
                    not_null_of: None,
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
                    name: None,
                    not_null_of: None,
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
                    name: None,
                    not_null_of: None,
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
        // Issue 17's classes.
        (alter("big", generated), None, vec![("table_rewrite", true)]),
        (alter("big", unique), None, vec![("blocking_index_build", true)]),
        (
            Facts::Drop {
                object: DropKind::Index,
                names: vec![name("big_idx"), name("new_idx")],
            },
            Some("AccessExclusiveLock"),
            vec![("access_exclusive", true)],
        ),
        (
            Facts::Drop {
                object: DropKind::OnTable,
                names: vec![name("big")],
            },
            Some("AccessExclusiveLock"),
            vec![("access_exclusive", true)],
        ),
        (
            Facts::DomainValidation { domain: name("d") },
            None,
            vec![("validating_constraint", true)],
        ),
        (Facts::DomainValidation { domain: name("unused") }, None, vec![]),
        (
            Facts::Reindex {
                target: name("big_idx"),
                index: true,
            },
            Some("ShareLock"),
            vec![("blocking_index_build", true)],
        ),
        (
            Facts::Reindex {
                target: name("big"),
                index: false,
            },
            Some("ShareLock"),
            vec![("blocking_index_build", true)],
        ),
        (
            Facts::Cluster { table: name("big") },
            Some("AccessExclusiveLock"),
            vec![("table_rewrite", true), ("access_exclusive", true)],
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
        &mut Earlier::default(),
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

/// VALIDATE CONSTRAINT then SET NOT NULL: PostgreSQL 12+ uses the valid CHECK
/// and skips the scan, whether the CHECK was there before or added NOT VALID
/// earlier in the same deployment.
#[test]
fn set_not_null_after_validate_is_not_a_scan() {
    let run = |commands: Vec<Vec<AlterCommand>>| {
        let mut earlier = Earlier::default();
        let mut found = Vec::new();
        for c in commands {
            let facts = Facts::AlterTable {
                table: name("big"),
                commands: c,
            };
            found.extend(
                hazards(&facts, None, &mut Tables, &Thresholds::default(), &mut earlier)
                    .into_iter()
                    .map(|h| h.kind.as_str()),
            );
        }
        found
    };
    let validate = |n: &str| AlterCommand::ValidateConstraint { name: n.into() };
    let set = |c: &str| AlterCommand::SetNotNull { column: c.into() };
    let add_nn = AlterCommand::AddConstraint {
        kind: ConstraintKind::Check,
        validated: false,
        uses_index: false,
        name: Some("mine".into()),
        not_null_of: Some("x".into()),
    };
    // An existing NOT VALID check, validated by an earlier statement.
    assert_eq!(
        run(vec![vec![validate("later_nn")], vec![set("later")]]),
        Vec::<&str>::new()
    );
    // … or in the same statement.
    assert_eq!(run(vec![vec![validate("later_nn"), set("later")]]), Vec::<&str>::new());
    // Not validated: the scan happens.
    assert_eq!(run(vec![vec![set("later")]]), vec!["validating_constraint"]);
    // Added NOT VALID in this deployment, validated, then SET NOT NULL.
    assert_eq!(
        run(vec![vec![add_nn.clone()], vec![validate("mine")], vec![set("x")]]),
        Vec::<&str>::new()
    );
    assert_eq!(run(vec![vec![add_nn], vec![set("x")]]), vec!["validating_constraint"]);
}

#[test]
fn partitioned_reindex_and_cluster_cannot_run_in_a_transaction() {
    use pg_deploy_core::analysis::refusal_from_catalog;
    let reindex = |n: &str| Facts::Reindex {
        target: name(n),
        index: false,
    };
    let got = refusal_from_catalog(&reindex("parted"), &mut Tables).map(|r| (r.sqlstate.code(), r.reason));
    assert_eq!(
        got,
        Some((
            "25001",
            "REINDEX TABLE | INDEX of a partitioned table or index cannot run inside a transaction block".into()
        ))
    );
    assert!(refusal_from_catalog(&reindex("big"), &mut Tables).is_none());
    let cluster = Facts::Cluster { table: name("parted") };
    assert!(refusal_from_catalog(&cluster, &mut Tables).is_some());
}

#[test]
fn every_hazard_points_at_a_way_out() {
    let facts = Facts::Drop {
        object: DropKind::Index,
        names: vec![name("big_idx")],
    };
    let h = &hazards(
        &facts,
        None,
        &mut Tables,
        &Thresholds::default(),
        &mut Earlier::default(),
    )[0];
    assert!(
        h.hint.contains("DROP INDEX CONCURRENTLY") && h.hint.contains("\"online\": true"),
        "{}",
        h.hint
    );
}

/// The locks a statement takes on existing tables, found through the
/// catalogs where the parse tree names no table, and what makes it long.
#[test]
fn locks_on_existing_tables_and_long_work() {
    use pg_deploy_core::locks::{long_work, statement_locks, LockMode};
    let t = Thresholds::default();
    let locks = |facts: &Facts, lock: Option<(&str, &str)>| {
        let target = lock.map(|(n, m)| (name(n), m));
        statement_locks(facts, target.as_ref().map(|(n, m)| (n, *m)), &mut Tables, &t)
            .into_iter()
            .map(|l| (l.table.name, l.mode, l.big))
            .collect::<Vec<_>>()
    };
    let drop_index = Facts::Drop {
        object: DropKind::Index,
        names: vec![name("big_idx")],
    };
    assert_eq!(
        locks(&drop_index, Some(("big_idx", "AccessExclusiveLock"))),
        vec![("public.big".to_string(), LockMode::AccessExclusive, true)]
    );
    let domain = Facts::DomainValidation { domain: name("d") };
    assert_eq!(
        locks(&domain, None),
        vec![("public.big".to_string(), LockMode::Share, true)]
    );
    let fill = Facts::BulkWrite { table: name("big") };
    assert_eq!(
        locks(&fill, Some(("big", "RowExclusiveLock"))),
        vec![("public.big".to_string(), LockMode::RowExclusive, true)]
    );
    assert!(locks(&fill, Some(("new", "RowExclusiveLock"))).is_empty());
    // Long: a backfill or a VALIDATE on a big table, or a big hazard that scans.
    let held = statement_locks(&fill, Some((&name("big"), "RowExclusiveLock")), &mut Tables, &t);
    assert_eq!(
        long_work(&fill, &[], &held).as_deref(),
        Some("writes to public.big, a backfill")
    );
    let validate = alter("big", AlterCommand::ValidateConstraint { name: "c".into() });
    assert!(long_work(&validate, &[], &held).is_some());
    assert!(long_work(&Facts::Other, &[], &held).is_none());
    let rewrite = hazards(
        &Facts::Cluster { table: name("big") },
        None,
        &mut Tables,
        &t,
        &mut Earlier::default(),
    );
    assert_eq!(
        long_work(&Facts::Other, &rewrite, &[]).as_deref(),
        Some("rewrites public.big")
    );
}
