//! goose: `<version>_<name>.sql` with a `-- +goose Up` section and an
//! optional `-- +goose Down` section (the change's revert). The version is
//! the leading number (a sequence or a timestamp) and orders numerically.
//!
//! `-- +goose StatementBegin` / `StatementEnd` only tell goose where a
//! statement with semicolons inside ends; pg-deploy splits statements itself
//! (dollar quotes included), so those lines are dropped. `-- +goose NO
//! TRANSACTION` makes the change online. Go migrations (`.go`) are not read:
//! they cannot run in the database.
//!
//! Ids are the file name without `.sql`; the history key is the version
//! without leading zeros, as `goose_db_version.version_id` holds it.

use super::online::{self, Online};
use super::problems::Problems;
use super::sections::{self, Line};
use super::{file_name, golang_migrate, list, numbered, ordered, read_text, Migration, Number};
use crate::error::CliError;
use std::path::{Path, PathBuf};

/// The annotation of a `-- +goose <annotation>` line, if it is one.
fn annotation(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("--")?.trim_start().strip_prefix("+goose")?;
    Some(
        rest.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase(),
    )
}

pub fn is_up_marker(line: &str) -> bool {
    annotation(line).as_deref() == Some("up")
}

fn classify(line: &str) -> Line {
    match annotation(line).as_deref() {
        Some("up") => Line::Up,
        Some("down") => Line::Down,
        Some(_) => Line::Drop,
        None => Line::Sql,
    }
}

/// Whether the file carries `-- +goose NO TRANSACTION`.
pub fn no_transaction(text: &str) -> bool {
    text.lines().any(|l| annotation(l).as_deref() == Some("no transaction"))
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut out = Vec::new();
    let mut problems = Problems::default();
    for p in list(dir)? {
        let name = file_name(&p);
        if p.is_dir() || !name.ends_with(".sql") {
            continue;
        }
        out.extend(problems.keep(read_one(p)));
    }
    let out = problems.keep(ordered(
        out,
        "version",
        |v| golang_migrate::key(&v.0),
        "Each goose version may be used once (1 and 00001 are the same version).",
    ));
    problems.finish(out.unwrap_or_default())
}

fn read_one(p: PathBuf) -> Result<(Number, Migration), CliError> {
    let (id, version) = numbered(
        &p,
        "goose",
        "goose names are <version>_<name>.sql, the version being a number or a timestamp.",
    )?;
    let text = read_text(&p)?;
    if let Some(line) = sections::stray_sql(&text, classify) {
        return Err(CliError::input_hint(
            format!("{}:{line}: SQL before the \"-- +goose Up\" annotation", p.display()),
            "goose files start with \"-- +goose Up\"; only comments may come before it.",
        ));
    }
    let (Some(up), down, _) = sections::split(&text, classify) else {
        return Err(CliError::input_hint(
            format!("{}:1: no \"-- +goose Up\" annotation", p.display()),
            "goose files start with \"-- +goose Up\"; the down part follows \"-- +goose Down\".",
        ));
    };
    let online = if no_transaction(&text) {
        Online::Marker(online::GOOSE_MARKER)
    } else {
        Online::No
    };
    let m = Migration {
        revert: down,
        online,
        ..Migration::versioned(id, up, golang_migrate::key(&version), p)
    };
    Ok((Number(version), m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn annotations() {
        let cases = [
            ("-- +goose Up", Line::Up),
            ("--+goose up", Line::Up),
            ("-- +goose Down", Line::Down),
            ("-- +goose StatementBegin", Line::Drop),
            ("-- +goose NO TRANSACTION", Line::Drop),
            ("-- +goose ENVSUB ON", Line::Drop),
            ("-- goose Up", Line::Sql),
            ("SELECT 1; -- +goose Up", Line::Sql),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line), want, "{line}");
        }
        assert!(no_transaction("-- +goose NO TRANSACTION\n-- +goose Up\nVACUUM;"));
        assert!(!no_transaction("-- +goose Up\nSELECT 'NO TRANSACTION';"));
    }

    #[test]
    fn reads_the_goose_examples() {
        // pressly/goose examples/sql-migrations, shortened.
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                (
                    "00002_rename_root.sql",
                    "-- +goose Up\n-- +goose StatementBegin\nUPDATE users SET username='admin' WHERE username='root';\n\
                     -- +goose StatementEnd\n\n-- +goose Down\n-- +goose StatementBegin\n\
                     UPDATE users SET username='root' WHERE username='admin';\n-- +goose StatementEnd\n",
                ),
                (
                    "00001_create_users_table.sql",
                    "-- +goose Up\nCREATE TABLE users (id int NOT NULL PRIMARY KEY);\n\n-- +goose Down\nDROP TABLE users;\n",
                ),
                (
                    "00003_no_transaction.sql",
                    "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE post (id int);\n\n-- +goose Down\nDROP TABLE post;\n",
                ),
                ("00004_go_migration.go", "package main"),
            ],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.layout, crate::layout::Layout::Goose);
        let m = &f.migrations;
        assert_eq!(
            m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["00001_create_users_table", "00002_rename_root", "00003_no_transaction"]
        );
        assert_eq!(m[0].key, "1");
        assert_eq!(m[0].revert.as_deref(), Some("DROP TABLE users;\n"));
        assert_eq!(m[1].sql, "UPDATE users SET username='admin' WHERE username='root';\n");
        assert_eq!(m[2].online, Online::Marker(online::GOOSE_MARKER));
        assert_eq!(m[1].online, Online::No);
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "1_a.sql",
                "CREATE TABLE a ();\n",
                "1_a.sql:1: SQL before the \"-- +goose Up\"",
            ),
            (
                "1_a.sql",
                "-- just a comment\n",
                "1_a.sql:1: no \"-- +goose Up\" annotation",
            ),
            ("1_a.sql", "-- c\n\nSELECT 1;\n-- +goose Up\n", "1_a.sql:3: SQL before"),
            ("a.sql", "-- +goose Up\nSELECT 1;\n", "not a goose migration name"),
        ];
        for (name, text, want) in cases {
            let tmp = tempfile::tempdir().expect("tmp");
            testdir::write(tmp.path(), &[(name, text)]);
            let e = read(tmp.path()).expect_err(name);
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(want), "{e}");
        }
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("1_a.sql", "-- +goose Up\nSELECT 1;\n"),
                ("001_b.sql", "-- +goose Up\nSELECT 2;\n"),
            ],
        );
        assert!(read(tmp.path())
            .expect_err("dup")
            .to_string()
            .contains("duplicate version 1"));
    }
}
