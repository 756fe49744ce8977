//! Plain ordered `.sql` files: every `*.sql` in the folder, in natural order
//! (`2_x.sql` before `10_y.sql`). Ids are the file names without `.sql`; the
//! history key is the leading number (for sqlx's `<version>_<name>.sql`), or
//! the id when there is none. Files whose leading numbers are equal
//! (`1_a.sql`, `01_b.sql`) are refused as duplicate versions.

use super::{file_name, golang_migrate, list, non_empty, read_text, Migration};
use crate::error::CliError;
use crate::order::{cmp_digits, cmp_natural, leading_digits};
use std::path::Path;

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut out: Vec<Migration> = Vec::new();
    let mut files: Vec<_> = list(dir)?
        .into_iter()
        .filter(|p| !p.is_dir() && file_name(p).ends_with(".sql"))
        .collect();
    files.sort_by(|a, b| cmp_natural(&file_name(a), &file_name(b)));
    for p in files {
        let id = file_name(&p).trim_end_matches(".sql").to_string();
        let digits = leading_digits(&id);
        if !digits.is_empty() {
            if let Some(first) = out.iter().find(|m| {
                let d = leading_digits(&m.id);
                !d.is_empty() && cmp_digits(d, digits).is_eq()
            }) {
                return Err(CliError::input_hint(
                    format!(
                        "duplicate version {}: {} and {}",
                        golang_migrate::key(digits),
                        first.source.display(),
                        p.display()
                    ),
                    "Plain files are ordered by their leading number; give each file its own.",
                ));
            }
        }
        let key = if digits.is_empty() {
            id.clone()
        } else {
            golang_migrate::key(digits)
        };
        let sql = non_empty(read_text(&p)?, &p)?;
        out.push(Migration::versioned(id, sql, key, p));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn natural_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("10_c.sql", "SELECT 10;"),
                ("2_b.sql", "SELECT 2;"),
                ("1_a.sql", "SELECT 1;"),
                ("notes.txt", "x"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        assert_eq!(
            m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["1_a", "2_b", "10_c"]
        );
        assert_eq!(m[2].key, "10");
    }

    #[test]
    fn duplicate_leading_numbers_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("1_a.sql", "SELECT 1;"), ("01_b.sql", "SELECT 2;")]);
        let e = read(tmp.path()).expect_err("dup");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("duplicate version 1"));
    }
}
