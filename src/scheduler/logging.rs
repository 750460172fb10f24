//! Whether Fargate logging is on: EKS reads the `aws-observability/aws-logging` ConfigMap when it
//! places a pod (docs/eks-behaviour.md §9). A watch on that one object keeps the answer, so binding a
//! pod costs no read; until the watch has listed (or after it failed) the scheduler reads it directly.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use prometheus::IntGauge;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio_util::sync::CancellationToken;

/// Where EKS reads the Fargate logging configuration.
pub const NAMESPACE: &str = "aws-observability";
pub const CONFIGMAP: &str = "aws-logging";

const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;

/// What the watch last knew of the ConfigMap, also shown as a gauge (1 exists, 0 absent, -1 not known).
#[derive(Debug)]
pub struct Watched {
    state: AtomicU8,
    gauge: IntGauge,
}

impl Watched {
    pub fn new(gauge: IntGauge) -> Self {
        gauge.set(-1);
        Watched {
            state: AtomicU8::new(UNKNOWN),
            gauge,
        }
    }

    /// `Some(exists)` once the watch has listed; `None` before, or while it is failing.
    pub fn get(&self) -> Option<bool> {
        match self.state.load(Ordering::Acquire) {
            PRESENT => Some(true),
            ABSENT => Some(false),
            _ => None,
        }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.gauge.set(match state {
            PRESENT => 1,
            ABSENT => 0,
            _ => -1,
        });
    }

    /// Follow one watch event; `listed` carries "an object came in the current list" across a relist.
    fn follow(&self, event: Result<watcher::Event<ConfigMap>, watcher::Error>, listed: &mut bool) {
        match event {
            Ok(watcher::Event::Init) => *listed = false,
            Ok(watcher::Event::InitApply(_)) => *listed = true,
            Ok(watcher::Event::InitDone) => self.set(if *listed { PRESENT } else { ABSENT }),
            Ok(watcher::Event::Apply(_)) => self.set(PRESENT),
            Ok(watcher::Event::Delete(_)) => self.set(ABSENT),
            Err(error) => {
                // A Role without list/watch on it (an older chart) lands here, retried with backoff.
                tracing::warn!(%error, "watching the logging ConfigMap failed; reading it per pod meanwhile");
                self.set(UNKNOWN);
            }
        }
    }

    /// Keep `self` current until `stop`.
    pub async fn watch(&self, client: Client, stop: CancellationToken) {
        let maps: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
        // A name field selector, so a Role limited to this one name may list and watch it.
        let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP}"));
        let mut events = watcher(maps, config).default_backoff().boxed();
        let mut listed = false;
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
pub struct Logging {
    pub annotation: &'static str,
    pub event_type: EventType,
    pub reason: &'static str,
    pub note: String,
}

/// What EKS says for a pod placed while the ConfigMap `exists` or not.
pub fn logging(exists: bool) -> Logging {
    if exists {
        Logging {
            annotation: "LoggingEnabled",
            event_type: EventType::Normal,
            reason: "LoggingEnabled",
            note: "Successfully enabled logging for pod".into(),
        }
    } else {
        Logging {
            annotation: "LoggingDisabled: LOGGING_CONFIGMAP_NOT_FOUND",
            event_type: EventType::Warning,
            reason: "LoggingDisabled",
            note: format!(
                "Disabled logging because {CONFIGMAP} configmap was not found. configmap \"{CONFIGMAP}\" not found"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ConfigMap {
        ConfigMap::default()
    }

    fn error() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    #[test]
    fn the_watch_decides_once_it_has_listed_and_forgets_on_errors() {
        type Step = Result<watcher::Event<ConfigMap>, watcher::Error>;
        let cases: Vec<(&str, Vec<Step>, Option<bool>)> = vec![
            ("nothing seen yet", vec![], None),
            ("listing, not done", vec![Ok(watcher::Event::Init)], None),
            (
                "listed empty",
                vec![Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)],
                Some(false),
            ),
            (
                "listed it",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(map())),
                    Ok(watcher::Event::InitDone),
                ],
                Some(true),
            ),
            (
                "created after the list",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitDone),
                    Ok(watcher::Event::Apply(map())),
                ],
                Some(true),
            ),
            (
                "deleted after the list",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(map())),
                    Ok(watcher::Event::InitDone),
                    Ok(watcher::Event::Delete(map())),
                ],
                Some(false),
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
                    Ok(watcher::Event::InitApply(map())),
                    Ok(watcher::Event::InitDone),
                    Err(error()),
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitDone),
                ],
                Some(false),
            ),
            (
                "while relisting, the last answer stands",
                vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(map())),
                    Ok(watcher::Event::InitDone),
                    Ok(watcher::Event::Init),
                ],
                Some(true),
            ),
        ];
        for (name, steps, want) in cases {
            let gauge = IntGauge::new("logging_configmap", "test").unwrap();
            let watched = Watched::new(gauge.clone());
            let mut listed = false;
            for step in steps {
                watched.follow(step, &mut listed);
            }
            assert_eq!(watched.get(), want, "{name}");
            let shown = match want {
                Some(true) => 1,
                Some(false) => 0,
                None => -1,
            };
            assert_eq!(gauge.get(), shown, "{name}: the gauge");
        }
    }

    #[test]
    fn the_texts_are_eks_own() {
        let on = logging(true);
        assert_eq!(on.annotation, "LoggingEnabled");
        assert_eq!(on.event_type, EventType::Normal);
        assert_eq!(on.note, "Successfully enabled logging for pod");
        let off = logging(false);
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
    }
}
