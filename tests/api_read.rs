//! DescribeFargateProfile and ListFargateProfiles over real HTTP: unknown clusters, profiles and
//! routes, percent-encoded names, paging and its tokens (`docs/eks-api.md`).

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use fargate_webhook::api::ApiConfig;
use http::Method;
use serde_json::json;
use std::time::Duration;
use support::api_server::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_cluster_profile_and_route() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let answer = server
        .call(
            Method::POST,
            "/clusters/other/fargate-profiles",
            Some(&api_profile("p")),
        )
        .await;
    answer.expect_error(
        404,
        "ResourceNotFoundException",
        "No cluster found for name: other.",
    );
    assert_eq!(answer.json["clusterName"], "other");
    server
        .call(Method::GET, "/clusters/other/fargate-profiles", None)
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No cluster found for name: other.",
        );
    server
        .call(
            Method::GET,
            "/clusters/my%20cluster/fargate-profiles/p",
            None,
        )
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No cluster found for name: my cluster.",
        );
    server
        .call(Method::DELETE, "/clusters/other/fargate-profiles/p", None)
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No cluster found for name: other.",
        );
    let answer = server.describe("missing").await;
    answer.expect_error(
        404,
        "ResourceNotFoundException",
        "No Fargate Profile found with name: missing.",
    );
    assert_eq!(answer.json["fargateProfileName"], "missing");
    assert_eq!(answer.json["clusterName"], "fargate");
    server.delete("missing").await.expect_error(
        404,
        "ResourceNotFoundException",
        "No Fargate Profile found with name: missing.",
    );

    for (method, path) in [
        (Method::GET, "/"),
        (Method::PUT, BASE),
        (Method::GET, "/clusters/fargate"),
        (Method::POST, "/clusters/fargate/fargate-profiles/p"),
        (Method::GET, "/clusters/fargate/nodegroups"),
    ] {
        let answer = server.call(method.clone(), path, None).await;
        assert_eq!(answer.status, 404, "{method} {path}");
        assert_eq!(answer.error_type(), "UnknownOperationException");
        assert!(answer.message().contains(path), "{}", answer.json);
    }
    // Bad percent-encoding is a 400, not a 500.
    let answer = server.describe("%FF%FE").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "InvalidParameterException");
    assert_eq!(server.api_count("Unknown", "UnknownOperationException"), 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn percent_encoded_names() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    server
        .create(&api_profile("my_profile-1"))
        .await
        .expect_ok();
    let answer = server
        .call(Method::GET, &format!("{BASE}/my%5Fprofile%2D1"), None)
        .await;
    assert_eq!(
        answer.expect_ok()["fargateProfile"]["fargateProfileName"],
        "my_profile-1"
    );
    let answer = server
        .call(
            Method::GET,
            "/clusters/%66argate/fargate-profiles/my_profile-1",
            None,
        )
        .await;
    answer.expect_ok();
    // An encoded slash stays inside the name.
    server
        .call(Method::GET, &format!("{BASE}/a%2Fb"), None)
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No Fargate Profile found with name: a/b.",
        );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_and_bad_tokens() {
    let dir = empty_state();
    let server = ApiServer::start(
        dir.path(),
        ApiConfig {
            create_delay: Duration::ZERO,
            max_profiles: 20,
            ..api_config()
        },
    )
    .await;
    let names = ["e", "b", "a", "d", "c"];
    for name in names {
        server.create(&api_profile(name)).await.expect_ok();
    }
    let mut seen = Vec::new();
    let mut query = "?maxResults=2".to_string();
    let mut pages = 0;
    loop {
        let answer = server.list(&query).await;
        let page = answer.expect_ok();
        let chunk = page["fargateProfileNames"].as_array().unwrap();
        assert!(chunk.len() <= 2);
        seen.extend(chunk.iter().map(|v| v.as_str().unwrap().to_owned()));
        pages += 1;
        match page.get("nextToken") {
            Some(token) => {
                let token = token.as_str().unwrap();
                query = format!(
                    "?maxResults=2&nextToken={}",
                    percent_encoding::utf8_percent_encode(
                        token,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                );
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    // Exactly filled last page: no nextToken.
    let answer = server.list("?maxResults=5").await;
    assert_eq!(
        answer.json,
        json!({"fargateProfileNames": ["a", "b", "c", "d", "e"]})
    );
    let answer = server.list("?maxResults=100").await;
    assert_eq!(
        answer.json["fargateProfileNames"].as_array().unwrap().len(),
        5
    );
    let answer = server.list("?maxResults=4").await;
    let token = answer.json["nextToken"].as_str().unwrap().to_owned();
    // A token still works after the name it holds was deleted.
    server.delete("d").await.expect_ok();
    let answer = server.list(&format!("?nextToken={token}")).await;
    assert_eq!(answer.json, json!({"fargateProfileNames": ["e"]}));

    for bad in [
        "?maxResults=0",
        "?maxResults=101",
        "?maxResults=abc",
        "?maxResults=-1",
        "?maxResults=",
    ] {
        let answer = server.list(bad).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.error_type(), "InvalidParameterException", "{bad}");
    }
    server.list("?maxResults=101").await.expect_error(
        400,
        "InvalidParameterException",
        "maxResults must be an integer from 1 to 100, got '101'.",
    );
    let forged = format!("v1.{}.AAAAAAAAAAAAAAAA", "Yg");
    for bad in [
        "garbage",
        "v1..",
        "%FF",
        forged.as_str(),
        "v1.YQ.QUJDREVGR0hJSktM",
    ] {
        let answer = server.list(&format!("?nextToken={bad}")).await;
        answer.expect_error(
            400,
            "InvalidParameterException",
            if bad == "%FF" {
                "The query string is not valid percent-encoded UTF-8."
            } else {
                "The nextToken is not valid: use a token returned by a previous ListFargateProfiles call."
            },
        );
    }
    server.stop().await;
}
