//! Column and relation qualifiers stripped from deparsed queries (views,
//! rules, BEGIN ATOMIC bodies): from PostgreSQL 16 on, a query over one
//! relation is deparsed without them, so they are left out on every major;
//! schema qualifiers stay. The SQL function this module's parent replaced
//! did it with a regular expression, which `strip` still runs on text that
//! is not ASCII ([[:alpha:]] there follows the database's locale). ASCII
//! text, nearly all of it, is scanned here instead: compiling that
//! expression was a twentieth of a small first deployment's instructions.

use super::{regexp_replace, scan};
use pgrx::pg_sys;
use std::cell::OnceCell;

/// The qualifiers to strip: any identifier and its dot, but a schema's.
pub struct Quals {
    /// Every schema of the database.
    schemas: Vec<Vec<u8>>,
    /// Their names as `quote_ident` writes them, which is how deparsed text has them.
    quoted: OnceCell<Vec<Vec<u8>>>,
    pattern: OnceCell<Vec<u8>>,
}

impl Quals {
    pub(crate) fn new(schemas: Vec<Vec<u8>>) -> Quals {
        Quals {
            schemas,
            quoted: OnceCell::new(),
            pattern: OnceCell::new(),
        }
    }

    /// `regexp_replace(deparsed, pattern, '', 'g')` (see `build`).
    pub fn strip(&self, deparsed: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let deparsed = deparsed?;
        if deparsed.is_ascii() {
            return Some(strip_ascii(&deparsed, self.quoted()));
        }
        let pattern = self.pattern.get_or_init(|| self.build());
        regexp_replace(&deparsed, pattern, b"")
    }

    /// What the regular expression leaves of `text`, whatever its bytes (the tests' oracle).
    #[cfg(any(test, feature = "pg_test"))]
    pub fn by_expression(&self, text: &[u8]) -> Option<Vec<u8>> {
        regexp_replace(text, self.pattern.get_or_init(|| self.build()), b"")
    }

    fn quoted(&self) -> &[Vec<u8>] {
        self.quoted.get_or_init(|| {
            self.schemas
                .iter()
                .map(|s| scan::call_text(pg_sys::F_QUOTE_IDENT, &[Some(scan::text_datum(s))]).unwrap_or_default())
                .collect()
        })
    }

    /// The expression `strip_ascii` follows, byte for byte what the SQL function used.
    fn build(&self) -> Vec<u8> {
        let mut pattern = br#"(?<![[:alnum:]_."$])(?!(?:"#.to_vec();
        for (i, quoted) in self.quoted().iter().enumerate() {
            if i > 0 {
                pattern.push(b'|');
            }
            pattern.extend(regexp_replace(quoted, br"([^[:alnum:]_])", br"\\\1").unwrap_or_default());
        }
        pattern.extend_from_slice(br#")\.)([[:alpha:]_][[:alnum:]_$]*|"(?:[^"]|"")+")\.(?=[[:alpha:]_"])"#);
        pattern
    }
}

/// What `regexp_replace(text, pattern, '', 'g')` leaves of ASCII `text`,
/// for the pattern `build` writes: at each place, left to right, where a
/// match starts, its longest match is removed and the search goes on after it.
pub fn strip_ascii(text: &[u8], schemas: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        match qualifier_at(text, at, schemas) {
            Some(end) => at = end,
            None => {
                out.push(text[at]);
                at += 1;
            }
        }
    }
    out
}

/// [[:alnum:]_$] in ASCII.
fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// [[:alpha:]_"] in ASCII: what may follow the dot.
fn starts_name(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'"'
}

/// The end (after its dot) of the match starting at `at`, if one does.
fn qualifier_at(text: &[u8], at: usize, schemas: &[Vec<u8>]) -> Option<usize> {
    // (?<![[:alnum:]_."$])
    if at > 0 && (word(text[at - 1]) || text[at - 1] == b'.' || text[at - 1] == b'"') {
        return None;
    }
    // (?!(?:schema|...)\.)
    let rest = &text[at..];
    if schemas
        .iter()
        .any(|s| rest.starts_with(s) && rest.get(s.len()) == Some(&b'.'))
    {
        return None;
    }
    let dot = match text[at] {
        // [[:alpha:]_][[:alnum:]_$]* can only end where its dot is.
        c if c.is_ascii_alphabetic() || c == b'_' => {
            let mut end = at + 1;
            while end < text.len() && word(text[end]) {
                end += 1;
            }
            end
        }
        b'"' => return quoted_qualifier(text, at),
        _ => return None,
    };
    (text.get(dot) == Some(&b'.') && text.get(dot + 1).copied().is_some_and(starts_name)).then_some(dot + 1)
}

/// "(?:[^"]|"")+"\.(?=[[:alpha:]_"]) at `at` (a quote): the content runs over
/// other bytes and doubled quotes; the first run of quotes of odd length
/// holds the closing quote, last in the run, and nothing can go on past it.
fn quoted_qualifier(text: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < text.len() {
        if text[i] != b'"' {
            i += 1;
            continue;
        }
        let run = text[i..].iter().take_while(|&&c| c == b'"').count();
        if run % 2 == 1 {
            let closing = i + run - 1;
            let followed =
                text.get(closing + 1) == Some(&b'.') && text.get(closing + 2).copied().is_some_and(starts_name);
            // The content must not be empty.
            return (closing > at + 1 && followed).then_some(closing + 2);
        }
        i += run;
    }
    None
}
