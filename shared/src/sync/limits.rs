//! How long a run may go on, and how long its lease lasts: one rule for
//! `serve` (bounded by `job_timeout_minutes`) and the `sync` Lambda (bounded
//! by the invocation's remaining time too).
//!
//! A run's time is cut in three:
//! - until `stop_at` it starts new work (enrichment calls stop earlier, at
//!   [`RunLimits::enrich_until`], so what was enriched can still be sent);
//! - until `abandon_at` it waits for work already in flight; what has not
//!   answered by then is given up, never charged to a memory, and settled
//!   by the next run;
//! - after that it only writes its last checkpoint and releases the lease.
//!
//! The lease lasts the whole budget plus [`LEASE_GRACE`], so it outlives
//! every phase: a second run of the connector cannot start while the first
//! one may still write, whatever `job_timeout_minutes` and the Lambda's
//! timeout are. (Each checkpoint is also fenced by the lease.)

use std::time::{Duration, Instant};

/// What the lease adds to the run's budget (the last checkpoint and the
/// release happen in it).
pub const LEASE_GRACE: Duration = Duration::from_secs(30);

/// The default share of a budget kept back for in-flight work and the end
/// of the run (`SYNC_SAFETY_MARGIN_SECONDS` sets it in Lambda).
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(30);

/// The instants a run keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// When the budget started.
    pub started: Instant,
    /// No new batch (and no new enrichment call) starts after this.
    pub stop_at: Instant,
    /// Work still in flight then is given up.
    pub abandon_at: Instant,
    /// The lease's time to live, from `started`.
    pub lease_ttl: Duration,
}

impl RunLimits {
    /// Limits of a run starting `now` with `job_timeout`, inside an
    /// invocation with `remaining` time (Lambda; `None` elsewhere), keeping
    /// `margin` back. The margin is at most half the budget, so a short
    /// budget still leaves time to work.
    pub fn new(now: Instant, job_timeout: Duration, remaining: Option<Duration>, margin: Duration) -> Self {
        let budget = remaining.map_or(job_timeout, |r| r.min(job_timeout));
        let margin = margin.min(budget / 2);
        // Two thirds of the margin for work in flight, one third for the
        // last checkpoint and the release.
        let stop_at = now + (budget - margin);
        let abandon_at = now + (budget - margin / 3);
        Self { started: now, stop_at, abandon_at, lease_ttl: budget.saturating_add(LEASE_GRACE) }
    }

    /// When enrichment stops calling services: two thirds of the way to
    /// `stop_at`, so the memories it enriched can still be delivered.
    pub fn enrich_until(&self) -> Instant {
        let usable = self.stop_at.saturating_duration_since(self.started);
        self.started + usable * 2 / 3
    }

    /// The lease expires after the run surely stopped writing.
    pub fn lease_expires(&self) -> Instant {
        self.started + self.lease_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the job timeout, the invocation's time and the margin:
        /// the phases come in order, all inside the budget, and the lease
        /// outlives the last of them.
        #[test]
        fn phases_are_ordered_and_the_lease_outlives_them(
            job_s in 1u64..100_000,
            remaining_ms in proptest::option::of(0u64..1_000_000),
            margin_s in 0u64..1_000,
        ) {
            let now = Instant::now();
            let job = Duration::from_secs(job_s);
            let remaining = remaining_ms.map(Duration::from_millis);
            let limits = RunLimits::new(now, job, remaining, Duration::from_secs(margin_s));
            let budget = remaining.map_or(job, |r| r.min(job));
            prop_assert!(limits.started <= limits.enrich_until());
            prop_assert!(limits.enrich_until() <= limits.stop_at);
            prop_assert!(limits.stop_at <= limits.abandon_at);
            prop_assert!(limits.abandon_at <= now + budget);
            prop_assert!(limits.lease_expires() >= now + budget + LEASE_GRACE);
            // A budget is never all margin.
            prop_assert!(limits.stop_at - now >= budget / 2);
        }
    }

    #[test]
    fn the_smaller_of_job_timeout_and_invocation_bounds_the_run() {
        let now = Instant::now();
        let lambda = RunLimits::new(now, Duration::from_secs(3600), Some(Duration::from_secs(900)), DEFAULT_MARGIN);
        assert_eq!(lambda.stop_at - now, Duration::from_secs(870));
        assert_eq!(lambda.abandon_at - now, Duration::from_secs(890));
        assert_eq!(lambda.lease_ttl, Duration::from_secs(930));
        // job_timeout_minutes below the Lambda timeout: the run keeps to it.
        let short = RunLimits::new(now, Duration::from_secs(60), Some(Duration::from_secs(900)), DEFAULT_MARGIN);
        assert_eq!((short.stop_at - now, short.lease_ttl), (Duration::from_secs(30), Duration::from_secs(90)));
    }
}
