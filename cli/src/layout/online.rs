//! Which migrations run after the deployment commits, outside any
//! transaction block (`"online": true` in the manifest, run by the
//! extension's background worker), and the rules every layout shares.
//!
//! A migration is online when
//! - its file carries its tool's own "no transaction" marker (dbmate's
//!   `-- migrate:up transaction:false`, sqlx's `-- no-transaction`, Flyway's
//!   `executeInTransaction=false` in `<script>.conf`, Atlas's
//!   `-- atlas:txmode none`); each layout reads its markers; or
//! - its only statement is one PostgreSQL refuses inside a transaction block
//!   (CREATE INDEX CONCURRENTLY and the like, see
//!   [`sql_text::outside_transaction`]); this is how golang-migrate, Prisma,
//!   Flyway (which detects these statements itself) and psql-run folders got
//!   such files to work without a marker.
//!
//! An online change is one statement. A marked file with several statements,
//! and a file that mixes such a statement with others, are bad input naming
//! the file: nothing is guessed about how to split them.

use super::{Layout, Migration};
use crate::error::CliError;
use crate::sql_text::{outside_transaction, statements};

/// Whether a migration runs in the deployment's transaction or online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Online {
    /// In the deployment's transaction (every tool's default).
    #[default]
    No,
    /// The file carries its tool's "no transaction" marker, named here.
    Marker(&'static str),
    /// Its only statement is this one, which cannot run in a transaction block.
    Needed(&'static str),
}

impl Online {
    pub fn is_online(self) -> bool {
        self != Online::No
    }
}

pub const DBMATE_MARKER: &str = "dbmate's \"-- migrate:up transaction:false\"";
pub const SQLX_MARKER: &str = "sqlx's \"-- no-transaction\"";
pub const FLYWAY_MARKER: &str = "Flyway's executeInTransaction=false (in its .sql.conf file)";
pub const ATLAS_MARKER: &str = "Atlas's \"-- atlas:txmode none\"";
pub const DIESEL_MARKER: &str = "diesel's run_in_transaction = false (in its metadata.toml)";
pub const GOOSE_MARKER: &str = "goose's \"-- +goose NO TRANSACTION\"";
pub const POP_MARKER: &str = "pop's .autocommit. file name";
pub const LIQUIBASE_MARKER: &str = "Liquibase's runInTransaction:false";

/// sqlx's marker: the file's first bytes are `-- no-transaction` (sqlx checks
/// exactly that, so a marker further down ran in a transaction there too).
pub fn sqlx_no_transaction(sql: &str) -> bool {
    sql.starts_with("-- no-transaction")
}

/// Atlas's file directive `-- atlas:txmode none`: a line of the comment block
/// at the top of the file, which a blank line must end (without it Atlas reads
/// the comments as the first statement's, not as the file's directives).
pub fn atlas_no_transaction(sql: &str) -> bool {
    let mut found = false;
    for line in sql.lines() {
        let t = line.trim();
        if t.is_empty() {
            return found;
        }
        let Some(comment) = t.strip_prefix("--") else {
            return false;
        };
        let mut words = comment.split_whitespace();
        if words.next() == Some("atlas:txmode") && words.next() == Some("none") && words.next().is_none() {
            found = true;
        }
    }
    false
}

/// Applies the rules to every migration of a folder read in `layout`:
/// decides which are online, refuses files that cannot be one change, and
/// returns warnings for the user.
pub fn settle(layout: Layout, migrations: &mut [Migration]) -> Result<Vec<String>, CliError> {
    let mut warnings = Vec::new();
    // Every offending file is reported in one run.
    let mut errors = Vec::new();
    for m in migrations.iter_mut() {
        let list = statements(&m.sql);
        if let Online::Marker(marker) = m.online {
            if list.len() != 1 {
                errors.push(marked_not_one(m, marker, list.len()));
            }
            continue;
        }
        let refused = list
            .iter()
            .find_map(|s| outside_transaction(s).map(|kind| (s.line, kind)));
        m.online = match refused {
            None => Online::No,
            Some((_, kind)) if list.len() == 1 => Online::Needed(kind),
            Some((line, kind)) => {
                errors.push(mixed(m, line, kind, list.len()));
                Online::No
            }
        };
        if layout == Layout::Flyway && m.online == Online::No && super::flyway::has_comment_setting(&m.sql) {
            warnings.push(format!(
                "{}: Flyway does not read \"-- flyway:executeInTransaction=false\" in a script (only {}.conf), so \
                 it ran this file in a transaction, and so does pg-deploy; put executeInTransaction=false in \
                 the .conf file to run it after the deployment commits instead",
                m.source.display(),
                super::file_name(&m.source)
            ));
        }
    }
    match CliError::all_inputs(errors) {
        Some(e) => Err(e),
        None => Ok(warnings),
    }
}

fn marked_not_one(m: &Migration, marker: &str, n: usize) -> CliError {
    let has = match n {
        0 => "it has none".to_string(),
        n => format!("it has {n}"),
    };
    CliError::input_hint(
        format!(
            "{}: {marker} makes it an online change (run after the deployment commits, outside any transaction \
             block), and an online change must be exactly one statement; {has}",
            m.source.display()
        ),
        "Split it into one file per statement, each with the marker, or remove the marker to run the file in \
         the deployment's transaction.",
    )
}

fn mixed(m: &Migration, line: usize, kind: &str, n: usize) -> CliError {
    CliError::input_hint(
        format!(
            "{}: {kind} (line {line}) cannot run inside a transaction block, and the file has {} other statement(s)",
            m.source.display(),
            n - 1
        ),
        format!(
            "Split the file: a file whose only statement is the {kind} runs after the deployment commits, \
             outside any transaction block (online); the other statements stay in the deployment's transaction."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn mig(sql: &str, online: Online) -> Migration {
        Migration {
            online,
            ..Migration::versioned("3_x".into(), sql.into(), "3".into(), PathBuf::from("db/3_x.up.sql"))
        }
    }

    fn settle_one(layout: Layout, m: Migration) -> Result<(Online, Vec<String>), CliError> {
        let mut list = vec![m];
        let warnings = settle(layout, &mut list)?;
        Ok((list[0].online, warnings))
    }

    #[test]
    fn one_statement_that_cannot_run_in_a_transaction_is_online() {
        let sql = "-- the index for lookups by email\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n";
        assert_eq!(
            settle_one(Layout::GolangMigrate, mig(sql, Online::No)).expect("ok").0,
            Online::Needed("CREATE INDEX CONCURRENTLY")
        );
        for ordinary in [
            "CREATE INDEX users_email_idx ON users (email);",
            "COMMENT ON INDEX i IS 'built CONCURRENTLY';",
            "-- CREATE INDEX CONCURRENTLY later\nALTER TABLE users ADD COLUMN email text;\nUPDATE users SET email = '';",
        ] {
            assert_eq!(
                settle_one(Layout::GolangMigrate, mig(ordinary, Online::No)).expect("ok").0,
                Online::No
            );
        }
    }

    #[test]
    fn mixing_it_with_other_statements_is_bad_input() {
        let sql = "ALTER TABLE users ADD COLUMN email text;\n\nCREATE INDEX CONCURRENTLY i ON users (email);\n";
        let e = settle_one(Layout::GolangMigrate, mig(sql, Online::No)).expect_err("mixed");
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.contains("db/3_x.up.sql: CREATE INDEX CONCURRENTLY (line 3)"),
            "{text}"
        );
        assert!(text.contains("1 other statement(s)"), "{text}");
        assert!(text.contains("HINT: Split the file"), "{text}");
    }

    #[test]
    fn every_offending_file_is_reported() {
        let mut list = vec![
            mig(
                "ALTER TABLE t ADD c int;\nCREATE INDEX CONCURRENTLY i ON t (c);",
                Online::No,
            ),
            mig("SELECT 1;", Online::No),
            mig("VACUUM a;\nVACUUM b;", Online::Marker(SQLX_MARKER)),
        ];
        list[2].source = PathBuf::from("db/5_y.sql");
        let e = settle(Layout::Plain, &mut list).expect_err("two");
        let text = e.to_string();
        assert!(text.starts_with("bad input: 2 problems:"), "{text}");
        assert!(
            text.contains("db/3_x.up.sql: CREATE INDEX CONCURRENTLY (line 2)"),
            "{text}"
        );
        assert!(text.contains("db/5_y.sql: sqlx's"), "{text}");
    }

    #[test]
    fn a_marked_file_must_be_one_statement() {
        let one = "UPDATE users SET email = lower(email);";
        assert_eq!(
            settle_one(Layout::Dbmate, mig(one, Online::Marker(DBMATE_MARKER)))
                .expect("ok")
                .0,
            Online::Marker(DBMATE_MARKER)
        );
        let two = "CREATE INDEX CONCURRENTLY a ON t (a);\nCREATE INDEX CONCURRENTLY b ON t (b);";
        let e = settle_one(Layout::Plain, mig(two, Online::Marker(SQLX_MARKER))).expect_err("two");
        let text = e.to_string();
        assert!(
            text.contains("sqlx's \"-- no-transaction\" makes it an online change"),
            "{text}"
        );
        assert!(text.contains("exactly one statement; it has 2"), "{text}");
        assert!(text.contains("HINT: Split it into one file per statement"), "{text}");
        let e = settle_one(Layout::Plain, mig("-- no-transaction\n", Online::Marker(SQLX_MARKER))).expect_err("0");
        assert!(e.to_string().contains("it has none"), "{e}");
    }

    #[test]
    fn markers() {
        assert!(sqlx_no_transaction(
            "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
        ));
        assert!(
            !sqlx_no_transaction("\n-- no-transaction\nSELECT 1;"),
            "sqlx reads the first bytes only"
        );
        let atlas =
            "-- atlas:txmode none\n\n-- Create index \"i\" to table: \"t\"\nCREATE INDEX CONCURRENTLY i ON t (a);\n";
        assert!(atlas_no_transaction(atlas));
        assert!(atlas_no_transaction("-- generated\n--atlas:txmode none\n\nVACUUM t;"));
        assert!(
            !atlas_no_transaction("-- atlas:txmode none\nVACUUM t;"),
            "no blank line: not a file directive"
        );
        assert!(!atlas_no_transaction("-- atlas:txmode file\n\nVACUUM t;"));
        assert!(!atlas_no_transaction("SELECT 1;\n-- atlas:txmode none\n\nVACUUM t;"));
    }
}
