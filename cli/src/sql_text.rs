//! Just enough of PostgreSQL's lexer to split a migration file into
//! statements and read each statement's leading words, the way psql does:
//! comments (`--`, nested `/* */`), string literals (`'…'`, `E'…'`), quoted
//! identifiers (`"…"`) and dollar quotes (`$tag$…$tag$`) never end a statement
//! or count as words; a `;` ends one only outside parentheses and outside a
//! `BEGIN … END` body of CREATE FUNCTION / PROCEDURE (psql's own heuristic).
//!
//! The extension parses the SQL with PostgreSQL's parser; this only serves the
//! client's decisions about whole files (which statements a file holds, and
//! whether one of them cannot run inside a transaction block).

/// A token: a word (keyword or bare identifier, upper-cased), or anything
/// else (a literal, a quoted identifier, an operator or punctuation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Word(String),
    Other,
}

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The 1-based line its first token is on.
    pub line: usize,
    pub tokens: Vec<Token>,
}

impl Statement {
    /// The statement's words, in order (literals and quoted names left out).
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().filter_map(|t| match t {
            Token::Word(w) => Some(w.as_str()),
            Token::Other => None,
        })
    }

    fn word(&self, i: usize) -> Option<&str> {
        match self.tokens.get(i) {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }

    fn has_word(&self, word: &str) -> bool {
        self.words().any(|w| w == word)
    }
}

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn ident_cont(c: char) -> bool {
    ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// The statements of `sql`, in order; empty statements (`;;`, comments only)
/// are left out. Never fails: an unterminated literal or comment runs to the end.
pub fn statements(sql: &str) -> Vec<Statement> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut current: Option<Statement> = None;
    let (mut parens, mut begins) = (0usize, 0usize);
    let mut line = 1;
    let mut i = 0;
    // Pushes a token, opening a statement at `at_line` if none is open.
    let push = |current: &mut Option<Statement>, token: Token, at_line: usize| {
        current
            .get_or_insert_with(|| Statement {
                line: at_line,
                tokens: Vec::new(),
            })
            .tokens
            .push(token);
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '\'' {
            i = skip_quoted(&chars, i, '\'', false, &mut line);
            push(&mut current, Token::Other, start_line);
        } else if c == '"' {
            i = skip_quoted(&chars, i, '"', false, &mut line);
            push(&mut current, Token::Other, start_line);
        } else if c == '$' && dollar_tag(&chars, i).is_some() {
            let tag = dollar_tag(&chars, i).unwrap_or_default();
            i = skip_dollar(&chars, i, &tag, &mut line);
            push(&mut current, Token::Other, start_line);
        } else if ident_start(c) {
            let begin = i;
            while i < chars.len() && ident_cont(chars[i]) {
                i += 1;
            }
            let word: String = chars[begin..i].iter().collect::<String>().to_uppercase();
            if (word == "E") && chars.get(i) == Some(&'\'') {
                // E'…': backslash escapes.
                i = skip_quoted(&chars, i, '\'', true, &mut line);
                push(&mut current, Token::Other, start_line);
                continue;
            }
            if parens == 0 && in_routine_definition(current.as_ref()) {
                match word.as_str() {
                    "BEGIN" => begins += 1,
                    "CASE" if begins > 0 => begins += 1,
                    "END" if begins > 0 => begins -= 1,
                    _ => {}
                }
            }
            push(&mut current, Token::Word(word), start_line);
        } else if c == ';' && parens == 0 && begins == 0 {
            out.extend(current.take());
            i += 1;
        } else {
            match c {
                '(' => parens += 1,
                ')' => parens = parens.saturating_sub(1),
                _ => {}
            }
            if c.is_ascii_digit() {
                while i + 1 < chars.len() && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '.') {
                    i += 1;
                }
            }
            push(&mut current, Token::Other, start_line);
            i += 1;
        }
        if current.is_none() {
            parens = 0;
            begins = 0;
        }
    }
    out.extend(current);
    out
}

/// Whether the statement so far starts CREATE [OR REPLACE] FUNCTION|PROCEDURE.
fn in_routine_definition(current: Option<&Statement>) -> bool {
    let Some(st) = current else { return false };
    let mut words = st.tokens.iter().map(|t| match t {
        Token::Word(w) => w.as_str(),
        Token::Other => "",
    });
    if words.next() != Some("CREATE") {
        return false;
    }
    match words.next() {
        Some("FUNCTION" | "PROCEDURE") => true,
        Some("OR") => words.next() == Some("REPLACE") && matches!(words.next(), Some("FUNCTION" | "PROCEDURE")),
        _ => false,
    }
}

/// Skips a literal opened by `quote` at `i` (doubled quotes escape it; with
/// `backslash`, a backslash escapes the next character); returns the index after it.
fn skip_quoted(chars: &[char], mut i: usize, quote: char, backslash: bool, line: &mut usize) -> usize {
    i += 1;
    while i < chars.len() {
        let c = chars[i];
        if backslash && c == '\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        *line += usize::from(c == '\n');
        i += 1;
    }
    i
}

/// The tag of a dollar quote opening at `i` (`$$` → "", `$fn$` → "fn"), or
/// None when `$` does not open one (a parameter such as `$1`).
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    let mut j = i + 1;
    if chars.get(j).is_some_and(|&c| ident_start(c)) {
        while chars.get(j).is_some_and(|&c| ident_start(c) || c.is_ascii_digit()) {
            j += 1;
        }
    }
    (chars.get(j) == Some(&'$')).then(|| chars[i + 1..j].iter().collect())
}

fn skip_dollar(chars: &[char], i: usize, tag: &str, line: &mut usize) -> usize {
    let close: Vec<char> = format!("${tag}$").chars().collect();
    let mut j = i + close.len();
    while j < chars.len() {
        if chars[j..].starts_with(&close) {
            return j + close.len();
        }
        *line += usize::from(chars[j] == '\n');
        j += 1;
    }
    j
}

/// What the statement is when PostgreSQL refuses to run it inside a
/// transaction block and it is a routine part of a migration: CREATE INDEX
/// CONCURRENTLY, DROP INDEX CONCURRENTLY, REINDEX … CONCURRENTLY (and REINDEX
/// DATABASE / SYSTEM), VACUUM, ALTER TABLE … DETACH PARTITION … CONCURRENTLY.
/// None for every other statement (the extension refuses the rest of what
/// cannot run in a transaction, such as CREATE DATABASE, with its own hint).
pub fn outside_transaction(st: &Statement) -> Option<&'static str> {
    match st.word(0)? {
        "CREATE" => {
            let at = if st.word(1) == Some("UNIQUE") { 2 } else { 1 };
            (st.word(at) == Some("INDEX") && st.word(at + 1) == Some("CONCURRENTLY"))
                .then_some("CREATE INDEX CONCURRENTLY")
        }
        "DROP" => {
            (st.word(1) == Some("INDEX") && st.word(2) == Some("CONCURRENTLY")).then_some("DROP INDEX CONCURRENTLY")
        }
        "REINDEX" => {
            if st.has_word("CONCURRENTLY") {
                Some("REINDEX CONCURRENTLY")
            } else if st.words().nth(1).is_some_and(|w| w == "DATABASE" || w == "SYSTEM") {
                Some("REINDEX DATABASE / SYSTEM")
            } else {
                None
            }
        }
        "VACUUM" => Some("VACUUM"),
        "ALTER" if st.word(1) == Some("TABLE") => {
            let words: Vec<&str> = st.words().collect();
            let detach = words.windows(2).position(|w| w == ["DETACH", "PARTITION"])?;
            words[detach..]
                .contains(&"CONCURRENTLY")
                .then_some("ALTER TABLE … DETACH PARTITION … CONCURRENTLY")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<Option<&'static str>> {
        statements(sql).iter().map(outside_transaction).collect()
    }

    fn first_words(sql: &str) -> Vec<String> {
        statements(sql)
            .iter()
            .map(|s| s.words().take(3).collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[test]
    fn splits_like_psql() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE t (a text DEFAULT ';');\n\
                   /* block /* nested; */ still; */ INSERT INTO t VALUES (E'it\\'s; here');\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $fn$ SELECT 1; $fn$;\n\
                   SELECT \"odd;name\" FROM t;;\n  -- trailing comment only\n";
        assert_eq!(
            first_words(sql),
            ["CREATE TABLE T", "INSERT INTO T", "CREATE FUNCTION F", "SELECT FROM T"]
        );
        let lines: Vec<usize> = statements(sql).iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(statements("-- nothing\n/* at all */\n;\n").is_empty());
        assert_eq!(statements("SELECT 1").len(), 1, "no final semicolon");
        assert_eq!(
            statements("SELECT $1; SELECT a$b$ FROM t;").len(),
            2,
            "not dollar quotes"
        );
    }

    #[test]
    fn sql_standard_bodies_keep_their_semicolons() {
        let sql = "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  \
                   SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nCREATE INDEX CONCURRENTLY i ON t (a);";
        assert_eq!(kinds(sql), [None, Some("CREATE INDEX CONCURRENTLY")]);
        // BEGIN and END elsewhere are not bodies.
        assert_eq!(statements("BEGIN; SELECT 1; END;").len(), 3);
        assert_eq!(statements("CREATE TABLE t (begin int); SELECT 1;").len(), 2);
    }

    #[test]
    fn recognises_what_cannot_run_in_a_transaction() {
        assert_eq!(
            kinds(
                "create unique index concurrently if not exists i on t (a);\n\
                 DROP INDEX CONCURRENTLY IF EXISTS i;\n\
                 REINDEX INDEX CONCURRENTLY i; REINDEX (VERBOSE) TABLE CONCURRENTLY t; REINDEX DATABASE d;\n\
                 VACUUM (ANALYZE) t; vacuum;\n\
                 ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;"
            ),
            [
                Some("CREATE INDEX CONCURRENTLY"),
                Some("DROP INDEX CONCURRENTLY"),
                Some("REINDEX CONCURRENTLY"),
                Some("REINDEX CONCURRENTLY"),
                Some("REINDEX DATABASE / SYSTEM"),
                Some("VACUUM"),
                Some("VACUUM"),
                Some("ALTER TABLE … DETACH PARTITION … CONCURRENTLY"),
            ]
        );
        assert_eq!(
            kinds(
                "CREATE INDEX i ON t (a); REINDEX TABLE t; ANALYZE t; DROP INDEX i;\n\
                 ALTER TABLE p DETACH PARTITION p1; ALTER TABLE p ADD COLUMN concurrently_x int;\n\
                 CREATE INDEX \"concurrently\" ON t (a); COMMENT ON TABLE t IS 'CREATE INDEX CONCURRENTLY';\n\
                 -- CREATE INDEX CONCURRENTLY i ON t (a);\n\
                 DO $$ BEGIN EXECUTE 'VACUUM'; END $$; SELECT $q$ VACUUM $q$;"
            ),
            vec![None; 10]
        );
    }

    proptest::proptest! {
        /// Any text splits without a panic, into at most one statement more than it has semicolons.
        #[test]
        fn any_text_splits(sql in r#"(?s)[-/*'"$;()a-zA-Z_0-9 \n\\EéÖ]{0,80}"#) {
            let list = statements(&sql);
            proptest::prop_assert!(list.len() <= sql.matches(';').count() + 1);
            for st in &list {
                proptest::prop_assert!(!st.tokens.is_empty());
                proptest::prop_assert!(st.line >= 1 && st.line <= sql.lines().count().max(1));
                let _ = outside_transaction(st);
            }
        }
    }

    #[test]
    fn unterminated_text_runs_to_the_end() {
        for sql in [
            "SELECT 'open",
            "SELECT \"open",
            "SELECT $x$ open",
            "/* open",
            "SELECT E'\\",
            "$",
            "'",
        ] {
            assert!(statements(sql).len() <= 1, "{sql}");
        }
    }
}
