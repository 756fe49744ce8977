//! Checksums are `sha256:<64 lowercase hex digits>`.

use crate::error::ManifestError;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "sha256:";

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

/// Normalises a declared checksum (hex digits of either case) or says why it is malformed.
pub fn parse_checksum(declared: &str, path: &str) -> Result<String, ManifestError> {
    let hex = declared.strip_prefix(PREFIX).unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ManifestError::InvalidValue {
            path: path.into(),
            reason: format!("\"{declared}\" is not of the form sha256:<64 hex digits>"),
        });
    }
    Ok(format!("{PREFIX}{}", hex.to_ascii_lowercase()))
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

    #[test]
    fn declared_checksums_are_case_insensitive() {
        let upper = "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(parse_checksum(upper, "x").unwrap(), sha256_checksum(b"abc"));
        assert!(parse_checksum("md5:abc", "x").is_err());
    }
}
