//! golang-migrate: `<version>_<title>.up.sql` and `<version>_<title>.down.sql`
//! (also sqlx's reversible migrations). The version is a number of any length
//! (often a timestamp) and orders numerically; the down file becomes the
//! change's revert.
//!
//! Ids are the file name without `.up.sql` (`0001_create_users`); the history
//! key is the version without leading zeros.
//!
//! golang-migrate has no "no transaction" marker: its PostgreSQL driver sends
//! a file as one query, which runs outside a transaction block only when it
//! is one statement. So an up file whose only statement cannot run in a
//! transaction block (CREATE INDEX CONCURRENTLY, …) is online, and a file
//! mixing one with other statements is bad input (see `online`). An up file
//! starting with sqlx's `-- no-transaction` is online too.

use super::online::{self, Online};
use super::problems::Problems;
use super::{file_name, list, read_text, Migration};
use crate::error::CliError;
use crate::order::{cmp_digits, leading_digits, strip_zeros};
use std::path::Path;

/// (version digits, id, is_up) for `<digits>_<title>.up.sql` / `.down.sql`.
pub fn parse_name(name: &str) -> Option<(String, String, bool)> {
    let (stem, up) = if let Some(s) = name.strip_suffix(".up.sql") {
        (s, true)
    } else {
        (name.strip_suffix(".down.sql")?, false)
    };
    let digits = leading_digits(stem);
    if digits.is_empty() {
        return None;
    }
    let rest = &stem[digits.len()..];
    if !(rest.is_empty() || rest.starts_with('_')) {
        return None;
    }
    Some((digits.to_string(), stem.to_string(), up))
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut ups: Vec<(String, Migration)> = Vec::new();
    let mut downs: Vec<(String, String, std::path::PathBuf)> = Vec::new();
    let mut problems = Problems::default();
    for p in list(dir)? {
        let name = file_name(&p);
        if p.is_dir() || !name.ends_with(".sql") {
            continue;
        }
        let Some((version, id, up)) = parse_name(&name) else {
            problems.push(CliError::input_hint(
                format!("{} is not a golang-migrate migration name", p.display()),
                "golang-migrate names are <version>_<title>.up.sql and <version>_<title>.down.sql.",
            ));
            continue;
        };
        if up {
            if let Some((_, first)) = ups.iter().find(|(v, _)| cmp_digits(v, &version).is_eq()) {
                problems.push(CliError::input_hint(
                    format!(
                        "duplicate version {}: {} and {}",
                        strip_zeros(&version),
                        first.source.display(),
                        p.display()
                    ),
                    "Each version may be used once (1 and 0001 are the same version).",
                ));
                continue;
            }
            let Some(sql) = problems.keep(read_text(&p)) else {
                continue;
            };
            // sqlx's reversible migrations share this layout, and its marker.
            let online = if online::sqlx_no_transaction(&sql) {
                Online::Marker(online::SQLX_MARKER)
            } else {
                Online::No
            };
            ups.push((
                version.clone(),
                Migration {
                    online,
                    ..Migration::versioned(id, sql, key(&version), p)
                },
            ));
        } else {
            if downs.iter().any(|(v, _, _)| cmp_digits(v, &version).is_eq()) {
                problems.push(CliError::input(format!(
                    "duplicate down migration for version {}: {}",
                    strip_zeros(&version),
                    p.display()
                )));
                continue;
            }
            if let Some(sql) = problems.keep(read_text(&p)) {
                downs.push((version, sql, p));
            }
        }
    }
    ups.sort_by(|a, b| cmp_digits(&a.0, &b.0));
    for (version, sql, p) in downs {
        match ups.iter_mut().find(|(v, _)| cmp_digits(v, &version).is_eq()) {
            // An empty down file means "irreversible"; leave revert unset.
            Some((_, m)) => m.revert = (!sql.trim().is_empty()).then_some(sql),
            None => problems.push(CliError::input(format!(
                "{} has no matching .up.sql migration for version {}",
                p.display(),
                strip_zeros(&version)
            ))),
        }
    }
    problems.finish(ups.into_iter().map(|(_, m)| m).collect())
}

/// The history key of a numeric version: digits without leading zeros ("0" for zero).
pub fn key(digits: &str) -> String {
    let s = strip_zeros(digits);
    if s.is_empty() {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn numeric_order_and_down_as_revert() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("10_ten.up.sql", "SELECT 10;"),
                ("9_nine.up.sql", "SELECT 9;"),
                ("9_nine.down.sql", "SELECT -9;"),
                ("10_ten.down.sql", ""),
                ("README.md", "ignored"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        assert_eq!(
            m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["9_nine", "10_ten"]
        );
        assert_eq!(m[0].revert.as_deref(), Some("SELECT -9;"));
        assert_eq!(m[1].revert, None);
        assert_eq!(m[1].key, "10");
    }

    #[test]
    fn duplicate_versions_and_orphans_are_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[("1_a.up.sql", "SELECT 1;"), ("001_b.up.sql", "SELECT 2;")],
        );
        let e = read(tmp.path()).expect_err("dup");
        assert!(e.to_string().contains("duplicate version 1"), "{e}");
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[("1_a.up.sql", "SELECT 1;"), ("2_b.down.sql", "SELECT 2;")],
        );
        assert!(read(tmp.path())
            .expect_err("orphan")
            .to_string()
            .contains("no matching .up.sql"));
    }

    #[test]
    fn a_lone_concurrent_index_is_online_and_a_mixed_file_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                (
                    "000001_create_users.up.sql",
                    "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
                ),
                ("000001_create_users.down.sql", "DROP TABLE users;\n"),
                (
                    "000002_users_email_idx.up.sql",
                    "-- Built without blocking writes; golang-migrate sends this file alone.\n\
                     CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n",
                ),
                (
                    "000002_users_email_idx.down.sql",
                    "DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;\n",
                ),
                (
                    "000003_note.up.sql",
                    "COMMENT ON TABLE users IS 'see CREATE INDEX CONCURRENTLY below'; /* VACUUM later */\n\
                     SELECT $$ VACUUM $$;\n",
                ),
                // sqlx reversible migrations use this layout too.
                ("000004_vacuum.up.sql", "-- no-transaction\nVACUUM (ANALYZE) users;\n"),
            ],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        let online: Vec<Online> = f.migrations.iter().map(|m| m.online).collect();
        assert_eq!(
            online,
            [
                Online::No,
                Online::Needed("CREATE INDEX CONCURRENTLY"),
                Online::No,
                Online::Marker(online::SQLX_MARKER)
            ]
        );
        testdir::write(
            tmp.path(),
            &[(
                "000005_email_not_null.up.sql",
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\nDROP INDEX CONCURRENTLY users_email_idx;\n",
            )],
        );
        let e = crate::layout::read_folder(tmp.path(), None).expect_err("mixed");
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.contains(
                "000005_email_not_null.up.sql: DROP INDEX CONCURRENTLY (line 2) cannot run inside a transaction block"
            ),
            "{text}"
        );
        assert!(text.contains("Split the file"), "{text}");
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_name("20240101_x.up.sql"),
            Some(("20240101".into(), "20240101_x".into(), true))
        );
        assert_eq!(parse_name("3.down.sql"), Some(("3".into(), "3".into(), false)));
        assert_eq!(parse_name("x_1.up.sql"), None);
        assert_eq!(parse_name("1x.up.sql"), None);
        assert_eq!(key("000"), "0");
    }
}
