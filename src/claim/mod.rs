//! One writer among replicas. A claim is held by at most one process at a time, and every
//! background writer of the project (the fargate-scheduler, the API's lifecycle steps, the
//! Kubernetes store's housekeeping, the managed TLS and matchConditions syncs) writes only while its
//! process holds its claim and stops as soon as it is lost (README, "Several replicas"): work run on
//! a task of its own goes through [`Term::spawn`] or [`Term::run`]. Requests are not gated: any
//! replica answers them.
//!
//! A claim is either local (one process is the only writer: the file store) or a
//! `coordination.k8s.io/v1` Lease ([`lease::Elector`], client-go's expiry rule). Each time the claim
//! is taken a new [`Term`] starts; the term's token is cancelled when the claim is lost, and on
//! shutdown the Lease is given up only once the work of the term has returned, so the next holder
//! never overlaps with it.

pub mod lease;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a shutdown waits for the work of the term to return before giving the Lease up anyway
/// (the Lease then expires on its own, which is safe, only slower).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How long a holder waits before starting again work that ended while the claim is held.
const RESTART_WAIT: Duration = Duration::from_secs(1);

/// One holding of the claim: `lost` is cancelled when it ends; the work done under it is tracked.
#[derive(Clone, Debug)]
pub struct Term {
    lost: CancellationToken,
    work: TaskTracker,
}

impl Term {
    /// Cancelled when the claim is lost (or the process stops).
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Run `work` in place as part of this term's work: `None` if the claim is lost first (`work`
    /// is then dropped). At shutdown the Lease is given up only once it has ended.
    pub async fn run<F: Future>(&self, work: F) -> Option<F::Output> {
        let lost = self.lost.clone();
        self.work
            .track_future(async move {
                tokio::select! {
                    _ = lost.cancelled() => None,
                    out = work => Some(out),
                }
            })
            .await
    }

    /// Run `task` as part of this term's work, until it returns or the claim is lost, whichever
    /// comes first (a request in flight is then dropped, as a crash would drop it). At shutdown
    /// the Lease is given up only once every such task has ended, so none starts a write after.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let lost = self.lost.clone();
        self.work.spawn(async move {
            tokio::select! {
                _ = lost.cancelled() => {}
                _ = task => {}
            }
        })
    }
}

/// Run `task` on a task of its own: the term's work ([`Term::spawn`]) when there is a term, a plain
/// task when the writer runs without a claim (nothing to hand over to another replica).
pub fn spawn_in<F>(term: Option<&Term>, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match term {
        Some(term) => drop(term.spawn(task)),
        None => drop(tokio::spawn(task)),
    }
}

/// A shared view of the claim, cheap to clone.
#[derive(Clone, Debug)]
pub struct Claim {
    state: Arc<watch::Sender<Option<Term>>>,
    name: Arc<str>,
}

impl Claim {
    fn new(name: &str, term: Option<Term>) -> Claim {
        Claim {
            state: Arc::new(watch::Sender::new(term)),
            name: name.into(),
        }
    }

    /// Held from now until `shutdown`: this process is the only writer (the file store).
    pub fn local(shutdown: &CancellationToken) -> Claim {
        Claim::new(
            "local",
            Some(Term {
                lost: shutdown.child_token(),
                work: TaskTracker::new(),
            }),
        )
    }

    /// Campaign for the Lease until `shutdown`; the task gives the Lease up on its way out.
    pub fn lease(elector: lease::Elector, shutdown: CancellationToken) -> (Claim, JoinHandle<()>) {
        let claim = Claim::new(elector.name(), None);
        let task = tokio::spawn(campaign(elector, claim.clone(), shutdown));
        (claim, task)
    }

    /// The claim's name, for logs and metrics (the Lease's name, or `local`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current term, if the claim is held now.
    pub fn held(&self) -> Option<Term> {
        self.state
            .borrow()
            .clone()
            .filter(|t| !t.lost.is_cancelled())
    }

    pub fn is_held(&self) -> bool {
        self.held().is_some()
    }

    /// Wait until the claim is held; returns the term.
    pub async fn acquired(&self) -> Term {
        let mut changes = self.state.subscribe();
        loop {
            if let Some(term) = changes
                .borrow_and_update()
                .clone()
                .filter(|t| !t.lost.is_cancelled())
            {
                return term;
            }
            // The sender lives in `self`: `changed` cannot fail while we wait.
            let _ = changes.changed().await;
        }
    }

    /// Run `work` for each term of the claim until `shutdown`. `work` gets the term's `lost` token and
    /// must return soon after it is cancelled; a new term starts a new `work`. A `work` that returns
    /// while the claim is still held (a part of it failed) is started again after [`RESTART_WAIT`]:
    /// the holder must not renew the claim while nothing does the work it claims.
    pub async fn while_held<F, Fut>(&self, shutdown: &CancellationToken, mut work: F)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let term = tokio::select! {
                _ = shutdown.cancelled() => return,
                term = self.acquired() => term,
            };
            loop {
                term.work.track_future(work(term.lost.clone())).await;
                if shutdown.is_cancelled() {
                    return;
                }
                if term.lost.is_cancelled() {
                    break;
                }
                tracing::error!(
                    claim = %self.name,
                    "the claim holder's work ended while the claim is held; starting it again"
                );
                tokio::select! {
                    _ = term.lost.cancelled() => break,
                    _ = tokio::time::sleep(RESTART_WAIT) => {}
                }
            }
            // Lost: wait for the end of the term to be published before looking again.
            term.lost.cancelled().await;
        }
    }

    fn begin(&self, shutdown: &CancellationToken) -> Term {
        let term = Term {
            lost: shutdown.child_token(),
            work: TaskTracker::new(),
        };
        self.state.send_replace(Some(term.clone()));
        term
    }

    fn end(&self, term: &Term) {
        term.lost.cancel();
        term.work.close();
        self.state.send_replace(None);
    }
}

/// Ends the term when the campaign ends in any way, an abort or a panic included: a claim whose
/// Lease nobody renews is not held.
struct EndOnDrop(Claim);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(term) = self.0.state.send_replace(None) {
            term.lost.cancel();
            term.work.close();
        }
    }
}

async fn campaign(elector: lease::Elector, claim: Claim, shutdown: CancellationToken) {
    let _end = EndOnDrop(claim.clone());
    let every = elector.renew_every();
    // A take must be answered while it can still be held for a while (see [`hold`]).
    let answer_within = elector.duration().saturating_sub(every);
    loop {
        let asked = Instant::now();
        let won = tokio::select! {
            _ = shutdown.cancelled() => break,
            won = tokio::time::timeout(answer_within, elector.try_lead()) => won,
        };
        match won {
            Ok(Ok(true)) => {
                let term = claim.begin(&shutdown);
                tracing::info!(
                    lease = elector.name(),
                    identity = elector.identity(),
                    "claim taken: this replica writes"
                );
                hold(&elector, &shutdown, every, asked).await;
                claim.end(&term);
                if shutdown.is_cancelled() {
                    // Give the Lease up only when the term's work has returned: the next holder
                    // must not overlap with it.
                    let _ = tokio::time::timeout(RELEASE_WAIT, term.work.wait()).await;
                    let _ = tokio::time::timeout(RELEASE_WAIT, elector.release()).await;
                    break;
                }
                tracing::warn!(lease = elector.name(), "claim lost: standing by");
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(lease = elector.name(), %error, "reading the Lease failed")
            }
            Err(_) => tracing::warn!(
                lease = elector.name(),
                "the Lease did not answer in time; trying again"
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Renew until the Lease is lost or `shutdown`; `renewed` is when the take that won was asked.
///
/// The claim counts as lost one renewal period before another replica may take the Lease over
/// (client-go's renew deadline). That deadline runs from when the last successful renewal was
/// *asked*: its write landed later, and a standby's wait starts when it sees that write, so it
/// cannot take over before the deadline plus one period. A renewal that fails is retried while the
/// deadline allows; one still unanswered at the deadline, a request hanging on a dead connection,
/// ends the claim then, so nothing writes under a Lease another replica may already hold.
async fn hold(
    elector: &lease::Elector,
    shutdown: &CancellationToken,
    every: Duration,
    mut renewed: Instant,
) {
    loop {
        let deadline = renewed + elector.duration().saturating_sub(every);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until((Instant::now() + every).min(deadline)) => {}
        }
        if Instant::now() >= deadline {
            tracing::warn!(lease = elector.name(), "the Lease was not renewed in time");
            return;
        }
        let asked = Instant::now();
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return,
            answer = tokio::time::timeout_at(deadline, elector.try_lead()) => answer,
        };
        match answer {
            Ok(Ok(true)) => renewed = asked,
            Ok(Ok(false)) => return,
            Ok(Err(error)) => {
                tracing::warn!(lease = elector.name(), %error, "renewing the Lease failed");
            }
            Err(_) => {
                tracing::warn!(
                    lease = elector.name(),
                    "renewing the Lease did not finish before its deadline"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_claim_is_held_until_shutdown() {
        let shutdown = CancellationToken::new();
        let claim = Claim::local(&shutdown);
        assert!(claim.is_held());
        let term = claim.acquired().await;
        assert!(!term.lost().is_cancelled());
        shutdown.cancel();
        assert!(term.lost().is_cancelled());
        assert!(!claim.is_held());
    }

    /// `while_held` with a work that counts its runs and lasts until the claim is lost (the first
    /// run returns at once with `first_fails`).
    fn counted_work(
        claim: &Claim,
        shutdown: &CancellationToken,
        first_fails: bool,
    ) -> (Arc<std::sync::atomic::AtomicUsize>, JoinHandle<()>) {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (claim, shutdown, counter) = (claim.clone(), shutdown.clone(), Arc::clone(&runs));
        let runner = tokio::spawn(async move {
            claim
                .while_held(&shutdown, |lost| {
                    let counter = Arc::clone(&counter);
                    async move {
                        let before = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if !(first_fails && before == 0) {
                            lost.cancelled().await;
                        }
                    }
                })
                .await
        });
        (runs, runner)
    }

    #[tokio::test]
    async fn work_that_ends_while_the_claim_is_held_is_started_again() {
        let shutdown = CancellationToken::new();
        let claim = Claim::local(&shutdown);
        // The first run fails at once (a feed that died); the second works.
        let (runs, runner) = counted_work(&claim, &shutdown, true);
        let count = || runs.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(RESTART_WAIT * 3, async {
            while count() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the work is started again while the claim is held");
        tokio::time::sleep(RESTART_WAIT * 2).await;
        assert_eq!(count(), 2, "a work that keeps running is not started twice");
        shutdown.cancel();
        runner.await.unwrap();
    }

    #[tokio::test]
    async fn while_held_runs_work_once_per_term_and_returns_at_shutdown() {
        let shutdown = CancellationToken::new();
        let claim = Claim::new("test", None);
        let (runs, runner) = counted_work(&claim, &shutdown, false);
        let count = || runs.load(std::sync::atomic::Ordering::SeqCst);
        tokio::task::yield_now().await;
        assert_eq!(count(), 0, "not held: no work");
        for expected in 1..=2 {
            let term = claim.begin(&shutdown);
            while count() < expected {
                tokio::task::yield_now().await;
            }
            claim.end(&term);
            term.work.wait().await; // the work returned when the claim was lost
        }
        assert_eq!(count(), 2);
        shutdown.cancel();
        runner.await.unwrap();
        assert_eq!(count(), 2);
    }

    #[tokio::test]
    async fn the_terms_own_tasks_end_with_it_and_the_term_waits_for_them() {
        let shutdown = CancellationToken::new();
        let claim = Claim::new("test", None);
        let term = claim.begin(&shutdown);
        assert_eq!(term.run(async { 7 }).await, Some(7));
        let (in_place, spawned) = (term.clone(), term.clone());
        let stuck = tokio::spawn(async move { in_place.run(std::future::pending::<()>()).await });
        let task = spawned.spawn(std::future::pending());
        tokio::task::yield_now().await;
        claim.end(&term);
        assert_eq!(stuck.await.unwrap(), None, "dropped when the claim is lost");
        task.await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), term.work.wait())
            .await
            .expect("nothing of the term is left running");
    }
}
