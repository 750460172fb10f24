//! Criterion benchmarks of the hot path, without any network:
//!
//! - `review/*`: decode → decide → encode of the ReplicaSet pod review fixture through
//!   [`admission::answer`], against a snapshot the pod matches and one it does not, and the same
//!   review for a non-Pod kind (envelope only, no pod decode);
//! - `pod_decode`: the lean pod decode alone (the biggest part of `review/*`);
//! - `find_match/*` and `decide/*`: matching a pre-decoded pod against 10, 1,000 and 10,000
//!   profiles with exact namespaces, and the same with 100 wildcard-namespace profiles mixed in;
//! - `snapshot_new/*`: compiling a snapshot of 10,000 profiles;
//! - `patch_build`: the patch builder alone.
//!
//! Target: `find_match` ≤ 1 µs at 10,000 profiles with exact namespaces.
//! Run: `cargo bench --bench decision` (add `-- --quick` for a fast pass).

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fargate_webhook::admission;
use fargate_webhook::decision::{self, Options, Pod, Snapshot, pod_labels};
use fargate_webhook::profile::{FargateProfile, Selector};
use std::hint::black_box;

const FIXTURE: &[u8] = include_bytes!("../tests/fixtures/replicaset-pod.review.json");
const ROLE: &str = "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole";
const SIZES: [usize; 3] = [10, 1_000, 10_000];
const WILDCARDS: usize = 100;

fn profile(name: String, namespace: String, labels: &[(&str, &str)]) -> FargateProfile {
    FargateProfile {
        fargate_profile_name: name,
        pod_execution_role_arn: ROLE.into(),
        subnets: vec!["subnet-0420a37ee456daf3f".into()],
        selectors: vec![Selector {
            namespace: Some(namespace),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }],
        ..Default::default()
    }
}

/// `n` profiles `fp-00000`.. with exact namespaces `ns-0`..`ns-(n-1)`, each selecting
/// `infrastructure=fargate` and `app.kubernetes.io/part-of=shop` (both on the fixture pod).
fn exact_profiles(n: usize) -> Vec<FargateProfile> {
    (0..n)
        .map(|i| {
            profile(
                format!("fp-{i:05}"),
                format!("ns-{i}"),
                &[
                    ("infrastructure", "fargate"),
                    ("app.kubernetes.io/part-of", "shop"),
                ],
            )
        })
        .collect()
}

/// Wildcard-namespace profiles that sort before every exact one (`a-wild-*` < `fp-*`), so the
/// matcher cannot stop early at the exact match's position: every one of them is tried. Half are
/// namespace globs that miss the pod's namespace, half match the namespace but want a label value
/// the pod does not have, so both the namespace glob and the label comparison are exercised.
fn wildcard_profiles(n: usize) -> Vec<FargateProfile> {
    (0..n)
        .map(|i| {
            let name = format!("a-wild-{i:03}");
            if i % 2 == 0 {
                profile(
                    name,
                    format!("team-{i}-*"),
                    &[("infrastructure", "fargate")],
                )
            } else {
                profile(name, "ns-*".into(), &[("infrastructure", "fargate-spot-?")])
            }
        })
        .collect()
}

/// The fixture's pod, decoded once.
fn fixture_pod() -> Pod {
    let review: serde_json::Value = serde_json::from_slice(FIXTURE).expect("fixture is JSON");
    serde_json::from_value(review["request"]["object"].clone()).expect("fixture object is a pod")
}

fn fixture_object_json() -> String {
    let review: serde_json::Value = serde_json::from_slice(FIXTURE).expect("fixture is JSON");
    review["request"]["object"].to_string()
}

/// The fixture with `request.kind` changed from Pod to ConfigMap, byte for byte otherwise.
fn not_pod_review() -> Vec<u8> {
    let text = std::str::from_utf8(FIXTURE).expect("fixture is UTF-8");
    let pod_kind = r#""kind":{"group":"","version":"v1","kind":"Pod"}"#;
    assert!(
        text.contains(pod_kind),
        "fixture request.kind layout changed"
    );
    text.replacen(
        pod_kind,
        r#""kind":{"group":"","version":"v1","kind":"ConfigMap"}"#,
        1,
    )
    .into_bytes()
}

fn bench_review(c: &mut Criterion) {
    let options = Options {
        priority_override: true,
    };
    let matching = Snapshot::new(vec![profile(
        "fp-default".into(),
        "default".into(),
        &[("infrastructure", "fargate")],
    )]);
    let not_matching = Snapshot::new(vec![profile(
        "fp-other".into(),
        "other".into(),
        &[("infrastructure", "fargate")],
    )]);
    // Sanity: the two snapshots really give the two outcomes.
    let mutated = admission::answer(FIXTURE, &matching, &options).expect("fixture decodes");
    assert!(matches!(
        mutated.decision,
        Ok(decision::Decision {
            outcome: decision::Outcome::Mutated { .. },
            ..
        })
    ));
    let untouched = admission::answer(FIXTURE, &not_matching, &options).expect("fixture decodes");
    assert!(matches!(
        untouched.decision,
        Ok(decision::Decision {
            outcome: decision::Outcome::NotMatched(_),
            ..
        })
    ));

    let mut group = c.benchmark_group("review");
    group.throughput(Throughput::Bytes(FIXTURE.len() as u64));
    group.bench_function("answer_match", |b| {
        b.iter(|| admission::answer(black_box(FIXTURE), &matching, &options))
    });
    group.bench_function("answer_no_match", |b| {
        b.iter(|| admission::answer(black_box(FIXTURE), &not_matching, &options))
    });
    // The same review for a non-Pod kind: the envelope is decoded (and the object scanned as a
    // raw value) but the pod is not, which splits `answer_match` into envelope and pod decode.
    let not_pod = not_pod_review();
    let skipped = admission::answer(&not_pod, &matching, &options).expect("review decodes");
    assert!(matches!(
        skipped.decision,
        Ok(decision::Decision {
            outcome: decision::Outcome::Skipped(decision::SkipReason::NotPod),
            ..
        })
    ));
    group.bench_function("answer_not_pod", |b| {
        b.iter(|| admission::answer(black_box(&not_pod), &matching, &options))
    });
    group.finish();

    let object = fixture_object_json();
    c.bench_function("pod_decode", |b| {
        b.iter(|| serde_json::from_str::<Pod>(black_box(&object)).expect("pod"))
    });
}

fn bench_matching(c: &mut Criterion) {
    let pod = fixture_pod();
    let labels = pod_labels(&pod);
    let options = Options {
        priority_override: true,
    };
    for wildcards in [0, WILDCARDS] {
        let suffix = if wildcards == 0 {
            "exact".to_string()
        } else {
            format!("exact+{wildcards}wildcard")
        };
        let mut find = c.benchmark_group(format!("find_match/{suffix}"));
        let mut snapshots = Vec::new();
        for n in SIZES {
            let mut profiles = exact_profiles(n);
            profiles.extend(wildcard_profiles(wildcards));
            let snapshot = Snapshot::new(profiles);
            // The pod sits in the middle namespace; its profile is the one to find.
            let namespace = format!("ns-{}", n / 2);
            let want = format!("fp-{:05}", n / 2);
            assert_eq!(
                snapshot.find_match(&namespace, labels).map(|p| p.name()),
                Some(want.as_str())
            );
            find.bench_with_input(BenchmarkId::from_parameter(n), &namespace, |b, ns| {
                b.iter(|| snapshot.find_match(black_box(ns), black_box(labels)))
            });
            snapshots.push((n, snapshot, namespace));
        }
        find.finish();

        let mut decide = c.benchmark_group(format!("decide/{suffix}"));
        for (n, snapshot, namespace) in &snapshots {
            let req = decision::Request {
                group: "",
                kind: "Pod",
                operation: "CREATE",
                namespace,
                pod: &pod,
            };
            decide.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
                b.iter(|| decision::decide(black_box(req), snapshot, &options))
            });
        }
        decide.finish();
    }
}

fn bench_snapshot_new(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_new");
    group.sample_size(20);
    for (label, wildcards) in [("exact", 0), ("exact+100wildcard", WILDCARDS)] {
        let mut profiles = exact_profiles(10_000);
        profiles.extend(wildcard_profiles(wildcards));
        group.bench_with_input(BenchmarkId::new(label, 10_000), &profiles, |b, profiles| {
            // Cloning the input is part of the setup, not of the measured compile.
            b.iter_batched(|| profiles.clone(), Snapshot::new, BatchSize::LargeInput)
        });
    }
    group.finish();
}

fn bench_patch(c: &mut Criterion) {
    let pod = fixture_pod();
    let (ops, _) = decision::patch::build(&pod, "fp-default", true);
    assert!(!ops.is_empty());
    c.bench_function("patch_build", |b| {
        b.iter(|| decision::patch::build(black_box(&pod), black_box("fp-default"), true))
    });
}

criterion_group!(
    benches,
    bench_review,
    bench_matching,
    bench_snapshot_new,
    bench_patch
);
criterion_main!(benches);
