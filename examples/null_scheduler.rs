//! A null scheduler for `benches/scheduler.sh --baseline`: it watches the unbound pods of
//! `fargate-scheduler` in one namespace and binds each, as soon as the watch shows it, to one node
//! that already exists, each binding on its own task. No sizing, no annotation, no node, no event:
//! one write per pod, the least any scheduler does. Its bind latency is what the control plane alone
//! costs at that load (the create, two watch hops and one write), the floor the fargate-scheduler
//! is compared against in the same run.
//!
//! With `--node-per-pod` it makes, for each pod, a node of its own (named after the pod) and then
//! binds the pod to it: EKS's shape (a node per pod, then the binding) with nothing else, no sizing,
//! no annotation, no event. The node is the fargate-scheduler's own node object, which kwok (the
//! kubelet of the benchmarks) takes as it takes the fargate-scheduler's; with `--bare-node` it is a
//! name and a capacity only. Its bind latency is the floor of virtual placement on this control plane.
//!
//! `--annotate` adds the pod status patch of EKS's annotations, sent while the node is made, as the
//! fargate-scheduler sends it; `--events N` adds N Events per pod, sent in order on a task of their
//! own once the pod is bound, as the fargate-scheduler sends its `Logging` and `Scheduled`: each of
//! the fargate-scheduler's writes can be added to the floor one at a time.
//!
//! cargo run --release --example null_scheduler -- NAMESPACE NODE [--node-per-pod [--bare-node]]
//!     [--annotate] [--events N]

use fargate_webhook::scheduler::placement;
use fargate_webhook::scheduler::sizing::Size;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, NodeStatus, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashSet;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let (Some(namespace), Some(node)) = (args.next(), args.next()) else {
        return Err(
            "usage: null_scheduler NAMESPACE NODE [--node-per-pod [--bare-node]] [--annotate] [--events N]"
                .into(),
        );
    };
    let (mut node_per_pod, mut bare_node, mut annotate, mut events) = (false, false, false, 0usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--node-per-pod" => node_per_pod = true,
            "--bare-node" => bare_node = true,
            "--annotate" => annotate = true,
            "--events" => events = args.next().ok_or("--events N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let client = kube::Client::try_default().await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "null-scheduler".into(),
            instance: None,
        },
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let nodes: Api<Node> = Api::all(client);
    let config =
        watcher::Config::default().fields("spec.schedulerName=fargate-scheduler,spec.nodeName=");
    let mut stream = std::pin::pin!(
        watcher(pods.clone(), config)
            .default_backoff()
            .applied_objects()
    );
    // Pods a binding was sent for: a later event of the same pod (before the watch drops it) is not
    // bound again.
    let mut sent = HashSet::new();
    let mut seq: u32 = 0;
    println!("ready");
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(pod) => pod,
            Err(error) => {
                eprintln!("watch: {error}");
                continue;
            }
        };
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        if !sent.insert(name.clone()) {
            continue;
        }
        let target = if node_per_pod {
            format!("null-{name}")
        } else {
            node.clone()
        };
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                uid: pod.metadata.uid.clone(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(target.clone()),
                ..ObjectReference::default()
            },
        };
        let (pods, nodes, namespace) = (pods.clone(), nodes.clone(), namespace.clone());
        let (recorder, reference) = (recorder.clone(), kube::Resource::object_ref(&pod, &()));
        seq += 1;
        tokio::spawn(async move {
            let annotation = async {
                if annotate {
                    let patch = serde_json::json!({"metadata": {"annotations": {
                        "CapacityProvisioned": "0.25vCPU 0.5GB", "Logging": "LoggingDisabled: null"}}});
                    if let Err(error) = pods
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        eprintln!("annotation of {name}: {error}");
                    }
                }
            };
            let node = async {
                if node_per_pod {
                    // The fargate-scheduler's own node object (labels, taint, addresses, node info),
                    // so that kwok, the kubelet here, treats both alike.
                    let ip = std::net::Ipv4Addr::from(0x0a64_0000 + seq);
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    let mut node = if bare_node {
                        let room: std::collections::BTreeMap<_, _> =
                            [("cpu", "2"), ("memory", "4Gi"), ("pods", "1")]
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), Quantity(v.into())))
                                .collect();
                        Node {
                            status: Some(NodeStatus {
                                capacity: Some(room.clone()),
                                allocatable: Some(room),
                                ..NodeStatus::default()
                            }),
                            ..Node::default()
                        }
                    } else {
                        placement::virtual_node(&placement::VirtualNode {
                            ip,
                            region: "us-east-1",
                            zone: "us-east-1a",
                            size: Size {
                                millicpu: 250,
                                memory_mib: 512,
                            },
                            storage_gib: 20,
                            pod_namespace: &namespace,
                            pod_name: &name,
                            pod_uid: &uid,
                        })
                    };
                    node.metadata.name = Some(target);
                    if let Err(error) = nodes.create(&PostParams::default(), &node).await {
                        eprintln!("node for {name}: {error}");
                        return false;
                    }
                }
                true
            };
            if !tokio::join!(annotation, node).1 {
                return;
            }
            let bound = pods
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            if let Err(error) = bound {
                eprintln!("binding {name}: {error}");
                return;
            }
            if events > 0 {
                tokio::spawn(async move {
                    for i in 0..events {
                        let event = Event {
                            type_: EventType::Normal,
                            reason: format!("Null{i}"),
                            note: Some("an event of the null scheduler".into()),
                            action: "Binding".into(),
                            secondary: None,
                        };
                        if let Err(error) = recorder.publish(&event, &reference).await {
                            eprintln!("event: {error}");
                        }
                    }
                });
            }
        });
    }
    Ok(())
}
