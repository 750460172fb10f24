//! A compiled pod load generator for `benches/scheduler.sh` (the Python client stops near 60-80
//! creations/s on two cores). Creates `--rate` pods per second for `--seconds` in `--namespace` through
//! the apiserver of `KUBECONFIG`, each create on its own task (at most `--in-flight` at once), and
//! watches the namespace's bound pods (`spec.nodeName!=`). Bind latency of a pod = the moment the watch
//! first sees it bound minus the moment its create call returned, both on this process's monotonic
//! clock. Beside it, the create call itself (one pod write through the apiserver and the webhook at
//! this load). With `--watch-all true` the watch takes every pod of the namespace and also gives the
//! watch delay (create returned -> first seen, clamped at zero: the hop the scheduler's own watch
//! makes); off by default, since that watch costs the apiserver about twice the events. Prints one
//! `key value` line per result.
//!
//! cargo run --release --example loadgen -- --namespace bench --rate 100 --seconds 5

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    namespace: String,
    rate: f64,
    seconds: f64,
    in_flight: usize,
    image: String,
    watch_all: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        namespace: "bench-sched".into(),
        rate: 100.0,
        seconds: 5.0,
        in_flight: 64,
        image: "registry.example/app:1".into(),
        watch_all: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--namespace" => args.namespace = value.clone(),
            "--rate" => args.rate = number()?,
            "--seconds" => args.seconds = number()?,
            "--in-flight" => args.in_flight = number()? as usize,
            "--image" => args.image = value.clone(),
            "--watch-all" => {
                args.watch_all = value.parse().map_err(|e| format!("{flag}: {e}"))?;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.rate <= 0.0 || args.seconds <= 0.0 || args.in_flight == 0 {
        return Err("--rate, --seconds and --in-flight must be positive".into());
    }
    Ok(args)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = args()?;
    let client = kube::Client::try_default().await?;
    let pods: Api<Pod> = Api::namespaced(client, &args.namespace);

    // When each pod was first seen, and first seen bound; the watch is listening before the first
    // create.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = {
        let (seen, bound) = (Arc::clone(&seen), Arc::clone(&bound));
        let config = if args.watch_all {
            watcher::Config::default()
        } else {
            watcher::Config::default().fields("spec.nodeName!=")
        };
        let stream = watcher(pods.clone(), config).default_backoff();
        tokio::spawn(async move {
            let mut listed = Some(listed_tx);
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let now = Instant::now();
                match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        let placed = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                        if let Some(name) = pod.metadata.name {
                            if placed {
                                bound.lock().unwrap().entry(name.clone()).or_insert(now);
                            }
                            seen.lock().unwrap().entry(name).or_insert(now);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(error) => eprintln!("watch: {error}"),
                }
            }
        })
    };
    listed_rx.await?;

    let total = (args.rate * args.seconds).round() as usize;
    let slots = Arc::new(tokio::sync::Semaphore::new(args.in_flight));
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let create_calls: Arc<Mutex<Vec<f64>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let start = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / args.rate)).into())
            .await;
        let slot = Arc::clone(&slots).acquire_owned().await?;
        let (pods, created, errors) = (pods.clone(), Arc::clone(&created), Arc::clone(&errors));
        let calls = Arc::clone(&create_calls);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p-{i}")},
            "spec": {"containers": [{"name": "app", "image": args.image}]},
        }))?;
        creates.spawn(async move {
            let sent = Instant::now();
            match pods.create(&PostParams::default(), &pod).await {
                Ok(made) => {
                    let name = made.metadata.name.unwrap_or_default();
                    let returned = Instant::now();
                    created.lock().unwrap().insert(name, returned);
                    let call = returned.duration_since(sent).as_secs_f64() * 1000.0;
                    calls.lock().unwrap().push(call);
                }
                Err(error) => errors.lock().unwrap().push(error.to_string()),
            }
            drop(slot);
        });
    }
    while creates.join_next().await.is_some() {}
    let creating = start.elapsed().as_secs_f64();
    let created = created.lock().unwrap().clone();

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let all = {
            let bound = bound.lock().unwrap();
            created.keys().all(|n| bound.contains_key(n))
        };
        if all || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    let bound = bound.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    let mut watch_delays: Vec<f64> = created
        .iter()
        .filter_map(|(n, c)| {
            seen.get(n)
                .map(|s| s.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    watch_delays.sort_by(f64::total_cmp);
    let mut calls = create_calls.lock().unwrap().clone();
    calls.sort_by(f64::total_cmp);
    let mut latencies: Vec<f64> = created
        .iter()
        .filter_map(|(n, c)| {
            bound
                .get(n)
                .map(|b| b.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let first = created.values().min().copied().unwrap_or(start);
    let last = created
        .keys()
        .filter_map(|n| bound.get(n))
        .max()
        .copied()
        .unwrap_or(first);
    let errors = errors.lock().unwrap();
    println!("created {}", created.len());
    println!("create_errors {}", errors.len());
    println!("unbound {}", created.len() - latencies.len());
    println!(
        "creations_per_second {:.1}",
        created.len() as f64 / creating
    );
    println!(
        "binds_per_second {:.1}",
        latencies.len() as f64 / last.duration_since(first).as_secs_f64().max(1e-9)
    );
    for p in [50.0, 90.0, 99.0] {
        println!("bind_latency_p{p:.0}_ms {:.1}", percentile(&latencies, p));
    }
    println!(
        "bind_latency_max_ms {:.1}",
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    for p in [50.0, 99.0] {
        println!("create_call_p{p:.0}_ms {:.1}", percentile(&calls, p));
        if args.watch_all {
            println!("watch_delay_p{p:.0}_ms {:.1}", percentile(&watch_delays, p));
        }
    }
    if let Some(first) = errors.first() {
        println!("first_error {first}");
    }
    Ok(())
}
