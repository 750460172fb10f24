//! Crash test: a stream of creates against a real `fargate-webhook serve` process, `kill -9` at a
//! random moment, restart: every profile acknowledged with 200 is still there, and
//! `profiles.json` parses. Three rounds on the same state directory.
//!
//! `FARGATE_CRASH_BIN` may name another binary taking the same `serve` flags.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const ROLE: &str = "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole";
const WRITERS: usize = 4;

fn binary() -> PathBuf {
    std::env::var_os("FARGATE_CRASH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fargate-webhook")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let state = base.join("state");
    let child = Command::new(bin)
        .arg("serve")
        .arg("--state-dir")
        .arg(&state)
        .arg("--tls-cert")
        .arg(base.join("tls.crt"))
        .arg("--tls-key")
        .arg(base.join("tls.key"))
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

async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Value), String> {
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, json))
}

async fn wait_up(client: &Client<HttpConnector, Full<Bytes>>, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!("the server exited at start: {status}");
        }
        let url = format!(
            "{}/clusters/fargate/fargate-profiles?maxResults=1",
            proc.url
        );
        if let Ok((StatusCode::OK, _)) = call(client, Method::GET, &url, None).await {
            return;
        }
        assert!(Instant::now() < deadline, "the server did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn all_names(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> BTreeSet<String> {
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
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
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
                    let body = json!({
                        "fargateProfileName": name,
                        "podExecutionRoleArn": ROLE,
                        "selectors": [{"namespace": name}],
                        "clientRequestToken": format!("token-{name}"),
                    });
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while this_round(&acknowledged.lock().unwrap()) == 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: no create was acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
    let body = json!({"fargateProfileName": "after", "podExecutionRoleArn": ROLE, "selectors": [{"namespace": "a"}]});
    let (status, answer) = call(&client, Method::POST, &url, Some(&body))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}
