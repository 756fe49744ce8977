//! A lineage row's content digest, as SQL's `deploy.lineage_digest` computes
//! it: the sha256 (hex) of the text of a jsonb array of the row's columns.
//! The extension computes it here for the rows a deployment writes sealed
//! (one query fewer, and the rows cross into SQL once); `verify_lineage`
//! recomputes it in SQL, so any difference shows as a broken chain.

use crate::checksum::sha256_hex;
use crate::jsonb_text::{push_array, push_epoch, push_string};
use std::fmt::Write;

/// One element of the array, as jsonb prints it.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Null,
    Int(i64),
    /// A timestamptz as PostgreSQL keeps it (microseconds since 2000-01-01),
    /// printed as `EXTRACT(epoch FROM …)` does: seconds with six decimals.
    Epoch(i64),
    Text(&'a str),
    /// A text[] (None: SQL NULL; an element None: a NULL element).
    Texts(Option<&'a [Option<&'a str>]>),
}

/// The timestamptz `to_timestamp(seconds)` makes of Unix seconds: PostgreSQL
/// moves them to its epoch and rounds to the microsecond (rint) in double.
pub fn to_timestamp(unix_seconds: f64) -> i64 {
    ((unix_seconds - 946_684_800.0) * 1_000_000.0).round_ties_even() as i64
}

/// The digest of the row whose columns are `fields`, in deploy.lineage_digest's order.
pub fn lineage_digest(fields: &[Field<'_>]) -> String {
    let mut text = String::with_capacity(256);
    let _ = push_array(&mut text, fields, push_field);
    sha256_hex(text.as_bytes())
}

/// Never refuses a field (the Option is `push_array`'s).
fn push_field(out: &mut String, field: &Field<'_>) -> Option<()> {
    match field {
        Field::Null | Field::Texts(None) => out.push_str("null"),
        Field::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Field::Epoch(ts) => push_epoch(out, *ts),
        Field::Text(s) => push_string(out, s),
        Field::Texts(Some(items)) => {
            return push_array(out, items, |out, item| {
                match item {
                    Some(s) => push_string(out, s),
                    None => out.push_str("null"),
                }
                Some(())
            })
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(fields: &[Field<'_>]) -> String {
        let mut out = String::new();
        let _ = push_array(&mut out, fields, push_field);
        out
    }

    /// What PostgreSQL 15 prints for the same jsonb_build_array(...)::text.
    #[test]
    fn prints_as_jsonb_does() {
        let names = [Some("public"), Some("t \"q\""), None];
        let fields = [
            Field::Int(42),
            Field::Epoch(0),
            Field::Text("a\\b\n\t\u{1}é"),
            Field::Null,
            Field::Texts(Some(&names)),
            Field::Texts(Some(&[])),
            Field::Texts(None),
        ];
        // SELECT jsonb_build_array(42, EXTRACT(epoch FROM '2000-01-01 00:00:00+00'::timestamptz),
        //   E'a\\b\n\t\x01é', NULL, ARRAY['public', 't "q"', NULL], '{}'::text[], NULL::text[])::text
        assert_eq!(
            text(&fields),
            r#"[42, 946684800.000000, "a\\b\n\t\u0001é", null, ["public", "t \"q\"", null], [], null]"#
        );
    }

    #[test]
    fn timestamps_round_as_to_timestamp_does() {
        // to_timestamp(1733082840.123456) is 2024-12-01 19:54:00.123456+00.
        let ts = to_timestamp(1_733_082_840.123_456);
        assert_eq!(text(&[Field::Epoch(ts)]), "[1733082840.123456]");
        assert_eq!(text(&[Field::Epoch(to_timestamp(0.5))]), "[0.500000]");
        assert_eq!(text(&[Field::Epoch(to_timestamp(-1.25))]), "[-1.250000]");
    }

    #[test]
    fn the_digest_is_the_sha256_of_that_text() {
        // SELECT encode(sha256(convert_to(jsonb_build_array(1, 'x', NULL)::text, 'UTF8')), 'hex')
        assert_eq!(
            lineage_digest(&[Field::Int(1), Field::Text("x"), Field::Null]),
            sha256_hex(br#"[1, "x", null]"#)
        );
    }
}
