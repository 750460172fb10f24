//! What monitoring sees: a live scrape passes `promtool check metrics`, and the chart's Grafana
//! dashboard queries only metric names the binary exports.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use support::process::promtool;
use support::*;

/// A scrape after some traffic, so every family has samples.
async fn scrape() -> (TestServer, String) {
    let server = TestServer::start().await;
    server.admit(&review()).await;
    let mut client = server.h2().await;
    let _ = client.post("/nowhere", "{}").await;
    let text = server.metrics_text().await;
    (server, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_scrape_passes_promtool() {
    let (_server, text) = scrape().await;
    let Some(promtool) = promtool() else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_exported_metrics() {
    let (_server, mut text) = scrape().await;
    // The scheduler's families, as `fargate-webhook scheduler` exports them (its own registry).
    let scheduler = fargate_webhook::metrics::Metrics::for_process(
        fargate_webhook::metrics::Process::Scheduler,
    );
    scheduler.init_scheduler(&fargate_webhook::scheduler::verdict::Refusal::REASONS);
    text.push_str(&String::from_utf8(scheduler.render()).unwrap());
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("charts/fargate-webhook/dashboards/fargate-webhook.json"),
    )
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("fargate_webhook_") || word.starts_with("process_") {
                    queried.insert(word.to_string());
                }
            }
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    let missing: Vec<&String> = queried.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}
