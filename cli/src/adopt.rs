//! Adopting a database another tool built: read that tool's history table,
//! map its entries onto the folder's change ids, and record exactly those with
//! `deploy.baseline` (nothing runs), so the next apply runs only what is new.

use crate::error::CliError;
use crate::layout::{golang_migrate, Migration};
use crate::order::{cmp_digits, FlywayVersion};
use postgres::types::Type;
use postgres::Client;

/// The tool whose history `adopt --from` reads (`migrate` is a hidden alias
/// of golang-migrate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    /// flyway_schema_history
    Flyway,
    /// schema_migrations (version bigint, dirty boolean)
    #[value(alias = "migrate")]
    GolangMigrate,
    /// schema_migrations (version varchar)
    Dbmate,
    /// sqitch.changes
    Sqitch,
    /// _sqlx_migrations
    Sqlx,
    /// __diesel_schema_migrations
    Diesel,
    /// goose_db_version
    Goose,
    /// schema_migration (gobuffalo pop, ory popx)
    Pop,
    /// databasechangelog
    Liquibase,
    /// schema_version (temporal's curr_version)
    Temporal,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Flyway => "flyway",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Dbmate => "dbmate",
            Tool::Sqitch => "sqitch",
            Tool::Sqlx => "sqlx",
            Tool::Diesel => "diesel",
            Tool::Goose => "goose",
            Tool::Pop => "pop",
            Tool::Liquibase => "liquibase",
            Tool::Temporal => "temporal",
        }
    }

    /// The history table the tool keeps by default.
    pub fn default_table(self) -> &'static str {
        match self {
            Tool::Flyway => "flyway_schema_history",
            Tool::GolangMigrate | Tool::Dbmate => "schema_migrations",
            Tool::Sqitch => "sqitch.changes",
            Tool::Sqlx => "_sqlx_migrations",
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Goose => "goose_db_version",
            Tool::Pop => "schema_migration",
            Tool::Liquibase => "databasechangelog",
            Tool::Temporal => "schema_version",
        }
    }

    /// The query reading the history (successful entries, in order) from `table`,
    /// a name already quoted by PostgreSQL (regclass output). Columns: version,
    /// description, type, dirty; all text.
    fn query(self, table: &str) -> String {
        match self {
            Tool::Flyway => format!(
                "SELECT version::text, description::text, type::text, NULL::text FROM {table} WHERE success ORDER BY installed_rank"
            ),
            Tool::GolangMigrate => format!("SELECT version::text, NULL::text, NULL::text, dirty::text FROM {table}"),
            Tool::Dbmate => format!("SELECT version::text, NULL::text, NULL::text, NULL::text FROM {table} ORDER BY version"),
            Tool::Sqitch => format!(
                "SELECT change::text, NULL::text, NULL::text, NULL::text FROM {table} WHERE project = $1 ORDER BY committed_at"
            ),
            Tool::Sqlx => {
                format!("SELECT version::text, description::text, NULL::text, NULL::text FROM {table} WHERE success ORDER BY version")
            }
            Tool::Diesel | Tool::Pop => {
                format!("SELECT version::text, NULL::text, NULL::text, NULL::text FROM {table} ORDER BY version")
            }
            // goose logs every up and down; a version is applied when its newest row says so.
            Tool::Goose => format!(
                "SELECT version_id::text, NULL::text, NULL::text, NULL::text FROM \
                 (SELECT DISTINCT ON (version_id) version_id, is_applied FROM {table} ORDER BY version_id, id DESC) s \
                 WHERE is_applied AND version_id <> 0 ORDER BY version_id"
            ),
            // FAILED and SKIPPED changesets did not run; MARK_RAN ones count as run, as Liquibase counts them.
            Tool::Liquibase => format!(
                "SELECT author::text || ':' || id::text, filename::text, exectype::text, NULL::text FROM {table} \
                 WHERE exectype IN ('EXECUTED', 'RERAN', 'MARK_RAN') ORDER BY orderexecuted"
            ),
            Tool::Temporal => format!("SELECT DISTINCT curr_version::text, NULL::text, NULL::text, NULL::text FROM {table}"),
        }
    }
}

/// One row of a tool's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRow {
    pub version: Option<String>,
    pub description: Option<String>,
    pub kind: Option<String>,
    pub dirty: bool,
}

/// What adoption found: the ids to record, and notes for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    pub ids: Vec<String>,
    pub warnings: Vec<String>,
}

fn missing(tool: Tool, what: &str) -> CliError {
    CliError::input_hint(
        format!("the {} history has {what}, which no migration in the folder matches", tool.name()),
        "Point at the folder the database was migrated from (and --layout if needed); adoption records only what both agree on.",
    )
}

fn numeric_eq(a: &str, b: &str) -> bool {
    !a.is_empty()
        && a.bytes().all(|c| c.is_ascii_digit())
        && b.bytes().all(|c| c.is_ascii_digit())
        && cmp_digits(a, b).is_eq()
}

/// Maps history rows onto migrations; the ids come out in folder order.
pub fn map(tool: Tool, rows: &[HistoryRow], migrations: &[Migration]) -> Result<Mapping, CliError> {
    let mut applied = vec![false; migrations.len()];
    let mut warnings = Vec::new();
    match tool {
        Tool::Flyway => {
            let version_of = |m: &Migration| (!m.repeatable).then(|| FlywayVersion::parse(&m.key)).flatten();
            for row in rows {
                let kind = row.kind.as_deref().unwrap_or("SQL").to_ascii_uppercase();
                if kind == "SCHEMA" || kind == "TABLE" {
                    continue;
                }
                match row.version.as_deref().filter(|v| !v.is_empty()) {
                    Some(v) => {
                        let Some(v) = FlywayVersion::parse(v) else {
                            return Err(CliError::input(format!("flyway history: \"{v}\" is not a version")));
                        };
                        if kind == "BASELINE" {
                            for (i, m) in migrations.iter().enumerate() {
                                if version_of(m).is_some_and(|w| w <= v) {
                                    applied[i] = true;
                                }
                            }
                            continue;
                        }
                        let found = migrations.iter().position(|m| version_of(m).is_some_and(|w| w == v));
                        let undone = kind.starts_with("UNDO") || kind == "DELETE";
                        match (found, undone) {
                            (Some(i), false) => applied[i] = true,
                            (Some(i), true) => applied[i] = false,
                            (None, true) => {}
                            (None, false) => return Err(missing(tool, &format!("version {}", v.canonical()))),
                        }
                    }
                    None => {
                        let description = row.description.clone().unwrap_or_default();
                        let key = format!("R:{description}");
                        match migrations.iter().position(|m| m.repeatable && m.key == key) {
                            Some(i) => applied[i] = true,
                            None => warnings.push(format!(
                                "flyway history has the repeatable migration \"{description}\", which the folder no longer has"
                            )),
                        }
                    }
                }
            }
        }
        Tool::GolangMigrate => {
            let Some(row) = rows.first() else {
                return Ok(Mapping {
                    ids: Vec::new(),
                    warnings: vec!["schema_migrations is empty".into()],
                });
            };
            if rows.len() > 1 {
                return Err(CliError::Refused {
                    message: format!(
                        "golang-migrate's schema_migrations has {} rows; it keeps exactly one",
                        rows.len()
                    ),
                    hint: Some("Is this a dbmate table? Try --from dbmate.".into()),
                });
            }
            let version = row.version.clone().unwrap_or_default();
            if row.dirty {
                return Err(CliError::Refused {
                    message: format!("golang-migrate's history is dirty at version {version}: that migration failed half-way"),
                    hint: Some(
                        "Repair the database by hand, then `migrate force VERSION` to the version it is really at, and adopt again."
                            .into(),
                    ),
                });
            }
            if version.starts_with('-') {
                return Ok(Mapping {
                    ids: Vec::new(),
                    warnings: vec!["golang-migrate's history has no version".into()],
                });
            }
            if !migrations.iter().any(|m| numeric_eq(&m.key, &version)) {
                return Err(missing(tool, &format!("version {version}")));
            }
            for (i, m) in migrations.iter().enumerate() {
                let key = &m.key;
                if key.bytes().all(|c| c.is_ascii_digit()) && !cmp_digits(key, &version).is_gt() {
                    applied[i] = true;
                }
            }
        }
        Tool::Temporal => {
            let Some(row) = rows.first() else {
                return Ok(Mapping {
                    ids: Vec::new(),
                    warnings: vec!["schema_version is empty".into()],
                });
            };
            if rows.len() > 1 {
                return Err(CliError::Refused {
                    message: format!("temporal's schema_version holds {} different versions", rows.len()),
                    hint: Some("Name the one table with --history-table, or adopt with --through instead (pg-deploy baseline).".into()),
                });
            }
            let text = row.version.clone().unwrap_or_default();
            let Some(current) = FlywayVersion::parse(&text) else {
                return Err(CliError::input(format!(
                    "temporal history: \"{text}\" is not a version"
                )));
            };
            if !migrations
                .iter()
                .any(|m| FlywayVersion::parse(&m.key).is_some_and(|v| v == current))
            {
                return Err(missing(tool, &format!("version {text}")));
            }
            for (i, m) in migrations.iter().enumerate() {
                applied[i] = FlywayVersion::parse(&m.key).is_some_and(|v| v <= current);
            }
        }
        Tool::Dbmate | Tool::Sqlx | Tool::Goose => {
            for row in rows {
                let version = row.version.clone().unwrap_or_default();
                match migrations
                    .iter()
                    .position(|m| numeric_eq(&m.key, &golang_migrate::key(&version)))
                {
                    Some(i) => applied[i] = true,
                    None => return Err(missing(tool, &format!("version {version}"))),
                }
            }
        }
        Tool::Sqitch | Tool::Diesel | Tool::Pop | Tool::Liquibase => {
            let what = match tool {
                Tool::Diesel | Tool::Pop => "version",
                _ => "change",
            };
            for row in rows {
                let name = row.version.clone().unwrap_or_default();
                match migrations.iter().position(|m| m.key == name) {
                    Some(i) => applied[i] = true,
                    None => return Err(missing(tool, &format!("{what} \"{name}\""))),
                }
            }
        }
    }
    let ids = migrations
        .iter()
        .zip(&applied)
        .filter(|(_, a)| **a)
        .map(|(m, _)| m.id.clone())
        .collect();
    Ok(Mapping { ids, warnings })
}

/// Reads the tool's history from the database. `table` overrides the default name.
pub fn read_history(
    client: &mut Client,
    tool: Tool,
    table: Option<&str>,
    sqitch_project: Option<&str>,
) -> Result<Vec<HistoryRow>, CliError> {
    let name = table.unwrap_or(tool.default_table());
    let fail = |e: postgres::Error| crate::db::call_error("adopt", "", e);
    let params: [(&(dyn postgres::types::ToSql + Sync), Type); 1] = [(&name, Type::TEXT)];
    let rows = client
        .query_typed("SELECT to_regclass($1)::text", &params)
        .map_err(fail)?;
    let quoted: Option<String> = match rows.first() {
        Some(r) => r.try_get(0).map_err(fail)?,
        None => None,
    };
    let Some(quoted) = quoted else {
        return Err(CliError::Refused {
            message: format!(
                "there is no table {name} in this database, so there is no {} history to adopt",
                tool.name()
            ),
            hint: Some(
                "Name the history table with --history-table SCHEMA.TABLE, or connect to the right database.".into(),
            ),
        });
    };
    let sql = tool.query(&quoted);
    let rows = if tool == Tool::Sqitch {
        let project = sqitch_project.unwrap_or_default();
        let params: [(&(dyn postgres::types::ToSql + Sync), Type); 1] = [(&project, Type::TEXT)];
        client.query_typed(&sql, &params).map_err(fail)?
    } else {
        client.query_typed(&sql, &[]).map_err(fail)?
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let text = |i: usize| -> Result<Option<String>, CliError> { r.try_get::<_, Option<String>>(i).map_err(fail) };
        out.push(HistoryRow {
            version: text(0)?,
            description: text(1)?,
            kind: text(2)?,
            dirty: text(3)?.as_deref() == Some("true"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn m(id: &str, key: &str, repeatable: bool) -> Migration {
        Migration {
            id: id.into(),
            sql: "SELECT 1;".into(),
            repeatable,
            revert: None,
            verify: None,
            requires: Vec::new(),
            key: key.into(),
            source: PathBuf::from(id),
            online: crate::layout::online::Online::No,
        }
    }

    fn row(version: Option<&str>, description: Option<&str>, kind: Option<&str>) -> HistoryRow {
        HistoryRow {
            version: version.map(Into::into),
            description: description.map(Into::into),
            kind: kind.map(Into::into),
            dirty: false,
        }
    }

    #[test]
    fn flyway_versions_repeatables_baselines_and_undos() {
        let folder = [
            m("V1__init", "1", false),
            m("V1.1__two", "1.1", false),
            m("V1.10__ten", "1.10", false),
            m("V2__new", "2", false),
            m("R__views", "R:views", true),
        ];
        let rows = [
            row(Some("1.0"), Some("init"), Some("SQL")),
            row(Some("1.10"), Some("ten"), Some("SQL")),
            row(None, Some("views"), Some("SQL")),
        ];
        let got = map(Tool::Flyway, &rows, &folder).expect("map");
        assert_eq!(got.ids, ["V1__init", "V1.10__ten", "R__views"]);
        let rows = [row(Some("1.1"), Some("<< Flyway Baseline >>"), Some("BASELINE"))];
        assert_eq!(
            map(Tool::Flyway, &rows, &folder).expect("map").ids,
            ["V1__init", "V1.1__two"]
        );
        let rows = [
            row(Some("2"), Some("new"), Some("SQL")),
            row(Some("2"), Some("new"), Some("UNDO_SQL")),
        ];
        assert!(map(Tool::Flyway, &rows, &folder).expect("map").ids.is_empty());
        let e = map(Tool::Flyway, &[row(Some("3"), Some("x"), Some("SQL"))], &folder).expect_err("missing");
        assert!(e.to_string().contains("version 3"), "{e}");
        let got = map(Tool::Flyway, &[row(None, Some("gone"), Some("SQL"))], &folder).expect("map");
        assert_eq!(got.warnings.len(), 1);
    }

    #[test]
    fn golang_migrate_takes_everything_up_to_its_version_unless_dirty() {
        let folder = [m("1_a", "1", false), m("2_b", "2", false), m("10_c", "10", false)];
        let mut r = row(Some("2"), None, None);
        assert_eq!(
            map(Tool::GolangMigrate, &[r.clone()], &folder).expect("map").ids,
            ["1_a", "2_b"]
        );
        r.dirty = true;
        let e = map(Tool::GolangMigrate, &[r], &folder).expect_err("dirty");
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("dirty"));
        assert!(map(Tool::GolangMigrate, &[row(Some("7"), None, None)], &folder).is_err());
    }

    #[test]
    fn dbmate_and_sqlx_match_versions_numerically() {
        let folder = [m("001_a", "1", false), m("002_b", "2", false), m("003_c", "3", false)];
        let rows = [row(Some("001"), None, None), row(Some("3"), None, None)];
        assert_eq!(map(Tool::Dbmate, &rows, &folder).expect("map").ids, ["001_a", "003_c"]);
        assert_eq!(map(Tool::Sqlx, &rows, &folder).expect("map").ids, ["001_a", "003_c"]);
        let e = map(Tool::Dbmate, &[row(Some("4"), None, None)], &folder).expect_err("missing");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn diesel_pop_and_liquibase_match_keys_exactly_goose_numerically() {
        let diesel = [
            m("00000000000000_setup", "00000000000000", false),
            m("2019-02-26-002946_user", "20190226002946", false),
        ];
        let pop = [
            m("00_init", "00", false),
            m("20210710035447_alter", "20210710035447", false),
        ];
        let lb = [m("alice:1", "alice:1", false), m("bob:2", "bob:2", false)];
        let goose = [m("00001_a", "1", false), m("00002_b", "2", false)];
        type Case<'a> = (Tool, &'a [Migration], &'a [&'a str], Result<&'a [&'a str], &'a str>);
        let cases: &[Case] = &[
            (
                Tool::Diesel,
                &diesel,
                &["20190226002946"],
                Ok(&["2019-02-26-002946_user"]),
            ),
            (Tool::Diesel, &diesel, &["0"], Err("version \"0\"")),
            (
                Tool::Pop,
                &pop,
                &["00", "20210710035447"],
                Ok(&["00_init", "20210710035447_alter"]),
            ),
            (Tool::Pop, &pop, &["0"], Err("version \"0\"")),
            (Tool::Liquibase, &lb, &["bob:2"], Ok(&["bob:2"])),
            (Tool::Liquibase, &lb, &["carol:3"], Err("change \"carol:3\"")),
            (Tool::Goose, &goose, &["2"], Ok(&["00002_b"])),
            (Tool::Goose, &goose, &["3"], Err("version 3")),
        ];
        for (tool, folder, versions, want) in cases {
            let rows: Vec<HistoryRow> = versions.iter().map(|v| row(Some(v), None, None)).collect();
            match (map(*tool, &rows, folder), want) {
                (Ok(got), Ok(ids)) => assert_eq!(got.ids, *ids, "{tool:?}"),
                (Err(e), Err(text)) => {
                    assert_eq!(e.exit_code(), 2);
                    assert!(e.to_string().contains(text), "{e}");
                }
                (got, _) => panic!("{tool:?} {versions:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn temporal_takes_every_folder_up_to_its_version() {
        let folder = [
            m("v1.0/schema", "1.0", false),
            m("v1.2/q", "1.2", false),
            m("v1.10/x", "1.10", false),
        ];
        let got = map(Tool::Temporal, &[row(Some("1.2"), None, None)], &folder).expect("map");
        assert_eq!(got.ids, ["v1.0/schema", "v1.2/q"]);
        assert!(map(Tool::Temporal, &[row(Some("1.3"), None, None)], &folder).is_err());
        let two = [row(Some("1.2"), None, None), row(Some("1.0"), None, None)];
        assert_eq!(map(Tool::Temporal, &two, &folder).expect_err("two").exit_code(), 1);
    }

    #[test]
    fn sqitch_matches_change_names() {
        let folder = [m("appschema", "appschema", false), m("users", "users", false)];
        assert_eq!(
            map(Tool::Sqitch, &[row(Some("appschema"), None, None)], &folder)
                .expect("map")
                .ids,
            ["appschema"]
        );
        use clap::ValueEnum;
        assert!(Tool::from_str("atlas", false).is_err());
        assert_eq!(Tool::from_str("migrate", false), Ok(Tool::GolangMigrate));
        for t in Tool::value_variants() {
            assert_eq!(Tool::from_str(t.name(), false), Ok(*t));
        }
    }
}
