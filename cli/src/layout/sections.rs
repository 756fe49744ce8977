//! Files with an up and a down section between marker lines (dbmate's
//! `-- migrate:up`, goose's `-- +goose Up`): the split both layouts share.

/// What a line of such a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Up,
    Down,
    /// A marker that is no SQL (goose's StatementBegin, NO TRANSACTION…): dropped.
    Drop,
    Sql,
}

/// The up section (None if there is no up marker), the down section (None
/// when missing or blank) and the up marker's line (1-based). Sections are
/// the text between markers, surrounding blank lines removed; lines before
/// the first marker belong to no section.
pub fn split(text: &str, classify: impl Fn(&str) -> Line) -> (Option<String>, Option<String>, usize) {
    #[derive(PartialEq)]
    enum In {
        Neither,
        Up,
        Down,
    }
    let mut state = In::Neither;
    let (mut up, mut down): (Option<Vec<&str>>, Option<Vec<&str>>) = (None, None);
    let mut up_line = 0;
    for (i, line) in text.lines().enumerate() {
        match classify(line) {
            Line::Up => {
                state = In::Up;
                up.get_or_insert_with(Vec::new);
                if up_line == 0 {
                    up_line = i + 1;
                }
            }
            Line::Down => {
                state = In::Down;
                down.get_or_insert_with(Vec::new);
            }
            Line::Drop => {}
            Line::Sql => match state {
                In::Up => up.get_or_insert_with(Vec::new).push(line),
                In::Down => down.get_or_insert_with(Vec::new).push(line),
                In::Neither => {}
            },
        }
    }
    let join = |v: Vec<&str>| v.join("\n").trim_matches('\n').trim_end().to_string() + "\n";
    let down = down.map(join).filter(|d| !d.trim().is_empty());
    (up.map(join), down, up_line)
}

/// The first line (1-based) before the first marker that holds SQL, not a
/// comment: text no section takes, which the tools refuse or ignore.
pub fn stray_sql(text: &str, classify: impl Fn(&str) -> Line) -> Option<usize> {
    for (i, line) in text.lines().enumerate() {
        match classify(line) {
            Line::Up | Line::Down => return None,
            Line::Drop => {}
            Line::Sql => {
                let t = line.trim();
                if !t.is_empty() && !t.starts_with("--") {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(l: &str) -> Line {
        match l.trim() {
            "-- up" => Line::Up,
            "-- down" => Line::Down,
            "-- drop" => Line::Drop,
            _ => Line::Sql,
        }
    }

    #[test]
    fn splits_and_finds_stray_sql() {
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, usize, Option<usize>);
        let cases: &[Case] = &[
            ("-- up\nA;\n-- down\nB;\n", Some("A;\n"), Some("B;\n"), 1, None),
            ("-- c\n\n-- up\n-- drop\n\nA;\n\n-- drop\n", Some("A;\n"), None, 3, None),
            ("-- down\nB;\n-- up\nA;\n", Some("A;\n"), Some("B;\n"), 3, None),
            ("-- up\nA;\n-- down\n\n", Some("A;\n"), None, 1, None),
            ("X;\n-- up\nA;\n", Some("A;\n"), None, 2, Some(1)),
            ("-- only a comment\n", None, None, 0, None),
        ];
        for (text, up, down, line, stray) in cases {
            let (u, d, l) = split(text, classify);
            assert_eq!((u.as_deref(), d.as_deref(), l), (*up, *down, *line), "{text:?}");
            assert_eq!(stray_sql(text, classify), *stray, "{text:?}");
        }
    }
}
