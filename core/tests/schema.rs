//! docs/manifest.schema.json: generated from the manifest's types, never stale,
//! and the example manifests validate against it.

use pg_deploy_core::manifest_document::{json_schema, json_schema_text};
use pg_deploy_core::Manifest;
use serde_json::{json, Value};
use std::path::PathBuf;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Fails when docs/manifest.schema.json is not what the types generate.
/// `PG_DEPLOY_WRITE_SCHEMA=1 cargo test -p pg_deploy_core --test schema` rewrites it.
#[test]
fn committed_schema_is_what_the_types_generate() {
    let path = repo_file("docs/manifest.schema.json");
    let generated = json_schema_text();
    if std::env::var_os("PG_DEPLOY_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write docs/manifest.schema.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/manifest.schema.json is stale: run PG_DEPLOY_WRITE_SCHEMA=1 cargo test -p pg_deploy_core --test schema \
         and commit the file"
    );
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&json_schema()).expect("the schema is a valid JSON Schema")
}

fn schema_errors(doc: &Value) -> Vec<String> {
    validator()
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_file(&format!("examples/bookings/{name}"))).expect("example manifest");
    serde_json::from_str(&text).expect("example manifest is JSON")
}

#[test]
fn example_manifests_validate_against_the_schema() {
    for name in ["v1.json", "v2.json"] {
        let doc = example(name);
        assert_eq!(schema_errors(&doc), Vec::<String>::new(), "{name}");
        Manifest::from_value(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_full_manifest_validates_and_nulls_count_as_absent() {
    let doc = json!({
        "format": 1, "project": "shop", "version": "1.2.0-rc.1+build.5",
        "requires": {"postgres": ">=15, <19", "extensions": ["pgcrypto"], "pg_deploy": ">=0.1"},
        "defaults": {"lock_timeout": "2s", "statement_timeout": 900000, "search_path": "shop, public",
                     "lock_retries": 100, "allow": ["data_loss"], "big_table_rows": 10, "big_table_bytes": 1024},
        "schemas": ["shop"],
        "changes": [
            {"id": "0001", "sql": "SELECT 1", "lock_timeout": " 1.5 s ", "repeatable": false,
             "checksum": pg_deploy_core::checksum::sha256_checksum(b"SELECT 1").to_uppercase().replace("SHA256", "sha256")},
            {"id": "0002", "sql": "SELECT 2", "requires": ["0001"], "verify": "SELECT true", "revert": "SELECT 0",
             "allow": ["table_rewrite", "access_exclusive", "blocking_index_build", "validating_constraint"],
             "checksum": null, "search_path": null, "lock_retries": 0, "statement_timeout": "250"}
        ]
    });
    Manifest::from_value(&doc).expect("pg_deploy accepts it");
    assert_eq!(schema_errors(&doc), Vec::<String>::new());
}

#[test]
fn the_schema_refuses_what_pg_deploy_refuses_for_its_shape() {
    let base = example("v1.json");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        edit(&mut v);
        v
    };
    let refused = [
        ("unknown top-level field", with(&|v| v["projcet"] = json!("x"))),
        (
            "typo in a change",
            with(&|v| v["changes"][0]["repeatble"] = json!(true)),
        ),
        (
            "change without id",
            with(&|v| {
                v["changes"][0].as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            "missing changes",
            with(&|v| {
                v.as_object_mut().unwrap().remove("changes");
            }),
        ),
        ("no changes", with(&|v| v["changes"] = json!([]))),
        (
            "sql not a string",
            with(&|v| v["changes"][0]["sql"] = json!(["SELECT 1"])),
        ),
        (
            "unknown hazard",
            with(&|v| v["changes"][0]["allow"] = json!(["data_lost"])),
        ),
        ("format 2", with(&|v| v["format"] = json!(2))),
        (
            "lock_retries over 100",
            with(&|v| v["defaults"] = json!({"lock_retries": 101})),
        ),
        (
            "bad duration",
            with(&|v| v["defaults"] = json!({"lock_timeout": "soon"})),
        ),
        (
            "checksum malformed",
            with(&|v| v["changes"][0]["checksum"] = json!("md5:abc")),
        ),
        ("project too long", with(&|v| v["project"] = json!("p".repeat(201)))),
        ("not an object", json!([1, 2])),
    ];
    for (name, doc) in refused {
        assert!(Manifest::from_value(&doc).is_err(), "{name}: pg_deploy accepts it");
        assert!(!schema_errors(&doc).is_empty(), "{name}: the schema accepts it");
    }
}
