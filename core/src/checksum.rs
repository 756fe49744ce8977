//! Checksums are `sha256:<64 lowercase hex digits>`.

use crate::error::ManifestError;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "sha256:";

/// The 32 bytes of the sha256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

pub fn sha256_checksum(bytes: &[u8]) -> String {
    format!("{PREFIX}{}", sha256_hex(bytes))
}

/// A sealed lineage row's hash, as SQL's `deploy.lineage_link` computes it:
/// the hash before it, its place in the chain and its content's digest.
pub fn lineage_link(prev_hash: &str, seq: i64, digest: &str) -> String {
    sha256_checksum(format!("{prev_hash} {seq} {digest}").as_bytes())
}

/// The checksum of a change's SQL: over its text with CRLF line endings turned
/// into LF, so a Windows checkout of the same file is the same change.
pub fn sql_checksum(sql: &str) -> String {
    if sql.contains("\r\n") {
        sha256_checksum(sql.replace("\r\n", "\n").as_bytes())
    } else {
        sha256_checksum(sql.as_bytes())
    }
}

/// Checksums pg_deploy 0.1.0 may have recorded for the same SQL, which hashed
/// the exact bytes: those bytes, and the text with every line ending CRLF (a
/// Windows checkout of what is now LF). They still count as unchanged.
pub fn legacy_checksums(sql: &str) -> Vec<String> {
    let lf = sql.replace("\r\n", "\n");
    let current = sha256_checksum(lf.as_bytes());
    let mut out = Vec::new();
    for candidate in [
        sha256_checksum(sql.as_bytes()),
        sha256_checksum(lf.replace('\n', "\r\n").as_bytes()),
    ] {
        if candidate != current && !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// Normalises a declared checksum (hex digits of either case) or says why it is malformed.
pub fn parse_checksum(declared: &str, path: &str) -> Result<String, ManifestError> {
    normalise_checksum(declared.to_string(), || path.to_string())
}

/// As [`parse_checksum`], in place: a manifest's 10,000 checksums are not
/// copied, and the path is only written for an error.
pub fn normalise_checksum(mut declared: String, path: impl FnOnce() -> String) -> Result<String, ManifestError> {
    let hex = declared.strip_prefix(PREFIX).unwrap_or("");
    if hex.len() != 64 || !all_hex_digits(hex.as_bytes()) {
        return Err(ManifestError::InvalidValue {
            path: path(),
            reason: format!("\"{declared}\" is not of the form sha256:<64 hex digits>"),
        });
    }
    // The prefix is lowercase already.
    declared.make_ascii_lowercase();
    Ok(declared)
}

/// Whether every byte is a hex digit, without a branch per byte: a digest's
/// digits are random, so a branch on each was mispredicted about every other
/// byte (a tenth of reading a 10,000-change manifest with checksums).
fn all_hex_digits(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |all, &b| all & b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_checksum(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// The values SQL's deploy.lineage_link gives for the same inputs.
    #[test]
    fn lineage_link_matches_sql() {
        assert_eq!(
            lineage_link("", 1, "abc"),
            "sha256:0d02424d3808a768288515f925eabf66f17f3e96330a76d93bcdcce751f7dcf6"
        );
        assert_eq!(
            lineage_link("sha256:00ff", 42, "d1"),
            "sha256:eb3db81bf241eb6b23939067cbb3f1bd1467f0325deffda8bd647b08633d112c"
        );
    }

    #[test]
    fn line_endings_do_not_change_the_checksum() {
        assert_eq!(
            sql_checksum("SELECT 1;\r\nSELECT 2;\r\n"),
            sql_checksum("SELECT 1;\nSELECT 2;\n")
        );
        assert_eq!(sql_checksum("SELECT 1;"), sha256_checksum(b"SELECT 1;"));
        assert_ne!(
            sql_checksum("SELECT 1;\nSELECT 2;"),
            sql_checksum("SELECT 1; SELECT 2;")
        );
    }

    #[test]
    fn the_checksums_of_0_1_0_stay_accepted() {
        let lf = "SELECT 1;\nSELECT 2;\n";
        let crlf = "SELECT 1;\r\nSELECT 2;\r\n";
        // Applied from a Windows checkout under 0.1.0, deployed now from either.
        assert!(legacy_checksums(lf).contains(&sha256_checksum(crlf.as_bytes())));
        assert!(legacy_checksums(crlf).contains(&sha256_checksum(crlf.as_bytes())));
        assert!(legacy_checksums("SELECT 1;").is_empty());
    }

    #[test]
    fn declared_checksums_are_case_insensitive() {
        let upper = "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(parse_checksum(upper, "x").unwrap(), sha256_checksum(b"abc"));
        assert!(parse_checksum("md5:abc", "x").is_err());
    }
}
