//! The wall clock of code that waits. In production it is the system's
//! clock; in tests it starts at a given time and moves only with tokio's
//! clock, so a test that pauses tokio time (`tokio::time::pause`,
//! `advance`) moves the wall time its code reads and the sleeps it waits on
//! together, instead of sleeping for real.

use chrono::{DateTime, Utc};

/// Wall time for schedules (`now()`); waits use tokio's timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some((wall, at))`: `wall` at tokio's `at`.
    anchor: Option<(DateTime<Utc>, tokio::time::Instant)>,
}

impl Clock {
    /// The system clock (it follows NTP and suspend, as schedules must).
    pub fn system() -> Self {
        Self { anchor: None }
    }

    /// A clock that reads `start` now and then moves with tokio's clock: under
    /// paused tokio time it stands still until the test advances it.
    pub fn following_tokio(start: DateTime<Utc>) -> Self {
        Self { anchor: Some((start, tokio::time::Instant::now())) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.anchor {
            None => Utc::now(),
            Some((wall, at)) => {
                let elapsed = chrono::Duration::from_std(at.elapsed()).unwrap_or(chrono::Duration::MAX);
                wall.checked_add_signed(elapsed).unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_when_tokio_time_does() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time");
        let clock = Clock::following_tokio(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), start + chrono::Duration::seconds(3690));
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = Utc::now();
        let now = Clock::system().now();
        assert!(now >= before && now <= Utc::now());
    }
}
