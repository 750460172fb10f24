//! The Kubernetes store against kube-rs's mocked API service (`tower_test::mock::pair`), no cluster:
//!
//! - one scripted scenario answers the exact requests the watcher makes with wire-format JSON
//!   (list, watch event stream, `410 Expired` ERROR event, re-list);
//! - the others run against a small in-memory API server behind the same mock (resourceVersions,
//!   optimistic concurrency with 409 Conflict, AlreadyExists, finalizers, deletion, watch history
//!   with compaction, and the CRD's CEL rules evaluated with kube's client-side CEL validator).
//!
//! The fake API server is `support::fake_kube`.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use fargate_webhook::decision::{SharedSnapshot, Snapshot};
use fargate_webhook::metrics::Metrics;
use fargate_webhook::profile::ProfileState;
use fargate_webhook::profile::{FargateProfile, Limits, ProfileStatus, TokenRecord};
use fargate_webhook::store::kubernetes::{
    FINALIZER, INITIAL_STATUS_ANNOTATION, KubeStore, KubeStoreOptions, PENDING_KEY, QUARANTINE_KEY,
    TOKENS_KEY,
};
use fargate_webhook::store::{BoxFuture, ProfileStore, UpdateError, Violation, update_or_refuse};
use futures::channel::mpsc;
use http::{Method, Request, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::fake_kube::{
    Body, Fake, LOCK, Logged, NAMESPACE, PROFILES, ROLE, event_line, json_response, kubectl_object,
    status_body, stream_response,
};
use support::{ProfileBuilder, SUBNET_A, until, within};

/// How long the store gets to catch up with the fake API server.
const CAP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers.

struct Replica {
    store: Arc<KubeStore>,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
}

fn replica(client: kube::Client) -> Replica {
    let snapshot: SharedSnapshot = Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::default()));
    let metrics = Arc::new(Metrics::new());
    let mut options = KubeStoreOptions::new(NAMESPACE);
    options.retry_backoff = Duration::from_millis(5);
    let store = KubeStore::new(
        client,
        Arc::clone(&snapshot),
        Arc::clone(&metrics),
        Limits::default(),
        options,
    );
    Replica {
        store,
        snapshot,
        metrics,
    }
}

impl Replica {
    fn names(&self) -> Vec<String> {
        self.snapshot
            .load()
            .profiles()
            .iter()
            .map(|p| p.profile.fargate_profile_name.clone())
            .collect()
    }

    fn status_of(&self, name: &str) -> Option<ProfileStatus> {
        self.snapshot.load().get(name).map(|p| p.profile.status)
    }

    fn reloads(&self, result: &str) -> u64 {
        let text = String::from_utf8(self.metrics.render()).unwrap();
        text.lines()
            .find(|l| {
                l.starts_with("fargate_webhook_reloads_total")
                    && l.contains("source=\"profiles\"")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Why a test change did not commit: it refused (its own reason), or the store failed.
#[derive(Debug)]
enum Failed {
    Refused(String),
    Store(UpdateError),
}

fn refused(failed: Failed) -> String {
    match failed {
        Failed::Refused(reason) => reason,
        Failed::Store(error) => panic!("store error: {error}"),
    }
}

/// Run a change the way the API does: `Err(reason)` aborts it, and the reason comes back.
trait RunChange {
    fn apply_change<'a>(
        &'a self,
        change: impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'a,
    ) -> BoxFuture<'a, Result<Arc<ProfileState>, Failed>>;
}

impl<S: ProfileStore + ?Sized> RunChange for S {
    fn apply_change<'a>(
        &'a self,
        change: impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'a,
    ) -> BoxFuture<'a, Result<Arc<ProfileState>, Failed>> {
        Box::pin(async move {
            match update_or_refuse(self, change).await {
                Ok(result) => result.map_err(|reason| Failed::Refused(reason.unwrap_or_default())),
                Err(error) => Err(Failed::Store(error)),
            }
        })
    }
}

fn eks_profile(name: &str, status: ProfileStatus) -> FargateProfile {
    ProfileBuilder::new(name)
        .arn(&format!(
            "arn:aws:eks:us-east-1:123456789012:fargateprofile/fargate/{name}/0000"
        ))
        .cluster("fargate")
        .created_at(1_767_323_045.123)
        .role(ROLE)
        .subnets(&[SUBNET_A])
        .namespace(&format!("ns-{name}"))
        .label("app", "web")
        .status(status)
        .build()
}

/// What the EKS API's CreateFargateProfile does inside the store: refuse a duplicate name and a
/// create while another profile is CREATING or DELETING, then add the profile and its token.
fn create_change(
    profile: FargateProfile,
    token: Option<&str>,
    runs: Arc<AtomicUsize>,
    meet: Option<Arc<AtomicUsize>>,
) -> impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'static {
    let token = token.map(str::to_owned);
    move |state: &mut ProfileState| {
        if runs.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(meet) = &meet
        {
            // Both replicas read the same state before either commits.
            meet.fetch_add(1, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while meet.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let name = &profile.fargate_profile_name;
        if state
            .fargate_profiles
            .iter()
            .any(|p| &p.fargate_profile_name == name)
        {
            return Err(format!("duplicate {name}"));
        }
        if let Some(busy) = state
            .fargate_profiles
            .iter()
            .find(|p| matches!(p.status, ProfileStatus::Creating | ProfileStatus::Deleting))
        {
            return Err(format!("busy {}", busy.fargate_profile_name));
        }
        state.fargate_profiles.push(profile.clone());
        if let Some(token) = &token {
            state.client_request_tokens.insert(
                token.clone(),
                TokenRecord {
                    fargate_profile_name: name.clone(),
                    fargate_profile_arn: profile.fargate_profile_arn.clone().unwrap(),
                    request_digest: "digest".into(),
                },
            );
        }
        Ok(())
    }
}

fn set_status(
    name: &'static str,
    status: ProfileStatus,
) -> impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'static {
    move |state: &mut ProfileState| {
        let profile = state
            .fargate_profiles
            .iter_mut()
            .find(|p| p.fargate_profile_name == name)
            .ok_or_else(|| format!("missing {name}"))?;
        profile.status = status;
        Ok(())
    }
}

/// Run an update in its own task (so that two replicas' changes run on two threads at once).
fn spawn_update(
    store: &Arc<KubeStore>,
    change: impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'static,
) -> tokio::task::JoinHandle<Result<Arc<ProfileState>, Failed>> {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.apply_change(change).await })
}

fn requests<'l>(log: &'l [Logged], method: Method, path: &str) -> Vec<&'l Logged> {
    log.iter()
        .filter(|l| l.method == method && l.path == path)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reads.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_list_then_added_modified_deleted_follow() {
    let fake = Fake::new();
    fake.apply(kubectl_object("alpha", None));
    fake.apply(kubectl_object("beta", None));
    fake.modify("beta", |o| o["status"] = json!({"status": "CREATING"}));
    let r = replica(fake.client());
    assert!(!r.store.is_loaded());
    let watch = r.store.start();
    within("loaded", CAP, r.store.wait_loaded()).await;

    // Initial list: both profiles; the one without status is ACTIVE, as in a profiles file.
    assert_eq!(r.names(), ["alpha", "beta"]);
    assert_eq!(r.status_of("alpha"), Some(ProfileStatus::Active));
    assert_eq!(r.status_of("beta"), Some(ProfileStatus::Creating));
    assert_eq!(r.store.current().fargate_profiles.len(), 2);
    // ... and the store writes that status so that `kubectl get fp` shows it.
    until("status stamped on alpha", CAP, || {
        fake.profile("alpha").unwrap()["status"]["status"] == "ACTIVE"
    })
    .await;
    assert!(fake.profile("beta").unwrap()["status"]["status"] == "CREATING");

    // ADDED.
    fake.apply(kubectl_object("gamma", Some(ProfileStatus::Active)));
    until("gamma added", CAP, || {
        r.names().contains(&"gamma".to_owned())
    })
    .await;

    // MODIFIED: beta turns ACTIVE, gamma gets a tag.
    fake.modify("beta", |o| o["status"]["status"] = json!("ACTIVE"));
    until("beta active", CAP, || {
        r.status_of("beta") == Some(ProfileStatus::Active)
    })
    .await;
    fake.modify("gamma", |o| o["spec"]["tags"] = json!({"team": "a"}));
    until("gamma tagged", CAP, || {
        r.store
            .current()
            .fargate_profiles
            .iter()
            .any(|p| p.fargate_profile_name == "gamma" && p.tags.contains_key("team"))
    })
    .await;

    // DELETED.
    fake.delete("alpha");
    until("alpha deleted", CAP, || {
        !r.names().contains(&"alpha".to_owned())
    })
    .await;
    assert_eq!(r.names(), ["beta", "gamma"]);

    // An invalid resource (the schema would refuse this role; pretend it got in) is skipped and
    // counted as a failed reload; the others stay.
    let failed_before = r.reloads("failed");
    let mut bad = kubectl_object("delta", Some(ProfileStatus::Active));
    bad["spec"]["podExecutionRoleArn"] = json!("not-an-arn");
    fake.apply(bad);
    until("failed reload counted", CAP, || {
        r.reloads("failed") > failed_before
    })
    .await;
    assert_eq!(r.names(), ["beta", "gamma"]);
    assert!(r.reloads("ok") > 0);
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_restart_after_410_lists_again() {
    let fake = Fake::new();
    fake.apply(kubectl_object("alpha", Some(ProfileStatus::Active)));
    fake.apply(kubectl_object("beta", Some(ProfileStatus::Active)));
    let r = replica(fake.client());
    let watch = r.store.start();
    within("loaded", CAP, r.store.wait_loaded()).await;
    assert_eq!(r.names(), ["alpha", "beta"]);

    // The watch ends and, while it is down, history is compacted and things change: the
    // re-watch from the last resourceVersion gets 410 Expired and the watcher lists again.
    fake.down_while(|down| {
        down.delete("alpha");
        down.apply(kubectl_object("gamma", Some(ProfileStatus::Active)));
    });
    until("relisted", CAP, || r.names() == ["beta", "gamma"]).await;

    // A 410 ERROR event on an open watch does the same.
    fake.expire_watches();
    fake.delete("beta");
    fake.compact();
    until("relisted again", CAP, || r.names() == ["gamma"]).await;

    let log = fake.log();
    let lists = log
        .iter()
        .filter(|l| {
            l.method == Method::GET && l.path == PROFILES && !l.query.contains("watch=true")
        })
        .count();
    assert!(lists >= 3, "one list per (re)start, got {lists}");
    assert!(
        log.iter()
            .any(|l| l.query.contains("watch=true") && l.query.contains("resourceVersion=")),
        "watches resume from a resourceVersion"
    );
    assert!(r.store.is_loaded());
    watch.abort();
}

/// The watcher's requests answered one by one with recorded wire-format JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_list_watch_events_and_410() {
    let (service, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
    // Statuses are all set: the store makes no housekeeping writes, only the watcher's requests.
    let r = replica(kube::Client::new(service, "default"));
    let watch = r.store.start();

    let object = |name: &str, version: u64, status: &str| {
        json!({
            "apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfile",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": version.to_string(),
                         "generation": 1, "creationTimestamp": "2026-01-02T03:04:05Z"},
            "spec": {"podExecutionRoleArn": ROLE, "selectors": [{"namespace": name}]},
            "status": {"status": status, "fargateProfileArn": format!("arn:aws:eks:us-east-1:123456789012:fargateprofile/fargate/{name}/1"),
                       "clusterName": "fargate", "createdAt": "2026-01-02T03:04:05.123Z"},
        })
    };

    // 1. The initial list.
    let (request, respond) = handle.next_request().await.expect("list");
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.uri().path(), PROFILES);
    let query = request.uri().query().unwrap_or("").to_owned();
    assert!(query.contains("limit=500"), "{query}");
    assert!(!query.contains("watch"), "{query}");
    respond.send_response(json_response(
        200,
        &json!({"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfileList",
                "metadata": {"resourceVersion": "100"}, "items": [object("web", 90, "ACTIVE")]}),
    ));

    // 2. The watch from the list's resourceVersion.
    let (request, respond) = handle.next_request().await.expect("watch");
    let query = request.uri().query().unwrap_or("").to_owned();
    assert!(query.contains("watch=true"), "{query}");
    assert!(query.contains("resourceVersion=100"), "{query}");
    let (tx, rx) = mpsc::unbounded();
    respond.send_response(stream_response(rx));
    until("loaded", CAP, || r.store.is_loaded()).await;
    assert_eq!(r.names(), ["web"]);
    let web = r.store.current().fargate_profiles[0].clone();
    assert_eq!(web.created_at, Some(1_767_323_045.123));
    assert_eq!(web.cluster_name.as_deref(), Some("fargate"));
    assert_eq!(web.selectors[0].namespace.as_deref(), Some("web"));

    // 3. Events.
    tx.unbounded_send(event_line("ADDED", &object("batch", 101, "CREATING")))
        .unwrap();
    until("batch added", CAP, || {
        r.status_of("batch") == Some(ProfileStatus::Creating)
    })
    .await;
    tx.unbounded_send(event_line("MODIFIED", &object("batch", 102, "ACTIVE")))
        .unwrap();
    until("batch active", CAP, || {
        r.status_of("batch") == Some(ProfileStatus::Active)
    })
    .await;
    tx.unbounded_send(event_line("DELETED", &object("web", 103, "DELETING")))
        .unwrap();
    until("web deleted", CAP, || r.names() == ["batch"]).await;
    let snapshot = r.snapshot.load();
    assert!(snapshot.get("batch").is_some());

    // 4. "too old resource version": the watcher lists again and the list replaces the state.
    tx.unbounded_send(event_line(
        "ERROR",
        &status_body(410, "Expired", "too old resource version: 100 (150)"),
    ))
    .unwrap();
    let (request, respond) = handle.next_request().await.expect("relist");
    let query = request.uri().query().unwrap_or("").to_owned();
    assert_eq!(request.uri().path(), PROFILES);
    assert!(!query.contains("watch"), "{query}");
    respond.send_response(json_response(
        200,
        &json!({"apiVersion": "fargate-webhook.io/v1alpha1", "kind": "FargateProfileList",
                "metadata": {"resourceVersion": "200"}, "items": [object("api", 180, "ACTIVE")]}),
    ));
    let (request, respond) = handle.next_request().await.expect("rewatch");
    let query = request.uri().query().unwrap_or("").to_owned();
    assert!(query.contains("resourceVersion=200"), "{query}");
    let (_tx2, rx2) = mpsc::unbounded();
    respond.send_response(stream_response(rx2));
    until("relisted", CAP, || r.names() == ["api"]).await;
    drop(tx);
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_drops_the_finalizer() {
    let fake = Fake::new();
    let mut object = kubectl_object("web", Some(ProfileStatus::Active));
    object["metadata"]["finalizers"] = json!([FINALIZER]);
    fake.apply(object);
    fake.modify("web", |o| o["status"] = json!({"status": "ACTIVE"}));
    let r = replica(fake.client());
    let watch = r.store.start();
    r.store.wait_loaded().await;
    assert_eq!(r.status_of("web"), Some(ProfileStatus::Active));
    fake.delete("web"); // held by the finalizer: deletionTimestamp set
    until("finalizer dropped and object gone", CAP, || {
        fake.profile("web").is_none()
    })
    .await;
    until("gone from the snapshot", CAP, || r.names().is_empty()).await;
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_the_store_makes_is_left_to_it() {
    // "mine": the API's delete (status DELETING written before its DELETE); "theirs": kubectl's.
    let fake = Fake::new();
    for (name, status) in [("mine", "DELETING"), ("theirs", "ACTIVE")] {
        let mut object = kubectl_object(name, None);
        object["metadata"]["finalizers"] = json!([FINALIZER]);
        fake.apply(object);
        fake.modify(name, |o| o["status"] = json!({"status": status}));
    }
    let r = replica(fake.client());
    let watch = r.store.start();
    r.store.wait_loaded().await;
    fake.delete("mine");
    fake.delete("theirs");
    // Events arrive in order: once "theirs" is released, "mine" has been seen deleting too.
    until("kubectl's deletion released", CAP, || {
        fake.profile("theirs").is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mine = fake
        .profile("mine")
        .expect("the store's own deletion is not released by housekeeping");
    assert_eq!(mine["metadata"]["finalizers"], json!([FINALIZER]));
    assert!(requests(&fake.log(), Method::PATCH, &format!("{PROFILES}/mine")).is_empty());
    watch.abort();
}

// ---------------------------------------------------------------------------------------------
// Writes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_activate_tag_delete_round_trip() {
    let fake = Fake::new();
    let r = replica(fake.client());
    let profile = eks_profile("web", ProfileStatus::Creating);
    let runs = Arc::new(AtomicUsize::new(0));
    let state = r
        .store
        .apply_change(create_change(profile.clone(), Some("tok-1"), runs, None))
        .await
        .expect("created");
    assert_eq!(state.fargate_profiles.len(), 1);
    // Published before update returned: listed, CREATING, so not matched yet.
    assert_eq!(r.status_of("web"), Some(ProfileStatus::Creating));

    let log = fake.log();
    let sequence: Vec<String> = log
        .iter()
        .map(|l| format!("{} {} {}", l.method, l.path, l.status))
        .collect();
    let cm = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    let lock = format!("{cm}/{LOCK}");
    assert_eq!(
        sequence,
        [
            format!("GET {lock} 404"),
            format!("POST {cm} 201"),
            format!("GET {PROFILES} 200"),
            format!("PUT {lock} 200"),
            format!("POST {PROFILES} 201"),
            format!("PUT {PROFILES}/web/status 200"),
            format!("PUT {lock} 200"),
        ],
        "{sequence:#?}"
    );
    // The commit journals the create and records the token, before any profile is written.
    let commit = &requests(&log, Method::PUT, &lock)[0].body["data"];
    let pending: Value = serde_json::from_str(commit[PENDING_KEY].as_str().unwrap()).unwrap();
    assert_eq!(pending["ops"][0]["op"], "create");
    assert_eq!(pending["ops"][0]["name"], "web");
    let tokens: Value = serde_json::from_str(commit[TOKENS_KEY].as_str().unwrap()).unwrap();
    assert_eq!(tokens["tok-1"]["fargateProfileName"], "web");
    // The create: EKS spec, finalizer, the initial status in an annotation.
    let post = &requests(&log, Method::POST, PROFILES)[0].body;
    assert_eq!(post["apiVersion"], "fargate-webhook.io/v1alpha1");
    assert_eq!(post["kind"], "FargateProfile");
    assert_eq!(post["metadata"]["name"], "web");
    assert_eq!(post["metadata"]["finalizers"], json!([FINALIZER]));
    let initial: Value = serde_json::from_str(
        post["metadata"]["annotations"][INITIAL_STATUS_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(initial["status"], "CREATING");
    assert_eq!(
        post["spec"],
        json!({
            "podExecutionRoleArn": ROLE,
            "subnets": ["subnet-0420a37ee456daf3f"],
            "selectors": [{"namespace": "ns-web", "labels": {"app": "web"}}],
        })
    );
    // Then the status subresource, with the lifecycle.
    let status = &requests(&log, Method::PUT, &format!("{PROFILES}/web/status"))[0].body["status"];
    assert_eq!(
        *status,
        json!({
            "status": "CREATING",
            "fargateProfileArn": profile.fargate_profile_arn.clone().unwrap(),
            "clusterName": "fargate",
            "createdAt": "2026-01-02T03:04:05.123Z",
            "observedGeneration": 1,
        })
    );
    // The journal is cleared once applied; the token stays.
    let data = fake.lock_data();
    assert!(data.get(PENDING_KEY).is_none(), "{data}");
    assert!(data[TOKENS_KEY].as_str().unwrap().contains("tok-1"));

    // CREATING -> ACTIVE: one status write.
    fake.clear_log();
    r.store
        .apply_change(set_status("web", ProfileStatus::Active))
        .await
        .expect("activated");
    assert_eq!(r.status_of("web"), Some(ProfileStatus::Active));
    assert_eq!(fake.profile("web").unwrap()["status"]["status"], "ACTIVE");
    let writes: Vec<String> = fake
        .log()
        .iter()
        .filter(|l| l.method != Method::GET)
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    assert_eq!(
        writes,
        [
            format!("PUT {lock}"),
            format!("PUT {PROFILES}/web/status"),
            format!("PUT {lock}")
        ]
    );

    // Tags are the mutable part of spec: a PUT of the object (which the CRD's CEL rules accept).
    r.store
        .apply_change(|state: &mut ProfileState| {
            state.fargate_profiles[0]
                .tags
                .insert("team".into(), "payments".into());
            Ok(())
        })
        .await
        .expect("tagged");
    assert_eq!(
        fake.profile("web").unwrap()["spec"]["tags"],
        json!({"team": "payments"})
    );

    // Other spec changes are refused by the store before anything is written.
    let err = r
        .store
        .apply_change(|state: &mut ProfileState| {
            state.fargate_profiles[0].subnets.push("subnet-x".into());
            Ok(())
        })
        .await
        .expect_err("immutable");
    assert!(
        matches!(err, Failed::Store(UpdateError::Violation(Violation::Immutable(ref name))) if name == "web"),
        "{err:?}"
    );

    // DELETING, then removal: DELETE with preconditions, then the finalizer goes.
    r.store
        .apply_change(set_status("web", ProfileStatus::Deleting))
        .await
        .expect("deleting");
    assert_eq!(r.status_of("web"), Some(ProfileStatus::Deleting));
    fake.clear_log();
    r.store
        .apply_change(|state: &mut ProfileState| {
            state.fargate_profiles.clear();
            state.client_request_tokens.clear();
            Ok(())
        })
        .await
        .expect("removed");
    assert!(fake.profile("web").is_none());
    assert!(r.names().is_empty());
    assert!(r.store.current().fargate_profiles.is_empty());
    let log = fake.log();
    let delete = &requests(&log, Method::DELETE, &format!("{PROFILES}/web"))[0];
    assert_eq!(delete.body["preconditions"]["uid"], "uid-1");
    let patch = &requests(&log, Method::PATCH, &format!("{PROFILES}/web"))[0];
    assert_eq!(patch.body["metadata"]["finalizers"], json!([]));
    assert!(patch.body["metadata"]["resourceVersion"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_exactly_one_wins() {
    let fake = Fake::new();
    let a = replica(fake.client());
    let b = replica(fake.client());
    let meet = Arc::new(AtomicUsize::new(0));
    let (runs_a, runs_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut pa = eks_profile("web", ProfileStatus::Creating);
    pa.fargate_profile_arn = Some("arn:a".into());
    let mut pb = eks_profile("web", ProfileStatus::Creating);
    pb.fargate_profile_arn = Some("arn:b".into());
    let ra = spawn_update(
        &a.store,
        create_change(
            pa,
            Some("tok-a"),
            Arc::clone(&runs_a),
            Some(Arc::clone(&meet)),
        ),
    );
    let rb = spawn_update(
        &b.store,
        create_change(
            pb,
            Some("tok-b"),
            Arc::clone(&runs_b),
            Some(Arc::clone(&meet)),
        ),
    );
    let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
    let (winner, loser, loser_runs) = match (ra, rb) {
        (Ok(_), Err(e)) => ("arn:a", e, runs_b),
        (Err(e), Ok(_)) => ("arn:b", e, runs_a),
        (ra, rb) => panic!("exactly one must win: {:?} / {:?}", ra.is_ok(), rb.is_ok()),
    };
    assert_eq!(refused(loser), "duplicate web");
    assert_eq!(
        loser_runs.load(Ordering::SeqCst),
        2,
        "the loser ran again on fresh state"
    );
    // The loser's commit conflicted on the coordination object.
    let log = fake.log();
    let lock = format!("/api/v1/namespaces/{NAMESPACE}/configmaps/{LOCK}");
    assert!(
        requests(&log, Method::PUT, &lock)
            .iter()
            .any(|l| l.status == 409),
        "a 409 Conflict on the commit"
    );
    // One resource, the winner's; the loser's token was never committed.
    assert_eq!(requests(&log, Method::POST, PROFILES).len(), 1);
    let object = fake.profile("web").unwrap();
    assert_eq!(object["status"]["fargateProfileArn"], winner);
    let tokens = fake.lock_data()[TOKENS_KEY].as_str().unwrap().to_owned();
    assert_eq!(tokens.contains("tok-a"), winner == "arn:a", "{tokens}");
    assert_eq!(tokens.contains("tok-b"), winner == "arn:b", "{tokens}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_creating_at_a_time_across_replicas() {
    let fake = Fake::new();
    let a = replica(fake.client());
    let b = replica(fake.client());
    let meet = Arc::new(AtomicUsize::new(0));
    let ra = spawn_update(
        &a.store,
        create_change(
            eks_profile("web", ProfileStatus::Creating),
            None,
            Arc::new(AtomicUsize::new(0)),
            Some(Arc::clone(&meet)),
        ),
    );
    let rb = spawn_update(
        &b.store,
        create_change(
            eks_profile("batch", ProfileStatus::Creating),
            None,
            Arc::new(AtomicUsize::new(0)),
            Some(Arc::clone(&meet)),
        ),
    );
    let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
    let loser = match (ra, rb) {
        (Ok(_), Err(e)) => (e, "web"),
        (Err(e), Ok(_)) => (e, "batch"),
        (ra, rb) => panic!("exactly one must win: {:?} / {:?}", ra.is_ok(), rb.is_ok()),
    };
    assert_eq!(refused(loser.0), format!("busy {}", loser.1));
    assert_eq!(fake.with(|s| s.profiles.len()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_create_racing_the_api_is_a_duplicate() {
    let fake = Fake::new();
    let r = replica(fake.client());
    fake.with(|s| s.steal_next_create = true);
    let runs = Arc::new(AtomicUsize::new(0));
    let err = r
        .store
        .apply_change(create_change(
            eks_profile("web", ProfileStatus::Creating),
            Some("tok-1"),
            Arc::clone(&runs),
            None,
        ))
        .await
        .expect_err("duplicate");
    assert_eq!(refused(err), "duplicate web");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // The kubectl object stays untouched; the failed create and its token left the journal.
    let object = fake.profile("web").unwrap();
    assert!(object["metadata"]["annotations"].is_null());
    let data = fake.lock_data();
    assert!(data.get(PENDING_KEY).is_none(), "{data}");
    assert!(
        !data[TOKENS_KEY].as_str().unwrap().contains("tok-1"),
        "{data}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_update_finishes_a_commit_left_half_done() {
    let fake = Fake::new();
    // A replica committed "create web" and died before writing anything.
    let create = json!({
        "commit": "c-1",
        "ops": [{
            "op": "create", "name": "web",
            "spec": {"podExecutionRoleArn": ROLE, "selectors": [{"namespace": "ns-web"}]},
            "status": {"status": "CREATING", "fargateProfileArn": "arn:dead", "createdAt": "2026-01-02T03:04:05.000Z"},
        }],
    });
    fake.with(|s| {
        s.config_maps.insert(
            LOCK.into(),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": LOCK, "namespace": NAMESPACE, "resourceVersion": "7"},
                "data": {PENDING_KEY: create.to_string(), TOKENS_KEY: "{}"},
            }),
        );
        s.version = 7;
    });
    let r = replica(fake.client());
    // Another create runs on a state that includes the dead replica's profile: it is CREATING,
    // so this one is refused, and the journal is completed and cleared.
    let err = r
        .store
        .apply_change(create_change(
            eks_profile("batch", ProfileStatus::Creating),
            None,
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .expect_err("busy");
    assert_eq!(refused(err), "busy web");
    let web = fake.profile("web").expect("rolled forward");
    assert_eq!(web["status"]["status"], "CREATING");
    assert_eq!(web["status"]["fargateProfileArn"], "arn:dead");
    // The refused change committed nothing, and the journal it completed is cleared.
    assert!(fake.lock_data().get(PENDING_KEY).is_none());
    assert_eq!(r.status_of("web"), Some(ProfileStatus::Creating));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_kubernetes_cannot_store_are_refused() {
    let fake = Fake::new();
    let r = replica(fake.client());
    let err = r
        .store
        .apply_change(create_change(
            eks_profile("My_Profile", ProfileStatus::Creating),
            None,
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .expect_err("refused");
    let Failed::Store(UpdateError::Violation(Violation::Invalid(message))) = err else {
        panic!("not refused as an invalid name: {err:?}")
    };
    assert!(message.contains("lowercase"), "{message}");
    assert!(requests(&fake.log(), Method::POST, PROFILES).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_not_undone_by_late_watch_events() {
    let fake = Fake::new();
    let r = replica(fake.client());
    let watch = r.store.start();
    r.store.wait_loaded().await;
    for status in [ProfileStatus::Creating, ProfileStatus::Active] {
        if status == ProfileStatus::Creating {
            r.store
                .apply_change(create_change(
                    eks_profile("web", status),
                    None,
                    Arc::new(AtomicUsize::new(0)),
                    None,
                ))
                .await
                .unwrap();
        } else {
            r.store
                .apply_change(set_status("web", status))
                .await
                .unwrap();
        }
        // Whatever the watch delivers afterwards, the state never goes back.
        for _ in 0..20 {
            assert_eq!(r.status_of("web"), Some(status));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_resource_is_skipped_not_fatal() {
    let fake = Fake::new();
    fake.apply(kubectl_object("web", Some(ProfileStatus::Active)));
    fake.modify("web", |o| o["status"] = json!({"status": "ACTIVE"}));
    // A status this build does not know (a newer CRD, or written around the schema).
    fake.apply(kubectl_object("odd", None));
    fake.modify("odd", |o| o["status"] = json!({"status": "PAUSED"}));
    let r = replica(fake.client());
    let watch = r.store.start();
    within(
        "loaded despite the unreadable resource",
        CAP,
        r.store.wait_loaded(),
    )
    .await;
    assert_eq!(r.names(), ["web"]);
    assert!(r.reloads("failed") >= 1);
    // Its name stays taken.
    let err = r
        .store
        .apply_change(create_change(
            eks_profile("odd", ProfileStatus::Creating),
            None,
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .expect_err("taken");
    assert!(
        matches!(
            err,
            Failed::Store(UpdateError::Violation(Violation::DuplicateName))
        ),
        "{err:?}"
    );
    // Fixed: it appears.
    fake.modify("odd", |o| o["status"] = json!({"status": "ACTIVE"}));
    until("odd readable", CAP, || r.names() == ["odd", "web"]).await;
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_behind_the_store_trait() {
    let fake = Fake::new();
    let r = replica(fake.client());
    let store: Arc<dyn ProfileStore> = r.store.clone();
    store
        .apply_change(create_change(
            eks_profile("web", ProfileStatus::Active),
            None,
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(store.current().fargate_profiles.len(), 1);
    assert_eq!(r.status_of("web"), Some(ProfileStatus::Active));
    // A resource created ACTIVE matches at once.
    assert_eq!(
        r.snapshot.load().count_by_status()[&ProfileStatus::Active],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_on_an_own_write_is_retried_on_the_fresh_object() {
    let fake = Fake::new();
    let r = replica(fake.client());
    let runs = Arc::new(AtomicUsize::new(0));
    fake.with(|s| s.touch_before_next_status = true);
    r.store
        .apply_change(create_change(
            eks_profile("web", ProfileStatus::Creating),
            None,
            Arc::clone(&runs),
            None,
        ))
        .await
        .expect("created despite the conflict");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "committed once, not run again"
    );
    let web = fake.profile("web").unwrap();
    assert_eq!(web["status"]["status"], "CREATING");
    assert_eq!(
        web["metadata"]["labels"]["touched"], "yes",
        "the other change is kept"
    );
    let status_puts: Vec<u16> =
        requests(&fake.log(), Method::PUT, &format!("{PROFILES}/web/status"))
            .iter()
            .map(|l| l.status)
            .collect();
    assert_eq!(status_puts, [409, 200]);
    assert!(fake.lock_data().get(PENDING_KEY).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_whose_object_is_already_gone_succeeds() {
    let fake = Fake::new();
    let r = replica(fake.client());
    let runs = Arc::new(AtomicUsize::new(0));
    r.store
        .apply_change(create_change(
            eks_profile("web", ProfileStatus::Deleting),
            None,
            runs,
            None,
        ))
        .await
        .expect("created");
    // Between the store's DELETE and its finalizer release, someone else releases it: 404.
    fake.with(|s| s.remove_before_next_patch = true);
    let state = r
        .store
        .apply_change(|state: &mut ProfileState| {
            state
                .fargate_profiles
                .retain(|p| p.fargate_profile_name != "web");
            Ok(())
        })
        .await
        .expect("gone is what the removal wanted: no error");
    assert!(state.fargate_profiles.is_empty());
    assert!(fake.profile("web").is_none());
    let patches: Vec<u16> = requests(&fake.log(), Method::PATCH, &format!("{PROFILES}/web"))
        .iter()
        .map(|l| l.status)
        .collect();
    assert_eq!(patches, [404]);
    assert!(
        fake.lock_data().get(PENDING_KEY).is_none(),
        "the journal is cleared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_part_of_the_lock_stops_writes_and_is_never_overwritten() {
    for key in [TOKENS_KEY, PENDING_KEY] {
        let fake = Fake::new();
        let r = replica(fake.client());
        r.store
            .apply_change(create_change(
                eks_profile("web", ProfileStatus::Active),
                Some("tok-1"),
                Arc::new(AtomicUsize::new(0)),
                None,
            ))
            .await
            .expect("created");
        fake.with(|s| {
            s.config_maps.get_mut(LOCK).unwrap()["data"][key] = json!("{not json");
        });
        let before = fake.lock_data();
        fake.clear_log();
        let failed = r
            .store
            .apply_change(create_change(
                eks_profile("api", ProfileStatus::Creating),
                Some("tok-2"),
                Arc::new(AtomicUsize::new(0)),
                None,
            ))
            .await;
        match failed {
            Err(Failed::Store(error)) => {
                let text = error.to_string();
                assert!(
                    text.contains(key) && text.contains("unreadable"),
                    "{key}: {text}"
                );
            }
            other => panic!(
                "{key}: the write went on: {:?}",
                other.map(|s| s.fargate_profiles.len())
            ),
        }
        assert_eq!(fake.lock_data(), before, "{key}: the lock is untouched");
        assert!(fake.profile("api").is_none(), "{key}: nothing written");
        assert!(
            fake.log().iter().all(|l| l.method == Method::GET),
            "{key}: only reads: {:?}",
            fake.log()
                .iter()
                .map(|l| format!("{} {}", l.method, l.path))
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journalled_write_the_apiserver_refuses_for_good_is_quarantined_and_writes_go_on() {
    let fake = Fake::new();
    let (a, b) = (replica(fake.client()), replica(fake.client()));
    // A tightened schema refuses "bad": its commit is journalled, then its create answers 422.
    fake.with(|s| s.refuse_creates_of = Some("bad".into()));
    let first = a
        .store
        .apply_change(create_change(
            eks_profile("bad", ProfileStatus::Creating),
            Some("tok-bad"),
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await;
    assert!(
        matches!(first, Err(Failed::Store(_))),
        "the create itself fails"
    );
    let journal: Value =
        serde_json::from_str(fake.lock_data()[PENDING_KEY].as_str().expect("journalled")).unwrap();
    assert_eq!(journal["ops"][0]["name"], "bad");
    // The next write, from another replica, is not stopped by it.
    b.store
        .apply_change(create_change(
            eks_profile("good", ProfileStatus::Creating),
            Some("tok-good"),
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .expect("writes go on");
    assert!(fake.profile("good").is_some() && fake.profile("bad").is_none());
    let lock = fake.lock_data();
    assert!(lock.get(PENDING_KEY).is_none(), "the journal is clear");
    let kept: Value =
        serde_json::from_str(lock[QUARANTINE_KEY].as_str().expect("quarantined")).unwrap();
    assert_eq!(kept.as_array().unwrap().len(), 1);
    assert_eq!(kept[0]["op"]["op"], "create");
    assert_eq!(kept[0]["op"]["name"], "bad");
    assert_eq!(kept[0]["commit"], journal["commit"]);
    assert!(
        kept[0]["refused"]
            .as_str()
            .unwrap()
            .contains("a tightened rule"),
        "{kept}"
    );
    let tokens: Value = serde_json::from_str(lock[TOKENS_KEY].as_str().unwrap()).unwrap();
    assert!(
        tokens.get("tok-bad").is_none() && tokens.get("tok-good").is_some(),
        "{tokens}"
    );
    assert_eq!(b.metrics.store_quarantined.get(), 1);
    // Kept across later commits, which carry it over.
    b.store
        .apply_change(set_status("good", ProfileStatus::Active))
        .await
        .expect("activated");
    assert_eq!(fake.lock_data()[QUARANTINE_KEY], lock[QUARANTINE_KEY]);
}

/// Write `ops` as the journal of the coordination ConfigMap, as someone with write access to it could.
fn forge_journal(fake: &Fake, ops: Value) {
    fake.with(|s| {
        s.version += 1;
        let version = s.version.to_string();
        let lock = s.config_maps.get_mut(LOCK).expect("the lock exists");
        lock["metadata"]["resourceVersion"] = json!(version);
        lock["data"][PENDING_KEY] = json!(json!({"commit": "forged", "ops": ops}).to_string());
    });
}

fn quarantined(fake: &Fake) -> Value {
    serde_json::from_str(
        fake.lock_data()[QUARANTINE_KEY]
            .as_str()
            .expect("quarantined"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journalled_write_that_breaks_the_api_rules_is_quarantined_not_carried_out() {
    let fake = Fake::new();
    let (a, b) = (replica(fake.client()), replica(fake.client()));
    a.store
        .apply_change(create_change(
            eks_profile("slow", ProfileStatus::Creating),
            None,
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .expect("created");
    // A create that skips CREATING while another profile is CREATING: the API would refuse it.
    let spec = json!({"podExecutionRoleArn": ROLE, "selectors": [{"namespace": "forged"}]});
    forge_journal(
        &fake,
        json!([{"op": "create", "name": "forged", "spec": spec, "status": {"status": "ACTIVE"}}]),
    );
    b.store
        .apply_change(set_status("slow", ProfileStatus::Active))
        .await
        .expect("the next write goes on");
    assert!(
        fake.profile("forged").is_none(),
        "the forged create was carried out"
    );
    assert_eq!(a.store.current().fargate_profiles.len(), 1);
    let kept = quarantined(&fake);
    assert_eq!(kept[0]["op"]["name"], "forged");
    let refused = kept[0]["refused"].as_str().unwrap();
    assert!(
        refused.contains("the API's rules refuse it")
            && refused.contains("one profile CREATING or DELETING at a time"),
        "{refused}"
    );
    assert!(fake.lock_data().get(PENDING_KEY).is_none());

    // A profile that breaks a per-profile rule, and a removal of a profile that is not being deleted.
    let bad = json!({"podExecutionRoleArn": ROLE, "selectors": [{"namespace": "Bad NS!"}]});
    let uid = fake.profile("slow").unwrap()["metadata"]["uid"].clone();
    for (ops, rule) in [
        (
            json!([{"op": "create", "name": "odd", "spec": bad, "status": {"status": "CREATING"}}]),
            "can never match a Kubernetes namespace",
        ),
        (
            json!([{"op": "update", "name": "slow", "uid": uid, "status": {"status": "CREATING"}}]),
            "cannot go from ACTIVE to CREATING",
        ),
    ] {
        forge_journal(&fake, ops);
        b.store
            .apply_change(set_status("slow", ProfileStatus::Active))
            .await
            .expect("writes go on");
        let kept = quarantined(&fake);
        let last = kept.as_array().unwrap().last().unwrap();
        assert!(last["refused"].as_str().unwrap().contains(rule), "{last}");
    }
    assert!(fake.profile("odd").is_none());
    assert_eq!(b.status_of("slow"), Some(ProfileStatus::Active));
    assert_eq!(b.metrics.store_quarantined.get(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_no_replica_can_serve_says_so_instead_of_reading_active() {
    let fake = Fake::new();
    // Rules the CRD cannot express: a control character in a label value, and a flag lower than
    // the CRD's limit (two labels where this replica allows one).
    let mut control = kubectl_object("control", Some(ProfileStatus::Active));
    control["spec"]["selectors"][0]["labels"] = json!({"app": "a\u{1}b"});
    fake.apply(control);
    let mut two = kubectl_object("two-labels", None);
    two["spec"]["selectors"][0]["labels"] = json!({"a": "1", "b": "2"});
    fake.apply(two);
    fake.apply(kubectl_object("fine", None));
    let snapshot: SharedSnapshot = Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::default()));
    let limits = Limits {
        max_labels: 1,
        ..Limits::default()
    };
    let store = KubeStore::new(
        fake.client(),
        Arc::clone(&snapshot),
        Arc::new(Metrics::new()),
        limits,
        KubeStoreOptions::new(NAMESPACE),
    );
    let watch = store.start();
    let status = |name: &str| fake.profile(name).map(|p| p["status"].clone());
    until("every resource has its status", CAP, || {
        ["control", "two-labels", "fine"]
            .iter()
            .all(|n| status(n).is_some_and(|s| !s["status"].is_null()))
            && status("control").unwrap()["status"] == "CREATE_FAILED"
    })
    .await;
    assert_eq!(status("fine").unwrap()["status"], "ACTIVE");
    for (name, rule) in [
        ("control", "contains a control character"),
        ("two-labels", "more than 1 Label pairs"),
    ] {
        let s = status(name).unwrap();
        assert_eq!(s["status"], "CREATE_FAILED", "{name}: {s}");
        let issue = &s["health"]["issues"][0];
        assert_eq!(issue["code"], "InternalFailure", "{name}: {s}");
        let message = issue["message"].as_str().unwrap();
        assert!(
            message.starts_with("not served: ") && message.contains(rule),
            "{name}: {message}"
        );
    }
    // Served: only the one that keeps the rules.
    let served: Vec<String> = snapshot
        .load()
        .profiles()
        .iter()
        .map(|p| p.profile.fargate_profile_name.clone())
        .collect();
    assert_eq!(served, ["fine"]);
    // Written once: no housekeeping loop on its own write.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writes = fake
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/control/status") && l.method == Method::PUT)
        .count();
    assert_eq!(writes, 1);
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_all_selector_gets_a_warning_event_once() {
    let fake = Fake::new();
    let mut everything = kubectl_object("everything", None);
    everything["spec"]["selectors"][0]["namespace"] = json!("*");
    fake.apply(everything);
    fake.apply(kubectl_object("web", None));
    let r = replica(fake.client());
    let watch = r.store.start();
    let events = || {
        fake.log()
            .into_iter()
            .filter(|l| l.method == Method::POST && l.path.contains("/events"))
            .collect::<Vec<_>>()
    };
    until("a Warning event", CAP, || !events().is_empty()).await;
    // Later events (the status write, a label) do not repeat it.
    fake.modify("everything", |o| {
        o["metadata"]["labels"] = json!({"team": "a"})
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = events();
    assert_eq!(events.len(), 1, "{events:?}");
    let body = &events[0].body;
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reason"], "CatchAllSelector");
    assert_eq!(body["regarding"]["kind"], "FargateProfile");
    assert_eq!(body["regarding"]["name"], "everything");
    assert!(
        body["note"]
            .as_str()
            .unwrap()
            .contains("also takes every pod of kube-system"),
        "{body}"
    );
    assert_eq!(r.metrics.catch_all_selectors.get(), 1);
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_lock_fails_writes_loudly_and_changes_nothing() {
    let fake = Fake::new();
    let r = replica(fake.client());
    r.store
        .apply_change(create_change(
            eks_profile("first", ProfileStatus::Active),
            None,
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .expect("created");
    // Someone made the coordination ConfigMap immutable: no commit can be recorded any more.
    fake.with(|s| s.config_maps.get_mut(LOCK).unwrap()["immutable"] = json!(true));
    let before = fake.lock_data();
    let err = r
        .store
        .apply_change(create_change(
            eks_profile("second", ProfileStatus::Creating),
            None,
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .expect_err("an immutable lock takes no commit");
    let text = format!("{err:?}");
    assert!(
        text.contains("coordination ConfigMap") && text.contains("immutable"),
        "{text}"
    );
    assert!(
        fake.profile("second").is_none(),
        "nothing written without a commit"
    );
    assert!(fake.profile("first").is_some());
    assert_eq!(fake.lock_data(), before);
    assert_eq!(r.metrics.store_commit_failures.get(), 1);
    // A refusal by a rule is not a commit failure.
    let _ = r
        .store
        .apply_change(create_change(
            eks_profile("first", ProfileStatus::Creating),
            None,
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .expect_err("a duplicate");
    assert_eq!(r.metrics.store_commit_failures.get(), 1);
}
