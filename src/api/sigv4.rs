//! Optional AWS Signature Version 4 verification (header form, `Authorization: AWS4-HMAC-SHA256 ...`).
//!
//! Off by default (local users pass dummy keys). When the operator configures key pairs, every
//! request must carry a valid signature for one of them:
//! - canonical request = method, the URI path percent-encoded a second time (`a%20b` → `a%2520b`,
//!   as botocore signs the already-encoded path), the canonical query (decoded, re-encoded
//!   strictly, sorted), the signed headers (lower-case names, trimmed values), the signed-header
//!   list and the hex SHA-256 of the payload (computed from the body: clients send no
//!   `x-amz-content-sha256` header for EKS);
//! - string to sign `AWS4-HMAC-SHA256\n<X-Amz-Date>\n<scope>\n<hex sha256(canonical request)>`;
//! - key chain HMAC("AWS4"+secret, date) → region → "eks" → "aws4_request";
//! - `X-Amz-Date` within [`MAX_SKEW`] of the server clock.

use super::error::ApiError;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const SERVICE: &str = "eks";
/// Allowed difference between the request's `X-Amz-Date` and the server clock.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// The configured key pairs and the region signatures must be scoped to.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, String>,
    region: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Verifier")
            .field("access_key_ids", &ids)
            .field("region", &self.region)
            .finish()
    }
}

impl Verifier {
    pub fn new(region: impl Into<String>) -> Self {
        Verifier {
            keys: HashMap::new(),
            region: region.into(),
        }
    }

    pub fn add_key(&mut self, access_key_id: impl Into<String>, secret: impl Into<String>) {
        self.keys.insert(access_key_id.into(), secret.into());
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parse `AKID:SECRET` (a `--sigv4-key` value).
    pub fn add_key_spec(&mut self, spec: &str) -> anyhow::Result<()> {
        let (id, secret) = spec
            .split_once(':')
            .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("--sigv4-key takes ACCESS_KEY_ID:SECRET, got a value without ':'")
            })?;
        self.add_key(id.trim(), secret.trim());
        Ok(())
    }

    /// Read a credentials file: one `ACCESS_KEY_ID SECRET` pair a line; blank lines and lines
    /// starting with `#` are ignored.
    pub fn add_key_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(id), Some(secret), None) => self.add_key(id, secret),
                _ => anyhow::bail!(
                    "{}:{}: expected `ACCESS_KEY_ID SECRET`",
                    path.display(),
                    number + 1
                ),
            }
        }
        Ok(())
    }

    /// Check the request's signature. `path` and `query` are the raw (still percent-encoded)
    /// parts of the request target.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &http::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let Some(authorization) = headers.get(http::header::AUTHORIZATION) else {
            return Err(ApiError::access_denied("Missing Authentication Token"));
        };
        let authorization = authorization
            .to_str()
            .map_err(|_| ApiError::invalid_signature("The Authorization header is not ASCII."))?;
        let auth = parse_authorization(authorization)?;
        let Some(secret) = self.keys.get(auth.access_key_id) else {
            return Err(ApiError::access_denied(
                "The security token included in the request is invalid.",
            ));
        };

        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::invalid_signature(
                    "Authorization header requires existence of a 'X-Amz-Date' header.",
                )
            })?;
        let request_time = parse_amz_date(amz_date).ok_or_else(|| {
            ApiError::invalid_signature(format!(
                "X-Amz-Date '{amz_date}' is not of the form yyyyMMdd'T'HHmmss'Z'."
            ))
        })?;
        check_skew(amz_date, request_time, now)?;

        if auth.date != &amz_date[..8] {
            return Err(ApiError::invalid_signature(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8]
            )));
        }
        if auth.region != self.region {
            return Err(ApiError::invalid_signature(format!(
                "Credential should be scoped to a valid region, not '{}'. Expecting '{}'.",
                auth.region, self.region
            )));
        }
        if auth.service != SERVICE {
            return Err(ApiError::invalid_signature(format!(
                "Credential should be scoped to correct service: '{SERVICE}'."
            )));
        }
        if auth.terminator != "aws4_request" {
            return Err(ApiError::invalid_signature(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
                auth.terminator
            )));
        }
        if !auth.signed_headers.contains(&"host") {
            return Err(ApiError::invalid_signature(
                "'Host' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
        let signature = hex::decode(auth.signature)
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| ApiError::invalid_signature(SIGNATURE_MISMATCH))?;

        let canonical = canonical_request(method, path, query, headers, &auth.signed_headers, body);
        let scope = format!(
            "{}/{}/{}/{}",
            auth.date, auth.region, auth.service, auth.terminator
        );
        let to_sign = string_to_sign(amz_date, &scope, &canonical);
        let key = signing_key(secret, auth.date, auth.region, auth.service);
        let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(to_sign.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| ApiError::invalid_signature(SIGNATURE_MISMATCH))
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub terminator: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let malformed = |what: &str| {
        ApiError::invalid_signature(format!(
            "Authorization header is malformed: {what}. Expected `{ALGORITHM} Credential=..., SignedHeaders=..., Signature=...`."
        ))
    };
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| malformed("unsupported algorithm"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| malformed("a component without '='"))?;
        match key.trim() {
            "Credential" => credential = Some(value.trim()),
            "SignedHeaders" => signed_headers = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| malformed("no SignedHeaders"))?;
    let signature = signature.ok_or_else(|| malformed("no Signature"))?;
    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(malformed(
            "Credential must be <access key>/<date>/<region>/<service>/aws4_request",
        ));
    };
    if access_key_id.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("bad Credential scope"));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    })
}

/// The bytes AWS leaves unencoded: `A-Za-z0-9-_.~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// AWS URI encoding: everything but `A-Za-z0-9-_.~` becomes `%XX` (upper-case hex); `/` is kept
/// when `keep_slash`.
pub fn uri_encode(input: &str, keep_slash: bool) -> String {
    let set = if keep_slash {
        UNRESERVED_AND_SLASH
    } else {
        UNRESERVED
    };
    utf8_percent_encode(input, set).to_string()
}

fn percent_decode(input: &str) -> String {
    percent_encoding::percent_decode_str(input)
        .decode_utf8_lossy()
        .into_owned()
}

/// The canonical query string: each name and value decoded, re-encoded strictly, sorted.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(key), false),
                uri_encode(&percent_decode(value), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as signed: trimmed, inner runs of spaces folded to one; repeated headers joined by `,`.
fn canonical_header_value(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The canonical request. `path` is the raw request path as received (already percent-encoded by
/// the client); it is encoded a second time, as EKS clients sign it.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
    signed_headers: &[&str],
    body: &[u8],
) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let mut out = String::with_capacity(256);
    out.push_str(method);
    out.push('\n');
    out.push_str(&uri_encode(path, true));
    out.push('\n');
    out.push_str(&canonical_query(query));
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&canonical_header_value(headers, name));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(&hex::encode(Sha256::digest(body)));
    out
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// HMAC("AWS4"+secret, date) → region → service → "aws4_request".
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    hmac(&k_service, "aws4_request")
}

fn check_skew(amz_date: &str, request_time: u64, now: SystemTime) -> Result<(), ApiError> {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let skew = MAX_SKEW.as_secs();
    if request_time + skew < now_secs {
        return Err(ApiError::invalid_signature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            format_amz_date(now_secs - skew),
            format_amz_date(now_secs)
        )));
    }
    if request_time > now_secs + skew {
        return Err(ApiError::invalid_signature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            format_amz_date(now_secs + skew),
            format_amz_date(now_secs)
        )));
    }
    Ok(())
}

/// The `X-Amz-Date` format, always UTC.
const AMZ_DATE: &str = "%Y%m%dT%H%M%SZ";

/// `yyyyMMddTHHmmssZ` → Unix seconds.
pub fn parse_amz_date(value: &str) -> Option<u64> {
    if value.len() != 16 {
        return None; // exactly the 16-character form: `%Y` alone would take other widths
    }
    let time = jiff::civil::DateTime::strptime(AMZ_DATE, value).ok()?;
    let seconds = time
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp()
        .as_second();
    u64::try_from(seconds).ok()
}

/// Unix seconds → `yyyyMMddTHHmmssZ`.
pub fn format_amz_date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.strftime(AMZ_DATE).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for secs in [0u64, 951_782_400, 1_574_206_849, 4_102_444_800] {
            assert_eq!(parse_amz_date(&format_amz_date(secs)), Some(secs));
        }
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(parse_amz_date("20150830T1236Z"), None);
        assert_eq!(parse_amz_date("2015083OT123600Z"), None);
    }

    /// The worked example of the AWS SigV4 documentation (service iam, GET ListUsers).
    #[test]
    fn documented_signing_key_and_signature() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        headers.insert("host", "iam.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let canonical = canonical_request(
            "GET",
            "/",
            "Action=ListUsers&Version=2010-05-08",
            &headers,
            &["content-type", "host", "x-amz-date"],
            b"",
        );
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let to_sign = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            &canonical,
        );
        assert_eq!(
            hex::encode(hmac(&key, &to_sign)),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn path_is_encoded_twice_and_query_sorted() {
        assert_eq!(uri_encode("/clusters/a%20b", true), "/clusters/a%2520b");
        assert_eq!(canonical_query("b=2&a=x%2Fy&a=1"), "a=1&a=x%2Fy&b=2");
        assert_eq!(canonical_query(""), "");
    }

    #[test]
    fn authorization_header_parses() {
        let auth = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/eks/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd",
        )
        .unwrap();
        assert_eq!(auth.access_key_id, "AKID");
        assert_eq!(auth.signed_headers, vec!["host", "x-amz-date"]);
        assert!(parse_authorization("Basic abc").is_err());
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=a/b").is_err());
    }
}
