//! CreateFargateProfile over real HTTP: validation errors with the EKS texts, quotas, default
//! subnets, idempotency tokens, concurrent creates and the body limit (`docs/eks-api.md`).

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use bytes::Bytes;
use fargate_webhook::api::{self, ApiConfig};
use fargate_webhook::store::ProfileStore;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::api_server::*;
use support::{ProfileBuilder, ROLE, SUBNET_A, SUBNET_B};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_validation_errors_have_the_eks_texts() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE}),
            "Fargate Profile requires at least one selector.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": []}),
            "Fargate Profile requires at least one selector.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"labels": {"a": "b"}}]}),
            "Fargate Profile must have at least one selector with at least one namespace value.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": ""}]}),
            "Fargate Profile must have at least one selector with at least one namespace value.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE,
                   "selectors": (0..6).map(|i| json!({"namespace": format!("ns{i}")})).collect::<Vec<_>>()}),
            "Request contains more than 5 Selectors",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE,
                   "selectors": [{"namespace": "a", "labels": {"1":"a","2":"a","3":"a","4":"a","5":"a","6":"a"}}]}),
            "Request contains Selector with more than 5 Label pairs",
        ),
        (
            api_profile(&"x".repeat(101)),
            "The Fargate profile name parameter should not be greater than 100 characters.",
        ),
        (
            api_profile("eks-reserved"),
            "The fargate profile name starts with the reserved prefix: 'eks-'.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "subnets": [SUBNET_A, PUBLIC_SUBNET]}),
            "Subnet subnet-0000000000public provided in Fargate Profile is not a private subnet",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "subnets": ["subnet-unknown"]}),
            "Subnet subnet-unknown provided in Fargate Profile is not a subnet of cluster fargate",
        ),
        (
            json!({"podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}]}),
            "fargateProfileName is required.",
        ),
        (
            json!({"fargateProfileName": "p", "selectors": [{"namespace": "a"}]}),
            "podExecutionRoleArn is required.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": "arn:aws:iam::12:role/x", "selectors": [{"namespace": "a"}]}),
            "Invalid podExecutionRoleArn: arn:aws:iam::12:role/x",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "tags": {"k".repeat(129): "v"}}),
            &*Box::leak(
                format!("Tag key '{}' must be 1 to 128 characters.", "k".repeat(129))
                    .into_boxed_str(),
            ),
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "tags": {"aws:x": "v"}}),
            "Tag key 'aws:x' uses the reserved prefix 'aws:'.",
        ),
        (
            json!({"fargateProfileName": "p", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}],
                   "tags": (0..51).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "Tags may contain at most 50 entries.",
        ),
    ];
    for (body, message) in cases {
        let answer = server.create(&body).await;
        answer.expect_error(400, "InvalidParameterException", message);
        if let Some(name) = body["fargateProfileName"].as_str() {
            assert_eq!(answer.json["fargateProfileName"], name);
            assert_eq!(answer.json["clusterName"], "fargate");
        }
    }
    // Invalid names (character rules).
    for name in ["-lead", "a b", "a.b", "ümlaut"] {
        let answer = server.create(&api_profile(name)).await;
        assert_eq!(answer.status, 400, "{name}");
        assert_eq!(answer.error_type(), "InvalidParameterException");
    }
    // Bodies that are not JSON, or of the wrong shape.
    for raw in [
        "{",
        "[]",
        r#"{"fargateProfileName": 5}"#,
        r#"{"selectors": "default"}"#,
    ] {
        let req = Request::post(format!("http://{}{BASE}", server.addr))
            .body(Full::new(Bytes::from(raw)))
            .unwrap();
        let answer = server.send(req).await;
        assert_eq!(answer.status, 400, "{raw}");
        assert_eq!(answer.error_type(), "InvalidParameterException", "{raw}");
    }
    // Unknown members are ignored; a 100-character name is fine.
    let mut body = api_profile(&"n".repeat(100));
    body["unknownMember"] = json!(true);
    server.create(&body).await.expect_ok();
    // Nothing else was created.
    assert_eq!(
        server.list("").await.json["fargateProfileNames"],
        json!(["n".repeat(100)])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_is_configurable_and_counts_every_profile() {
    // The fresh state directory holds the example profile: it counts.
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start(
        dir.path(),
        ApiConfig {
            create_delay: Duration::ZERO,
            max_profiles: 3,
            ..api_config()
        },
    )
    .await;
    assert_eq!(
        server.list("").await.json["fargateProfileNames"],
        json!(["example"])
    );
    // A hand-written profile has a stable derived ARN and no createdAt.
    let example = server.describe("example").await.expect_ok()["fargateProfile"].clone();
    assert_eq!(example["status"], "ACTIVE");
    assert!(example.get("createdAt").is_none());
    assert!(
        example["fargateProfileArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/example/")
    );
    assert_eq!(
        server.describe("example").await.json["fargateProfile"]["fargateProfileArn"],
        example["fargateProfileArn"]
    );

    // Zero create delay: the answer says CREATING, the store already has it ACTIVE.
    let answer = server.create(&api_profile("one")).await;
    assert_eq!(answer.expect_ok()["fargateProfile"]["status"], "CREATING");
    assert_eq!(
        server.describe("one").await.json["fargateProfile"]["status"],
        "ACTIVE"
    );
    server.create(&api_profile("two")).await.expect_ok();
    let answer = server.create(&api_profile("three")).await;
    answer.expect_error(
        400,
        "ResourceLimitExceededException",
        "Fargate Profile limit exceeded for cluster.",
    );
    assert_eq!(answer.json["clusterName"], "fargate");
    // Selector and label quotas are configurable too.
    server.stop().await;
    let dir = empty_state();
    let server = ApiServer::start(
        dir.path(),
        ApiConfig {
            max_selectors: 2,
            max_labels: 1,
            ..api_config()
        },
    )
    .await;
    let body = ProfileBuilder::new("p")
        .namespace("a")
        .namespace("b")
        .namespace("c")
        .json();
    server.create(&body).await.expect_error(
        400,
        "InvalidParameterException",
        "Request contains more than 2 Selectors",
    );
    let body = ProfileBuilder::new("p")
        .namespace("a")
        .label("x", "1")
        .label("y", "2")
        .json();
    server.create(&body).await.expect_error(
        400,
        "InvalidParameterException",
        "Request contains Selector with more than 1 Label pairs",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subnets_default_to_the_private_ones() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let answer = server.create(&api_profile("defaults")).await;
    assert_eq!(
        answer.expect_ok()["fargateProfile"]["subnets"],
        json!([SUBNET_A, SUBNET_B])
    );
    server.wait_status("defaults", "ACTIVE").await;
    let body = ProfileBuilder::new("one-subnet")
        .namespace("default")
        .subnets(&[SUBNET_B])
        .tag("team", "a")
        .tag("empty", "")
        .json();
    let answer = server.create(&body).await;
    let p = &answer.expect_ok()["fargateProfile"];
    assert_eq!(p["subnets"], json!([SUBNET_B]));
    assert_eq!(p["tags"], json!({"team": "a", "empty": ""}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_tokens() {
    let dir = empty_state();
    let fast = ApiConfig {
        create_delay: Duration::from_millis(200),
        delete_delay: Duration::from_millis(200),
        ..api_config()
    };
    let server = ApiServer::start(dir.path(), fast.clone()).await;
    let mut body = ProfileBuilder::new("idem")
        .namespace("default")
        .client_request_token("token-1")
        .json();
    let first = server.create(&body).await;
    let arn = first.expect_ok()["fargateProfile"]["fargateProfileArn"].clone();
    // Same token, same request: the original profile, in its current state.
    let replay = server.create(&body).await;
    assert_eq!(
        replay.expect_ok()["fargateProfile"]["fargateProfileArn"],
        arn
    );
    server.wait_status("idem", "ACTIVE").await;
    let replay = server.create(&body).await;
    assert_eq!(replay.expect_ok()["fargateProfile"]["status"], "ACTIVE");
    assert_eq!(replay.json["fargateProfile"]["fargateProfileArn"], arn);
    // Same token, different request: 400, nothing created.
    let other = ProfileBuilder::new("idem-other")
        .namespace("default")
        .client_request_token("token-1")
        .json();
    let answer = server.create(&other).await;
    answer.expect_error(
        400,
        "InvalidParameterException",
        "The client request token token-1 was already used with a different request.",
    );
    let mut changed = body.clone();
    changed["tags"] = json!({"a": "b"});
    assert_eq!(server.create(&changed).await.status, 400);
    assert_eq!(
        server.list("").await.json["fargateProfileNames"],
        json!(["idem"])
    );
    // A new token with the same name is a duplicate.
    body["clientRequestToken"] = json!("token-2");
    assert_eq!(server.create(&body).await.status, 409);
    body["clientRequestToken"] = json!("token-1");

    // The token survives a restart (a reopened store).
    server.stop().await;
    let server = ApiServer::start(dir.path(), fast.clone()).await;
    let replay = server.create(&body).await;
    assert_eq!(
        replay.expect_ok()["fargateProfile"]["fargateProfileArn"],
        arn
    );
    assert_eq!(server.create(&other).await.status, 400);

    // Once the profile is gone, its token is forgotten: the same request creates a new profile.
    server.delete("idem").await.expect_ok();
    // While DELETING the token still names it: a replay answers the profile as it is now.
    let replay = server.create(&body).await;
    assert_eq!(replay.expect_ok()["fargateProfile"]["status"], "DELETING");
    assert_eq!(replay.json["fargateProfile"]["fargateProfileArn"], arn);
    server.wait_gone("idem").await;
    assert!(server.store.current().client_request_tokens.is_empty());
    let again = server.create(&body).await;
    assert_ne!(
        again.expect_ok()["fargateProfile"]["fargateProfileArn"],
        arn
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_creates_of_one_name_exactly_one_wins() {
    let dir = empty_state();
    let server = Arc::new(ApiServer::start(dir.path(), api_config()).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let body = ProfileBuilder::new("contended")
                .namespace("default")
                .client_request_token(&format!("token-{i}"))
                .json();
            server.create(&body).await.status
        }));
    }
    let mut ok = 0;
    let mut conflict = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => conflict += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, conflict), (1, 19));
    assert_eq!(server.store.current().fargate_profiles.len(), 1);
    assert_eq!(server.store.current().client_request_tokens.len(), 1);

    // Concurrent creates of different names: one CREATING at a time, so exactly one wins too.
    let mut tasks = Vec::new();
    server.wait_status("contended", "ACTIVE").await;
    for i in 0..10 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            server.create(&api_profile(&format!("n{i}"))).await.status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    let server = Arc::into_inner(server).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_bodies_are_refused_with_413() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let big = vec![b' '; api::MAX_BODY + 1];
    let req = Request::post(format!("http://{}{BASE}", server.addr))
        .body(Full::new(Bytes::from(big)))
        .unwrap();
    let answer = server.send(req).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error_type(), "ClientException");
    assert!(answer.headers.contains_key("x-amzn-RequestId"));
    server.stop().await;
}
