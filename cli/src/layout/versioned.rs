//! Versioned sub-folders, as temporal ships its schema: `v1.0/`, `v1.1/`, …
//! `v1.10/`, each holding `.sql` files (the folder given may be the one
//! holding them, or its parent with a `versioned/` folder).
//!
//! Order: by the folder's version, part by part (v1.2 < v1.10); inside a
//! folder, by the `SchemaUpdateCqlFiles` list of its `manifest.json` when
//! there is one (temporal's own tool runs them in that order, which is not
//! always the files' name order), else by file name. A `.sql` file the
//! manifest does not list is bad input: temporal would never run it.
//!
//! Ids are `v<version>/<file without .sql>`; the history key is the folder's
//! version (`1.2`), as temporal's `schema_version.curr_version` holds it.

use super::problems::Problems;
use super::{file_name, list, read_text, Migration};
use crate::error::CliError;
use crate::order::FlywayVersion;
use std::path::{Path, PathBuf};

/// The version of a `v1.2` folder name.
pub fn folder_version(name: &str) -> Option<FlywayVersion> {
    let v = name.strip_prefix('v')?;
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .then(|| FlywayVersion::parse(v))
        .flatten()
}

/// The folder holding the `v*` folders: `dir`, or `dir/versioned`.
pub fn root(dir: &Path) -> Result<Option<PathBuf>, CliError> {
    for candidate in [dir.to_path_buf(), dir.join("versioned")] {
        if !candidate.is_dir() {
            continue;
        }
        let has = list(&candidate)?
            .iter()
            .any(|p| p.is_dir() && folder_version(&file_name(p)).is_some());
        if has {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

pub fn is_versioned(dir: &Path) -> Result<bool, CliError> {
    Ok(root(dir)?.is_some())
}

/// The files of one version folder, in run order.
fn files_of(folder: &Path) -> Result<Vec<PathBuf>, CliError> {
    let sql: Vec<PathBuf> = list(folder)?
        .into_iter()
        .filter(|p| p.is_file() && file_name(p).ends_with(".sql"))
        .collect();
    let manifest = folder.join("manifest.json");
    if !manifest.is_file() {
        return Ok(sql);
    }
    let doc: serde_json::Value = serde_json::from_str(&read_text(&manifest)?)
        .map_err(|e| CliError::input(format!("{}:{}: not JSON: {e}", manifest.display(), e.line())))?;
    let Some(listed) = doc.get("SchemaUpdateCqlFiles").and_then(|v| v.as_array()) else {
        return Ok(sql);
    };
    let mut out = Vec::new();
    for name in listed {
        let name = name.as_str().unwrap_or_default();
        let p = folder.join(name);
        if !p.is_file() {
            return Err(CliError::input(format!(
                "{}: lists {name}, which is not in the folder",
                manifest.display()
            )));
        }
        out.push(p);
    }
    if let Some(unlisted) = sql.iter().find(|p| !out.contains(p)) {
        return Err(CliError::input_hint(
            format!("{} is not listed in {}", unlisted.display(), manifest.display()),
            "Add it to SchemaUpdateCqlFiles (temporal runs only the files listed) or move it out.",
        ));
    }
    Ok(out)
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let Some(root) = root(dir)? else {
        return Ok(Vec::new());
    };
    let mut folders: Vec<(FlywayVersion, PathBuf)> = Vec::new();
    let mut problems = Problems::default();
    for p in list(&root)? {
        let name = file_name(&p);
        let Some(v) = p.is_dir().then(|| folder_version(&name)).flatten() else {
            continue;
        };
        if let Some((_, first)) = folders.iter().find(|(w, _)| *w == v) {
            problems.push(CliError::input(format!(
                "duplicate version {}: {} and {}",
                v.canonical(),
                first.display(),
                p.display()
            )));
            continue;
        }
        folders.push((v, p));
    }
    folders.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (v, folder) in folders {
        for p in problems.keep(files_of(&folder)).unwrap_or_default() {
            let id = format!("{}/{}", file_name(&folder), file_name(&p).trim_end_matches(".sql"));
            if let Some(sql) = problems.keep(read_text(&p)) {
                out.push(Migration::versioned(id, sql, v.canonical(), p));
            }
        }
    }
    problems.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{read_folder, testdir, Layout};

    #[test]
    fn folders_by_version_files_by_manifest_or_name() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("versioned/v1.10/b.sql", "SELECT 'b';"),
                ("versioned/v1.10/a.sql", "SELECT 'a';"),
                ("versioned/v1.2/q.sql", "SELECT 'q';"),
                ("versioned/v1.0/schema.sql", "SELECT 0;"),
                ("versioned/v1.5/event.sql", "SELECT 'e';"),
                ("versioned/v1.5/executions.sql", "SELECT 'x';"),
                ("versioned/v1.5/cluster_membership.sql", "SELECT 'c';"),
                (
                    "versioned/v1.5/manifest.json",
                    r#"{"CurrVersion": "1.5", "SchemaUpdateCqlFiles": ["event.sql", "executions.sql", "cluster_membership.sql"]}"#,
                ),
                ("schema.sql", "SELECT 'the whole schema, not a migration';"),
            ],
        );
        let f = read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.layout, Layout::Versioned);
        let ids: Vec<&str> = f.migrations.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "v1.0/schema",
                "v1.2/q",
                "v1.5/event",
                "v1.5/executions",
                "v1.5/cluster_membership",
                "v1.10/a",
                "v1.10/b"
            ]
        );
        assert_eq!(f.migrations[1].key, "1.2");
        let f = read_folder(&tmp.path().join("versioned"), None).expect("read");
        assert_eq!(f.migrations.len(), 7);
    }

    #[test]
    fn manifest_mismatches_are_bad_input() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("v1.0/a.sql", "SELECT 1;"),
                    ("v1.0/manifest.json", r#"{"SchemaUpdateCqlFiles": ["b.sql"]}"#),
                ],
                "lists b.sql, which is not in the folder",
            ),
            (
                &[
                    ("v1.0/a.sql", "SELECT 1;"),
                    ("v1.0/c.sql", "SELECT 1;"),
                    ("v1.0/manifest.json", r#"{"SchemaUpdateCqlFiles": ["a.sql"]}"#),
                ],
                "c.sql is not listed in",
            ),
            (
                &[("v1.0/a.sql", "SELECT 1;"), ("v1.0/manifest.json", "{")],
                "manifest.json:1: not JSON",
            ),
            (
                &[("v1/a.sql", "SELECT 1;"), ("v1.0/b.sql", "SELECT 1;")],
                "duplicate version 1",
            ),
        ];
        for (files, want) in cases {
            let tmp = tempfile::tempdir().expect("tmp");
            testdir::write(tmp.path(), files);
            let e = read(tmp.path()).expect_err(want);
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(want), "{e}");
        }
        assert!(folder_version("v1.2").is_some());
        assert!(folder_version("v").is_none());
        assert!(folder_version("version").is_none());
    }
}
