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
}
