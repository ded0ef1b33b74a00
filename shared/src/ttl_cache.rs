//! A TTL cache: values kept per key for `ttl` after they were fetched. The
//! Lambda functions keep their secrets ([`crate::secrets`]) and their
//! deployed config ([`crate::serverless`]) in one of these, both for
//! `advanced.performance.cache_ttl_seconds`.
//!
//! An expired value is not dropped: a reader may still use it to ask its
//! source whether it changed (an S3 `If-None-Match`), then [`TtlCache::renew`]
//! it. Methods take `now` so tests move time by hand.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    /// Per key: when it was fetched (`None`: due now) and the value.
    entries: Mutex<HashMap<String, (Option<Instant>, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Changes the TTL (the config that sets it may be read through the cache).
    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<Instant>, V)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn young(&self, at: Option<Instant>, now: Instant) -> bool {
        at.is_some_and(|at| now.saturating_duration_since(at) < self.ttl)
    }

    /// The value of `key` while younger than the TTL at `now`.
    pub fn fresh(&self, key: &str, now: Instant) -> Option<V> {
        let entries = self.entries();
        let (at, value) = entries.get(key)?;
        self.young(*at, now).then(|| value.clone())
    }

    /// The value of `key`, however old.
    pub fn any_age(&self, key: &str) -> Option<V> {
        self.entries().get(key).map(|(_, value)| value.clone())
    }

    /// Keeps `value` for `key`, fetched at `now`.
    pub fn put(&self, key: &str, value: V, now: Instant) {
        self.entries().insert(key.to_owned(), (Some(now), value));
    }

    /// The source said the kept value is still current: its TTL starts again at `now`.
    pub fn renew(&self, key: &str, now: Instant) {
        if let Some((at, _)) = self.entries().get_mut(key) {
            *at = Some(now);
        }
    }

    /// Makes `key` due for a fetch at once (its value stays for a conditional fetch).
    pub fn expire(&self, key: &str) {
        if let Some((at, _)) = self.entries().get_mut(key) {
            *at = None;
        }
    }

    /// Whether every kept value is younger than the TTL at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.entries().values().all(|(at, _)| self.young(*at, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_after_the_ttl_and_can_be_renewed() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        cache.put("a", "one".to_owned(), t0);
        assert_eq!(cache.fresh("a", t0 + Duration::from_secs(59)).as_deref(), Some("one"));
        assert!(cache.is_fresh(t0 + Duration::from_secs(59)));
        let later = t0 + Duration::from_secs(61);
        assert_eq!(cache.fresh("a", later), None, "expired");
        assert!(!cache.is_fresh(later));
        assert_eq!(cache.any_age("a").as_deref(), Some("one"), "kept for a conditional fetch");
        cache.renew("a", later);
        assert_eq!(cache.fresh("a", later).as_deref(), Some("one"));
        assert_eq!(cache.fresh("b", later), None);
    }

    #[test]
    fn expire_makes_a_value_due_at_once() {
        let cache = TtlCache::new(Duration::from_secs(3600));
        let now = Instant::now();
        cache.put("config", 1u8, now);
        cache.expire("config");
        assert_eq!(cache.fresh("config", Instant::now()), None);
        assert_eq!(cache.any_age("config"), Some(1));
        let zero = TtlCache::new(Duration::ZERO);
        zero.put("x", 1u8, now);
        assert_eq!(zero.fresh("x", now), None, "a zero TTL caches nothing");
    }
}
