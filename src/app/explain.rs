//! `explain`: the answers for pod templates in manifests, or with `--what-if` for every pod of the
//! cluster, read from a profiles file, a server's EKS API or the cluster. No server runs.

use crate::cli::{ExplainArgs, OutputFormat};
use crate::decision::{Options, Snapshot};
use crate::explain::manifests::Template;
use crate::explain::sources;
use anyhow::Context;
use std::path::PathBuf;

/// `explain`: the answers for every pod template (or, with `--what-if`, for every pod of the
/// cluster) as text or JSON, and whether every pod would run on Fargate.
pub async fn explain(args: &ExplainArgs) -> anyhow::Result<(String, bool)> {
    let options = Options {
        priority_override: args.priority_override,
    };
    let sources_given = usize::from(args.profiles.is_some())
        + usize::from(args.endpoint_url.is_some())
        + usize::from(args.from_cluster);
    if sources_given > 1 {
        anyhow::bail!("give one source of profiles: --profiles, --endpoint-url or --from-cluster");
    }
    if let Some(what_if) = &args.what_if {
        return what_if_moves(args, what_if, &options).await;
    }
    if args.files.is_empty() {
        anyhow::bail!("name the manifests to explain with -f FILE|DIR|- (or use --what-if)");
    }
    // A manifest without a namespace lands in the context's namespace, as with `kubectl apply`.
    let mut default_namespace = String::from("default");
    let profiles = if let Some(endpoint) = &args.endpoint_url {
        sources::from_api(endpoint, &args.cluster_name).await?
    } else if args.from_cluster {
        let (client, namespace) = explain_client(args)
            .await
            .context("--from-cluster: connecting to the cluster (kubeconfig)")?;
        default_namespace = namespace;
        sources::from_cluster(&client).await?
    } else {
        let path = args
            .profiles
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data/profiles.json"));
        sources::from_file(&path)?
    };
    let snapshot = Snapshot::new(profiles);
    let templates = read_manifests(&args.files)?;
    if templates.is_empty() {
        anyhow::bail!("no Pod or workload that makes pods in the manifests given");
    }
    let namespace = args.namespace.as_deref().unwrap_or(&default_namespace);
    let answers: Vec<_> = templates
        .iter()
        .map(|t| crate::explain::answer(t, namespace, &snapshot, &options))
        .collect();
    let all_on_fargate = answers.iter().all(|a| a.on_fargate);
    let out = match args.output {
        OutputFormat::Text => answers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        OutputFormat::Json => serde_json::to_string_pretty(&answers)? + "\n",
    };
    Ok((out, all_on_fargate))
}

/// `--what-if FILE`: where each pod of the cluster would run with the profiles of `FILE`, and
/// whether every pod on Fargate stays there.
async fn what_if_moves(
    args: &ExplainArgs,
    what_if: &std::path::Path,
    options: &Options,
) -> anyhow::Result<(String, bool)> {
    let (client, _) = explain_client(args)
        .await
        .context("--what-if compares with the cluster: connecting to it (kubeconfig)")?;
    let then = Snapshot::new(sources::from_file(what_if)?);
    let mut moves = Vec::new();
    for (namespace, pod) in sources::cluster_pods(&client, args.namespace.as_deref()).await? {
        moves.push(crate::explain::what_if(&pod, &namespace, &then, options));
    }
    let all_stay = moves
        .iter()
        .all(|m| m.verdict != crate::explain::MoveKind::LeavesFargate);
    let out = match args.output {
        OutputFormat::Text => moves.iter().map(ToString::to_string).collect(),
        OutputFormat::Json => serde_json::to_string_pretty(&moves)? + "\n",
    };
    Ok((out, all_stay))
}

/// The manifests named by `-f`: files, the `.yaml`/`.yml`/`.json` files of directories (sorted), `-`.
fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<Template>> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(("-".to_string(), std::io::read_to_string(std::io::stdin())?));
        } else if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            entries.sort();
            for entry in entries {
                let text = std::fs::read_to_string(&entry)
                    .with_context(|| format!("reading {}", entry.display()))?;
                files.push((entry.display().to_string(), text));
            }
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            files.push((path.display().to_string(), text));
        }
    }
    let mut templates = Vec::new();
    for (name, text) in files {
        templates.extend(crate::explain::manifests::templates(&name, &text)?);
    }
    Ok(templates)
}

/// The client `explain` reads the cluster with, and the namespace of its kubeconfig context: the
/// kubeconfig and context as kubectl picks them (`--kubeconfig` is the only file read when given,
/// else `KUBECONFIG` or `~/.kube/config`, else in-cluster; `--context` instead of the current one).
async fn explain_client(args: &ExplainArgs) -> anyhow::Result<(kube::Client, String)> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await?
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("--context {context}"))?,
        (None, None) => kube::Config::infer().await?,
    };
    let namespace = config.default_namespace.clone();
    Ok((kube::Client::try_from(config)?, namespace))
}
