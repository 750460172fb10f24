//! Criterion benchmarks of the EKS API, in process through `Api::handle` (no sockets), with a
//! file store on disk holding 1,000 profiles (quota raised to 10,000):
//!
//! - `api/create`: CreateFargateProfile with `--create-delay 0` (one durable write: temporary
//!   file, fsync, rename, fsync of the directory, of a ~1,000-profile file); the profiles
//!   created are deleted again outside the timed part, so the store stays at ~1,000;
//! - `api/describe`: DescribeFargateProfile of one profile among 1,000;
//! - `api/list_first_page` and `api/list_with_token`: ListFargateProfiles pages of 100.
//!
//! Run: `cargo bench --bench api` (add `-- --quick` for a fast pass).

use arc_swap::ArcSwap;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fargate_webhook::api::{Api, ApiConfig};
use fargate_webhook::decision::{SharedSnapshot, Snapshot};
use fargate_webhook::metrics::Metrics;
use fargate_webhook::profile::{FargateProfile, ProfileState, Selector};
use fargate_webhook::store::file::FileStore;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROLE: &str = "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole";
const PROFILES: usize = 1_000;
const BASE: &str = "/clusters/fargate/fargate-profiles";

fn seed(dir: &std::path::Path) {
    let profiles = (0..PROFILES)
        .map(|i| FargateProfile {
            fargate_profile_name: format!("profile-{i:04}"),
            fargate_profile_arn: Some(format!(
                "arn:aws:eks:us-west-2:012345678910:fargateprofile/fargate/profile-{i:04}/{}",
                uuid::Uuid::new_v4()
            )),
            cluster_name: Some("fargate".into()),
            created_at: Some(1_700_000_000.123),
            pod_execution_role_arn: ROLE.into(),
            subnets: vec![
                "subnet-0420a37ee456daf3f".into(),
                "subnet-09a8afb8db4f02d21".into(),
            ],
            selectors: vec![Selector {
                namespace: Some(format!("ns-{i}")),
                labels: [("app".to_string(), format!("app-{i}"))].into(),
            }],
            ..Default::default()
        })
        .collect();
    let file = ProfileState {
        fargate_profiles: profiles,
        ..Default::default()
    };
    std::fs::write(
        dir.join("profiles.json"),
        serde_json::to_vec_pretty(&file).unwrap(),
    )
    .unwrap();
}

async fn send(api: &Api, method: Method, uri: &str, body: Vec<u8>) -> Bytes {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = api.handle(req).await;
    assert!(
        response.status().is_success(),
        "{uri}: {}",
        response.status()
    );
    response.into_body().collect().await.unwrap().to_bytes()
}

fn bench_api(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    seed(dir.path());
    let args = ApiConfig {
        create_delay: Duration::ZERO,
        delete_delay: Duration::ZERO,
        max_profiles: 10_000,
        ..ApiConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let store = FileStore::open(dir.path(), args.limits(), snapshot, metrics.clone()).unwrap();
    let api = Api::new(&args, store, metrics).unwrap();

    let mut group = c.benchmark_group("api");
    group.throughput(Throughput::Elements(1));

    let counter = AtomicU64::new(0);
    group.bench_function("create", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut names = Vec::with_capacity(iters as usize);
                let start = Instant::now();
                for _ in 0..iters {
                    let name = format!("bench-{}", counter.fetch_add(1, Ordering::Relaxed));
                    let body = serde_json::to_vec(&serde_json::json!({
                        "fargateProfileName": name,
                        "podExecutionRoleArn": ROLE,
                        "selectors": [{"namespace": "bench", "labels": {"app": name}}],
                        "clientRequestToken": uuid::Uuid::new_v4().to_string(),
                    }))
                    .unwrap();
                    black_box(send(&api, Method::POST, BASE, body).await);
                    names.push(name);
                }
                let elapsed = start.elapsed();
                for name in names {
                    send(&api, Method::DELETE, &format!("{BASE}/{name}"), Vec::new()).await;
                }
                elapsed
            })
        })
    });

    group.bench_function("describe", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    send(
                        &api,
                        Method::GET,
                        &format!("{BASE}/profile-0500"),
                        Vec::new(),
                    )
                    .await,
                )
            })
        })
    });

    group.bench_function("list_first_page", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    send(
                        &api,
                        Method::GET,
                        &format!("{BASE}?maxResults=100"),
                        Vec::new(),
                    )
                    .await,
                )
            })
        })
    });

    // A token from the middle of the list (after 500 names).
    let mut token = String::new();
    for _ in 0..5 {
        let uri = if token.is_empty() {
            format!("{BASE}?maxResults=100")
        } else {
            format!("{BASE}?maxResults=100&nextToken={token}")
        };
        let page: serde_json::Value =
            serde_json::from_slice(&rt.block_on(send(&api, Method::GET, &uri, Vec::new())))
                .unwrap();
        token = page["nextToken"].as_str().unwrap().to_owned();
    }
    let uri = format!("{BASE}?maxResults=100&nextToken={token}");
    group.bench_function("list_with_token", |b| {
        b.iter(|| rt.block_on(async { black_box(send(&api, Method::GET, &uri, Vec::new()).await) }))
    });
    group.finish();
}

criterion_group!(benches, bench_api);
criterion_main!(benches);
