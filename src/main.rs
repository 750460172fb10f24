use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = fargate_webhook::cli::Cli::parse();
    // RUST_LOG, where set, wins over --log-level: the chart always passes --log-level, and RUST_LOG
    // (set through extraEnv) is how a Rust service is turned up for one debugging session. It takes
    // tracing's full filter syntax, applied as written (README, "Decisions where the spec leaves a choice").
    let (source, directives) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => ("RUST_LOG", value),
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("fargate-webhook: RUST_LOG is not UTF-8");
            return ExitCode::from(2);
        }
        // --log-level was checked by the CLI (a bad one is an error there, never a silent `info`).
        _ => ("--log-level", cli.log_level.clone()),
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&directives) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("fargate-webhook: {source} {directives}: {error}");
            return ExitCode::from(2);
        }
    };
    // Logs go to stderr; stdout carries the few lines that announce addresses and the CA to trust.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        fargate_webhook::cli::LogFormat::Json => logs
            .json()
            // One object per line with `message` and the event's fields at the top level, where
            // log aggregators look for them.
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        fargate_webhook::cli::LogFormat::Text => logs
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("fargate-webhook: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fargate_webhook::app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fargate-webhook: {error:#}");
            ExitCode::FAILURE
        }
    }
}
