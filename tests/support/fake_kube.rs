//! A small in-memory Kubernetes API server behind kube-rs's mocked service
//! (`tower_test::mock::pair`): the FargateProfile resources (list, watch with history and
//! compaction, create, get, update, status subresource, merge patch, delete with preconditions and
//! finalizers, resourceVersions and 409 Conflict, the CRD's CEL rules evaluated with kube's
//! client-side CEL validator) and the ConfigMaps of the store's coordination object. Every request
//! is logged ([`Logged`]).
//!
//! [`Fake::client`] gives a `kube::Client` it answers; the `kubectl`-like methods change the
//! objects directly, as another client would.

use super::fixtures::{ProfileBuilder, SUBNET_A};
use bytes::Bytes;
use fargate_webhook::profile::ProfileStatus;
use fargate_webhook::store::crd;
use futures::channel::mpsc;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Frame;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
pub type Chunk = Result<Frame<Bytes>, BoxError>;

/// The FargateProfile resources (cluster-scoped).
pub const PROFILES: &str = "/apis/fargate-webhook.io/v1alpha1/fargateprofiles";
/// The namespace of the coordination ConfigMap.
pub const NAMESPACE: &str = "fargate-system";
/// The coordination ConfigMap.
pub const LOCK: &str = "fargate-webhook-profiles-lock";
/// The role of the resources [`kubectl_object`] makes.
pub const ROLE: &str = "arn:aws:iam::123456789012:role/AmazonEKSPodExecutionRole";

// ---------------------------------------------------------------------------------------------
// A small API server.

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct Logged {
    /// The name of the client that sent it ([`Fake::client_named`]; empty for [`Fake::client`]).
    pub client: String,
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
    pub status: u16,
}

/// Something another writer does to the fake's state at a chosen moment.
pub type Act = Box<dyn FnOnce(&mut FakeState) + Send>;

/// Which request to leave unanswered: client name, method, path, query.
pub type HangIf = Box<dyn Fn(&str, &Method, &str, &str) -> bool + Send>;

/// The objects, the watch history and the test switches ([`Fake::with`] reaches them).
#[derive(Default)]
pub struct FakeState {
    pub version: u64,
    pub uid: u64,
    pub profiles: BTreeMap<String, Value>,
    pub config_maps: BTreeMap<String, Value>,
    /// `coordination.k8s.io/v1` Leases in [`NAMESPACE`].
    pub leases: BTreeMap<String, Value>,
    /// Profile watch events: (resourceVersion, type, object).
    pub history: Vec<(u64, &'static str, Value)>,
    /// Watches from a resourceVersion below this one get `410 Expired`.
    pub compacted: u64,
    pub watchers: Vec<mpsc::UnboundedSender<Chunk>>,
    pub log: Vec<Logged>,
    /// Before answering the next profile POST, create a same-named object as `kubectl` would.
    pub steal_next_create: bool,
    /// Before answering the next status PUT, change the object (as `kubectl label` would).
    pub touch_before_next_status: bool,
    /// Run before the next status PUT is answered (another writer acting at that moment); with
    /// `touch_before_next_status`, before the touch.
    pub before_next_status: Option<Act>,
    /// Run before the next status PUT of a profile, which then fails with this code: another
    /// writer acting while a request is lost.
    pub fail_next_status: Option<(u16, Act)>,
    /// Run before the next PUT of a profile (not its status) is looked at: a change made here
    /// moves the resourceVersion, and the PUT then conflicts.
    pub before_next_put: Option<Act>,
    /// Before answering the next profile PATCH, remove the object (as another writer dropping the
    /// last finalizer of a deleted object would): the PATCH then finds nothing.
    pub remove_before_next_patch: bool,
    /// Refuse every create of this name with `422 Invalid`, as a tightened CRD schema would.
    pub refuse_creates_of: Option<String>,
    /// Answer every Lease request of the client of this name with `503`, as a partition would.
    pub cut_off_leases_of: Option<String>,
    /// Never answer the requests of this client (by name), method and path fragment: requests
    /// stuck on a dead connection. The client's other requests are answered.
    pub hang: Option<(String, Method, String)>,
    /// Never answer the next request this matches (then the switch is spent): one request stuck on
    /// a dead connection, told from its kind's others by the query (a list from a watch, say).
    pub hang_next_if: Option<HangIf>,
    /// Answer the requests of this client (by name), method and path fragment after this delay, on
    /// a task of their own: a slow network, where a write lands whether its caller still waits or
    /// not.
    pub slow: Option<(String, Method, String, std::time::Duration)>,
    /// Answer `500` to the PUTs of the coordination ConfigMap whose 1-based number (counted from
    /// when this is set, see `lock_puts`) is in this list.
    pub fail_lock_puts: Vec<u32>,
    /// PUTs of the coordination ConfigMap answered so far (for `fail_lock_puts`).
    pub lock_puts: u32,
    /// Pods, Nodes, Events and the other core objects the scheduler works on.
    pub core: super::fake_core::Core,
    /// Secrets and MutatingWebhookConfigurations (the managed TLS mode).
    pub tls: super::fake_tls::Tls,
}

/// Objects the fake keeps as given, with resourceVersions and optimistic concurrency only.
#[derive(Clone, Copy)]
enum Plain {
    ConfigMaps,
    Leases,
}

impl Plain {
    fn resource(self) -> &'static str {
        match self {
            Plain::ConfigMaps => "configmaps",
            Plain::Leases => "leases.coordination.k8s.io",
        }
    }
}

/// The fake API server; share it as an `Arc` ([`Fake::new`]).
#[derive(Default)]
pub struct Fake {
    state: Mutex<FakeState>,
}

pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

pub fn json_response(code: u16, body: &Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap());
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(
            http_body_util::Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap()
}

pub fn stream_response(rx: mpsc::UnboundedReceiver<Chunk>) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(http_body_util::StreamBody::new(rx).boxed_unsync())
        .unwrap()
}

pub fn event_line(kind: &str, object: &Value) -> Chunk {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    line.push(b'\n');
    Ok(Frame::data(Bytes::from(line)))
}

fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// RFC 7396.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().unwrap();
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn now_rfc3339() -> String {
    "2026-01-02T03:04:05Z".to_owned()
}

fn cel_problems(object: &Value, old: Option<&Value>) -> Option<String> {
    let crd = crd::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap(),
    )
    .unwrap();
    kube::core::cel::Validator::new()
        .validate(&schema, object, old)
        .err()
        .map(|errors| errors.to_string())
}

impl FakeState {
    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn emit(&mut self, kind: &'static str, object: Value) {
        let version = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        self.history.push((version, kind, object.clone()));
        self.watchers
            .retain(|tx| tx.unbounded_send(event_line(kind, &object)).is_ok());
    }

    /// Another writer changes the `data` of the coordination ConfigMap: a new resourceVersion.
    pub fn edit_lock(&mut self, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        let version = self.bump().to_string();
        let lock = self.config_maps.get_mut(LOCK).expect("the lock exists");
        lock["metadata"]["resourceVersion"] = json!(version);
        f(lock["data"].as_object_mut().expect("the lock has data"));
    }

    /// [`Fake::modify`], from inside the fake (a switch's action).
    pub fn modify_profile(&mut self, name: &str, f: impl FnOnce(&mut Value)) -> Value {
        let mut object = self.profiles[name].clone();
        f(&mut object);
        self.insert_profile(object, "MODIFIED")
    }

    fn insert_profile(&mut self, mut object: Value, kind: &'static str) -> Value {
        let version = self.bump();
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        self.profiles.insert(name, object.clone());
        self.emit(kind, object.clone());
        object
    }

    fn new_profile(&mut self, mut object: Value) -> Value {
        self.uid += 1;
        let uid = format!("uid-{}", self.uid);
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("generation".into(), json!(1));
        metadata.insert("creationTimestamp".into(), json!(now_rfc3339()));
        metadata.remove("resourceVersion");
        object["apiVersion"] = json!("fargate-webhook.io/v1alpha1");
        object["kind"] = json!("FargateProfile");
        object.as_object_mut().unwrap().remove("status");
        self.insert_profile(object, "ADDED")
    }

    /// The object gone for good (its last finalizer dropped), with its DELETED event.
    pub fn remove_profile(&mut self, name: &str) -> Value {
        let mut object = self.profiles.remove(name).unwrap();
        let version = self.bump();
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        self.emit("DELETED", object.clone());
        object
    }

    fn list(&self) -> Value {
        json!({
            "apiVersion": "fargate-webhook.io/v1alpha1",
            "kind": "FargateProfileList",
            "metadata": {"resourceVersion": self.version.to_string()},
            "items": self.profiles.values().cloned().collect::<Vec<_>>(),
        })
    }

    /// GET, POST and PUT (with the resourceVersion read) of a [`Plain`] object.
    fn plain(&mut self, which: Plain, method: &Method, name: &str, body: &Value) -> Response<Body> {
        let resource = which.resource();
        let version = self.version + 1;
        let objects = match which {
            Plain::ConfigMaps => &mut self.config_maps,
            Plain::Leases => &mut self.leases,
        };
        let answer = |code: u16, reason: &str, message: String| {
            json_response(code, &status_body(code, reason, &message))
        };
        let mut stored = body.clone();
        let written = match (method.clone(), name) {
            (Method::GET, name) => {
                return match objects.get(name) {
                    Some(object) => json_response(200, object),
                    None => answer(404, "NotFound", format!("{resource} \"{name}\" not found")),
                };
            }
            (Method::POST, "") => {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                if objects.contains_key(&name) {
                    return answer(
                        409,
                        "AlreadyExists",
                        format!("{resource} \"{name}\" already exists"),
                    );
                }
                stored["metadata"]["resourceVersion"] = json!(version.to_string());
                objects.insert(name, stored.clone());
                201
            }
            (Method::PUT, name) => {
                let Some(current) = objects.get(name) else {
                    return answer(404, "NotFound", format!("{resource} \"{name}\" not found"));
                };
                if current["immutable"] == true && body["data"] != current["data"] {
                    return answer(
                        422,
                        "Invalid",
                        format!(
                            "{resource} \"{name}\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
                        ),
                    );
                }
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return answer(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                        ),
                    );
                }
                stored["metadata"]["resourceVersion"] = json!(version.to_string());
                objects.insert(name.to_owned(), stored.clone());
                200
            }
            _ => return answer(405, "MethodNotAllowed", "no".into()),
        };
        self.version = version;
        json_response(written, &stored)
    }

    fn handle(&mut self, method: &Method, path: &str, query: &str, body: &Value) -> Response<Body> {
        let conflict = |what: &str| {
            json_response(
                409,
                &status_body(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {what}: the object has been modified; please apply your changes to the latest version and try again"
                    ),
                ),
            )
        };
        let not_found = |what: &str| {
            json_response(
                404,
                &status_body(404, "NotFound", &format!("{what} not found")),
            )
        };

        let plain = [
            (
                format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
                Plain::ConfigMaps,
            ),
            (
                format!("/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"),
                Plain::Leases,
            ),
        ];
        if method == Method::PUT
            && path == format!("/api/v1/namespaces/{NAMESPACE}/configmaps/{LOCK}")
        {
            self.lock_puts += 1;
            if self.fail_lock_puts.contains(&self.lock_puts) {
                return json_response(500, &status_body(500, "InternalError", "injected"));
            }
        }
        if let Some(response) = self.core.handle(method, path, query, body, NAMESPACE) {
            return response;
        }
        if let Some(response) = self.tls.handle(method, path, body, &mut self.version) {
            return response;
        }
        for (prefix, which) in plain {
            if let Some(rest) = path.strip_prefix(&prefix) {
                return self.plain(which, method, rest.trim_start_matches('/'), body);
            }
        }

        let Some(rest) = path.strip_prefix(PROFILES) else {
            return not_found(path);
        };
        let mut parts = rest.trim_start_matches('/').split('/');
        let name = parts.next().unwrap_or("").to_owned();
        let sub = parts.next().unwrap_or("");
        match (method.clone(), name.as_str(), sub) {
            (Method::GET, "", _) if query_param(query, "watch") == Some("true") => {
                let from: u64 = query_param(query, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let (tx, rx) = mpsc::unbounded();
                if from < self.compacted {
                    let expired = status_body(
                        410,
                        "Expired",
                        &format!("too old resource version: {from} ({})", self.compacted),
                    );
                    let _ = tx.unbounded_send(event_line("ERROR", &expired));
                    return stream_response(rx);
                }
                for (version, kind, object) in &self.history {
                    if *version > from {
                        let _ = tx.unbounded_send(event_line(kind, object));
                    }
                }
                self.watchers.push(tx);
                stream_response(rx)
            }
            (Method::GET, "", _) => json_response(200, &self.list()),
            (Method::POST, "", _) => {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                if std::mem::take(&mut self.steal_next_create) {
                    self.new_profile(kubectl_object(&name, None));
                }
                if self.profiles.contains_key(&name) {
                    return json_response(
                        409,
                        &status_body(
                            409,
                            "AlreadyExists",
                            &format!(
                                "fargateprofiles.fargate-webhook.io \"{name}\" already exists"
                            ),
                        ),
                    );
                }
                if let Some(problem) = cel_problems(body, None) {
                    return json_response(422, &status_body(422, "Invalid", &problem));
                }
                if self.refuse_creates_of.as_deref() == Some(name.as_str()) {
                    let problem = format!(
                        "FargateProfile.fargate-webhook.io \"{name}\" is invalid: spec: a tightened rule"
                    );
                    return json_response(422, &status_body(422, "Invalid", &problem));
                }
                let created = self.new_profile(body.clone());
                json_response(201, &created)
            }
            (Method::GET, name, "") => match self.profiles.get(name) {
                Some(object) => json_response(200, object),
                None => not_found(&format!("fargateprofiles \"{name}\"")),
            },
            (Method::PUT, name, sub) => {
                if sub == "status"
                    && let Some((code, act)) = self.fail_next_status.take()
                {
                    act(self);
                    return json_response(code, &status_body(code, "InternalError", "injected"));
                }
                if sub.is_empty()
                    && let Some(act) = self.before_next_put.take()
                {
                    act(self);
                }
                let Some(current) = self.profiles.get(name).cloned() else {
                    return not_found(&format!("fargateprofiles \"{name}\""));
                };
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return conflict(&format!("fargateprofiles.fargate-webhook.io \"{name}\""));
                }
                if sub == "status"
                    && let Some(act) = self.before_next_status.take()
                {
                    act(self);
                }
                if sub == "status" && std::mem::take(&mut self.touch_before_next_status) {
                    let mut touched = current.clone();
                    touched["metadata"]["labels"] = json!({"touched": "yes"});
                    self.insert_profile(touched, "MODIFIED");
                    return conflict(&format!("fargateprofiles.fargate-webhook.io \"{name}\""));
                }
                let mut next = current.clone();
                if sub == "status" {
                    next["status"] = body["status"].clone();
                } else {
                    if let Some(problem) = cel_problems(body, Some(&current)) {
                        return json_response(422, &status_body(422, "Invalid", &problem));
                    }
                    for key in ["labels", "annotations", "finalizers"] {
                        next["metadata"][key] = body["metadata"][key].clone();
                    }
                    if body["spec"] != current["spec"] {
                        next["spec"] = body["spec"].clone();
                        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
                        next["metadata"]["generation"] = json!(generation + 1);
                    }
                }
                let written = self.insert_profile(next, "MODIFIED");
                json_response(200, &written)
            }
            (Method::PATCH, name, "") => {
                if std::mem::take(&mut self.remove_before_next_patch)
                    && self.profiles.contains_key(name)
                {
                    self.remove_profile(name);
                }
                let Some(current) = self.profiles.get(name).cloned() else {
                    return not_found(&format!("fargateprofiles \"{name}\""));
                };
                let wanted = &body["metadata"]["resourceVersion"];
                if !wanted.is_null() && *wanted != current["metadata"]["resourceVersion"] {
                    return conflict(&format!("fargateprofiles.fargate-webhook.io \"{name}\""));
                }
                let mut next = current.clone();
                let mut patch = body.clone();
                patch["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("resourceVersion"));
                patch.as_object_mut().unwrap().remove("status");
                merge(&mut next, &patch);
                if next["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
                {
                    next["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("finalizers");
                }
                let written = self.insert_profile(next, "MODIFIED");
                if !written["metadata"]["deletionTimestamp"].is_null()
                    && written["metadata"]["finalizers"].is_null()
                {
                    self.remove_profile(name);
                }
                json_response(200, &written)
            }
            (Method::DELETE, name, "") => {
                let Some(current) = self.profiles.get(name).cloned() else {
                    return not_found(&format!("fargateprofiles \"{name}\""));
                };
                let pre = &body["preconditions"];
                let uid_ok = pre["uid"].is_null() || pre["uid"] == current["metadata"]["uid"];
                let version_ok = pre["resourceVersion"].is_null()
                    || pre["resourceVersion"] == current["metadata"]["resourceVersion"];
                if !uid_ok || !version_ok {
                    return conflict(&format!("fargateprofiles.fargate-webhook.io \"{name}\""));
                }
                self.delete_profile(name)
            }
            _ => json_response(405, &status_body(405, "MethodNotAllowed", "no")),
        }
    }

    fn delete_profile(&mut self, name: &str) -> Response<Body> {
        let current = self.profiles[name].clone();
        let has_finalizers = current["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if current["metadata"]["deletionTimestamp"].is_null() {
                let mut next = current;
                next["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                let written = self.insert_profile(next, "MODIFIED");
                return json_response(200, &written);
            }
            return json_response(200, &current);
        }
        let gone = self.remove_profile(name);
        json_response(
            200,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": "fargateprofiles", "uid": gone["metadata"]["uid"]},
            }),
        )
    }
}

impl Fake {
    pub fn new() -> Arc<Self> {
        Arc::new(Fake::default())
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// A client whose requests this fake answers.
    pub fn client(self: &Arc<Self>) -> kube::Client {
        self.client_named("")
    }

    /// A client whose requests are logged under `name` (one per replica of a test).
    pub fn client_named(self: &Arc<Self>, name: &str) -> kube::Client {
        let name = name.to_owned();
        let (service, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
        let fake = Arc::clone(self);
        tokio::spawn(async move {
            // Requests left unanswered (`hang`): kept, so that their callers wait.
            let mut hanging = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let path = parts.uri.path().to_owned();
                let query = parts.uri.query().unwrap_or("").to_owned();
                let hangs = fake.with(|s| {
                    s.hang.as_ref().is_some_and(|(client, method, fragment)| {
                        *client == name
                            && *method == parts.method
                            && path.contains(fragment.as_str())
                    })
                });
                let hangs = hangs
                    || fake.with(|s| {
                        let matched = s
                            .hang_next_if
                            .as_ref()
                            .is_some_and(|f| f(&name, &parts.method, &path, &query));
                        if matched {
                            s.hang_next_if = None;
                        }
                        matched
                    });
                if hangs {
                    hanging.push(respond);
                    continue;
                }
                let slow = fake.with(|s| {
                    s.slow
                        .as_ref()
                        .filter(|(client, method, fragment, _)| {
                            *client == name
                                && *method == parts.method
                                && path.contains(fragment.as_str())
                        })
                        .map(|slow| slow.3)
                });
                let request = (name.clone(), parts.method, path, query, body);
                match slow {
                    Some(delay) => {
                        let fake = Arc::clone(&fake);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            respond.send_response(fake.answer(request));
                        });
                    }
                    None => respond.send_response(fake.answer(request)),
                }
            }
        });
        kube::Client::new(service, "default")
    }

    /// Answer one request (client, method, path, query, body) and log it.
    fn answer(&self, request: (String, Method, String, String, Value)) -> Response<Body> {
        let (client, method, path, query, body) = request;
        self.with(|state| {
            let cut_off = path.contains("/leases")
                && state.cut_off_leases_of.as_deref() == Some(client.as_str());
            let response = if cut_off {
                json_response(503, &status_body(503, "ServiceUnavailable", "cut off"))
            } else {
                state.handle(&method, &path, &query, &body)
            };
            state.log.push(Logged {
                client,
                method,
                path,
                query,
                body,
                status: response.status().as_u16(),
            });
            response
        })
    }

    pub fn log(&self) -> Vec<Logged> {
        self.with(|s| s.log.clone())
    }

    pub fn clear_log(&self) {
        self.with(|s| s.log.clear());
    }

    pub fn profile(&self, name: &str) -> Option<Value> {
        self.with(|s| s.profiles.get(name).cloned())
    }

    pub fn lock_data(&self) -> Value {
        self.with(|s| {
            s.config_maps
                .get(LOCK)
                .map(|cm| cm["data"].clone())
                .unwrap_or(Value::Null)
        })
    }

    /// `kubectl apply` of a new resource.
    pub fn apply(&self, object: Value) -> Value {
        self.with(|s| s.new_profile(object))
    }

    /// `kubectl edit --subresource status`, or any later change to an existing resource.
    pub fn modify(&self, name: &str, f: impl FnOnce(&mut Value)) -> Value {
        self.with(|s| s.modify_profile(name, f))
    }

    /// `kubectl delete`.
    pub fn delete(&self, name: &str) {
        self.with(|s| {
            s.delete_profile(name);
        });
    }

    /// An API server down for a while: every open watch ends, `changes` happen and the history is
    /// compacted, all under one lock, so no watch can resume in between (a resumed watch would get
    /// the changes as events instead of `410 Expired`).
    pub fn down_while(&self, changes: impl FnOnce(&mut Down<'_>)) {
        self.with(|s| {
            s.watchers.clear();
            changes(&mut Down(s));
            s.compacted = s.version;
        });
    }

    /// End every open watch, as an API server restart or a timeout does.
    pub fn close_watches(&self) {
        self.with(|s| s.watchers.clear());
    }

    /// Forget the history: watches from any resourceVersion before the latest get `410 Expired`
    /// (a list read now, at the latest, is watched from without one, as etcd keeps its revision).
    pub fn compact(&self) {
        self.with(|s| s.compacted = s.version);
    }

    /// Send `410 Expired` on every open watch and end it.
    pub fn expire_watches(&self) {
        self.with(|s| {
            let expired = status_body(410, "Expired", "too old resource version");
            for tx in s.watchers.drain(..) {
                let _ = tx.unbounded_send(event_line("ERROR", &expired));
            }
        });
    }
}

/// Changes made while the fake API server is down ([`Fake::down_while`]).
pub struct Down<'s>(&'s mut FakeState);

impl Down<'_> {
    /// `kubectl apply` of a new resource.
    pub fn apply(&mut self, object: Value) {
        self.0.new_profile(object);
    }

    /// `kubectl delete`.
    pub fn delete(&mut self, name: &str) {
        self.0.delete_profile(name);
    }
}

/// A resource as `kubectl apply` sends it: role [`ROLE`], one subnet, one selector for the
/// namespace `ns-<name>`, and `status.status` only when `status` is given.
pub fn kubectl_object(name: &str, status: Option<ProfileStatus>) -> Value {
    let mut profile = ProfileBuilder::new(name)
        .role(ROLE)
        .subnets(&[SUBNET_A])
        .namespace(&format!("ns-{name}"));
    if let Some(status) = status {
        profile = profile.status(status);
    }
    profile.resource()
}
