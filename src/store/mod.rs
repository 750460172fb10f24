//! Profile stores. One trait, so that the webhook and the API do not know which store they use:
//! the local file store (this module's `file`) or the Kubernetes CRD store.
//!
//! A store owns the committed state and publishes every new state to the webhook's
//! [`SharedSnapshot`](crate::decision::SharedSnapshot) before an update returns, so a profile that
//! turns ACTIVE is matched at once, not after a file-watch delay.

pub mod crd;
pub mod file;
pub mod kube;

use crate::profile::ProfilesFile;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The state a store holds: the profiles and the idempotency tokens that created them.
pub type StoreState = ProfilesFile;

/// The reason a change refused itself; handed back untouched (downcast it to your own error).
pub type Rejection = Box<dyn std::error::Error + Send + Sync>;

/// A change to apply to the latest state. It may run more than once (optimistic stores retry on
/// conflicts), so it must only depend on the state it is given.
pub type Change<'a> = Box<dyn FnMut(&mut StoreState) -> Result<(), Rejection> + Send + 'a>;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The change refused itself; nothing was written.
    #[error("{0}")]
    Rejected(Rejection),
    /// The store has no good state yet (say, a corrupt profiles file at start): writing now would
    /// overwrite what the operator has to fix. Nothing was written.
    #[error("profile store has not loaded its state: {0}")]
    NotLoaded(String),
    /// The store could not commit; nothing was acknowledged.
    #[error("profile store failure: {0}")]
    Storage(String),
}

pub trait ProfileStore: Send + Sync + 'static {
    /// The last committed state.
    fn current(&self) -> Arc<StoreState>;

    /// Apply `change` to the latest state and commit it durably, atomically with respect to every
    /// other update (also from other processes sharing the store, where the store supports it).
    /// The webhook snapshot is republished before the future resolves.
    fn update<'a>(
        &'a self,
        change: Change<'a>,
    ) -> BoxFuture<'a, Result<Arc<StoreState>, UpdateError>>;
}
