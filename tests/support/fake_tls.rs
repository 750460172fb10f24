//! The Secrets and MutatingWebhookConfigurations of the fake API server ([`super::fake_kube`]), for
//! the managed TLS mode: Secrets in [`NAMESPACE`] (get, create, replace with the resourceVersion
//! read), MutatingWebhookConfigurations (get, JSON merge patch with an optional resourceVersion
//! precondition), both with 409 Conflict as the apiserver answers it.

use super::fake_kube::{Body, NAMESPACE, json_response, merge, status_body};
use http::{Method, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const SECRETS: &str = "/api/v1/namespaces/fargate-system/secrets";
pub const CONFIGS: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";

#[derive(Default)]
pub struct Tls {
    pub secrets: BTreeMap<String, Value>,
    pub configs: BTreeMap<String, Value>,
    /// Before answering the next Secret PUT, change the stored Secret (as another writer would).
    pub touch_secret_before_next_put: bool,
}

fn answer(code: u16, reason: &str, message: String) -> Response<Body> {
    json_response(code, &status_body(code, reason, &message))
}

fn conflict(what: &str) -> Response<Body> {
    answer(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {what}: the object has been modified; please apply your changes to the latest version and try again"
        ),
    )
}

impl Tls {
    /// The answer for a Secret or configuration request; None for other paths. `version` is the
    /// fake's resourceVersion counter.
    pub fn handle(
        &mut self,
        method: &Method,
        path: &str,
        body: &Value,
        version: &mut u64,
    ) -> Option<Response<Body>> {
        debug_assert_eq!(NAMESPACE, "fargate-system");
        if let Some(rest) = path.strip_prefix(SECRETS) {
            return Some(self.secret(method, rest.trim_start_matches('/'), body, version));
        }
        if let Some(rest) = path.strip_prefix(CONFIGS) {
            return Some(self.config(method, rest.trim_start_matches('/'), body, version));
        }
        None
    }

    fn secret(
        &mut self,
        method: &Method,
        name: &str,
        body: &Value,
        version: &mut u64,
    ) -> Response<Body> {
        match (method.clone(), name) {
            (Method::GET, name) => match self.secrets.get(name) {
                Some(secret) => json_response(200, secret),
                None => answer(404, "NotFound", format!("secrets \"{name}\" not found")),
            },
            (Method::POST, "") => {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                if self.secrets.contains_key(&name) {
                    return answer(
                        409,
                        "AlreadyExists",
                        format!("secrets \"{name}\" already exists"),
                    );
                }
                *version += 1;
                let mut stored = body.clone();
                stored["metadata"]["resourceVersion"] = json!(version.to_string());
                self.secrets.insert(name, stored.clone());
                json_response(201, &stored)
            }
            (Method::PUT, name) => {
                if std::mem::take(&mut self.touch_secret_before_next_put) {
                    *version += 1;
                    if let Some(current) = self.secrets.get_mut(name) {
                        current["metadata"]["resourceVersion"] = json!(version.to_string());
                    }
                }
                let Some(current) = self.secrets.get(name) else {
                    return answer(404, "NotFound", format!("secrets \"{name}\" not found"));
                };
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return conflict(&format!("secrets \"{name}\""));
                }
                *version += 1;
                let mut stored = body.clone();
                stored["metadata"]["resourceVersion"] = json!(version.to_string());
                self.secrets.insert(name.to_owned(), stored.clone());
                json_response(200, &stored)
            }
            _ => answer(405, "MethodNotAllowed", "no".into()),
        }
    }

    fn config(
        &mut self,
        method: &Method,
        name: &str,
        body: &Value,
        version: &mut u64,
    ) -> Response<Body> {
        let Some(current) = self.configs.get(name).cloned() else {
            return answer(
                404,
                "NotFound",
                format!(
                    "mutatingwebhookconfigurations.admissionregistration.k8s.io \"{name}\" not found"
                ),
            );
        };
        match method.clone() {
            Method::GET => json_response(200, &current),
            Method::PATCH => {
                let precondition = &body["metadata"]["resourceVersion"];
                if !precondition.is_null()
                    && *precondition != current["metadata"]["resourceVersion"]
                {
                    return conflict(&format!(
                        "mutatingwebhookconfigurations.admissionregistration.k8s.io \"{name}\""
                    ));
                }
                let mut patched = current;
                merge(&mut patched, body);
                *version += 1;
                patched["metadata"]["resourceVersion"] = json!(version.to_string());
                self.configs.insert(name.to_owned(), patched.clone());
                json_response(200, &patched)
            }
            _ => answer(405, "MethodNotAllowed", "no".into()),
        }
    }

    /// `kubectl apply` of a configuration (as the chart makes it: no caBundle), or a change to it.
    pub fn put_config(&mut self, config: Value, version: &mut u64) {
        *version += 1;
        let mut config = config;
        config["metadata"]["resourceVersion"] = json!(version.to_string());
        let name = config["metadata"]["name"].as_str().unwrap().to_owned();
        self.configs.insert(name, config);
    }
}
