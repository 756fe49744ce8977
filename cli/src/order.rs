//! Orderings the migration tools use: numbers compare as numbers (`10` after
//! `9`), Flyway versions part by part (`1.2` < `1.10`, `1` = `1.0`).

use std::cmp::Ordering;

/// A string of ASCII digits without its leading zeros ("" for zero).
pub fn strip_zeros(digits: &str) -> &str {
    digits.trim_start_matches('0')
}

/// Compares two strings of ASCII digits as numbers of any length.
pub fn cmp_digits(a: &str, b: &str) -> Ordering {
    let (a, b) = (strip_zeros(a), strip_zeros(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The leading ASCII digits of `s` ("" if none).
pub fn leading_digits(s: &str) -> &str {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    &s[..end]
}

/// Natural order: runs of digits compare as numbers, the rest as text;
/// ties (e.g. `01` vs `1`) fall back to plain text order so the order is total.
pub fn cmp_natural(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return a.cmp(b),
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let dx = leading_digits(x);
        let dy = leading_digits(y);
        let ord = if !dx.is_empty() && !dy.is_empty() {
            let o = cmp_digits(dx, dy);
            x = &x[dx.len()..];
            y = &y[dy.len()..];
            o
        } else {
            let cx = x.chars().next().unwrap_or_default();
            let cy = y.chars().next().unwrap_or_default();
            x = &x[cx.len_utf8()..];
            y = &y[cy.len_utf8()..];
            cx.cmp(&cy)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

/// A Flyway version: dot-separated numbers (`1_2` is written `1.2`).
#[derive(Debug, Clone)]
pub struct FlywayVersion {
    parts: Vec<String>,
}

impl FlywayVersion {
    /// Parses `1.2`, `1_2`, `2024.01.15.1`; None unless it is numbers separated by `.` or `_`.
    pub fn parse(text: &str) -> Option<FlywayVersion> {
        let parts: Vec<String> = text.split(['.', '_']).map(str::to_string).collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        Some(FlywayVersion { parts })
    }

    /// Canonical text: parts without leading zeros, trailing zero parts dropped
    /// (Flyway treats `1.0` as `1`), joined by dots.
    pub fn canonical(&self) -> String {
        let mut parts: Vec<&str> = self.parts.iter().map(|p| strip_zeros(p)).collect();
        while parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        parts
            .iter()
            .map(|p| if p.is_empty() { "0" } else { p })
            .collect::<Vec<_>>()
            .join(".")
    }
}

impl PartialEq for FlywayVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for FlywayVersion {}
impl PartialOrd for FlywayVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for FlywayVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).map_or("0", String::as_str);
            let b = other.parts.get(i).map_or("0", String::as_str);
            let o = cmp_digits(a, b);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_compare_as_numbers() {
        assert_eq!(cmp_digits("9", "10"), Ordering::Less);
        assert_eq!(cmp_digits("010", "10"), Ordering::Equal);
        assert_eq!(cmp_digits("20240101120000", "9"), Ordering::Greater);
        assert_eq!(cmp_digits("0", "000"), Ordering::Equal);
        assert_eq!(
            cmp_digits("123456789012345678901234567890", "123456789012345678901234567891"),
            Ordering::Less
        );
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["10_c.sql", "9_b.sql", "1_a.sql", "a.sql", "001_z.sql"];
        v.sort_by(|a, b| cmp_natural(a, b));
        assert_eq!(v, ["1_a.sql", "001_z.sql", "9_b.sql", "10_c.sql", "a.sql"]);
        assert_eq!(cmp_natural("x2", "x10"), Ordering::Less);
        assert_eq!(cmp_natural("same", "same"), Ordering::Equal);
    }

    #[test]
    fn flyway_versions_compare_part_by_part() {
        let v = |s| FlywayVersion::parse(s).expect(s);
        assert!(v("1.2") < v("1.10"));
        assert!(v("1.9.9") < v("1.10"));
        assert!(v("2") > v("1.999"));
        assert_eq!(v("1"), v("1.0"));
        assert_eq!(v("1_2"), v("1.2"));
        assert_eq!(v("01.002").canonical(), "1.2");
        assert_eq!(v("1.0.0").canonical(), "1");
        assert_eq!(v("0").canonical(), "0");
        assert!(FlywayVersion::parse("1..2").is_none());
        assert!(FlywayVersion::parse("1a").is_none());
        assert!(FlywayVersion::parse("").is_none());
    }
}
