//! Property-based fuzzing of everything that reads untrusted input, plus an oracle test of matching.
//!
//! - `admission::answer` (the AdmissionReview decoder, decision and encoder) gets arbitrary bytes,
//!   arbitrary JSON, reviews with arbitrary fields, pod-like objects that hit every skip rule and
//!   warning, and structured mutations of the ReplicaSet fixture (deleted fields, swapped types,
//!   huge strings, deep nesting, flipped and truncated bytes). It must never panic, and whenever it
//!   answers, the answer must be a well-formed AdmissionReview echoing the request's uid and
//!   apiVersion, `allowed: true`, and a patch (if any) that is base64 of a JSON array which applies
//!   cleanly to the object and does what the spec says without touching anything else.
//! - `profile::parse_profiles_file` gets the same treatment; whatever it accepts must satisfy the
//!   validation rules and compile into a snapshot.
//! - The pod decoder of `explain` (`decision::Pod` through `serde_saphyr`) gets arbitrary text and
//!   mutated manifests.
//! - `Snapshot::find_match` and `decision::decide` are compared against a deliberately naive
//!   reference: a linear scan over the name-sorted ACTIVE profiles with a recursive glob matcher.
//!
//! Case counts are chosen so the whole file runs in a few seconds in a debug build. Raise them
//! for a longer soak with `PROPTEST_CASES=100000 cargo test --release --test fuzz_decoders`.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use base64::Engine;
use fargate_webhook::admission;
use fargate_webhook::decision::{self, NoMatch, Options, Outcome, Pod, Snapshot};
use fargate_webhook::profile::{
    self, FargateProfile, Limits, PROFILE_LABEL, ProfileState, ProfileStatus, Selector,
};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use support::{ProfileBuilder, apply_patch, default_profile};

const FIXTURE: &[u8] = support::FIXTURE.as_bytes();
const LONG_NAME: &str =
    "a-profile-name-that-is-longer-than-the-sixty-three-characters-a-label-value-allows";

const PROFILES_FILE: &str = r#"{
  "fargateProfiles": [
    {
      "fargateProfileName": "fp-default",
      "fargateProfileArn": "arn:aws:eks:us-east-1:012345678910:fargateprofile/demo/fp-default/1",
      "clusterName": "demo",
      "createdAt": 1732521600.123,
      "podExecutionRoleArn": "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole",
      "subnets": ["subnet-0420a37ee456daf3f", "subnet-09a8afb8db4f02d21"],
      "selectors": [
        {"namespace": "default", "labels": {"infrastructure": "fargate"}},
        {"namespace": "team-?-*", "labels": {"app.kubernetes.io/*": "shop*"}}
      ],
      "status": "ACTIVE",
      "tags": {"team": "platform", "cost-center": "42"},
      "health": {"issues": [{"code": "PodExecutionRoleAlreadyInUse", "message": "m", "resourceIds": ["r"]}]}
    },
    {
      "fargateProfileName": "batch",
      "podExecutionRoleArn": "arn:aws-cn:iam::012345678910:role/batch",
      "selectors": [{"namespace": "batch-*"}]
    },
    {
      "fargateProfileName": "a-not-yet",
      "podExecutionRoleArn": "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole",
      "selectors": [{"namespace": "default"}],
      "status": "CREATING"
    }
  ],
  "clientRequestTokens": {
    "tok-1": {"fargateProfileName": "batch", "fargateProfileArn": "arn:x", "requestDigest": "00"}
  }
}"#;

/// `default` cases, or `PROPTEST_CASES` when set (for a longer soak).
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn options() -> Options {
    Options {
        priority_override: true,
    }
}

/// The fixture pod matches `fp-default`; pods in `long-*` namespaces get a profile whose name is
/// too long for a label; every other pod still matches the catch-all, so most mutated reviews
/// exercise the patch.
fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        Snapshot::new(vec![
            ProfileBuilder::new("zz-catch-all").namespace("*").build(),
            default_profile().build(),
            ProfileBuilder::new(LONG_NAME).namespace("long-*").build(),
        ])
    })
}

fn fixture_value() -> &'static Value {
    static VALUE: OnceLock<Value> = OnceLock::new();
    VALUE.get_or_init(|| serde_json::from_slice(FIXTURE).expect("the fixture is JSON"))
}

// ------------------------------------------------------------------------------------------------
// Checking an answer
// ------------------------------------------------------------------------------------------------

/// Run `answer` and check every promise it makes. `input` is the review as a JSON tree when the
/// caller knows it (it may differ from what `body` parses to only where a deep-nesting placeholder
/// was spliced in); otherwise the body is parsed here when it can be.
fn check_review(body: &[u8], input: Option<&Value>) {
    let parsed;
    let input = match input {
        Some(v) => Some(v),
        None => {
            parsed = serde_json::from_slice::<Value>(body).ok();
            parsed.as_ref()
        }
    };
    let Ok(answer) = admission::answer(body, snapshot(), &options()) else {
        return;
    };
    let out: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
        panic!(
            "answer body is not JSON ({e}): {}",
            String::from_utf8_lossy(&answer.body)
        )
    });
    assert_eq!(out["kind"], "AdmissionReview", "answer: {out}");
    let api_version = out["apiVersion"].as_str().expect("apiVersion is a string");
    assert!(
        api_version == admission::API_VERSION_V1 || api_version == admission::API_VERSION_V1BETA1,
        "answer apiVersion {api_version}"
    );
    let response = &out["response"];
    assert_eq!(response["allowed"], true, "answer: {out}");
    let uid = response["uid"].as_str().expect("response.uid is a string");
    assert!(!uid.is_empty(), "an answered review has a uid");
    assert_eq!(uid, answer.uid);
    if let Some(input) = input {
        // serde reads a JSON array as a struct in field order; a review must be an object.
        assert!(input.is_object(), "a non-object review was answered");
        assert_eq!(input["kind"], "AdmissionReview");
        assert_eq!(input["apiVersion"].as_str(), Some(api_version));
        if let Some(want) = input["request"]["uid"].as_str()
            && !want.starts_with(DEEP_MARK)
        {
            assert_eq!(uid, want, "response.uid must echo request.uid");
        }
    }
    if let Some(warnings) = response.get("warnings") {
        let warnings = warnings.as_array().expect("warnings is an array");
        assert!(!warnings.is_empty(), "empty warnings are omitted");
        assert!(warnings.iter().all(Value::is_string));
    }

    let patch = match (response.get("patch"), response.get("patchType")) {
        (None, None) => None,
        (Some(patch), Some(kind)) => {
            assert_eq!(kind, "JSONPatch");
            let text = patch.as_str().expect("patch is a base64 string");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("patch is valid base64");
            let ops: Vec<Value> =
                serde_json::from_slice(&bytes).expect("patch is a JSON array of operations");
            assert!(!ops.is_empty(), "an empty patch is omitted");
            Some(ops)
        }
        (patch, kind) => panic!("patch {patch:?} and patchType {kind:?} must come together"),
    };

    match &answer.decision {
        Ok(decision::Decision {
            outcome: Outcome::Mutated { profile, .. },
            ..
        }) => {
            if let (Some(ops), Some(object)) =
                (patch.as_deref(), input.map(|v| &v["request"]["object"]))
            {
                check_patch(object, ops, profile);
            }
        }
        _ => assert!(patch.is_none(), "only a mutated pod gets a patch"),
    }
}

/// Apply the patch to the object the way kube-apiserver does, then check it did exactly its job.
fn check_patch(object: &Value, ops: &[Value], profile: &str) {
    // kube-apiserver always sends a Pod with `metadata` and `spec` objects (both are non-pointer
    // fields of the Go type). A hand-made review without them gets a patch whose parent paths do
    // not exist; that cannot happen in a cluster, so it is not checked here.
    if !object.is_object() || !object["metadata"].is_object() || !object["spec"].is_object() {
        return;
    }
    let mut patched = object.clone();
    apply_patch(&mut patched, ops);
    let meta = &patched["metadata"];
    assert_eq!(meta["annotations"][PROFILE_LABEL], profile);
    if profile.len() <= 63 {
        assert_eq!(meta["labels"][PROFILE_LABEL], profile);
    }
    let spec = &patched["spec"];
    assert_eq!(spec["schedulerName"], "fargate-scheduler");
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert_eq!(spec["priority"], 2_000_001_000);
    if object["spec"]
        .get("preemptionPolicy")
        .is_some_and(|p| !p.is_null())
    {
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
    }
    // Nothing the webhook does not own changes: every other label and annotation survives.
    for map in ["labels", "annotations"] {
        if let Some(before) = object["metadata"][map].as_object() {
            for (key, value) in before {
                if key != PROFILE_LABEL {
                    assert_eq!(&meta[map][key], value, "metadata.{map}.{key} changed");
                }
            }
        }
    }
    let mut rest_before = object.clone();
    let mut rest_after = patched.clone();
    for v in [&mut rest_before, &mut rest_after] {
        for key in ["labels", "annotations"] {
            v["metadata"].as_object_mut().unwrap().remove(key);
        }
        for key in [
            "schedulerName",
            "priorityClassName",
            "priority",
            "preemptionPolicy",
        ] {
            v["spec"].as_object_mut().unwrap().remove(key);
        }
    }
    assert_eq!(rest_before, rest_after, "the patch touched other fields");
}

// ------------------------------------------------------------------------------------------------
// Generators
// ------------------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "kind",
    "apiVersion",
    "request",
    "uid",
    "group",
    "operation",
    "namespace",
    "object",
    "metadata",
    "spec",
    "labels",
    "annotations",
    "ownerReferences",
    "schedulerName",
    "nodeName",
    "priority",
    "containers",
    "ports",
    "hostPort",
    "volumes",
    "hostPath",
    "fargateProfiles",
    "fargateProfileName",
    "selectors",
    "podExecutionRoleArn",
    "status",
    "tags",
];

const WORDS: &[&str] = &[
    "",
    "AdmissionReview",
    "admission.k8s.io/v1",
    "admission.k8s.io/v1beta1",
    "Pod",
    "CREATE",
    "UPDATE",
    "default",
    "DaemonSet",
    "ec2",
    "fargate",
    "default-scheduler",
    "ACTIVE",
    "eks.amazonaws.com/fargate-profile",
    "eks.amazonaws.com/compute-type",
    "~/~0~1",
    "é\u{0}\u{1f600}\"\\",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        select(WORDS).prop_map(str::to_string),
        any::<String>(),
        "[a-z./~*?-]{0,12}",
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![select(KEYS).prop_map(str::to_string), arb_string()]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop_oneof![
            select(&["infrastructure", "app", PROFILE_LABEL, "a/b~c"][..]).prop_map(str::to_string),
            "[a-z]{1,4}",
        ],
        prop_oneof![
            select(&["fargate", "zz-catch-all", "fp-default", "nope", LONG_NAME][..])
                .prop_map(str::to_string),
            "[a-z]{0,4}",
        ],
        0..4,
    )
}

/// A pod with every field the decision reads, each present or not, so that every skip rule,
/// warning and patch variant (member present, absent, already right) comes up.
fn arb_pod() -> impl Strategy<Value = Value> {
    let scheduler = prop::option::of(select(
        &["", "default-scheduler", "fargate-scheduler", "volcano"][..],
    ));
    let metadata = (
        prop::option::of(arb_labels()),
        prop::option::of(prop::collection::btree_map(
            select(
                &[
                    decision::COMPUTE_TYPE_ANNOTATION,
                    decision::MIRROR_POD_ANNOTATION,
                    PROFILE_LABEL,
                    "x/y",
                ][..],
            ),
            select(&["ec2", "fargate", "zz-catch-all", ""][..]),
            0..3,
        )),
        prop::collection::vec(
            select(&["ReplicaSet", "DaemonSet", "Job", "StatefulSet"][..]),
            0..2,
        ),
        prop::option::of(select(&["default", "long-x", "team-a-1", ""][..])),
    );
    let spec = (
        (
            scheduler,
            prop::option::of(select(&["", "node-1"][..])),
            prop::option::of(select(&["system-node-critical", "high", ""][..])),
            prop::option::of(prop_oneof![
                Just(2_000_001_000i64),
                any::<i32>().prop_map(i64::from)
            ]),
            prop::option::of(select(&["PreemptLowerPriority", "Never"][..])),
        ),
        (
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(prop_oneof![Just(0i32), 1..65535i32]),
            prop::option::of(any::<bool>()),
            any::<bool>(),
        ),
    );
    (metadata, spec).prop_map(
        |(
            (labels, annotations, owners, namespace),
            (
                (scheduler, node, class, priority, preemption),
                (host_network, host_pid, host_ipc, host_port, privileged, host_path),
            ),
        )| {
            let mut meta = Map::new();
            meta.insert("generateName".into(), json!("fuzz-"));
            if let Some(ns) = namespace {
                meta.insert("namespace".into(), json!(ns));
            }
            if let Some(labels) = labels {
                meta.insert("labels".into(), json!(labels));
            }
            if let Some(annotations) = annotations {
                meta.insert("annotations".into(), json!(annotations));
            }
            meta.insert(
                "ownerReferences".into(),
                owners
                    .iter()
                    .map(|k| json!({"apiVersion": "apps/v1", "kind": k, "name": "o", "uid": "u"}))
                    .collect(),
            );
            let mut spec = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    spec.insert(k.into(), v);
                }
            };
            put("schedulerName", scheduler.map(|s| json!(s)));
            put("nodeName", node.map(|s| json!(s)));
            put("priorityClassName", class.map(|s| json!(s)));
            put("priority", priority.map(|p| json!(p)));
            put("preemptionPolicy", preemption.map(|s| json!(s)));
            put("hostNetwork", host_network.map(Value::Bool));
            put("hostPID", host_pid.map(Value::Bool));
            put("hostIPC", host_ipc.map(Value::Bool));
            let mut container = json!({"name": "c", "image": "nginx"});
            if let Some(port) = host_port {
                container["ports"] = json!([{"containerPort": 80, "hostPort": port}]);
            }
            if let Some(privileged) = privileged {
                container["securityContext"] = json!({"privileged": privileged});
            }
            spec.insert("containers".into(), json!([container]));
            if host_path {
                spec.insert(
                    "volumes".into(),
                    json!([{"name": "h", "hostPath": {"path": "/var"}}]),
                );
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        },
    )
}

fn arb_review() -> impl Strategy<Value = Value> {
    let pod_gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    (
        select(&["admission.k8s.io/v1", "admission.k8s.io/v1beta1", "v1"][..]),
        prop_oneof![
            4 => "[0-9a-f-]{1,36}".prop_map(Value::String),
            1 => arb_json(),
        ],
        prop_oneof![4 => Just(pod_gvk), 1 => arb_json()],
        prop_oneof![
            4 => Just(json!("CREATE")),
            1 => select(&["UPDATE", "DELETE", "CONNECT"][..]).prop_map(|s| json!(s)),
            1 => arb_json(),
        ],
        prop::option::of(select(&["default", "long-y", "", "kube-system"][..])),
        prop_oneof![4 => arb_pod(), 1 => arb_json()],
    )
        .prop_map(|(api_version, uid, kind, operation, namespace, object)| {
            let mut request =
                json!({"uid": uid, "kind": kind, "operation": operation, "object": object});
            if let Some(ns) = namespace {
                request["namespace"] = json!(ns);
            }
            json!({"apiVersion": api_version, "kind": "AdmissionReview", "request": request})
        })
}

// ------------------------------------------------------------------------------------------------
// Structured mutations of a JSON document
// ------------------------------------------------------------------------------------------------

/// Marks a string that is replaced by deeply nested JSON after serialisation (a `Value` that deep
/// would overflow the stack of the test itself when dropped or serialised).
const DEEP_MARK: &str = "\u{1}deep:";

#[derive(Clone, Debug)]
enum Mutation {
    Delete,
    Null,
    SwapType,
    HugeString(usize),
    Deep { depth: usize, arrays: bool },
    Replace(Value),
    AddMember(String, Value),
}

/// `deep_max`: the deepest nesting spliced in (libyaml's flow parser is quadratic in depth, so the
/// YAML tests stay shallower than the JSON ones).
fn arb_mutation(deep_max: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => Just(Mutation::Delete),
        2 => Just(Mutation::Null),
        4 => Just(Mutation::SwapType),
        1 => prop_oneof![1..300usize, 60_000..120_000usize].prop_map(Mutation::HugeString),
        1 => (prop_oneof![1..200usize, 200..deep_max], any::<bool>())
            .prop_map(|(depth, arrays)| Mutation::Deep { depth, arrays }),
        2 => arb_json().prop_map(Mutation::Replace),
        1 => (arb_key(), arb_json()).prop_map(|(k, v)| Mutation::AddMember(k, v)),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every node's path, root first.
fn all_paths(v: &Value) -> Vec<Vec<Step>> {
    fn walk(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    at.push(Step::Key(k.clone()));
                    walk(child, at, out);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    at.push(Step::Index(i));
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |at, step| match step {
        Step::Key(k) => at.as_object_mut()?.get_mut(k),
        Step::Index(i) => at.as_array_mut()?.get_mut(*i),
    })
}

/// Apply `mutation` at `path` (skipped when an earlier mutation removed the path).
fn mutate(doc: &mut Value, path: &[Step], mutation: &Mutation, deep: &mut Vec<String>) {
    if let (Mutation::Delete, Some((last, parent))) = (mutation, path.split_last()) {
        match (node_mut(doc, parent), last) {
            (Some(Value::Object(m)), Step::Key(k)) => {
                m.remove(k);
            }
            (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
                a.remove(*i);
            }
            _ => {}
        }
        return;
    }
    let Some(node) = node_mut(doc, path) else {
        return;
    };
    *node = match mutation {
        Mutation::Delete => Value::Null, // the root itself
        Mutation::Null => Value::Null,
        Mutation::SwapType => match node.take() {
            Value::Null => json!({}),
            Value::Bool(b) => json!(b.to_string()),
            Value::Number(n) => json!(n.to_string()),
            Value::String(s) => match s.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!([s]),
            },
            Value::Array(a) => Value::Object(
                a.into_iter()
                    .enumerate()
                    .map(|(i, v)| (i.to_string(), v))
                    .collect(),
            ),
            Value::Object(m) => Value::Array(m.into_iter().map(|(_, v)| v).collect()),
        },
        Mutation::HugeString(n) => {
            Value::String("aé\"\\\u{1}/~".chars().cycle().take(*n).collect())
        }
        Mutation::Deep { depth, arrays } => {
            let (open, close) = if *arrays {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let mark = format!("{DEEP_MARK}{}", deep.len());
            deep.push(format!(
                "{}{}{}",
                open.repeat(*depth),
                if *arrays { "" } else { "0" },
                close.repeat(*depth)
            ));
            Value::String(mark)
        }
        Mutation::Replace(v) => v.clone(),
        Mutation::AddMember(k, v) => match node.take() {
            Value::Object(mut m) => {
                m.insert(k.clone(), v.clone());
                Value::Object(m)
            }
            other => other,
        },
    };
}

/// Serialise the mutated document and splice the deep-nesting texts in.
fn render(doc: &Value, deep: &[String]) -> Vec<u8> {
    let mut text = serde_json::to_string(doc).expect("a Value serialises");
    for (i, nested) in deep.iter().enumerate() {
        let mark = serde_json::to_string(&format!("{DEEP_MARK}{i}")).unwrap();
        text = text.replacen(&mark, nested, 1);
    }
    text.into_bytes()
}

/// A document and 1..5 mutations at random nodes of it.
fn arb_mutated(doc: &'static Value, deep_max: usize) -> impl Strategy<Value = (Value, Vec<u8>)> {
    let paths = all_paths(doc);
    let n = paths.len();
    prop::collection::vec((0..n, arb_mutation(deep_max)), 1..5).prop_map(move |muts| {
        let mut doc = doc.clone();
        let mut deep = Vec::new();
        for (at, mutation) in &muts {
            mutate(&mut doc, &paths[*at], mutation, &mut deep);
        }
        let body = render(&doc, &deep);
        (doc, body)
    })
}

const JSON_TOKENS: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b"\"", b"\\", b",", b":", b"\xff", b"null", b"\\u0000",
];

#[derive(Clone, Debug)]
enum ByteEdit {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn arb_byte_edits(len: usize) -> impl Strategy<Value = Vec<ByteEdit>> {
    let edit = prop_oneof![
        (0..len, any::<u8>()).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        (0..len).prop_map(ByteEdit::Truncate),
        (
            0..len,
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                select(JSON_TOKENS).prop_map(<[u8]>::to_vec),
            ]
        )
            .prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        (0..len, 1..16usize).prop_map(|(i, n)| ByteEdit::Remove(i, n)),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply_byte_edits(mut bytes: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        match edit {
            ByteEdit::Flip(i, b) if *i < len => bytes[*i] = *b,
            ByteEdit::Truncate(i) => bytes.truncate(*i),
            ByteEdit::Insert(i, b) => {
                let at = (*i).min(len);
                bytes.splice(at..at, b.iter().copied());
            }
            ByteEdit::Remove(i, n) if *i < len => {
                bytes.drain(*i..(*i + n).min(len));
            }
            _ => {}
        }
    }
    bytes
}

// ------------------------------------------------------------------------------------------------
// The review decoder
// ------------------------------------------------------------------------------------------------

#[test]
fn the_fixture_is_mutated_and_the_checks_see_it() {
    let answer = admission::answer(FIXTURE, snapshot(), &options()).expect("fixture decodes");
    assert!(matches!(
        &answer.decision,
        Ok(decision::Decision { outcome: Outcome::Mutated { profile, .. }, .. }) if profile == "fp-default"
    ));
    check_review(FIXTURE, Some(fixture_value()));
}

#[test]
fn edge_bodies_do_not_panic() {
    let deep_object = format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},"operation":"CREATE","object":{}}}}}"#,
        "[".repeat(200_000) + &"]".repeat(200_000)
    );
    let deep_body = "[".repeat(100_000);
    let bodies: Vec<&[u8]> = vec![
        b"",
        b" \n\t",
        b"null",
        b"{}",
        b"[]",
        b"\"AdmissionReview\"",
        b"{\"kind\":\"AdmissionReview\"}",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\"}",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":null}",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{}}",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"x\"}}",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"x\",\"kind\":{\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":null}}",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"x\",\"kind\":{\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{\"spec\":{\"priority\":1e400}}}}",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"\\ud800\"}}",
        b"{\"kind\":\"AdmissionReview\",\"kind\":\"AdmissionReview\"}",
        b"\xef\xbb\xbf{}",
        deep_object.as_bytes(),
        deep_body.as_bytes(),
    ];
    for body in bodies {
        check_review(body, None);
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn answer_survives_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_review(&body, None);
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn answer_survives_arbitrary_json(value in arb_json()) {
        check_review(&serde_json::to_vec(&value).unwrap(), Some(&value));
    }

    #[test]
    fn answer_keeps_its_promises_on_generated_reviews(review in arb_review()) {
        check_review(&serde_json::to_vec(&review).unwrap(), Some(&review));
    }

    #[test]
    fn answer_survives_structured_mutations_of_the_fixture(
        (doc, body) in arb_mutated(fixture_value(), 20_000)
    ) {
        check_review(&body, Some(&doc));
    }

    #[test]
    fn answer_survives_byte_edits_of_the_fixture(edits in arb_byte_edits(FIXTURE.len())) {
        check_review(&apply_byte_edits(FIXTURE.to_vec(), &edits), None);
    }
}

// ------------------------------------------------------------------------------------------------
// The profiles file parser
// ------------------------------------------------------------------------------------------------

fn profiles_value() -> &'static Value {
    static VALUE: OnceLock<Value> = OnceLock::new();
    VALUE.get_or_init(|| serde_json::from_str(PROFILES_FILE).expect("the profiles file is JSON"))
}

fn check_profiles(bytes: &[u8]) {
    let limits = Limits::default();
    let Ok(file) = profile::parse_profiles_file(bytes, &limits) else {
        return;
    };
    let mut names = std::collections::BTreeSet::new();
    for p in &file.fargate_profiles {
        profile::validate(p, &limits).expect("an accepted profile follows the rules");
        assert!(
            names.insert(p.fargate_profile_name.clone()),
            "duplicate name accepted"
        );
    }
    // What the store writes back reads back the same (createdAt within float text precision).
    let written = serde_json::to_vec_pretty(&file).expect("profiles serialise");
    let reread = profile::parse_profiles_file(&written, &limits).expect("written file re-reads");
    for (a, b) in reread.fargate_profiles.iter().zip(&file.fargate_profiles) {
        match (a.created_at, b.created_at) {
            (None, None) => {}
            (Some(x), Some(y)) => assert!((x - y).abs() <= y.abs() * 1e-15, "createdAt {x} != {y}"),
            other => panic!("createdAt changed: {other:?}"),
        }
    }
    let strip = |f: &ProfileState| {
        let mut f = f.clone();
        for p in &mut f.fargate_profiles {
            p.created_at = None;
        }
        f
    };
    assert_eq!(strip(&reread), strip(&file));
    let snapshot = Snapshot::new(file.fargate_profiles.clone());
    assert_eq!(snapshot.profiles().len(), file.fargate_profiles.len());
    for p in &file.fargate_profiles {
        assert!(snapshot.get(&p.fargate_profile_name).is_some());
    }
    let labels = BTreeMap::from([("infrastructure".to_string(), "fargate".to_string())]);
    for ns in ["default", "batch-1", "team-a-1", ""] {
        let _ = snapshot.find_match(ns, &labels);
    }
}

#[test]
fn the_profiles_file_parses() {
    let file = profile::parse_profiles_file(PROFILES_FILE.as_bytes(), &Limits::default())
        .expect("valid file");
    assert_eq!(file.fargate_profiles.len(), 3);
    check_profiles(PROFILES_FILE.as_bytes());
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn profiles_parser_survives_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_profiles(&body);
    }

    #[test]
    fn profiles_parser_survives_arbitrary_json(value in arb_json()) {
        check_profiles(&serde_json::to_vec(&value).unwrap());
        check_profiles(&serde_json::to_vec(&json!({"fargateProfiles": [value]})).unwrap());
    }

    #[test]
    fn profiles_parser_survives_structured_mutations((_, body) in arb_mutated(profiles_value(), 20_000)) {
        check_profiles(&body);
    }

    #[test]
    fn profiles_parser_survives_byte_edits(edits in arb_byte_edits(PROFILES_FILE.len())) {
        check_profiles(&apply_byte_edits(PROFILES_FILE.as_bytes().to_vec(), &edits));
    }
}

// ------------------------------------------------------------------------------------------------
// The pod manifest decoder of `explain` (YAML or JSON through serde_saphyr)
// ------------------------------------------------------------------------------------------------

fn check_yaml_pod(text: &str) {
    let Ok(pod) = serde_saphyr::from_str::<Pod>(text) else {
        return;
    };
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let req = decision::Request {
        group: "",
        kind: "Pod",
        operation: "CREATE",
        namespace: &namespace,
        pod: &pod,
    };
    let explanation = decision::explain::explain(&req, snapshot(), &options());
    let _ = explanation.to_string();
    serde_json::to_string(&explanation).expect("an explanation serialises");
}

fn fixture_object() -> &'static Value {
    &fixture_value()["request"]["object"]
}

#[test]
fn yaml_edge_cases_do_not_panic() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n\
                b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n\
                f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n\
                metadata: {labels: *g}\n";
    let texts = [
        String::new(),
        "---".into(),
        "~".into(),
        "metadata: ~".into(),
        "metadata: {labels: {a: !!binary aGk=}}".into(),
        "metadata: {labels: {? [a]: b}}".into(),
        "spec: {priority: 99999999999}".into(),
        "spec: {priority: .nan}".into(),
        "{} \n--- \n{}".into(),
        "[".repeat(10_000),
        "a: ".repeat(5_000) + "b",
        bomb.into(),
        serde_saphyr::to_string(fixture_object()).unwrap(),
    ];
    for text in &texts {
        check_yaml_pod(text);
    }
    let pod: Pod = serde_saphyr::from_str(&serde_saphyr::to_string(fixture_object()).unwrap())
        .expect("the fixture pod reads as YAML");
    assert_eq!(
        pod.label("infrastructure"),
        Some("fargate"),
        "YAML and JSON agree"
    );
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn yaml_pod_survives_arbitrary_text(text in any::<String>()) {
        check_yaml_pod(&text);
    }

    #[test]
    fn yaml_pod_survives_arbitrary_values(value in arb_json()) {
        check_yaml_pod(&serde_saphyr::to_string(&value).unwrap());
        check_yaml_pod(&serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn yaml_pod_survives_mutated_manifests((doc, body) in arb_mutated(fixture_object(), 400)) {
        // Flow style (JSON, with any deep nesting spliced in) and block style.
        check_yaml_pod(std::str::from_utf8(&body).unwrap());
        check_yaml_pod(&serde_saphyr::to_string(&doc).unwrap());
    }
}

// ------------------------------------------------------------------------------------------------
// Oracle: matching against a naive reference implementation
// ------------------------------------------------------------------------------------------------

/// `*` any run of characters (also empty), `?` exactly one character, everything else literal.
fn reference_glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => {
            reference_glob(rest, text) || (!text.is_empty() && reference_glob(pattern, &text[1..]))
        }
        Some(('?', rest)) => !text.is_empty() && reference_glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && reference_glob(rest, &text[1..]),
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    reference_glob(&p, &t)
}

fn reference_selector_matches(
    s: &Selector,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    glob(s.namespace.as_deref().unwrap_or(""), namespace)
        && s.labels.iter().all(|(want_key, want_value)| {
            labels
                .iter()
                .any(|(k, v)| glob(want_key, k) && glob(want_value, v))
        })
}

fn reference_profile_matches(
    p: &FargateProfile,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    p.selectors
        .iter()
        .any(|s| reference_selector_matches(s, namespace, labels))
}

/// Linear scan over the ACTIVE profiles sorted by name (byte order).
fn reference_find<'a>(
    profiles: &'a [FargateProfile],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Option<&'a str> {
    let mut sorted: Vec<&FargateProfile> = profiles.iter().collect();
    sorted.sort_by(|a, b| a.fargate_profile_name.cmp(&b.fargate_profile_name));
    sorted
        .into_iter()
        .filter(|p| p.status == ProfileStatus::Active)
        .find(|p| reference_profile_matches(p, namespace, labels))
        .map(|p| p.fargate_profile_name.as_str())
}

/// What `decide` must answer for a plain CREATE of a pod no skip rule applies to.
fn reference_decide(
    profiles: &[FargateProfile],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<String, NoMatch> {
    match labels.get(PROFILE_LABEL) {
        Some(pin) => match profiles
            .iter()
            .find(|p| &p.fargate_profile_name == pin && p.status == ProfileStatus::Active)
        {
            None => Err(NoMatch::PinMissing(pin.clone())),
            Some(p) if reference_profile_matches(p, namespace, labels) => Ok(pin.clone()),
            Some(_) => Err(NoMatch::PinNotMatching(pin.clone())),
        },
        None => reference_find(profiles, namespace, labels)
            .map(str::to_string)
            .ok_or(NoMatch::NoProfile),
    }
}

/// Small alphabets so that patterns and texts collide often; `é` and `ã` share their first UTF-8
/// byte, which catches a matcher that compares or skips bytes instead of characters.
fn arb_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ab*?éã-]{0,4}",
        // Broad patterns, so that several profiles match and the tie-break decides.
        1 => select(&["*", "?*", "a*", "*a", "*é*", "??"][..]).prop_map(str::to_string),
    ]
}

fn arb_text() -> impl Strategy<Value = String> {
    "[abéã-]{0,4}"
}

fn arb_status() -> impl Strategy<Value = ProfileStatus> {
    prop_oneof![
        6 => Just(ProfileStatus::Active),
        1 => select(&ProfileStatus::ALL[..]),
    ]
}

fn arb_selector() -> impl Strategy<Value = Selector> {
    (
        prop::option::weighted(0.95, arb_pattern()),
        prop::collection::btree_map(arb_pattern(), arb_pattern(), 0..3),
    )
        .prop_map(|(namespace, labels)| Selector { namespace, labels })
}

fn arb_profiles() -> impl Strategy<Value = Vec<FargateProfile>> {
    prop::collection::btree_map(
        "[abAB0-9_-]{1,4}",
        (arb_status(), prop::collection::vec(arb_selector(), 0..4)),
        0..12,
    )
    .prop_map(|profiles| {
        profiles
            .into_iter()
            .map(|(name, (status, selectors))| FargateProfile {
                fargate_profile_name: name,
                status,
                selectors,
                ..Default::default()
            })
            .collect()
    })
    // Snapshot::new sorts for itself; a shuffled input checks that it does.
    .prop_shuffle()
}

fn arb_pod_labels(names: Vec<String>) -> impl Strategy<Value = BTreeMap<String, String>> {
    let pin = if names.is_empty() {
        Just(None).boxed()
    } else {
        prop::option::weighted(
            0.25,
            prop_oneof![select(names), Just("missing".to_string())],
        )
        .boxed()
    };
    (
        prop::collection::btree_map(arb_text(), arb_text(), 0..4),
        pin,
    )
        .prop_map(|(mut labels, pin)| {
            if let Some(pin) = pin {
                labels.insert(PROFILE_LABEL.to_string(), pin);
            }
            labels
        })
}

fn arb_matching_case()
-> impl Strategy<Value = (Vec<FargateProfile>, String, BTreeMap<String, String>)> {
    arb_profiles().prop_flat_map(|profiles| {
        let names = profiles
            .iter()
            .map(|p| p.fargate_profile_name.clone())
            .collect();
        (Just(profiles), arb_text(), arb_pod_labels(names))
    })
}

#[test]
fn reference_glob_is_sane() {
    assert!(glob("a*b?", "aXXbé"));
    assert!(!glob("a*b?", "ab"));
    assert!(glob("*", ""));
    assert!(!glob("?", ""));
    assert!(glob("é?", "éã"));
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn find_match_agrees_with_a_linear_scan(
        (profiles, namespace, labels) in arb_matching_case()
    ) {
        let snapshot = Snapshot::new(profiles.clone());
        let mut unpinned = labels.clone();
        unpinned.remove(PROFILE_LABEL);
        for labels in [&labels, &unpinned] {
            let got = snapshot.find_match(&namespace, labels).map(|p| p.name());
            let want = reference_find(&profiles, &namespace, labels);
            prop_assert_eq!(got, want, "namespace {:?} labels {:?}", namespace, labels);
        }

        let pod = Pod {
            metadata: decision::pod::ObjectMeta {
                labels: Some(labels.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let req = decision::Request {
            group: "",
            kind: "Pod",
            operation: "CREATE",
            namespace: &namespace,
            pod: &pod,
        };
        let got = match decision::decide(&req, &snapshot, &options()).outcome {
            Outcome::Mutated { profile, .. } => Ok(profile),
            Outcome::NotMatched(no) => Err(no),
            Outcome::Skipped(reason) => panic!("nothing to skip, got {reason:?}"),
        };
        prop_assert_eq!(got, reference_decide(&profiles, &namespace, &labels));
    }
}
