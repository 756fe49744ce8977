//! gobuffalo pop (and ory's popx, as ory/kratos and supabase/auth use it):
//! `<version>_<name>[.<dialect>][.autocommit].up.sql` and `.down.sql` (the
//! change's revert).
//!
//! - A file for `postgres` takes precedence over a generic one (no dialect,
//!   or `all`) of the same version; files for other dialects (mysql,
//!   sqlite3, cockroach) are not read. Two files that both apply to the same
//!   version and direction are bad input.
//! - `.autocommit.` (popx runs the file outside a transaction) makes a
//!   one-statement file online; a file of several statements runs in the
//!   deployment's transaction, as an online change is one statement (one
//!   that cannot run in a transaction block still makes it bad input, see
//!   `online`). ory/kratos's autocommit files are mostly several
//!   `CREATE INDEX IF NOT EXISTS` / `DROP INDEX` that run in one as well.
//! - Versions order as strings, as pop sorts them.
//! - Go templates (`{{ index .Options "Namespace" }}`) are filled in from
//!   placeholders (see `placeholder`).
//!
//! Ids are `<version>_<name>` (the dialect left out, so moving a change to a
//! dialect file keeps its id); the history key is the version, as
//! `schema_migration.version` holds it.

use super::online::{self, Online};
use super::problems::Problems;
use super::{file_name, list, ordered, read_text, Migration};
use crate::error::CliError;
use crate::order::leading_digits;
use crate::sql_text::statements;
use std::path::{Path, PathBuf};

const DIALECTS: [&str; 7] = ["postgres", "cockroach", "mysql", "sqlite3", "sqlite", "mariadb", "all"];

/// A pop file name, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub version: String,
    /// `<version>_<name>`.
    pub id: String,
    /// None for a generic file.
    pub dialect: Option<String>,
    pub autocommit: bool,
    pub up: bool,
}

/// Parses `<version>_<name>[.<dialect>][.autocommit].(up|down).sql`; None if it is not one.
pub fn parse_name(name: &str) -> Option<Name> {
    let (stem, up) = match name.strip_suffix(".up.sql") {
        Some(s) => (s, true),
        None => (name.strip_suffix(".down.sql")?, false),
    };
    let mut parts = stem.split('.');
    let id = parts.next()?;
    let version = leading_digits(id);
    if version.is_empty() || !(id.len() == version.len() || id[version.len()..].starts_with('_')) {
        return None;
    }
    let (mut dialect, mut autocommit) = (None, false);
    for part in parts {
        match part {
            "autocommit" if !autocommit => autocommit = true,
            d if dialect.is_none() && DIALECTS.contains(&d) => dialect = Some(d.to_string()),
            _ => return None,
        }
    }
    Some(Name {
        version: version.to_string(),
        id: id.to_string(),
        dialect: dialect.filter(|d| d != "all"),
        autocommit,
        up,
    })
}

/// A name only pop writes (a dialect or `.autocommit.`), for detection.
pub fn is_pop_only_name(name: &str) -> bool {
    parse_name(name).is_some_and(|n| n.dialect.is_some() || n.autocommit)
}

/// One candidate file for a version and direction.
struct File {
    name: Name,
    path: PathBuf,
}

/// Of the files of one version and direction, the one PostgreSQL runs:
/// the postgres file, else the generic one; two of a kind are bad input.
fn choose(files: Vec<File>) -> Result<Option<File>, CliError> {
    let mut postgres: Option<File> = None;
    let mut generic: Option<File> = None;
    for f in files {
        let slot = match f.name.dialect.as_deref() {
            Some("postgres") => &mut postgres,
            None => &mut generic,
            Some(_) => continue,
        };
        if let Some(first) = slot {
            return Err(CliError::input_hint(
                format!(
                    "two files for version {} ({}): {} and {}",
                    f.name.version,
                    f.name.dialect.as_deref().unwrap_or("any dialect"),
                    first.path.display(),
                    f.path.display()
                ),
                "pop runs one file per version and dialect; remove or renumber one of them.",
            ));
        }
        *slot = Some(f);
    }
    Ok(postgres.or(generic))
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    // (version, up) → the files that name it.
    let mut groups: Vec<((String, bool), Vec<File>)> = Vec::new();
    let mut problems = Problems::default();
    for p in list(dir)? {
        let name = file_name(&p);
        if p.is_dir() || !(name.ends_with(".sql") || name.ends_with(".fizz")) {
            continue;
        }
        let Some(parsed) = parse_name(&name) else {
            problems.push(CliError::input_hint(
                format!("{} is not a pop migration name", p.display()),
                "pop names are <version>_<name>[.<dialect>][.autocommit].up.sql and .down.sql; \
                 fizz files are not read (they are not SQL).",
            ));
            continue;
        };
        let key = (parsed.version.clone(), parsed.up);
        let file = File { name: parsed, path: p };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, files)) => files.push(file),
            None => groups.push((key, vec![file])),
        }
    }
    let mut ups = Vec::new();
    let mut downs: Vec<(String, PathBuf)> = Vec::new();
    for ((version, up), files) in groups {
        let Some(f) = problems.keep(choose(files)).flatten() else {
            continue;
        };
        if !up {
            downs.push((version, f.path));
            continue;
        }
        let Some(sql) = problems.keep(read_text(&f.path)) else {
            continue;
        };
        let online = if f.name.autocommit && statements(&sql).len() == 1 {
            Online::Marker(online::POP_MARKER)
        } else {
            Online::No
        };
        let m = Migration {
            online,
            ..Migration::versioned(f.name.id, sql, version.clone(), f.path)
        };
        ups.push((version, m));
    }
    let mut out = problems
        .keep(ordered(
            ups,
            "version",
            String::clone,
            "Each pop version may be used once.",
        ))
        .unwrap_or_default();
    for (version, path) in downs {
        // A down file of a version PostgreSQL has no up file for reverts nothing here.
        if let Some(m) = out.iter_mut().find(|m| m.key == version) {
            m.revert = problems.keep(read_text(&path)).filter(|s| !s.trim().is_empty());
        }
    }
    problems.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn names() {
        let n = |v: &str, id: &str, d: Option<&str>, a: bool, up: bool| {
            Some(Name {
                version: v.into(),
                id: id.into(),
                dialect: d.map(Into::into),
                autocommit: a,
                up,
            })
        };
        let cases = [
            (
                "00_init_auth_schema.up.sql",
                n("00", "00_init_auth_schema", None, false, true),
            ),
            (
                "20150100000001000000_networks.postgres.down.sql",
                n(
                    "20150100000001000000",
                    "20150100000001000000_networks",
                    Some("postgres"),
                    false,
                    false,
                ),
            ),
            ("1_x.autocommit.up.sql", n("1", "1_x", None, true, true)),
            (
                "1_x.postgres.autocommit.up.sql",
                n("1", "1_x", Some("postgres"), true, true),
            ),
            ("1_x.all.up.sql", n("1", "1_x", None, false, true)),
            ("1_x.oracle.up.sql", None),
            ("x_1.up.sql", None),
            ("1_x.up.fizz", None),
            ("1_x.sql", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_name(name), want, "{name}");
        }
        assert!(is_pop_only_name("1_x.postgres.up.sql"));
        assert!(!is_pop_only_name("1_x.up.sql"));
    }

    #[test]
    fn postgres_files_win_and_other_dialects_are_left_out() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("20210710035447_alter_users.up.sql", "SELECT 'generic';"),
                ("20210710035447_alter_users.postgres.up.sql", "SELECT 'postgres';"),
                ("20210710035447_alter_users.postgres.down.sql", "SELECT 'down';"),
                ("20210710035447_alter_users.mysql.up.sql", "SELECT 'mysql';"),
                ("20191100000001000000_ids.cockroach.up.sql", "SELECT 'crdb only';"),
                ("00_init.up.sql", "SELECT 'init';"),
                (
                    "20241029153900000001_identities.autocommit.up.sql",
                    "CREATE INDEX CONCURRENTLY i ON t (a);",
                ),
                ("20241029153900000002_empty.postgres.up.sql", ""),
                (
                    "20241029153900000003_indexes.autocommit.up.sql",
                    "DROP INDEX IF EXISTS a;\nCREATE INDEX IF NOT EXISTS b ON t (b);\n",
                ),
            ],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.layout, crate::layout::Layout::Pop);
        let m = &f.migrations;
        let ids: Vec<&str> = m.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "00_init",
                "20210710035447_alter_users",
                "20241029153900000001_identities",
                "20241029153900000002_empty",
                "20241029153900000003_indexes"
            ]
        );
        assert_eq!(m[1].sql, "SELECT 'postgres';");
        assert_eq!(m[1].revert.as_deref(), Some("SELECT 'down';"));
        assert_eq!(m[1].key, "20210710035447");
        assert_eq!(m[2].online, Online::Marker(online::POP_MARKER));
        assert_eq!(m[3].sql, crate::layout::EMPTY_SQL);
        assert_eq!(m[4].online, Online::No, "several statements run in the transaction");
        assert!(
            f.warnings.iter().any(|w| w.contains("_empty.postgres.up.sql is empty")),
            "{:?}",
            f.warnings
        );
    }

    #[test]
    fn two_files_of_one_kind_are_bad_input() {
        for files in [
            [
                ("1_a.postgres.up.sql", "SELECT 1;"),
                ("1_b.postgres.up.sql", "SELECT 2;"),
            ],
            [("1_a.up.sql", "SELECT 1;"), ("1_b.all.up.sql", "SELECT 2;")],
        ] {
            let tmp = tempfile::tempdir().expect("tmp");
            testdir::write(tmp.path(), &files);
            let e = read(tmp.path()).expect_err("two");
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("two files for version 1"), "{e}");
        }
    }
}
