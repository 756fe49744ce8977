//! Bad input gathered across a whole folder, so one run names every bad file
//! name, duplicate and unreadable file instead of stopping at the first.

use crate::error::CliError;

#[derive(Debug, Default)]
pub struct Problems(Vec<CliError>);

impl Problems {
    pub fn push(&mut self, e: CliError) {
        self.0.push(e);
    }

    /// The value, or None with its error kept for the report.
    pub fn keep<T>(&mut self, r: Result<T, CliError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// `value`, or every problem as one error.
    pub fn finish<T>(self, value: T) -> Result<T, CliError> {
        match CliError::all_inputs(self.0) {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_error_and_flattens_nested_reports() {
        let mut p = Problems::default();
        assert_eq!(p.keep(Ok::<_, CliError>(1)), Some(1));
        assert_eq!(p.keep::<i32>(Err(CliError::input("a.sql: bad"))), None);
        let nested = CliError::all_inputs(vec![CliError::input("b.sql:1: x"), CliError::input("b.sql:4: y")]);
        p.push(nested.expect("two"));
        let e = p.finish(()).expect_err("three");
        assert_eq!(
            e.to_string(),
            "bad input: 3 problems:\n  a.sql: bad\n  b.sql:1: x\n  b.sql:4: y"
        );
        assert_eq!(Problems::default().finish(7), Ok(7));
    }

    /// Each layout, a folder with several different bad names: one error
    /// names them all, and exits 2.
    #[test]
    fn every_bad_name_in_a_folder_is_reported_at_once() {
        use crate::layout::{read_folder, testdir, Layout};
        type Case<'a> = (Layout, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let goose = "-- +goose Up\nSELECT 1;\n";
        let cases: &[Case] = &[
            (
                Layout::Diesel,
                &[
                    ("x_y/up.sql", "SELECT 1;"),
                    ("2019-01-01-000000_a/up.sql", "SELECT 1;"),
                    ("20190101000000_b/up.sql", "SELECT 2;"),
                    ("oops/up.sql", "SELECT 3;"),
                ],
                &[
                    "x_y is not a diesel migration folder name",
                    "oops is not a diesel migration folder name",
                    "duplicate version 20190101000000",
                ],
            ),
            (
                Layout::Goose,
                &[
                    ("add_users.sql", goose),
                    ("1_a.sql", goose),
                    ("00001_b.sql", goose),
                    ("2_c.sql", "SELECT 1;\n"),
                    ("3_d.sql", goose),
                    ("03_e.sql", goose),
                ],
                &[
                    "add_users.sql is not a goose migration name",
                    "duplicate version 1:",
                    "duplicate version 3:",
                    "2_c.sql:1: SQL before",
                ],
            ),
            (
                Layout::Pop,
                &[
                    ("1_a.postgres.up.sql", "SELECT 1;"),
                    ("1_a.postgres.autocommit.up.sql", "SELECT 1;"),
                    ("2_b.up.sql", "SELECT 2;"),
                    ("2_b.all.up.sql", "SELECT 2;"),
                    ("3_c.oracle.up.sql", "SELECT 3;"),
                    ("x.up.sql", "SELECT 4;"),
                ],
                &[
                    "two files for version 1 (postgres)",
                    "two files for version 2 (any dialect)",
                    "3_c.oracle.up.sql is not a pop migration name",
                    "x.up.sql is not a pop migration name",
                ],
            ),
            (
                Layout::Sqlx,
                &[
                    ("1_a.up.sql", "SELECT 1;"),
                    ("01_b.up.sql", "SELECT 1;"),
                    ("b_2.up.sql", "SELECT 2;"),
                    ("7_orphan.down.sql", "SELECT 7;"),
                ],
                &[
                    "duplicate version 1:",
                    "b_2.up.sql is not a golang-migrate migration name",
                    "7_orphan.down.sql has no matching .up.sql",
                ],
            ),
            (
                Layout::Plain,
                &[
                    ("1_a.sql", "SELECT 1;"),
                    ("01_b.sql", "SELECT 1;"),
                    ("2_c.sql", "SELECT 2;"),
                    ("002_d.sql", "SELECT 2;"),
                ],
                &["duplicate version 1:", "duplicate version 2:"],
            ),
            (
                Layout::Dbmate,
                &[
                    ("x.sql", "-- migrate:up\nSELECT 1;\n"),
                    ("1_a.sql", "SELECT 1;\n"),
                    ("2_b.sql", "-- migrate:up\nSELECT 1;\n"),
                    ("02_c.sql", "-- migrate:up\nSELECT 1;\n"),
                ],
                &[
                    "x.sql is not a dbmate migration name",
                    "1_a.sql:1: no \"-- migrate:up\" section",
                    "duplicate version 2:",
                ],
            ),
            (
                Layout::Flyway,
                &[
                    ("V1__a.sql", "SELECT 1;"),
                    ("V1.0__b.sql", "SELECT 1;"),
                    ("notes.sql", "SELECT 1;"),
                    ("U9__gone.sql", "SELECT 1;"),
                ],
                &[
                    "duplicate version 1:",
                    "notes.sql is not a Flyway migration name",
                    "U9__gone.sql undoes version 9",
                ],
            ),
            (
                Layout::Liquibase,
                &[
                    (
                        "a.sql",
                        "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n--changeset nobody\nSELECT 2;\n",
                    ),
                    ("b.sql", "--liquibase formatted sql\n--changeset a:2\nSELECT 1;\n"),
                    ("d.sql", "--liquibase formatted sql\n--changeset a:2\nSELECT 1;\n"),
                    ("c.sql", "SELECT 3;\n"),
                ],
                &[
                    "a.sql:4: the changeset has no id",
                    "duplicate changeset a:2: ",
                    "c.sql:1: not a Liquibase formatted SQL file",
                ],
            ),
            (
                Layout::Versioned,
                &[
                    ("v1.0/a.sql", "SELECT 1;"),
                    ("v1/b.sql", "SELECT 1;"),
                    ("v2.0/manifest.json", "{\"SchemaUpdateCqlFiles\": [\"gone.sql\"]}"),
                    ("v2.0/c.sql", "SELECT 2;"),
                ],
                &["duplicate version 1: ", "lists gone.sql, which is not in the folder"],
            ),
        ];
        for (layout, files, wanted) in cases {
            let tmp = tempfile::tempdir().expect("tmp");
            testdir::write(tmp.path(), files);
            let e = read_folder(tmp.path(), Some(*layout)).expect_err("bad names");
            assert_eq!(e.exit_code(), 2, "{layout:?}");
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("bad input: {} problems:", wanted.len())),
                "{layout:?}: {text}"
            );
            for w in *wanted {
                assert!(text.contains(w), "{layout:?}: no {w:?} in {text}");
            }
        }
    }
}
