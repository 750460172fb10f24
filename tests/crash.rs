//! Crash test: a stream of creates against a real `fargate-webhook serve` process, `kill -9` at a
//! random moment, restart: every profile acknowledged with 200 is still there, and
//! `profiles.json` parses. Three rounds on the same state directory.
//!
//! `FARGATE_CRASH_BIN` may name another binary taking the same `serve` flags.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use http::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::process::{free_port, serve_command};
use support::{PlainClient, ProfileBuilder, Reply, json_request, plain_client, poll_every, until};

const WRITERS: usize = 4;

fn binary() -> PathBuf {
    std::env::var_os("FARGATE_CRASH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(support::process::binary)
}

/// A pseudo-random number from the clock (no rand crate needed for one number).
fn random_below(n: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos
        .wrapping_mul(6_364_136_223_846_793_005)
        .rotate_left(17)
        % n
}

struct Proc {
    child: Child,
    url: String,
}

fn start(bin: &Path, base: &Path) -> Proc {
    let port = free_port();
    let child = serve_command(
        bin,
        &base.join("state"),
        &base.join("tls.crt"),
        &base.join("tls.key"),
    )
    .args(["--webhook-addr", "127.0.0.1:0"])
    .arg("--metrics-addr")
    .arg(format!("127.0.0.1:{}", free_port()))
    .arg("--api-addr")
    .arg(format!("127.0.0.1:{port}"))
    .args(["--create-delay", "0s", "--delete-delay", "0s"])
    .args(["--max-profiles", "10000"])
    .current_dir(base)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("the binary starts");
    Proc {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// One request with a 20 s cap; transport errors (the server died) come back as `Err`, a body
/// that is not JSON as `Null`.
async fn call(
    client: &PlainClient,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Value), String> {
    let req = json_request(method, url, body);
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let reply = Reply::read(response).await.map_err(|e| e.to_string())?;
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    Ok((reply.status, json))
}

async fn wait_up(client: &PlainClient, proc: &mut Proc) {
    let url = format!(
        "{}/clusters/fargate/fargate-profiles?maxResults=1",
        proc.url
    );
    let url = url.as_str();
    let child = &mut proc.child;
    poll_every(
        "the server did not answer",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the server exited at start: {status}");
            }
            async move {
                match call(client, Method::GET, url, None).await {
                    Ok((StatusCode::OK, _)) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
}

async fn all_names(client: &PlainClient, url: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut page_url = format!("{url}/clusters/fargate/fargate-profiles?maxResults=100");
        if let Some(t) = &token {
            page_url.push_str("&nextToken=");
            page_url.push_str(t);
        }
        let (status, page) = call(client, Method::GET, &page_url, None).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{page}");
        for n in page["fargateProfileNames"].as_array().unwrap() {
            names.insert(n.as_str().unwrap().to_owned());
        }
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_owned()),
            None => return names,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_dash_nine_loses_no_acknowledged_profile() {
    let bin = binary();
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(base.path().join("state")).unwrap();
    std::fs::write(
        base.path().join("state/profiles.json"),
        r#"{"fargateProfiles": []}"#,
    )
    .unwrap();
    let client = plain_client();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::<String>::new()));

    for round in 0..3 {
        let mut proc = start(&bin, base.path());
        wait_up(&client, &mut proc).await;
        // Everything acknowledged so far survived the previous kill.
        let names = all_names(&client, &proc.url).await;
        let acked = acknowledged.lock().unwrap().clone();
        let missing: Vec<_> = acked.difference(&names).collect();
        assert!(missing.is_empty(), "round {round}: lost {missing:?}");

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let client = client.clone();
            let url = format!("{}/clusters/fargate/fargate-profiles", proc.url);
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 5_000 {
                    let name = format!("r{round}-w{writer}-{i}");
                    let body = ProfileBuilder::new(&name)
                        .namespace(&name)
                        .client_request_token(&format!("token-{name}"))
                        .json();
                    match call(&client, Method::POST, &url, Some(&body)).await {
                        Ok((StatusCode::OK, _)) => {
                            acknowledged.lock().unwrap().insert(name);
                        }
                        Ok((status, answer)) => panic!("create {name}: {status} {answer}"),
                        Err(_) => break, // the server died under us: not acknowledged
                    }
                    i += 1;
                }
            }));
        }
        // Once this round has an acknowledged create, kill at a random moment.
        let prefix = format!("r{round}-");
        let this_round =
            |acked: &BTreeSet<String>| acked.iter().filter(|n| n.starts_with(&prefix)).count();
        until(
            &format!("round {round}: no create was acknowledged"),
            Duration::from_secs(30),
            || this_round(&acknowledged.lock().unwrap()) > 0,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(random_below(700))).await;
        proc.child.kill().unwrap(); // SIGKILL
        proc.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }

        // The file parses and holds every acknowledged profile, before any restart.
        let bytes = std::fs::read(base.path().join("state/profiles.json")).unwrap();
        let limits = fargate_webhook::profile::Limits {
            max_profiles: 10_000,
            ..Default::default()
        };
        let file = fargate_webhook::profile::parse_profiles_file(&bytes, &limits)
            .expect("profiles.json parses after kill -9");
        let stored: BTreeSet<String> = file
            .fargate_profiles
            .iter()
            .map(|p| p.fargate_profile_name.clone())
            .collect();
        let acked = acknowledged.lock().unwrap().clone();
        let missing: Vec<_> = acked.difference(&stored).collect();
        assert!(missing.is_empty(), "round {round}: file lost {missing:?}");
        assert!(this_round(&acked) > 0, "round {round} acknowledged nothing");
        eprintln!(
            "round {round}: {} acknowledged, {} stored",
            acked.len(),
            stored.len()
        );
    }

    // A last restart: the API serves them all, and takes new creates.
    let mut proc = start(&bin, base.path());
    wait_up(&client, &mut proc).await;
    let names = all_names(&client, &proc.url).await;
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.is_subset(&names));
    let url = format!("{}/clusters/fargate/fargate-profiles", proc.url);
    let body = ProfileBuilder::new("after").namespace("a").json();
    let (status, answer) = call(&client, Method::POST, &url, Some(&body))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}
