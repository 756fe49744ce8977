//! Migration folders: detect the layout, read the migrations in order.
//! Each format lives in its own module; this one holds what they share.

pub mod dbmate;
pub mod diesel;
pub mod flyway;
pub mod golang_migrate;
pub mod goose;
pub mod liquibase;
pub mod online;
pub mod plain;
pub mod pop;
pub mod prisma;
pub mod problems;
pub mod sections;
pub mod sqitch;
pub mod sqlx;
pub mod versioned;

use crate::error::CliError;
pub use crate::placeholder::Placeholders;
use std::fs;
use std::path::{Path, PathBuf};

/// A migrations folder's layout; `--layout` takes the names clap lists
/// (`migrate` and `sql` are accepted as hidden aliases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// V<version>__<name>.sql, R__<name>.sql, U<version>__<name>.sql
    Flyway,
    /// <version>_<name>.up.sql and .down.sql (also sqlx reversible)
    #[value(alias = "migrate")]
    GolangMigrate,
    /// <timestamp>_<name>.sql with -- migrate:up / -- migrate:down
    Dbmate,
    /// sqitch.plan with deploy/, revert/, verify/
    Sqitch,
    /// <timestamp>_<name>/migration.sql
    Prisma,
    /// <timestamp>_<name>/up.sql and down.sql
    Diesel,
    /// <version>_<name>.sql with -- +goose Up / -- +goose Down
    Goose,
    /// <version>_<name>[.postgres][.autocommit].up.sql (gobuffalo pop, ory/popx)
    Pop,
    /// --liquibase formatted sql files with --changeset author:id
    Liquibase,
    /// <version>_<name>.sql, or .up.sql and .down.sql
    Sqlx,
    /// v<version>/*.sql sub-folders (temporal's versioned/)
    Versioned,
    /// ordered .sql files
    #[value(alias = "sql")]
    Plain,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Flyway => "flyway",
            Layout::GolangMigrate => "golang-migrate",
            Layout::Dbmate => "dbmate",
            Layout::Sqitch => "sqitch",
            Layout::Prisma => "prisma",
            Layout::Diesel => "diesel",
            Layout::Goose => "goose",
            Layout::Pop => "pop",
            Layout::Liquibase => "liquibase",
            Layout::Sqlx => "sqlx",
            Layout::Versioned => "versioned",
            Layout::Plain => "plain",
        }
    }

    /// Every layout's name, comma-separated, for messages.
    pub fn names() -> String {
        use clap::ValueEnum;
        Layout::value_variants()
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One migration read from a folder, ready to become a manifest change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The change id in the manifest (stable: derived from the file name only).
    pub id: String,
    pub sql: String,
    pub repeatable: bool,
    /// Down / undo / revert script.
    pub revert: Option<String>,
    /// Verify script (Sqitch).
    pub verify: Option<String>,
    /// Ids of changes this one depends on (Sqitch dependencies).
    pub requires: Vec<String>,
    /// The key the tool's own history uses for this migration: a version
    /// (digits or a Flyway version), a Sqitch change name, a Prisma folder name.
    pub key: String,
    /// The file the SQL came from, for messages.
    pub source: PathBuf,
    /// Whether it runs after the deployment commits, outside any transaction
    /// block: its tool's marker (set by the layout), or found by [`online::settle`].
    pub online: online::Online,
}

impl Migration {
    /// A versioned migration with no revert, verify or dependencies; the
    /// layouts that have those set them on top.
    pub fn versioned(id: String, sql: String, key: String, source: PathBuf) -> Migration {
        Migration {
            id,
            sql,
            repeatable: false,
            revert: None,
            verify: None,
            requires: Vec::new(),
            key,
            source,
            online: online::Online::No,
        }
    }
}

/// A folder read in one layout.
#[derive(Debug, Clone)]
pub struct Folder {
    pub layout: Layout,
    pub migrations: Vec<Migration>,
    /// A project name the folder declares (Sqitch's `%project`).
    pub declared_project: Option<String>,
    /// What the user should know about how the files were read.
    pub warnings: Vec<String>,
}

/// Reads `dir` in the given layout, or in the one detected, without placeholder values.
#[cfg(test)]
pub fn read_folder(dir: &Path, layout: Option<Layout>) -> Result<Folder, CliError> {
    read_folder_with(dir, layout, &Placeholders::default())
}

/// [`read_folder`] with placeholder values (`--placeholder`, the environment).
pub fn read_folder_with(dir: &Path, layout: Option<Layout>, placeholders: &Placeholders) -> Result<Folder, CliError> {
    let meta = fs::metadata(dir).map_err(|e| CliError::input(format!("cannot read folder {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(CliError::input(format!("{} is not a folder", dir.display())));
    }
    let layout = match layout {
        Some(l) => l,
        None => detect(dir)?,
    };
    let (mut migrations, declared_project) = match layout {
        Layout::Flyway => (flyway::read(dir)?, None),
        Layout::GolangMigrate => (golang_migrate::read(dir)?, None),
        Layout::Dbmate => (dbmate::read(dir)?, None),
        Layout::Sqitch => {
            let (m, project) = sqitch::read(dir)?;
            (m, project)
        }
        Layout::Prisma => (prisma::read(dir)?, None),
        Layout::Diesel => (diesel::read(dir)?, None),
        Layout::Goose => (goose::read(dir)?, None),
        Layout::Pop => (pop::read(dir)?, None),
        Layout::Liquibase => (liquibase::read(dir)?, None),
        Layout::Sqlx => (sqlx::read(dir)?, None),
        Layout::Versioned => (versioned::read(dir)?, None),
        Layout::Plain => (plain::read(dir)?, None),
    };
    if migrations.is_empty() {
        return Err(CliError::input_hint(
            format!("no migrations found in {} (layout {})", dir.display(), layout.name()),
            "See docs/cli.md for the file names each layout reads.",
        ));
    }
    let mut warnings = placeholders.render(layout, &mut migrations)?;
    warnings.extend(record_empty(&mut migrations));
    warnings.extend(online::settle(layout, &mut migrations)?);
    Ok(Folder {
        layout,
        migrations,
        declared_project,
        warnings,
    })
}

/// Detects the layout from the folder's contents, most specific first.
pub fn detect(dir: &Path) -> Result<Layout, CliError> {
    if dir.join("sqitch.plan").is_file() {
        return Ok(Layout::Sqitch);
    }
    let entries = list(dir)?;
    if entries.iter().any(|p| p.is_dir() && p.join("migration.sql").is_file()) {
        return Ok(Layout::Prisma);
    }
    if entries.iter().any(|p| p.is_dir() && p.join("up.sql").is_file()) {
        return Ok(Layout::Diesel);
    }
    if versioned::is_versioned(dir)? {
        return Ok(Layout::Versioned);
    }
    let sql_files: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.is_file() && file_name(p).ends_with(".sql"))
        .collect();
    if sql_files.iter().any(|p| flyway::is_flyway_name(&file_name(p))) {
        return Ok(Layout::Flyway);
    }
    // Pop before golang-migrate: its names are golang-migrate's plus a dialect
    // or .autocommit, which golang-migrate would run for every database.
    if sql_files.iter().any(|p| pop::is_pop_only_name(&file_name(p))) {
        return Ok(Layout::Pop);
    }
    if sql_files.iter().any(|p| {
        let n = file_name(p);
        n.ends_with(".up.sql") || n.ends_with(".down.sql")
    }) {
        return Ok(Layout::GolangMigrate);
    }
    for p in &sql_files {
        let text = read_text(p)?;
        if liquibase::is_formatted(&text) {
            return Ok(Layout::Liquibase);
        }
        if text.lines().any(goose::is_up_marker) {
            return Ok(Layout::Goose);
        }
        if text.lines().any(dbmate::is_up_marker) {
            return Ok(Layout::Dbmate);
        }
    }
    if !sql_files.is_empty() {
        return Ok(Layout::Plain);
    }
    // Liquibase changelogs often keep their SQL in sub-folders only.
    for p in sql_files_deep(dir)? {
        if liquibase::is_formatted(&read_text(&p)?) {
            return Ok(Layout::Liquibase);
        }
    }
    Err(CliError::input_hint(
        format!(
            "cannot tell the layout of {}: no sqitch.plan, no */migration.sql, no .sql files",
            dir.display()
        ),
        format!(
            "Pass --layout ({}) or point at the folder that holds the migrations.",
            Layout::names()
        ),
    ))
}

/// The entries of a folder, sorted by name.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let rd = fs::read_dir(dir).map_err(|e| CliError::input(format!("cannot read folder {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| CliError::input(format!("cannot read folder {}: {e}", dir.display())))?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// The `.sql` files of a folder and its sub-folders, in path order.
pub fn sql_files_deep(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for p in list(dir)? {
        if p.is_dir() {
            out.extend(sql_files_deep(&p)?);
        } else if file_name(&p).ends_with(".sql") {
            out.push(p);
        }
    }
    Ok(out)
}

/// `<version>_<name>.sql`: the id (file name without `.sql`) and the version
/// digits; bad input naming the file otherwise (`tool` and `hint` for the message).
pub fn numbered(p: &Path, tool: &str, hint: &str) -> Result<(String, String), CliError> {
    let id = file_name(p).trim_end_matches(".sql").to_string();
    let version = crate::order::leading_digits(&id).to_string();
    if version.is_empty() {
        return Err(CliError::input_hint(
            format!("{} is not a {tool} migration name", p.display()),
            hint,
        ));
    }
    Ok((id, version))
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A file's text; unreadable or non-UTF-8 files are bad input.
pub fn read_text(p: &Path) -> Result<String, CliError> {
    let bytes = fs::read(p).map_err(|e| CliError::input(format!("cannot read {}: {e}", p.display())))?;
    String::from_utf8(bytes).map_err(|e| {
        CliError::input_hint(
            format!(
                "{} is not valid UTF-8 (byte {})",
                p.display(),
                e.utf8_error().valid_up_to()
            ),
            "Save migration files as UTF-8.",
        )
    })
}

/// The SQL recorded for an empty migration file: the extension needs some
/// text, and a comment runs as nothing.
pub const EMPTY_SQL: &str = "-- empty migration file: recorded so the history matches the folder\n";

/// Empty migration files (ory/kratos has 19, left where a dialect needs no
/// change) become changes that do nothing, with a warning each: refusing
/// them would make such folders unusable, and skipping them would leave
/// gaps `adopt` cannot map.
fn record_empty(migrations: &mut [Migration]) -> Vec<String> {
    let mut warnings = Vec::new();
    for m in migrations.iter_mut().filter(|m| m.sql.trim().is_empty()) {
        m.sql = EMPTY_SQL.to_string();
        warnings.push(format!(
            "{} is empty: recorded as change \"{}\", which does nothing",
            m.source.display(),
            m.id
        ));
    }
    warnings
}

/// Sorts `(key, migration)` pairs by key and refuses two with the same key,
/// naming both files, every such pair in one error; `what` says what the key
/// is ("version", "change").
pub fn ordered<K: Ord>(
    mut list: Vec<(K, Migration)>,
    what: &str,
    show: impl Fn(&K) -> String,
    hint: &str,
) -> Result<Vec<Migration>, CliError> {
    list.sort_by(|a, b| a.0.cmp(&b.0));
    let mut problems = problems::Problems::default();
    for pair in list.windows(2) {
        if pair[0].0 == pair[1].0 {
            problems.push(CliError::input_hint(
                format!(
                    "duplicate {what} {}: {} and {}",
                    show(&pair[0].0),
                    pair[0].1.source.display(),
                    pair[1].1.source.display()
                ),
                hint,
            ));
        }
    }
    problems.finish(list.into_iter().map(|(_, m)| m).collect())
}

/// A number of any length that orders as one (`9` < `10`, `1` = `001`).
#[derive(Debug, Clone)]
pub struct Number(pub String);

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Number {}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        crate::order::cmp_digits(&self.0, &other.0)
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Removes a wrapping `BEGIN;` … `COMMIT;` (or `ROLLBACK;`), as Sqitch's
/// templates write them: pg_deploy runs every change in its own transaction
/// already and refuses transaction control inside one. Only whole lines that
/// are the first and last statement lines are removed; anything else is kept.
pub fn strip_transaction_wrapper(sql: &str) -> String {
    let lines: Vec<&str> = sql.lines().collect();
    let is_code = |l: &&str| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with("--")
    };
    let first = lines.iter().position(&is_code);
    let last = lines.iter().rposition(&is_code);
    let (Some(first), Some(last)) = (first, last) else {
        return sql.to_string();
    };
    let norm = |l: &str| l.trim().trim_end_matches(';').trim().to_ascii_uppercase();
    let begins = matches!(
        norm(lines[first]).as_str(),
        "BEGIN" | "START TRANSACTION" | "BEGIN TRANSACTION"
    );
    let ends = matches!(
        norm(lines[last]).as_str(),
        "COMMIT" | "ROLLBACK" | "END" | "COMMIT TRANSACTION"
    );
    if first >= last || !begins || !ends {
        return sql.to_string();
    }
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if i != first && i != last {
            out.push(l);
        }
    }
    let mut text = out.join("\n");
    if sql.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
pub(crate) mod testdir {
    use std::fs;
    use std::path::Path;

    /// Writes (relative path, content) pairs under `dir`.
    pub fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let p = dir.join(name);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).expect("mkdir");
            }
            fs::write(p, text).expect("write");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_layout() {
        let cases: &[(&[(&str, &str)], Layout)] = &[
            (
                &[("sqitch.plan", "%project=x\n"), ("deploy/a.sql", "SELECT 1;")],
                Layout::Sqitch,
            ),
            (&[("20240101000000_init/migration.sql", "SELECT 1;")], Layout::Prisma),
            (&[("V1__init.sql", "SELECT 1;")], Layout::Flyway),
            (&[("R__views.sql", "SELECT 1;")], Layout::Flyway),
            (&[("1_init.up.sql", "SELECT 1;")], Layout::GolangMigrate),
            (
                &[("001_init.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\n")],
                Layout::Dbmate,
            ),
            (&[("001_init.sql", "SELECT 1;")], Layout::Plain),
            (&[("1_a/up.sql", "SELECT 1;")], Layout::Diesel),
            (&[("1_a.sql", "-- +goose Up\nSELECT 1;")], Layout::Goose),
            (&[("1_a.postgres.up.sql", "SELECT 1;")], Layout::Pop),
            (&[("1_a.autocommit.up.sql", "SELECT 1;")], Layout::Pop),
            (&[("v1.0/a.sql", "SELECT 1;")], Layout::Versioned),
            (&[("versioned/v1.0/a.sql", "SELECT 1;")], Layout::Versioned),
            (
                &[("a.sql", "--liquibase formatted sql\n--changeset a:1\nSELECT 1;")],
                Layout::Liquibase,
            ),
            (
                &[("db/a.sql", "--liquibase formatted sql\n--changeset a:1\nSELECT 1;")],
                Layout::Liquibase,
            ),
        ];
        for (files, want) in cases {
            let tmp = tempfile::tempdir().expect("tmp");
            testdir::write(tmp.path(), files);
            assert_eq!(detect(tmp.path()).expect("detect"), *want, "{files:?}");
        }
    }

    #[test]
    fn empty_or_missing_folders_are_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        let e = detect(tmp.path()).expect_err("empty");
        assert_eq!(e.exit_code(), 2);
        let e = read_folder(&tmp.path().join("nope"), None).expect_err("missing");
        assert!(e.to_string().contains("cannot read folder"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn layout_names_match_the_values_clap_accepts() {
        use clap::ValueEnum;
        assert_eq!(
            Layout::names(),
            "flyway, golang-migrate, dbmate, sqitch, prisma, diesel, goose, pop, liquibase, sqlx, versioned, plain"
        );
        for l in Layout::value_variants() {
            assert_eq!(Layout::from_str(l.name(), false), Ok(*l));
        }
        assert_eq!(Layout::from_str("migrate", false), Ok(Layout::GolangMigrate));
        assert_eq!(Layout::from_str("sql", false), Ok(Layout::Plain));
        assert!(Layout::from_str("atlas", false).is_err());
    }

    #[test]
    fn non_utf8_is_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("x.sql");
        fs::write(&p, [0x53, 0xff, 0xfe]).expect("write");
        let e = read_text(&p).expect_err("utf8");
        assert!(e.to_string().contains("not valid UTF-8"));
    }

    #[test]
    fn transaction_wrapper_is_stripped() {
        let s = "-- Deploy x:a to pg\n\nBEGIN;\n\nCREATE SCHEMA a;\n\nCOMMIT;\n";
        assert_eq!(
            strip_transaction_wrapper(s),
            "-- Deploy x:a to pg\n\n\nCREATE SCHEMA a;\n\n"
        );
        let v = "BEGIN;\nSELECT 1/count(*) FROM a;\nROLLBACK;";
        assert_eq!(strip_transaction_wrapper(v), "SELECT 1/count(*) FROM a;");
        let untouched = "CREATE TABLE t (x int);\nCOMMIT;\n";
        assert_eq!(strip_transaction_wrapper(untouched), untouched);
        assert_eq!(strip_transaction_wrapper("begin;\ncommit;"), "");
    }
}
