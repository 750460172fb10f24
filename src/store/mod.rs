//! Profile stores. One trait, so that the webhook and the API do not know which store they use:
//! the local file store ([`file`]) or the Kubernetes store ([`kubernetes`], `FargateProfile`
//! resources).
//!
//! A store owns the committed state and publishes every new state to the webhook's
//! [`SharedSnapshot`](crate::decision::SharedSnapshot) before an update returns, so a profile that
//! turns ACTIVE is matched at once, not after a file-watch delay. Publishing is the same for every
//! store ([`Publisher`]), and so are the rules a write must keep ([`check_change`]).

pub mod crd;
pub mod file;
pub mod kubernetes;
mod publish;
mod rules;

pub use publish::Publisher;
pub use rules::{Violation, check_change};

use crate::profile::ProfileState;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a change decided about the state it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Commit the state as the change left it.
    Commit,
    /// Write nothing. Why (a refusal, a replayed request, nothing to do) is the caller's to keep,
    /// in what its closure captured.
    Abort,
}

/// A change to apply to the latest state. It may run more than once (optimistic stores retry on
/// conflicts), so it must only depend on the state it is given, and what it records for its
/// caller must be overwritten on every run.
pub type Change<'a> = Box<dyn FnMut(&mut ProfileState) -> Step + Send + 'a>;

/// How an update ended, when nothing failed.
#[derive(Clone, Debug)]
pub enum Updated {
    /// The change committed this state (it is already published).
    Committed(Arc<ProfileState>),
    /// The change aborted; nothing was written.
    Aborted,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The change broke a rule every store keeps ([`check_change`]); nothing was written.
    #[error(transparent)]
    Violation(#[from] Violation),
    /// The store has no good state yet (say, a corrupt profiles file at start): writing now would
    /// overwrite what the operator has to fix. Nothing was written.
    #[error("profile store has not loaded its state: {0}")]
    NotLoaded(String),
    /// The store could not commit; nothing was acknowledged.
    #[error("profile store failure: {context}")]
    Storage {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl UpdateError {
    pub fn storage(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        UpdateError::Storage {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    pub fn storage_context(context: impl Into<String>) -> Self {
        UpdateError::Storage {
            context: context.into(),
            source: None,
        }
    }
}

pub trait ProfileStore: Send + Sync + 'static {
    /// The last committed state.
    fn current(&self) -> Arc<ProfileState>;

    /// Apply `change` to the latest state and, if it commits, write it durably, atomically with
    /// respect to every other update (also from other processes sharing the store, where the
    /// store supports it). The webhook snapshot is republished before the future resolves.
    fn update<'a>(&'a self, change: Change<'a>) -> BoxFuture<'a, Result<Updated, UpdateError>>;

    /// Whether a good state has been published at least once (readiness).
    fn is_loaded(&self) -> bool;

    /// Resolves once [`is_loaded`](Self::is_loaded) is true.
    fn wait_loaded(&self) -> BoxFuture<'_, ()>;

    /// Changes each time a state is published: the webhook snapshot has been swapped by then.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The profiles stored CREATING or DELETING, also those [`current`](Self::current) leaves out
    /// because they break a limit lowered since they were written: their lifecycle step must still
    /// be taken, or they would hold "one profile CREATING or DELETING at a time" for good.
    fn in_transition(&self) -> Vec<crate::profile::FargateProfile> {
        self.current()
            .fargate_profiles
            .iter()
            .filter(|p| p.status.in_transition())
            .cloned()
            .collect()
    }
}

/// Run a change that refuses with a reason of its caller's: `Err(reason)` aborts the write, and the
/// reason comes back as a value (`None` only if a store aborted without running the change to a
/// refusal, which no store does). The reason is reset on every run, as a retried change requires.
pub async fn update_or_refuse<S, R>(
    store: &S,
    mut change: impl FnMut(&mut ProfileState) -> Result<(), R> + Send,
) -> Result<Result<Arc<ProfileState>, Option<R>>, UpdateError>
where
    S: ProfileStore + ?Sized,
    R: Send,
{
    let mut reason = None;
    let outcome = store
        .update(Box::new(|state: &mut ProfileState| match change(state) {
            Ok(()) => {
                reason = None;
                Step::Commit
            }
            Err(why) => {
                reason = Some(why);
                Step::Abort
            }
        }))
        .await?;
    Ok(match outcome {
        Updated::Committed(state) => Ok(state),
        Updated::Aborted => Err(reason),
    })
}

/// An error and its sources on one line, for logs: `context: cause: cause`.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
