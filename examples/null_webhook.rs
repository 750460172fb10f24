//! A null admission webhook for `benches/cluster.sh`: every AdmissionReview is answered `allowed:
//! true` with no patch, over the project's own HTTPS server (TLS, HTTP/1.1 and HTTP/2). It is the
//! baseline "a webhook that does nothing": what calling a webhook at all costs the kube-apiserver,
//! apart from any decision or patch. It reads only `request.uid` (which the answer must echo).
//!
//! cargo run --release --example null_webhook -- ADDR TLS_CERT TLS_KEY

use bytes::Bytes;
use fargate_webhook::metrics::Metrics;
use fargate_webhook::server::http::{self, Handler, Port, PortLimits};
use fargate_webhook::server::tls::{self, CertReloader};
use http_body_util::Full;
use hyper::Response;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(serde::Deserialize)]
struct Review {
    request: Uid,
}

#[derive(serde::Deserialize)]
struct Uid {
    uid: String,
}

fn answer(body: &[u8]) -> Response<Full<Bytes>> {
    match serde_json::from_slice::<Review>(body) {
        Ok(review) => http::json(
            200,
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": review.request.uid, "allowed": true},
            }))
            .expect("serialisable"),
        ),
        Err(error) => http::json(
            400,
            format!("{{\"error\":{:?}}}", error.to_string()).into_bytes(),
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cert, key] = args.as_slice() else {
        anyhow::bail!("usage: null_webhook ADDR TLS_CERT TLS_KEY");
    };
    let metrics = Arc::new(Metrics::new());
    let certs = CertReloader::new(
        cert.as_ref(),
        key.as_ref(),
        Duration::from_secs(86_400),
        Arc::clone(&metrics),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let handler: Handler = Arc::new(|req| {
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            match http::read_body(&parts.headers, body, 8 << 20).await {
                Ok(bytes) => answer(&bytes),
                Err(_) => http::json(400, b"{}".to_vec()),
            }
        })
    });
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    println!("null webhook on https://{}/", listener.local_addr()?);
    let port = Port {
        name: "webhook",
        metrics,
    };
    http::serve(
        listener,
        Some(tls::server_config(certs)),
        handler,
        CancellationToken::new(),
        PortLimits::default(),
        port,
    )
    .await;
    Ok(())
}
