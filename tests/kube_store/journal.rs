//! A journal left behind (a replica killed after its last write, before the journal's clear) is
//! carried out by the next update: it must not undo what kubectl did since (a deletion, a tag
//! edit); and a writer whose journal another replica quarantined hears of it, not a success.

use fargate_webhook::profile::{ProfileState, ProfileStatus};
use fargate_webhook::store::ProfileStore;
use fargate_webhook::store::kubernetes::{PENDING_KEY, QUARANTINE_KEY};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::support::fake_kube::Fake;
use super::support::until;
use super::{CAP, Failed, RunChange, create_change, eks_profile, replica};

/// Every clear of the journal fails from the second lock PUT on (counted from now): the journal
/// stays, as if the replica had been killed before clearing it.
fn fail_clears(fake: &Fake, failing: &[u32]) {
    fake.with(|s| {
        s.lock_puts = 0;
        s.fail_lock_puts = failing.to_vec();
    });
}

fn journal(fake: &Fake) -> Option<Value> {
    fake.lock_data()[PENDING_KEY]
        .as_str()
        .map(|text| serde_json::from_str(text).expect("the journal parses"))
}

async fn create_active(store: &impl RunChange, name: &str, token: &str) {
    store
        .apply_change(create_change(
            eks_profile(name, ProfileStatus::Active),
            Some(token),
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await
        .unwrap_or_else(|e| panic!("{name} created: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_left_behind_does_not_bring_back_a_profile_deleted_with_kubectl() {
    let fake = Fake::new();
    let r = replica(fake.client());
    let watch = r.store.start();
    r.store.wait_loaded().await;
    // PUT 1 journals the create, 2-4 are the clear's tries: all fail, the journal stays. PUT 5,
    // the first try to take the create out of it when kubectl deletes the profile, fails too.
    fail_clears(&fake, &[2, 3, 4, 5]);
    create_active(r.store.as_ref(), "web", "tok-web").await;
    let left = journal(&fake).expect("the journal is left behind");
    assert_eq!(left["ops"][0]["op"], "create");

    fake.delete("web"); // held by the finalizer until the holder's housekeeping drops it
    until("the finalizer dropped and web gone", CAP, || {
        fake.profile("web").is_none()
    })
    .await;
    assert_eq!(
        fake.with(|s| s.lock_puts),
        6,
        "the failed journal edit was tried again"
    );
    assert!(
        journal(&fake).is_none(),
        "the create of web left the journal before its finalizer was dropped"
    );

    // The next update carries out what is left of the journal: nothing brings web back.
    create_active(r.store.as_ref(), "batch", "tok-batch").await;
    assert!(fake.profile("batch").is_some());
    assert!(
        fake.profile("web").is_none(),
        "the profile deleted with kubectl came back"
    );
    watch.abort();
}

/// A replay whose write fails for a passing reason looks at the lock again before it writes
/// again: if the profile was deleted with kubectl meanwhile and its create taken out of the
/// journal (what the holder's housekeeping does), the create is not made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_retried_after_a_failed_write_does_not_recreate_what_kubectl_deleted() {
    let fake = Fake::new();
    let r = replica(fake.client());
    fail_clears(&fake, &[2, 3, 4]);
    create_active(r.store.as_ref(), "web", "tok-web").await;
    assert!(journal(&fake).is_some(), "the journal is left behind");
    fail_clears(&fake, &[]);
    // kubectl changed the status: the replay writes it back, and that write fails with a 500
    // while web is deleted and its create taken out of the journal.
    fake.modify("web", |o| o["status"]["status"] = json!("CREATING"));
    fake.with(|s| {
        s.fail_next_status = Some((
            500,
            Box::new(|s| {
                s.remove_profile("web");
                s.edit_lock(|data| {
                    data.remove(PENDING_KEY);
                });
            }),
        ))
    });
    create_active(r.store.as_ref(), "batch", "tok-batch").await;
    assert!(
        fake.with(|s| s.fail_next_status.is_none()),
        "the write failed"
    );
    assert!(fake.profile("batch").is_some());
    assert!(
        fake.profile("web").is_none(),
        "the profile deleted with kubectl came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_left_behind_does_not_revert_a_kubectl_tag_edit() {
    let fake = Fake::new();
    let r = replica(fake.client());
    create_active(r.store.as_ref(), "web", "tok-web").await;
    fail_clears(&fake, &[2, 3, 4]);
    r.store
        .apply_change(|state: &mut ProfileState| {
            state.fargate_profiles[0]
                .tags
                .insert("team".into(), "api".into());
            Ok(())
        })
        .await
        .expect("tagged through the API");
    let left = journal(&fake).expect("the journal is left behind");
    assert_eq!(left["ops"][0]["op"], "update");
    assert_eq!(left["ops"][0]["generation"], 1, "{left}");

    // kubectl edits the tags (a spec change: the apiserver moves the generation).
    fake.modify("web", |o| {
        o["spec"]["tags"] = json!({"team": "kubectl"});
        o["metadata"]["generation"] = json!(2);
    });
    create_active(r.store.as_ref(), "batch", "tok-batch").await;
    assert_eq!(
        fake.profile("web").unwrap()["spec"]["tags"],
        json!({"team": "kubectl"}),
        "the replayed journal reverted kubectl's edit"
    );
    assert!(journal(&fake).is_none(), "the journal was carried out");

    // A journal whose tags were never written is carried out in full.
    fail_clears(&fake, &[]);
    let generation = fake.profile("web").unwrap()["metadata"]["generation"].clone();
    forge_update(&fake, &generation);
    create_active(r.store.as_ref(), "third", "tok-third").await;
    assert_eq!(
        fake.profile("web").unwrap()["spec"]["tags"],
        json!({"team": "journal"})
    );
}

/// The generation rule is for replays only: a TagResource whose own write meets a concurrent
/// kubectl edit (409) writes its tags on the fresh object, as it told the caller it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_write_that_meets_a_concurrent_edit_is_still_written() {
    let fake = Fake::new();
    let r = replica(fake.client());
    create_active(r.store.as_ref(), "web", "tok-web").await;
    fake.with(|s| {
        s.before_next_put = Some(Box::new(|s| {
            s.modify_profile("web", |o| {
                o["spec"]["tags"] = json!({"team": "kubectl"});
                o["metadata"]["generation"] = json!(2);
            });
        }))
    });
    r.store
        .apply_change(|state: &mut ProfileState| {
            state.fargate_profiles[0].tags = [("team".to_owned(), "api".to_owned())].into();
            Ok(())
        })
        .await
        .expect("tagged through the API");
    assert!(
        fake.with(|s| s.before_next_put.is_none()),
        "the edit happened"
    );
    assert_eq!(
        fake.profile("web").unwrap()["spec"]["tags"],
        json!({"team": "api"}),
        "the caller was told its tags were written"
    );
}

/// A journal of one tag update of `web`, planned on `generation`, as a killed replica leaves it.
fn forge_update(fake: &Fake, generation: &Value) {
    let uid = fake.profile("web").unwrap()["metadata"]["uid"].clone();
    let ops = json!([{
        "op": "update", "name": "web", "uid": uid,
        "tags": {"team": "journal"}, "generation": generation,
    }]);
    fake.with(|s| {
        s.edit_lock(|data| {
            let journal = json!({"commit": "killed", "ops": ops});
            data.insert(PENDING_KEY.into(), json!(journal.to_string()));
        })
    });
}

/// Another replica quarantines the write of our commit while we apply it (its rules refuse the
/// journal: a lowered limit, say). The lock moved, but not because our commit was carried out: the
/// caller gets an error, not a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_another_replica_quarantined_is_not_reported_done() {
    let fake = Fake::new();
    let r = replica(fake.client());
    fake.with(|s| {
        s.touch_before_next_status = true; // the status write conflicts: the writer looks again
        s.before_next_status = Some(Box::new(|s| {
            s.edit_lock(|data| {
                let pending = data.remove(PENDING_KEY).expect("our journal");
                let pending: Value = serde_json::from_str(pending.as_str().unwrap()).unwrap();
                let quarantined = json!([{
                    "commit": pending["commit"], "op": pending["ops"][0],
                    "refused": "the API's rules refuse it: too many labels", "at": "2026-12-05T00:00:00Z",
                }]);
                data.insert(QUARANTINE_KEY.into(), json!(quarantined.to_string()));
            })
        }));
    });
    let result = r
        .store
        .apply_change(create_change(
            eks_profile("web", ProfileStatus::Creating),
            Some("tok-web"),
            Arc::new(AtomicUsize::new(0)),
            None,
        ))
        .await;
    match result {
        Err(Failed::Store(error)) => {
            let text = fargate_webhook::store::report(&error);
            assert!(
                text.contains("quarantined") && text.contains("too many labels"),
                "{text}"
            );
        }
        other => panic!(
            "reported as done: {:?}",
            other.map(|s| s.fargate_profiles.len())
        ),
    }
}
