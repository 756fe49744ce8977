// How the jsonb arguments are read (jsonb_arg.rs, jsonb_manifest.rs).

/// `text` as a jsonb datum, as a caller's argument arrives.
fn jsonb_datum(text: &str) -> pg_sys::Datum {
    let text = std::ffi::CString::new(text).expect("no NUL in the test's JSON");
    // SAFETY: jsonb_in reads a C string and returns a jsonb datum.
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(pg_sys::Datum::from(text.as_ptr()))])
            .expect("jsonb_in returns a datum")
    }
}

/// A jsonb argument is read by walking it (jsonb_arg.rs): the value and
/// nesting depth must be those of the text jsonb_out prints, which is
/// what the arguments were read from before.
#[pg_test]
fn a_jsonb_argument_reads_as_its_printed_text() {
    let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
    let docs = [
        r#"{"a": 1, "b": [true, false, null], "c": {"d": "é \"q\" \\ \t \u0001 😀"}}"#,
        "[]",
        "{}",
        "null",
        "true",
        "1",
        r#""s""#,
        "-0",
        "1.50",
        "1e2",
        "-12.5e-3",
        "123456789012345678901234567890",
        "0.1",
        "[[[]], {}]",
        r#"{"": "", "z": {"y": [1, {"x": []}]}, "aa": [1, 2.0, "3"]}"#,
        &deep,
    ];
    for doc in docs {
        let printed = Spi::get_one_with_args::<String>("SELECT $1::jsonb::text", &[doc.into()])
            .expect("the document is jsonb")
            .expect("not NULL");
        let text = std::ffi::CString::new(printed.clone()).expect("no NUL in jsonb text");
        // SAFETY: jsonb_in reads a C string and returns a jsonb datum, which walk reads.
        let (walked, depth) = unsafe {
            let datum =
                pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(pg_sys::Datum::from(text.as_ptr()))])
                    .expect("jsonb_in returns a datum");
            crate::jsonb_arg::walk(datum)
        };
        let expected: Value = serde_json::from_str(&printed).expect("jsonb_out prints JSON");
        assert_eq!(walked.expect("every number reads"), expected, "{doc}");
        assert_eq!(depth, pg_deploy_core::argument::nesting_depth(&printed), "{doc}");
    }
}


/// A manifest read straight from its jsonb (jsonb_manifest.rs), its
/// checksums computed, is the one read through a serde value, hash included,
/// or the same error; a document
/// that does not read that way is left to the value path (None), which says
/// what is wrong.
#[pg_test]
fn a_manifest_reads_the_same_straight_from_its_jsonb() {
    let change = r#"{"id": "t", "sql": "CREATE TABLE t (id int)"}"#;
    let deep = format!(r#"{{"project": "p", "version": "1.0.0", "format": {}1{}, "changes": [{change}]}}"#,
        "[".repeat(70), "]".repeat(70));
    // (document, how it reads straight from the jsonb: a manifest, an error, or left to the value path)
    let cases = [
        (format!(r#"{{"project": "p", "version": "1.0.0", "changes": [{change}]}}"#), "manifest"),
        (
            r#"{"format": 1, "project": "p", "version": "1.2.3-rc.1+b",
                "requires": {"postgres": ">=15", "extensions": null},
                "defaults": {"lock_timeout": 500, "statement_timeout": "2s", "lock_retries": 3,
                             "allow": ["data_loss"], "big_table_rows": 10, "search_path": null},
                "schemas": ["app"],
                "changes": [{"id": "a", "sql": "CREATE SCHEMA app;\r\n", "checksum": null,
                             "revert": "DROP SCHEMA app", "verify": "SELECT true"},
                            {"id": "b", "sql": "CREATE TABLE app.t () -- é \"q\" \\ \t \u0001 😀", "requires": ["a"], "repeatable": false,
                             "lock_timeout": "1s"}]}"#
                .to_string(),
            "manifest",
        ),
        // Rules below the types: the same error either way.
        (format!(r#"{{"project": " p", "version": "1.0.0", "changes": [{change}]}}"#), "error"),
        (format!(r#"{{"project": "p", "version": "one", "changes": [{change}]}}"#), "error"),
        (format!(r#"{{"format": 2, "project": "p", "version": "1.0.0", "changes": [{change}]}}"#), "error"),
        (format!(r#"{{"format": {{"zz": 1, "b": [1.5, -0]}}, "project": "p", "version": "1.0.0", "changes": [{change}]}}"#), "error"),
        (r#"{"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "x"}, {"id": "a", "sql": "y"}]}"#.to_string(), "error"),
        (r#"{"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "x", "checksum": "sha256:00"}]}"#.to_string(), "error"),
        (r#"{"project": "p", "version": "1.0.0", "changes": []}"#.to_string(), "error"),
        // A declared checksum is checked when the checksums are computed (deferred).
        (r#"{"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "x", "checksum": "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}]}"#.to_string(), "manifest"),
        (r#"{"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "x", "checksum": "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4880"}]}"#.to_string(), "error"),
        // Shape errors, too deep, not an object: the value path says what and where.
        (format!(r#"{{"projet": "p", "version": "1.0.0", "changes": [{change}]}}"#), "value path"),
        (format!(r#"{{"project": 1, "version": "1.0.0", "changes": [{change}]}}"#), "value path"),
        (format!(r#"{{"version": "1.0.0", "changes": [{change}]}}"#), "value path"),
        (format!(r#"{{"project": null, "version": "1.0.0", "changes": [{change}]}}"#), "value path"),
        (r#"{"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "x", "online": "yes"}]}"#.to_string(), "value path"),
        (deep, "value path"),
        ("[]".to_string(), "value path"),
        ("\"p\"".to_string(), "value path"),
        ("null".to_string(), "value path"),
    ];
    for (doc, expected) in cases {
        let datum = jsonb_datum(&doc);
        let read = crate::jsonb_manifest::read(crate::jsonb_arg::StoredJsonb(datum)).map(|read| {
            let mut manifest = read?;
            assert!(manifest.checksums_deferred(), "{doc}");
            manifest.compute_checksums()?;
            Ok::<_, pg_deploy_core::ManifestError>(manifest)
        });
        let outcome = match &read {
            Some(Ok(_)) => "manifest",
            Some(Err(_)) => "error",
            None => "value path",
        };
        assert_eq!(outcome, expected, "{doc}");
        let Some(read) = read else { continue };
        // SAFETY: the datum is a jsonb.
        let (value, _) = unsafe { crate::jsonb_arg::walk(datum) };
        let through_value = pg_deploy_core::Manifest::from_value(&value.expect("numbers read"));
        match (read, through_value) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{doc}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{doc}"),
            (a, b) => panic!("{doc}: {a:?} against {b:?}"),
        }
    }
}

/// A manifest read elided (`jsonb_manifest::read_elided`: its head and its
/// changes' ids, for a re-apply of the bytes its project last applied) has
/// the head and ids of the whole manifest; what does not read that way is
/// left to the whole read (None), which says what is wrong.
#[pg_test]
fn an_elided_manifest_has_the_head_and_ids_of_the_whole_one() {
    let head = r#""format": 1, "project": "p", "version": "1.2.3-rc.1+b", "requires": {"postgres": ">=15"},
                  "defaults": {"lock_timeout": 500, "big_table_rows": 10}, "schemas": ["app"]"#;
    let ok = r#"[{"id": "a", "sql": "x"}]"#;
    let doc = |head: &str, changes: &str| format!(r#"{{{head}, "changes": {changes}}}"#);
    let cases = [
        (doc(head, r#"[{"id": "a", "sql": "x"}, {"id": "b é", "sql": "y", "requires": ["a"], "checksum": null}]"#), true),
        (doc(r#""project": "p", "version": "1.0.0""#, ok), true),
        // Read whole instead.
        (doc(r#""project": " p", "version": "1.0.0""#, ok), false),
        (doc(r#""project": "p", "version": "one""#, ok), false),
        (doc(r#""project": "p", "version": "1.0.0", "projet": 1"#, ok), false),
        (doc(r#""project": "p", "version": "1.0.0""#, "{}"), false),
        (doc(r#""project": "p", "version": "1.0.0""#, "[1]"), false),
        (doc(r#""project": "p", "version": "1.0.0""#, r#"[{"sql": "x"}]"#), false),
        (doc(r#""project": "p", "version": "1.0.0""#, r#"[{"id": 1, "sql": "x"}]"#), false),
        (doc(r#""project": "p", "version": "1.0.0""#, r#"[{"id": " a", "sql": "x"}]"#), false),
        (r#"{"project": "p", "version": "1.0.0"}"#.to_string(), false),
        ("[]".to_string(), false),
    ];
    for (doc, elided) in cases {
        let read = crate::jsonb_manifest::read_elided(crate::jsonb_arg::StoredJsonb(jsonb_datum(&doc)));
        assert_eq!(read.is_some(), elided, "{doc}");
        let Some(read) = read else { continue };
        assert!(read.is_elided(), "{doc}");
        let whole = pg_deploy_core::Manifest::from_json_str(&doc).expect("a valid manifest");
        let head = |m: &pg_deploy_core::Manifest| {
            format!("{} {} {:?} {:?} {:?} {:?}", m.project, m.version, m.requires, m.defaults, m.thresholds, m.schemas)
        };
        assert_eq!(head(&read), head(&whole), "{doc}");
        let ids = |m: &pg_deploy_core::Manifest| m.changes.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&read), ids(&whole), "{doc}");
    }
}

/// The digest of a manifest's jsonb bytes does not depend on how its text
/// was written (jsonb keeps one form of a document), and differs for any
/// other document.
#[pg_test]
fn the_same_document_has_the_same_jsonb_digest() {
    let digest = |text: &str| crate::jsonb_manifest::digest(crate::jsonb_arg::StoredJsonb(jsonb_datum(text)));
    let a = digest(r#"{"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "x"}]}"#);
    assert_eq!(a, digest(r#"{"changes":[{"sql":"x","id":"a"}],"version":"1.0.0","project":"p"}"#));
    assert_eq!(a, digest(r#"{"project": "q", "project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "x"}]}"#));
    assert_ne!(a, digest(r#"{"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "x "}]}"#));
    assert!(a.starts_with("sha256:") && a.len() == 71, "{a}");
}
