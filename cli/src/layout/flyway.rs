//! Flyway: `V<version>__<description>.sql` (versioned), `R__<description>.sql`
//! (repeatable), `U<version>__<description>.sql` (undo, becomes the revert of
//! the versioned migration with the same version). Sub-folders are read too,
//! as Flyway does. Versions compare part by part (1.2 < 1.10).
//!
//! Ids are the file name without `.sql` (`V1.2__add_users`, `R__views`); the
//! history key is the canonical version (`1.2`) or `R:<description>`.
//!
//! `executeInTransaction=false` in the script's `.sql.conf` file makes the
//! change online. Flyway also runs a script outside a transaction when its
//! PostgreSQL parser finds a statement that cannot run in one (CREATE INDEX
//! CONCURRENTLY, VACUUM, …); the shared rule of `online` does the same.

use super::online::{self, Online};
use super::problems::Problems;
use super::{file_name, read_text, Migration};
use crate::error::CliError;
use crate::order::FlywayVersion;
use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq, Eq)]
pub enum Name {
    Versioned { version: String, description: String },
    Undo { version: String },
    Repeatable { description: String },
}

/// Parses a Flyway file name; None if it is not one.
pub fn parse_name(name: &str) -> Option<Name> {
    let stem = name.strip_suffix(".sql")?;
    let (head, description) = stem.split_once("__")?;
    let mut chars = head.chars();
    let prefix = chars.next()?;
    let version = chars.as_str();
    match prefix {
        'R' if version.is_empty() && !description.is_empty() => Some(Name::Repeatable {
            description: description.to_string(),
        }),
        'V' | 'U' if FlywayVersion::parse(version).is_some() => {
            if prefix == 'V' {
                Some(Name::Versioned {
                    version: version.to_string(),
                    description: description.to_string(),
                })
            } else {
                Some(Name::Undo {
                    version: version.to_string(),
                })
            }
        }
        _ => None,
    }
}

pub fn is_flyway_name(name: &str) -> bool {
    parse_name(name).is_some()
}

/// Flyway's script configuration: `executeInTransaction=false` in the file
/// `<script>.conf` next to the script makes the change online. Other
/// settings of that file (encoding, placeholderReplacement, shouldExecute)
/// are not read.
pub fn script_online(script: &Path) -> Result<Online, CliError> {
    let conf = script.with_file_name(format!("{}.conf", file_name(script)));
    if !conf.is_file() {
        return Ok(Online::No);
    }
    for line in read_text(&conf)?.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "executeInTransaction" || line.trim_start().starts_with(['#', '!']) {
            continue;
        }
        return match value.trim().to_ascii_lowercase().as_str() {
            "false" => Ok(Online::Marker(online::FLYWAY_MARKER)),
            "true" => Ok(Online::No),
            other => Err(CliError::input_hint(
                format!(
                    "{}: executeInTransaction is \"{other}\", not true or false",
                    conf.display()
                ),
                "Flyway refuses any other value too.",
            )),
        };
    }
    Ok(Online::No)
}

/// Whether the comment lines at the top of a script hold
/// `-- flyway:executeInTransaction=false`: a spelling seen in the wild that
/// Flyway itself does not read (it reads only the .conf file).
pub fn has_comment_setting(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("--"))
        .filter_map(|l| l.strip_prefix("--"))
        .any(|c| c.trim().eq_ignore_ascii_case("flyway:executeInTransaction=false"))
}

/// Flyway's description as stored in its history: underscores become spaces.
pub fn description_key(description: &str) -> String {
    format!("R:{}", description.replace('_', " "))
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let files = super::sql_files_deep(dir)?;
    let mut versioned: Vec<(FlywayVersion, Migration)> = Vec::new();
    let mut repeatable: Vec<Migration> = Vec::new();
    let mut undo: Vec<(FlywayVersion, String, PathBuf)> = Vec::new();
    let mut problems = Problems::default();
    for p in files {
        let name = file_name(&p);
        let id = name.trim_end_matches(".sql").to_string();
        let version =
            |v: &str| FlywayVersion::parse(v).ok_or_else(|| CliError::input(format!("bad version in {}", p.display())));
        match parse_name(&name) {
            None => problems.push(CliError::input_hint(
                format!("{} is not a Flyway migration name", p.display()),
                "Flyway names are V<version>__<description>.sql, R__<description>.sql or U<version>__<description>.sql; move other .sql files out of the folder.",
            )),
            Some(Name::Versioned { version: text, .. }) => {
                let Some(v) = problems.keep(version(&text)) else {
                    continue;
                };
                if let Some((_, first)) = versioned.iter().find(|(w, _)| *w == v) {
                    problems.push(CliError::input_hint(
                        format!(
                            "duplicate version {}: {} and {}",
                            v.canonical(),
                            first.source.display(),
                            p.display()
                        ),
                        "Each Flyway version may be used once (1, 1.0 and 01 are the same version).",
                    ));
                    continue;
                }
                let (Some(sql), Some(online)) = (problems.keep(read_text(&p)), problems.keep(script_online(&p))) else {
                    continue;
                };
                versioned.push((
                    v.clone(),
                    Migration {
                        online,
                        ..Migration::versioned(id, sql, v.canonical(), p)
                    },
                ));
            }
            Some(Name::Repeatable { description }) => {
                if let Some(first) = repeatable.iter().find(|m| m.id == id) {
                    problems.push(CliError::input(format!(
                        "duplicate repeatable migration {id}: {} and {}",
                        first.source.display(),
                        p.display()
                    )));
                    continue;
                }
                let (Some(sql), Some(online)) = (problems.keep(read_text(&p)), problems.keep(script_online(&p))) else {
                    continue;
                };
                repeatable.push(Migration {
                    repeatable: true,
                    online,
                    ..Migration::versioned(id, sql, description_key(&description), p)
                });
            }
            Some(Name::Undo { version: text }) => {
                let Some(v) = problems.keep(version(&text)) else {
                    continue;
                };
                if let Some((_, _, first)) = undo.iter().find(|(w, _, _)| *w == v) {
                    problems.push(CliError::input(format!(
                        "duplicate undo version {}: {} and {}",
                        v.canonical(),
                        first.display(),
                        p.display()
                    )));
                    continue;
                }
                if let Some(sql) = problems.keep(read_text(&p)) {
                    undo.push((v, sql, p));
                }
            }
        }
    }
    versioned.sort_by(|a, b| a.0.cmp(&b.0));
    for (v, sql, p) in undo {
        match versioned.iter_mut().find(|(w, _)| *w == v) {
            Some((_, m)) => m.revert = Some(sql),
            None => problems.push(CliError::input(format!(
                "{} undoes version {}, which has no V{}__*.sql migration",
                p.display(),
                v.canonical(),
                v.canonical()
            ))),
        }
    }
    // Flyway runs repeatables after all versioned migrations, ordered by description.
    repeatable.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out: Vec<Migration> = versioned.into_iter().map(|(_, m)| m).collect();
    out.extend(repeatable);
    problems.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn names() {
        assert_eq!(
            parse_name("V1.2__add_users.sql"),
            Some(Name::Versioned {
                version: "1.2".into(),
                description: "add_users".into()
            })
        );
        assert_eq!(
            parse_name("R__views.sql"),
            Some(Name::Repeatable {
                description: "views".into()
            })
        );
        assert_eq!(parse_name("U3__drop.sql"), Some(Name::Undo { version: "3".into() }));
        assert!(parse_name("V1_2__x.sql").is_some());
        for bad in [
            "V1.2_x.sql",
            "Vx__a.sql",
            "R1__a.sql",
            "V1__a.txt",
            "afterMigrate.sql",
            "R__.sql",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn orders_by_version_part_by_part_then_repeatables() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("V1.10__ten.sql", "SELECT 10;"),
                ("V1.2__two.sql", "SELECT 2;"),
                ("sub/V1.9__nine.sql", "SELECT 9;"),
                ("R__b_view.sql", "SELECT 'b';"),
                ("R__a_view.sql", "SELECT 'a';"),
                ("U1.2__two.sql", "SELECT -2;"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        let ids: Vec<&str> = m.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["V1.2__two", "V1.9__nine", "V1.10__ten", "R__a_view", "R__b_view"]);
        assert_eq!(m[0].revert.as_deref(), Some("SELECT -2;"));
        assert_eq!(m[0].key, "1.2");
        assert!(m[3].repeatable);
        assert_eq!(m[3].key, "R:a view");
    }

    #[test]
    fn duplicate_versions_are_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("V1__a.sql", "SELECT 1;"), ("V1.0__b.sql", "SELECT 2;")]);
        let e = read(tmp.path()).expect_err("dup");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("duplicate version 1"), "{e}");
    }

    #[test]
    fn execute_in_transaction_false_makes_the_change_online() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                (
                    "V1__create_users.sql",
                    "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
                ),
                (
                    "V2__users_email_idx.sql",
                    "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
                ),
                (
                    "V2__users_email_idx.sql.conf",
                    "# Flyway script configuration\nencoding=UTF-8\nexecuteInTransaction=false\n",
                ),
                ("V3__mood.sql", "ALTER TYPE mood ADD VALUE 'meh';\n"),
                ("V3__mood.sql.conf", "executeInTransaction = FALSE\n"),
                ("V4__plain.sql", "SELECT 1;\n"),
                (
                    "V4__plain.sql.conf",
                    "# executeInTransaction=false\nexecuteInTransaction=true\n",
                ),
                // Flyway's own detection: a lone VACUUM runs outside a transaction without a .conf.
                ("R__vacuum.sql", "VACUUM (ANALYZE) users;\n"),
            ],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        let online: Vec<(&str, Online)> = f.migrations.iter().map(|m| (m.id.as_str(), m.online)).collect();
        assert_eq!(
            online,
            [
                ("V1__create_users", Online::No),
                ("V2__users_email_idx", Online::Marker(online::FLYWAY_MARKER)),
                ("V3__mood", Online::Marker(online::FLYWAY_MARKER)),
                ("V4__plain", Online::No),
                ("R__vacuum", Online::Needed("VACUUM")),
            ]
        );
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);

        testdir::write(
            tmp.path(),
            &[
                ("V5__bad.sql", "SELECT 1;"),
                ("V5__bad.sql.conf", "executeInTransaction=no\n"),
            ],
        );
        let e = crate::layout::read_folder(tmp.path(), None).expect_err("bad value");
        assert!(e.to_string().contains("executeInTransaction is \"no\""), "{e}");
    }

    #[test]
    fn the_comment_spelling_is_not_a_setting() {
        // Flyway reads script settings from the .conf file only: this ran in a transaction.
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[(
                "V1__mood.sql",
                "-- flyway:executeInTransaction=false\n\nALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh';\n",
            )],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.migrations[0].online, Online::No);
        assert_eq!(f.warnings.len(), 1);
        assert!(
            f.warnings[0].contains("V1__mood.sql: Flyway does not read"),
            "{:?}",
            f.warnings
        );
        assert!(f.warnings[0].contains("V1__mood.sql.conf"), "{:?}", f.warnings);
        // With a statement Flyway runs outside a transaction anyway, it is online and needs no warning.
        testdir::write(
            tmp.path(),
            &[(
                "V1__mood.sql",
                "-- flyway:executeInTransaction=false\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
            )],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.migrations[0].online, Online::Needed("CREATE INDEX CONCURRENTLY"));
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn stray_files_and_orphan_undos_are_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("V1__a.sql", "SELECT 1;"), ("notes.sql", "x")]);
        assert!(read(tmp.path())
            .expect_err("stray")
            .to_string()
            .contains("not a Flyway migration name"));
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("V1__a.sql", "SELECT 1;"), ("U2__b.sql", "SELECT 2;")]);
        assert!(read(tmp.path())
            .expect_err("orphan")
            .to_string()
            .contains("undoes version 2"));
    }
}
