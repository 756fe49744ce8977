//! Values printed as PostgreSQL prints them in jsonb's text output, for
//! the digests the extension computes and SQL recomputes (lineage rows,
//! deployments): any byte of difference would show as a broken chain.

use std::fmt::Write;

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// `EXTRACT(epoch FROM ts)` of a timestamptz (microseconds since
/// 2000-01-01) as jsonb prints the numeric: seconds with six decimals.
pub fn push_epoch(out: &mut String, ts: i64) {
    let unix = i128::from(ts) + i128::from(POSTGRES_EPOCH_MICROS);
    let sign = if unix < 0 { "-" } else { "" };
    let abs = unix.unsigned_abs();
    let _ = write!(out, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000);
}

/// A JSON string as PostgreSQL's escape_json writes it.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `[a, b]`, as jsonb prints an array.
/// `push` may refuse an item (None): the array is then left unfinished.
pub fn push_array<T>(out: &mut String, items: &[T], mut push: impl FnMut(&mut String, &T) -> Option<()>) -> Option<()> {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push(out, item)?;
    }
    out.push(']');
    Some(())
}

/// `{"k": v}`, keys in jsonb's order.
pub fn push_object<'a, T: 'a>(
    out: &mut String,
    pairs: impl Iterator<Item = (&'a str, &'a T)>,
    mut push: impl FnMut(&mut String, &T) -> Option<()>,
) -> Option<()> {
    let mut pairs: Vec<(&str, &T)> = pairs.collect();
    pairs.sort_by(|a, b| key_order(a.0, b.0));
    out.push('{');
    for (i, (key, item)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_string(out, key);
        out.push_str(": ");
        push(out, item)?;
    }
    out.push('}');
    Some(())
}

/// jsonb's order of an object's keys: shorter first, then bytewise.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}
