//! The FargateProfile CRD, offline.
//!
//! Evaluated here:
//! - the chart's `crds/fargateprofiles.yaml` is exactly [`crd::crd_yaml`] (no drift; regenerate
//!   with `UPDATE_CRD=1 cargo test --test crd`);
//! - names, scope, version, status subresource and printer columns;
//! - the OpenAPI v3 schema, with a small checker of the keywords the schema uses (type, required,
//!   properties, additionalProperties, items, minItems/maxItems, maxProperties,
//!   minLength/maxLength, pattern, enum, nullable), on valid and invalid objects;
//! - every CEL rule (`x-kubernetes-validations`: name rules, spec immutability except tags, tag
//!   keys), compiled and evaluated on new and old objects with kube's client-side CEL validator
//!   (`kube-cel`, an implementation of the Kubernetes CEL environment).
//!
//! Not evaluated (needs an API server): that the API server accepts the CRD (structural-schema
//! checks), its CEL cost estimate (kube-cel's coarse estimate is checked instead), pruning of
//! unknown fields, `format: date-time` checking, and the object-name rules of Kubernetes itself.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use fargate_webhook::profile::{FargateProfile, ProfileStatus};
use fargate_webhook::store::crd::{self, FargateProfileSpec, FargateProfileStatus};
use fargate_webhook::store::file::example_profiles;
use kube::core::cel::{ScopeContext, Validator, WarningKind, analyze_rule, compile_schema};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use support::{ProfileBuilder, SUBNET_A};

const ROLE: &str = "arn:aws:iam::123456789012:role/AmazonEKSPodExecutionRole";

fn chart_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("charts/fargate-webhook/crds/fargateprofiles.yaml")
}

fn crd_json() -> Value {
    serde_json::to_value(crd::crd()).unwrap()
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn at<'v>(value: &'v Value, pointer: &str) -> &'v Value {
    value
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing"))
}

// ---- no drift -------------------------------------------------------------------------------

#[test]
fn the_chart_crd_is_the_generated_one() {
    let generated = crd::crd_yaml();
    let path = chart_file();
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let shipped = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if shipped != generated {
        let beside =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fargateprofiles.generated.yaml");
        std::fs::write(&beside, &generated).unwrap();
        panic!(
            "{} differs from the CRD generated from src/store/crd.rs (written to {}); run `UPDATE_CRD=1 cargo test --test crd`",
            path.display(),
            beside.display()
        );
    }
}

#[test]
fn the_generated_yaml_parses_back_to_the_crd() {
    let yaml = crd::crd_yaml();
    assert!(yaml.starts_with(crd::YAML_HEADER));
    let parsed: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(parsed, crd_json());
}

// ---- structure ------------------------------------------------------------------------------

#[test]
fn names_scope_version_and_subresources() {
    let crd = crd_json();
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["metadata"]["name"], crd::CRD_NAME);
    assert_eq!(crd["spec"]["group"], crd::GROUP);
    assert_eq!(crd["spec"]["scope"], "Cluster");
    let names = &crd["spec"]["names"];
    assert_eq!(names["kind"], crd::KIND);
    assert_eq!(names["plural"], crd::PLURAL);
    assert_eq!(names["singular"], "fargateprofile");
    assert_eq!(names["shortNames"], json!(["fp"]));
    let versions = crd["spec"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["name"], crd::VERSION);
    assert_eq!(versions[0]["served"], true);
    assert_eq!(versions[0]["storage"], true);
    assert_eq!(versions[0]["subresources"], json!({"status": {}}));
}

#[test]
fn printer_columns() {
    let columns = &crd_json()["spec"]["versions"][0]["additionalPrinterColumns"];
    let columns: Vec<(String, String, String)> = columns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect =
        |name: &str, kind: &str, path: &str| (name.to_owned(), kind.to_owned(), path.to_owned());
    assert_eq!(
        columns,
        [
            expect("Status", "string", ".status.status"),
            expect("Selectors", "string", ".spec.selectors"),
            expect("Cluster", "string", ".status.clusterName"),
            expect("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn schema_limits_are_present() {
    let s = schema();
    assert_eq!(at(&s, "/required"), &json!(["spec"]));
    let spec = at(&s, "/properties/spec");
    assert_eq!(
        at(spec, "/required"),
        &json!(["podExecutionRoleArn", "selectors"])
    );
    let selectors = at(spec, "/properties/selectors");
    assert_eq!(at(selectors, "/minItems"), 1);
    assert_eq!(at(selectors, "/maxItems"), 5);
    assert_eq!(at(selectors, "/items/required"), &json!(["namespace"]));
    assert_eq!(at(selectors, "/items/properties/namespace/minLength"), 1);
    assert_eq!(at(selectors, "/items/properties/namespace/maxLength"), 63);
    assert_eq!(at(selectors, "/items/properties/labels/maxProperties"), 5);
    assert_eq!(
        at(selectors, "/items/properties/labels/additionalProperties"),
        &json!({"type": "string", "maxLength": 63})
    );
    let tags = at(spec, "/properties/tags");
    assert_eq!(at(tags, "/maxProperties"), 50);
    assert_eq!(
        at(tags, "/additionalProperties"),
        &json!({"type": "string", "maxLength": 256})
    );
    let role = at(spec, "/properties/podExecutionRoleArn");
    assert_eq!(
        at(role, "/pattern"),
        r"^arn:[a-z-]+:iam::[0-9]{12}:role/.+$"
    );
    assert_eq!(at(role, "/maxLength"), 2048);
    assert_eq!(at(spec, "/properties/subnets/maxItems"), 16);
    let status = at(&s, "/properties/status/properties/status/enum");
    assert_eq!(
        status,
        &json!([
            "CREATING",
            "ACTIVE",
            "DELETING",
            "CREATE_FAILED",
            "DELETE_FAILED"
        ])
    );
    assert_eq!(
        at(&s, "/properties/status/properties/createdAt/format"),
        "date-time"
    );
}

fn rules(node: &Value) -> Vec<(String, String)> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap().to_owned(),
                        r["message"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cel_rules_are_where_they_belong() {
    let s = schema();
    let root: Vec<String> = rules(&s).into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        root,
        [
            "self.metadata.name.size() <= 100",
            "!self.metadata.name.startsWith('eks-')",
            "self.metadata.name.matches('^[0-9A-Za-z][A-Za-z0-9_-]*$')",
        ]
    );
    let spec = rules(at(&s, "/properties/spec"));
    assert_eq!(
        spec,
        [(
            crd::IMMUTABLE_SPEC_RULE.to_owned(),
            crd::IMMUTABLE_SPEC_MESSAGE.to_owned()
        )]
    );
    assert!(spec[0].0.contains("oldSelf"), "a transition rule");
    let tags = rules(at(&s, "/properties/spec/properties/tags"));
    assert_eq!(tags.len(), 2);
    assert!(
        rules(at(&s, "/properties/status")).is_empty(),
        "status stays writable"
    );
}

#[test]
fn cel_rules_compile_and_stay_in_scope() {
    let s = schema();
    let compiled = compile_schema(&s);
    assert!(
        !compiled.has_errors(),
        "{:?}",
        compiled.compilation_errors()
    );
    let mut all = rules(&s);
    all.extend(rules(at(&s, "/properties/spec")));
    all.extend(rules(at(&s, "/properties/spec/properties/tags")));
    assert_eq!(all.len(), 6);
    let mut costly = Vec::new();
    for (rule, _) in &all {
        for warning in analyze_rule(rule, &compiled, ScopeContext::CrdValidation) {
            match warning.kind {
                WarningKind::CostExceeded => costly.push(rule.clone()),
                // kube-cel's scope check does not know macro variables (`all(k, …)`).
                WarningKind::WrongScope => assert!(
                    warning
                        .message
                        .split('\'')
                        .nth(1)
                        .is_some_and(|var| rule.contains(&format!("({var}, "))),
                    "{rule}: {}",
                    warning.message
                ),
                _ => {}
            }
        }
    }
    // kube-cel's coarse estimate charges `k.startsWith(p)` by the length of `k` (a map key,
    // which no schema can bound); the API server's estimator charges it by the prefix (4
    // characters). That rule is the only one it flags.
    assert_eq!(costly.len(), 1, "{costly:?}");
    assert!(costly[0].contains("startsWith(p)"), "{costly:?}");
}

// ---- an OpenAPI v3 checker for the keywords the schema uses -----------------------------------

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{path}: null"));
        }
        return;
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => panic!("type {other} not handled"),
        None => true,
    };
    if !type_ok {
        errors.push(format!("{path}: not of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!(
            "{path}: {value} not in {schema_enum}",
            schema_enum = schema["enum"]
        ));
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| length < min) {
            errors.push(format!("{path}: shorter than {}", schema["minLength"]));
        }
        if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
            errors.push(format!("{path}: longer than {}", schema["maxLength"]));
        }
        if let Some(pattern) = schema["pattern"].as_str()
            && !regex::Regex::new(pattern).unwrap().is_match(text)
        {
            errors.push(format!("{path}: does not match {pattern}"));
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|min| n < min) {
            errors.push(format!("{path}: fewer than {} items", schema["minItems"]));
        }
        if schema["maxItems"].as_u64().is_some_and(|max| n > max) {
            errors.push(format!("{path}: more than {} items", schema["maxItems"]));
        }
        for (i, item) in items.iter().enumerate() {
            check(&schema["items"], item, &format!("{path}[{i}]"), errors);
        }
    }
    if let Some(fields) = value.as_object() {
        let n = fields.len() as u64;
        if schema["maxProperties"].as_u64().is_some_and(|max| n > max) {
            errors.push(format!(
                "{path}: more than {} properties",
                schema["maxProperties"]
            ));
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            if !fields.contains_key(required.as_str().unwrap()) {
                errors.push(format!("{path}.{}: required", required.as_str().unwrap()));
            }
        }
        for (key, field) in fields {
            let sub = &schema["properties"][key];
            if !sub.is_null() {
                check(sub, field, &format!("{path}.{key}"), errors);
            } else if schema["additionalProperties"].is_object() {
                check(
                    &schema["additionalProperties"],
                    field,
                    &format!("{path}.{key}"),
                    errors,
                );
            }
            // Anything else is pruned by the API server (or is apiVersion/kind/metadata).
        }
    }
}

fn schema_errors(object: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(&schema(), object, "", &mut errors);
    errors
}

fn valid_object() -> Value {
    let mut object = ProfileBuilder::new("web")
        .role(ROLE)
        .subnets(&[SUBNET_A])
        .namespace("web")
        .label("app", "web")
        .namespace("batch-*")
        .tag("team", "payments")
        .resource();
    object["status"] = json!({
        "status": "ACTIVE",
        "fargateProfileArn": "arn:aws:eks:us-east-1:123456789012:fargateprofile/fargate/web/1",
        "clusterName": "fargate",
        "createdAt": "2026-01-02T03:04:05.123Z",
        "observedGeneration": 1,
    });
    object
}

fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    *object.pointer_mut(pointer).unwrap() = value;
    object
}

fn without(mut object: Value, parent: &str, key: &str) -> Value {
    object
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    object
}

#[test]
fn the_schema_accepts_valid_objects() {
    assert_eq!(schema_errors(&valid_object()), Vec::<String>::new());
    // kubectl apply: no status, no subnets, no tags.
    let minimal = json!({
        "metadata": {"name": "minimal"},
        "spec": {"podExecutionRoleArn": ROLE, "selectors": [{"namespace": "default"}]},
    });
    assert_eq!(schema_errors(&minimal), Vec::<String>::new());
    let five_labels: BTreeMap<String, String> =
        (0..5).map(|i| (format!("k{i}"), "v".into())).collect();
    let fifty_tags: BTreeMap<String, String> = (0..50)
        .map(|i| (format!("t{i}"), "x".repeat(256)))
        .collect();
    let full = with(
        with(
            valid_object(),
            "/spec/selectors",
            json!(
                (0..5)
                    .map(|i| json!({"namespace": format!("ns{i}"), "labels": five_labels}))
                    .collect::<Vec<_>>()
            ),
        ),
        "/spec/tags",
        json!(fifty_tags),
    );
    assert_eq!(schema_errors(&full), Vec::<String>::new());
}

#[test]
fn the_schema_refuses_what_breaks_the_limits() {
    let six_labels: BTreeMap<String, String> =
        (0..6).map(|i| (format!("k{i}"), "v".into())).collect();
    let many_tags: BTreeMap<String, String> =
        (0..51).map(|i| (format!("t{i}"), "v".into())).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no spec",
            without(valid_object(), "", "spec"),
            ".spec: required",
        ),
        (
            "no role",
            without(valid_object(), "/spec", "podExecutionRoleArn"),
            "podExecutionRoleArn: required",
        ),
        (
            "no selectors",
            without(valid_object(), "/spec", "selectors"),
            "selectors: required",
        ),
        (
            "zero selectors",
            with(valid_object(), "/spec/selectors", json!([])),
            "fewer than 1 items",
        ),
        (
            "six selectors",
            with(
                valid_object(),
                "/spec/selectors",
                json!(
                    (0..6)
                        .map(|i| json!({"namespace": format!("n{i}")}))
                        .collect::<Vec<_>>()
                ),
            ),
            "more than 5 items",
        ),
        (
            "selector without namespace",
            with(
                valid_object(),
                "/spec/selectors",
                json!([{"labels": {"a": "b"}}]),
            ),
            "namespace: required",
        ),
        (
            "empty namespace",
            with(valid_object(), "/spec/selectors/0/namespace", json!("")),
            "shorter than 1",
        ),
        (
            "six labels",
            with(
                valid_object(),
                "/spec/selectors/0/labels",
                json!(six_labels),
            ),
            "more than 5 properties",
        ),
        (
            "long label value",
            with(
                valid_object(),
                "/spec/selectors/0/labels",
                json!({"a": "v".repeat(64)}),
            ),
            "longer than 63",
        ),
        (
            "51 tags",
            with(valid_object(), "/spec/tags", json!(many_tags)),
            "more than 50 properties",
        ),
        (
            "long tag value",
            with(valid_object(), "/spec/tags", json!({"a": "v".repeat(257)})),
            "longer than 256",
        ),
        (
            "tag value not a string",
            with(valid_object(), "/spec/tags", json!({"a": 1})),
            "not of type",
        ),
        (
            "bad role",
            with(
                valid_object(),
                "/spec/podExecutionRoleArn",
                json!("arn:aws:iam::12:role/x"),
            ),
            "does not match",
        ),
        (
            "user instead of role",
            with(
                valid_object(),
                "/spec/podExecutionRoleArn",
                json!("arn:aws:iam::123456789012:user/x"),
            ),
            "does not match",
        ),
        (
            "empty subnet",
            with(valid_object(), "/spec/subnets", json!([""])),
            "shorter than 1",
        ),
        (
            "namespace with a line break",
            with(valid_object(), "/spec/selectors/0/namespace", json!("a\nb")),
            "does not match",
        ),
        (
            "namespace no namespace can have",
            with(
                valid_object(),
                "/spec/selectors/0/namespace",
                json!("Bad NS!"),
            ),
            "does not match",
        ),
        (
            "not a subnet ID",
            with(valid_object(), "/spec/subnets", json!(["not-a-subnet"])),
            "does not match",
        ),
        (
            "an empty subnet list (omit it for the cluster's)",
            with(valid_object(), "/spec/subnets", json!([])),
            "fewer than 1 items",
        ),
        (
            "unknown status",
            with(valid_object(), "/status/status", json!("RUNNING")),
            "not in",
        ),
        (
            "selectors not a list",
            with(valid_object(), "/spec/selectors", json!({"namespace": "a"})),
            "not of type",
        ),
    ];
    for (what, object, expected) in cases {
        let errors = schema_errors(&object);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{what}: expected an error containing {expected:?}, got {errors:?}"
        );
    }
}

// ---- CEL --------------------------------------------------------------------------------------

fn cel(object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn cel_name_rules() {
    let named = |name: &str| with(valid_object(), "/metadata/name", json!(name));
    assert_eq!(cel(&named("web"), None), Vec::<String>::new());
    assert_eq!(cel(&named(&"a".repeat(100)), None), Vec::<String>::new());
    assert_eq!(
        cel(&named(&"a".repeat(101)), None),
        ["The Fargate profile name parameter should not be greater than 100 characters."]
    );
    assert_eq!(
        cel(&named("eks-web"), None),
        ["The fargate profile name starts with the reserved prefix: 'eks-'."]
    );
    let bad = cel(&named("-web"), None);
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].contains("must start with a letter or digit"),
        "{bad:?}"
    );
    // The rules hold on updates too.
    assert_eq!(
        cel(&named("web"), Some(&named("web"))),
        Vec::<String>::new()
    );
}

#[test]
fn cel_spec_is_immutable_except_tags() {
    let old = valid_object();
    let immutable = vec![crd::IMMUTABLE_SPEC_MESSAGE.to_owned()];
    // Tags, status and metadata may change.
    let retagged = with(
        old.clone(),
        "/spec/tags",
        json!({"team": "search", "env": "prod"}),
    );
    assert_eq!(cel(&retagged, Some(&old)), Vec::<String>::new());
    let untagged = without(old.clone(), "/spec", "tags");
    assert_eq!(cel(&untagged, Some(&old)), Vec::<String>::new());
    let deleting = with(old.clone(), "/status/status", json!("DELETING"));
    assert_eq!(cel(&deleting, Some(&old)), Vec::<String>::new());
    // Nothing else may.
    let changes = vec![
        with(
            old.clone(),
            "/spec/podExecutionRoleArn",
            json!("arn:aws:iam::123456789012:role/Other"),
        ),
        with(old.clone(), "/spec/selectors/0/namespace", json!("other")),
        with(
            old.clone(),
            "/spec/selectors/0/labels",
            json!({"app": "other"}),
        ),
        with(
            old.clone(),
            "/spec/selectors",
            json!([{"namespace": "web", "labels": {"app": "web"}}]),
        ),
        with(
            old.clone(),
            "/spec/subnets",
            json!(["subnet-09a8afb8db4f02d21"]),
        ),
        without(old.clone(), "/spec", "subnets"),
    ];
    for changed in &changes {
        assert_eq!(cel(changed, Some(&old)), immutable, "{}", changed["spec"]);
    }
    // Adding subnets to a profile created without them is a change too.
    let bare = without(old.clone(), "/spec", "subnets");
    assert_eq!(cel(&old, Some(&bare)), immutable);
    assert_eq!(cel(&bare, Some(&bare)), Vec::<String>::new());
    // Transition rules do not run on create.
    assert_eq!(cel(&changes[0], None), Vec::<String>::new());
}

#[test]
fn cel_tag_key_rules() {
    let tagged = |tags: Value| with(valid_object(), "/spec/tags", tags);
    assert_eq!(
        cel(&tagged(json!({"awsome": "x", "team:aws": "y"})), None),
        Vec::<String>::new()
    );
    assert_eq!(
        cel(&tagged(json!({"k".repeat(128): "x"})), None),
        Vec::<String>::new()
    );
    assert_eq!(
        cel(&tagged(json!({"k".repeat(129): "x"})), None),
        ["tag keys must be 1 to 128 characters long"]
    );
    assert_eq!(
        cel(&tagged(json!({"": "x"})), None),
        ["tag keys must be 1 to 128 characters long"]
    );
    for reserved in ["aws:cost", "AWS:cost", "Aws:x", "aWs:x"] {
        assert_eq!(
            cel(&tagged(json!({reserved: "x"})), None),
            ["tag keys must not start with the reserved prefix 'aws:'"],
            "{reserved}"
        );
    }
}

#[test]
fn cel_label_key_rules() {
    let labelled = |labels: Value| with(valid_object(), "/spec/selectors/0/labels", labels);
    let rule = ["label keys must be 1 to 317 characters long (a Kubernetes label key)"];
    let longest = format!("{}/{}", "p".repeat(253), "n".repeat(63));
    assert_eq!(
        cel(&labelled(json!({longest: "x"})), None),
        Vec::<String>::new()
    );
    assert_eq!(cel(&labelled(json!({"": "x"})), None), rule);
    assert_eq!(cel(&labelled(json!({"k".repeat(318): "x"})), None), rule);
}

// ---- the objects the store writes pass --------------------------------------------------------

fn store_object(profile: &FargateProfile) -> Value {
    let mut object = crd::FargateProfile::new(
        &profile.fargate_profile_name,
        FargateProfileSpec::from_profile(profile),
    );
    object.status = Some(FargateProfileStatus::from_profile(profile));
    serde_json::to_value(object).unwrap()
}

#[test]
fn objects_written_by_the_store_pass_the_schema_and_rules() {
    let mut profiles = example_profiles().fargate_profiles;
    profiles.push(
        ProfileBuilder::new("payments-api")
            .arn("arn:aws:eks:eu-west-1:123456789012:fargateprofile/fargate/payments-api/1")
            .cluster("fargate")
            .created_at(1_767_323_045.5)
            .role(ROLE)
            .namespace("payments-*")
            .label("tier", "api")
            .status(ProfileStatus::Creating)
            .tag("team", "payments")
            .build(),
    );
    for profile in &profiles {
        let object = store_object(profile);
        assert_eq!(schema_errors(&object), Vec::<String>::new(), "{object}");
        assert_eq!(cel(&object, None), Vec::<String>::new(), "{object}");
        assert_eq!(object["apiVersion"], "fargate-webhook.io/v1alpha1");
        assert_eq!(object["kind"], "FargateProfile");
    }
    let created = store_object(&profiles[1]);
    assert_eq!(created["status"]["createdAt"], "2026-01-02T03:04:05.500Z");
    assert_eq!(created["status"]["status"], "CREATING");
    assert!(
        created["spec"].get("subnets").is_none(),
        "omitted when empty"
    );
}

#[test]
fn created_at_round_trips_at_millisecond_precision() {
    for seconds in [0.0, 1_767_323_045.0, 1_767_323_045.123, 1_700_000_000.999] {
        let text = crd::format_created_at(seconds).unwrap();
        assert_eq!(crd::parse_created_at(&text), Some(seconds), "{text}");
    }
    assert_eq!(
        crd::format_created_at(1_767_323_045.0).as_deref(),
        Some("2026-01-02T03:04:05.000Z")
    );
    assert_eq!(
        crd::parse_created_at("2026-01-02T03:04:05Z"),
        Some(1_767_323_045.0)
    );
    assert_eq!(crd::parse_created_at("yesterday"), None);
    assert_eq!(crd::format_created_at(f64::NAN), None);
}

#[test]
fn kubernetes_names_are_a_subset_of_eks_names() {
    for ok in ["web", "a", "payments-api-2", &"a".repeat(100)] {
        assert_eq!(crd::k8s_name_problem(ok), None, "{ok}");
    }
    for bad in ["Web", "my_profile", "web-", "-web", "", "a.b"] {
        assert!(crd::k8s_name_problem(bad).is_some(), "{bad}");
    }
}
