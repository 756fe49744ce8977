//! A jsonb argument as text, turned into a value with its nesting bounded
//! first: a manifest or options document nested deeper than anything
//! pg_deploy reads is refused with 54000, never with a parser's panic.

use crate::error::ManifestError;
use serde_json::Value;

/// The deepest nesting of arrays and objects an argument may have. Manifests
/// need 4 levels; 64 leaves room and stays far below serde_json's limit (128).
pub const MAX_DEPTH: usize = 64;

/// The deepest nesting of arrays and objects in JSON `text`.
pub fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Refuses an argument named `path` nested `depth` levels deep when that is
/// past [`MAX_DEPTH`].
pub fn check_depth(depth: usize, path: &str) -> Result<(), ManifestError> {
    if depth > MAX_DEPTH {
        return Err(ManifestError::TooLarge {
            path: path.to_string(),
            what: "the nesting depth of arrays and objects",
            size: depth,
            limit: MAX_DEPTH,
        });
    }
    Ok(())
}

/// The path of the first key or string in `value` holding non-ASCII text
/// (`path` names `value` itself, e.g. `$`).
pub fn first_non_ascii(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) => (!s.is_ascii()).then(|| path.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_non_ascii(v, &format!("{path}[{i}]"))),
        Value::Object(members) => members.iter().find_map(|(k, v)| {
            let here = format!("{path}.{k}");
            if k.is_ascii() {
                first_non_ascii(v, &here)
            } else {
                Some(here)
            }
        }),
        _ => None,
    }
}

/// Parses the text of a jsonb argument named `path` (`$` for the manifest,
/// `options` for the options).
pub fn parse_argument(text: &str, path: &str) -> Result<Value, ManifestError> {
    check_depth(nesting_depth(text), path)?;
    serde_json::from_str(text).map_err(|e| ManifestError::InvalidValue {
        path: path.to_string(),
        reason: format!("not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_counts_arrays_and_objects_but_not_strings() {
        assert_eq!(nesting_depth(r#"{"a": [1, {"b": "[[[{{{"}]}"#), 3);
        assert_eq!(nesting_depth(r#""\"[""#), 0);
        assert_eq!(nesting_depth("1"), 0);
    }

    #[test]
    fn deep_documents_are_refused_with_54000() {
        for levels in [65, 200, 5_000] {
            let err = parse_argument(&nested(levels), "$").unwrap_err();
            assert_eq!(err.sqlstate().code(), "54000", "{levels}");
            assert!(
                err.to_string().contains(&format!("is {levels}, over the limit of 64")),
                "{err}"
            );
        }
        assert!(parse_argument(&nested(64), "options").is_ok());
    }

    #[test]
    fn finds_the_first_non_ascii_key_or_string() {
        use serde_json::json;
        let cases = [
            (json!({"a": ["x", "y"]}), None),
            (
                json!({"changes": [{"id": "a"}, {"id": "b", "sql": "CREATE TABLE \"café\" ()"}]}),
                Some("$.changes[1].sql"),
            ),
            (json!({"naïve": 1}), Some("$.naïve")),
            (json!("é"), Some("$")),
            (json!([1, true, null, 2.5]), None),
        ];
        for (doc, want) in cases {
            assert_eq!(first_non_ascii(&doc, "$").as_deref(), want, "{doc}");
        }
    }
}
