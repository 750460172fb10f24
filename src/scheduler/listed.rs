//! "This cache has listed at least once", for any number of waiters. kube-runtime 5.0's
//! `Store::wait_until_ready` wakes only the last task that waited (its one-shot channel keeps one
//! waker): with several reconciles waiting on one store, the others hang until something else polls
//! them (docs/scheduler.md, "Readiness of the caches"). The feed that applies a watch's `InitDone`
//! to the store marks it here, after the store holds the list.
//!
//! [`cached_keys`] turns a reflected watch into the keys to reconcile, never ahead of the cache.

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Listed(Arc<watch::Sender<bool>>);

impl Default for Listed {
    fn default() -> Self {
        Listed(Arc::new(watch::Sender::new(false)))
    }
}

impl Listed {
    /// The cache has listed; every waiter goes on.
    pub fn mark(&self) {
        self.0.send_replace(true);
    }

    pub fn is_listed(&self) -> bool {
        *self.0.borrow()
    }

    /// Until the cache has listed.
    pub async fn wait(&self) {
        let mut listed = self.0.subscribe();
        // The sender lives as long as `self`: `wait_for` returns once it is marked.
        let _ = listed.wait_for(|listed| *listed).await;
    }
}

/// The keys to reconcile from a watch already reflected into `cache`: each object applied, and
/// after every (re-)list each object the cache holds. During a list the reflector keeps the listed
/// objects aside until `InitDone` and swaps them in then, so a key taken from `InitApply` could be
/// looked up before its object is in the cache (a node made while the watch was down would be
/// dropped as not found); keys are given once the cache holds them. Deletions give no key: the
/// object is gone from the cache, so there is nothing to look up. `what` names the watch in logs.
pub fn cached_keys<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    cache: Store<K>,
    what: &'static str,
) -> impl Stream<Item = ObjectRef<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    events.flat_map(move |event| {
        let keys: Vec<ObjectRef<K>> = match event {
            Ok(watcher::Event::Apply(object)) => vec![ObjectRef::from_obj(&object)],
            Ok(watcher::Event::InitDone) => cache
                .state()
                .iter()
                .map(|object| ObjectRef::from_obj(object.as_ref()))
                .collect(),
            Ok(watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::Delete(_)) => {
                Vec::new()
            }
            Err(error) => {
                tracing::warn!(%error, "watching {what}");
                Vec::new()
            }
        };
        futures::stream::iter(keys)
    })
}

#[cfg(test)]
mod tests {
    use super::{Listed, cached_keys};
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Node;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher::Event;
    use std::time::Duration;

    fn node(name: &str) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some(name.into());
        node
    }

    #[tokio::test]
    async fn a_relisted_object_is_keyed_only_once_the_cache_holds_it() {
        let (cache, writer) = reflector::store::<Node>();
        let events = futures::stream::iter([
            Event::Init,
            Event::InitApply(node("a")),
            Event::InitDone,
            Event::Apply(node("b")),
            // The watch lists again (a 410, an apiserver restart): `c` was made meanwhile.
            Event::Init,
            Event::InitApply(node("a")),
            Event::InitApply(node("b")),
            Event::InitApply(node("c")),
            Event::InitDone,
            Event::Delete(node("a")),
        ])
        .map(Ok);
        let looked_up = cache.clone();
        let keys: Vec<(ObjectRef<Node>, bool)> =
            cached_keys(events.reflect(writer), cache, "nodes")
                .map(|key| {
                    let cached = looked_up.get(&key).is_some();
                    (key, cached)
                })
                .collect()
                .await;
        let names: Vec<(&str, bool)> = keys.iter().map(|(k, c)| (k.name.as_str(), *c)).collect();
        let mut relisted = names[2..].to_vec();
        relisted.sort();
        assert_eq!(&names[..2], &[("a", true), ("b", true)]);
        assert_eq!(relisted, vec![("a", true), ("b", true), ("c", true)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_goes_on_when_the_cache_has_listed() {
        let listed = Listed::default();
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let listed = listed.clone();
                tokio::spawn(async move { listed.wait().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!listed.is_listed());
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "no waiter goes on before the list"
        );
        listed.mark();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(2), waiter)
                .await
                .expect("every waiter goes on, not only the last one that waited")
                .unwrap();
        }
        // Once listed, a wait returns at once.
        tokio::time::timeout(Duration::from_millis(100), listed.wait())
            .await
            .unwrap();
    }
}
