//! TagResource, UntagResource and ListTagsForResource over real HTTP (`docs/eks-api.md`).

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use fargate_webhook::api::ApiConfig;
use fargate_webhook::store::ProfileStore;
use http::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::ProfileBuilder;
use support::api_server::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_operations() {
    let dir = empty_state();
    let server = ApiServer::start(
        dir.path(),
        ApiConfig {
            create_delay: Duration::ZERO,
            ..api_config()
        },
    )
    .await;
    let body = ProfileBuilder::new("tagged")
        .namespace("default")
        .tag("team", "a")
        .json();
    let answer = server.create(&body).await;
    let arn = answer.expect_ok()["fargateProfile"]["fargateProfileArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let encoded: String =
        percent_encoding::utf8_percent_encode(&arn, percent_encoding::NON_ALPHANUMERIC).to_string();
    let path = format!("/tags/{encoded}");

    let answer = server.call(Method::GET, &path, None).await;
    assert_eq!(answer.expect_ok(), &json!({"tags": {"team": "a"}}));
    let answer = server
        .call(
            Method::POST,
            &path,
            Some(&json!({"tags": {"env": "prod", "team": "b"}})),
        )
        .await;
    assert_eq!(answer.expect_ok(), &json!({}));
    let answer = server.call(Method::GET, &path, None).await;
    assert_eq!(answer.json, json!({"tags": {"env": "prod", "team": "b"}}));
    assert_eq!(
        server.describe("tagged").await.json["fargateProfile"]["tags"],
        json!({"env": "prod", "team": "b"})
    );
    let answer = server
        .call(
            Method::DELETE,
            &format!("{path}?tagKeys=team&tagKeys=absent"),
            None,
        )
        .await;
    assert_eq!(answer.expect_ok(), &json!({}));
    assert_eq!(
        server.call(Method::GET, &path, None).await.json,
        json!({"tags": {"env": "prod"}})
    );
    // Removing absent keys is fine.
    server
        .call(Method::DELETE, &format!("{path}?tagKeys=absent"), None)
        .await
        .expect_ok();
    // The unencoded ARN works as well.
    server
        .call(Method::GET, &format!("/tags/{arn}"), None)
        .await
        .expect_ok();

    // Errors: the tag operations' own codes.
    let missing = arn.replace("/tagged/", "/nope/");
    let answer = server
        .call(Method::GET, &format!("/tags/{missing}"), None)
        .await;
    answer.expect_error(
        404,
        "NotFoundException",
        &format!("No Fargate Profile found with ARN: {missing}."),
    );
    let answer = server.call(Method::GET, "/tags/not-an-arn", None).await;
    answer.expect_error(400, "BadRequestException", "Invalid ARN: not-an-arn");
    let answer = server
        .call(Method::POST, &path, Some(&json!({"tags": {"aws:x": "y"}})))
        .await;
    answer.expect_error(
        400,
        "BadRequestException",
        "Tag key 'aws:x' uses the reserved prefix 'aws:'.",
    );
    let answer = server
        .call(Method::POST, &path, Some(&json!({"tags": {}})))
        .await;
    answer.expect_error(
        400,
        "BadRequestException",
        "tags must contain at least one tag.",
    );
    let many: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
    let answer = server
        .call(Method::POST, &path, Some(&json!({"tags": many})))
        .await;
    answer.expect_error(
        400,
        "BadRequestException",
        "Tags may contain at most 50 entries.",
    );
    let answer = server.call(Method::DELETE, &path, None).await;
    answer.expect_error(
        400,
        "BadRequestException",
        "tagKeys must contain at least one key.",
    );
    let answer = server
        .call(Method::DELETE, &format!("/tags/{missing}?tagKeys=a"), None)
        .await;
    assert_eq!(answer.status, 404);
    // A hand-written profile (no stored ARN) can be tagged through its derived ARN.
    server.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let arn = server.describe("example").await.json["fargateProfile"]["fargateProfileArn"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .call(
            Method::POST,
            &format!("/tags/{arn}"),
            Some(&json!({"tags": {"a": "b"}})),
        )
        .await
        .expect_ok();
    let stored = server.store.current();
    assert_eq!(
        stored.fargate_profiles[0].fargate_profile_arn.as_deref(),
        Some(arn.as_str())
    );
    assert_eq!(
        server
            .call(Method::GET, &format!("/tags/{arn}"), None)
            .await
            .json,
        json!({"tags": {"a": "b"}})
    );
    server.stop().await;
}
