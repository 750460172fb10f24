//! The core objects the fargate-scheduler works on, for the fake API server of [`super::fake_kube`]:
//! Pods (list, watch, get, create, delete with a UID precondition, the `binding`, `eviction` and
//! `status` subresources), Nodes (list, watch, get, create, delete with a UID precondition), Events
//! (kept as posted), and empty ConfigMaps, claims and volumes outside the store's namespace. Lists
//! and watches honour field selectors (`a.b=v`, `a.b!=v`) and label selectors (`k=v`, `k!=v`, `k`),
//! and a watch sends `DELETED` for an object that stops matching, as the apiserver does.

use super::fake_kube::{Body, Chunk, event_line, json_response, status_body, stream_response};
use futures::channel::mpsc;
use http::{Method, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One watch: where its events go and what it selects.
struct Watch {
    tx: mpsc::UnboundedSender<Chunk>,
    namespace: Option<String>,
    fields: String,
    labels: String,
}

/// Objects of one resource, with their watch history.
#[derive(Default)]
pub struct Objects {
    /// By `namespace/name` (Pods) or `name` (Nodes).
    pub items: BTreeMap<String, Value>,
    /// (resourceVersion, before, after) of every change.
    history: Vec<(u64, Option<Value>, Option<Value>)>,
    watches: Vec<Watch>,
}

/// The objects of [`super::fake_kube::FakeState::core`].
#[derive(Default)]
pub struct Core {
    version: u64,
    uid: u64,
    pub pods: Objects,
    pub nodes: Objects,
    /// Every Event posted (`events.k8s.io/v1`), in order.
    pub events: Vec<Value>,
    /// Answer evictions `429 TooManyRequests`, as a PodDisruptionBudget that allows none would.
    pub refuse_evictions: bool,
    /// Evictions write the `DisruptionTarget` condition and stop there, as the apiserver does
    /// between its two writes: the deletion is left to the test.
    pub evictions_only_mark: bool,
    /// Answer `500` to this many lists of Nodes whose label selector contains the string: a cache
    /// whose first list comes late (the watcher lists again after its backoff).
    pub fail_node_lists: Option<(String, u32)>,
    /// Answer `500` to this many pods/status PATCHes (an apiserver that fails a write now and then).
    pub fail_status_patches: u32,
    /// Watches that never send (ConfigMaps outside the store's namespace).
    idle: Vec<mpsc::UnboundedSender<Chunk>>,
}

fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .replace('+', " ")
}

fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| decode(v))
    })
}

/// Whether `object` has every field of a field selector (a missing field is the empty string).
pub fn fields_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (path, want, equal) = match term.split_once("!=") {
            Some((p, v)) => (p, v, false),
            None => match term.split_once('=') {
                Some((p, v)) => (p, v.trim_start_matches('='), true),
                None => return false,
            },
        };
        let value = path
            .split('.')
            .fold(object, |v, key| &v[key])
            .as_str()
            .unwrap_or("");
        (value == want) == equal
    })
}

/// Whether `object`'s labels satisfy a label selector.
pub fn labels_match(object: &Value, selector: &str) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((key, want)) = term.split_once("!=") {
            labels[key].as_str() != Some(want)
        } else if let Some((key, want)) = term.split_once('=') {
            labels[key].as_str() == Some(want.trim_start_matches('='))
        } else if let Some(key) = term.strip_prefix('!') {
            labels[key].is_null()
        } else {
            !labels[term].is_null()
        }
    })
}

impl Watch {
    fn selects(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| object["metadata"]["namespace"] == ns)
            && fields_match(object, &self.fields)
            && labels_match(object, &self.labels)
    }

    /// The event this watch sees for a change, if any.
    fn event(&self, before: Option<&Value>, after: Option<&Value>) -> Option<Chunk> {
        let was = before.is_some_and(|o| self.selects(o));
        let is = after.is_some_and(|o| self.selects(o));
        match (was, is, after) {
            (false, true, Some(after)) => Some(event_line("ADDED", after)),
            (true, true, Some(after)) => Some(event_line("MODIFIED", after)),
            (true, false, Some(after)) => Some(event_line("DELETED", after)),
            (true, false, None) => Some(event_line("DELETED", before?)),
            _ => None,
        }
    }
}

impl Objects {
    fn record(&mut self, version: u64, before: Option<Value>, after: Option<Value>) {
        self.watches
            .retain(|w| match w.event(before.as_ref(), after.as_ref()) {
                Some(chunk) => w.tx.unbounded_send(chunk).is_ok(),
                None => !w.tx.is_closed(),
            });
        self.history.push((version, before, after));
    }

    fn list(&self, kind: &str, version: u64, namespace: Option<&str>, query: &str) -> Value {
        let watch = Watch {
            tx: mpsc::unbounded().0,
            namespace: namespace.map(str::to_owned),
            fields: param(query, "fieldSelector").unwrap_or_default(),
            labels: param(query, "labelSelector").unwrap_or_default(),
        };
        let items: Vec<&Value> = self.items.values().filter(|o| watch.selects(o)).collect();
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": version.to_string()}, "items": items})
    }

    fn watch(&mut self, namespace: Option<&str>, query: &str) -> Response<Body> {
        let (tx, rx) = mpsc::unbounded();
        let from: u64 = param(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let watch = Watch {
            tx,
            namespace: namespace.map(str::to_owned),
            fields: param(query, "fieldSelector").unwrap_or_default(),
            labels: param(query, "labelSelector").unwrap_or_default(),
        };
        for (version, before, after) in &self.history {
            if *version > from
                && let Some(chunk) = watch.event(before.as_ref(), after.as_ref())
            {
                let _ = watch.tx.unbounded_send(chunk);
            }
        }
        self.watches.push(watch);
        stream_response(rx)
    }
}

fn answer(code: u16, reason: &str, message: String) -> Response<Body> {
    json_response(code, &status_body(code, reason, &message))
}

fn success() -> Response<Body> {
    json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
    )
}

impl Core {
    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn fill(&mut self, object: &mut Value) {
        self.uid += 1;
        let meta = &mut object["metadata"];
        if meta["uid"].is_null() {
            meta["uid"] = json!(format!("core-uid-{}", self.uid));
        }
        meta["creationTimestamp"] = json!("2026-12-05T08:00:00Z");
    }

    /// Store `object` under `key` in `pods` or `nodes` (`which`), as a change watches see.
    fn put(&mut self, pods: bool, key: &str, mut object: Value) -> Value {
        let version = self.bump();
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let objects = if pods {
            &mut self.pods
        } else {
            &mut self.nodes
        };
        let before = objects.items.insert(key.to_owned(), object.clone());
        objects.record(version, before, Some(object.clone()));
        object
    }

    fn remove(&mut self, pods: bool, key: &str) -> Option<Value> {
        let version = self.bump();
        let objects = if pods {
            &mut self.pods
        } else {
            &mut self.nodes
        };
        let mut gone = objects.items.remove(key)?;
        gone["metadata"]["resourceVersion"] = json!(version.to_string());
        objects.record(version, Some(gone.clone()), None);
        Some(gone)
    }

    /// Create a pod as a client would (`namespace` and `name` from its metadata).
    pub fn create_pod(&mut self, mut pod: Value) -> Value {
        self.fill(&mut pod);
        let key = format!(
            "{}/{}",
            pod["metadata"]["namespace"].as_str().unwrap(),
            pod["metadata"]["name"].as_str().unwrap()
        );
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        self.put(true, &key, pod)
    }

    /// Change a pod as another client would.
    pub fn modify_pod(&mut self, key: &str, change: impl FnOnce(&mut Value)) -> Value {
        let mut pod = self.pods.items[key].clone();
        change(&mut pod);
        self.put(true, key, pod)
    }

    pub fn delete_pod(&mut self, key: &str) -> Option<Value> {
        self.remove(true, key)
    }

    /// Create a node as a client (a kubelet) would.
    pub fn create_node(&mut self, mut node: Value) -> Value {
        self.fill(&mut node);
        let name = node["metadata"]["name"].as_str().unwrap().to_owned();
        node["apiVersion"] = json!("v1");
        node["kind"] = json!("Node");
        self.put(false, &name, node)
    }

    /// Whether this list of Nodes is one [`Core::fail_node_lists`] fails (counted down).
    fn node_list_fails(&mut self, query: &str) -> bool {
        let selector = param(query, "labelSelector").unwrap_or_default();
        match &mut self.fail_node_lists {
            Some((wanted, left)) if *left > 0 && selector.contains(wanted.as_str()) => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// The answer to a request under one of the core paths; `None` when the path is not one.
    pub fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        body: &Value,
        store_namespace: &str,
    ) -> Option<Response<Body>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let watch = param(query, "watch").as_deref() == Some("true");
        let response = match (method.clone(), parts.as_slice()) {
            (Method::GET, ["api", "v1", "pods"]) if watch => self.pods.watch(None, query),
            (Method::GET, ["api", "v1", "pods"]) => {
                json_response(200, &self.pods.list("PodList", self.version, None, query))
            }
            (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) if watch => {
                self.pods.watch(Some(ns), query)
            }
            (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => json_response(
                200,
                &self.pods.list("PodList", self.version, Some(ns), query),
            ),
            (Method::POST, ["api", "v1", "namespaces", ns, "pods"]) => {
                let mut pod = body.clone();
                pod["metadata"]["namespace"] = json!(ns);
                let key = format!("{ns}/{}", pod["metadata"]["name"].as_str().unwrap_or(""));
                if self.pods.items.contains_key(&key) {
                    answer(
                        409,
                        "AlreadyExists",
                        format!("pods \"{key}\" already exists"),
                    )
                } else {
                    json_response(201, &self.create_pod(pod))
                }
            }
            (method, ["api", "v1", "namespaces", ns, "pods", name, rest @ ..]) => self.pod_request(
                &method,
                &format!("{ns}/{name}"),
                rest.first().copied(),
                body,
            ),
            (Method::GET, ["api", "v1", "nodes"]) if watch => self.nodes.watch(None, query),
            (Method::GET, ["api", "v1", "nodes"]) if self.node_list_fails(query) => {
                answer(500, "InternalError", "node list failed (injected)".into())
            }
            (Method::GET, ["api", "v1", "nodes"]) => {
                json_response(200, &self.nodes.list("NodeList", self.version, None, query))
            }
            (Method::POST, ["api", "v1", "nodes"]) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
                if self.nodes.items.contains_key(&name) {
                    answer(
                        409,
                        "AlreadyExists",
                        format!("nodes \"{name}\" already exists"),
                    )
                } else {
                    json_response(201, &self.create_node(body.clone()))
                }
            }
            (Method::GET, ["api", "v1", "nodes", name]) => match self.nodes.items.get(*name) {
                Some(node) => json_response(200, node),
                None => answer(404, "NotFound", format!("nodes \"{name}\" not found")),
            },
            (Method::DELETE, ["api", "v1", "nodes", name]) => {
                let Some(node) = self.nodes.items.get(*name) else {
                    return Some(answer(
                        404,
                        "NotFound",
                        format!("nodes \"{name}\" not found"),
                    ));
                };
                let want = &body["preconditions"]["uid"];
                if !want.is_null() && *want != node["metadata"]["uid"] {
                    return Some(answer(
                        409,
                        "Conflict",
                        format!(
                            "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                            node["metadata"]["uid"]
                        ),
                    ));
                }
                let gone = self.remove(false, name).unwrap();
                json_response(200, &gone)
            }
            (Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => {
                self.events.push(body.clone());
                json_response(201, body)
            }
            (Method::PATCH, ["apis", "events.k8s.io", "v1", "namespaces", _, "events", _]) => {
                self.events.push(body.clone());
                json_response(200, body)
            }
            (Method::GET, ["api", "v1", "namespaces", ns, "configmaps", ..])
                if *ns != store_namespace =>
            {
                if watch {
                    let (tx, rx) = mpsc::unbounded();
                    self.idle.push(tx);
                    stream_response(rx)
                } else if parts.len() == 5 {
                    json_response(
                        200,
                        &json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": self.version.to_string()}, "items": []}),
                    )
                } else {
                    answer(
                        404,
                        "NotFound",
                        format!("configmaps \"{}\" not found", parts[5]),
                    )
                }
            }
            (Method::GET, ["api", "v1", "namespaces", _, "persistentvolumeclaims", name])
            | (Method::GET, ["api", "v1", "persistentvolumes", name]) => {
                answer(404, "NotFound", format!("\"{name}\" not found"))
            }
            _ => return None,
        };
        Some(response)
    }

    fn pod_request(
        &mut self,
        method: &Method,
        key: &str,
        sub: Option<&str>,
        body: &Value,
    ) -> Response<Body> {
        let Some(pod) = self.pods.items.get(key).cloned() else {
            return answer(404, "NotFound", format!("pods \"{key}\" not found"));
        };
        let uid_mismatch = |want: &Value| !want.is_null() && *want != pod["metadata"]["uid"];
        match (method.clone(), sub) {
            (Method::GET, None) => json_response(200, &pod),
            (Method::DELETE, None) => {
                if uid_mismatch(&body["preconditions"]["uid"]) {
                    return answer(409, "Conflict", "Precondition failed: UID".into());
                }
                json_response(200, &self.remove(true, key).unwrap())
            }
            (Method::POST, Some("eviction")) => {
                if self.refuse_evictions {
                    return answer(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                    );
                }
                if uid_mismatch(&body["deleteOptions"]["preconditions"]["uid"]) {
                    return answer(409, "Conflict", "Precondition failed: UID".into());
                }
                // As the apiserver does: the DisruptionTarget condition first, then the deletion.
                self.modify_pod(key, |pod| {
                    let reason = json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"});
                    set_condition(pod, reason);
                });
                if !self.evictions_only_mark {
                    self.remove(true, key);
                }
                success()
            }
            (Method::POST, Some("binding")) => {
                if uid_mismatch(&body["metadata"]["uid"]) {
                    return answer(409, "Conflict", "Precondition failed: UID".into());
                }
                if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                    return answer(
                        409,
                        "Conflict",
                        format!("pod {key} is already assigned to node \"{node}\""),
                    );
                }
                let target = body["target"]["name"].clone();
                let annotations = body["metadata"]["annotations"].clone();
                self.modify_pod(key, |pod| {
                    pod["spec"]["nodeName"] = target;
                    if let Some(add) = annotations.as_object() {
                        for (k, v) in add {
                            pod["metadata"]["annotations"][k] = v.clone();
                        }
                    }
                    set_condition(pod, json!({"type": "PodScheduled", "status": "True"}));
                });
                success()
            }
            (Method::PATCH, Some("status")) => {
                if self.fail_status_patches > 0 {
                    self.fail_status_patches -= 1;
                    return answer(500, "InternalError", "injected".into());
                }
                // As kube-apiserver: the pod status strategy keeps annotations written through
                // pods/status, and a uid in the patch must be the pod's (metadata.uid is immutable).
                if let Some(uid) = body["metadata"]["uid"].as_str()
                    && self.pods.items[key]["metadata"]["uid"] != uid
                {
                    return answer(422, "Invalid", "metadata.uid: field is immutable".into());
                }
                let annotations = body["metadata"]["annotations"].clone();
                let patched = self.modify_pod(key, |pod| {
                    if let Some(add) = annotations.as_object() {
                        for (k, v) in add {
                            pod["metadata"]["annotations"][k] = v.clone();
                        }
                    }
                    for condition in body["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        set_condition(pod, condition.clone());
                    }
                    for field in ["phase", "reason", "message"] {
                        if let Some(value) = body["status"][field].as_str() {
                            pod["status"][field] = json!(value);
                        }
                    }
                });
                json_response(200, &patched)
            }
            _ => answer(405, "MethodNotAllowed", format!("{method} {key} {sub:?}")),
        }
    }
}

/// The strategic merge of one condition: it replaces the condition of its type.
fn set_condition(pod: &mut Value, condition: Value) {
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let conditions = pod["status"]["conditions"].as_array_mut().unwrap();
    conditions.retain(|c| c["type"] != condition["type"]);
    conditions.push(condition);
}
