//! `fargate-webhook probe`: send one AdmissionReview to a webhook URL, as kube-apiserver would,
//! and check the answer. The chart's `helm test` hook runs it through the Service; an operator can
//! run it by hand against any replica.
//!
//! The review and the check are pure ([`review`], [`check`]); [`run`] only sends.

use crate::admission::API_VERSION_V1;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What to send and where.
#[derive(Clone, Debug)]
pub struct Probe {
    /// `https://…/mutate`.
    pub url: String,
    /// PEM file of the CA that signed the webhook's certificate; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Namespace and labels of the pod in the review.
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub timeout: Duration,
}

/// What the webhook answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The Fargate profile named by the patch (its `eks.amazonaws.com/fargate-profile` label).
    pub profile: Option<String>,
    /// The warnings the apiserver would show.
    pub warnings: Vec<String>,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.profile {
            Some(profile) => write!(f, "allowed, mutated for Fargate profile {profile}")?,
            None => f.write_str("allowed, not mutated (no Fargate profile selects the pod)")?,
        }
        for warning in &self.warnings {
            write!(f, "\nwarning: {warning}")?;
        }
        Ok(())
    }
}

/// The review of a pod CREATE in `namespace` with `labels`, under `uid`.
pub fn review(uid: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": API_VERSION_V1,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": namespace,
            "userInfo": {"username": "fargate-webhook-probe"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "fargate-webhook-probe-", "namespace": namespace, "labels": labels},
                "spec": {"containers": [{"name": "probe", "image": "probe"}]}
            }
        }
    })
}

/// Whether `body` (answered with `status`) is what kube-apiserver accepts for the review `uid`:
/// an AdmissionReview of the same version and uid that allows the pod, with a JSON Patch if any.
pub fn check(uid: &str, status: u16, body: &[u8]) -> anyhow::Result<Answer> {
    let text = String::from_utf8_lossy(body);
    if status != 200 {
        bail!("the webhook answered HTTP {status}: {text}");
    }
    let answer: Value =
        serde_json::from_slice(body).with_context(|| format!("the answer is not JSON: {text}"))?;
    if answer["apiVersion"] != API_VERSION_V1 || answer["kind"] != "AdmissionReview" {
        bail!("the answer is not an {API_VERSION_V1} AdmissionReview: {text}");
    }
    let response = &answer["response"];
    if response["uid"] != uid {
        bail!("the answer is for uid {}, not {uid}", response["uid"]);
    }
    if response["allowed"] != true {
        bail!("the webhook did not allow the pod: {text}");
    }
    let warnings = response["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect();
    let Some(patch) = response.get("patch") else {
        return Ok(Answer {
            profile: None,
            warnings,
        });
    };
    if response["patchType"] != "JSONPatch" {
        bail!("a patch without patchType JSONPatch: {text}");
    }
    let patch = patch
        .as_str()
        .and_then(|p| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(p).ok()
        })
        .and_then(|p| serde_json::from_slice::<Vec<Value>>(&p).ok())
        .with_context(|| format!("the patch is not a base64 JSON Patch: {text}"))?;
    Ok(Answer {
        profile: profile_of(&patch),
        warnings,
    })
}

/// The profile label the patch sets, whether it adds the whole label map or one label.
fn profile_of(patch: &[Value]) -> Option<String> {
    const LABEL: &str = "eks.amazonaws.com/fargate-profile";
    patch.iter().find_map(|op| {
        let path = op["path"].as_str()?;
        if path == "/metadata/labels" {
            return op["value"][LABEL].as_str().map(str::to_string);
        }
        (path == "/metadata/labels/eks.amazonaws.com~1fargate-profile")
            .then(|| op["value"].as_str().map(str::to_string))
            .flatten()
    })
}

/// Send the review and check the answer.
pub async fn run(probe: &Probe) -> anyhow::Result<Answer> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match &probe.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.with_context(|| format!("{} is not PEM", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("{} holds an unusable certificate", path.display()))?;
            }
            if roots.is_empty() {
                bail!("{} holds no certificate", path.display());
            }
            builder.with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
        None => builder
            .with_native_roots()
            .context("reading the system's trusted roots")?,
    };
    let https = builder.https_only().enable_http1().build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let uid = uuid::Uuid::new_v4().to_string();
    let body = serde_json::to_vec(&review(&uid, &probe.namespace, &probe.labels))?;
    let request = http::Request::post(&probe.url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .with_context(|| format!("{} is not a URL", probe.url))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .with_context(|| format!("POST {}", probe.url))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(probe.timeout, exchange)
        .await
        .with_context(|| format!("no answer from {} within {:?}", probe.url, probe.timeout))??;
    check(&uid, status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn answer(response: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"apiVersion": API_VERSION_V1, "kind": "AdmissionReview", "response": response}),
        )
        .unwrap()
    }

    fn patch(ops: Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&ops).unwrap())
    }

    #[test]
    fn the_review_is_a_pod_create() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let r = review("u1", "team-a", &labels);
        assert_eq!(r["request"]["uid"], "u1");
        assert_eq!(r["request"]["operation"], "CREATE");
        assert_eq!(r["request"]["namespace"], "team-a");
        assert_eq!(r["request"]["object"]["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn good_answers() {
        let plain = check("u", 200, &answer(json!({"uid": "u", "allowed": true}))).unwrap();
        assert_eq!(plain.profile, None);
        assert!(plain.to_string().contains("not mutated"));
        for ops in [
            json!([{"op": "add", "path": "/metadata/labels", "value": {"eks.amazonaws.com/fargate-profile": "fp"}}]),
            json!([{"op": "replace", "path": "/spec/schedulerName", "value": "fargate-scheduler"},
                   {"op": "add", "path": "/metadata/labels/eks.amazonaws.com~1fargate-profile", "value": "fp"}]),
        ] {
            let body = answer(
                json!({"uid": "u", "allowed": true, "patchType": "JSONPatch",
                                     "patch": patch(ops), "warnings": ["w"]}),
            );
            let got = check("u", 200, &body).unwrap();
            assert_eq!(got.profile.as_deref(), Some("fp"));
            assert_eq!(got.warnings, ["w"]);
            assert_eq!(
                got.to_string(),
                "allowed, mutated for Fargate profile fp\nwarning: w"
            );
        }
    }

    #[test]
    fn bad_answers_say_why() {
        let ok = answer(json!({"uid": "u", "allowed": true}));
        let cases: Vec<(u16, Vec<u8>, &str)> = vec![
            (503, b"busy".to_vec(), "HTTP 503: busy"),
            (200, b"<html>".to_vec(), "not JSON"),
            (
                200,
                serde_json::to_vec(
                    &json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}),
                )
                .unwrap(),
                "not an admission.k8s.io/v1 AdmissionReview",
            ),
            (
                200,
                answer(json!({"uid": "x", "allowed": true})),
                "for uid \"x\", not u",
            ),
            (
                200,
                answer(json!({"uid": "u", "allowed": false})),
                "did not allow",
            ),
            (
                200,
                answer(json!({"uid": "u", "allowed": true, "patch": patch(json!([]))})),
                "patchType",
            ),
            (
                200,
                answer(
                    json!({"uid": "u", "allowed": true, "patchType": "JSONPatch", "patch": "%%"}),
                ),
                "not a base64 JSON Patch",
            ),
        ];
        for (status, body, want) in cases {
            let error = check("u", status, &body).unwrap_err().to_string();
            assert!(error.contains(want), "{error} (wanted {want})");
        }
        assert!(check("u", 200, &ok).is_ok());
    }
}
