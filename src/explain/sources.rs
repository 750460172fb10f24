//! Where `explain` reads profiles and pods: a profiles file, a running server's EKS API
//! (`--endpoint-url`, unsigned requests), or the cluster (`FargateProfile` resources and pods, through
//! the kubeconfig as kubectl finds it).

use crate::decision::Pod;
use crate::profile::{FargateProfile, Limits, parse_profiles_file};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;

pub fn from_file(path: &Path) -> anyhow::Result<Vec<FargateProfile>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = parse_profiles_file(&bytes, &Limits::default())
        .with_context(|| format!("{} is not a profiles file", path.display()))?;
    Ok(file.fargate_profiles)
}

/// ListFargateProfiles (every page) then DescribeFargateProfile for each name.
pub async fn from_api(endpoint: &str, cluster: &str) -> anyhow::Result<Vec<FargateProfile>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("reading the system's trusted roots")?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let base = endpoint.trim_end_matches('/');
    let get = |uri: String| {
        let client = client.clone();
        async move {
            let req = http::Request::get(&uri)
                .header("accept", "application/json")
                .body(Empty::new())
                .with_context(|| format!("{uri} is not a URL"))?;
            let response = client
                .request(req)
                .await
                .with_context(|| format!("GET {uri}"))?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                bail!("GET {uri}: {status}: {}", String::from_utf8_lossy(&body));
            }
            serde_json::from_slice::<serde_json::Value>(&body)
                .with_context(|| format!("GET {uri}: the answer is not JSON"))
        }
    };
    let cluster_path =
        percent_encoding::utf8_percent_encode(cluster, percent_encoding::NON_ALPHANUMERIC);
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut uri = format!("{base}/clusters/{cluster_path}/fargate-profiles?maxResults=100");
        if let Some(t) = &token {
            uri.push_str("&nextToken=");
            uri.extend(percent_encoding::utf8_percent_encode(
                t,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        }
        let page = get(uri).await?;
        for name in page["fargateProfileNames"].as_array().into_iter().flatten() {
            names.extend(name.as_str().map(str::to_string));
        }
        token = page["nextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut profiles = Vec::new();
    for name in names {
        let encoded =
            percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
        let described = get(format!(
            "{base}/clusters/{cluster_path}/fargate-profiles/{encoded}"
        ))
        .await?;
        let profile: FargateProfile =
            serde_json::from_value(described["fargateProfile"].clone())
                .with_context(|| format!("DescribeFargateProfile {name}: not a Fargate profile"))?;
        profiles.push(profile);
    }
    Ok(profiles)
}

/// The cluster's `FargateProfile` resources, as the webhook replicas read them.
pub async fn from_cluster(client: &kube::Client) -> anyhow::Result<Vec<FargateProfile>> {
    let api: kube::Api<crate::store::crd::FargateProfile> = kube::Api::all(client.clone());
    let list = api
        .list(&Default::default())
        .await
        .context("listing FargateProfile resources (is the CRD installed?)")?;
    Ok(list
        .items
        .iter()
        .filter_map(crate::store::kubernetes::profile_from_resource)
        .collect())
}

/// Every pod of the cluster (or of `namespace`), with its namespace.
pub async fn cluster_pods(
    client: &kube::Client,
    namespace: Option<&str>,
) -> anyhow::Result<Vec<(String, Pod)>> {
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = match namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    };
    let list = api
        .list(&Default::default())
        .await
        .context("listing pods")?;
    let mut out = Vec::new();
    for pod in list.items {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let lean = Pod::from_api(&pod).context("a pod of the cluster does not decode")?;
        out.push((namespace, lean));
    }
    Ok(out)
}
