//! Planning decisions from manifest + history, without a database.

use pg_deploy_core::plan::{check_requirements, plan, postgres_version, ServerFacts};
use pg_deploy_core::{Action, AppliedChange, ApplyOptions, ChangeKind, History, Manifest};
use semver::Version;
use serde_json::json;

fn manifest(version: &str, view_sql: &str, first_sql: &str) -> Manifest {
    Manifest::from_value(&json!({
        "project": "shop", "version": version,
        "requires": {"postgres": ">=15", "extensions": ["plpgsql"], "pg_deploy": ">=0.1"},
        "changes": [
            {"id": "0001", "sql": first_sql},
            {"id": "0002", "sql": "CREATE TABLE b ()"},
            {"id": "view", "sql": view_sql, "repeatable": true}
        ]
    }))
    .unwrap()
}

fn m() -> Manifest {
    manifest("1.0.0", "CREATE VIEW v AS SELECT 1", "CREATE TABLE a ()")
}

fn history_of(m: &Manifest, ids: &[&str], version: &str) -> History {
    let mut h = History {
        deployed_version: Some(Version::parse(version).unwrap()),
        ..Default::default()
    };
    for c in m.changes.iter().filter(|c| ids.contains(&c.id.as_str())) {
        h.applied.insert(
            c.id.clone(),
            AppliedChange {
                checksum: c.checksum.clone(),
                kind: c.kind,
            },
        );
    }
    h
}

#[test]
fn fresh_project_applies_everything_in_order() {
    let p = plan(&m(), &History::default(), &ApplyOptions::default()).unwrap();
    assert_eq!(p.actions, vec![Action::Apply, Action::Apply, Action::Apply]);
    assert!(p.warnings.is_empty());
}

#[test]
fn reapply_is_a_noop() {
    let m = m();
    let p = plan(
        &m,
        &history_of(&m, &["0001", "0002", "view"], "1.0.0"),
        &ApplyOptions::default(),
    )
    .unwrap();
    assert!(p.is_noop());
}

#[test]
fn only_pending_changes_run() {
    let m = m();
    let p = plan(&m, &history_of(&m, &["0001"], "0.9.0"), &ApplyOptions::default()).unwrap();
    assert_eq!(p.actions, vec![Action::Skip, Action::Apply, Action::Apply]);
}

#[test]
fn repeatable_reruns_when_its_sql_changes() {
    let old = m();
    let new = manifest("1.1.0", "CREATE OR REPLACE VIEW v AS SELECT 2", "CREATE TABLE a ()");
    let p = plan(
        &new,
        &history_of(&old, &["0001", "0002", "view"], "1.0.0"),
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(p.actions, vec![Action::Skip, Action::Skip, Action::Rerun]);
}

#[test]
fn modified_versioned_change_stops_with_both_checksums() {
    let old = m();
    let new = manifest("1.1.0", "CREATE VIEW v AS SELECT 1", "CREATE TABLE a (id int)");
    let err = plan(
        &new,
        &history_of(&old, &["0001", "0002", "view"], "1.0.0"),
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.sqlstate().code(), "23000");
    let text = err.to_string();
    assert!(
        text.contains(&old.changes[0].checksum) && text.contains(&new.changes[0].checksum),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("accept_changed"));
}

#[test]
fn accepted_modification_is_recorded_not_run() {
    let old = m();
    let new = manifest("1.1.0", "CREATE VIEW v AS SELECT 1", "CREATE TABLE a (id int)");
    let opts = ApplyOptions {
        accept_changed: vec!["0001".into(), "0002".into()],
        ..Default::default()
    };
    let p = plan(&new, &history_of(&old, &["0001", "0002", "view"], "1.0.0"), &opts).unwrap();
    assert_eq!(p.actions, vec![Action::Accept, Action::Skip, Action::Skip]);
    assert!(
        p.warnings.iter().any(|w| w.contains("nothing to accept for \"0002\"")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn kind_change_is_refused() {
    let m = m();
    let mut h = history_of(&m, &["0001"], "1.0.0");
    h.applied.get_mut("0001").unwrap().kind = ChangeKind::Repeatable;
    let err = plan(&m, &h, &ApplyOptions::default()).unwrap_err();
    assert_eq!(err.sqlstate().code(), "23000");
    assert!(err.to_string().contains("applied as repeatable"));
}

#[test]
fn older_version_is_refused_unless_allowed() {
    let m = m();
    let h = history_of(&m, &["0001"], "2.0.0");
    let err = plan(&m, &h, &ApplyOptions::default()).unwrap_err();
    assert_eq!(err.sqlstate().code(), "55000");
    assert!(err.to_string().contains("older than the deployed version 2.0.0"));
    let p = plan(
        &m,
        &h,
        &ApplyOptions {
            allow_downgrade: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(p.warnings[0].contains("downgrade"));
}

#[test]
fn applied_changes_missing_from_manifest_are_warned_about() {
    let m = m();
    let mut h = history_of(&m, &["0001"], "1.0.0");
    h.applied.insert(
        "0000-gone".into(),
        AppliedChange {
            checksum: "sha256:x".into(),
            kind: ChangeKind::Versioned,
        },
    );
    let p = plan(&m, &h, &ApplyOptions::default()).unwrap();
    assert!(p.warnings.iter().any(|w| w.contains("\"0000-gone\"")));
}

#[test]
fn requirements_are_checked() {
    let m = m();
    let facts = |pg: i64, exts: &[&str], ours: &str| ServerFacts {
        postgres: postgres_version(pg),
        installed_extensions: exts.iter().map(|s| s.to_string()).collect(),
        pg_deploy: Version::parse(ours).unwrap(),
    };
    assert!(check_requirements(&m, &facts(150018, &["plpgsql"], "0.1.0")).is_ok());
    let old_pg = check_requirements(&m, &facts(140010, &["plpgsql"], "0.1.0")).unwrap_err();
    assert_eq!(old_pg.sqlstate().code(), "55000");
    assert!(old_pg.to_string().contains("PostgreSQL 14.10.0"));
    let no_ext = check_requirements(&m, &facts(150018, &[], "0.1.0")).unwrap_err();
    assert!(no_ext
        .to_string()
        .contains("not installed in this database: \"plpgsql\""));
    let old_us = check_requirements(&m, &facts(150018, &["plpgsql"], "0.0.9")).unwrap_err();
    assert!(old_us.to_string().contains("requires.pg_deploy"));
}

#[test]
fn postgres_versions_map_to_semver() {
    assert_eq!(postgres_version(180001).to_string(), "18.1.0");
    assert_eq!(postgres_version(150018).to_string(), "15.18.0");
}

#[test]
fn a_change_applied_from_a_windows_checkout_is_unchanged_on_linux() {
    use pg_deploy_core::checksum::sha256_checksum;
    let crlf = "CREATE TABLE a (\r\n  id int\r\n)";
    let lf = "CREATE TABLE a (\n  id int\n)";
    // 0.1.0 recorded the exact bytes of the Windows checkout.
    let applied = manifest("1.0.0", "CREATE VIEW v AS SELECT 1", crlf);
    let mut history = history_of(&applied, &["0001", "0002", "view"], "1.0.0");
    history.applied.get_mut("0001").unwrap().checksum = sha256_checksum(crlf.as_bytes());
    for sql in [lf, crlf] {
        let p = plan(
            &manifest("1.0.0", "CREATE VIEW v AS SELECT 1", sql),
            &history,
            &ApplyOptions::default(),
        )
        .unwrap();
        assert!(p.is_noop(), "{sql:?}");
    }
    // Line endings aside, the checksum is the same from either checkout.
    assert_eq!(
        manifest("1.0.0", "x", crlf).changes[0].checksum,
        manifest("1.0.0", "x", lf).changes[0].checksum
    );
}

#[test]
fn through_leaves_later_changes_for_a_later_apply() {
    let m = m();
    let opts = ApplyOptions {
        through: Some(m.changes[0].id.clone()),
        ..Default::default()
    };
    let p = plan(&m, &History::default(), &opts).unwrap();
    assert_eq!(p.actions[0], Action::Apply);
    assert!(p.actions[1..].iter().all(|a| *a == Action::Skip), "{:?}", p.actions);
    assert!(
        p.warnings.iter().any(|w| w.contains("left for a later apply")),
        "{:?}",
        p.warnings
    );
    let opts = ApplyOptions {
        through: Some("nope".into()),
        ..Default::default()
    };
    let e = plan(&m, &History::default(), &opts).unwrap_err();
    assert_eq!(e.sqlstate().code(), "22023");
}

#[test]
fn a_manifest_its_last_deployment_applied_skips_everything_without_the_history() {
    let m = m();
    let history = History {
        deployed_version: Some(Version::parse("1.0.0").unwrap()),
        manifest_applied: true,
        ..Default::default()
    };
    let opts = ApplyOptions {
        accept_changed: vec!["0001".into()],
        ..Default::default()
    };
    let p = plan(&m, &history, &opts).unwrap();
    assert_eq!(p.actions, vec![Action::Skip; 3]);
    assert!(p.is_noop());
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("nothing to accept"), "{:?}", p.warnings);
    // A downgrade is still refused.
    let older = History {
        deployed_version: Some(Version::parse("2.0.0").unwrap()),
        manifest_applied: true,
        ..Default::default()
    };
    assert!(plan(&m, &older, &ApplyOptions::default()).is_err());
}
