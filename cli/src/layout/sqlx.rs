//! sqlx: `<version>_<description>.sql` (simple) or `<version>_<description>.up.sql`
//! and `.down.sql` (reversible). These are the plain and golang-migrate
//! readings, which already know sqlx's `-- no-transaction` marker and
//! numeric versions; `--layout sqlx` picks the right one. Detection reads
//! sqlx folders as plain or golang-migrate, with the same result.

use super::{file_name, golang_migrate, list, plain, Migration};
use crate::error::CliError;
use std::path::Path;

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let reversible = list(dir)?.iter().any(|p| {
        let n = file_name(p);
        n.ends_with(".up.sql") || n.ends_with(".down.sql")
    });
    if reversible {
        golang_migrate::read(dir)
    } else {
        plain::read(dir)
    }
}

#[cfg(test)]
mod tests {
    use crate::layout::online::{self, Online};
    use crate::layout::{read_folder, testdir, Layout};

    #[test]
    fn simple_and_reversible() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], Option<&'a str>);
        let cases: &[Case] = &[
            (
                &[
                    ("20200718111257_todos.sql", "CREATE TABLE todos (id bigint);"),
                    ("2_b.sql", "SELECT 2;"),
                ],
                &["2_b", "20200718111257_todos"],
                None,
            ),
            (
                &[
                    ("20200718111257_todos.up.sql", "CREATE TABLE todos (id bigint);"),
                    ("20200718111257_todos.down.sql", "DROP TABLE todos;"),
                ],
                &["20200718111257_todos"],
                Some("DROP TABLE todos;"),
            ),
        ];
        for (files, ids, revert) in cases {
            let tmp = tempfile::tempdir().expect("tmp");
            testdir::write(tmp.path(), files);
            let f = read_folder(tmp.path(), Some(Layout::Sqlx)).expect("read");
            assert_eq!(f.migrations.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), *ids);
            assert_eq!(f.migrations.last().and_then(|m| m.revert.as_deref()), *revert);
        }
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[(
                "1_idx.sql",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
            )],
        );
        let f = read_folder(tmp.path(), Some(Layout::Sqlx)).expect("read");
        assert_eq!(f.migrations[0].online, Online::Marker(online::SQLX_MARKER));
    }
}
