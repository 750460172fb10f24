//! One writer among replicas (`fargate_webhook::claim`), in process against the fake API server of
//! `support::fake_kube` (Leases with resourceVersions and optimistic concurrency, each replica's
//! requests logged under its own name): the Kubernetes store's housekeeping and the API's lifecycle
//! steps are written by the holder of the claim only, a standby takes over within the Lease
//! duration when the holder dies, and a holder cut off from the Lease stops writing before anyone
//! else may take it.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use bytes::Bytes;
use fargate_webhook::api::{Api, ApiConfig};
use fargate_webhook::claim::Claim;
use fargate_webhook::claim::lease::Elector;
use fargate_webhook::decision::{SharedSnapshot, Snapshot};
use fargate_webhook::metrics::Metrics;
use fargate_webhook::profile::Limits;
use fargate_webhook::store::ProfileStore;
use fargate_webhook::store::kubernetes::{
    FINALIZER, INITIAL_STATUS_ANNOTATION, KubeStore, KubeStoreOptions, PENDING_KEY,
};
use http::{Method, Request};
use http_body_util::Full;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fake_kube::{Fake, FakeState, NAMESPACE, PROFILES, ROLE, kubectl_object};
use support::{ProfileBuilder, SUBNET_A};
use support::{until, within};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const LEASE: &str = "fargate-webhook";
/// Short, so that a takeover is quick to test; the rule is the same at 15 s.
const DURATION: Duration = Duration::from_secs(2);
const CAP: Duration = Duration::from_secs(10);

/// One `serve --store kubernetes` replica: its claim, its store and its API.
struct Replica {
    name: &'static str,
    claim: Claim,
    store: Arc<KubeStore>,
    api: Api,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Replica {
    fn start(fake: &Arc<Fake>, name: &'static str) -> Replica {
        Replica::start_with(fake, name, Limits::default())
    }

    /// A replica whose store reads the resources under `limits`.
    fn start_with(fake: &Arc<Fake>, name: &'static str, limits: Limits) -> Replica {
        let client = fake.client_named(name);
        let shutdown = CancellationToken::new();
        let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), NAMESPACE);
        let (claim, campaign) = Claim::lease(
            Elector::new(leases, LEASE, name, DURATION),
            shutdown.clone(),
        );
        let snapshot: SharedSnapshot =
            Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::default()));
        let metrics = Arc::new(Metrics::new());
        let mut options = KubeStoreOptions::new(NAMESPACE);
        options.retry_backoff = Duration::from_millis(5);
        options.claim = Some(claim.clone());
        let store = KubeStore::new(client, snapshot, Arc::clone(&metrics), limits, options);
        let watch = store.start();
        let config = ApiConfig {
            create_delay: Duration::from_millis(200),
            delete_delay: Duration::from_millis(200),
            ..ApiConfig::default()
        };
        let api = Api::new(
            &config,
            Arc::clone(&store) as Arc<dyn ProfileStore>,
            metrics,
        )
        .unwrap();
        Replica {
            name,
            claim,
            store,
            api,
            shutdown,
            tasks: vec![campaign, watch],
        }
    }

    async fn loaded(self) -> Replica {
        within("the store loaded", CAP, self.store.wait_loaded()).await;
        self.api.resume_lifecycle(self.claim.clone());
        self
    }

    /// A crash: every task stops at once, nothing is given up.
    fn crash(self) {
        for task in self.tasks {
            task.abort();
        }
    }

    async fn create(&self, name: &str) -> u16 {
        let body = json!({"fargateProfileName": name, "podExecutionRoleArn": ROLE,
                          "selectors": [{"namespace": format!("ns-{name}")}]});
        let request = Request::builder()
            .method(Method::POST)
            .uri("/clusters/fargate/fargate-profiles")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        self.api.handle(request).await.status().as_u16()
    }
}

/// Wait until exactly one of `replicas` holds the claim, checking meanwhile that never two do.
async fn one_holder<'r>(replicas: &[&'r Replica]) -> &'r Replica {
    let deadline = Instant::now() + CAP;
    loop {
        let holders: Vec<&Replica> = replicas
            .iter()
            .copied()
            .filter(|r| r.claim.is_held())
            .collect();
        assert!(holders.len() <= 1, "two holders at once");
        if let [holder] = holders[..] {
            return holder;
        }
        assert!(Instant::now() < deadline, "no replica took the claim");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Status writes to `name` (the housekeeping's `status ACTIVE`, the lifecycle's steps), by client.
fn status_writers(fake: &Fake, name: &str) -> Vec<String> {
    let path = format!("{PROFILES}/{name}/status");
    fake.log()
        .into_iter()
        .filter(|l| l.path == path && l.method != Method::GET)
        .map(|l| l.client)
        .collect()
}

async fn status_becomes(fake: &Fake, name: &str, status: &str) {
    until(&format!("{name} {status}"), CAP, || {
        fake.profile(name)
            .is_some_and(|p| p["status"]["status"] == status)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_holder_housekeeps_and_a_standby_takes_over_within_the_lease_duration() {
    let fake = Fake::new();
    let a = Replica::start(&fake, "a").loaded().await;
    let b = Replica::start(&fake, "b").loaded().await;
    let holder = one_holder(&[&a, &b]).await.name;

    fake.apply(kubectl_object("web", None));
    status_becomes(&fake, "web", "ACTIVE").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_writers(&fake, "web"), vec![holder.to_owned()]);

    // The holder dies without giving the Lease up: the other replica takes it once the Lease has
    // gone one duration without a change it saw, and not before.
    let (dead, standby) = if holder == "a" { (a, b) } else { (b, a) };
    let died = Instant::now();
    dead.crash();
    until("the standby holding", DURATION * 3, || {
        standby.claim.is_held()
    })
    .await;
    let took = died.elapsed();
    assert!(
        took >= DURATION / 2,
        "taken over after {took:?}: before the Lease could expire"
    );
    assert!(took <= DURATION * 2, "taken over after {took:?}");

    fake.apply(kubectl_object("api", None));
    status_becomes(&fake, "api", "ACTIVE").await;
    assert_eq!(status_writers(&fake, "api"), vec![standby.name.to_owned()]);
    standby.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_profile_created_through_any_replica_is_activated_by_the_holder() {
    let fake = Fake::new();
    let a = Replica::start(&fake, "a").loaded().await;
    let b = Replica::start(&fake, "b").loaded().await;
    let holder = one_holder(&[&a, &b]).await;
    let other = if holder.name == "a" { &b } else { &a };

    assert_eq!(other.create("through-standby").await, 200);
    status_becomes(&fake, "through-standby", "ACTIVE").await;
    assert_eq!(holder.create("through-holder").await, 200);
    status_becomes(&fake, "through-holder", "ACTIVE").await;
    for name in ["through-standby", "through-holder"] {
        // CREATING is written by the replica that took the request, ACTIVE by the holder.
        let writers = status_writers(&fake, name);
        let activated = writers.last().unwrap();
        assert_eq!(activated, holder.name, "{name}: {writers:?}");
    }
    a.shutdown.cancel();
    b.shutdown.cancel();
}

/// `a` holds the claim and `b` stands by; once `fault` keeps `a` from renewing, `a` lets the claim
/// go within the Lease duration (one renewal period before `b` may take it over), `b` takes it, and
/// only `b` writes in the background while `a` still answers requests.
async fn a_holder_that_cannot_renew(fault: impl FnOnce(&mut FakeState)) -> (Replica, Replica) {
    let fake = Fake::new();
    let a = Replica::start(&fake, "a").loaded().await;
    let holder = one_holder(&[&a]).await.name;
    assert_eq!(holder, "a");
    let b = Replica::start(&fake, "b").loaded().await;

    let cut = Instant::now();
    fake.with(fault);
    until("a losing the claim", DURATION * 2, || !a.claim.is_held()).await;
    let lost = cut.elapsed();
    assert!(
        lost < DURATION,
        "still held {lost:?} after the last renewal"
    );
    one_holder(&[&a, &b]).await;
    assert!(b.claim.is_held());

    fake.clear_log();
    fake.apply(kubectl_object("after", None));
    status_becomes(&fake, "after", "ACTIVE").await;
    assert_eq!(status_writers(&fake, "after"), vec!["b".to_owned()]);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_cut_off_from_the_lease_stops_writing_before_another_may_take_it() {
    // Renewals fail at once.
    let (a, b) = a_holder_that_cannot_renew(|s| s.cut_off_leases_of = Some("a".into())).await;
    a.shutdown.cancel();
    b.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_whose_renewal_hangs_stops_writing_before_another_may_take_it() {
    // A renewal that is never answered (a dead connection, no read timeout): it starts with a read
    // of the Lease, which never comes back.
    let (a, b) = a_holder_that_cannot_renew(|s| {
        s.hang = Some(("a".into(), Method::GET, "/leases".into()));
    })
    .await;
    // A replica whose Lease requests hang still stops campaigning at once.
    a.shutdown.cancel();
    let mut tasks = a.tasks.into_iter();
    let campaign = tasks.next().unwrap();
    within("a's campaign stopping", CAP, campaign)
        .await
        .unwrap();
    tasks.for_each(|task| task.abort());
    b.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_that_stops_gives_the_lease_up_at_once() {
    let fake = Fake::new();
    let a = Replica::start(&fake, "a").loaded().await;
    one_holder(&[&a]).await;
    let b = Replica::start(&fake, "b").loaded().await;
    let stopped = Instant::now();
    a.shutdown.cancel();
    until("b holding", DURATION, || b.claim.is_held()).await;
    let took = stopped.elapsed();
    // The next try of `b` (every DURATION / 4 here) finds the Lease free: no wait for expiry.
    assert!(took < DURATION / 2, "taken over after {took:?}");
    let lease = fake.with(|s| s.leases[LEASE].clone());
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    b.shutdown.cancel();
}

/// A holder that stops while a lifecycle step is writing drops that step before it gives the Lease
/// up: what was already sent still lands (a slow network), but nothing is sent after the release,
/// when the next holder may already write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_that_stops_mid_write_sends_nothing_after_giving_the_lease_up() {
    let fake = Fake::new();
    let mut a = Replica::start(&fake, "a").loaded().await;
    one_holder(&[&a]).await;
    // Each status write of `web` takes 1 s to land from now: the lifecycle step's, 200 ms after
    // the create, is on its way when the holder stops.
    assert_eq!(a.create("web").await, 200);
    let slow = Duration::from_secs(1);
    fake.with(|s| {
        s.slow = Some((
            "a".into(),
            Method::PUT,
            format!("{PROFILES}/web/status"),
            slow,
        ))
    });
    until("the lifecycle step journalled", CAP, || {
        fake.lock_data()[PENDING_KEY].is_string()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.shutdown.cancel();
    let campaign = a.tasks.remove(0);
    within("the campaign ends", CAP, campaign).await.unwrap();
    let log = fake.log();
    let released = log
        .iter()
        .rposition(|l| {
            l.client == "a"
                && l.path.ends_with(&format!("/leases/{LEASE}"))
                && l.method == Method::PUT
        })
        .expect("the Lease was given up");
    assert!(
        log[released].body["spec"]["holderIdentity"].is_null(),
        "{}",
        log[released].body
    );
    tokio::time::sleep(slow + Duration::from_millis(500)).await;
    let after: Vec<String> = fake.log()[released + 1..]
        .iter()
        .filter(|l| l.client == "a" && l.method != Method::GET)
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    let sent_before = format!("PUT {PROFILES}/web/status");
    assert!(
        after.iter().all(|w| *w == sent_before),
        "written after the Lease was given up: {after:?}"
    );
    a.crash();
}

/// A lifecycle step dropped when the claim is lost (here its status write hangs) is taken again
/// when the same replica holds the claim again: otherwise the profile would stay CREATING, and
/// every later create and delete of the cluster be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_dropped_when_the_claim_is_lost_is_taken_again_when_it_comes_back() {
    let fake = Fake::new();
    let a = Replica::start(&fake, "a").loaded().await;
    one_holder(&[&a]).await;
    assert_eq!(a.create("web").await, 200);
    let status = format!("{PROFILES}/web/status");
    fake.with(|s| s.hang = Some(("a".into(), Method::PUT, status)));
    until("the step is writing", CAP, || {
        fake.lock_data()[PENDING_KEY].is_string()
    })
    .await;
    fake.with(|s| s.cut_off_leases_of = Some("a".into()));
    until("the claim lost", CAP, || !a.claim.is_held()).await;
    fake.with(|s| {
        s.cut_off_leases_of = None;
        s.hang = None;
    });
    until("the claim held again", CAP, || a.claim.is_held()).await;
    status_becomes(&fake, "web", "ACTIVE").await;
    a.shutdown.cancel();
}

/// A profile the API left DELETING that breaks a limit lowered since (a helm upgrade) is not
/// served, but its lifecycle step is still taken: otherwise it would hold "one profile CREATING or
/// DELETING at a time" for good, and every later create and delete of the cluster be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_profile_in_transition_that_breaks_a_lowered_limit_still_takes_its_step() {
    let fake = Fake::new();
    let mut wide = ProfileBuilder::new("wide")
        .role(ROLE)
        .subnets(&[SUBNET_A])
        .namespace("ns-wide")
        .labels(&[("a", "1"), ("b", "2")])
        .resource();
    // As the API writes it: made CREATING (the annotation, the finalizer), DELETING now.
    let made = json!({
        "status": "CREATING",
        "createdAt": "2026-01-02T03:04:05.123Z",
        "clusterName": "fargate",
        "fargateProfileArn": "arn:aws:eks:us-east-1:123456789012:fargateprofile/fargate/wide/0000",
    });
    wide["metadata"]["annotations"] = json!({INITIAL_STATUS_ANNOTATION: made.to_string()});
    wide["metadata"]["finalizers"] = json!([FINALIZER]);
    fake.apply(wide);
    fake.modify("wide", |o| {
        o["status"] = made;
        o["status"]["status"] = json!("DELETING");
    });
    let limits = Limits {
        max_labels: 1,
        ..Limits::default()
    };
    let a = Replica::start_with(&fake, "a", limits).loaded().await;
    one_holder(&[&a]).await;
    assert!(a.store.current().fargate_profiles.is_empty(), "not served");

    until("the DELETING profile is removed", CAP, || {
        fake.profile("wide").is_none()
    })
    .await;
    a.shutdown.cancel();
}
