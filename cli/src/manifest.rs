//! From migrations to a manifest (format 1): ids, SQL with checksums,
//! repeatable flags, dependencies, revert and verify scripts, phase marks
//! (`online`, and `commit_before` to keep folder order after an online
//! change); the project and version; local validation with pg_deploy_core
//! before anything is sent.

use crate::error::CliError;
use crate::layout::{Folder, Migration};
use pg_deploy_core::checksum::sha256_checksum;
use pg_deploy_core::{Manifest, ManifestError, SqlState};
use serde_json::{json, Map, Value};
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `--project`; default: the folder's declared project (Sqitch), else the folder name.
    pub project: Option<String>,
    /// `--release`; default: derived (see `derived_version`).
    pub release: Option<String>,
    pub include_revert: bool,
    pub include_verify: bool,
    /// `--defaults`: a JSON object put in the manifest's `defaults`.
    pub defaults: Option<Value>,
    /// `--schemas`: the manifest's `schemas` (for drift); empty = not set.
    pub schemas: Vec<String>,
}

/// The version of a folder without `--release`: `0.<N>.0`, N being the number
/// of versioned migrations. Adding a migration makes it grow, so apply never
/// sees it as a downgrade; editing a repeatable keeps it (an equal version is
/// fine); any real release (`--release 1.0.0`) is newer.
pub fn derived_version(migrations: &[Migration]) -> String {
    let n = migrations.iter().filter(|m| !m.repeatable).count();
    format!("0.{n}.0")
}

/// The project name: `--project`, else what the folder declares, else the
/// folder's own name (of its canonical path, so `.` works).
pub fn project_name(dir: &Path, folder: &Folder, given: Option<&str>) -> Result<String, CliError> {
    if let Some(p) = given {
        return Ok(p.to_string());
    }
    if let Some(p) = &folder.declared_project {
        return Ok(p.clone());
    }
    let canonical = dir
        .canonicalize()
        .map_err(|e| CliError::input(format!("cannot read folder {}: {e}", dir.display())))?;
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CliError::input_hint("cannot name the project after the folder", "Pass --project NAME."))
}

/// The manifest document for a folder. It is validated locally before it is returned.
pub fn build(dir: &Path, folder: &Folder, opts: &BuildOptions) -> Result<Value, CliError> {
    let project = project_name(dir, folder, opts.project.as_deref())?;
    let version = opts
        .release
        .clone()
        .unwrap_or_else(|| derived_version(&folder.migrations));
    let mut changes = Vec::with_capacity(folder.migrations.len());
    let mut after_online = false;
    for m in &folder.migrations {
        let mut c = Map::new();
        c.insert("id".into(), json!(m.id));
        c.insert("sql".into(), json!(m.sql));
        c.insert("checksum".into(), json!(sha256_checksum(m.sql.as_bytes())));
        if m.repeatable {
            c.insert("repeatable".into(), json!(true));
        }
        // Folder order is run order, as under the old tool: the first change
        // after online ones starts a new phase, so it runs after them.
        if m.online.is_online() {
            c.insert("online".into(), json!(true));
            after_online = true;
        } else if std::mem::take(&mut after_online) {
            c.insert("commit_before".into(), json!(true));
        }
        if !m.requires.is_empty() {
            c.insert("requires".into(), json!(m.requires));
        }
        if opts.include_revert {
            if let Some(r) = &m.revert {
                c.insert("revert".into(), json!(r));
            }
        }
        if opts.include_verify {
            if let Some(v) = &m.verify {
                c.insert("verify".into(), json!(v));
            }
        }
        changes.push(Value::Object(c));
    }
    let mut doc = json!({"format": 1, "project": project, "version": version, "changes": changes});
    if let Some(d) = &opts.defaults {
        doc["defaults"] = d.clone();
    }
    if !opts.schemas.is_empty() {
        doc["schemas"] = json!(opts.schemas);
    }
    validate(&doc)?;
    Ok(doc)
}

/// Validates with the same code the extension runs. Fields this build of the
/// core does not know yet (`revert`, `verify` before they land) are left to the
/// server: the rest of the manifest is validated without them.
pub fn validate(doc: &Value) -> Result<(), CliError> {
    match Manifest::from_value(doc) {
        Ok(_) => Ok(()),
        Err(e) if is_reserved_field(&e) => {
            let mut stripped = doc.clone();
            if let Some(changes) = stripped.get_mut("changes").and_then(Value::as_array_mut) {
                for c in changes {
                    if let Some(obj) = c.as_object_mut() {
                        obj.remove("revert");
                        obj.remove("verify");
                    }
                }
            }
            Manifest::from_value(&stripped)
                .map(|_| ())
                .map_err(|e| invalid(doc, &e))
        }
        Err(e) => Err(invalid(doc, &e)),
    }
}

fn is_reserved_field(e: &ManifestError) -> bool {
    e.sqlstate() == SqlState::FeatureNotSupported && (e.path().ends_with(".revert") || e.path().ends_with(".verify"))
}

/// A local validation error, naming the change's id where the path points into one.
fn invalid(doc: &Value, e: &ManifestError) -> CliError {
    let mut message = format!("invalid manifest ({}): {e}", e.sqlstate().code());
    if let Some(i) = change_index(e.path()) {
        if let Some(id) = doc["changes"].get(i).and_then(|c| c["id"].as_str()) {
            message.push_str(&format!(" (change \"{id}\")"));
        }
    }
    CliError::Input {
        message,
        hint: e.hint(),
    }
}

fn change_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("changes[")?;
    rest[..rest.find(']')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::online::Online;
    use crate::layout::{Layout, Migration};
    use std::path::PathBuf;

    fn mig(id: &str, repeatable: bool) -> Migration {
        Migration {
            id: id.into(),
            sql: format!("SELECT '{id}';"),
            repeatable,
            revert: Some("SELECT 0;".into()),
            verify: None,
            requires: Vec::new(),
            key: id.into(),
            source: PathBuf::from(id),
            online: Online::No,
        }
    }

    fn folder(m: Vec<Migration>) -> Folder {
        Folder {
            layout: Layout::Plain,
            migrations: m,
            declared_project: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn version_grows_with_versioned_migrations() {
        let mut m = vec![mig("1", false), mig("r", true)];
        assert_eq!(derived_version(&m), "0.1.0");
        m.push(mig("2", false));
        assert_eq!(derived_version(&m), "0.2.0");
        let v1 = semver::Version::parse("0.1.0").expect("v");
        let v10 = semver::Version::parse(&derived_version(&vec![mig("x", false); 10])).expect("v");
        assert!(v10 > v1);
    }

    #[test]
    fn builds_a_valid_manifest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("shop");
        std::fs::create_dir(&dir).expect("mkdir");
        let f = folder(vec![mig("1_a", false), mig("views", true)]);
        let opts = BuildOptions {
            include_revert: true,
            ..Default::default()
        };
        let doc = build(&dir, &f, &opts).expect("build");
        assert_eq!(doc["project"], "shop");
        assert_eq!(doc["version"], "0.1.0");
        assert_eq!(doc["changes"][0]["id"], "1_a");
        assert_eq!(doc["changes"][0]["revert"], "SELECT 0;");
        assert_eq!(doc["changes"][1]["repeatable"], true);
        assert!(doc["changes"][0]["checksum"]
            .as_str()
            .expect("sum")
            .starts_with("sha256:"));
        let opts = BuildOptions {
            project: Some("p".into()),
            release: Some("2.0.0".into()),
            ..Default::default()
        };
        let doc = build(&dir, &f, &opts).expect("build");
        assert_eq!(doc["project"], "p");
        assert_eq!(doc["version"], "2.0.0");
        assert!(doc["changes"][0].get("revert").is_none());
    }

    #[test]
    fn online_changes_keep_folder_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        let online = |id: &str| Migration {
            online: Online::Needed("CREATE INDEX CONCURRENTLY"),
            ..mig(id, false)
        };
        let f = folder(vec![
            mig("1_table", false),
            online("2_index"),
            online("3_index"),
            mig("4_constraint", false),
            mig("5_more", false),
            online("6_index"),
        ]);
        let doc = build(tmp.path(), &f, &BuildOptions::default()).expect("build");
        let marks: Vec<(bool, bool)> = doc["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| (c["online"] == true, c["commit_before"] == true))
            .collect();
        assert_eq!(
            marks,
            [
                (false, false),
                (true, false),
                (true, false),
                (false, true),
                (false, false),
                (true, false)
            ]
        );
        assert!(doc["changes"][0].get("online").is_none(), "no field when not online");
    }

    #[test]
    fn invalid_manifests_are_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = folder(vec![mig("a", false)]);
        let opts = BuildOptions {
            release: Some("one".into()),
            ..Default::default()
        };
        let e = build(tmp.path(), &f, &opts).expect_err("bad version");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("version"), "{e}");
        let f = folder(vec![mig("a", false), mig("a", false)]);
        let e = build(tmp.path(), &f, &BuildOptions::default()).expect_err("dup");
        assert!(e.to_string().contains("23505"), "{e}");
        assert!(e.to_string().contains("change \"a\""), "{e}");
    }
}
