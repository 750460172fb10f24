//! The certificates of the managed mode (rcgen, ECDSA P-256) and how the Secret's PEM texts are read
//! into a [`Stored`] for the plan.

use super::plan::{CaView, LeafView, Policy, Stored};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The four PEM texts of the managed Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Material {
    /// `ca.crt`: every CA still trusted, newest first (the caBundle).
    pub ca_bundle: String,
    /// `ca.key`: the key of the newest CA.
    pub ca_key: String,
    /// `tls.crt`: the serving certificate.
    pub cert: String,
    /// `tls.key`: its key.
    pub key: String,
}

/// Certificates are dated an hour back, so that a clock behind ours (the apiserver's) still finds
/// them valid.
const BACKDATE: i64 = 3600;

fn at(seconds: i64) -> anyhow::Result<OffsetDateTime> {
    Ok(OffsetDateTime::from_unix_timestamp(seconds)?)
}

fn ca_params(common_name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// A new CA valid from `now` for `validity` seconds: (certificate, key). Each CA has a name of its own,
/// so that a serving certificate's issuer tells which CA of the bundle signed it.
pub fn new_ca(now: i64, validity: i64) -> anyhow::Result<(String, String)> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut params = ca_params(&format!("fargate-webhook managed CA {}", &id[..12]))?;
    params.not_before = at(now - BACKDATE)?;
    params.not_after = at(now + validity)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names` signed by the CA `ca_pem` (key `ca_key_pem`), valid for
/// `validity` seconds but never past its CA: (certificate, key).
pub fn new_leaf(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &BTreeSet<String>,
    now: i64,
    validity: i64,
) -> anyhow::Result<(String, String)> {
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the CA does not parse: {e}"))?;
    let (_, ca) = X509Certificate::from_der(&ca_der)
        .map_err(|e| anyhow::anyhow!("the CA does not parse: {e}"))?;
    let common_name = ca
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| anyhow::anyhow!("the CA has no common name"))?;
    let ca_not_after = ca.validity().not_after.timestamp();
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    // The CAs made here have only a common name: the same name rebuilt is the same subject.
    let issuer = Issuer::new(ca_params(common_name)?, ca_key);

    let mut params = CertificateParams::new(names.iter().cloned().collect::<Vec<_>>())?;
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CommonName,
        names.iter().next().cloned().unwrap_or_default(),
    );
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = at(now - BACKDATE)?;
    params.not_after = at((now + validity).min(ca_not_after))?;
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The DER of every certificate of a PEM text (the ones that do not parse are left out).
pub fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|der| der.to_vec())
        .collect()
}

/// A name of a certificate as the policy writes it: DNS names as they are, IP addresses in their
/// canonical text.
pub fn canonical_name(name: &str) -> String {
    name.parse::<IpAddr>()
        .map_or_else(|_| name.to_string(), |ip| ip.to_string())
}

fn leaf_names(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    names.insert(dns.to_string());
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// The Secret's texts as the plan sees them. `ours`: the Secret carries the managed annotation.
pub fn inspect(material: &Material, ours: bool) -> Stored {
    let mut cas = Vec::new();
    let mut newest_key = None;
    for (i, der) in ders(material.ca_bundle.as_bytes()).iter().enumerate() {
        let Ok((_, ca)) = X509Certificate::from_der(der) else {
            continue;
        };
        if i == 0 {
            newest_key = Some(ca.public_key().subject_public_key.data.to_vec());
        }
        cas.push(CaView {
            subject: ca.subject().as_raw().to_vec(),
            not_after: ca.validity().not_after.timestamp(),
        });
    }
    let signing_key = KeyPair::from_pem(&material.ca_key)
        .is_ok_and(|key| Some(key.public_key_raw().to_vec()) == newest_key);
    // The serving pair counts only when it parses and its key matches (as the reloader checks).
    let leaf = crate::server::tls::parse(
        material.cert.as_bytes(),
        material.key.as_bytes(),
        Path::new("tls.crt"),
        Path::new("tls.key"),
    )
    .ok()
    .and_then(|loaded| {
        let der = loaded.key.cert.first()?.clone();
        let (_, cert) = X509Certificate::from_der(&der).ok()?;
        Some(LeafView {
            issuer: cert.issuer().as_raw().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            names: leaf_names(&cert),
        })
    });
    Stored {
        ours,
        cas,
        signing_key,
        leaf,
    }
}

/// The Secret's texts after `step`: a new CA first in the bundle, a new serving certificate, or the
/// expired CAs dropped. `current` is what the Secret holds (empty for a new Secret).
pub fn apply(
    step: &super::plan::Plan,
    current: &Material,
    policy: &Policy,
    now: i64,
) -> anyhow::Result<Option<Material>> {
    use super::plan::Plan;
    let mut next = current.clone();
    let issue = |next: &mut Material| -> anyhow::Result<()> {
        let newest = ders(next.ca_bundle.as_bytes())
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no CA to sign with"))?;
        let newest_pem = pem_of(&newest);
        let (cert, key) = new_leaf(
            &newest_pem,
            &next.ca_key,
            &policy.names,
            now,
            policy.cert_validity,
        )?;
        next.cert = cert;
        next.key = key;
        Ok(())
    };
    match step {
        Plan::Keep | Plan::AwaitTrust(_) | Plan::Refuse => return Ok(None),
        Plan::Create => {
            let (ca, ca_key) = new_ca(now, policy.ca_validity)?;
            next = Material {
                ca_bundle: ca,
                ca_key,
                ..Material::default()
            };
            issue(&mut next)?;
        }
        Plan::RotateCa { leaf } => {
            let (ca, ca_key) = new_ca(now, policy.ca_validity)?;
            // The older CAs that parse and have not expired stay: certificates they signed are in
            // service until replaced.
            let older: Vec<Vec<u8>> = ders(current.ca_bundle.as_bytes())
                .into_iter()
                .filter(|der| not_expired(der, now))
                .collect();
            next.ca_bundle = ca + &older.iter().map(|der| pem_of(der)).collect::<String>();
            next.ca_key = ca_key;
            if *leaf {
                issue(&mut next)?;
            }
        }
        Plan::IssueLeaf(_) => issue(&mut next)?,
        Plan::Prune => {
            let all = ders(current.ca_bundle.as_bytes());
            let (newest, older) = all.split_first().expect("pruning needs a newest CA");
            next.ca_bundle = pem_of(newest)
                + &older
                    .iter()
                    .filter(|der| not_expired(der, now))
                    .map(|der| pem_of(der))
                    .collect::<String>();
        }
    }
    Ok(Some(next))
}

fn not_expired(der: &[u8], now: i64) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, ca)| ca.validity().not_after.timestamp() > now)
}

/// One certificate as PEM.
pub fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::super::plan::{LeafReason, Plan, plan};
    use super::*;

    fn policy() -> Policy {
        Policy {
            ca_validity: 3000,
            cert_validity: 1000,
            names: ["svc.ns.svc", "127.0.0.1"]
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    fn now() -> i64 {
        crate::server::tls::unix_now()
    }

    #[test]
    fn a_created_secret_reads_back_as_healthy() {
        let now = now();
        let made = apply(&Plan::Create, &Material::default(), &policy(), now)
            .unwrap()
            .unwrap();
        let stored = inspect(&made, true);
        assert_eq!(stored.cas.len(), 1);
        assert!(stored.signing_key);
        let leaf = stored.leaf.as_ref().expect("a serving certificate");
        assert_eq!(leaf.issuer, stored.cas[0].subject);
        assert_eq!(leaf.names, policy().names, "DNS name and IP address");
        assert_eq!(leaf.not_after, now + 1000);
        assert_eq!(stored.cas[0].not_after, now + 3000);
        assert_eq!(plan(Some(&stored), &policy(), true, now), Plan::Keep);
        // The reloader takes the pair.
        let loaded = crate::server::tls::parse(
            made.cert.as_bytes(),
            made.key.as_bytes(),
            Path::new("tls.crt"),
            Path::new("tls.key"),
        )
        .unwrap();
        assert!(loaded.check_validity(Path::new("tls.crt"), now).is_ok());
    }

    #[test]
    fn a_ca_rotation_keeps_the_old_ca_and_the_serving_certificate() {
        let now = now();
        let made = apply(&Plan::Create, &Material::default(), &policy(), now)
            .unwrap()
            .unwrap();
        let rotated = apply(&Plan::RotateCa { leaf: false }, &made, &policy(), now)
            .unwrap()
            .unwrap();
        assert_eq!(rotated.cert, made.cert, "the serving pair stays");
        assert_ne!(rotated.ca_key, made.ca_key);
        let before = inspect(&made, true);
        let after = inspect(&rotated, true);
        assert_eq!(after.cas.len(), 2);
        assert_eq!(
            after.cas[1], before.cas[0],
            "the old CA follows the new one"
        );
        assert_ne!(
            after.cas[0].subject, before.cas[0].subject,
            "a CA of its own name"
        );
        assert!(after.signing_key, "ca.key is the new CA's");
        assert_eq!(
            plan(Some(&after), &policy(), false, now),
            Plan::AwaitTrust(LeafReason::NewCa)
        );
        // Once trusted: a certificate from the new CA.
        let reissued = apply(
            &Plan::IssueLeaf(LeafReason::NewCa),
            &rotated,
            &policy(),
            now,
        )
        .unwrap()
        .unwrap();
        let stored = inspect(&reissued, true);
        assert_eq!(stored.leaf.unwrap().issuer, after.cas[0].subject);
        assert_eq!(reissued.ca_bundle, rotated.ca_bundle);
    }

    #[test]
    fn a_serving_certificate_never_outlives_its_ca() {
        let now = now();
        let (ca, key) = new_ca(now, 100).unwrap();
        let (cert, _) = new_leaf(&ca, &key, &policy().names, now, 1000).unwrap();
        let der = ders(cert.as_bytes()).remove(0);
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(parsed.validity().not_after.timestamp(), now + 100);
    }

    #[test]
    fn pruning_drops_expired_cas_only() {
        let now = now();
        let (old, _) = new_ca(now - 7200, 10).unwrap(); // expired
        let (kept, _) = new_ca(now, 100).unwrap();
        let (newest, newest_key) = new_ca(now, 3000).unwrap();
        let material = Material {
            ca_bundle: newest.clone() + &kept + &old,
            ca_key: newest_key,
            ..Material::default()
        };
        let pruned = apply(&Plan::Prune, &material, &policy(), now)
            .unwrap()
            .unwrap();
        assert_eq!(
            ders(pruned.ca_bundle.as_bytes()),
            ders((newest + &kept).as_bytes())
        );
    }

    #[test]
    fn a_mismatched_ca_key_or_broken_texts_read_as_such() {
        let now = now();
        let made = apply(&Plan::Create, &Material::default(), &policy(), now)
            .unwrap()
            .unwrap();
        let (_, other_key) = new_ca(now, 100).unwrap();
        let wrong_key = Material {
            ca_key: other_key,
            ..made.clone()
        };
        assert!(!inspect(&wrong_key, true).signing_key);
        let swapped = Material {
            key: made.ca_key.clone(),
            ..made.clone()
        };
        assert!(
            inspect(&swapped, true).leaf.is_none(),
            "key of another cert"
        );
        let garbage = Material {
            ca_bundle: "not PEM".into(),
            cert: "nor this".into(),
            ..made
        };
        let stored = inspect(&garbage, true);
        assert!(stored.cas.is_empty() && stored.leaf.is_none());
        assert_eq!(
            plan(Some(&stored), &policy(), true, now),
            Plan::RotateCa { leaf: true }
        );
    }
}
