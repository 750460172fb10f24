//! DeleteFargateProfile and the CREATING → ACTIVE → DELETING lifecycle over real HTTP, as the
//! webhook's snapshot sees it, across restarts, and with the file store under the API (hand-written
//! entries, hand edits, a corrupt file) (`docs/eks-api.md`).

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use fargate_webhook::api::ApiConfig;
use fargate_webhook::profile::ProfileStatus;
use fargate_webhook::store::ProfileStore;
use serde_json::{Value, json};
use std::time::Duration;
use support::api_server::*;
use support::{ProfileBuilder, ROLE, SUBNET_A, SUBNET_B, poll_every, profiles_file};

/// The create request of the EKS documentation's example.
fn reference_example() -> Value {
    ProfileBuilder::new("default-with-infrastructure-label")
        .subnets(&[SUBNET_A, SUBNET_B])
        .namespace("default")
        .label("infrastructure", "fargate")
        .client_request_token("e188d61d-73b7-493c-9cd8-e39f242957eb")
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reference_example_lifecycle_and_webhook_snapshot() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let created = server.create(&reference_example()).await;
    let p = created.expect_ok()["fargateProfile"].clone();
    assert_eq!(p["fargateProfileName"], "default-with-infrastructure-label");
    assert_eq!(p["status"], "CREATING");
    assert_eq!(p["clusterName"], "fargate");
    assert_eq!(p["podExecutionRoleArn"], ROLE);
    assert_eq!(p["subnets"], json!([SUBNET_A, SUBNET_B]));
    assert_eq!(
        p["selectors"],
        json!([{"namespace": "default", "labels": {"infrastructure": "fargate"}}])
    );
    assert_eq!(p["tags"], json!({}));
    let arn = p["fargateProfileArn"].as_str().unwrap();
    let prefix = "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/default-with-infrastructure-label/";
    assert!(arn.starts_with(prefix), "{arn}");
    assert!(uuid::Uuid::parse_str(&arn[prefix.len()..]).is_ok(), "{arn}");
    // createdAt: a JSON number of epoch seconds (not milliseconds).
    let created_at = p["createdAt"].as_f64().expect("createdAt is a number");
    assert!(p["createdAt"].is_f64());
    assert!(
        (created_at - before).abs() < 60.0,
        "{created_at} vs {before}"
    );

    // Right after the answer: CREATING in the store and in the webhook snapshot (never matched).
    let described = server.describe("default-with-infrastructure-label").await;
    assert!(matches!(
        described.expect_ok()["fargateProfile"]["status"].as_str(),
        Some("CREATING") | Some("ACTIVE")
    ));
    assert_eq!(described.json["fargateProfile"]["fargateProfileArn"], arn);

    // ACTIVE after the delay, and in the webhook's snapshot at the same moment.
    poll_every(
        "never ACTIVE",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || {
            let state = server.store.current();
            let stored = state
                .fargate_profiles
                .iter()
                .find(|p| p.fargate_profile_name == "default-with-infrastructure-label")
                .unwrap()
                .status;
            let snap = server.snapshot.load();
            let published = snap
                .get("default-with-infrastructure-label")
                .unwrap()
                .status();
            if stored == ProfileStatus::Active {
                assert_eq!(
                    published,
                    ProfileStatus::Active,
                    "the snapshot lags the store"
                );
            }
            std::future::ready(match stored {
                ProfileStatus::Active => Ok(()),
                _ => Err(String::new()),
            })
        },
    )
    .await;
    let described = server.describe("default-with-infrastructure-label").await;
    assert_eq!(described.expect_ok()["fargateProfile"]["status"], "ACTIVE");
    assert_eq!(
        described.json["fargateProfile"]["createdAt"],
        p["createdAt"]
    );

    let listed = server.list("").await;
    assert_eq!(
        listed.expect_ok(),
        &json!({"fargateProfileNames": ["default-with-infrastructure-label"]})
    );

    let deleted = server.delete("default-with-infrastructure-label").await;
    let d = &deleted.expect_ok()["fargateProfile"];
    assert_eq!(d["status"], "DELETING");
    assert_eq!(d["fargateProfileArn"], arn);
    assert_eq!(
        server
            .snapshot
            .load()
            .get("default-with-infrastructure-label")
            .unwrap()
            .status(),
        ProfileStatus::Deleting
    );
    server.wait_gone("default-with-infrastructure-label").await;
    assert!(
        server
            .snapshot
            .load()
            .get("default-with-infrastructure-label")
            .is_none()
    );
    server
        .describe("default-with-infrastructure-label")
        .await
        .expect_error(
            404,
            "ResourceNotFoundException",
            "No Fargate Profile found with name: default-with-infrastructure-label.",
        );
    assert_eq!(
        server.list("").await.json,
        json!({"fargateProfileNames": []})
    );
    assert_eq!(server.api_count("CreateFargateProfile", "ok"), 1);
    assert_eq!(
        server.api_count("DescribeFargateProfile", "ResourceNotFoundException"),
        2
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_profile_creating_or_deleting_at_a_time() {
    let dir = empty_state();
    let server = ApiServer::start(
        dir.path(),
        ApiConfig {
            create_delay: Duration::from_millis(700),
            delete_delay: Duration::from_millis(700),
            ..api_config()
        },
    )
    .await;
    server.create(&api_profile("first")).await.expect_ok();
    server.create(&api_profile("first")).await.expect_error(
        409,
        "ResourceInUseException",
        "A Fargate Profile already exists with this name in this cluster.",
    );
    server.create(&api_profile("second")).await.expect_error(
        409,
        "ResourceInUseException",
        "Cannot create Fargate Profile second because cluster fargate currently has Fargate profile first in status CREATING",
    );
    server.delete("first").await.expect_error(
        400,
        "InvalidRequestException",
        "Fargate Profile is currently not in Active State.",
    );
    server.wait_status("first", "ACTIVE").await;
    server.create(&api_profile("second")).await.expect_ok();
    // Another profile CREATING: the cluster has an update in progress (docs/eks-api.md "Errors").
    server.delete("first").await.expect_error(
        409,
        "ResourceInUseException",
        "Cannot Delete Fargate Profile first because cluster fargate currently has an update in progress",
    );
    server.wait_status("second", "ACTIVE").await;

    server.delete("first").await.expect_ok();
    server.create(&api_profile("third")).await.expect_error(
        409,
        "ResourceInUseException",
        "Cannot create Fargate Profile third because cluster fargate currently has Fargate profile first in status DELETING",
    );
    server.delete("second").await.expect_error(
        409,
        "ResourceInUseException",
        "Cannot Delete Fargate Profile second because cluster fargate currently has Fargate profile first in status DELETING",
    );
    server.wait_gone("first").await;
    server.create(&api_profile("third")).await.expect_ok();
    assert_eq!(
        server.api_count("CreateFargateProfile", "ResourceInUseException"),
        3
    );
    assert_eq!(
        server.api_count("DeleteFargateProfile", "ResourceInUseException"),
        2
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_lifecycle_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("profiles.json"),
        serde_json::to_vec(&profiles_file(vec![
            // As the API wrote them before a restart (createdAt marks an API-written entry).
            ProfileBuilder::new("was-creating")
                .created_at(1795612900.437)
                .namespace("a")
                .status(ProfileStatus::Creating)
                .json(),
            ProfileBuilder::new("was-deleting")
                .created_at(1795612900.5)
                .namespace("b")
                .status(ProfileStatus::Deleting)
                .json(),
        ]))
        .unwrap(),
    )
    .unwrap();
    let server = ApiServer::start(dir.path(), api_config()).await;
    server.wait_status("was-creating", "ACTIVE").await;
    server.wait_gone("was-deleting").await;
    server.stop().await;
}

/// Spec §6: a hand-written entry keeps the status written in it; only profiles the API wrote
/// (they carry `createdAt`) follow its lifecycle, and one whose timer was lost (say, its replica
/// died) is picked up by the lifecycle sweep instead of blocking every later create.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_sweep_drives_api_profiles_and_keeps_hand_written_statuses() {
    let dir = empty_state();
    let server = ApiServer::start(dir.path(), api_config()).await;
    let arn = "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/api-creating/0b7c2f0e-7d0f-4c53-9c43-3f2b9f1d2a11";
    let file = profiles_file(vec![
        ProfileBuilder::new("api-creating")
            .arn(arn)
            .cluster("fargate")
            .created_at(1795612900.437)
            .namespace("a")
            .status(ProfileStatus::Creating)
            .json(),
        ProfileBuilder::new("hand-deleting")
            .namespace("b")
            .status(ProfileStatus::Deleting)
            .json(),
    ]);
    std::fs::write(
        dir.path().join("profiles.json"),
        serde_json::to_vec(&file).unwrap(),
    )
    .unwrap();
    server.store.reload();
    // Blocked while one is CREATING...
    server
        .create(&api_profile("later"))
        .await
        .expect_error(409, "ResourceInUseException", "Cannot create Fargate Profile later because cluster fargate currently has Fargate profile api-creating in status CREATING");
    // ...until the sweep (every 5 s) gives the API's profile a timer.
    server.wait_status("api-creating", "ACTIVE").await;
    // The hand-written DELETING entry is left as written (and, per the spec, still blocks creates).
    server.wait_status("hand-deleting", "DELETING").await;
    server
        .create(&api_profile("later"))
        .await
        .expect_error(409, "ResourceInUseException", "Cannot create Fargate Profile later because cluster fargate currently has Fargate profile hand-deleting in status DELETING");
    server.stop().await;
}

/// A corrupt profiles file at start: writes are refused with the EKS "cluster not ACTIVE" client
/// error (never a 5xx that clients retry), the operator's file is left as it is, and once it is
/// fixed the API works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_store_refuses_writes_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.json");
    let corrupt = b"{\"fargateProfiles\": [ {\"fargateProfileName\": ";
    std::fs::write(&path, corrupt).unwrap();
    let server = ApiServer::start(dir.path(), api_config()).await;
    server.create(&api_profile("first")).await.expect_error(
        400,
        "InvalidRequestException",
        "Cluster 'fargate' is not in ACTIVE status",
    );
    assert_eq!(std::fs::read(&path).unwrap(), corrupt);
    std::fs::write(&path, br#"{"fargateProfiles": []}"#).unwrap();
    server.store.reload();
    server.create(&api_profile("first")).await.expect_ok();
    server.stop().await;
}

/// The store writes from the file as it is on disk: a hand edit the watcher has not reloaded yet is
/// kept, and a file broken after start is refused rather than overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_start_from_the_file_on_disk() {
    let dir = empty_state();
    let path = dir.path().join("profiles.json");
    let server = ApiServer::start(dir.path(), api_config()).await;
    let edited = profiles_file(vec![ProfileBuilder::new("hand-edit").namespace("x").json()]);
    std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
    // No wait for the watcher: the create runs at once.
    server.create(&api_profile("by-api")).await.expect_ok();
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let names: Vec<&str> = on_disk["fargateProfiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["fargateProfileName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hand-edit", "by-api"]);

    let broken = b"{\"fargateProfiles\": [";
    std::fs::write(&path, broken).unwrap();
    server.create(&api_profile("refused")).await.expect_error(
        400,
        "InvalidRequestException",
        "Cluster 'fargate' is not in ACTIVE status",
    );
    assert_eq!(std::fs::read(&path).unwrap(), broken);
    server.stop().await;
}
