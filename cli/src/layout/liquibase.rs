//! Liquibase formatted SQL: files starting with `--liquibase formatted sql`,
//! each holding changesets that start at `--changeset author:id [attribute:value …]`.
//! Files are read in path order (as `includeAll` does), changesets in file order.
//!
//! - `--rollback SQL` lines become the change's revert;
//! - `runInTransaction:false` makes the change online;
//! - `runOnChange:true` (and `runAlways:true`) make it repeatable;
//! - a `dbms:` list without `postgresql` (or `all`) leaves the changeset out;
//! - `--comment`, `--preconditions` and `--precondition-*` lines are dropped.
//!
//! Ids and history keys are `author:id`, as `databasechangelog` pairs them.

use super::online::{self, Online};
use super::problems::Problems;
use super::{read_text, sql_files_deep, Migration};
use crate::error::CliError;
use std::path::Path;

pub fn is_formatted(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.trim().strip_prefix("--"))
        .is_some_and(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .eq_ignore_ascii_case("liquibase formatted sql")
        })
}

/// The text after `--<word>` (`--changeset`, `-- rollback`), if the line is that directive.
fn directive<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix("--")?.trim_start();
    let head = rest.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = &rest[word.len()..];
    (rest.is_empty() || rest.starts_with([' ', '\t', ':'])).then_some(rest)
}

/// A changeset header: `author:id` and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub author: String,
    pub id: String,
    pub attributes: Vec<(String, String)>,
}

impl Header {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_true(&self, name: &str) -> bool {
        self.attr(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Whether a `dbms:` attribute lets the changeset run on PostgreSQL.
    fn for_postgres(&self) -> bool {
        let Some(list) = self.attr("dbms") else { return true };
        let names: Vec<String> = list.split(',').map(|d| d.trim().to_ascii_lowercase()).collect();
        if names.iter().any(|d| d == "!postgresql") {
            return false;
        }
        let positive: Vec<&String> = names.iter().filter(|d| !d.starts_with('!')).collect();
        positive.is_empty() || positive.iter().any(|d| *d == "postgresql" || *d == "all")
    }
}

/// Parses what follows `--changeset`; Err says what is wrong.
pub fn parse_header(rest: &str) -> Result<Header, &'static str> {
    let mut words = rest.split_whitespace();
    let Some(first) = words.next() else {
        return Err("has no author:id");
    };
    let Some((author, id)) = first.split_once(':') else {
        return Err("has no id (expected author:id)");
    };
    if author.is_empty() {
        return Err("has no author (expected author:id)");
    }
    if id.is_empty() {
        return Err("has no id (expected author:id)");
    }
    let mut attributes = Vec::new();
    for w in words {
        if let Some((k, v)) = w.split_once(':') {
            attributes.push((k.to_string(), v.to_string()));
        }
    }
    Ok(Header {
        author: author.trim_matches('"').to_string(),
        id: id.trim_matches('"').to_string(),
        attributes,
    })
}

/// The changesets of one file.
pub fn read_file(p: &Path) -> Result<Vec<Migration>, CliError> {
    let text = read_text(p)?;
    let mut out: Vec<(Header, Vec<&str>, Vec<String>)> = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = directive(line, "changeset") {
            match parse_header(rest) {
                Ok(header) => out.push((header, Vec::new(), Vec::new())),
                Err(what) => errors.push(CliError::input_hint(
                    format!("{}:{}: the changeset {what}", p.display(), i + 1),
                    "Liquibase changesets start with \"--changeset author:id\".",
                )),
            }
            continue;
        }
        let Some((_, sql, rollback)) = out.last_mut() else {
            continue;
        };
        if let Some(rest) = directive(line, "rollback") {
            rollback.push(rest.trim_start_matches(':').trim().to_string());
        } else if directive(line, "comment").is_none()
            && directive(line, "preconditions").is_none()
            && !line
                .trim_start()
                .trim_start_matches('-')
                .trim_start()
                .starts_with("precondition-")
        {
            sql.push(line);
        }
    }
    if let Some(e) = CliError::all_inputs(errors) {
        return Err(e);
    }
    let mut migrations = Vec::new();
    for (h, sql, rollback) in out {
        if !h.for_postgres() {
            continue;
        }
        let key = format!("{}:{}", h.author, h.id);
        let sql = sql.join("\n").trim_matches('\n').trim_end().to_string() + "\n";
        let revert = rollback.join("\n").trim().to_string();
        let online = if h
            .attr("runInTransaction")
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
        {
            Online::Marker(online::LIQUIBASE_MARKER)
        } else {
            Online::No
        };
        migrations.push(Migration {
            repeatable: h.is_true("runOnChange") || h.is_true("runAlways"),
            revert: (!revert.is_empty() && !revert.eq_ignore_ascii_case("empty")).then_some(revert),
            online,
            ..Migration::versioned(key.clone(), sql, key, p.to_path_buf())
        });
    }
    Ok(migrations)
}

/// The lines (from 1) of `text`'s `--changeset` headers for `key` (`author:id`).
fn changeset_lines(text: &str, key: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            directive(l, "changeset")
                .and_then(|rest| parse_header(rest).ok())
                .is_some_and(|h| format!("{}:{}", h.author, h.id) == key)
        })
        .map(|(i, _)| i + 1)
        .collect()
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut out: Vec<Migration> = Vec::new();
    let mut problems = Problems::default();
    for p in sql_files_deep(dir)? {
        let Some(text) = problems.keep(read_text(&p)) else {
            continue;
        };
        if !is_formatted(&text) {
            problems.push(CliError::input_hint(
                format!("{}:1: not a Liquibase formatted SQL file", p.display()),
                "Its first line must be \"--liquibase formatted sql\"; move other .sql files out of the folder.",
            ));
            continue;
        }
        // How often each id was met in this file so far, to name the right line.
        let mut seen: Vec<String> = Vec::new();
        for m in problems.keep(read_file(&p)).unwrap_or_default() {
            let nth = seen.iter().filter(|id| **id == m.id).count();
            seen.push(m.id.clone());
            if let Some(first) = out.iter().find(|o| o.id == m.id) {
                let first_text = read_text(&first.source).unwrap_or_default();
                problems.push(CliError::input_hint(
                    format!(
                        "duplicate changeset {}: {}:{} and {}:{}",
                        m.id,
                        first.source.display(),
                        changeset_lines(&first_text, &m.id).first().copied().unwrap_or(0),
                        m.source.display(),
                        changeset_lines(&text, &m.id).get(nth).copied().unwrap_or(0)
                    ),
                    "pg-deploy tells changesets apart by author:id; give each its own id.",
                ));
                continue;
            }
            out.push(m);
        }
    }
    problems.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    const FILE: &str = "--liquibase formatted sql\n\n\
        --changeset alice:1\n--comment: the first table\nCREATE TABLE a (id int);\n--rollback DROP TABLE a;\n\n\
        --changeset alice:2 runInTransaction:false\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n\
        --rollback DROP INDEX CONCURRENTLY a_id;\n\n\
        --changeset bob:views runOnChange:true\nCREATE OR REPLACE VIEW v AS SELECT id FROM a;\n\n\
        --changeset bob:mysql-only dbms:mysql\nSELECT 'mysql';\n";

    #[test]
    fn headers() {
        type Case<'a> = (&'a str, Result<(&'a str, &'a str), &'a str>);
        let cases: &[Case] = &[
            (" alice:1", Ok(("alice", "1"))),
            (" alice:create-table runOnChange:true", Ok(("alice", "create-table"))),
            (" \"a b\":1", Err("has no id (expected author:id)")),
            (" alice", Err("has no id (expected author:id)")),
            (" alice:", Err("has no id (expected author:id)")),
            (" :1", Err("has no author (expected author:id)")),
            ("", Err("has no author:id")),
        ];
        for (rest, want) in cases {
            let got = parse_header(rest).map(|h| (h.author, h.id));
            let want = want.map(|(a, i)| (a.to_string(), i.to_string()));
            assert_eq!(got, want, "{rest}");
        }
        assert!(is_formatted("\n-- liquibase formatted sql\n"));
        assert!(!is_formatted("CREATE TABLE x ();\n--liquibase formatted sql\n"));
    }

    #[test]
    fn changesets_rollbacks_and_attributes() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("002.sql", "--liquibase formatted sql\n--changeset carol:3\nSELECT 3;\n"),
                ("001.sql", FILE),
            ],
        );
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.layout, crate::layout::Layout::Liquibase);
        let m = &f.migrations;
        let ids: Vec<&str> = m.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["alice:1", "alice:2", "bob:views", "carol:3"]);
        assert_eq!(m[0].sql, "CREATE TABLE a (id int);\n");
        assert_eq!(m[0].revert.as_deref(), Some("DROP TABLE a;"));
        assert_eq!(m[1].online, Online::Marker(online::LIQUIBASE_MARKER));
        assert!(m[2].repeatable);
        assert_eq!(m[3].key, "carol:3");
    }

    #[test]
    fn bad_changesets_name_the_file_and_line() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[(
                "001.sql",
                "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n--changeset bob\nSELECT 2;\n",
            )],
        );
        let e = read(tmp.path()).expect_err("no id");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("001.sql:4: the changeset has no id"), "{e}");
        testdir::write(
            tmp.path(),
            &[("001.sql", "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n")],
        );
        testdir::write(
            tmp.path(),
            &[("002.sql", "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n")],
        );
        assert!(read(tmp.path())
            .expect_err("dup")
            .to_string()
            .contains("duplicate changeset a:1"));
        // Each duplicate names both headers' lines, in one file or two.
        testdir::write(
            tmp.path(),
            &[(
                "002.sql",
                "--liquibase formatted sql\n--changeset b:1\nSELECT 1;\n--changeset a:1\nSELECT 2;\n--changeset b:1\nSELECT 3;\n",
            )],
        );
        let e = read(tmp.path()).expect_err("dups").to_string();
        assert!(e.contains("2 problems:"), "{e}");
        assert!(e.contains("001.sql:2 and ") && e.contains("002.sql:4\n"), "{e}");
        assert!(e.contains("002.sql:2 and ") && e.contains("002.sql:6"), "{e}");
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("001.sql", FILE), ("003.sql", "SELECT 1;\n")]);
        assert!(read(tmp.path())
            .expect_err("plain")
            .to_string()
            .contains("003.sql:1: not a Liquibase"));
    }
}
