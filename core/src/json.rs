//! JSON helpers: the name of a value's type for messages, and the canonical
//! JSON text the manifest's sha256 is taken over.

use serde_json::Value;

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Canonical JSON text: object keys sorted bytewise, no insignificant white space.
/// The manifest's sha256 is taken over these bytes, so it does not depend on how
/// the client formatted the document.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// The sha256 (`sha256:<hex>`) and the length in bytes of `value`'s canonical
/// JSON, computed as it is written: a big manifest is not copied once more.
pub fn canonical_sha256(value: &Value) -> (String, usize) {
    let mut hasher = CanonicalHasher::default();
    hasher.value(value);
    hasher.finish()
}

/// The same hash, for a document that is not a `Value` (the extension reads
/// the manifest straight from its jsonb): the caller writes the canonical
/// text piece by piece, each object's keys in bytewise order.
#[derive(Default)]
pub struct CanonicalHasher(HashingSink);

impl CanonicalHasher {
    /// Punctuation, or the text of a number, boolean or null as written.
    pub fn raw(&mut self, text: &str) {
        self.0.push_str(text);
    }

    /// A string or key, quoted and escaped.
    pub fn string(&mut self, s: &str) {
        write_string(s, &mut self.0);
    }

    /// A whole value.
    pub fn value(&mut self, value: &Value) {
        write_canonical(value, &mut self.0);
    }

    /// `sha256:<hex>` and the length in bytes of the text written.
    pub fn finish(self) -> (String, usize) {
        let digest = sha2::Digest::finalize(self.0.hasher);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        (format!("{}{hex}", crate::checksum::PREFIX), self.0.len)
    }
}

/// Where canonical JSON is written: a String, or a hash and a byte count.
trait Sink {
    fn push(&mut self, c: char);
    fn push_str(&mut self, s: &str);
}

impl Sink for String {
    fn push(&mut self, c: char) {
        String::push(self, c)
    }
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s)
    }
}

#[derive(Default)]
struct HashingSink {
    hasher: sha2::Sha256,
    len: usize,
}

impl Sink for HashingSink {
    fn push(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.push_str(c.encode_utf8(&mut buf));
    }
    fn push_str(&mut self, s: &str) {
        sha2::Digest::update(&mut self.hasher, s.as_bytes());
        self.len += s.len();
    }
}

fn write_canonical(value: &Value, out: &mut impl Sink) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A JSON string as serde_json writes it (the same escapes), without
/// copying it first: the runs that need no escape go out as they are.
fn write_string(s: &str, out: &mut impl Sink) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut run = 0;
    // Every byte that needs an escape is ASCII, so slicing at one keeps to
    // character boundaries.
    let mut i = next_escape(bytes, 0);
    while i < bytes.len() {
        out.push_str(&s[run..i]);
        match bytes[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0C => out.push_str("\\f"),
            b => out.push_str(&format!("\\u{b:04x}")),
        }
        run = i + 1;
        i = next_escape(bytes, run);
    }
    out.push_str(&s[run..]);
    out.push('"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The index of the first byte from `from` on that needs an escape, or the
/// length. Sixteen bytes are tested at a time without a branch per byte (the
/// compiler makes it a few vector instructions): a manifest's SQL is
/// megabytes of text with an escape every line or so.
fn next_escape(bytes: &[u8], from: usize) -> usize {
    const CHUNK: usize = 16;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + CHUNK) {
        if chunk.iter().fold(false, |any, &b| any | needs_escape(b)) {
            break;
        }
        i += CHUNK;
    }
    while i < bytes.len() && !needs_escape(bytes[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_written_piece_by_piece_hashes_as_its_value() {
        let v = serde_json::json!({"a": [1, "x\"y"], "b": null});
        let mut h = CanonicalHasher::default();
        h.raw("{");
        h.string("a");
        h.raw(":[");
        h.value(&serde_json::json!(1));
        h.raw(",");
        h.string("x\"y");
        h.raw("],");
        h.string("b");
        h.raw(":null}");
        assert_eq!(h.finish(), canonical_sha256(&v));
    }

    #[test]
    fn the_streamed_hash_is_the_hash_of_the_canonical_text() {
        let v = serde_json::json!({"b": [1, {"z": "é\n", "a": null}], "a": 1.5});
        let text = canonical_json(&v);
        assert_eq!(
            canonical_sha256(&v),
            (crate::checksum::sha256_checksum(text.as_bytes()), text.len())
        );
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let all: String = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain("é€😀\u{2028}".chars())
            .collect();
        for s in [all.as_str(), "", "plain", "a\"b\\c", "\u{0}\u{1f}\u{7f}"] {
            let mut out = String::new();
            write_string(s, &mut out);
            assert_eq!(out, Value::String(s.into()).to_string(), "{s:?}");
        }
    }

    /// Escapes before, at and after the 16-byte chunks `next_escape` tests
    /// at once, among multi-byte characters.
    #[test]
    fn escapes_anywhere_in_a_long_string_are_written() {
        for len in [15, 16, 17, 31, 32, 33, 70] {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
                    let s: String = (0..len)
                        .map(|i| {
                            if i == at {
                                special
                            } else if i % 7 == 3 {
                                'é'
                            } else {
                                'x'
                            }
                        })
                        .collect();
                    let mut out = String::new();
                    write_string(&s, &mut out);
                    assert_eq!(out, Value::String(s.clone()).to_string(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v: Value = serde_json::from_str(r#"{"b": [1, {"z": 1, "a": "x"}], "a": null}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":null,"b":[1,{"a":"x","z":1}]}"#);
    }
}
