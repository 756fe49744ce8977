//! Table-driven validation tests: each bad manifest names its SQLSTATE, the
//! JSON path at fault and a fragment of the message.

use pg_deploy_core::{ChangeKind, Manifest};
use serde_json::{json, Value};

const SQL_1_SHA: &str = "sha256:a3f5c5c7c6f4c4b0e0d7a0fa2b1ad4a6b83bd52f23f3d0e1a6ff7d1a0c5d8a11";

fn base() -> Value {
    json!({
        "project": "shop",
        "version": "1.2.0",
        "changes": [
            {"id": "0001", "sql": "CREATE TABLE a (id int);"},
            {"id": "0002", "sql": "CREATE TABLE b (id int);", "requires": ["0001"]},
            {"id": "view", "sql": "CREATE OR REPLACE VIEW v AS SELECT 1;", "repeatable": true}
        ]
    })
}

/// Applies `edit` to a copy of the base manifest.
fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    edit(&mut v);
    v
}

struct Case {
    name: &'static str,
    manifest: Value,
    sqlstate: &'static str,
    path: &'static str,
    fragment: &'static str,
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let c = |name, manifest, sqlstate, path, fragment| Case {
        name,
        manifest,
        sqlstate,
        path,
        fragment,
    };
    let many_changes: Vec<Value> = (0..20_001)
        .map(|i| json!({"id": format!("c{i}"), "sql": "SELECT 1"}))
        .collect();
    vec![
        c(
            "array instead of object",
            json!([1, 2]),
            "22023",
            "$",
            "expected a JSON object (the manifest), found an array",
        ),
        c(
            "string instead of object",
            json!("shop"),
            "22023",
            "$",
            "found a string",
        ),
        c("null manifest", Value::Null, "22023", "$", "found null"),
        c(
            "unknown top-level field",
            with(|v| v["projcet"] = json!("x")),
            "22023",
            "projcet",
            "unknown field",
        ),
        c(
            "missing project",
            with(|v| {
                v.as_object_mut().unwrap().remove("project");
            }),
            "22023",
            "project",
            "required field is missing",
        ),
        c(
            "project null",
            with(|v| v["project"] = Value::Null),
            "22023",
            "project",
            "required field is missing",
        ),
        c(
            "empty project",
            with(|v| v["project"] = json!("")),
            "22023",
            "project",
            "must not be empty",
        ),
        c(
            "project not a string",
            with(|v| v["project"] = json!(42)),
            "22023",
            "project",
            "expected a string, found a number",
        ),
        c(
            "project with control character",
            with(|v| v["project"] = json!("sh\u{7}op")),
            "22023",
            "project",
            "control characters",
        ),
        c(
            "project with a right-to-left override",
            with(|v| v["project"] = json!("shop\u{202E}gnp.exe")),
            "22023",
            "project",
            "U+202E",
        ),
        c(
            "change id with a line separator",
            with(|v| v["changes"][1]["id"] = json!("00\u{2028}02")),
            "22023",
            "changes[1].id",
            "invisible format characters",
        ),
        c(
            "change id with a zero-width space",
            with(|v| v["changes"][1]["id"] = json!("00\u{200B}02")),
            "22023",
            "changes[1].id",
            "U+200B",
        ),
        c(
            "a system schema to manage",
            with(|v| v["schemas"] = json!(["app", "pg_catalog"])),
            "22023",
            "schemas[1]",
            "system schema",
        ),
        c(
            "pg_deploy's own schema to manage",
            with(|v| v["schemas"] = json!(["deploy"])),
            "22023",
            "schemas[0]",
            "system schema",
        ),
        c(
            "lock_timeout of 0",
            with(|v| v["defaults"]["lock_timeout"] = json!("0")),
            "22023",
            "defaults.lock_timeout",
            "without limit",
        ),
        c(
            "lock_timeout of 0 ms as a number",
            with(|v| v["changes"][0]["lock_timeout"] = json!(0)),
            "22023",
            "changes[0].lock_timeout",
            "without limit",
        ),
        c(
            "project with trailing space",
            with(|v| v["project"] = json!("shop ")),
            "22023",
            "project",
            "white space",
        ),
        c(
            "project name too long",
            with(|v| v["project"] = json!("p".repeat(201))),
            "54000",
            "project",
            "over the limit of 200",
        ),
        c(
            "missing version",
            with(|v| {
                v.as_object_mut().unwrap().remove("version");
            }),
            "22023",
            "version",
            "required field is missing",
        ),
        c(
            "version not semver",
            with(|v| v["version"] = json!("1.2")),
            "22023",
            "version",
            "is not a semantic version",
        ),
        c(
            "version as number",
            with(|v| v["version"] = json!(1.2)),
            "22023",
            "version",
            "expected a string",
        ),
        c(
            "format 2",
            with(|v| v["format"] = json!(2)),
            "0A000",
            "format",
            "manifest format 2 is not supported",
        ),
        c(
            "missing changes",
            with(|v| {
                v.as_object_mut().unwrap().remove("changes");
            }),
            "22023",
            "changes",
            "required field is missing",
        ),
        c(
            "changes not an array",
            with(|v| v["changes"] = json!({})),
            "22023",
            "changes",
            "expected an array, found an object",
        ),
        c(
            "no changes",
            with(|v| v["changes"] = json!([])),
            "22023",
            "changes",
            "must not be empty",
        ),
        c(
            "too many changes",
            with(|v| v["changes"] = Value::Array(many_changes)),
            "54000",
            "changes",
            "number of changes is 20001",
        ),
        c(
            "change not an object",
            with(|v| v["changes"][1] = json!("CREATE TABLE x()")),
            "22023",
            "changes[1]",
            "expected an object, found a string",
        ),
        c(
            "change missing id",
            with(|v| {
                v["changes"][2].as_object_mut().unwrap().remove("id");
            }),
            "22023",
            "changes[2].id",
            "required field is missing",
        ),
        c(
            "change id empty",
            with(|v| v["changes"][0]["id"] = json!("")),
            "22023",
            "changes[0].id",
            "must not be empty",
        ),
        c(
            "change id a number",
            with(|v| v["changes"][0]["id"] = json!(1)),
            "22023",
            "changes[0].id",
            "expected a string, found a number",
        ),
        c(
            "change id with newline",
            with(|v| v["changes"][1]["id"] = json!("00\n02")),
            "22023",
            "changes[1].id",
            "control characters",
        ),
        c(
            "duplicate id",
            with(|v| v["changes"][2]["id"] = json!("0001")),
            "23505",
            "changes[2].id",
            "duplicate change id \"0001\" (first defined at changes[0])",
        ),
        c(
            "change missing sql",
            with(|v| {
                v["changes"][1].as_object_mut().unwrap().remove("sql");
            }),
            "22023",
            "changes[1].sql",
            "required field is missing",
        ),
        c(
            "change sql blank",
            with(|v| v["changes"][1]["sql"] = json!("   \n")),
            "22023",
            "changes[1].sql",
            "must not be empty",
        ),
        c(
            "change sql an array",
            with(|v| v["changes"][1]["sql"] = json!(["SELECT 1"])),
            "22023",
            "changes[1].sql",
            "expected a string, found an array",
        ),
        c(
            "typo in change field",
            with(|v| v["changes"][0]["repeatble"] = json!(true)),
            "22023",
            "changes[0].repeatble",
            "unknown field",
        ),
        c(
            "repeatable not a bool",
            with(|v| v["changes"][2]["repeatable"] = json!("yes")),
            "22023",
            "changes[2].repeatable",
            "expected a boolean",
        ),
        c(
            "checksum does not match",
            with(|v| v["changes"][0]["checksum"] = json!(SQL_1_SHA)),
            "22000",
            "changes[0].checksum",
            "does not match the SQL",
        ),
        c(
            "checksum malformed",
            with(|v| v["changes"][0]["checksum"] = json!("md5:abc")),
            "22023",
            "changes[0].checksum",
            "sha256:<64 hex digits>",
        ),
        c(
            "requires unknown id",
            with(|v| v["changes"][1]["requires"] = json!(["0000"])),
            "23503",
            "changes[1].requires[0]",
            "requires \"0000\", which is not a change",
        ),
        c(
            "requires later id",
            with(|v| v["changes"][0]["requires"] = json!(["view"])),
            "23503",
            "changes[0].requires[0]",
            "comes later in the manifest (changes[2])",
        ),
        c(
            "requires itself",
            with(|v| v["changes"][1]["requires"] = json!(["0001", "0002"])),
            "22023",
            "changes[1].requires[1]",
            "cannot require itself",
        ),
        c(
            "requires not an array",
            with(|v| v["changes"][1]["requires"] = json!("0001")),
            "22023",
            "changes[1].requires",
            "expected an array",
        ),
        c(
            "requires entry empty",
            with(|v| v["changes"][1]["requires"] = json!([""])),
            "22023",
            "changes[1].requires[0]",
            "must not be empty",
        ),
        c(
            "requires.postgres bad range",
            with(|v| v["requires"] = json!({"postgres": "fifteen"})),
            "22023",
            "requires.postgres",
            "is not a version range",
        ),
        c(
            "requires unknown key",
            with(|v| v["requires"] = json!({"postgresql": ">=15"})),
            "22023",
            "requires.postgresql",
            "unknown field",
        ),
        c(
            "requires.extensions not strings",
            with(|v| v["requires"] = json!({"extensions": [1]})),
            "22023",
            "requires.extensions[0]",
            "expected a string",
        ),
        c(
            "requires.pg_deploy bad range",
            with(|v| v["requires"] = json!({"pg_deploy": ">>1"})),
            "22023",
            "requires.pg_deploy",
            "is not a version range",
        ),
        c(
            "defaults not an object",
            with(|v| v["defaults"] = json!("2s")),
            "22023",
            "defaults",
            "expected an object",
        ),
        c(
            "defaults bad lock_timeout",
            with(|v| v["defaults"] = json!({"lock_timeout": "soon"})),
            "22023",
            "defaults.lock_timeout",
            "is not a duration",
        ),
        c(
            "defaults negative timeout",
            with(|v| v["defaults"] = json!({"statement_timeout": -5})),
            "22023",
            "defaults.statement_timeout",
            "whole number of milliseconds",
        ),
        c(
            "defaults empty search_path",
            with(|v| v["defaults"] = json!({"search_path": " "})),
            "22023",
            "defaults.search_path",
            "must not be empty",
        ),
        c("defaults lock_retries negative", with(|v| v["defaults"] = json!({"lock_retries": -1})), "22023", "defaults.lock_retries", "not a whole number between 0 and 100"),
        c("defaults lock_retries too many", with(|v| v["defaults"] = json!({"lock_retries": 101})), "22023", "defaults.lock_retries", "between 0 and 100"),
        c("change lock_retries a string", with(|v| v["changes"][0]["lock_retries"] = json!("3")), "22023", "changes[0].lock_retries", "expected a whole number"),
        c("unknown hazard in allow", with(|v| v["changes"][0]["allow"] = json!(["data_lost"])), "22023", "changes[0].allow[0]", "unknown hazard \"data_lost\"; one of table_rewrite"),
        c("allow not an array", with(|v| v["defaults"] = json!({"allow": "data_loss"})), "22023", "defaults.allow", "expected an array"),
        c("big_table_rows not a number", with(|v| v["defaults"] = json!({"big_table_rows": "1M"})), "22023", "defaults.big_table_rows", "expected a whole number"),
        c("verify not a string", with(|v| v["changes"][0]["verify"] = json!(true)), "22023", "changes[0].verify", "expected a string, found a boolean"),
        c("revert blank", with(|v| v["changes"][0]["revert"] = json!("  ")), "22023", "changes[0].revert", "must not be empty"),
        c("schemas not a list", with(|v| v["schemas"] = json!("shop")), "22023", "schemas", "expected an array"),
        c("schemas entry empty", with(|v| v["schemas"] = json!(["shop", ""])), "22023", "schemas[1]", "must not be empty"),
        c("format 1.5", with(|v| v["format"] = json!(1.5)), "0A000", "format", "manifest format 1.5 is not supported"),
        c("format 2 with fields format 1 does not know", with(|v| { v["format"] = json!(2); v["changes"][0]["phase"] = json!("pre"); }), "0A000", "format", "manifest format 2 is not supported"),
        c("format as a string", with(|v| v["format"] = json!("1")), "0A000", "format", "manifest format \"1\" is not supported"),
        c("change id null", with(|v| v["changes"][1]["id"] = Value::Null), "22023", "changes[1].id", "required field is missing"),
        c("unknown field before a wrong type in the same change", with(|v| { v["changes"][1]["sql"] = json!(1); v["changes"][1]["zzz"] = json!(1); }), "22023", "changes[1].zzz", "unknown field"),
        c("unknown field in defaults", with(|v| v["defaults"] = json!({"lock_timout": "1s"})), "22023", "defaults.lock_timout", "unknown field"),
        c("timeout over i32", with(|v| v["changes"][0]["statement_timeout"] = json!(2147483648u64)), "22023", "changes[0].statement_timeout", "2147483648 is not a whole number of milliseconds between 0 and 2147483647"),
        c("big_table_bytes over i64", with(|v| v["defaults"] = json!({"big_table_bytes": 9223372036854775808u64})), "22023", "defaults.big_table_bytes", "between 0 and 9223372036854775807"),
        c(
            "change bad lock_timeout",
            with(|v| v["changes"][0]["lock_timeout"] = json!(true)),
            "22023",
            "changes[0].lock_timeout",
            "expected a duration string or milliseconds",
        ),
    ]
}

#[test]
fn bad_manifests_are_refused_with_sqlstate_path_and_message() {
    let cases = cases();
    assert!(cases.len() >= 30, "keep at least 30 bad manifests");
    let mut failures = Vec::new();
    for case in &cases {
        match Manifest::from_value(&case.manifest) {
            Ok(_) => failures.push(format!("{}: accepted", case.name)),
            Err(err) => {
                let message = err.to_string();
                if err.sqlstate().code() != case.sqlstate
                    || err.path() != case.path
                    || !message.contains(case.fragment)
                    || !message.starts_with(case.path)
                {
                    failures.push(format!(
                        "{}: got {} at {}: {message}; wanted {} at {} containing {:?}",
                        case.name,
                        err.sqlstate().code(),
                        err.path(),
                        case.sqlstate,
                        case.path,
                        case.fragment
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn typo_hints_name_the_intended_field() {
    let err = Manifest::from_value(&with(|v| v["chagnes"] = json!([]))).unwrap_err();
    assert_eq!(err.hint().as_deref(), Some("Did you mean \"changes\"?"));
}

#[test]
fn typo_hints_in_nested_objects() {
    let err = Manifest::from_value(&with(|v| v["changes"][0]["repeatble"] = json!(true))).unwrap_err();
    assert_eq!(err.hint().as_deref(), Some("Did you mean \"repeatable\"?"));
    let err = Manifest::from_value(&with(|v| v["defaults"] = json!({"lock_timout": "1s"}))).unwrap_err();
    assert_eq!(err.hint().as_deref(), Some("Did you mean \"lock_timeout\"?"));
    let err = Manifest::from_value(&with(|v| v["requires"] = json!({"postgresql": ">=15"}))).unwrap_err();
    assert_eq!(err.hint().as_deref(), Some("Did you mean \"postgres\"?"));
    let err = Manifest::from_value(&with(|v| v["unrelated"] = json!(1))).unwrap_err();
    assert_eq!(
        err.hint().as_deref(),
        Some("See docs/manifest.md for the fields of manifest format 1.")
    );
}

#[test]
fn oversize_json_text_is_refused() {
    let text = format!(
        "{{\"project\": \"{}\"}}",
        "x".repeat(pg_deploy_core::manifest::MAX_MANIFEST_BYTES)
    );
    let err = Manifest::from_json_str(&text).unwrap_err();
    assert_eq!(err.sqlstate().code(), "54000");
}

#[test]
fn invalid_json_text_is_refused() {
    let err = Manifest::from_json_str("{\"project\": ").unwrap_err();
    assert_eq!(err.sqlstate().code(), "22023");
    assert!(err.to_string().contains("not valid JSON"));
}

#[test]
fn good_manifest_is_read_completely() {
    let v = with(|v| {
        v["format"] = json!(1);
        v["requires"] = json!({"postgres": ">=15", "extensions": ["plpgsql"], "pg_deploy": ">=0.1"});
        v["defaults"] = json!({"lock_timeout": "2s", "statement_timeout": 900000, "search_path": "shop, public",
                                "lock_retries": 3, "allow": ["data_loss"], "big_table_rows": 10, "big_table_bytes": 1024});
        v["changes"][2]["allow"] = json!(["table_rewrite", "access_exclusive"]);
        v["changes"][0]["checksum"] = json!(pg_deploy_core::checksum::sha256_checksum(b"CREATE TABLE a (id int);")
            .to_uppercase()
            .replace("SHA256:", "sha256:"));
        v["changes"][1]["lock_timeout"] = json!("500ms");
    });
    let m = Manifest::from_value(&v).unwrap();
    assert_eq!(m.project, "shop");
    assert_eq!(m.version.to_string(), "1.2.0");
    assert_eq!(m.changes.len(), 3);
    assert_eq!(m.changes[2].kind, ChangeKind::Repeatable);
    assert_eq!(m.changes[1].requires, vec!["0001".to_string()]);
    assert_eq!(m.defaults.statement_timeout.as_deref(), Some("900000"));
    let effective = m.changes[1].settings.over(&m.defaults);
    assert_eq!(effective.lock_timeout.as_deref(), Some("500ms"));
    assert_eq!(effective.search_path.as_deref(), Some("shop, public"));
    assert!(m.sha256.starts_with("sha256:"));
    use pg_deploy_core::hazards::HazardKind;
    assert_eq!(m.thresholds.rows, 10.0);
    assert_eq!(m.thresholds.bytes, 1024);
    assert_eq!(effective.lock_retries, Some(3));
    assert_eq!(effective.allow, Some(vec![HazardKind::DataLoss]));
    let view = m.changes[2].settings.over(&m.defaults);
    assert_eq!(
        view.allow,
        Some(vec![HazardKind::TableRewrite, HazardKind::AccessExclusive])
    );
}

#[test]
fn manifest_sha256_ignores_key_order_and_spacing() {
    let a = Manifest::from_json_str(r#"{"project":"p","version":"1.0.0","changes":[{"id":"a","sql":"SELECT 1"}]}"#)
        .unwrap();
    let b = Manifest::from_json_str(
        "{ \"changes\": [ {\"sql\": \"SELECT 1\", \"id\": \"a\"} ],\n \"version\": \"1.0.0\", \"project\": \"p\" }",
    )
    .unwrap();
    assert_eq!(a.sha256, b.sha256);
}

#[test]
fn names_keep_quotes_semicolons_and_unicode() {
    let m = Manifest::from_value(&with(|v| {
        v["project"] = json!("o'brien; DROP TABLE x; -- ünï");
        v["changes"][0]["id"] = json!("0001 \"quoted\" ✓");
        v["changes"][1]["requires"] = json!(["0001 \"quoted\" ✓"]);
    }))
    .unwrap();
    assert_eq!(m.project, "o'brien; DROP TABLE x; -- ünï");
    assert_eq!(m.changes[0].id, "0001 \"quoted\" ✓");
}

#[test]
fn phase_marks_only_make_sense_together() {
    let with = |change: serde_json::Value| {
        pg_deploy_core::Manifest::from_value(
            &serde_json::json!({"project": "p", "version": "1.0.0", "changes": [change]}),
        )
    };
    let ok = with(serde_json::json!({"id": "b", "sql": "UPDATE t SET x = 1 WHERE id IN (SELECT id FROM t WHERE x IS NULL LIMIT 100)",
                                     "online": true, "repeat_until_no_rows": true, "repeat_pause": "1s"}))
    .unwrap();
    let marks = &ok.changes[0].phase;
    assert!(marks.online && !marks.commit_before);
    assert_eq!(marks.repeat.as_ref().map(|r| r.pause.as_str()), Some("1s"));
    let cases = [
        (
            serde_json::json!({"id": "a", "sql": "x", "online": true, "commit_before": true}),
            "changes[0].commit_before",
        ),
        (
            serde_json::json!({"id": "a", "sql": "x", "repeat_until_no_rows": true}),
            "changes[0].repeat_until_no_rows",
        ),
        (
            serde_json::json!({"id": "a", "sql": "x", "online": true, "repeat_pause": "1s"}),
            "changes[0].repeat_pause",
        ),
        (
            serde_json::json!({"id": "a", "sql": "x", "online": true, "repeat_until_no_rows": true, "repeat_pause": "soon"}),
            "changes[0].repeat_pause",
        ),
        (
            serde_json::json!({"id": "a", "sql": "x", "online": "yes"}),
            "changes[0].online",
        ),
    ];
    for (change, path) in cases {
        let e = with(change.clone()).unwrap_err();
        assert_eq!(e.path(), path, "{change}: {e}");
        assert_eq!(e.sqlstate().code(), "22023", "{change}");
    }
}

/// The manifest `value` read with its checksums deferred, as the extension reads one.
fn deferred(value: &Value) -> Result<Manifest, pg_deploy_core::ManifestError> {
    let (sha256, len) = pg_deploy_core::json::canonical_sha256(value);
    let doc = pg_deploy_core::document::read(value, "$")?;
    Manifest::from_read_document_deferring_checksums(doc, sha256, len)
}

#[test]
fn deferred_checksums_are_computed_when_asked_and_checked_then() {
    let crlf = "CREATE TABLE c (id int);\r\n";
    let mut doc = base();
    doc["changes"][0]["checksum"] = json!(pg_deploy_core::checksum::sql_checksum("CREATE TABLE a (id int);"));
    // The exact bytes of CRLF SQL are a checksum it may declare; it reads as LF.
    doc["changes"][2] = json!({"id": "c", "sql": crlf,
        "checksum": pg_deploy_core::checksum::sha256_checksum(crlf.as_bytes()).to_uppercase().replace("SHA256:", "sha256:")});
    let now = Manifest::from_value(&doc).unwrap();
    let mut later = deferred(&doc).unwrap();
    assert!(later.checksums_deferred() && !now.checksums_deferred());
    assert!(later.changes.iter().all(|c| c.checksum.is_empty()));
    later.compute_checksums().unwrap();
    assert!(!later.checksums_deferred());
    assert_eq!(later, now);
    // Computing twice changes nothing.
    later.compute_checksums().unwrap();
    assert_eq!(later, now);

    // A declared checksum that does not match: the same error, when computed.
    doc["changes"][1]["checksum"] = json!(SQL_1_SHA);
    let error = Manifest::from_value(&doc).unwrap_err().to_string();
    let mut later = deferred(&doc).unwrap();
    assert_eq!(later.compute_checksums().unwrap_err().to_string(), error);
    assert!(error.contains("changes[1].checksum"), "{error}");
    // A malformed one is refused as it is read, either way.
    doc["changes"][1]["checksum"] = json!("sha256:00");
    assert_eq!(
        deferred(&doc).unwrap_err().to_string(),
        Manifest::from_value(&doc).unwrap_err().to_string()
    );
}

/// The head and ids alone (`Manifest::elided`, what apply reads of a manifest
/// it may have applied already): the head's errors are the whole read's, the
/// ids are checked as names, and nothing inside a change is read.
#[test]
fn an_elided_manifest_checks_its_head_and_ids_as_the_whole_read_does() {
    let elided = |doc: &Value, ids: &[&str]| {
        let mut head = doc.clone();
        head["changes"] = json!([]);
        let head: pg_deploy_core::manifest::ManifestDocument = serde_json::from_value(head).unwrap();
        Manifest::elided(head, ids.iter().map(|s| s.to_string()).collect())
    };
    let ids = ["0001", "0002", "view"];
    let whole = Manifest::from_value(&base()).unwrap();
    let read = elided(&base(), &ids).unwrap();
    assert!(read.is_elided() && !whole.is_elided());
    assert_eq!(
        (&read.project, &read.version, &read.schemas),
        (&whole.project, &whole.version, &whole.schemas)
    );
    assert_eq!(read.changes.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ids);
    assert!(read.changes.iter().all(|c| c.sql.is_empty() && c.checksum.is_empty()));
    assert!(read.sha256.is_empty());
    for (field, bad) in [
        ("project", json!(" shop")),
        ("version", json!("1.2")),
        ("schemas", json!(["pg_catalog"])),
    ] {
        let mut doc = base();
        doc[field] = bad;
        assert_eq!(
            elided(&doc, &ids).unwrap_err().to_string(),
            Manifest::from_value(&doc).unwrap_err().to_string(),
            "{field}"
        );
    }
    let mut doc = base();
    doc["changes"][1]["id"] = json!("0002\u{200B}");
    assert_eq!(
        elided(&base(), &["0001", "0002\u{200B}", "view"])
            .unwrap_err()
            .to_string(),
        Manifest::from_value(&doc).unwrap_err().to_string()
    );
}
