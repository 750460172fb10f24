//! Wiring: one module per subcommand builds its parts from the command line and runs them.
//!
//! - [`serve`](mod@serve): the store, the certificate reloader, the webhook, API and ops servers,
//!   and the order they stop in ([`start`] is what tests drive: it returns the bound addresses);
//! - [`scheduler`](mod@scheduler): the fargate-scheduler and its ops server;
//! - [`explain`](mod@explain): answers for manifests or for the cluster's pods, no server;
//! - `certs`, `probe` and `completions` are a few lines each, here in [`run`].
//!
//! What `serve` and `scheduler` share: opening the profile store (`store`), SIGTERM and SIGINT
//! (`signals`), binding a port and the ops port's readiness.

/// A line for whoever started the process (the bound addresses, the CA to trust). A closed stdout
/// must not take the process down, so write errors are ignored (`println!` would panic).
macro_rules! announce {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod explain;
pub mod scheduler;
pub mod serve;
mod signals;
mod store;

pub use explain::explain;
pub use scheduler::scheduler;
pub use serve::{Running, serve, start};

use crate::cli::{CertsCommand, Cli, Command};
use crate::server::Readiness;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} address {addr}"))
}

/// What the ops port's `/readyz` asks: shutting down once `stop` is cancelled, else ready when
/// `loaded` says so.
fn readiness(
    stop: CancellationToken,
    loaded: impl Fn() -> bool + Send + Sync + 'static,
) -> Arc<dyn Fn() -> Readiness + Send + Sync> {
    Arc::new(move || {
        if stop.is_cancelled() {
            Readiness::ShuttingDown
        } else if loaded() {
            Readiness::Ready
        } else {
            Readiness::Loading
        }
    })
}

/// Entry point for `main`: dispatch the subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Certs(CertsCommand::Generate(args)) => {
            let generated = crate::certs::generate(&args.dns, &args.ip, args.days)?;
            crate::certs::write_dir(&args.out, &generated)?;
            println!(
                "wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key; use base64 of ca.crt as the webhook's caBundle",
                args.out.display()
            );
            Ok(())
        }
        Command::Explain(args) => {
            let (out, all_on_fargate) = explain(&args).await?;
            print!("{out}");
            if args.fail_unless_fargate && !all_on_fargate {
                anyhow::bail!(
                    "--fail-unless-fargate: not every pod would run on Fargate (see above)"
                );
            }
            Ok(())
        }
        Command::Scheduler(args) => scheduler(*args).await,
        Command::Probe(args) => {
            let probe = crate::probe::Probe {
                url: args.url,
                ca_file: args.ca_file,
                namespace: args.namespace,
                labels: args.labels.into_iter().collect(),
                timeout: args.timeout,
            };
            let answer = crate::probe::run(&probe).await?;
            println!("{}: {answer}", probe.url);
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(
                shell,
                &mut command,
                "fargate-webhook",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}
