//! Development and cluster certificates (rcgen): a private CA and an ECDSA P-256 server
//! certificate signed by it. The CA key is not kept: nothing else should be signed with it.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// PEM texts of a freshly generated CA and server key pair.
pub struct Generated {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA valid for 10 years and a server certificate valid for `days` days for the given names.
pub fn generate(dns: &[String], ips: &[IpAddr], days: i64) -> anyhow::Result<Generated> {
    generate_between(dns, ips, -3600, days * 86_400)
}

/// Like [`generate`], with the server certificate valid from `from` to `to` seconds after now
/// (negative: in the past), so that expired and not-yet-valid certificates can be made too.
pub fn generate_between(
    dns: &[String],
    ips: &[IpAddr],
    from: i64,
    to: i64,
) -> anyhow::Result<Generated> {
    if dns.is_empty() && ips.is_empty() {
        anyhow::bail!("a certificate needs at least one --dns name or --ip address");
    }
    let now = OffsetDateTime::now_utc();

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "fargate-webhook development CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - Duration::hours(1);
    ca_params.not_after = now + Duration::days(3650);
    let ca_key = KeyPair::generate()?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let names: Vec<String> = dns
        .iter()
        .cloned()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();
    let mut params = CertificateParams::new(names)?;
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CommonName,
        dns.first().cloned().unwrap_or_else(|| ips[0].to_string()),
    );
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now + Duration::seconds(from);
    params.not_after = now + Duration::seconds(to);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?; // ECDSA P-256
    let cert = params.signed_by(&key, &ca)?;
    Ok(Generated {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Write `ca.crt`, `tls.crt`, `tls.key` (0600) into `dir`, atomically each.
pub fn write_dir(dir: &Path, generated: &Generated) -> anyhow::Result<()> {
    write_files(
        &dir.join(CA_FILE),
        &dir.join(CERT_FILE),
        &dir.join(KEY_FILE),
        generated,
    )
}

fn write_files(ca: &Path, cert: &Path, key: &Path, generated: &Generated) -> anyhow::Result<()> {
    let dir = crate::files::parent_dir(cert);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::files::write_atomic(ca, generated.ca_pem.as_bytes())?;
    crate::files::write_atomic(cert, generated.cert_pem.as_bytes())?;
    crate::files::write_atomic_private(key, generated.key_pem.as_bytes())?;
    Ok(())
}

/// For `serve` on a fresh checkout: when neither the certificate nor the key exists, generate a
/// development pair for `localhost`/`127.0.0.1`/`::1` beside them and return the CA's path.
pub fn ensure_dev_certs(cert: &Path, key: &Path) -> anyhow::Result<Option<PathBuf>> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(None),
        (false, false) => {
            let dir = crate::files::parent_dir(cert);
            if crate::files::parent_dir(key) != dir {
                anyhow::bail!(
                    "{} and {} are both missing and in different directories: generate them with `fargate-webhook certs generate`",
                    cert.display(),
                    key.display()
                );
            }
            let generated = generate(
                &["localhost".to_string()],
                &[IpAddr::from([127, 0, 0, 1]), "::1".parse()?],
                365,
            )?;
            // Name the files as the flags ask, CA beside them.
            write_files(&dir.join(CA_FILE), cert, key, &generated)?;
            Ok(Some(dir.join(CA_FILE)))
        }
        (true, false) => anyhow::bail!(
            "TLS key {} is missing (certificate {} exists)",
            key.display(),
            cert.display()
        ),
        (false, true) => anyhow::bail!(
            "TLS certificate {} is missing (key {} exists)",
            cert.display(),
            key.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_are_made_once_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let ca = ensure_dev_certs(&cert, &key).unwrap();
        assert_eq!(ca, Some(dir.path().join(CA_FILE)));
        let loaded = crate::server::tls::load(&cert, &key).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            loaded.not_after > now + 300 * 86_400,
            "about a year of validity"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Present: left alone.
        let before = std::fs::read(&cert).unwrap();
        assert_eq!(ensure_dev_certs(&cert, &key).unwrap(), None);
        assert_eq!(std::fs::read(&cert).unwrap(), before);
        // Half present: an error that names the missing file, nothing generated.
        std::fs::remove_file(&key).unwrap();
        let err = ensure_dev_certs(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("tls.key is missing"), "{err}");
        assert!(!key.exists());
    }

    #[test]
    fn generate_needs_a_name() {
        assert!(generate(&[], &[], 1).is_err());
        let g = generate(&["svc.ns.svc".into()], &[], 30).unwrap();
        assert!(g.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(g.key_pem.contains("PRIVATE KEY"));
        assert_ne!(g.ca_pem, g.cert_pem);
    }
}
