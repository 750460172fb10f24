//! The coordination ConfigMap (the lock): a part no replica can read stops writes and is never
//! overwritten; a journalled write the apiserver refuses for good, or one that breaks the API's
//! rules, is quarantined; an immutable lock fails writes loudly.

use fargate_webhook::profile::ProfileStatus;
use fargate_webhook::store::ProfileStore;
use fargate_webhook::store::kubernetes::{PENDING_KEY, QUARANTINE_KEY, TOKENS_KEY};
use http::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::support::fake_kube::{Fake, LOCK, ROLE};
use super::{Failed, RunChange, create_change, eks_profile, replica, set_status};

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
        s.edit_lock(|data| {
            let journal = json!({"commit": "forged", "ops": ops});
            data.insert(PENDING_KEY.into(), json!(journal.to_string()));
        })
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
