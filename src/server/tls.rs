//! TLS: a certificate resolver backed by `arc-swap`, so a rotated key pair is used by the next
//! handshake without a restart, and a broken new pair leaves the old one in service.

use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading certificate chain {path}: {reason}")]
    Chain { path: PathBuf, reason: String },
    #[error("reading private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{0} holds no certificate")]
    Empty(PathBuf),
    #[error("certificate and key do not belong together: {0}")]
    Mismatch(String),
}

/// A certificate and key read from disk, checked to belong together.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf, Unix seconds.
    pub not_after: i64,
}

pub fn load(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let chain_err = |reason: String| CertError::Chain {
        path: cert_path.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| chain_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| chain_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::Empty(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| CertError::Key {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::Key {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let not_after = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| chain_err(format!("leaf certificate does not parse: {e}")))?
        .1
        .validity()
        .not_after
        .timestamp();
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| CertError::Mismatch(e.to_string()))?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
    })
}

/// Serves the current key pair; [`CertReloader::reload`] swaps in a new one when it is valid.
pub struct CertReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    metrics: Arc<Metrics>,
    loaded: AtomicBool,
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("cert_path", &self.cert_path)
            .finish()
    }
}

impl CertReloader {
    /// Load the key pair once; a failure here is a start-up error (there is nothing to serve).
    pub fn new(
        cert_path: &Path,
        key_path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, CertError> {
        let first = load(cert_path, key_path)?;
        metrics.certificate_expiry.set(first.not_after as f64);
        metrics.reload("certificate", true);
        Ok(Arc::new(CertReloader {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::new(first.key),
            metrics,
            loaded: AtomicBool::new(true),
        }))
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Re-read the files; keep serving the old pair if the new one is broken or half-written.
    pub fn reload(&self) -> bool {
        match load(&self.cert_path, &self.key_path) {
            Ok(loaded) => {
                if loaded.key.cert == self.current.load().cert {
                    return true;
                }
                self.current.store(loaded.key);
                self.metrics.certificate_expiry.set(loaded.not_after as f64);
                self.metrics.reload("certificate", true);
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                true
            }
            Err(error) => {
                self.metrics.reload("certificate", false);
                tracing::error!(%error, "new certificate rejected; keeping the one in service");
                false
            }
        }
    }

    /// Watch the directories of the certificate and the key (Secret volumes swap `..data`).
    pub fn watch(self: &Arc<Self>) -> notify::Result<tokio::task::JoinHandle<()>> {
        let this = Arc::clone(self);
        crate::files::watch_dirs(
            vec![
                crate::files::parent_dir(&self.cert_path),
                crate::files::parent_dir(&self.key_path),
            ],
            move || {
                this.reload();
            },
        )
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A server config that resolves through `reloader` and offers HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(reloader: Arc<CertReloader>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_no_client_auth()
    .with_cert_resolver(reloader);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
