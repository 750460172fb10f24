//! Writes: the lifecycle of a profile through the store, concurrent writers on one or several
//! replicas (exactly one wins, one CREATING at a time), commits left half done, names Kubernetes
//! cannot store, conflicts on the store's own writes, and late watch events.

use fargate_webhook::profile::{ProfileState, ProfileStatus};
use fargate_webhook::store::kubernetes::{
    FINALIZER, INITIAL_STATUS_ANNOTATION, PENDING_KEY, TOKENS_KEY,
};
use fargate_webhook::store::{ProfileStore, UpdateError, Violation};
use http::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::support::fake_kube::{Fake, LOCK, NAMESPACE, PROFILES, ROLE};
use super::{
    Failed, RunChange, create_change, eks_profile, refused, replica, replica_with, requests,
    set_status, spawn_update,
};

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

/// A write whose request hangs (a dead connection: the kube client sets no read timeout) fails at the
/// commit deadline and releases the replica's writer lock; the next write completes what it left
/// half done and goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_request_hangs_fails_at_the_deadline_and_the_next_one_goes_through() {
    let fake = Fake::new();
    let store = replica_with(fake.client(), |o| {
        o.commit_deadline = Duration::from_millis(500)
    })
    .store;
    // The create is journalled, then its POST of the resource never comes back.
    fake.with(|s| s.hang = Some((String::new(), Method::POST, PROFILES.into())));
    let runs = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let cut = tokio::time::timeout(
        Duration::from_secs(10),
        store.apply_change(create_change(
            eks_profile("web", ProfileStatus::Creating),
            Some("tok-1"),
            runs,
            None,
        )),
    )
    .await
    .expect("the hung write returns at its deadline");
    assert!(
        matches!(cut, Err(Failed::Store(_))),
        "the hung write fails as a storage error"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "at the deadline"
    );
    assert!(fake.profile("web").is_none());

    fake.with(|s| s.hang = None);
    let next = store
        .apply_change(set_status("web", ProfileStatus::Active))
        .await;
    assert!(next.is_ok(), "the next write goes through");
    let web = fake
        .profile("web")
        .expect("the journalled create was completed");
    assert_eq!(web["status"]["status"], "ACTIVE");
}

/// A journal carried out is cleared even when the first try to clear it fails: left there, the next
/// update would carry it out again over whatever kubectl changed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_carried_out_is_cleared_when_the_first_clear_fails() {
    let fake = Fake::new();
    let r = replica(fake.client());
    // The commit writes the lock twice: the journal, then the clear. The clear fails once.
    fake.with(|s| {
        s.lock_puts = 0;
        s.fail_lock_puts = vec![2];
    });
    let runs = Arc::new(AtomicUsize::new(0));
    r.store
        .apply_change(create_change(
            eks_profile("web", ProfileStatus::Creating),
            Some("tok-1"),
            runs,
            None,
        ))
        .await
        .expect("created");
    assert_eq!(fake.with(|s| s.lock_puts), 3, "the clear was tried again");
    let data = fake.lock_data();
    assert!(
        data[PENDING_KEY].is_null(),
        "no journal left behind: {data}"
    );
    assert!(data[TOKENS_KEY].as_str().unwrap().contains("tok-1"));
}
