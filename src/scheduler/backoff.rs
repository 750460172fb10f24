//! How long a pod or node whose reconcile failed waits before it is tried again: doubling from
//! [`FIRST`] up to [`LONGEST`], per object, reset by a success (docs/scheduler.md, "Retries").
//! Pure: no I/O.

use std::time::Duration;

/// The wait after the first failure.
pub const FIRST: Duration = Duration::from_millis(500);
/// The longest wait, however many failures: an eviction a PodDisruptionBudget refuses for an hour
/// is still tried once a minute.
pub const LONGEST: Duration = Duration::from_secs(60);

/// The wait after `failures` failures in a row (the first failure is 1).
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << doublings).min(LONGEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_up_to_the_longest() {
        let table = [
            (0, 500),
            (1, 500),
            (2, 1_000),
            (3, 2_000),
            (4, 4_000),
            (7, 32_000),
            (8, 60_000),
            (9, 60_000),
            (40, 60_000),
            (u32::MAX, 60_000),
        ];
        for (failures, millis) in table {
            assert_eq!(delay(failures), Duration::from_millis(millis), "{failures}");
        }
    }
}
