//! Downstream hazards: a change that drops or retypes a column, or drops or
//! renames a table, that something outside the project depends on: a publication
//! (logical replication), a view, function or foreign key in a schema the
//! project does not manage, or another role's ownership. Pure logic; the
//! extension finds the dependants in the catalogs (src/lineage/downstream.rs).

use crate::analysis::{AlterCommand, DropKind, Facts, ObjectName};

/// What a statement does to an existing table that others may depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub table: ObjectName,
    /// The column, or None for the whole table.
    pub column: Option<String>,
    /// "drops column", "retypes column", "drops table", "renames table".
    pub action: &'static str,
}

/// The tables and columns a statement drops, retypes or renames.
pub fn touched(facts: &Facts) -> Vec<Touched> {
    match facts {
        Facts::AlterTable { table, commands } => commands
            .iter()
            .filter_map(|c| match c {
                AlterCommand::DropColumn { column } => Some((column, "drops column")),
                AlterCommand::AlterColumnType { column, .. } => Some((column, "retypes column")),
                _ => None,
            })
            .map(|(column, action)| Touched {
                table: table.clone(),
                column: Some(column.clone()),
                action,
            })
            .collect(),
        Facts::Drop {
            object: DropKind::Table,
            names,
        } => names
            .iter()
            .map(|table| Touched {
                table: table.clone(),
                column: None,
                action: "drops table",
            })
            .collect(),
        Facts::RenameTable { table } => vec![Touched {
            table: table.clone(),
            column: None,
            action: "renames table",
        }],
        _ => Vec::new(),
    }
}

/// Something that depends on a touched table, as found in the catalogs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependant {
    /// "publication", "view", "materialized view", "function", "foreign key", "owner".
    pub kind: String,
    /// Its name (for "owner", the owning role).
    pub name: String,
    /// Its schema, for views, functions and foreign keys.
    pub schema: Option<String>,
}

/// The dependants outside the project: publications and other owners always,
/// the rest only in schemas the project does not manage (its own it updates itself).
pub fn outside<'a>(dependants: &'a [Dependant], managed: &[String]) -> Vec<&'a Dependant> {
    dependants
        .iter()
        .filter(|d| d.schema.as_ref().is_none_or(|s| !managed.contains(s)))
        .collect()
}

/// One warning for a change: `change "0009" drops column name of app.items,
/// which publication items_pub, view report.v depend on`.
pub fn warning(change: &str, touched: &Touched, table: &str, dependants: &[&Dependant]) -> Option<String> {
    if dependants.is_empty() {
        return None;
    }
    let what = match &touched.column {
        Some(column) => format!("{} {column} of {table}", touched.action),
        None => format!("{} {table}", touched.action),
    };
    let names: Vec<String> = dependants
        .iter()
        .map(|d| match d.kind.as_str() {
            "owner" => format!("the owner, role {}", d.name),
            kind => format!("{kind} {}", d.name),
        })
        .collect();
    Some(format!(
        "downstream: change \"{change}\" {what}, which {} depend(s) on outside this project",
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(schema: &str, name: &str) -> ObjectName {
        ObjectName {
            schema: Some(schema.into()),
            name: name.into(),
        }
    }

    fn dep(kind: &str, name: &str, schema: Option<&str>) -> Dependant {
        Dependant {
            kind: kind.into(),
            name: name.into(),
            schema: schema.map(str::to_string),
        }
    }

    /// (action, column) of each touch.
    type Touches = Vec<(&'static str, Option<&'static str>)>;

    #[test]
    fn what_is_touched() {
        let cases: Vec<(Facts, Touches)> = vec![
            (
                Facts::AlterTable {
                    table: name("app", "t"),
                    commands: vec![
                        AlterCommand::DropColumn { column: "a".into() },
                        AlterCommand::AlterColumnType {
                            column: "b".into(),
                            new_type: "bigint".into(),
                            using: false,
                        },
                        AlterCommand::Other,
                    ],
                },
                vec![("drops column", Some("a")), ("retypes column", Some("b"))],
            ),
            (
                Facts::Drop {
                    object: DropKind::Table,
                    names: vec![name("app", "t"), name("app", "u")],
                },
                vec![("drops table", None), ("drops table", None)],
            ),
            (
                Facts::Drop {
                    object: DropKind::Index,
                    names: vec![name("app", "i")],
                },
                vec![],
            ),
            (
                Facts::RenameTable {
                    table: name("app", "t"),
                },
                vec![("renames table", None)],
            ),
            (Facts::Other, vec![]),
        ];
        for (facts, expected) in cases {
            let found = touched(&facts);
            let got: Vec<(&str, Option<&str>)> = found.iter().map(|t| (t.action, t.column.as_deref())).collect();
            assert_eq!(got, expected, "{facts:?}");
        }
    }

    #[test]
    fn managed_dependants_are_the_projects_own() {
        let deps = vec![
            dep("publication", "pub", None),
            dep("view", "app.v", Some("app")),
            dep("view", "report.v", Some("report")),
            dep("owner", "team_b", None),
        ];
        let out: Vec<&str> = outside(&deps, &["app".into()])
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(out, vec!["pub", "report.v", "team_b"]);
    }

    #[test]
    fn the_warning_names_every_dependant() {
        let t = Touched {
            table: name("app", "items"),
            column: Some("name".into()),
            action: "drops column",
        };
        let deps = [dep("publication", "items_pub", None), dep("owner", "bob", None)];
        let refs: Vec<&Dependant> = deps.iter().collect();
        assert_eq!(
            warning("0009", &t, "app.items", &refs).as_deref(),
            Some(
                "downstream: change \"0009\" drops column name of app.items, which publication items_pub, the owner, \
                 role bob depend(s) on outside this project"
            )
        );
        assert_eq!(warning("0009", &t, "app.items", &[]), None);
    }
}
