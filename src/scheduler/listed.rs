//! "This cache has listed at least once", for any number of waiters. kube-runtime 5.0's
//! `Store::wait_until_ready` wakes only the last task that waited (its one-shot channel keeps one
//! waker): with several reconciles waiting on one store, the others hang until something else polls
//! them (docs/scheduler.md, "Readiness of the caches"). The feed that applies a watch's `InitDone`
//! to the store marks it here, after the store holds the list.

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

#[cfg(test)]
mod tests {
    use super::Listed;
    use std::time::Duration;

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
