//! The gates in front of the management API: the API key (constant-time
//! comparison), then the rate limit, and CORS.
//!
//! The key is checked first, so that requests without a valid key never
//! spend the budget of those with one: keyed requests share one token
//! bucket (`api.rate_limit.requests_per_minute`), unkeyed ones another, a
//! quarter of its size (key guessing stays limited, the operator is never
//! locked out by it).

use super::ApiError;
use crate::config::{ApiConfig, CorsConfig};
use crate::secrets::Secret;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The configured key, or `None` when auth is off.
#[derive(Clone)]
pub(super) struct AuthKey {
    enabled: bool,
    /// SHA-256 of the key: comparing fixed-length digests in constant time
    /// leaks neither the key nor its length.
    digest: Option<[u8; 32]>,
}

impl AuthKey {
    pub(super) fn from_config(api: &ApiConfig) -> Self {
        let digest = api.api_key.as_ref().filter(|k| !k.is_empty()).map(|k: &Secret| digest(k.expose()));
        Self { enabled: api.enable_auth, digest }
    }

    pub(super) fn accepts(&self, presented: Option<&str>) -> bool {
        match (&self.digest, presented) {
            (Some(expected), Some(given)) => bool::from(digest(given).ct_eq(expected)),
            _ => false,
        }
    }

    /// Whether a request with these headers may see what the key protects
    /// (always, when auth is off).
    pub(super) fn admits(&self, headers: &HeaderMap) -> bool {
        !self.enabled || self.accepts(presented_key(headers))
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The key a request presents: `X-API-Key: K` or `Authorization: Bearer K`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The key check and the two rate-limit buckets, in that order.
pub(super) struct Gate {
    key: AuthKey,
    keyed: Option<RateLimiter>,
    unkeyed: Option<RateLimiter>,
}

/// Unkeyed requests get this share of `requests_per_minute`.
const UNKEYED_SHARE: u32 = 4;

impl Gate {
    pub(super) fn from_config(api: &ApiConfig) -> Self {
        let limit = api.rate_limit.enabled.then_some(api.rate_limit.requests_per_minute);
        Self {
            key: AuthKey::from_config(api),
            keyed: limit.map(RateLimiter::per_minute),
            unkeyed: limit.map(|per_minute| RateLimiter::per_minute((per_minute / UNKEYED_SHARE).max(1))),
        }
    }
}

impl Gate {
    /// Takes a token from the bucket of admitted requests (the key, or a
    /// console session) or from the smaller one of the others; the wait
    /// until one is there when it is empty.
    pub(super) fn take(&self, admitted: bool) -> Result<(), Duration> {
        match if admitted { &self.keyed } else { &self.unkeyed } {
            Some(limiter) => limiter.try_take(Instant::now()),
            None => Ok(()),
        }
    }
}

pub(super) async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    // CORS preflights carry no credentials by design; the CORS layer, outside
    // this gate, answers them. An `OPTIONS` that gets here is a request like
    // any other: without the key it must not spend the key holder's budget.
    let admitted = gate.key.admits(request.headers());
    if let Err(wait) = gate.take(admitted) {
        return too_many(wait);
    }
    if admitted {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong API key: send `X-API-Key: <key>` or `Authorization: Bearer <key>`",
    )
    .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// A token bucket: `requests_per_minute` tokens, refilled continuously.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    per_second: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn per_minute(requests: u32) -> Self {
        let capacity = f64::from(requests.max(1));
        Self { capacity, per_second: capacity / 60.0, bucket: Mutex::new((capacity, Instant::now())) }
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, last) = *bucket;
        let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.per_second).min(self.capacity);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            Ok(())
        } else {
            *bucket = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }
}

/// Whole seconds to announce in `Retry-After` for `wait`.
pub(super) fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

fn too_many(wait: Duration) -> Response {
    let seconds = retry_after_seconds(wait);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests (api.rate_limit); retry in {seconds} s"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

pub(super) fn cors(config: &CorsConfig) -> CorsLayer {
    let origin = if config.origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(config.origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new().allow_origin(origin).allow_methods([Method::GET, Method::POST]).allow_headers([
        header::CONTENT_TYPE,
        header::AUTHORIZATION,
        header::HeaderName::from_static("x-api-key"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_and_reports_the_wait() {
        let limiter = RateLimiter::per_minute(2);
        let t0 = Instant::now();
        assert!(limiter.try_take(t0).is_ok());
        assert!(limiter.try_take(t0).is_ok());
        let wait = limiter.try_take(t0).unwrap_err();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(limiter.try_take(t0 + Duration::from_secs(31)).is_ok());
    }

    #[test]
    fn key_comparison() {
        let api = ApiConfig { enable_auth: true, api_key: Some(Secret::new("k-123")), ..Default::default() };
        let key = AuthKey::from_config(&api);
        assert!(key.accepts(Some("k-123")));
        assert!(!key.accepts(Some("k-124")));
        assert!(!key.accepts(Some("")));
        assert!(!key.accepts(None));
        let none = AuthKey::from_config(&ApiConfig { enable_auth: true, api_key: None, ..Default::default() });
        assert!(!none.accepts(Some("")));
    }
}
