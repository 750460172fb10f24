//! Publishing a new state, the same for every store: compile the webhook snapshot, update the
//! gauges, swap both atomically for readers, and remember that a good state was loaded.

use crate::decision::{SharedSnapshot, Snapshot};
use crate::metrics::Metrics;
use crate::profile::ProfileState;
use arc_swap::ArcSwap;
use std::sync::Arc;

pub struct Publisher {
    current: ArcSwap<ProfileState>,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    loaded: tokio::sync::watch::Sender<bool>,
    /// Counts the publications: readers that act on every change (the scheduler) wait on it.
    published: tokio::sync::watch::Sender<u64>,
}

impl Publisher {
    pub fn new(snapshot: SharedSnapshot, metrics: Arc<Metrics>) -> Self {
        Publisher {
            current: ArcSwap::from_pointee(ProfileState::default()),
            snapshot,
            metrics,
            loaded: tokio::sync::watch::Sender::new(false),
            published: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The snapshot last published.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The last published state.
    pub fn current(&self) -> Arc<ProfileState> {
        self.current.load_full()
    }

    /// Make `state` the one the webhook matches against and the API reads.
    pub fn publish(&self, state: Arc<ProfileState>) {
        let snapshot = Snapshot::new(state.fargate_profiles.clone());
        self.metrics.observe_snapshot(&snapshot);
        self.snapshot.store(Arc::new(snapshot));
        self.current.store(state);
        self.published.send_modify(|n| *n += 1);
    }

    /// Changes each time a state is published (after the snapshot is swapped).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// A good state has been published: the store is ready.
    pub fn mark_loaded(&self) {
        self.loaded
            .send_if_modified(|loaded| !std::mem::replace(loaded, true));
    }

    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    pub async fn wait_loaded(&self) {
        let mut loaded = self.loaded.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail while we borrow it.
        let _ = loaded.wait_for(|loaded| *loaded).await;
    }
}
