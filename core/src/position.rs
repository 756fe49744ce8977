//! Positions inside a change's SQL, as a person reads them: 1-based line and
//! column (in characters), from byte offsets or PostgreSQL's cursor positions.

/// 1-based (line, column) of the byte offset `byte` in `text`.
pub fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let byte = floor_char_boundary(text, byte.min(text.len()));
    let before = &text[..byte];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Byte offset of PostgreSQL's cursor position (1-based, counted in characters).
pub fn cursor_to_byte(text: &str, cursor: usize) -> usize {
    text.char_indices()
        .nth(cursor.saturating_sub(1))
        .map_or(text.len(), |(i, _)| i)
}

/// First byte at or after `byte` that is not white space or a SQL comment, so
/// a statement's position points at its first word.
pub fn skip_blank(text: &str, mut byte: usize) -> usize {
    let bytes = text.as_bytes();
    loop {
        while byte < bytes.len() && bytes[byte].is_ascii_whitespace() {
            byte += 1;
        }
        if bytes[byte..].starts_with(b"--") {
            byte = text[byte..].find('\n').map_or(text.len(), |i| byte + i + 1);
        } else if bytes[byte..].starts_with(b"/*") {
            byte = text[byte + 2..].find("*/").map_or(text.len(), |i| byte + 2 + i + 2);
        } else {
            return byte;
        }
    }
}

fn floor_char_boundary(text: &str, mut byte: usize) -> usize {
    while !text.is_char_boundary(byte) {
        byte -= 1;
    }
    byte
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let sql = "CREATE TABLE a ();\nCREATE TABLE b (x nope);";
        assert_eq!(line_col(sql, 0), (1, 1));
        let at = sql.find("nope").unwrap();
        assert_eq!(line_col(sql, at), (2, 19));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let sql = "SELECT 'ünï', bad";
        assert_eq!(line_col(sql, sql.find("bad").unwrap()), (1, 15));
        assert_eq!(cursor_to_byte(sql, 15), sql.find("bad").unwrap());
    }

    #[test]
    fn cursor_past_the_end_is_the_end() {
        assert_eq!(cursor_to_byte("abc", 10), 3);
        assert_eq!(cursor_to_byte("abc", 0), 0);
    }

    #[test]
    fn skips_white_space_and_comments() {
        let sql = ";\n  -- a comment\n /* block */ CREATE";
        assert_eq!(&sql[skip_blank(sql, 1)..], "CREATE");
        assert_eq!(skip_blank("  -- only", 0), 9);
    }
}
