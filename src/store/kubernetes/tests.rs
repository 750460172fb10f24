use super::journal::{Op, Pending};
use super::observed::{Listed, Observed, version_of};
use super::resource::profile_from_resource;
use super::{FINALIZER, INITIAL_STATUS_ANNOTATION};
use crate::profile::ProfileStatus;
use crate::store::crd::{
    FargateProfile as ProfileResource, FargateProfileSpec, FargateProfileStatus,
};
use std::collections::BTreeMap;

fn resource(name: &str, version: u64) -> ProfileResource {
    let mut obj = ProfileResource::new(name, FargateProfileSpec::default());
    obj.metadata.resource_version = Some(version.to_string());
    obj.metadata.uid = Some(format!("uid-{name}"));
    obj
}

#[test]
fn newer_versions_win_and_tombstones_hold() {
    let mut observed = Observed::default();
    observed.upsert(resource("a", 5));
    observed.upsert(resource("a", 3));
    assert_eq!(version_of(&observed.objects["a"]), Some(5));
    observed.bury("a", Some(&resource("a", 7)));
    observed.upsert(resource("a", 6));
    assert!(observed.objects.is_empty());
    observed.upsert(resource("a", 9));
    assert_eq!(version_of(&observed.objects["a"]), Some(9));
}

#[test]
fn a_relist_replaces_all_but_newer_writes() {
    let mut observed = Observed::default();
    observed.upsert(resource("gone", 2));
    observed.upsert(resource("written", 20));
    let listed = BTreeMap::from([
        ("kept".to_owned(), resource("kept", 10)),
        ("written".to_owned(), resource("written", 11)),
    ]);
    let unlisted = observed.replace_all(Listed {
        objects: listed.clone(),
        ..Default::default()
    });
    let names: Vec<&str> = observed.objects.keys().map(String::as_str).collect();
    assert_eq!(names, ["kept", "written"]);
    assert_eq!(version_of(&observed.objects["written"]), Some(20));
    assert!(!unlisted, "every object kept is in the list");

    // Newer than the list but not in it: written while the list was read, or deleted before it
    // was (a deletion the watch missed). Kept, and said, so that a list at a known version decides.
    observed.upsert(resource("late", 30));
    assert!(observed.replace_all(Listed {
        objects: listed.clone(),
        ..Default::default()
    }));
    assert!(observed.objects.contains_key("late"));
    observed.absorb_list(&listed, Some(40));
    assert!(
        !observed.objects.contains_key("late"),
        "a list at 40 without it: gone"
    );
}

#[test]
fn status_less_resources_read_as_active_or_as_created() {
    let mut obj = resource("p", 1);
    assert_eq!(
        profile_from_resource(&obj).unwrap().status,
        ProfileStatus::Active
    );
    let initial = FargateProfileStatus {
        status: Some(ProfileStatus::Creating),
        fargate_profile_arn: Some("arn".into()),
        ..Default::default()
    };
    obj.metadata.annotations = Some(BTreeMap::from([(
        INITIAL_STATUS_ANNOTATION.to_owned(),
        serde_json::to_string(&initial).unwrap(),
    )]));
    let profile = profile_from_resource(&obj).unwrap();
    assert_eq!(profile.status, ProfileStatus::Creating);
    assert_eq!(profile.fargate_profile_arn.as_deref(), Some("arn"));
    obj.metadata.deletion_timestamp = obj.metadata.creation_timestamp.clone().or(Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
    ));
    assert!(profile_from_resource(&obj).is_none(), "no finalizer: gone");
    obj.metadata.finalizers = Some(vec![FINALIZER.into()]);
    assert_eq!(
        profile_from_resource(&obj).unwrap().status,
        ProfileStatus::Deleting
    );
}

#[test]
fn journal_round_trips() {
    let pending = Pending {
        commit: "c".into(),
        ops: vec![
            Op::Remove {
                name: "a".into(),
                uid: "u".into(),
            },
            Op::Update {
                name: "b".into(),
                uid: "v".into(),
                tags: Some([("k".to_owned(), "v".to_owned())].into()),
                generation: Some(3),
                status: Some(FargateProfileStatus::default()),
            },
        ],
    };
    let text = serde_json::to_string(&pending).unwrap();
    assert!(text.contains(r#""op":"remove""#), "{text}");
    assert_eq!(serde_json::from_str::<Pending>(&text).unwrap(), pending);
    // A journal of an older build, without the planned generation, still parses.
    let old = r#"{"commit":"c","ops":[{"op":"update","name":"b","uid":"v","tags":{}}]}"#;
    match &serde_json::from_str::<Pending>(old).unwrap().ops[0] {
        Op::Update { generation, .. } => assert_eq!(*generation, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_watch_retries_within_seconds_however_long_the_outage() {
    use ::kube::runtime::utils::Backoff;
    let mut backoff = super::watch_backoff();
    let first = backoff.next().expect("never gives up");
    assert!(first >= super::WATCH_RETRY_FIRST && first <= 2 * super::WATCH_RETRY_FIRST);
    let pauses: Vec<_> = (0..40)
        .map(|_| backoff.next().expect("never gives up"))
        .collect();
    // Jitter adds up to the pause itself: never more than twice the longest pause.
    assert!(
        pauses.iter().all(|p| *p <= 2 * super::WATCH_RETRY_LONGEST),
        "{pauses:?}"
    );
    assert!(
        pauses[30..]
            .iter()
            .all(|p| *p >= super::WATCH_RETRY_LONGEST),
        "{pauses:?}"
    );
    backoff.reset();
    assert!(backoff.next().unwrap() <= 2 * super::WATCH_RETRY_FIRST);
}

#[test]
fn what_was_logged_or_housekept_is_forgotten_past_a_bound_for_versions_no_longer_read() {
    let mut observed = Observed::default();
    observed.upsert(resource("a", 500));
    let key = |version: u64| ("a".to_owned(), version.to_string());
    // Below the bound (4 per object read, plus 64), nothing goes, stale or not.
    for version in 1..=60 {
        observed.reported.insert(key(version));
        observed.housekept.insert(key(version));
        observed.warned.insert((format!("uid-gone-{version}"), 0));
    }
    observed.housekeep_failures.insert(key(61), 1);
    observed.prune();
    assert_eq!(observed.reported.len(), 60);
    assert_eq!(
        observed.housekept.len() + observed.housekeep_failures.len(),
        61
    );
    assert_eq!(observed.warned.len(), 60);

    // Past it, only what is read now stays: a's version 500 and its uid.
    for version in 61..=499 {
        observed.reported.insert(key(version));
        observed.housekept.insert(key(version));
        observed.warned.insert((format!("uid-gone-{version}"), 0));
    }
    for live in [&mut observed.reported, &mut observed.housekept] {
        live.insert(key(500));
    }
    observed.warned.insert(("uid-a".to_owned(), 0));
    // A resource that does not decode is read too: what was logged of it stays; housekeeping
    // never works on one, so it keeps nothing of its name.
    let meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        resource_version: Some("7".into()),
        ..Default::default()
    };
    observed.broken.insert(
        "b".into(),
        ::kube::core::error_boundary::InvalidObject {
            error: "no spec".into(),
            metadata: meta,
        },
    );
    let broken = ("b".to_owned(), "7".to_owned());
    observed.reported.insert(broken.clone());
    observed.housekept.insert(broken.clone());
    observed.prune();
    assert_eq!(observed.reported, [key(500), broken].into());
    assert_eq!(observed.housekept, [key(500)].into());
    assert!(observed.housekeep_failures.is_empty());
    assert_eq!(observed.warned, [("uid-a".to_owned(), 0)].into());
}
