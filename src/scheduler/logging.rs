//! Whether Fargate logging is on: EKS reads the `aws-observability/aws-logging` ConfigMap when it
//! places a pod and validates it (docs/eks-behaviour.md §9, item 4). A watch on that one object keeps
//! its data, so binding a pod costs no read; until the watch has listed (or after it failed) the
//! scheduler reads it directly. [`logging`] is the pure verdict both paths feed.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use prometheus::IntGauge;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Where EKS reads the Fargate logging configuration.
pub const NAMESPACE: &str = "aws-observability";
pub const CONFIGMAP: &str = "aws-logging";

/// The ConfigMap's `data`, or `None` when it does not exist.
pub type Config = Option<Arc<BTreeMap<String, String>>>;

/// The data of a ConfigMap as the verdict reads it (`binaryData` plays no part).
pub fn config_of(map: &ConfigMap) -> Arc<BTreeMap<String, String>> {
    Arc::new(map.data.clone().unwrap_or_default())
}

/// What the watch last knew of the ConfigMap, also shown as a gauge (1 exists, 0 absent, -1 not known).
#[derive(Debug)]
pub struct Watched {
    /// `None` until the watch has listed, and while it fails.
    state: Mutex<Option<Config>>,
    gauge: IntGauge,
}

impl Watched {
    pub fn new(gauge: IntGauge) -> Self {
        gauge.set(-1);
        Watched {
            state: Mutex::new(None),
            gauge,
        }
    }

    /// `Some(config)` once the watch has listed; `None` before, or while it is failing.
    pub fn get(&self) -> Option<Config> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, state: Option<Config>) {
        self.gauge.set(match &state {
            Some(Some(_)) => 1,
            Some(None) => 0,
            None => -1,
        });
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Follow one watch event; `listed` carries what the current list brought across a relist.
    fn follow(
        &self,
        event: Result<watcher::Event<ConfigMap>, watcher::Error>,
        listed: &mut Config,
    ) {
        match event {
            Ok(watcher::Event::Init) => *listed = None,
            Ok(watcher::Event::InitApply(map)) => *listed = Some(config_of(&map)),
            Ok(watcher::Event::InitDone) => self.set(Some(listed.take())),
            Ok(watcher::Event::Apply(map)) => self.set(Some(Some(config_of(&map)))),
            Ok(watcher::Event::Delete(_)) => self.set(Some(None)),
            Err(error) => {
                // A Role without list/watch on it (an older chart) lands here, retried with backoff.
                tracing::warn!(%error, "watching the logging ConfigMap failed; reading it per pod meanwhile");
                self.set(None);
            }
        }
    }

    /// Keep `self` current until `stop`.
    pub async fn watch(&self, client: Client, stop: CancellationToken) {
        let maps: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
        // A name field selector, so a Role limited to this one name may list and watch it.
        let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP}"));
        let mut events = watcher(maps, config).default_backoff().boxed();
        let mut listed = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                event = events.next() => match event {
                    Some(event) => self.follow(event, &mut listed),
                    None => return,
                },
            }
        }
    }
}

/// The `Logging` annotation EKS sets, with the event it records beside it.
#[derive(Debug, PartialEq, Eq)]
pub struct Logging {
    pub annotation: &'static str,
    pub event_type: EventType,
    pub reason: &'static str,
    pub note: String,
}

/// The most characters EKS takes in the ConfigMap (docs/eks-behaviour.md §9, item 4).
pub const MAX_CHARACTERS: usize = 5300;
/// The data keys EKS reads: each section under its own key, and the Fluent Bit process logs switch.
pub const KEYS: [(&str, Option<&str>); 4] = [
    ("output.conf", Some("OUTPUT")),
    ("filters.conf", Some("FILTER")),
    ("parsers.conf", Some("PARSER")),
    ("flb_log_cw", None),
];
pub const FILTERS: [&str; 8] = [
    "grep",
    "parser",
    "record_modifier",
    "rewrite_tag",
    "throttle",
    "nest",
    "modify",
    "kubernetes",
];
pub const OUTPUTS: [&str; 6] = [
    "es",
    "firehose",
    "kinesis_firehose",
    "cloudwatch",
    "cloudwatch_logs",
    "kinesis",
];
/// Keys of the kubernetes filter that EKS sets itself and refuses from users.
pub const SERVICE_OWNED: [&str; 4] = [
    "Kube_URL",
    "Kube_CA_File",
    "Kube_Token_Command",
    "Kube_Token_File",
];

/// Why EKS would refuse the ConfigMap: the sentence that goes between "Disabled logging for pod due
/// to invalid configmap. " and ". Please fix the logging configmap" (docs/eks-behaviour.md §9, item 4).
pub fn invalid(data: &BTreeMap<String, String>) -> Option<String> {
    let characters: usize = data
        .iter()
        .map(|(k, v)| k.chars().count() + v.chars().count())
        .sum();
    if characters > MAX_CHARACTERS {
        return Some(format!(
            "the configmap has {characters} characters, more than {MAX_CHARACTERS}"
        ));
    }
    if let Some(key) = data
        .keys()
        .find(|k| !KEYS.iter().any(|(known, _)| known == k))
    {
        return Some(format!("{key} is not a supported configmap key"));
    }
    if let Some((key, _)) = data.iter().find(|(_, v)| v.contains("${")) {
        return Some(format!(
            "{key} uses environment variables, which are not allowed"
        ));
    }
    let mut outputs = 0;
    for (key, section) in KEYS.iter().filter_map(|(k, s)| Some((*k, (*s)?))) {
        let Some(text) = data.get(key) else { continue };
        let sections = match sections(text) {
            Ok(sections) => sections,
            Err(why) => return Some(format!("{key}: {why}")),
        };
        for s in &sections {
            if !s.name.eq_ignore_ascii_case(section) {
                return Some(format!(
                    "[{}] is not supported under {key}, only [{section}]",
                    s.name
                ));
            }
            let required: [&str; 2] = if section == "PARSER" {
                ["Name", "Format"]
            } else {
                ["Name", "Match"]
            };
            if let Some(missing) = required.iter().find(|r| s.get(r).is_none()) {
                return Some(format!("{key}: [{section}] has no {missing}"));
            }
            let name = s.get("Name").unwrap_or_default();
            // [D] Plugin names compared without case, as Fluent Bit finds its plugins.
            let plugin = name.to_ascii_lowercase();
            match section {
                "FILTER" if !FILTERS.contains(&plugin.as_str()) => {
                    return Some(format!("{name} is not a supported filter plugin"));
                }
                "FILTER" if plugin == "kubernetes" => {
                    if let Some(owned) = SERVICE_OWNED.iter().find(|k| s.get(k).is_some()) {
                        return Some(format!(
                            "{owned} is set by Fargate and must not be specified"
                        ));
                    }
                }
                "OUTPUT" if !OUTPUTS.contains(&plugin.as_str()) => {
                    return Some(format!("{name} is not a supported output plugin"));
                }
                "OUTPUT" => outputs += 1,
                _ => {}
            }
        }
    }
    (outputs == 0).then(|| "no supported output plugin is configured".to_string())
}

/// One `[SECTION]` of a Fluent Bit file and its key-value pairs.
struct Section<'a> {
    name: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl Section<'_> {
    /// The value of `key`, compared without case as Fluent Bit does.
    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }
}

/// The sections of a file in Fluent Bit's classic format, with EKS's indentation rule: every
/// directive indented alike, every key-value pair alike and more than the directives.
fn sections(text: &str) -> Result<Vec<Section<'_>>, String> {
    let (mut out, mut directive_indent, mut pair_indent) = (Vec::<Section>::new(), None, None);
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            if *directive_indent.get_or_insert(indent) != indent {
                return Err("directives are not indented alike".into());
            }
            out.push(Section {
                name: name.trim(),
                pairs: Vec::new(),
            });
            continue;
        }
        let Some(section) = out.last_mut() else {
            return Err(format!("{trimmed:?} is outside any section"));
        };
        if *pair_indent.get_or_insert(indent) != indent {
            return Err("key-value pairs are not indented alike".into());
        }
        if directive_indent.is_some_and(|d| indent <= d) {
            return Err("key-value pairs must be indented more than directives".into());
        }
        let (key, value) = trimmed
            .split_once(char::is_whitespace)
            .map_or((trimmed, ""), |(k, v)| (k, v.trim()));
        section.pairs.push((key, value));
    }
    Ok(out)
}

/// What EKS says for a pod placed while the ConfigMap holds `config` (`None`: it does not exist).
pub fn logging(config: Option<&BTreeMap<String, String>>) -> Logging {
    let Some(data) = config else {
        return Logging {
            annotation: "LoggingDisabled: LOGGING_CONFIGMAP_NOT_FOUND",
            event_type: EventType::Warning,
            reason: "LoggingDisabled",
            note: format!(
                "Disabled logging because {CONFIGMAP} configmap was not found. configmap \"{CONFIGMAP}\" not found"
            ),
        };
    };
    match invalid(data) {
        None => Logging {
            annotation: "LoggingEnabled",
            event_type: EventType::Normal,
            reason: "LoggingEnabled",
            note: "Successfully enabled logging for pod".into(),
        },
        Some(why) => Logging {
            annotation: "LoggingDisabled: LOGGING_CONFIGMAP_INVALID",
            event_type: EventType::Warning,
            reason: "LoggingDisabled",
            note: format!(
                "Disabled logging for pod due to invalid configmap. {why}. Please fix the logging configmap"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn error() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    #[test]
    fn the_watch_decides_once_it_has_listed_and_forgets_on_errors() {
        type Step = Result<watcher::Event<ConfigMap>, watcher::Error>;
        let a = || map(&[("output.conf", "a")]);
        let b = || map(&[("output.conf", "b")]);
        // `want`: None before a list, Some(None) absent, Some(Some(v)) the output.conf seen.
        type Case = (&'static str, Vec<Step>, Option<Option<&'static str>>);
        let cases: Vec<Case> = vec![
            ("nothing seen yet", vec![], None),
            ("listing, not done", vec![Ok(watcher::Event::Init)], None),
            (
                "listed empty",
                vec![Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)],
                Some(None),
            ),
            (
                "listed it",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(a())),
                    Ok(watcher::Event::InitDone),
                ],
                Some(Some("a")),
            ),
            (
                "created after the list",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitDone),
                    Ok(watcher::Event::Apply(a())),
                ],
                Some(Some("a")),
            ),
            (
                "changed after the list: the new data counts",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(a())),
                    Ok(watcher::Event::InitDone),
                    Ok(watcher::Event::Apply(b())),
                ],
                Some(Some("b")),
            ),
            (
                "deleted after the list",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(a())),
                    Ok(watcher::Event::InitDone),
                    Ok(watcher::Event::Delete(a())),
                ],
                Some(None),
            ),
            (
                "a failed watch knows nothing",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitDone),
                    Err(error()),
                ],
                None,
            ),
            (
                "a relist after a failure: the old list does not count",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(a())),
                    Ok(watcher::Event::InitDone),
                    Err(error()),
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitDone),
                ],
                Some(None),
            ),
            (
                "while relisting, the last answer stands",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(a())),
                    Ok(watcher::Event::InitDone),
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(b())),
                ],
                Some(Some("a")),
            ),
        ];
        for (name, steps, want) in cases {
            let gauge = IntGauge::new("logging_configmap", "test").unwrap();
            let watched = Watched::new(gauge.clone());
            let mut listed = None;
            for step in steps {
                watched.follow(step, &mut listed);
            }
            let got = watched.get();
            let seen = got
                .as_ref()
                .map(|c| c.as_ref().map(|d| d["output.conf"].as_str()));
            assert_eq!(seen, want, "{name}");
            let shown = match want {
                Some(Some(_)) => 1,
                Some(None) => 0,
                None => -1,
            };
            assert_eq!(gauge.get(), shown, "{name}: the gauge");
        }
    }

    const OUTPUT: &str = "[OUTPUT]\n    Name cloudwatch_logs\n    Match *\n    region eu-west-1\n";

    /// EKS's own example from the Fargate logging guide, whole.
    const GUIDE_FILTERS: &str = "[FILTER]\n    Name parser\n    Match *\n    Key_name log\n    Parser crio\n[FILTER]\n    Name kubernetes\n    Match kube.*\n    Merge_Log On\n    Keep_Log Off\n    Buffer_Size 0\n    Kube_Meta_Cache_TTL 300s\n";
    const GUIDE_OUTPUT: &str = "[OUTPUT]\n    Name cloudwatch_logs\n    Match   kube.*\n    region region-code\n    log_group_name my-logs\n    log_stream_prefix from-fluent-bit-\n    log_retention_days 60\n    auto_create_group true\n";
    const GUIDE_PARSERS: &str = "[PARSER]\n    Name crio\n    Format Regex\n    Regex ^(?<time>[^ ]+) (?<stream>stdout|stderr) (?<logtag>P|F) (?<log>.*)$\n    Time_Key    time\n    Time_Format %Y-%m-%dT%H:%M:%S.%L%z\n";

    #[test]
    fn the_configmap_is_validated_as_eks_does() {
        // Keys and values together at the limit, then one character over it.
        let pad =
            MAX_CHARACTERS - "output.conf".len() - OUTPUT.len() - "    log_group_name \n".len();
        let exactly = format!("{OUTPUT}    log_group_name {}\n", "x".repeat(pad));
        let big = format!("{OUTPUT}    log_group_name {}\n", "é".repeat(pad + 1));
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "the guide's example",
                vec![
                    ("flb_log_cw", "false"),
                    ("filters.conf", GUIDE_FILTERS),
                    ("output.conf", GUIDE_OUTPUT),
                    ("parsers.conf", GUIDE_PARSERS),
                ],
                None,
            ),
            ("one output alone", vec![("output.conf", OUTPUT)], None),
            (
                "every supported output, any case, two-space indent",
                vec![(
                    "output.conf",
                    "[OUTPUT]\n  Name es\n  Match *\n[OUTPUT]\n  Name Firehose\n  match *\n[OUTPUT]\n  Name kinesis_firehose\n  Match *\n[OUTPUT]\n  Name cloudwatch\n  Match *\n[OUTPUT]\n  Name kinesis\n  Match *\n",
                )],
                None,
            ),
            (
                "comments and blank lines",
                vec![(
                    "output.conf",
                    "# ship it\n\n[OUTPUT]\n    Name es\n\n    Match *\n",
                )],
                None,
            ),
            ("at the size limit", vec![("output.conf", &exactly)], None),
            (
                "over the size limit",
                vec![("output.conf", &big)],
                Some("the configmap has 5301 characters, more than 5300"),
            ),
            (
                "an unsupported output (seen on EKS)",
                vec![(
                    "output.conf",
                    "[OUTPUT]\n    Name amazon_data_firehose\n    Match *\n",
                )],
                Some("amazon_data_firehose is not a supported output plugin"),
            ),
            (
                "loki (seen on EKS)",
                vec![("output.conf", "[OUTPUT]\n    Name loki\n    Match *\n")],
                Some("loki is not a supported output plugin"),
            ),
            (
                "an unsupported filter",
                vec![
                    ("output.conf", OUTPUT),
                    (
                        "filters.conf",
                        "[FILTER]\n    Name multiline\n    Match *\n",
                    ),
                ],
                Some("multiline is not a supported filter plugin"),
            ),
            (
                "no output",
                vec![("filters.conf", "[FILTER]\n    Name grep\n    Match *\n")],
                Some("no supported output plugin is configured"),
            ),
            (
                "nothing at all",
                vec![],
                Some("no supported output plugin is configured"),
            ),
            (
                "an empty output.conf",
                vec![("output.conf", "")],
                Some("no supported output plugin is configured"),
            ),
            (
                "an environment variable",
                vec![(
                    "output.conf",
                    "[OUTPUT]\n    Name cloudwatch_logs\n    Match *\n    region ${AWS_REGION}\n",
                )],
                Some("output.conf uses environment variables, which are not allowed"),
            ),
            (
                "a section under another's key",
                vec![("output.conf", OUTPUT), ("filters.conf", OUTPUT)],
                Some("[OUTPUT] is not supported under filters.conf, only [FILTER]"),
            ),
            (
                "an INPUT section",
                vec![(
                    "output.conf",
                    "[INPUT]\n    Name tail\n    Match *\n[OUTPUT]\n    Name es\n    Match *\n",
                )],
                Some("[INPUT] is not supported under output.conf, only [OUTPUT]"),
            ),
            (
                "a key EKS does not read",
                vec![("output.conf", OUTPUT), ("fluent-bit.conf", "[SERVICE]\n")],
                Some("fluent-bit.conf is not a supported configmap key"),
            ),
            (
                "an output without Match",
                vec![("output.conf", "[OUTPUT]\n    Name cloudwatch_logs\n")],
                Some("output.conf: [OUTPUT] has no Match"),
            ),
            (
                "a parser without Format",
                vec![
                    ("output.conf", OUTPUT),
                    ("parsers.conf", "[PARSER]\n    Name crio\n    Regex ^.*$\n"),
                ],
                Some("parsers.conf: [PARSER] has no Format"),
            ),
            (
                "pairs not indented more than directives",
                vec![("output.conf", "[OUTPUT]\nName es\nMatch *\n")],
                Some("output.conf: key-value pairs must be indented more than directives"),
            ),
            (
                "pairs indented unevenly",
                vec![("output.conf", "[OUTPUT]\n    Name es\n  Match *\n")],
                Some("output.conf: key-value pairs are not indented alike"),
            ),
            (
                "directives indented unevenly",
                vec![(
                    "output.conf",
                    "[OUTPUT]\n    Name es\n    Match *\n  [OUTPUT]\n    Name es\n    Match *\n",
                )],
                Some("output.conf: directives are not indented alike"),
            ),
            (
                "a pair before any section",
                vec![("output.conf", "    Name es\n[OUTPUT]\n    Match *\n")],
                Some("output.conf: \"Name es\" is outside any section"),
            ),
            (
                "the kubernetes filter with a key Fargate sets",
                vec![
                    ("output.conf", OUTPUT),
                    (
                        "filters.conf",
                        "[FILTER]\n    Name kubernetes\n    Match kube.*\n    Kube_URL https://x\n",
                    ),
                ],
                Some("Kube_URL is set by Fargate and must not be specified"),
            ),
        ];
        for (name, data, want) in cases {
            let data: BTreeMap<String, String> = data
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(invalid(&data).as_deref(), want, "{name}");
            let verdict = logging(Some(&data));
            match want {
                None => assert_eq!(verdict.annotation, "LoggingEnabled", "{name}"),
                Some(why) => {
                    assert_eq!(
                        verdict.annotation, "LoggingDisabled: LOGGING_CONFIGMAP_INVALID",
                        "{name}"
                    );
                    assert_eq!(
                        verdict.note,
                        format!(
                            "Disabled logging for pod due to invalid configmap. {why}. Please fix the logging configmap"
                        ),
                        "{name}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_texts_are_eks_own() {
        let data: BTreeMap<String, String> =
            [("output.conf".to_string(), OUTPUT.to_string())].into();
        let on = logging(Some(&data));
        assert_eq!(on.annotation, "LoggingEnabled");
        assert_eq!(on.event_type, EventType::Normal);
        assert_eq!(on.reason, "LoggingEnabled");
        assert_eq!(on.note, "Successfully enabled logging for pod");
        let off = logging(None);
        assert_eq!(
            off.annotation,
            "LoggingDisabled: LOGGING_CONFIGMAP_NOT_FOUND"
        );
        assert_eq!(off.event_type, EventType::Warning);
        assert_eq!(off.reason, "LoggingDisabled");
        assert_eq!(
            off.note,
            "Disabled logging because aws-logging configmap was not found. configmap \"aws-logging\" not found"
        );
        // The text seen on EKS for an output it does not support, whole.
        let firehose: BTreeMap<String, String> = [(
            "output.conf".to_string(),
            "[OUTPUT]\n    Name amazon_data_firehose\n    Match *\n".to_string(),
        )]
        .into();
        let bad = logging(Some(&firehose));
        assert_eq!(bad.event_type, EventType::Warning);
        assert_eq!(bad.reason, "LoggingDisabled");
        assert_eq!(
            bad.note,
            "Disabled logging for pod due to invalid configmap. amazon_data_firehose is not a supported output plugin. Please fix the logging configmap"
        );
    }
}
