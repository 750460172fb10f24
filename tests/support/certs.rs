//! Generated certificates, and what the tests read from a certificate.

use fargate_webhook::certs::{self, Generated};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// A CA and a server certificate for `localhost` and 127.0.0.1, valid `days` days.
pub fn generate_certs(days: i64) -> Generated {
    certs::generate(
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        days,
    )
    .expect("rcgen generates certificates")
}

/// Like [`generate_certs`], valid from `from` to `to` seconds after now (negative: past).
pub fn generate_certs_between(from: i64, to: i64) -> Generated {
    certs::generate_between(
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        from,
        to,
    )
    .expect("rcgen generates certificates")
}

/// The first certificate of a PEM text, DER-encoded.
pub fn first_cert_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM holds a certificate")
}

/// notAfter of a DER certificate, Unix seconds.
pub fn not_after(der: &CertificateDer<'_>) -> i64 {
    x509_parser::parse_x509_certificate(der)
        .expect("certificate parses")
        .1
        .validity()
        .not_after
        .timestamp()
}

/// Serial number of a DER certificate.
pub fn serial(der: &CertificateDer<'_>) -> Vec<u8> {
    x509_parser::parse_x509_certificate(der)
        .expect("certificate parses")
        .1
        .raw_serial()
        .to_vec()
}
