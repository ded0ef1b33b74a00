//! Reverse geocoding through a Nominatim-compatible
//! `GET {url}/reverse?format=jsonv2&lat=&lon=`, at most
//! `requests_per_second` requests (Nominatim's usage policy: 1 per second,
//! a User-Agent naming the application).

use super::{SERVICE_RETRY, ServiceError};
use crate::config::GeocodingConfig;
use crate::http;
use crate::memory_api::GeoPoint;
use crate::retry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub const GEOCODING_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest answer read (a `jsonv2` reverse answer is about 1 KB).
pub const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// Spaces requests at least `interval` apart (a single-slot limiter: callers
/// queue on the mutex, each takes the next slot). Hand-written rather than
/// `governor`: it is a dozen lines and runs on tokio's clock, so tests can
/// pause time.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
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

/// A Nominatim client.
#[derive(Debug)]
pub struct Geocoder {
    http: reqwest::Client,
    url: String,
    limiter: RateLimiter,
}

impl Geocoder {
    pub fn new(config: &GeocodingConfig) -> Result<Self, ServiceError> {
        let http = http::client_builder(GEOCODING_TIMEOUT, false)
            .user_agent(config.user_agent.trim())
            .build()
            .map_err(|e| ServiceError::Client(http::error_chain(&e)))?;
        Ok(Self {
            http,
            url: config.url.trim().trim_end_matches('/').to_owned(),
            limiter: RateLimiter::per_second(config.requests_per_second),
        })
    }

    /// The place name at `point`; `Ok(None)` when the geocoder knows no place there.
    pub async fn reverse(&self, point: GeoPoint) -> Result<Option<String>, ServiceError> {
        let url = format!("{}/reverse", self.url);
        let (lat, lon) = (format!("{:.6}", point.lat), format!("{:.6}", point.lon));
        let shown = format!("{}?lat={lat}&lon={lon}", http::shown_url_text(&url));
        let mut full = url::Url::parse(&url).map_err(|e| ServiceError::BadAnswer {
            url: shown.clone(),
            reason: format!("not a URL: {e}"),
            body: String::new(),
        })?;
        full.query_pairs_mut()
            .append_pair("format", "jsonv2")
            .append_pair("lat", &lat)
            .append_pair("lon", &lon)
            .append_pair("accept-language", "en");
        let attempt = || async {
            // Every attempt takes its slot: a retry keeps to the usage policy too.
            self.limiter.wait().await;
            let response = self.http.get(full.clone()).send().await.map_err(|e| ServiceError::transport(&shown, e))?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                let retry_after = http::retry_after(response.headers());
                let body = http::read_error_body(response).await;
                return Err(ServiceError::Http {
                    url: shown.clone(),
                    status,
                    body: http::excerpt(&body, &[]),
                    retry_after,
                });
            }
            ServiceError::body(&shown, response, MAX_ANSWER_BYTES).await
        };
        let retried = retry::retrying(SERVICE_RETRY, attempt, |error: &ServiceError, wait, _| {
            tracing::debug!(%error, wait_ms = wait.as_millis() as u64, "geocoding failed; retrying");
        })
        .await;
        let body = retried.result?;
        let answer: Reverse = serde_json::from_slice(&body).map_err(|e| ServiceError::BadAnswer {
            url: shown.clone(),
            reason: e.to_string(),
            body: http::excerpt(&body, &[]),
        })?;
        Ok(answer.place_name())
    }
}

/// The parts of a `jsonv2` reverse answer that name a place. Nominatim
/// answers `{"error": "Unable to geocode"}` (HTTP 200) in the open sea.
#[derive(Debug, Deserialize)]
struct Reverse {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    address: BTreeMap<String, serde_json::Value>,
}

impl Reverse {
    /// "Berlin, Mitte, Germany": the locality, the district inside it, the
    /// country; the first three parts of `display_name` when those are missing.
    fn place_name(&self) -> Option<String> {
        if self.error.is_some() {
            return None;
        }
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| self.address.get(*n).and_then(|v| v.as_str()).map(str::trim).filter(|v| !v.is_empty()))
        };
        let locality = field(&["city", "town", "village", "hamlet", "municipality", "county"]);
        let district = field(&["suburb", "city_district", "borough", "quarter", "neighbourhood"]);
        let country = field(&["country"]);
        let mut parts: Vec<&str> = Vec::new();
        for part in [locality, district, country].into_iter().flatten() {
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        if locality.is_none() && district.is_none() {
            let display = self.display_name.as_deref().map(str::trim).filter(|d| !d.is_empty());
            if let Some(display) = display {
                return Some(display.split(',').map(str::trim).take(3).collect::<Vec<_>>().join(", "));
            }
        }
        if parts.is_empty() { None } else { Some(parts.join(", ")) }
    }
}

/// Coordinates rounded to three decimals (about 110 m of latitude): nearby
/// recordings share one lookup and one cache entry.
pub fn rounded_key(point: GeoPoint) -> String {
    let round = |v: f64| {
        let r = (v * 1000.0).round() / 1000.0;
        // -0.000 and 0.000 are the same place.
        if r == 0.0 { 0.0 } else { r }
    };
    format!("{:.3},{:.3}", round(point.lat), round(point.lon))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reverse(json: &str) -> Option<String> {
        serde_json::from_str::<Reverse>(json).unwrap().place_name()
    }

    #[test]
    fn names_locality_district_country() {
        let json = r#"{"display_name":"Unter den Linden, Mitte, Berlin, Germany","address":{"road":"Unter den Linden","suburb":"Mitte","city":"Berlin","country":"Germany"}}"#;
        assert_eq!(reverse(json).as_deref(), Some("Berlin, Mitte, Germany"));
        let village = r#"{"address":{"village":"Kloster","country":"Germany","state":"MV"}}"#;
        assert_eq!(reverse(village).as_deref(), Some("Kloster, Germany"));
        let city_state = r#"{"address":{"city":"Berlin","state":"Berlin","suburb":"Berlin","country":"Germany"}}"#;
        assert_eq!(reverse(city_state).as_deref(), Some("Berlin, Germany"));
    }

    #[test]
    fn sea_and_display_name_only() {
        assert_eq!(reverse(r#"{"error":"Unable to geocode"}"#), None);
        assert_eq!(reverse(r#"{"display_name":"A, B, C, D","address":{"country":"X"}}"#).as_deref(), Some("A, B, C"));
        assert_eq!(reverse("{}"), None);
    }

    #[test]
    fn rounding_groups_nearby_points() {
        let a = rounded_key(GeoPoint { lat: 52.52001, lon: 13.40499 });
        let b = rounded_key(GeoPoint { lat: 52.52030, lon: 13.40460 });
        assert_eq!(a, "52.520,13.405");
        assert_eq!(a, b);
        assert_ne!(a, rounded_key(GeoPoint { lat: 52.5215, lon: 13.405 }));
        assert_eq!(rounded_key(GeoPoint { lat: -0.0001, lon: 0.0002 }), "0.000,0.000");
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_requests() {
        let limiter = RateLimiter::per_second(1.0);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2), "three requests take two intervals");
        tokio::time::advance(Duration::from_secs(5)).await;
        let before = Instant::now();
        limiter.wait().await;
        assert_eq!(before.elapsed(), Duration::ZERO, "an idle limiter does not make the next request wait");
    }
}
