//! TLS for the streaming server (`--stream-tls-cert` / `--stream-tls-key`,
//! PEM): rustls with the ring provider through tokio-rustls. The files are
//! read once at start; a file that cannot be read or holds no usable
//! certificate or key stops berth-cri with a named error before anything
//! is served.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--stream-tls-cert {}: {why}", path.display())]
    Cert { path: PathBuf, why: String },
    #[error("--stream-tls-key {}: {why}", path.display())]
    Key { path: PathBuf, why: String },
    #[error("--stream-tls-cert and --stream-tls-key: {0}")]
    Pair(String),
    #[error("--stream-tls-cert and --stream-tls-key go together")]
    Half,
}

/// The acceptor for `cert` (a PEM chain, the server's first) and `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_err = |why: String| TlsError::Cert {
        path: cert.to_path_buf(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("berth-cri-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let missing = dir.join("missing.pem");
        let e = acceptor(&missing, &empty).err().unwrap().to_string();
        assert!(
            e.starts_with("--stream-tls-cert ") && e.contains("missing.pem"),
            "{e}"
        );
        let e = acceptor(&empty, &empty).err().unwrap().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
