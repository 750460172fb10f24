//! Waiting with a deadline: nothing sleeps to assert, changes are polled until they show or a
//! cap runs out (then the test fails naming what it waited for).

use std::future::Future;
use std::time::{Duration, Instant};

/// How long polls wait for something the service promises "within 1 s".
pub const POLL_CAP: Duration = Duration::from_secs(3);

/// Poll `probe` every `every` until it yields `Ok`, or panic after `cap` naming `what` and the
/// last `Err` (when not empty). Returns the value and how long it took.
pub async fn poll_every<T, F, Fut>(
    what: &str,
    cap: Duration,
    every: Duration,
    mut probe: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return (value, started.elapsed()),
            Err(last) => last,
        };
        if started.elapsed() > cap {
            if last.is_empty() {
                panic!("{what}: still not true after {cap:?}");
            }
            panic!("{what}: still not true after {cap:?}: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Poll `probe` every 20 ms until it yields `Some`, or panic after `cap` naming `what`. Returns the
/// value and how long it took.
pub async fn eventually<T, F, Fut>(what: &str, cap: Duration, mut probe: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_every(what, cap, Duration::from_millis(20), || {
        let probe = probe();
        async move { probe.await.ok_or_else(String::new) }
    })
    .await
}

/// Check the synchronous `check` every 10 ms until it holds, or panic after `cap` naming `what`.
pub async fn until(what: &str, cap: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let (_, took) = poll_every(what, cap, Duration::from_millis(10), || {
        std::future::ready(if check() { Ok(()) } else { Err(String::new()) })
    })
    .await;
    took
}

/// [`eventually`] for a thread without a runtime: poll `probe` every `every`, blocking.
pub fn blocking_eventually<T>(
    what: &str,
    cap: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if started.elapsed() > cap {
            panic!("{what}: still not true after {cap:?}");
        }
        std::thread::sleep(every);
    }
}

/// `fut`, or a panic naming `what` when it takes longer than `cap`.
pub async fn within<T>(what: &str, cap: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(cap, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {cap:?}"))
}
