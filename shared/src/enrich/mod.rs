//! Enrichment: what a memory lacks, filled in by external services before
//! its document is rendered: a transcript from its audio
//! (`include_audio`), a description of its photo (`include_image`), a place
//! name for its coordinates (`geocoding`).
//!
//! Every result is cached in the state store, per memory (and, for places,
//! per ~100 m square), so each service is called once per memory and a
//! document stays byte-identical across runs. A failure never fails the
//! memory: the document is rendered without that part, nothing is cached,
//! and the next run tries again (the document then changes and is replaced).
//! See `docs/decisions/0013-enrichment-cache.md`.

mod geocode;
mod openai;

pub use geocode::{Geocoder, RateLimiter, rounded_key};
pub use openai::OpenAiClient;

use crate::config::{Config, ConnectorConfig, TransformationConfig};
use crate::ids::MemoryId;
use crate::memory_api::{FetchedPage, Media, MediaError, MediaKind, MediaLimits, Memory, MemoryApiClient};
use crate::retry::{self, Policy, Transient};
use crate::state::StateStore;
pub use crate::transform::Enrichment;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The enrichments of one fetched page, by memory id.
#[derive(Debug, Clone, Default)]
pub struct Enrichments {
    done: HashMap<MemoryId, Enrichment>,
    /// Memories a service was not asked about because the run's time for
    /// enrichment was up: their documents wait for the next run, rather
    /// than going out without a part and being replaced later.
    postponed: std::collections::HashSet<MemoryId>,
}

impl Enrichments {
    pub fn get(&self, id: &MemoryId) -> Option<&Enrichment> {
        self.done.get(id)
    }

    /// Not enriched this run for lack of time (see [`Enricher::enrich`]).
    pub fn is_postponed(&self, id: &MemoryId) -> bool {
        self.postponed.contains(id)
    }

    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }
}

/// What the place lookup of one memory gave.
enum Placed {
    /// The place (`None`: no geocoder, the service failed, or it has no name).
    Part(Option<Part>),
    /// Not asked: the run's time for enrichment was up.
    Late,
}

/// Why a service call failed (the memory is rendered without that part).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("{url}: no complete answer in time")]
    Timeout { url: String },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("{url} answered HTTP {status} (body: {body})")]
    Http { url: String, status: u16, body: String, retry_after: Option<Duration> },
    #[error("{url} answered something unexpected: {reason} (body: {body})")]
    BadAnswer { url: String, reason: String, body: String },
    #[error("{url}: the answer is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error(transparent)]
    Media(#[from] MediaError),
}

impl ServiceError {
    fn transport(url: &str, error: reqwest::Error) -> Self {
        if error.is_timeout() {
            ServiceError::Timeout { url: url.to_owned() }
        } else {
            ServiceError::Network { url: url.to_owned(), message: crate::http::transport_error(error) }
        }
    }

    /// A body read with `limit`, its failures as service errors.
    async fn body(url: &str, response: reqwest::Response, limit: u64) -> Result<Vec<u8>, Self> {
        crate::http::read_body(response, limit).await.map_err(|e| match e {
            crate::http::BodyError::TooLarge { limit } => ServiceError::TooLarge { url: url.to_owned(), limit },
            crate::http::BodyError::Transport(e) => ServiceError::transport(url, e),
        })
    }
}

/// Timeouts, network errors, 408, 429 and 5xx are tried once more (the
/// breaker below counts the call once); the rest is the answer.
impl Transient for ServiceError {
    fn is_transient(&self) -> bool {
        match self {
            ServiceError::Timeout { .. } | ServiceError::Network { .. } => true,
            ServiceError::Http { status, .. } => retry::classify_status(*status) == retry::StatusClass::Retryable,
            ServiceError::Client(_)
            | ServiceError::BadAnswer { .. }
            | ServiceError::TooLarge { .. }
            | ServiceError::Media(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How a service call is retried: once, and a server asking for a longer
/// pause than 10 s is not waited for that long (the memory goes without the
/// part and the next run asks again; a run has its time budget).
const SERVICE_RETRY: Policy = Policy {
    retries: 1,
    first_delay: crate::retry::FIRST_RETRY_DELAY,
    max_delay: crate::retry::MAX_RETRY_DELAY,
    multiplier: 2.0,
    max_retry_after: Duration::from_secs(10),
};

/// Where media bytes come from: the Memory API, or a test double.
#[async_trait::async_trait]
pub trait MediaSource: Send + Sync {
    async fn media(
        &self,
        context_id: &str,
        memory_id: &str,
        kind: MediaKind,
        limits: MediaLimits,
    ) -> Result<Media, MediaError>;
}

#[async_trait::async_trait]
impl MediaSource for MemoryApiClient {
    async fn media(
        &self,
        context_id: &str,
        memory_id: &str,
        kind: MediaKind,
        limits: MediaLimits,
    ) -> Result<Media, MediaError> {
        MemoryApiClient::media(self, context_id, memory_id, kind, limits).await
    }
}

/// Download bounds. 25 MB is OpenAI's upload limit for transcription; 20 MB its image limit.
pub const AUDIO_LIMITS: MediaLimits = MediaLimits { max_bytes: 25 * 1024 * 1024, timeout: Duration::from_secs(120) };
pub const IMAGE_LIMITS: MediaLimits = MediaLimits { max_bytes: 20 * 1024 * 1024, timeout: Duration::from_secs(60) };
/// Memories enriched at the same time (geocoding is serialised by its rate limiter anyway).
const CONCURRENCY: usize = 4;
/// Longest enrichment text kept in a document.
const MAX_TEXT_CHARS: usize = 20_000;

/// Whether a run may call the services or only read the cache (`--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrichMode {
    Full,
    CacheOnly,
}

/// Enriches the memories of one connector.
pub struct Enricher {
    context_id: String,
    flags: TransformationConfig,
    /// A memory that will wait for its transcript needs no place or photo yet.
    skip_empty_transcripts: bool,
    media: Arc<dyn MediaSource>,
    store: Arc<dyn StateStore>,
    transcriber: Option<OpenAiClient>,
    vision: Option<OpenAiClient>,
    geocoder: Option<Geocoder>,
    /// Serialises place lookups so two memories at one place cause one request.
    geocode_turn: tokio::sync::Mutex<()>,
    place_ttl: chrono::Duration,
    /// Consecutive failures per service in this run (transcription, vision, geocoding).
    breakers: [Breaker; 3],
    audio_limits: MediaLimits,
    image_limits: MediaLimits,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher").field("context_id", &self.context_id).field("flags", &self.flags).finish()
    }
}

/// The cached enrichment of one memory: each part remembers what it was made from.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MemoryRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transcript: Option<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    place: Option<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    /// The media fingerprint (gcs uri) or the rounded coordinates.
    source: String,
    /// `None`: the service answered "nothing there" (a place in the sea).
    text: Option<String>,
}

impl Enricher {
    /// The enricher of `connector`, or `None` when it switches no enrichment on.
    pub fn for_connector(
        config: &Config,
        connector: &ConnectorConfig,
        media: Arc<dyn MediaSource>,
        store: Arc<dyn StateStore>,
    ) -> Result<Option<Self>, ServiceError> {
        let flags = connector.transformation.clone();
        if !(flags.include_audio || flags.include_image || flags.geocoding) {
            return Ok(None);
        }
        let e = &config.enrichment;
        let ttl_secs = i64::try_from(config.advanced.performance.cache_ttl_seconds).unwrap_or(i64::MAX / 1000);
        Ok(Some(Self {
            context_id: connector.context_id.clone(),
            transcriber: if flags.include_audio { Some(OpenAiClient::transcription(&e.transcription)?) } else { None },
            vision: if flags.include_image { Some(OpenAiClient::vision(&e.vision)?) } else { None },
            geocoder: if flags.geocoding { Some(Geocoder::new(&e.geocoding)?) } else { None },
            flags,
            skip_empty_transcripts: connector.ingestion.skip_empty_transcripts,
            media,
            store,
            geocode_turn: tokio::sync::Mutex::new(()),
            place_ttl: chrono::Duration::try_seconds(ttl_secs.max(1)).unwrap_or(chrono::Duration::hours(1)),
            breakers: Default::default(),
            audio_limits: AUDIO_LIMITS,
            image_limits: IMAGE_LIMITS,
        }))
    }

    /// For tests: smaller download bounds.
    pub fn with_limits(mut self, audio: MediaLimits, image: MediaLimits) -> Self {
        self.audio_limits = audio;
        self.image_limits = image;
        self
    }

    /// The enrichments of the memories of `page` that need one. A memory
    /// whose parts are all cached costs one cache read and no download.
    /// No service is called after `until` (the run's time for enrichment,
    /// see [`crate::sync::RunLimits::enrich_until`]); the memories that
    /// still needed one are [`Enrichments::is_postponed`].
    pub async fn enrich(&self, page: &FetchedPage, mode: EnrichMode, until: Option<Instant>) -> Enrichments {
        let wanted: Vec<&Memory> = page.memories.iter().filter(|m| self.wants(m).any()).collect();
        if wanted.is_empty() {
            return Enrichments::default();
        }
        for breaker in &self.breakers {
            breaker.start_run();
        }
        // Owned items: a stream of borrowed memories makes the future `Send`
        // only for one lifetime, which a spawned run cannot use.
        let owned: Vec<Memory> = wanted.into_iter().cloned().collect();
        let results: Vec<(MemoryId, Option<Enrichment>)> = futures_util::stream::iter(owned)
            .map(|memory| async move {
                let enrichment = self.enrich_one(&memory, mode, until).await;
                (memory.id, enrichment)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut map: HashMap<MemoryId, Enrichment> = HashMap::new();
        let mut postponed = std::collections::HashSet::new();
        for (id, enrichment) in results {
            match enrichment {
                Some(e) if !e.is_empty() => {
                    map.insert(id, e);
                }
                Some(_) => {}
                None => {
                    postponed.insert(id);
                }
            }
        }
        if !postponed.is_empty() {
            info!(postponed = postponed.len(), "the run's time for enrichment is up; the rest waits for the next run");
        }
        let [t, v, g] = &self.breakers;
        info!(
            memories = map.len(),
            transcribed = t.ok(),
            transcription_failed = t.failures(),
            described = v.ok(),
            description_failed = v.failures(),
            geocoded = g.ok(),
            geocoding_failed = g.failures(),
            "enrichment done (cached parts cost no call)"
        );
        Enrichments { done: map, postponed }
    }

    fn wants(&self, memory: &Memory) -> Wants {
        let no_transcript = memory.transcript.as_deref().is_none_or(|t| t.trim().is_empty());
        let transcribe = self.flags.include_audio && memory.audio && no_transcript;
        let describe = self.flags.include_image && memory.image;
        // Such a memory waits for its transcript: nothing to spend a service on yet.
        if no_transcript && !transcribe && !describe && self.skip_empty_transcripts {
            return Wants { transcript: None, image: None, place: None };
        }
        Wants {
            transcript: transcribe.then(|| media_fingerprint(memory.gcs_uri.as_deref())),
            image: describe.then(|| media_fingerprint(memory.gcs_uri_img.as_deref())),
            place: if self.flags.geocoding { memory.location.map(rounded_key) } else { None },
        }
    }

    /// `None`: a service was still needed when `until` had passed.
    async fn enrich_one(&self, memory: &Memory, mode: EnrichMode, until: Option<Instant>) -> Option<Enrichment> {
        let wants = self.wants(memory);
        let late = || until.is_some_and(|u| Instant::now() >= u);
        let key = format!("enrich:v1:{}:{}", self.context_id, memory.id);
        let now = Utc::now();
        let mut record: MemoryRecord = match self.store.cache_get(&key, now).await {
            Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_default(),
            Ok(None) => MemoryRecord::default(),
            Err(e) => {
                warn!(memory_id = %memory.id, error = %e, "enrichment cache unreadable; enriching again");
                MemoryRecord::default()
            }
        };
        let cached = |part: &Option<Part>, source: &Option<String>| match (part, source) {
            (Some(p), Some(s)) if &p.source == s => Some(p.clone()),
            _ => None,
        };
        let mut changed = false;
        let mut out = Enrichment::default();

        if let Some(source) = &wants.transcript {
            let part = match cached(&record.transcript, &wants.transcript) {
                Some(part) => Some(part),
                None if mode == EnrichMode::Full && late() => return None,
                None if mode == EnrichMode::Full => self.transcribe(memory, source).await,
                None => None,
            };
            if let Some(part) = part {
                out.transcript = part.text.clone();
                changed |= record.transcript.as_ref().is_none_or(|p| p.source != part.source);
                record.transcript = Some(part);
            }
        }
        if let Some(source) = &wants.image {
            let part = match cached(&record.image, &wants.image) {
                Some(part) => Some(part),
                None if mode == EnrichMode::Full && late() => {
                    return self.postpone(memory, &key, &record, changed).await;
                }
                None if mode == EnrichMode::Full => self.describe(memory, source).await,
                None => None,
            };
            if let Some(part) = part {
                out.image_description = part.text.clone();
                changed |= record.image.as_ref().is_none_or(|p| p.source != part.source);
                record.image = Some(part);
            }
        }
        if let (Some(source), Some(point)) = (&wants.place, memory.location) {
            let part = match cached(&record.place, &wants.place) {
                Some(part) => Some(part),
                None => match self.place(memory, source, point, mode, until).await {
                    Placed::Part(part) => part,
                    Placed::Late => return self.postpone(memory, &key, &record, changed).await,
                },
            };
            if let Some(part) = part {
                out.place = part.text.clone();
                changed |= record.place.as_ref().is_none_or(|p| p.source != part.source);
                record.place = Some(part);
            }
        }
        if changed && mode == EnrichMode::Full {
            self.save(memory, &key, &record).await;
        }
        Some(out)
    }

    /// The memory waits for the next run; the parts made in this one (paid
    /// calls) are kept for it.
    async fn postpone(&self, memory: &Memory, key: &str, record: &MemoryRecord, changed: bool) -> Option<Enrichment> {
        if changed {
            self.save(memory, key, record).await;
        }
        None
    }

    async fn save(&self, memory: &Memory, key: &str, record: &MemoryRecord) {
        match serde_json::to_string(record) {
            Ok(json) => {
                if let Err(e) = self.store.cache_put(key, &json, None).await {
                    warn!(memory_id = %memory.id, error = %e, "could not cache the enrichment; it is computed again next run");
                }
            }
            Err(e) => {
                warn!(memory_id = %memory.id, error = %e, "could not encode the enrichment")
            }
        }
    }

    async fn transcribe(&self, memory: &Memory, source: &str) -> Option<Part> {
        self.media_part(memory, source, MediaKind::Audio).await
    }

    async fn describe(&self, memory: &Memory, source: &str) -> Option<Part> {
        self.media_part(memory, source, MediaKind::Image).await
    }

    /// Downloads the memory's recording or photo and turns it into text
    /// (transcription / description). A failure feeds the service's breaker
    /// and leaves the part out: the document goes without it and the next
    /// run tries again.
    async fn media_part(&self, memory: &Memory, source: &str, kind: MediaKind) -> Option<Part> {
        let (client, breaker, limits, stage) = match kind {
            MediaKind::Audio => (self.transcriber.as_ref()?, &self.breakers[0], self.audio_limits, "transcription"),
            MediaKind::Image => (self.vision.as_ref()?, &self.breakers[1], self.image_limits, "image_description"),
        };
        if breaker.is_open() {
            debug!(memory_id = %memory.id, stage, "skipped this run: the service keeps failing");
            return None;
        }
        let result = async {
            let media = self.media.media(&self.context_id, memory.id.as_str(), kind, limits).await?;
            match kind {
                MediaKind::Audio => client.transcribe(&media).await,
                MediaKind::Image => client.describe(&media).await,
            }
        }
        .await;
        match result {
            Ok(text) => {
                breaker.succeeded();
                info!(memory_id = %memory.id, stage, chars = text.len(), "media turned into text");
                Some(Part { source: source.to_owned(), text: clean(&text) })
            }
            Err(e) => {
                breaker.failed(&e);
                warn!(memory_id = %memory.id, stage, error = %e, "media not turned into text; the document goes without it and the next run tries again");
                None
            }
        }
    }

    /// The place of `point`: from the shared place cache (valid for
    /// `cache_ttl_seconds`), else from the geocoder.
    async fn place(
        &self,
        memory: &Memory,
        source: &str,
        point: crate::memory_api::GeoPoint,
        mode: EnrichMode,
        until: Option<Instant>,
    ) -> Placed {
        let Some(geocoder) = self.geocoder.as_ref() else { return Placed::Part(None) };
        let key = format!("geo:v1:{source}");
        let _turn = self.geocode_turn.lock().await;
        let now = Utc::now();
        if let Ok(Some(json)) = self.store.cache_get(&key, now).await
            && let Ok(text) = serde_json::from_str::<Option<String>>(&json)
        {
            return Placed::Part(Some(Part { source: source.to_owned(), text }));
        }
        let breaker = &self.breakers[2];
        if mode == EnrichMode::CacheOnly || breaker.is_open() {
            return Placed::Part(None);
        }
        // The geocoder's rate limit is waited out inside the turn: check
        // the time once the turn is ours.
        if until.is_some_and(|u| Instant::now() >= u) {
            return Placed::Late;
        }
        match geocoder.reverse(point).await {
            Ok(name) => {
                breaker.succeeded();
                let text = name.map(|n| one_line(&n));
                debug!(memory_id = %memory.id, place = ?text, "reverse geocoded");
                let expires_at: DateTime<Utc> = now + self.place_ttl;
                if let Ok(json) = serde_json::to_string(&text)
                    && let Err(e) = self.store.cache_put(&key, &json, Some(expires_at)).await
                {
                    warn!(error = %e, "could not cache a place name");
                }
                Placed::Part(Some(Part { source: source.to_owned(), text }))
            }
            Err(e) => {
                breaker.failed(&e);
                warn!(memory_id = %memory.id, stage = "geocoding", error = %e, "place not named; the document goes without it and the next run tries again");
                Placed::Part(None)
            }
        }
    }
}

/// Stops calling a service for the rest of a run after
/// [`BREAKER_THRESHOLD`] consecutive failures that are not the memory's own
/// (a missing or unusable file does not count): an outage then costs a few
/// requests, not one per memory (at one per second for Nominatim).
/// It also counts the run's successful and failed calls for the log.
#[derive(Debug, Default)]
struct Breaker {
    consecutive: std::sync::atomic::AtomicU32,
    ok: std::sync::atomic::AtomicU32,
    failures: std::sync::atomic::AtomicU32,
}

const BREAKER_THRESHOLD: u32 = 3;

impl Breaker {
    fn start_run(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.consecutive.store(0, Relaxed);
        self.ok.store(0, Relaxed);
        self.failures.store(0, Relaxed);
    }

    fn ok(&self) -> u32 {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn failures(&self) -> u32 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn is_open(&self) -> bool {
        self.consecutive.load(std::sync::atomic::Ordering::Relaxed) >= BREAKER_THRESHOLD
    }

    fn succeeded(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.consecutive.store(0, Relaxed);
        self.ok.fetch_add(1, Relaxed);
    }

    fn failed(&self, error: &ServiceError) {
        self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !matches!(error, ServiceError::Media(_)) {
            self.consecutive.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

struct Wants {
    transcript: Option<String>,
    image: Option<String>,
    place: Option<String>,
}

impl Wants {
    fn any(&self) -> bool {
        self.transcript.is_some() || self.image.is_some() || self.place.is_some()
    }
}

/// What identifies the media of a memory without downloading it: its
/// storage URI; memories without one are identified by their id alone.
fn media_fingerprint(uri: Option<&str>) -> String {
    uri.map(str::trim).filter(|u| !u.is_empty()).unwrap_or("-").to_owned()
}

/// Service text as document text: `\n` line ends, no control characters,
/// trimmed, bounded; `None` when nothing is left.
fn clean(raw: &str) -> Option<String> {
    let unified = raw.replace("\r\n", "\n").replace('\r', "\n");
    let kept: String =
        unified.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').take(MAX_TEXT_CHARS).collect();
    let trimmed = kept.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn one_line(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
