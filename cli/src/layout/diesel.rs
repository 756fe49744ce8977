//! diesel: one folder per migration, `<timestamp>_<name>/up.sql` and
//! `down.sql` (the change's revert). The version is the part before the first
//! `_` without its dashes (`2019-02-26-002946` → `20190226002946`; newer
//! diesel writes `2024-01-01-000000-0000`), and versions order as strings, as
//! diesel orders them.
//!
//! Ids are the folder names; the history key is the version as
//! `__diesel_schema_migrations` stores it. `run_in_transaction = false` in the
//! folder's `metadata.toml` makes the change online.

use super::online::{self, Online};
use super::problems::Problems;
use super::{file_name, list, ordered, read_text, Migration};
use crate::error::CliError;
use std::path::{Path, PathBuf};

/// The version diesel stores for a migration folder name; None when the
/// name does not start with one (digits and dashes before a `_`).
pub fn version(folder: &str) -> Option<String> {
    let (head, _) = folder.split_once('_').unwrap_or((folder, ""));
    let ok = !head.is_empty()
        && head.starts_with(|c: char| c.is_ascii_digit())
        && head.chars().all(|c| c.is_ascii_digit() || c == '-');
    ok.then(|| head.replace('-', ""))
}

/// Whether `metadata.toml` says `run_in_transaction = false`.
fn metadata_online(dir: &Path) -> Result<Online, CliError> {
    let meta = dir.join("metadata.toml");
    if !meta.is_file() {
        return Ok(Online::No);
    }
    for line in read_text(&meta)?.lines() {
        let line = line.split('#').next().unwrap_or_default();
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == "run_in_transaction" && v.trim() == "false" {
                return Ok(Online::Marker(online::DIESEL_MARKER));
            }
        }
    }
    Ok(Online::No)
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut out = Vec::new();
    let mut problems = Problems::default();
    for p in list(dir)? {
        if !p.is_dir() {
            continue;
        }
        let id = file_name(&p);
        let up = p.join("up.sql");
        if !up.is_file() {
            // diesel's own folder also holds helpers (schema.rs, README…).
            continue;
        }
        let Some(version) = version(&id) else {
            problems.push(CliError::input_hint(
                format!("{} is not a diesel migration folder name", p.display()),
                "diesel names are <timestamp>_<name>, e.g. 2019-02-26-002946_create_user.",
            ));
            continue;
        };
        if let Some(m) = problems.keep(read_one(&p, id, &version, up)) {
            out.push((version, m));
        }
    }
    let out = problems.keep(ordered(
        out,
        "version",
        String::clone,
        "diesel versions are the folder names' timestamps; give each its own.",
    ));
    problems.finish(out.unwrap_or_default())
}

fn read_one(folder: &Path, id: String, version: &str, up: PathBuf) -> Result<Migration, CliError> {
    let down = folder.join("down.sql");
    let revert = if down.is_file() {
        Some(read_text(&down)?).filter(|s| !s.trim().is_empty())
    } else {
        None
    };
    Ok(Migration {
        revert,
        online: metadata_online(folder)?,
        ..Migration::versioned(id, read_text(&up)?, version.to_string(), up)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn versions() {
        let cases = [
            ("00000000000000_diesel_initial_setup", Some("00000000000000")),
            ("2019-02-26-002946_create_user", Some("20190226002946")),
            ("2024-01-01-000000-0000_add_x", Some("202401010000000000")),
            ("20240101_x", Some("20240101")),
            ("create_user", None),
            ("-1_x", None),
        ];
        for (name, want) in cases {
            assert_eq!(version(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn folders_in_string_order_with_down_and_metadata() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("2024-01-01-000000-0000_new/up.sql", "SELECT 3;"),
                ("2019-02-26-002946_user/up.sql", "CREATE TABLE u (id int);"),
                ("2019-02-26-002946_user/down.sql", "DROP TABLE u;"),
                ("00000000000000_diesel_initial_setup/up.sql", "SELECT 1;"),
                ("00000000000000_diesel_initial_setup/down.sql", ""),
                ("2023-05-05-000000_idx/up.sql", "CREATE INDEX CONCURRENTLY i ON u (id);"),
                (
                    "2023-05-05-000000_idx/metadata.toml",
                    "run_in_transaction = false # needed\n",
                ),
                ("README.md", "x"),
                ("schema/notes.txt", "x"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        let ids: Vec<&str> = m.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "00000000000000_diesel_initial_setup",
                "2019-02-26-002946_user",
                "2023-05-05-000000_idx",
                "2024-01-01-000000-0000_new"
            ]
        );
        assert_eq!(m[0].revert, None);
        assert_eq!(m[1].revert.as_deref(), Some("DROP TABLE u;"));
        assert_eq!(m[1].key, "20190226002946");
        assert_eq!(m[2].online, Online::Marker(online::DIESEL_MARKER));
        assert_eq!(m[3].online, Online::No);
    }

    #[test]
    fn bad_names_and_duplicates() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("x_y/up.sql", "SELECT 1;")]);
        let e = read(tmp.path()).expect_err("name");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("not a diesel migration folder name"), "{e}");
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("2019-01-01-000000_a/up.sql", "SELECT 1;"),
                ("20190101000000_b/up.sql", "SELECT 2;"),
            ],
        );
        let e = read(tmp.path()).expect_err("dup");
        assert!(e.to_string().contains("duplicate version 20190101000000"), "{e}");
    }
}
