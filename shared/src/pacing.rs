//! A pacer: spaces calls at least `1 / rate` apart (a single-slot limiter:
//! callers queue on the mutex, each takes the next slot). The geocoder
//! keeps to Nominatim's 1 request per second with it; `schedules apply`
//! keeps to the EventBridge Scheduler request rates. Hand-written rather
//! than `governor`: it is a dozen lines and runs on tokio's clock, so tests
//! can pause time.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// At most `rate` calls per second (a rate that is not a positive number means 1).
    pub fn per_second(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        Self { interval: Duration::from_secs_f64(1.0 / rate), next: Mutex::new(None) }
    }

    /// Waits for the next free slot and takes it.
    pub async fn wait(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        let at = next.map_or(now, |at| at.max(now));
        tokio::time::sleep_until(at).await;
        *next = Some(at + self.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_calls() {
        let pacer = Pacer::per_second(1.0);
        let start = Instant::now();
        for _ in 0..3 {
            pacer.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2), "three calls take two intervals");
        tokio::time::advance(Duration::from_secs(5)).await;
        let before = Instant::now();
        pacer.wait().await;
        assert_eq!(before.elapsed(), Duration::ZERO, "an idle pacer does not make the next call wait");
        let fast = Pacer::per_second(200.0);
        let start = Instant::now();
        for _ in 0..201 {
            fast.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1), "201 calls at 200/s take one second");
    }
}
