//! dbmate: `<version>_<name>.sql` with a `-- migrate:up` section and an
//! optional `-- migrate:down` section (the change's revert). The version is the
//! leading digits (often a timestamp) and orders numerically.
//!
//! Ids are the file name without `.sql`; the history key is the version
//! without leading zeros. `-- migrate:up transaction:false` makes the change
//! online (see `online`).

use super::online::{self, Online};
use super::problems::Problems;
use super::sections::Line;
use super::{file_name, list, read_text, Migration};
use crate::error::CliError;
use crate::order::cmp_digits;
use std::path::Path;

pub fn is_up_marker(line: &str) -> bool {
    is_marker(line, "up")
}

fn is_marker(line: &str, which: &str) -> bool {
    marker_options(line, which).is_some()
}

/// The options after a `-- migrate:<which>` marker ("" when none), or None
/// when the line is not that marker.
fn marker_options<'a>(line: &'a str, which: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("migrate:")?.strip_prefix(which)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// Whether an up marker carries dbmate's `transaction:false` option: the up
/// section then runs outside a transaction, so the change is online.
pub fn up_without_transaction(text: &str) -> bool {
    text.lines().any(|l| {
        marker_options(l, "up").is_some_and(|options| options.split_whitespace().any(|o| o == "transaction:false"))
    })
}

/// Splits a dbmate file into its up and down sections (text between the
/// markers, surrounding blank lines removed). None if there is no up marker.
pub fn sections(text: &str) -> Option<(String, Option<String>)> {
    let (up, down, _) = super::sections::split(text, |l| {
        if is_marker(l, "up") {
            Line::Up
        } else if is_marker(l, "down") {
            Line::Down
        } else {
            Line::Sql
        }
    });
    Some((up?, down))
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut out: Vec<(String, Migration)> = Vec::new();
    let mut problems = Problems::default();
    for p in list(dir)? {
        let name = file_name(&p);
        if p.is_dir() || !name.ends_with(".sql") {
            continue;
        }
        let Some((id, version)) = problems.keep(super::numbered(
            &p,
            "dbmate",
            "dbmate names are <version>_<name>.sql, the version being digits (usually a timestamp).",
        )) else {
            continue;
        };
        if let Some((_, first)) = out.iter().find(|(v, _)| cmp_digits(v, &version).is_eq()) {
            problems.push(CliError::input(format!(
                "duplicate version {}: {} and {}",
                super::golang_migrate::key(&version),
                first.source.display(),
                p.display()
            )));
            continue;
        }
        let Some(text) = problems.keep(read_text(&p)) else {
            continue;
        };
        let Some((up, down)) = sections(&text) else {
            problems.push(CliError::input_hint(
                format!("{}:1: no \"-- migrate:up\" section", p.display()),
                "dbmate files start with a \"-- migrate:up\" line; the down part follows \"-- migrate:down\".",
            ));
            continue;
        };
        let online = if up_without_transaction(&text) {
            Online::Marker(online::DBMATE_MARKER)
        } else {
            Online::No
        };
        out.push((
            version.clone(),
            Migration {
                revert: down,
                online,
                ..Migration::versioned(id, up, super::golang_migrate::key(&version), p)
            },
        ));
    }
    out.sort_by(|a, b| cmp_digits(&a.0, &b.0));
    problems.finish(out.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn splits_sections() {
        let text = "-- migrate:up\nCREATE TABLE a (id int);\n\n-- migrate:down\nDROP TABLE a;\n";
        assert_eq!(
            sections(text),
            Some(("CREATE TABLE a (id int);\n".into(), Some("DROP TABLE a;\n".into())))
        );
        let text = "-- migrate:up transaction:false\nSELECT 1;\n-- migrate:down\n\n";
        assert_eq!(sections(text), Some(("SELECT 1;\n".into(), None)));
        let text = "-- migrate:down\nDROP TABLE a;\n-- migrate:up\nCREATE TABLE a ();\n";
        assert_eq!(
            sections(text),
            Some(("CREATE TABLE a ();\n".into(), Some("DROP TABLE a;\n".into())))
        );
        assert_eq!(sections("SELECT 1;"), None);
        assert!(!is_up_marker("-- migrate:upper"));
        assert!(is_up_marker("--migrate:up"));
    }

    #[test]
    fn reads_in_numeric_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("10_b.sql", "-- migrate:up\nSELECT 10;\n"),
                ("9_a.sql", "-- migrate:up\nSELECT 9;\n-- migrate:down\nSELECT -9;\n"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        assert_eq!(m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["9_a", "10_b"]);
        assert_eq!(m[0].revert.as_deref(), Some("SELECT -9;\n"));
        assert_eq!(m[1].key, "10");
    }

    #[test]
    fn transaction_false_makes_the_change_online() {
        // As `dbmate new` writes it, with the option dbmate documents for CREATE INDEX CONCURRENTLY.
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                (
                    "20240102120000_users.sql",
                    "-- migrate:up\nCREATE TABLE users (id bigint PRIMARY KEY, email text);\n\n\
                     -- migrate:down\nDROP TABLE users;\n",
                ),
                (
                    "20240103090000_users_email_idx.sql",
                    "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n\n\
                     -- migrate:down transaction:false\nDROP INDEX CONCURRENTLY users_email_idx;\n",
                ),
            ],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.migrations[0].online, Online::No);
        assert_eq!(f.migrations[1].online, Online::Marker(online::DBMATE_MARKER));
        assert_eq!(
            f.migrations[1].sql,
            "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n"
        );
        assert!(up_without_transaction("--migrate:up   transaction:false\nSELECT 1;"));
        assert!(!up_without_transaction(
            "-- migrate:up\n-- migrate:down transaction:false\n"
        ));
        assert!(!up_without_transaction("-- migrate:up transaction:true\nSELECT 1;"));
        // Several statements without a transaction cannot be one online change.
        testdir::write(
            tmp.path(),
            &[(
                "20240104000000_two.sql",
                "-- migrate:up transaction:false\nALTER TYPE mood ADD VALUE 'meh';\nUPDATE t SET m = 'meh';\n",
            )],
        );
        let e = crate::layout::read_folder(tmp.path(), None).expect_err("two statements");
        assert!(e.to_string().contains("20240104000000_two.sql: dbmate's"), "{e}");
        assert!(e.to_string().contains("one file per statement"), "{e}");
    }

    #[test]
    fn missing_up_section_is_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("1_a.sql", "SELECT 1;\n")]);
        assert!(read(tmp.path()).expect_err("no up").to_string().contains("migrate:up"));
    }
}
