//! dbmate: `<version>_<name>.sql` with a `-- migrate:up` section and an
//! optional `-- migrate:down` section (the change's revert). The version is the
//! leading digits (often a timestamp) and orders numerically.
//!
//! Ids are the file name without `.sql`; the history key is the version
//! without leading zeros.

use super::{file_name, list, non_empty, read_text, Migration};
use crate::error::CliError;
use crate::order::{cmp_digits, leading_digits};
use std::path::Path;

pub fn is_up_marker(line: &str) -> bool {
    is_marker(line, "up")
}

fn is_marker(line: &str, which: &str) -> bool {
    let t = line.trim_start();
    let Some(rest) = t.strip_prefix("--") else { return false };
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix("migrate:") else {
        return false;
    };
    rest.strip_prefix(which)
        .is_some_and(|r| r.is_empty() || r.starts_with(char::is_whitespace))
}

/// Splits a dbmate file into its up and down sections (text between the
/// markers, surrounding blank lines removed). None if there is no up marker.
pub fn sections(text: &str) -> Option<(String, Option<String>)> {
    #[derive(PartialEq)]
    enum In {
        Neither,
        Up,
        Down,
    }
    let mut state = In::Neither;
    let (mut up, mut down): (Option<Vec<&str>>, Option<Vec<&str>>) = (None, None);
    for line in text.lines() {
        if is_marker(line, "up") {
            state = In::Up;
            up.get_or_insert_with(Vec::new);
            continue;
        }
        if is_marker(line, "down") {
            state = In::Down;
            down.get_or_insert_with(Vec::new);
            continue;
        }
        match state {
            In::Up => up.get_or_insert_with(Vec::new).push(line),
            In::Down => down.get_or_insert_with(Vec::new).push(line),
            In::Neither => {}
        }
    }
    let join = |v: Vec<&str>| v.join("\n").trim_matches('\n').trim_end().to_string() + "\n";
    let up = join(up?);
    let down = down.map(join).filter(|d| !d.trim().is_empty());
    Some((up, down))
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut out: Vec<(String, Migration)> = Vec::new();
    for p in list(dir)? {
        let name = file_name(&p);
        if p.is_dir() || !name.ends_with(".sql") {
            continue;
        }
        let id = name.trim_end_matches(".sql").to_string();
        let version = leading_digits(&id).to_string();
        if version.is_empty() {
            return Err(CliError::input_hint(
                format!("{} is not a dbmate migration name", p.display()),
                "dbmate names are <version>_<name>.sql, the version being digits (usually a timestamp).",
            ));
        }
        if let Some((_, first)) = out.iter().find(|(v, _)| cmp_digits(v, &version).is_eq()) {
            return Err(CliError::input(format!(
                "duplicate version {}: {} and {}",
                super::golang_migrate::key(&version),
                first.source.display(),
                p.display()
            )));
        }
        let text = read_text(&p)?;
        let Some((up, down)) = sections(&text) else {
            return Err(CliError::input_hint(
                format!("{} has no \"-- migrate:up\" section", p.display()),
                "dbmate files start with a \"-- migrate:up\" line; the down part follows \"-- migrate:down\".",
            ));
        };
        let up = non_empty(up, &p)?;
        out.push((
            version.clone(),
            Migration {
                revert: down,
                ..Migration::versioned(id, up, super::golang_migrate::key(&version), p)
            },
        ));
    }
    out.sort_by(|a, b| cmp_digits(&a.0, &b.0));
    Ok(out.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn splits_sections() {
        let text = "-- migrate:up\nCREATE TABLE a (id int);\n\n-- migrate:down\nDROP TABLE a;\n";
        assert_eq!(
            sections(text),
            Some(("CREATE TABLE a (id int);\n".into(), Some("DROP TABLE a;\n".into())))
        );
        let text = "-- migrate:up transaction:false\nSELECT 1;\n-- migrate:down\n\n";
        assert_eq!(sections(text), Some(("SELECT 1;\n".into(), None)));
        let text = "-- migrate:down\nDROP TABLE a;\n-- migrate:up\nCREATE TABLE a ();\n";
        assert_eq!(
            sections(text),
            Some(("CREATE TABLE a ();\n".into(), Some("DROP TABLE a;\n".into())))
        );
        assert_eq!(sections("SELECT 1;"), None);
        assert!(!is_up_marker("-- migrate:upper"));
        assert!(is_up_marker("--migrate:up"));
    }

    #[test]
    fn reads_in_numeric_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("10_b.sql", "-- migrate:up\nSELECT 10;\n"),
                ("9_a.sql", "-- migrate:up\nSELECT 9;\n-- migrate:down\nSELECT -9;\n"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        assert_eq!(m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["9_a", "10_b"]);
        assert_eq!(m[0].revert.as_deref(), Some("SELECT -9;\n"));
        assert_eq!(m[1].key, "10");
    }

    #[test]
    fn missing_up_section_is_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("1_a.sql", "SELECT 1;\n")]);
        assert!(read(tmp.path()).expect_err("no up").to_string().contains("migrate:up"));
    }
}
