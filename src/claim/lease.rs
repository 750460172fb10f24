//! Leader election over a `coordination.k8s.io/v1` Lease. A holder renews every
//! [`Elector::renew_every`]; a Lease not renewed for its duration (`--lease-duration`) may be taken
//! by another replica.
//! Every write carries the `resourceVersion` it read, so two candidates never both win.
//! Expiry is judged as client-go judges it: from the local, monotonic time at which this process saw
//! the Lease change, never by comparing the holder's `renewTime` with the local clock, which clock
//! skew between machines would fool ([`Observation`]).

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the holder renews (and a candidate tries), at most: client-go's default retry period.
/// Shorter Leases renew four times per duration.
pub const RENEW: Duration = Duration::from_secs(2);

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Mutex<Observation>,
}

/// The Lease as this process last saw it change: its `resourceVersion`, and when (local monotonic
/// time). Pure: the caller gives the time.
#[derive(Debug, Default)]
pub struct Observation {
    seen: Option<(String, Instant)>,
}

impl Observation {
    /// Record the Lease as read at `now`; the time moves only when the Lease changed.
    pub fn see(&mut self, version: &str, now: Instant) {
        if self.seen.as_ref().is_none_or(|(v, _)| v != version) {
            self.seen = Some((version.to_owned(), now));
        }
    }

    /// No change seen for `duration` (the Lease's own duration): its holder is gone.
    pub fn expired(&self, now: Instant, duration: Duration) -> bool {
        self.seen
            .as_ref()
            .is_none_or(|(_, at)| now.saturating_duration_since(*at) >= duration)
    }
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Elector {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
            observed: Mutex::new(Observation::default()),
        }
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// How often the holder renews and a candidate tries.
    pub fn renew_every(&self) -> Duration {
        RENEW.min(self.duration / 4)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Take or keep the Lease. `Ok(true)`: this process leads until the next call's answer.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = {
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            let seen_at = Instant::now();
            observed.see(
                current
                    .metadata
                    .resource_version
                    .as_deref()
                    .unwrap_or_default(),
                seen_at,
            );
            match spec.lease_duration_seconds {
                Some(seconds) => observed.expired(
                    seen_at,
                    Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
                ),
                None => true,
            }
        };
        if !mine && !expired && spec.holder_identity.is_some() {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine { spec.acquire_time } else { None };
        let mut next = current;
        next.spec = Some(self.spec(now, transitions, acquired));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the Lease up (on shutdown), so another replica need not wait for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut current)) = self.api.get_opt(&self.name).await
            && let Some(spec) = current.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &current)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_runs_from_the_last_change_seen_here() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let mut o = Observation::default();
        assert!(o.expired(t0, d), "never seen: nothing holds it for us");
        o.see("1", t0);
        assert!(!o.expired(t0 + Duration::from_secs(14), d));
        // The same version again moves nothing: the holder stopped renewing.
        o.see("1", t0 + Duration::from_secs(10));
        assert!(o.expired(t0 + d, d));
        // A renewal (a new version) starts the wait again, from when it was seen.
        o.see("2", t0 + Duration::from_secs(20));
        assert!(!o.expired(t0 + Duration::from_secs(34), d));
        assert!(o.expired(t0 + Duration::from_secs(35), d));
    }

    #[test]
    fn a_first_look_waits_a_whole_duration_whatever_renew_time_says() {
        // A Lease renewed "an hour ago" by a clock that runs behind is not taken at first sight.
        let t0 = Instant::now();
        let mut o = Observation::default();
        o.see("7", t0);
        assert!(!o.expired(t0 + Duration::from_secs(1), Duration::from_secs(15)));
    }
}
