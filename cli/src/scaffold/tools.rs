//! `new` for the layouts whose tools number migrations their own way:
//! diesel, goose, pop, sqlx, Liquibase formatted SQL and temporal-style
//! versioned folders. Each follows the style of the files already there, so
//! the tool itself would read the folder the same way afterwards.

use super::{digits_of, increment, newest, one_file, timestamp_after, utc, Scaffold};
use crate::error::CliError;
use crate::layout::{self, diesel, file_name, liquibase, list, pop, versioned, Layout};
use std::path::{Path, PathBuf};

/// The scaffold of `name` in `dir` for one of these layouts; None for the others.
pub(super) fn scaffold(layout: Layout, dir: &Path, name: &str, now: u64) -> Result<Option<Scaffold>, CliError> {
    let s = match layout {
        Layout::Diesel => diesel_folder(dir, name, now)?,
        Layout::Goose => {
            let version = next_number(&versions(dir, |p| p.is_file() && file_name(p).ends_with(".sql"))?, now);
            one_file(
                dir.join(format!("{version}_{name}.sql")),
                "-- +goose Up\n\n-- +goose Down\n",
            )
        }
        Layout::Pop => pop_files(dir, name, now)?,
        Layout::Sqlx => {
            let sql = versions(dir, |p| p.is_file() && file_name(p).ends_with(".sql"))?;
            let version = next_number(&sql, now);
            let reversible = dir.is_dir()
                && list(dir)?
                    .iter()
                    .any(|p| file_name(p).ends_with(".up.sql") || file_name(p).ends_with(".down.sql"));
            if reversible {
                up_down(dir, &format!("{version}_{name}"))
            } else {
                one_file(dir.join(format!("{version}_{name}.sql")), "")
            }
        }
        Layout::Liquibase => liquibase_file(dir, name)?,
        Layout::Versioned => versioned_folder(dir, name)?,
        _ => return Ok(None),
    };
    Ok(Some(s))
}

/// The leading digits of the entries of `dir` that `keep` accepts.
fn versions(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<String>, CliError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    Ok(list(dir)?
        .iter()
        .filter(|p| keep(p))
        .filter_map(|p| digits_of(p))
        .collect())
}

/// goose and sqlx: a timestamp after a timestamp (and in an empty folder,
/// as both tools do by default), else the next sequence number, same width.
fn next_number(versions: &[String], now: u64) -> String {
    match newest(versions.to_vec()) {
        Some(v) if v.len() == 14 => timestamp_after(Some(&v), now),
        Some(v) => increment(&v),
        None => timestamp_after(None, now),
    }
}

fn up_down(dir: &Path, stem: &str) -> Scaffold {
    Scaffold {
        files: vec![
            (dir.join(format!("{stem}.up.sql")), String::new()),
            (dir.join(format!("{stem}.down.sql")), String::new()),
        ],
        plan_line: None,
    }
}

/// A timestamp after `newest` compared as strings (diesel and pop order
/// versions so), padded with zeros to `newest`'s width (kratos's 20 digits).
fn string_timestamp_after(newest: Option<&str>, now: u64) -> Result<String, CliError> {
    let mut ts = timestamp_after(None, now);
    let Some(n) = newest else { return Ok(ts) };
    while ts.len() < n.len() {
        ts.push('0');
    }
    if ts.as_str() > n {
        Ok(ts)
    } else {
        string_after(n)
    }
}

/// `n` plus one when that still sorts after `n` as a string (`9` → `10` does not).
fn string_after(n: &str) -> Result<String, CliError> {
    let next = increment(n);
    if next.as_str() > n {
        return Ok(next);
    }
    Err(CliError::input_hint(
        format!("no version after {n} sorts after it as text, as this tool orders versions"),
        "Name the migration by hand with a version that sorts last.",
    ))
}

/// diesel: `<timestamp>_NAME/up.sql` and `down.sql`, the timestamp written
/// like the newest folder's (`2019-02-26-002946`, `…-0000`, or digits only).
fn diesel_folder(dir: &Path, name: &str, now: u64) -> Result<Scaffold, CliError> {
    let mut heads: Vec<(String, String)> = Vec::new();
    if dir.is_dir() {
        for p in list(dir)? {
            let folder = file_name(&p);
            if let Some(v) =
                diesel::version(&folder).filter(|v| p.join("up.sql").is_file() && v.bytes().any(|b| b != b'0'))
            {
                heads.push((v, folder.split_once('_').map_or(folder.clone(), |(h, _)| h.to_string())));
            }
        }
    }
    heads.sort();
    let last = heads.last();
    let compact = last.is_some_and(|(_, head)| !head.contains('-'));
    let suffix = last.is_none_or(|(v, _)| v.len() > 14);
    let (y, mo, d, h, mi, s) = utc(now);
    let mut version = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}");
    if let Some((v, _)) = last {
        if version.as_str() <= &v[..v.len().min(14)] {
            version = string_after(&v[..v.len().min(14)])?;
        }
    }
    // A version past the newest that is not a timestamp stays digits only.
    let head = if compact || version.len() != 14 {
        version
    } else {
        let dashed = format!(
            "{}-{}-{}-{}",
            &version[..4],
            &version[4..6],
            &version[6..8],
            &version[8..]
        );
        if suffix {
            dashed + "-0000"
        } else {
            dashed
        }
    };
    let folder = dir.join(format!("{head}_{name}"));
    Ok(Scaffold {
        files: vec![
            (folder.join("up.sql"), String::new()),
            (folder.join("down.sql"), String::new()),
        ],
        plan_line: None,
    })
}

/// pop: `<timestamp>_NAME.up.sql` and `.down.sql`, with `.postgres` when
/// every up file names a dialect.
fn pop_files(dir: &Path, name: &str, now: u64) -> Result<Scaffold, CliError> {
    let mut names: Vec<pop::Name> = Vec::new();
    if dir.is_dir() {
        names = list(dir)?
            .iter()
            .filter_map(|p| pop::parse_name(&file_name(p)))
            .collect();
    }
    names.sort_by(|a, b| a.version.cmp(&b.version));
    let last = names.iter().rev().find(|n| n.up);
    let version = string_timestamp_after(last.map(|n| n.version.as_str()), now)?;
    // ory keeps a file per dialect; supabase's generic files run everywhere.
    let ups: Vec<&pop::Name> = names.iter().filter(|n| n.up).collect();
    let dialect = if !ups.is_empty() && ups.iter().all(|n| n.dialect.is_some()) {
        ".postgres"
    } else {
        ""
    };
    let stem = format!("{version}_{name}{dialect}");
    Ok(up_down(dir, &stem))
}

/// Liquibase: a new file holding one `--changeset author:NAME`, next to the
/// newest numbered file and numbered after it (`002-logins.sql` → `003-NAME.sql`);
/// the author is the last changeset's.
fn liquibase_file(dir: &Path, name: &str) -> Result<Scaffold, CliError> {
    let (mut author, mut numbered): (Option<String>, Vec<(String, PathBuf)>) = (None, Vec::new());
    let mut last_file: Option<PathBuf> = None;
    if dir.is_dir() {
        let existing = liquibase::read(dir)?;
        if let Some(m) = existing
            .iter()
            .find(|m| m.key.split_once(':').is_some_and(|(_, id)| id == name))
        {
            return Err(CliError::input_hint(
                format!("{} already has a changeset {}", m.source.display(), m.key),
                "Pick another name.",
            ));
        }
        author = existing
            .last()
            .and_then(|m| m.key.split_once(':'))
            .map(|(a, _)| a.to_string());
        for p in layout::sql_files_deep(dir)? {
            if let Some(d) = digits_of(&p) {
                numbered.push((d, p.clone()));
            }
            last_file = Some(p);
        }
    }
    let author = author
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "pg-deploy".into());
    let newest = numbered.iter().max_by(|a, b| crate::order::cmp_digits(&a.0, &b.0));
    let path = match newest {
        Some((digits, p)) => {
            let file = file_name(p);
            let sep = file[digits.len()..]
                .chars()
                .next()
                .filter(|c| *c == '-' || *c == '_')
                .unwrap_or('_');
            p.with_file_name(format!("{}{sep}{name}.sql", increment(digits)))
        }
        None => last_file
            .map_or_else(
                || dir.to_path_buf(),
                |p| p.parent().map_or(dir.to_path_buf(), Path::to_path_buf),
            )
            .join(format!("{name}.sql")),
    };
    Ok(one_file(
        path,
        &format!("--liquibase formatted sql\n\n--changeset {author}:{name}\n\n"),
    ))
}

/// Versioned (temporal): a new version folder after the newest, its last
/// number plus one (`v1.14` → `v1.15`), holding `NAME.sql` and, when the
/// newest folder has one, a `manifest.json` listing it.
fn versioned_folder(dir: &Path, name: &str) -> Result<Scaffold, CliError> {
    let root = if dir.is_dir() { versioned::root(dir)? } else { None };
    let Some(root) = root else {
        return Err(CliError::input_hint(
            format!("{} has no v<version> folders to follow", dir.display()),
            "Which version to start from and whether it takes a manifest.json is a choice to make by hand: create the first v<version>/ folder yourself.",
        ));
    };
    let mut folders: Vec<(crate::order::FlywayVersion, PathBuf)> = list(&root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| versioned::folder_version(&file_name(&p)).map(|v| (v, p)))
        .collect();
    folders.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some((_, f)) = folders.iter().find(|(_, f)| f.join(format!("{name}.sql")).is_file()) {
        return Err(CliError::input_hint(
            format!("{} already has a migration called \"{name}\"", f.display()),
            "Pick another name.",
        ));
    }
    let Some((_, newest)) = folders.last() else {
        return Err(CliError::input(format!("{} has no v<version> folders", root.display())));
    };
    let version = super::bump(file_name(newest).trim_start_matches('v'), 0);
    let folder = root.join(format!("v{version}"));
    let mut files = vec![(folder.join(format!("{name}.sql")), String::new())];
    let manifest = newest.join("manifest.json");
    if manifest.is_file() {
        let old: serde_json::Value = serde_json::from_str(&layout::read_text(&manifest)?)
            .map_err(|e| CliError::input(format!("{}:{}: not JSON: {e}", manifest.display(), e.line())))?;
        let min = old
            .get("MinCompatibleVersion")
            .cloned()
            .unwrap_or_else(|| version.clone().into());
        let doc = serde_json::json!({
            "CurrVersion": version,
            "MinCompatibleVersion": min,
            "Description": name,
            "SchemaUpdateCqlFiles": [format!("{name}.sql")],
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| CliError::input(e.to_string()))? + "\n";
        files.push((folder.join("manifest.json"), text));
    }
    Ok(Scaffold { files, plan_line: None })
}

#[cfg(test)]
mod tests {
    use super::super::new_migration;
    use super::super::tests::{fill_and_read, names, NOON};
    use crate::layout::{testdir, Layout};
    use std::fs;

    /// Each layout: the files already there, what `new users` creates, and
    /// the id the filled-in migration is read under (None: not the last one).
    #[test]
    fn next_migration_in_the_folders_style() {
        type Case<'a> = (Layout, &'a [(&'a str, &'a str)], &'a [&'a str], Option<&'a str>);
        let goose = "-- +goose Up\nSELECT 1;\n";
        let lb = "--liquibase formatted sql\n--changeset alice:1\nSELECT 1;\n";
        let cases: &[Case] = &[
            (
                Layout::Diesel,
                &[("00000000000000_diesel_initial_setup/up.sql", "SELECT 1;"), ("2019-02-26-002946_a/up.sql", "SELECT 1;")],
                &["2024-01-01-120000_users/up.sql", "2024-01-01-120000_users/down.sql"],
                Some("2024-01-01-120000_users"),
            ),
            (
                Layout::Diesel,
                &[("2023-05-05-000000-0000_a/up.sql", "SELECT 1;")],
                &["2024-01-01-120000-0000_users/up.sql", "2024-01-01-120000-0000_users/down.sql"],
                Some("2024-01-01-120000-0000_users"),
            ),
            (
                Layout::Diesel,
                &[("20230505000000_a/up.sql", "SELECT 1;")],
                &["20240101120000_users/up.sql", "20240101120000_users/down.sql"],
                Some("20240101120000_users"),
            ),
            (
                Layout::Goose,
                &[("00001_a.sql", goose), ("00009_b.sql", goose)],
                &["00010_users.sql"],
                Some("00010_users"),
            ),
            (
                Layout::Goose,
                &[("20230101000000_a.sql", goose)],
                &["20240101120000_users.sql"],
                Some("20240101120000_users"),
            ),
            (
                Layout::Pop,
                &[("20200317160354000001_b.postgres.up.sql", "SELECT 1;"), ("20150100000001000000_a.postgres.up.sql", "SELECT 1;")],
                &["20240101120000000000_users.postgres.up.sql", "20240101120000000000_users.postgres.down.sql"],
                Some("20240101120000000000_users"),
            ),
            (
                Layout::Pop,
                &[
                    ("20210710035447_a.up.sql", "SELECT 1;"),
                    ("20220614074223_b.postgres.up.sql", "SELECT 1;"),
                ],
                &["20240101120000_users.up.sql", "20240101120000_users.down.sql"],
                Some("20240101120000_users"),
            ),
            (
                Layout::Sqlx,
                &[("20230101000000_a.up.sql", "SELECT 1;"), ("20230101000000_a.down.sql", "")],
                &["20240101120000_users.up.sql", "20240101120000_users.down.sql"],
                Some("20240101120000_users"),
            ),
            (Layout::Sqlx, &[("01_setup.sql", "SELECT 1;")], &["02_users.sql"], Some("02_users")),
            (
                Layout::Diesel,
                &[("8_a/up.sql", "SELECT 1;")],
                &["9_users/up.sql", "9_users/down.sql"],
                Some("9_users"),
            ),
            (
                Layout::Liquibase,
                &[("changelog/001-a.sql", lb), ("changelog/procedures/f.sql", "--liquibase formatted sql\n--changeset bob:f\nSELECT 1;\n")],
                &["changelog/002-users.sql"],
                None,
            ),
            (Layout::Liquibase, &[("db/a.sql", lb)], &["db/users.sql"], Some("alice:users")),
            (
                Layout::Versioned,
                &[
                    ("versioned/v1.9/a.sql", "SELECT 1;"),
                    (
                        "versioned/v1.9/manifest.json",
                        "{\"CurrVersion\": \"1.9\", \"MinCompatibleVersion\": \"1.0\", \"SchemaUpdateCqlFiles\": [\"a.sql\"]}",
                    ),
                ],
                &["versioned/v1.10/users.sql", "versioned/v1.10/manifest.json"],
                Some("v1.10/users"),
            ),
        ];
        for (layout, files, want, id) in cases {
            let tmp = tempfile::tempdir().expect("tmp");
            let dir = tmp.path();
            testdir::write(dir, files);
            let c = new_migration(dir, "users", Some(*layout), NOON).expect("new");
            assert_eq!(names(&c, dir), *want, "{layout:?}");
            if let Some(id) = id {
                fill_and_read(dir, &c.files[0], *layout, id);
            }
            let e = new_migration(dir, "users", Some(*layout), NOON + 60).expect_err("same name twice");
            assert_eq!(e.exit_code(), 2, "{layout:?}");
        }
    }

    #[test]
    fn liquibase_changeset_by_the_last_author_and_versioned_manifest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        testdir::write(
            dir,
            &[(
                "changelog/001_a.sql",
                "--liquibase formatted sql\n--changeset alice:1\nSELECT 1;\n",
            )],
        );
        let c = new_migration(dir, "users", None, NOON).expect("new");
        assert_eq!(names(&c, dir), ["changelog/002_users.sql"]);
        assert_eq!(
            fs::read_to_string(&c.files[0]).expect("read"),
            "--liquibase formatted sql\n\n--changeset alice:users\n\n"
        );
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("v1.9/a.sql", "SELECT 1;"),
                (
                    "v1.9/manifest.json",
                    "{\"MinCompatibleVersion\": \"1.0\", \"SchemaUpdateCqlFiles\": [\"a.sql\"]}",
                ),
            ],
        );
        let c = new_migration(tmp.path(), "users", None, NOON).expect("new");
        let doc: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&c.files[1]).expect("manifest")).expect("json");
        assert_eq!(doc["CurrVersion"], "1.10");
        assert_eq!(doc["MinCompatibleVersion"], "1.0");
        assert_eq!(doc["SchemaUpdateCqlFiles"], serde_json::json!(["users.sql"]));
    }

    #[test]
    fn no_version_that_sorts_last_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("9_a/up.sql", "SELECT 1;")]);
        let e = new_migration(tmp.path(), "users", None, NOON).expect_err("9 → 10 sorts first");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("no version after 9 sorts after it"), "{e}");
    }

    #[test]
    fn versioned_without_folders_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let e = new_migration(tmp.path(), "users", Some(Layout::Versioned), NOON).expect_err("ambiguous");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("no v<version> folders to follow"), "{e}");
        assert!(!tmp.path().join("users.sql").exists());
    }
}
