//! Transient launch failures, as EKS's Fargate scheduler reports them, for alerts and run-books to be
//! exercised (docs/eks-behaviour.md §9, "Transient failures"): a pod annotated
//! `fargate-webhook.io/inject-fault: <fault>[:<times>|:always]` fails to launch that many times, with
//! EKS's event, before it is placed (only with `--fault-injection`); and a launch rate (`--launch-rate`,
//! `--launch-burst`) that virtual placement keeps to, as Fargate's launch quota does. Pure: no I/O, the
//! clock is passed in.

use std::time::{Duration, Instant};

/// The pod annotation that asks for injected failures.
pub const ANNOTATION: &str = "fargate-webhook.io/inject-fault";

/// A launch failure Fargate reports and its scheduler retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The micro-VM did not come up in time.
    ProvisioningTimeout,
    /// No Fargate capacity in the zone now.
    CapacityUnavailable,
    /// The account's Fargate quota (concurrent pods, or vCPUs) is reached.
    AccountQuota,
    /// The subnet's zone does not offer Fargate.
    UnsupportedZone,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::ProvisioningTimeout,
        Fault::CapacityUnavailable,
        Fault::AccountQuota,
        Fault::UnsupportedZone,
    ];

    /// The name in the annotation and the `reason` label of the metric.
    pub fn name(self) -> &'static str {
        match self {
            Fault::ProvisioningTimeout => "provisioning-timeout",
            Fault::CapacityUnavailable => "capacity-unavailable",
            Fault::AccountQuota => "account-quota",
            Fault::UnsupportedZone => "unsupported-zone",
        }
    }

    /// The `FailedScheduling` event's text: EKS's where a capture shows it, else ours [D]
    /// (docs/eks-behaviour.md §9, "Transient failures").
    pub fn note(self, namespace: &str, pod: &str, zone: &str) -> String {
        match self {
            Fault::ProvisioningTimeout => {
                format!("Pod provisioning timed out (will retry) for pod: {namespace}/{pod}")
            }
            Fault::CapacityUnavailable => {
                "Fargate capacity is unavailable at this time. Please try \
                 again later or in a different availability zone (will retry)"
                    .to_string()
            }
            Fault::AccountQuota => {
                "Your AWS account has reached the limit on the number of Fargate \
                 pods it can run concurrently (will retry)"
                    .to_string()
            }
            Fault::UnsupportedZone => {
                format!("Fargate is not supported in availability zone {zone} (will retry)")
            }
        }
    }
}

/// What the annotation asks for: which failure, and how many launches fail (`None`: every one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    pub fault: Fault,
    pub times: Option<u32>,
}

impl Injection {
    /// Whether launch attempt number `attempt` (0 for the first) fails.
    pub fn fails(&self, attempt: u32) -> bool {
        self.times.is_none_or(|times| attempt < times)
    }
}

/// `<fault>`, `<fault>:<times>` or `<fault>:always`; an error names what is accepted.
pub fn parse(value: &str) -> Result<Injection, String> {
    let (name, times) = match value.trim().split_once(':') {
        Some((name, times)) => (name, Some(times)),
        None => (value.trim(), None),
    };
    let fault = Fault::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
            format!(
                "{ANNOTATION}: unknown fault {name:?} (one of {})",
                names.join(", ")
            )
        })?;
    let times = match times {
        None => Some(1),
        Some("always") => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            format!("{ANNOTATION}: {n:?} is not a number of launches or \"always\"")
        })?),
    };
    Ok(Injection { fault, times })
}

/// Fargate's launch rate as a token bucket: `rate` launches a second, at most `burst` at once.
#[derive(Clone, Debug)]
pub struct LaunchBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl LaunchBucket {
    /// A full bucket at `now`. `rate` must be positive, `burst` at least 1.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        LaunchBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Take one launch at `now`: `Ok` when allowed, else how long until one is.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// The event of a launch the rate refused [D] (no capture shows EKS's).
pub fn throttled_note(rate: f64, burst: u32) -> String {
    format!("Fargate launch rate exceeded ({rate} per second, burst {burst}) (will retry)")
}

#[cfg(test)]
mod tests {
    use super::*;

    type Want = Result<(Fault, Option<u32>), &'static str>;

    #[test]
    fn the_annotation_names_a_fault_and_how_many_launches_fail() {
        let cases: &[(&str, Want)] = &[
            (
                "provisioning-timeout",
                Ok((Fault::ProvisioningTimeout, Some(1))),
            ),
            (
                "capacity-unavailable:3",
                Ok((Fault::CapacityUnavailable, Some(3))),
            ),
            ("account-quota:always", Ok((Fault::AccountQuota, None))),
            (
                " unsupported-zone:0 ",
                Ok((Fault::UnsupportedZone, Some(0))),
            ),
            ("timeout", Err("unknown fault \"timeout\"")),
            ("provisioning-timeout:x", Err("\"x\" is not a number")),
            ("provisioning-timeout:-1", Err("\"-1\" is not a number")),
            ("", Err("unknown fault \"\"")),
        ];
        for (value, want) in cases {
            match (parse(value), want) {
                (Ok(got), Ok((fault, times))) => {
                    assert_eq!((got.fault, got.times), (*fault, *times), "{value:?}")
                }
                (Err(got), Err(part)) => assert!(got.contains(part), "{value:?}: {got}"),
                (got, want) => panic!("{value:?}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn an_injection_fails_that_many_launches_then_lets_the_pod_through() {
        let twice = parse("provisioning-timeout:2").unwrap();
        assert_eq!(
            (0..4).map(|a| twice.fails(a)).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert!(!parse("account-quota:0").unwrap().fails(0));
        let always = parse("capacity-unavailable:always").unwrap();
        assert!((0..100).all(|a| always.fails(a)));
    }

    #[test]
    fn texts_are_ekss_where_captured() {
        assert_eq!(
            Fault::ProvisioningTimeout.note("kube-system", "coredns-1", "us-west-2a"),
            "Pod provisioning timed out (will retry) for pod: kube-system/coredns-1"
        );
        assert!(
            Fault::CapacityUnavailable
                .note("a", "b", "z")
                .starts_with("Fargate capacity is unavailable at this time.")
        );
        assert!(Fault::AccountQuota.note("a", "b", "z").starts_with(
            "Your AWS account has reached the limit on the number of Fargate pods it can run concurrently"
        ));
        assert!(
            Fault::UnsupportedZone
                .note("a", "b", "us-east-1e")
                .contains("us-east-1e")
        );
    }

    #[test]
    fn the_launch_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut bucket = LaunchBucket::new(1.0, 3, t0);
        // A burst of 3 at once, then the 4th waits a second.
        assert!(bucket.take(at(0)).is_ok());
        assert!(bucket.take(at(0)).is_ok());
        assert!(bucket.take(at(0)).is_ok());
        assert_eq!(bucket.take(at(0)), Err(Duration::from_secs(1)));
        // Half a second later half a token has come back: half a second more to wait.
        assert_eq!(bucket.take(at(500)), Err(Duration::from_millis(500)));
        assert!(bucket.take(at(1000)).is_ok());
        // A long pause refills up to the burst, not beyond.
        for _ in 0..3 {
            assert!(bucket.take(at(60_000)).is_ok());
        }
        assert!(bucket.take(at(60_000)).is_err());
        // A clock that goes back takes nothing.
        let mut bucket = LaunchBucket::new(10.0, 1, at(1000));
        assert!(bucket.take(at(0)).is_ok());
        assert!(bucket.take(at(0)).is_err());
    }
}
