//! Admission answers: a matching pod gets the EKS patch (over HTTP/2 and HTTP/1.1), a pod no profile
//! matches is allowed unpatched, every skip rule leaves the pod alone, and warnings name what cannot
//! be honoured.

use serde_json::{Value, json};

use super::REQUESTS;
use super::support::{
    Client, DEFAULT_PROFILE, FARGATE_PRIORITY, FARGATE_PRIORITY_CLASS, FARGATE_SCHEDULER, Layout,
    PROFILE_LABEL, PROFILE_LABEL_TOKEN, ProfileBuilder, TestServer, apply_patch, default_profile,
    metric_value, profiles_file, remove, review, review_with, set, set_annotation, set_label,
    set_namespace, sorted_ops,
};

// ------------------------------------------------------------------------------------------------
// 1. A matching pod

async fn assert_matching_pod_is_mutated(server: &TestServer, mut client: Client, alpn: &[u8]) {
    assert_eq!(
        client.alpn.as_deref(),
        Some(alpn),
        "ALPN negotiated {:?}",
        client.alpn.as_deref().map(String::from_utf8_lossy)
    );
    let review = review();
    let answer = client.admit(&review).await;
    assert_eq!(answer.review["apiVersion"], "admission.k8s.io/v1");
    answer.assert_fixture_mutated(DEFAULT_PROFILE);
    assert!(answer.warnings().is_empty(), "{:?}", answer.warnings());

    // The patch applies to the pod and leaves everything else as it was.
    let mut pod = review["request"]["object"].clone();
    apply_patch(&mut pod, &answer.patch().unwrap());
    assert_eq!(pod["spec"]["schedulerName"], FARGATE_SCHEDULER);
    assert_eq!(pod["metadata"]["labels"][PROFILE_LABEL], DEFAULT_PROFILE);
    assert_eq!(
        pod["metadata"]["annotations"][PROFILE_LABEL],
        DEFAULT_PROFILE
    );
    assert_eq!(pod["spec"]["priorityClassName"], FARGATE_PRIORITY_CLASS);
    assert_eq!(pod["spec"]["priority"], FARGATE_PRIORITY);
    assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(pod["metadata"]["labels"]["infrastructure"], "fargate");
    assert_eq!(pod["metadata"]["labels"].as_object().unwrap().len(), 6);
    assert_eq!(
        pod["spec"]["tolerations"],
        review["request"]["object"]["spec"]["tolerations"]
    );

    // v1beta1 is answered in kind.
    let review = review_with(|r| set(r, "/apiVersion", json!("admission.k8s.io/v1beta1")));
    let answer = client.admit(&review).await;
    assert_eq!(answer.review["apiVersion"], "admission.k8s.io/v1beta1");
    answer.assert_fixture_mutated(DEFAULT_PROFILE);

    let text = server.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            REQUESTS,
            &[("outcome", "mutated"), ("profile", DEFAULT_PROFILE)]
        ),
        2.0
    );
    assert!(
        metric_value(
            &text,
            "fargate_webhook_admission_duration_seconds_count",
            &[("outcome", "mutated")]
        ) >= 2.0
    );
    // Buckets reach the longest webhook timeout the apiserver allows.
    assert!(text.contains(
        r#"fargate_webhook_admission_duration_seconds_bucket{outcome="mutated",le="30"}"#
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_pod_over_http2_gets_the_eks_patch() {
    let server = TestServer::start().await;
    let client = server.h2().await;
    assert_matching_pod_is_mutated(&server, client, b"h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_pod_over_http1_gets_the_eks_patch() {
    let server = TestServer::start().await;
    let client = server.h1().await;
    assert_matching_pod_is_mutated(&server, client, b"http/1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_without_label_or_annotation_maps_gets_whole_maps_added() {
    let layout = Layout::standard();
    layout.write_profiles(&profiles_file(vec![
        ProfileBuilder::new("bare").namespace("bare-ns").json(),
    ]));
    let server = TestServer::start_with(layout, &[]).await;
    let review = review_with(|r| {
        set_namespace(r, "bare-ns");
        remove(r, "/request/object/metadata/labels");
        remove(r, "/request/object/metadata/annotations");
        remove(r, "/request/object/spec/priority");
        remove(r, "/request/object/spec/schedulerName");
    });
    let answer = server.admit(&review).await;
    assert_eq!(answer.patch_type(), Some("JSONPatch"));
    let patch = sorted_ops(answer.patch().expect("a patch"));
    assert_eq!(
        patch,
        sorted_ops(vec![
            json!({"op": "add", "path": "/spec/schedulerName", "value": FARGATE_SCHEDULER}),
            json!({"op": "add", "path": "/metadata/labels", "value": {PROFILE_LABEL: "bare"}}),
            json!({"op": "add", "path": "/metadata/annotations", "value": {PROFILE_LABEL: "bare"}}),
            json!({"op": "add", "path": "/spec/priorityClassName", "value": FARGATE_PRIORITY_CLASS}),
            json!({"op": "add", "path": "/spec/priority", "value": FARGATE_PRIORITY}),
        ])
    );
    let mut pod = review["request"]["object"].clone();
    apply_patch(&mut pod, &patch);
    assert_eq!(pod["metadata"]["labels"][PROFILE_LABEL], "bare");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_override_can_be_switched_off() {
    let server =
        TestServer::start_with(Layout::standard(), &["--priority-override", "false"]).await;
    let answer = server.admit(&review()).await;
    let paths: Vec<String> = answer
        .patch()
        .expect("a patch")
        .iter()
        .map(|op| op["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        paths.contains(&"/spec/schedulerName".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("/spec/priority")),
        "priority touched although switched off: {paths:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// 2. A pod no profile matches

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_matching_pod_is_allowed_without_patch() {
    let server = TestServer::start().await;
    let mut client = server.h2().await;
    // Another namespace, then the right namespace without the selector's label value.
    let elsewhere = review_with(|r| set_namespace(r, "payments"));
    let wrong_label = review_with(|r| set_label(r, "infrastructure", "ec2"));
    for review in [elsewhere, wrong_label] {
        let answer = client.admit(&review).await;
        answer.assert_untouched();
        assert!(answer.warnings().is_empty(), "{:?}", answer.warnings());
    }
    let text = server.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            REQUESTS,
            &[("outcome", "not_matched"), ("reason", "no_profile")]
        ),
        2.0
    );
    assert_eq!(
        metric_value(&text, REQUESTS, &[("outcome", "mutated")]),
        0.0
    );
}

// ------------------------------------------------------------------------------------------------
// 3. Every skip rule

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_skip_rule_leaves_the_pod_alone_and_is_counted() {
    let server = TestServer::start().await;
    let mut client = server.h2().await;
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 7] = [
        ("opt_out", |r| {
            set_annotation(r, "eks.amazonaws.com/compute-type", "ec2");
            // A skipped pod runs on nodes: no Fargate warnings for it either.
            set(r, "/request/object/spec/hostNetwork", json!(true));
        }),
        ("daemonset", |r| {
            set(
                r,
                "/request/object/metadata/ownerReferences",
                json!([{
                    "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "node-agent",
                    "uid": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "controller": true,
                    "blockOwnerDeletion": true
                }]),
            )
        }),
        ("mirror_pod", |r| {
            set_annotation(
                r,
                "kubernetes.io/config.mirror",
                "3f1c1d1e0b7c4e2e9c9d1f0e2a3b4c5d",
            )
        }),
        ("node_name_set", |r| {
            set(
                r,
                "/request/object/spec/nodeName",
                json!("ip-10-0-1-23.ec2.internal"),
            )
        }),
        ("foreign_scheduler", |r| {
            set(r, "/request/object/spec/schedulerName", json!("volcano"))
        }),
        ("not_create", |r| {
            set(r, "/request/operation", json!("UPDATE"));
            let old = r["request"]["object"].clone();
            set(r, "/request/oldObject", old);
        }),
        ("not_pod", |r| {
            set(
                r,
                "/request/kind",
                json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
            );
            set(
                r,
                "/request/requestKind",
                json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
            );
            set(
                r,
                "/request/resource",
                json!({"group": "apps", "version": "v1", "resource": "deployments"}),
            );
            set(
                r,
                "/request/requestResource",
                json!({"group": "apps", "version": "v1", "resource": "deployments"}),
            );
            set(
                r,
                "/request/object",
                json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "checkout-api", "namespace": "default",
                                 "labels": {"infrastructure": "fargate"}},
                    "spec": {
                        "replicas": 3,
                        "selector": {"matchLabels": {"app": "checkout-api"}},
                        "template": {
                            "metadata": {"labels": {"app": "checkout-api", "infrastructure": "fargate"}},
                            "spec": {"containers": [{"name": "app", "image": "checkout:2"}]}
                        }
                    }
                }),
            );
        }),
    ];
    for (reason, edit) in cases {
        let review = review_with(edit);
        let answer = client.admit(&review).await;
        answer.assert_untouched();
        assert!(
            answer.warnings().is_empty(),
            "{reason}: warnings for a skipped pod: {:?}",
            answer.warnings()
        );
    }
    // compute-type fargate is not an opt-out.
    let fargate = review_with(|r| set_annotation(r, "eks.amazonaws.com/compute-type", "fargate"));
    client
        .admit(&fargate)
        .await
        .assert_fixture_mutated(DEFAULT_PROFILE);

    let text = server.metrics_text().await;
    for (reason, _) in cases {
        assert_eq!(
            metric_value(
                &text,
                REQUESTS,
                &[("outcome", "skipped"), ("reason", reason)]
            ),
            1.0,
            "skipped counter for {reason}"
        );
    }
    assert_eq!(
        metric_value(&text, REQUESTS, &[("outcome", "skipped")]),
        7.0
    );
    assert_eq!(
        metric_value(&text, REQUESTS, &[("outcome", "mutated")]),
        1.0
    );
}

// ------------------------------------------------------------------------------------------------
// 4. Warnings

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_fields_are_named_in_warnings_and_the_pod_is_still_mutated() {
    let server = TestServer::start().await;
    let mut client = server.h2().await;
    let unsupported = review_with(|r| {
        set(r, "/request/object/spec/hostNetwork", json!(true));
        set(r, "/request/object/spec/hostPID", json!(true));
        set(r, "/request/object/spec/hostIPC", json!(true));
        set(
            r,
            "/request/object/spec/containers/0/ports/0/hostPort",
            json!(8080),
        );
        set(
            r,
            "/request/object/spec/containers/0/securityContext/privileged",
            json!(true),
        );
        set(
            r,
            "/request/object/spec/volumes/-",
            json!({"name": "host-logs", "hostPath": {"path": "/var/log", "type": "Directory"}}),
        );
    });
    let answer = client.admit(&unsupported).await;
    answer.assert_fixture_mutated(DEFAULT_PROFILE);
    // The fargate-scheduler's refusal text, verbatim, and the profile that sent the pod there.
    assert_eq!(
        answer.warnings(),
        vec![format!(
            "Pod not supported on Fargate: fields not supported: HostNetwork, HostPID, HostIPC, \
             invalid SecurityContext fields: Privileged, port contains HostIP or HostPort, \
             volumes not supported: host-logs (sent to Fargate profile '{DEFAULT_PROFILE}'; \
             the fargate-scheduler will not place it)"
        )]
    );

    // One field alone is named alone.
    let one_field = review_with(|r| {
        set(
            r,
            "/request/object/spec/volumes/-",
            json!({"name": "docker-sock", "hostPath": {"path": "/var/run/docker.sock"}}),
        )
    });
    let answer = client.admit(&one_field).await;
    answer.assert_fixture_mutated(DEFAULT_PROFILE);
    let warnings = answer.warnings().join("\n");
    assert!(
        warnings.starts_with("Pod not supported on Fargate: volumes not supported: docker-sock ("),
        "{warnings}"
    );

    // A clean matching pod has none.
    assert!(client.admit(&review()).await.warnings().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_that_cannot_be_honoured_warn_and_do_not_fall_back() {
    let long_name = format!("long-{}", "x".repeat(70));
    let layout = Layout::standard();
    layout.write_profiles(&profiles_file(vec![
        default_profile().json(),
        ProfileBuilder::new("fp-batch").namespace("batch").json(),
        ProfileBuilder::new(&long_name)
            .namespace("long-names")
            .json(),
    ]));
    let server = TestServer::start_with(layout, &[]).await;
    let mut client = server.h2().await;

    // A pin to a profile that does not exist: the default profile would match, but no fallback.
    let missing = review_with(|r| set_label(r, PROFILE_LABEL, "no-such-profile"));
    let answer = client.admit(&missing).await;
    answer.assert_untouched();
    let warnings = answer.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no-such-profile"), "{warnings:?}");

    // A pin to an existing profile whose selectors do not match this pod.
    let not_matching = review_with(|r| set_label(r, PROFILE_LABEL, "fp-batch"));
    let answer = client.admit(&not_matching).await;
    answer.assert_untouched();
    assert!(
        answer.warnings().iter().any(|w| w.contains("fp-batch")),
        "{:?}",
        answer.warnings()
    );

    // A pin to the matching profile is honoured; the label is already there, so it is not re-added.
    let honoured = review_with(|r| set_label(r, PROFILE_LABEL, DEFAULT_PROFILE));
    let answer = client.admit(&honoured).await;
    assert!(answer.warnings().is_empty(), "{:?}", answer.warnings());
    let patch = answer.patch().expect("a patch");
    assert!(
        !patch
            .iter()
            .any(|op| op["path"] == format!("/metadata/labels/{PROFILE_LABEL_TOKEN}")),
        "{patch:?}"
    );
    assert!(
        patch.iter().any(
            |op| op["path"] == format!("/metadata/annotations/{PROFILE_LABEL_TOKEN}")
                && op["value"] == DEFAULT_PROFILE
        ),
        "{patch:?}"
    );

    // A profile name too long for a label value: annotation only, and a warning.
    let long = review_with(|r| set_namespace(r, "long-names"));
    let answer = client.admit(&long).await;
    let patch = answer.patch().expect("a patch");
    assert!(
        !patch
            .iter()
            .any(|op| op["path"].as_str().unwrap().starts_with("/metadata/labels")),
        "{patch:?}"
    );
    assert!(
        patch.iter().any(|op| op["value"] == json!(long_name)),
        "{patch:?}"
    );
    assert!(
        answer.warnings().iter().any(|w| w.contains(&long_name)),
        "{:?}",
        answer.warnings()
    );

    let text = server.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            REQUESTS,
            &[("outcome", "not_matched"), ("reason", "pin_missing")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            REQUESTS,
            &[("outcome", "not_matched"), ("reason", "pin_not_matching")]
        ),
        1.0
    );
}
