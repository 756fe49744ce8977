//! Prisma Migrate: `<timestamp>_<name>/migration.sql`, one folder per
//! migration, ordered by folder name (numerically on the timestamp).
//! `migration_lock.toml` and other files are ignored.
//!
//! Ids and history keys are the folder names (`20240101120000_init`).

use super::{file_name, list, read_text, Migration};
use crate::error::CliError;
use crate::order::cmp_natural;
use std::path::Path;

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut out = Vec::new();
    for p in list(dir)? {
        if !p.is_dir() {
            continue;
        }
        let file = p.join("migration.sql");
        if !file.exists() {
            continue;
        }
        let id = file_name(&p);
        let sql = read_text(&file)?;
        out.push(Migration::versioned(id.clone(), sql, id, file));
    }
    out.sort_by(|a, b| cmp_natural(&a.id, &b.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn reads_folders_in_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("20240201000000_second/migration.sql", "SELECT 2;"),
                ("20240101000000_init/migration.sql", "SELECT 1;"),
                ("migration_lock.toml", "provider = \"postgresql\""),
                ("notes/readme.md", "x"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        assert_eq!(
            m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["20240101000000_init", "20240201000000_second"]
        );
    }
}
