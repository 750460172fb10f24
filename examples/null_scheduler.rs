//! A null scheduler for `benches/scheduler.sh --baseline`: it watches the unbound pods of
//! `fargate-scheduler` in one namespace and binds each, as soon as the watch shows it, to one node
//! that already exists, each binding on its own task. No sizing, no annotation, no node, no event:
//! one write per pod, the least any scheduler does. Its bind latency is what the control plane alone
//! costs at that load (the create, two watch hops and one write), the floor the fargate-scheduler
//! is compared against in the same run.
//!
//! cargo run --release --example null_scheduler -- NAMESPACE NODE

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashSet;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let (Some(namespace), Some(node)) = (args.next(), args.next()) else {
        return Err("usage: null_scheduler NAMESPACE NODE".into());
    };
    let client = kube::Client::try_default().await?;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
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
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                uid: pod.metadata.uid.clone(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.clone()),
                ..ObjectReference::default()
            },
        };
        let pods = pods.clone();
        tokio::spawn(async move {
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
            }
        });
    }
    Ok(())
}
