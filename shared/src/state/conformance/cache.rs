//! The key-value cache (enrichments): values come back until they expire,
//! are replaced by key, and survive a reset of a connector.

use super::ok;
use crate::ids::ConnectorId;
use crate::state::StateStore;
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::sync::Arc;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Put, get, replace, expire, keys with odd characters, a reset that keeps the cache.
pub async fn cache_round_trip(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let now = t0();
    assert_eq!(
        ok(s.cache_get("geo:v1:52.520,13.405", now).await, s, "get missing"),
        None,
        "{s:?}: an empty cache has nothing"
    );

    ok(s.cache_put("geo:v1:52.520,13.405", "Berlin, Mitte", Some(now + Duration::hours(1))).await, s, "put");
    let got = ok(s.cache_get("geo:v1:52.520,13.405", now).await, s, "get");
    assert_eq!(got.as_deref(), Some("Berlin, Mitte"), "{s:?}: a value put comes back");
    let expired = ok(s.cache_get("geo:v1:52.520,13.405", now + Duration::hours(1)).await, s, "get at expiry");
    assert_eq!(expired, None, "{s:?}: a value is gone at its expiry");

    ok(s.cache_put("geo:v1:52.520,13.405", "Berlin", Some(now + Duration::hours(2))).await, s, "replace");
    let replaced = ok(s.cache_get("geo:v1:52.520,13.405", now + Duration::hours(1)).await, s, "get replaced");
    assert_eq!(replaced.as_deref(), Some("Berlin"), "{s:?}: put replaces the value and its expiry");

    let odd_key = "enrich:v1:CTX/1:über 🎉:'\"%_\n";
    let odd_value = "{\"transcript\":\"Grüße 🎉\\nline\"}";
    ok(s.cache_put(odd_key, odd_value, None).await, s, "put forever");
    let far = now + Duration::days(36_500);
    let kept = ok(s.cache_get(odd_key, far).await, s, "get forever");
    assert_eq!(kept.as_deref(), Some(odd_value), "{s:?}: a value without expiry is kept, key and value verbatim");
    assert_eq!(
        ok(s.cache_get("enrich:v1:CTX/1", now).await, s, "prefix").as_deref(),
        None,
        "{s:?}: keys match exactly"
    );

    let connector = ConnectorId::new("cache-check");
    ok(s.reset(&connector, now).await, s, "reset");
    let after_reset = ok(s.cache_get(odd_key, now).await, s, "get after reset");
    assert_eq!(after_reset.as_deref(), Some(odd_value), "{s:?}: a connector reset keeps the shared cache");
}
