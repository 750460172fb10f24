//! TLS: a certificate resolver backed by `arc-swap`, so a rotated key pair is used by the next
//! handshake without a restart, and a broken new pair leaves the old one in service.

use crate::metrics::Metrics;
use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

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
    #[error("certificate {path} expired at {not_after}")]
    Expired { path: PathBuf, not_after: String },
    #[error("certificate {path} is not valid before {not_before}")]
    NotYetValid { path: PathBuf, not_before: String },
}

/// A certificate and key read from disk, checked to belong together.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// notBefore of the leaf, Unix seconds.
    pub not_before: i64,
    /// notAfter of the leaf, Unix seconds.
    pub not_after: i64,
}

/// Unix seconds as an RFC 3339 time, for messages.
fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map_or_else(|_| format!("{seconds} (Unix time)"), |t| t.to_string())
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl LoadedCert {
    /// Refuse a leaf that is not valid at `now` (Unix seconds): serving it would make every
    /// handshake fail, and with `failurePolicy: Ignore` every pod would be admitted unmutated.
    pub fn check_validity(&self, path: &Path, now: i64) -> Result<(), CertError> {
        if now < self.not_before {
            return Err(CertError::NotYetValid {
                path: path.to_path_buf(),
                not_before: rfc3339(self.not_before),
            });
        }
        if now > self.not_after {
            return Err(CertError::Expired {
                path: path.to_path_buf(),
                not_after: rfc3339(self.not_after),
            });
        }
        Ok(())
    }
}

/// Read a certificate chain and its key from PEM files (see [`parse`]).
pub fn load(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let chain = std::fs::read(cert_path).map_err(|e| CertError::Chain {
        path: cert_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let key = std::fs::read(key_path).map_err(|e| CertError::Key {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse(&chain, &key, cert_path, key_path)
}

/// A certificate chain and its key from PEM text, checked to belong together; `cert_path` and
/// `key_path` name where they came from in errors (files, or the keys of a Secret).
pub fn parse(
    chain_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedCert, CertError> {
    let chain_err = |reason: String| CertError::Chain {
        path: cert_path.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| chain_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::Empty(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Key {
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
    let (not_before, not_after) = {
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| chain_err(format!("leaf certificate does not parse: {e}")))?;
        let validity = leaf.validity();
        (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    };
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| CertError::Mismatch(e.to_string()))?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_before,
        not_after,
    })
}

/// Serves the current key pair; [`CertReloader::reload`] (files) and [`CertReloader::install`] (a
/// pair read elsewhere, e.g. from the Secret of the managed mode) swap in a new one when it is valid.
pub struct CertReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// None until a first pair is installed (managed mode before its Secret exists): handshakes
    /// fail and `/readyz` answers 503 meanwhile.
    current: ArcSwapOption<CertifiedKey>,
    /// notAfter of the pair in service, Unix seconds.
    not_after: AtomicI64,
    expiry_warning: Duration,
    metrics: Arc<Metrics>,
    loaded: AtomicBool,
}

/// How often the certificate in service is checked against its expiry warning.
const EXPIRY_CHECK: Duration = Duration::from_secs(3600);

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("cert_path", &self.cert_path)
            .finish()
    }
}

impl CertReloader {
    /// Load the key pair once; a failure here (including a certificate that is expired or not
    /// yet valid) is a start-up error: there is nothing to serve.
    pub fn new(
        cert_path: &Path,
        key_path: &Path,
        expiry_warning: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, CertError> {
        let first = load(cert_path, key_path)?;
        first.check_validity(cert_path, unix_now())?;
        metrics.certificate_expiry.set(first.not_after as f64);
        metrics.reload("certificate", true);
        let reloader = Arc::new(CertReloader {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwapOption::from(Some(first.key)),
            not_after: AtomicI64::new(first.not_after),
            expiry_warning,
            metrics,
            loaded: AtomicBool::new(true),
        });
        reloader.check_expiry(unix_now());
        Ok(reloader)
    }

    /// Nothing to serve yet: the managed mode installs the first pair once its Secret exists.
    /// `source` names where pairs come from in logs and errors.
    pub fn empty(source: &str, expiry_warning: Duration, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(CertReloader {
            cert_path: PathBuf::from(source),
            key_path: PathBuf::from(source),
            current: ArcSwapOption::empty(),
            not_after: AtomicI64::new(0),
            expiry_warning,
            metrics,
            loaded: AtomicBool::new(false),
        })
    }

    /// Set `fargate_webhook_certificate_expiring` and warn when the pair in service expires
    /// within the warning window. Returns whether it does (false while nothing is served).
    pub fn check_expiry(&self, now: i64) -> bool {
        if !self.is_loaded() {
            return false;
        }
        let not_after = self.not_after.load(Ordering::Acquire);
        let left = not_after - now;
        let expiring = left < self.expiry_warning.as_secs() as i64;
        self.metrics.certificate_expiring.set(i64::from(expiring));
        if left < 0 {
            tracing::error!(cert = %self.cert_path.display(), not_after = %rfc3339(not_after), "the serving certificate has expired; TLS handshakes fail until it is replaced");
        } else if expiring {
            tracing::warn!(cert = %self.cert_path.display(), not_after = %rfc3339(not_after), hours_left = left / 3600, "the serving certificate expires soon");
        }
        expiring
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }

    /// Re-read the files; keep serving the old pair if the new one is broken, half-written,
    /// expired or not yet valid.
    pub fn reload(&self) -> bool {
        match load(&self.cert_path, &self.key_path) {
            Ok(loaded) => self.install(loaded),
            Err(error) => {
                self.metrics.reload("certificate", false);
                tracing::error!(%error, "new certificate rejected; keeping the one in service");
                false
            }
        }
    }

    /// Serve `loaded` from the next handshake on, unless it is expired or not yet valid (then the
    /// pair in service stays). The same pair again changes nothing.
    pub fn install(&self, loaded: LoadedCert) -> bool {
        let now = unix_now();
        if let Err(error) = loaded.check_validity(&self.cert_path, now) {
            self.metrics.reload("certificate", false);
            tracing::error!(%error, "new certificate rejected; keeping the one in service");
            return false;
        }
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|current| current.cert == loaded.key.cert)
        {
            return true;
        }
        self.current.store(Some(loaded.key));
        self.not_after.store(loaded.not_after, Ordering::Release);
        self.loaded.store(true, Ordering::Release);
        self.metrics.certificate_expiry.set(loaded.not_after as f64);
        self.metrics.reload("certificate", true);
        tracing::info!(cert = %self.cert_path.display(), not_after = %rfc3339(loaded.not_after), "serving certificate reloaded");
        self.check_expiry(now);
        true
    }

    /// Check the expiry warning every hour (a certificate nobody rotates still runs out).
    pub fn watch_expiry(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(EXPIRY_CHECK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                this.check_expiry(unix_now());
            }
        })
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
        self.current.load_full()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(from: i64, to: i64) -> (tempfile::TempDir, LoadedCert) {
        let generated =
            crate::certs::generate_between(&["localhost".into()], &[], from, to).expect("generate");
        let dir = tempfile::tempdir().unwrap();
        crate::certs::write_dir(dir.path(), &generated).unwrap();
        let loaded = load(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
        (dir, loaded)
    }

    #[test]
    fn validity_window_is_inclusive_and_named_in_the_error() {
        let (_dir, cert) = pair(-100, 100);
        let now = unix_now();
        let path = Path::new("tls.crt");
        assert!(cert.check_validity(path, now).is_ok());
        assert!(cert.check_validity(path, cert.not_before).is_ok());
        assert!(cert.check_validity(path, cert.not_after).is_ok());
        let early = cert.check_validity(path, cert.not_before - 1).unwrap_err();
        assert!(matches!(early, CertError::NotYetValid { .. }), "{early}");
        assert!(
            early.to_string().contains("is not valid before 20"),
            "{early}"
        );
        let late = cert.check_validity(path, cert.not_after + 1).unwrap_err();
        assert!(matches!(late, CertError::Expired { .. }), "{late}");
        assert!(late.to_string().contains("expired at 20"), "{late}");
    }

    #[test]
    fn the_expiry_warning_follows_the_window() {
        let (dir, _) = pair(-100, 3 * 86_400);
        let metrics = Arc::new(Metrics::new());
        let reloader = CertReloader::new(
            &dir.path().join("tls.crt"),
            &dir.path().join("tls.key"),
            Duration::from_secs(7 * 86_400),
            Arc::clone(&metrics),
        )
        .unwrap();
        assert_eq!(metrics.certificate_expiring.get(), 1);
        let now = unix_now();
        assert!(
            !reloader.check_expiry(now - 5 * 86_400),
            "8 days before the end"
        );
        assert_eq!(metrics.certificate_expiring.get(), 0);
        assert!(
            reloader.check_expiry(now + 4 * 86_400),
            "expired counts too"
        );
        assert_eq!(metrics.certificate_expiring.get(), 1);
    }
}
