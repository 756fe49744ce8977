//! The manifest's sha256 is taken over its canonical JSON (docs/manifest.md,
//! "The manifest hash"). Deployments record it, so its form must never change:
//! these documents pin the canonical text and the hash. The expected hashes
//! were computed outside pg_deploy (Python's hashlib over the expected text).

use pg_deploy_core::json::canonical_json;
use pg_deploy_core::Manifest;
use serde_json::Value;

/// Checks the canonical text of `input` and, for a manifest pg_deploy
/// accepts, that its recorded sha256 is that of the text.
fn pinned(input: &str, canonical: &str, sha256_hex: &str) {
    let value: Value = serde_json::from_str(input).expect("JSON");
    assert_eq!(canonical_json(&value), canonical);
    assert_eq!(pg_deploy_core::checksum::sha256_hex(canonical.as_bytes()), sha256_hex);
    if let Ok(m) = Manifest::from_json_str(input) {
        assert_eq!(m.sha256, format!("sha256:{sha256_hex}"));
    }
}

#[test]
fn a_minimal_manifest() {
    pinned(
        r#"{"project":"p","version":"1.0.0","changes":[{"id":"a","sql":"SELECT 1"}]}"#,
        r#"{"changes":[{"id":"a","sql":"SELECT 1"}],"project":"p","version":"1.0.0"}"#,
        "48b31b559e02c88e7b6b2bba9afd60312e36173b2a2407c17afb4cdb287d99a0",
    );
}

#[test]
fn nested_objects_sort_their_keys_keep_nulls_and_array_order() {
    let input = r#"{
      "version": "2.0.0", "project": "shop", "format": 1,
      "requires": {"pg_deploy": ">=0.1", "postgres": ">=15", "extensions": ["pgcrypto"]},
      "defaults": {"statement_timeout": "15min", "lock_timeout": 2000, "lock_retries": 3,
                   "big_table_rows": 18446744073709551615, "big_table_bytes": 9007199254740993, "allow": ["data_loss"]},
      "changes": [
        {"sql": "CREATE TABLE t (id int);", "id": "0001", "revert": null, "repeatable": false},
        {"requires": ["0001"], "id": "0002", "sql": "SELECT 2", "lock_timeout": "500ms"}
      ]
    }"#;
    let canonical = concat!(
        r#"{"changes":[{"id":"0001","repeatable":false,"revert":null,"sql":"CREATE TABLE t (id int);"},"#,
        r#"{"id":"0002","lock_timeout":"500ms","requires":["0001"],"sql":"SELECT 2"}],"#,
        r#""defaults":{"allow":["data_loss"],"big_table_bytes":9007199254740993,"big_table_rows":18446744073709551615,"#,
        r#""lock_retries":3,"lock_timeout":2000,"statement_timeout":"15min"},"format":1,"project":"shop","#,
        r#""requires":{"extensions":["pgcrypto"],"pg_deploy":">=0.1","postgres":">=15"},"version":"2.0.0"}"#
    );
    pinned(
        input,
        canonical,
        "67bb1ceed6d4d19a53b984cb4cebbc57e7898ade5125ada5e83f9651e2fdc7d7",
    );
    assert!(Manifest::from_json_str(input).is_ok());
}

#[test]
fn non_ascii_is_written_as_utf8_however_it_was_escaped() {
    // \u00e9 and a surrogate pair in the input; U+2028 raw: all written as UTF-8.
    let input =
        "{\"project\":\"caf\\u00e9 \u{2713}\",\"version\":\"1.0.0\",\"changes\":[{\"id\":\"\u{1F600} \u{fc}ber\",\
                 \"sql\":\"SELECT '\u{65e5}\u{672c}' -- \\ud83d\\ude00 \u{2028}\"}]}";
    let canonical =
        "{\"changes\":[{\"id\":\"\u{1F600} \u{fc}ber\",\"sql\":\"SELECT '\u{65e5}\u{672c}' -- \u{1F600} \u{2028}\"}],\
                     \"project\":\"caf\u{e9} \u{2713}\",\"version\":\"1.0.0\"}";
    pinned(
        input,
        canonical,
        "1ac880ba16940e939e465ab0d0edfbf6e0ab9c32e0af87fc4d7e1ea806490502",
    );
    assert!(Manifest::from_json_str(input).is_ok());
}

#[test]
fn only_quote_backslash_and_control_characters_are_escaped() {
    let input = r#"{"project":"p","version":"1.0.0","changes":[{"id":"a","sql":"SELECT '\"q\" \\ \/ \b\f\n\r\t \u0001 \u001f \u007f'"}]}"#;
    // Short escapes for \b \f \n \r \t, \u00XX (lower-case hex) for other
    // control characters; "/" and U+007F are written as they are.
    let canonical =
        "{\"changes\":[{\"id\":\"a\",\"sql\":\"SELECT '\\\"q\\\" \\\\ / \\b\\f\\n\\r\\t \\u0001 \\u001f \u{7f}'\"}],\
                     \"project\":\"p\",\"version\":\"1.0.0\"}";
    pinned(
        input,
        canonical,
        "f3eef5fa4e5d49b3356133fd286735acbd989fda63f0710c7c74ef9b93e89d0d",
    );
    assert!(Manifest::from_json_str(input).is_ok());
}

/// Numbers other than whole numbers never occur in a manifest pg_deploy
/// accepts, so no recorded hash depends on how they are written; pinned all
/// the same, so that a change of serde_json's float formatting is noticed
/// (and docs/manifest.md updated). The floats chosen parse exactly with or
/// without serde_json's `float_roundtrip` feature.
#[test]
fn floats_and_integers_outside_u64_are_written_as_serde_json_writes_f64() {
    pinned(
        r#"{"z":{"b":[1.5,0.1,-2.5e-7,1E2,1.0,-0,100000000000000000000,1e15,1e16,0.000001],"a":-1},
            "a":[true,false,null,18446744073709551616,-9223372036854775808]}"#,
        concat!(
            r#"{"a":[true,false,null,1.8446744073709552e+19,-9223372036854775808],"#,
            r#""z":{"a":-1,"b":[1.5,0.1,-2.5e-7,100.0,1.0,-0.0,1e+20,1000000000000000.0,1e+16,1e-6]}}"#
        ),
        "f0dbd012432065233b6b6464350d8e3a8d6d0ee4d4d1e5e593aac47f4225eed9",
    );
}

#[test]
fn keys_sort_by_utf8_bytes_and_the_last_duplicate_wins() {
    // Byte order puts U+FFFF before U+1F600; RFC 8785 (UTF-16 code units) would
    // not. Neither occurs in an accepted manifest, whose keys are ASCII.
    let value: Value =
        serde_json::from_str("{\"b\":1,\"a\":2,\"\u{e9}\":3,\"\u{1F600}\":4,\"\u{ffff}\":5,\"A\":6,\"\":7,\"a\":8}")
            .unwrap();
    assert_eq!(
        canonical_json(&value),
        "{\"\":7,\"A\":6,\"a\":8,\"b\":1,\"\u{e9}\":3,\"\u{ffff}\":5,\"\u{1F600}\":4}"
    );
}

#[test]
fn formatting_and_key_order_do_not_change_the_hash() {
    let a = Manifest::from_json_str(r#"{"project":"p","version":"1.0.0","changes":[{"id":"a","sql":"SELECT 1"}]}"#)
        .unwrap();
    let b = Manifest::from_json_str(
        "{ \"changes\" : [ { \"sql\" : \"SELECT 1\" ,\n \"id\" : \"\\u0061\" } ] ,\r\n\t\"version\":\"1.0.0\",\"project\":\"p\" }",
    )
    .unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(
        a.sha256,
        "sha256:48b31b559e02c88e7b6b2bba9afd60312e36173b2a2407c17afb4cdb287d99a0"
    );
}
