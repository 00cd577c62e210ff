//! TLS for client connections: loading the certificate and key named in `[general]`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Builds an acceptor from PEM files (certificate chain and private key).
pub fn acceptor(certificate: &Path, private_key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let invalid = |path: &Path, reason: String| TlsError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = read(certificate)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(certificate, format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            certificate,
            "no certificate found in the file (expected PEM \"BEGIN CERTIFICATE\")".into(),
        ));
    }
    let key_pem = read(private_key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| invalid(private_key, format!("invalid PEM private key: {e}")))?
        .ok_or_else(|| invalid(private_key, "no private key found in the file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(certificate, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            invalid(
                private_key,
                format!("certificate and key do not match: {e}"),
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
