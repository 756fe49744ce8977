//! TLS with rustls, following libpq's sslmode: `disable` (plain), `prefer`
//! (the default: TLS when the server offers it), `require` (TLS, server
//! certificate not checked, as libpq does), `verify-ca` / `verify-full` (TLS,
//! certificate checked against `sslrootcert` / PGSSLROOTCERT, else the
//! well-known web roots; rustls always checks the host name too).
//!
//! The `postgres` crate knows only disable/prefer/require and no
//! `sslrootcert`, so those are taken out of the connection string here.

use crate::error::CliError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the connection string and environment ask of TLS beyond what the
/// `postgres` crate understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsWish {
    /// verify-ca or verify-full: check the server's certificate.
    pub verify: bool,
    /// A PEM file of trusted roots.
    pub root_cert: Option<String>,
}

/// Takes `sslmode=verify-*` (rewritten to `require`) and `sslrootcert=…` out
/// of a URL's query or a key=value string.
pub fn split_params(text: &str) -> (String, TlsWish) {
    let mut wish = TlsWish::default();
    let mut keep = |key: &str, value: &str| -> Option<String> {
        match (key, value) {
            ("sslmode", "verify-ca" | "verify-full") => {
                wish.verify = true;
                Some("require".into())
            }
            ("sslrootcert", v) => {
                wish.root_cert = Some(v.to_string());
                None
            }
            (_, v) => Some(v.to_string()),
        }
    };
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let Some((base, query)) = text.split_once('?') else {
            return (text.to_string(), wish);
        };
        let parts: Vec<String> = query
            .split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                keep(k, v).map(|v| format!("{k}={v}"))
            })
            .collect();
        let out = if parts.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", parts.join("&"))
        };
        (out, wish)
    } else {
        // key=value pairs separated by spaces; quoted values are left alone.
        let parts: Vec<String> = text
            .split_whitespace()
            .filter_map(|kv| match kv.split_once('=') {
                Some((k, v)) if !v.starts_with('\'') => keep(k.trim(), v).map(|v| format!("{}={v}", k.trim())),
                _ => Some(kv.to_string()),
            })
            .collect();
        (parts.join(" "), wish)
    }
}

/// The connector for `wish` (used for every sslmode; with `disable` the
/// `postgres` crate never starts TLS).
pub fn connector(wish: &TlsWish) -> Result<MakeRustlsConnect, CliError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::input(format!("TLS setup failed: {e}")))?;
    let config = if wish.verify {
        let mut roots = RootCertStore::empty();
        match &wish.root_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| CliError::input(format!("cannot read sslrootcert {path}: {e}")))?;
                for cert in certs {
                    let cert = cert.map_err(|e| CliError::input(format!("cannot read sslrootcert {path}: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| CliError::input(format!("bad certificate in sslrootcert {path}: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// libpq's `require`/`prefer`: encrypt, but do not check who the server is.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_params() {
        let (u, w) = split_params("postgres://a@h/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x");
        assert_eq!(u, "postgres://a@h/db?sslmode=require&application_name=x");
        assert_eq!(
            w,
            TlsWish {
                verify: true,
                root_cert: Some("/ca.pem".into())
            }
        );
        let (u, w) = split_params("postgres://a@h/db?sslmode=require");
        assert_eq!(u, "postgres://a@h/db?sslmode=require");
        assert!(!w.verify);
        let (u, _) = split_params("postgresql://a@h/db?sslrootcert=/x");
        assert_eq!(u, "postgresql://a@h/db");
    }

    #[test]
    fn key_value_params() {
        let (s, w) = split_params("host=h dbname=d sslmode=verify-ca sslrootcert=/ca.pem");
        assert_eq!(s, "host=h dbname=d sslmode=require");
        assert!(w.verify);
        assert_eq!(w.root_cert.as_deref(), Some("/ca.pem"));
    }

    #[test]
    fn connectors_build() {
        assert!(connector(&TlsWish::default()).is_ok());
        assert!(connector(&TlsWish {
            verify: true,
            root_cert: None
        })
        .is_ok());
        let e = connector(&TlsWish {
            verify: true,
            root_cert: Some("/nonexistent/ca.pem".into()),
        });
        assert!(e.is_err());
    }
}
