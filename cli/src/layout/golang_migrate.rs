//! golang-migrate: `<version>_<title>.up.sql` and `<version>_<title>.down.sql`
//! (also sqlx's reversible migrations). The version is a number of any length
//! (often a timestamp) and orders numerically; the down file becomes the
//! change's revert.
//!
//! Ids are the file name without `.up.sql` (`0001_create_users`); the history
//! key is the version without leading zeros.

use super::{file_name, list, non_empty, read_text, Migration};
use crate::error::CliError;
use crate::order::{cmp_digits, leading_digits, strip_zeros};
use std::path::Path;

/// (version digits, id, is_up) for `<digits>_<title>.up.sql` / `.down.sql`.
pub fn parse_name(name: &str) -> Option<(String, String, bool)> {
    let (stem, up) = if let Some(s) = name.strip_suffix(".up.sql") {
        (s, true)
    } else {
        (name.strip_suffix(".down.sql")?, false)
    };
    let digits = leading_digits(stem);
    if digits.is_empty() {
        return None;
    }
    let rest = &stem[digits.len()..];
    if !(rest.is_empty() || rest.starts_with('_')) {
        return None;
    }
    Some((digits.to_string(), stem.to_string(), up))
}

pub fn read(dir: &Path) -> Result<Vec<Migration>, CliError> {
    let mut ups: Vec<(String, Migration)> = Vec::new();
    let mut downs: Vec<(String, String, std::path::PathBuf)> = Vec::new();
    for p in list(dir)? {
        let name = file_name(&p);
        if p.is_dir() || !name.ends_with(".sql") {
            continue;
        }
        let Some((version, id, up)) = parse_name(&name) else {
            return Err(CliError::input_hint(
                format!("{} is not a golang-migrate migration name", p.display()),
                "golang-migrate names are <version>_<title>.up.sql and <version>_<title>.down.sql.",
            ));
        };
        if up {
            if let Some((_, first)) = ups.iter().find(|(v, _)| cmp_digits(v, &version).is_eq()) {
                return Err(CliError::input_hint(
                    format!(
                        "duplicate version {}: {} and {}",
                        strip_zeros(&version),
                        first.source.display(),
                        p.display()
                    ),
                    "Each version may be used once (1 and 0001 are the same version).",
                ));
            }
            let sql = non_empty(read_text(&p)?, &p)?;
            ups.push((version.clone(), Migration::versioned(id, sql, key(&version), p)));
        } else {
            if downs.iter().any(|(v, _, _)| cmp_digits(v, &version).is_eq()) {
                return Err(CliError::input(format!(
                    "duplicate down migration for version {}: {}",
                    strip_zeros(&version),
                    p.display()
                )));
            }
            downs.push((version, read_text(&p)?, p));
        }
    }
    ups.sort_by(|a, b| cmp_digits(&a.0, &b.0));
    for (version, sql, p) in downs {
        match ups.iter_mut().find(|(v, _)| cmp_digits(v, &version).is_eq()) {
            // An empty down file means "irreversible"; leave revert unset.
            Some((_, m)) => m.revert = (!sql.trim().is_empty()).then_some(sql),
            None => {
                return Err(CliError::input(format!(
                    "{} has no matching .up.sql migration for version {}",
                    p.display(),
                    strip_zeros(&version)
                )))
            }
        }
    }
    Ok(ups.into_iter().map(|(_, m)| m).collect())
}

/// The history key of a numeric version: digits without leading zeros ("0" for zero).
pub fn key(digits: &str) -> String {
    let s = strip_zeros(digits);
    if s.is_empty() {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    #[test]
    fn numeric_order_and_down_as_revert() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("10_ten.up.sql", "SELECT 10;"),
                ("9_nine.up.sql", "SELECT 9;"),
                ("9_nine.down.sql", "SELECT -9;"),
                ("10_ten.down.sql", ""),
                ("README.md", "ignored"),
            ],
        );
        let m = read(tmp.path()).expect("read");
        assert_eq!(
            m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["9_nine", "10_ten"]
        );
        assert_eq!(m[0].revert.as_deref(), Some("SELECT -9;"));
        assert_eq!(m[1].revert, None);
        assert_eq!(m[1].key, "10");
    }

    #[test]
    fn duplicate_versions_and_orphans_are_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[("1_a.up.sql", "SELECT 1;"), ("001_b.up.sql", "SELECT 2;")],
        );
        let e = read(tmp.path()).expect_err("dup");
        assert!(e.to_string().contains("duplicate version 1"), "{e}");
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[("1_a.up.sql", "SELECT 1;"), ("2_b.down.sql", "SELECT 2;")],
        );
        assert!(read(tmp.path())
            .expect_err("orphan")
            .to_string()
            .contains("no matching .up.sql"));
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_name("20240101_x.up.sql"),
            Some(("20240101".into(), "20240101_x".into(), true))
        );
        assert_eq!(parse_name("3.down.sql"), Some(("3".into(), "3".into(), false)));
        assert_eq!(parse_name("x_1.up.sql"), None);
        assert_eq!(parse_name("1x.up.sql"), None);
        assert_eq!(key("000"), "0");
    }
}
