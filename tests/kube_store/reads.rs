//! Reads: the initial list and the watch (a scripted exchange and the fake API server), a re-list
//! after `410 Expired`, deletions through the finalizer, and resources the store cannot serve as
//! they are (skipped, reported, a warning event).

use fargate_webhook::decision::{SharedSnapshot, Snapshot};
use fargate_webhook::metrics::Metrics;
use fargate_webhook::profile::{Limits, ProfileStatus};
use fargate_webhook::store::kubernetes::{FINALIZER, KubeStore, KubeStoreOptions};
use fargate_webhook::store::{ProfileStore, UpdateError, Violation};
use futures::channel::mpsc;
use http::{Method, Request, Response};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::support::fake_kube::{
    Body, Fake, NAMESPACE, PROFILES, ROLE, event_line, json_response, kubectl_object, status_body,
    stream_response,
};
use super::support::{until, within};
use super::{CAP, Failed, Replica, RunChange, create_change, eks_profile, replica, requests};

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

/// A replica watching two ACTIVE profiles, alpha and beta, both listed.
async fn alpha_and_beta_loaded() -> (Arc<Fake>, Replica, tokio::task::JoinHandle<()>) {
    alpha_and_beta_loaded_with(|_| {}).await
}

/// [`alpha_and_beta_loaded`] with the store's options changed by `adjust`.
async fn alpha_and_beta_loaded_with(
    adjust: impl FnOnce(&mut KubeStoreOptions),
) -> (Arc<Fake>, Replica, tokio::task::JoinHandle<()>) {
    let fake = Fake::new();
    fake.apply(kubectl_object("alpha", Some(ProfileStatus::Active)));
    fake.apply(kubectl_object("beta", Some(ProfileStatus::Active)));
    let r = super::replica_with(fake.client(), adjust);
    let watch = r.store.start();
    within("loaded", CAP, r.store.wait_loaded()).await;
    assert_eq!(r.names(), ["alpha", "beta"]);
    (fake, r, watch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_restart_after_410_lists_again() {
    let (fake, r, watch) = alpha_and_beta_loaded().await;

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

/// beta is changed last: its resourceVersion is the newest the replica holds, so a relist that
/// does not hold it keeps it (it might be our own write racing the list) and confirms.
async fn beta_changed_last(fake: &Fake, r: &Replica) {
    let last = fake.modify("beta", |o| o["spec"]["tags"] = json!({"changed": "last"}));
    assert!(last["metadata"]["resourceVersion"].as_str().is_some());
    until("the change seen", CAP, || {
        r.store
            .current()
            .fargate_profiles
            .iter()
            .any(|p| !p.tags.is_empty())
    })
    .await;
}

/// The object changed last is deleted while the watch is down: the relist does not hold it, and
/// nothing listed is newer. Regression: the relist kept every object newer than the newest one it
/// listed (meant for our own writes racing it), so the replica served the deleted profile for good
/// (found by tests/cluster/test_store_faults.py after a kube-apiserver restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_missed_while_the_watch_was_down_is_not_kept_by_the_relist() {
    let (fake, r, watch) = alpha_and_beta_loaded().await;
    beta_changed_last(&fake, &r).await;
    fake.down_while(|down| down.delete("beta"));
    until("relisted without the deleted profile", CAP, || {
        r.names() == ["alpha"]
    })
    .await;
    watch.abort();
}

/// The list that confirms a relist hangs (a dead connection): it is cut off at the update deadline
/// and tried again, and the deletion the watch missed is still found. Regression: without the bound
/// the one confirming task waited for good, and the replica served the deleted profile for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirming_list_that_never_answers_is_given_up_and_tried_again() {
    let (fake, r, watch) =
        alpha_and_beta_loaded_with(|o| o.commit_deadline = Duration::from_millis(500)).await;
    beta_changed_last(&fake, &r).await;
    // The watcher's lists page (`limit=`); the list that confirms a relist does not.
    let confirming = |m: &Method, path: &str, query: &str| {
        *m == Method::GET
            && path == PROFILES
            && !query.contains("watch")
            && !query.contains("limit")
    };
    fake.clear_log();
    fake.with(|s| {
        s.hang_next_if = Some(Box::new(move |_, m, path, query| {
            confirming(m, path, query)
        }))
    });
    fake.down_while(|down| down.delete("beta"));
    until("relisted without the deleted profile", CAP, || {
        r.names() == ["alpha"]
    })
    .await;
    assert!(
        fake.with(|s| s.hang_next_if.is_none()),
        "the first confirming list was left unanswered"
    );
    let lists = fake
        .log()
        .iter()
        .filter(|l| confirming(&l.method, &l.path, &l.query))
        .count();
    // The log holds answered requests: the hung one is not among them.
    assert!(
        lists >= 1,
        "a confirming list was answered after the hung one"
    );
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
