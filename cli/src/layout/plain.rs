//! Plain ordered `.sql` files: every `*.sql` in the folder, in natural order
//! (`2_x.sql` before `10_y.sql`). Ids are the file names without `.sql`; the
//! history key is the leading number (for sqlx's `<version>_<name>.sql`), or
//! the id when there is none. Files whose leading numbers are equal
//! (`1_a.sql`, `01_b.sql`) are refused as duplicate versions.
//!
//! sqlx's simple migrations and Atlas's migration directories are folders of
//! this kind: a file starting with sqlx's `-- no-transaction`, or whose
//! directive header holds Atlas's `-- atlas:txmode none`, is online.

use super::online::{self, Online};
use super::problems::Problems;
use super::{file_name, golang_migrate, list, read_text, Migration};
use crate::error::CliError;
use crate::order::{cmp_digits, cmp_natural, leading_digits};
use std::path::Path;

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut out: Vec<Migration> = Vec::new();
    let mut problems = Problems::default();
    let mut files: Vec<_> = list(dir)?
        .into_iter()
        .filter(|p| !p.is_dir() && file_name(p).ends_with(".sql"))
        .collect();
    files.sort_by(|a, b| cmp_natural(&file_name(a), &file_name(b)));
    for p in files {
        let id = file_name(&p).trim_end_matches(".sql").to_string();
        let digits = leading_digits(&id);
        if !digits.is_empty() {
            if let Some(first) = out.iter().find(|m| {
                let d = leading_digits(&m.id);
                !d.is_empty() && cmp_digits(d, digits).is_eq()
            }) {
                problems.push(CliError::input_hint(
                    format!(
                        "duplicate version {}: {} and {}",
                        golang_migrate::key(digits),
                        first.source.display(),
                        p.display()
                    ),
                    "Plain files are ordered by their leading number; give each file its own.",
                ));
                continue;
            }
        }
        let key = if digits.is_empty() {
            id.clone()
        } else {
            golang_migrate::key(digits)
        };
        let Some(sql) = problems.keep(read_text(&p)) else {
            continue;
        };
        let online = if online::sqlx_no_transaction(&sql) {
            Online::Marker(online::SQLX_MARKER)
        } else if online::atlas_no_transaction(&sql) {
            Online::Marker(online::ATLAS_MARKER)
        } else {
            Online::No
        };
        out.push(Migration {
            online,
            ..Migration::versioned(id, sql, key, p)
        });
    }
    problems.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn natural_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("10_c.sql", "SELECT 10;"),
                ("2_b.sql", "SELECT 2;"),
                ("1_a.sql", "SELECT 1;"),
                ("notes.txt", "x"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        assert_eq!(
            m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["1_a", "2_b", "10_c"]
        );
        assert_eq!(m[2].key, "10");
    }

    #[test]
    fn sqlx_and_atlas_markers_make_changes_online() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                // sqlx migrate add -s: <timestamp>_<name>.sql
                (
                    "20240101000000_users.sql",
                    "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
                ),
                (
                    "20240102000000_users_email.sql",
                    "-- no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n",
                ),
            ],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.layout, crate::layout::Layout::Plain);
        assert_eq!(f.migrations[0].online, Online::No);
        assert_eq!(f.migrations[1].online, Online::Marker(online::SQLX_MARKER));

        // atlas migrate diff / new: <version>_<name>.sql next to atlas.sum.
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                (
                    "20240101000000_init.sql",
                    "-- Create \"users\" table\nCREATE TABLE \"users\" (\"id\" bigint);\n",
                ),
                (
                    "20240102000000_vacuum.sql",
                    "-- atlas:txmode none\n\n-- Reclaim space\nVACUUM (ANALYZE) \"users\";\n",
                ),
                ("atlas.sum", "h1:abc=\n20240101000000_init.sql h1:def=\n"),
            ],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.migrations.len(), 2);
        assert_eq!(f.migrations[1].online, Online::Marker(online::ATLAS_MARKER));

        // Atlas writes several statements under one txmode none; pg_deploy runs one per change.
        testdir::write(
            tmp.path(),
            &[(
                "20240103000000_indexes.sql",
                "-- atlas:txmode none\n\nCREATE INDEX CONCURRENTLY a ON t (a);\nCREATE INDEX CONCURRENTLY b ON t (b);\n",
            )],
        );
        let e = crate::layout::read_folder(tmp.path(), None).expect_err("two statements");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("20240103000000_indexes.sql: Atlas's"), "{e}");
        assert!(e.to_string().contains("it has 2"), "{e}");
    }

    #[test]
    fn duplicate_leading_numbers_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("1_a.sql", "SELECT 1;"), ("01_b.sql", "SELECT 2;")]);
        let e = read(tmp.path()).expect_err("dup");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("duplicate version 1"));
    }
}
