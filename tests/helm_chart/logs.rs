//! Logs of both components: `logLevel` refused by the schema exactly where the binary would refuse it
//! (a value the binary refuses crash-loops both Deployments), and `logFormat` reaching both.

use fargate_webhook::cli::{Cli, Command, LogFormat, parse_log_filter};
use serde_json::Value;

use super::{FULLNAME, RELEASE, Rendered, arr, helm, render, render_err, strings, template_with};

/// `fargate-webhook` parsing these arguments, as the container starts it.
fn parse(args: &[String]) -> Result<Cli, clap::Error> {
    <Cli as clap::Parser>::try_parse_from(
        std::iter::once("fargate-webhook".to_string()).chain(args.iter().cloned()),
    )
}

/// The container args of the webhook and the scheduler Deployments.
fn both_args(r: &Rendered) -> [Vec<String>; 2] {
    let args = |name: &str| {
        let spec = &r.one("Deployment", name)["spec"]["template"]["spec"];
        strings(&arr(&spec["containers"])[0]["args"])
    };
    [args(FULLNAME), args(&format!("{FULLNAME}-scheduler"))]
}

#[test]
fn the_schema_refuses_exactly_the_log_levels_the_binary_refuses() {
    let Some(helm) = helm() else { return };
    // The crash-loop of issue 21: `verbose` rendered, and both Deployments exited at start.
    let error = render_err(helm, &["logLevel=verbose"]);
    assert!(error.contains("logLevel"), "{error}");

    let samples = [
        "info",
        "INFO",
        "Warn",
        "off",
        "trace",
        "fargate_webhook=debug",
        "fargate_webhook=debug,kube=info",
        "warn,fargate_webhook=DEBUG",
        "fargate_webhook::server::http=trace",
        "_private=info",
        "h2=warn",
        "debug,info",
        "verbose",
        "",
        "fargate_webhook=loud",
        "=debug",
        "fargate_webhook=",
        "fargate_webhook",
        "fargate_webhook[bind]=debug",
        "fargate_webhook[{pod}]=debug",
        "info,",
        ",info",
        " info",
        "info ",
        "warn, kube=info",
        "kube runtime=info",
        "kube-runtime=info",
        "2fa=info",
        "a:::b=info",
        "a::=info",
        "a=b=info",
        "1",
        "*=info",
    ];
    let (mut accepted, mut refused) = (0, 0);
    for level in samples {
        let binary = parse(&[
            "--log-level".into(),
            level.into(),
            "completions".into(),
            "bash".into(),
        ]);
        // A values file: `--set` would split the value at its commas.
        let values = format!(
            "logLevel: {}\nscheduler:\n  enabled: true\n",
            Value::String(level.into())
        );
        let chart = template_with(helm, RELEASE, Some(&values), &[]);
        match (&binary, &chart) {
            (Ok(_), Ok(r)) => {
                accepted += 1;
                // What the container gets parses, to the filter the binary makes of the value.
                for args in both_args(r) {
                    let cli = parse(&args).unwrap_or_else(|e| panic!("{level:?}: {args:?}: {e}"));
                    assert_eq!(Ok(cli.log_level), parse_log_filter(level), "{level:?}");
                }
            }
            (Err(_), Err(e)) => {
                refused += 1;
                assert!(e.contains("logLevel"), "{level:?}: {e}");
            }
            (Ok(_), Err(e)) => panic!("the binary takes {level:?}, the chart refuses it: {e}"),
            (Err(e), Ok(_)) => {
                panic!("the chart renders {level:?}, which the binary refuses: {e}")
            }
        }
    }
    assert!(accepted >= 10 && refused >= 15, "{accepted} / {refused}");
}

#[test]
fn log_format_reaches_both_components() {
    let Some(helm) = helm() else { return };
    for (sets, want) in [
        (vec!["scheduler.enabled=true"], LogFormat::Text),
        (
            vec!["scheduler.enabled=true", "logFormat=json"],
            LogFormat::Json,
        ),
    ] {
        let r = render(helm, &sets);
        let [webhook, scheduler] = both_args(&r);
        for (component, args, is_right_command) in [
            (
                "webhook",
                webhook,
                (|c: &Command| matches!(c, Command::Serve(_))) as fn(&Command) -> bool,
            ),
            ("scheduler", scheduler, |c: &Command| {
                matches!(c, Command::Scheduler(_))
            }),
        ] {
            let cli = parse(&args).unwrap_or_else(|e| panic!("{component}: {args:?}: {e}"));
            assert!(is_right_command(&cli.command), "{component}: {args:?}");
            assert_eq!(cli.log_format, want, "{component} with {sets:?}");
        }
    }
    let error = render_err(helm, &["logFormat=yaml"]);
    assert!(error.contains("logFormat"), "{error}");
}
