//! SigV4 verification of the API over real HTTP, against a signer written for the test,
//! independently of the server's verifier (`docs/eks-api.md`).

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use bytes::Bytes;
use fargate_webhook::api::{self, ApiConfig};
use hmac::{KeyInit, Mac};
use http::{Method, Request};
use http_body_util::Full;
use serde_json::Value;
use sha2::Digest;
use support::api_server::*;

// ---- SigV4: a signer written for the test, independently of the server's verifier ----

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Encode like botocore: RFC 3986 unreserved characters stay, everything else is %XX.
fn aws_quote(s: &str, safe: &[u8]) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || safe.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sign `req` (whose URI is already percent-encoded) as botocore does for EKS.
fn sign(req: &mut Request<Full<Bytes>>, body: &[u8], akid: &str, secret: &str, amz_date: &str) {
    let host = req.uri().authority().unwrap().to_string();
    req.headers_mut().insert("host", host.parse().unwrap());
    req.headers_mut()
        .insert("x-amz-date", amz_date.parse().unwrap());
    let mut names: Vec<String> = req
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .collect();
    names.sort();
    names.dedup();
    let canonical_headers: String = names
        .iter()
        .map(|n| {
            format!(
                "{n}:{}\n",
                req.headers()[n.as_str()].to_str().unwrap().trim()
            )
        })
        .collect();
    let signed = names.join(";");
    let mut query: Vec<&str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .collect();
    query.sort();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method(),
        aws_quote(req.uri().path(), b"/"),
        query.join("&"),
        canonical_headers,
        signed,
        hex::encode(sha2::Sha256::digest(body))
    );
    let date = &amz_date[..8];
    let scope = format!("{date}/us-west-2/eks/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
    let k = mac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = mac(&k, b"us-west-2");
    let k = mac(&k, b"eks");
    let k = mac(&k, b"aws4_request");
    let signature = hex::encode(mac(&k, to_sign.as_bytes()));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={signed}, Signature={signature}"
    );
    req.headers_mut()
        .insert("authorization", auth.parse().unwrap());
}

fn amz_now(offset_secs: i64) -> String {
    let secs = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs) as u64;
    api::sigv4::format_amz_date(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigv4_verification() {
    let dir = empty_state();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "# operators\nAKIDFILE filesecret\n\n").unwrap();
    let server = ApiServer::start(
        dir.path(),
        ApiConfig {
            sigv4_keys: vec!["AKIDEXAMPLE:secret".into()],
            sigv4_credentials: Some(creds),
            ..api_config()
        },
    )
    .await;
    let signed = |method: Method,
                  path: &str,
                  body: Option<&Value>,
                  akid: &str,
                  secret: &str,
                  offset: i64| {
        let mut req = server.request(method, path, body);
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        sign(&mut req, &bytes, akid, secret, &amz_now(offset));
        req
    };

    // Unsigned: refused.
    let answer = server.list("").await;
    answer.expect_error(403, "AccessDeniedException", "Missing Authentication Token");
    // Signed with a configured key: accepted (flag and file keys), with a body and a query.
    server
        .send(signed(Method::GET, BASE, None, "AKIDEXAMPLE", "secret", 0))
        .await
        .expect_ok();
    server
        .send(signed(
            Method::GET,
            &format!("{BASE}?maxResults=5"),
            None,
            "AKIDFILE",
            "filesecret",
            0,
        ))
        .await
        .expect_ok();
    server
        .send(signed(
            Method::POST,
            BASE,
            Some(&api_profile("signed")),
            "AKIDEXAMPLE",
            "secret",
            0,
        ))
        .await
        .expect_ok();
    // A percent-encoded path (signed double-encoded).
    server
        .send(signed(
            Method::GET,
            &format!("{BASE}/sig%6Eed"),
            None,
            "AKIDEXAMPLE",
            "secret",
            0,
        ))
        .await
        .expect_ok();
    // Wrong secret.
    let answer = server
        .send(signed(Method::GET, BASE, None, "AKIDEXAMPLE", "wrong", 0))
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.error_type(), "InvalidSignatureException");
    assert!(
        answer
            .message()
            .starts_with("The request signature we calculated does not match")
    );
    // Unknown key.
    let answer = server
        .send(signed(Method::GET, BASE, None, "AKIDOTHER", "secret", 0))
        .await;
    answer.expect_error(
        403,
        "AccessDeniedException",
        "The security token included in the request is invalid.",
    );
    // Clock skew: 4 minutes is fine, 6 minutes is not.
    server
        .send(signed(
            Method::GET,
            BASE,
            None,
            "AKIDEXAMPLE",
            "secret",
            -240,
        ))
        .await
        .expect_ok();
    let answer = server
        .send(signed(
            Method::GET,
            BASE,
            None,
            "AKIDEXAMPLE",
            "secret",
            -360,
        ))
        .await;
    assert_eq!(answer.error_type(), "InvalidSignatureException");
    assert!(
        answer.message().starts_with("Signature expired"),
        "{}",
        answer.message()
    );
    let answer = server
        .send(signed(
            Method::GET,
            BASE,
            None,
            "AKIDEXAMPLE",
            "secret",
            360,
        ))
        .await;
    assert!(
        answer.message().starts_with("Signature not yet current"),
        "{}",
        answer.message()
    );
    // A tampered body.
    let mut req = signed(
        Method::POST,
        BASE,
        Some(&api_profile("x")),
        "AKIDEXAMPLE",
        "secret",
        0,
    );
    *req.body_mut() = Full::new(Bytes::from(serde_json::to_vec(&api_profile("y")).unwrap()));
    let answer = server.send(req).await;
    assert_eq!(answer.error_type(), "InvalidSignatureException");
    // A garbled header.
    let mut req = server.request(Method::GET, BASE, None);
    req.headers_mut().insert(
        "authorization",
        "AWS4-HMAC-SHA256 nonsense".parse().unwrap(),
    );
    assert_eq!(
        server.send(req).await.error_type(),
        "InvalidSignatureException"
    );
    assert_eq!(
        server.api_count("ListFargateProfiles", "InvalidSignatureException"),
        4
    );
    server.stop().await;
}
