//! The enrichment pieces in process: media downloads and their bounds, the
//! OpenAI-compatible clients against the fakes, and the enricher's caching
//! (one lookup per place, cache-only dry runs, nothing cached on failure).

use axum::Router;
use axum::http::header;
use axum::routing::get;
use connector_core::config::{Config, ConnectorConfig, MemoryApiConfig, TranscriptionConfig, TransformationConfig};
use connector_core::enrich::{EnrichMode, Enricher, OpenAiClient};
use connector_core::ids::MemoryId;
use connector_core::memory_api::{
    FetchedPage, GeoPoint, Media, MediaError, MediaKind, MediaLimits, Memory, MemoryApiClient,
};
use connector_core::state::StateStore;
use connector_core::state::json::JsonStore;
use sims::enrich_sim::{EnrichSim, Service};
use sims::memory_sim::media::{png, wav};
use std::sync::Arc;
use std::time::Duration;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

fn client(url: &str) -> MemoryApiClient {
    MemoryApiClient::new(&MemoryApiConfig { url: url.into(), ..Default::default() }).expect("client")
}

const LIMITS: MediaLimits = MediaLimits { max_bytes: 1000, timeout: Duration::from_millis(500) };

#[tokio::test]
async fn media_downloads_are_bounded_and_checked() {
    let app = Router::new()
        .route("/memory/C/ok/audio", get(|| async { ([(header::CONTENT_TYPE, "audio/wav; codecs=1")], wav(1)) }))
        .route("/memory/C/ok/image", get(|| async { ([(header::CONTENT_TYPE, "image/png")], png(1)) }))
        .route("/memory/C/big/audio", get(|| async { ([(header::CONTENT_TYPE, "audio/mpeg")], vec![0u8; 5000]) }))
        .route("/memory/C/html/image", get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<h1>login</h1>") }))
        .route(
            "/memory/C/slow/audio",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                ([(header::CONTENT_TYPE, "audio/ogg")], vec![1u8; 10])
            }),
        );
    let c = client(&serve(app).await);

    let audio = c.media("C", "ok", MediaKind::Audio, LIMITS).await.unwrap();
    assert_eq!(audio, Media { bytes: wav(1), content_type: "audio/wav".into() });
    let image = c.media("C", "ok", MediaKind::Image, LIMITS).await.unwrap();
    assert_eq!(image.content_type, "image/png");

    let big = c.media("C", "big", MediaKind::Audio, LIMITS).await.unwrap_err();
    assert!(matches!(big, MediaError::TooLarge { limit: 1000, .. }), "{big}");
    let html = c.media("C", "html", MediaKind::Image, LIMITS).await.unwrap_err();
    assert!(matches!(html, MediaError::WrongType { .. }), "{html}");
    assert!(html.to_string().contains("/memory/C/html/image"), "the error names the URL: {html}");
    let none = c.media("C", "nothing", MediaKind::Image, LIMITS).await.unwrap_err();
    assert!(matches!(none, MediaError::NotFound { .. }), "{none}");
    let started = std::time::Instant::now();
    let slow = c.media("C", "slow", MediaKind::Audio, LIMITS).await.unwrap_err();
    assert!(matches!(slow, MediaError::Timeout { .. }), "{slow}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn openai_clients_speak_the_api_and_keep_the_key_out_of_errors() {
    let fakes = EnrichSim::start(Some("sk-right")).await.unwrap();
    let config = |key: &str| TranscriptionConfig {
        url: fakes.openai_url(),
        model: "whisper-1".into(),
        api_key: Some(connector_core::secrets::Secret::new(key)),
    };
    let audio = Media { bytes: wav(3), content_type: "audio/wav".into() };
    let text = OpenAiClient::transcription(&config("sk-right")).unwrap().transcribe(&audio).await.unwrap();
    assert_eq!(text, EnrichSim::transcript_for(&wav(3)));

    let wrong = OpenAiClient::transcription(&config("sk-wrong-key")).unwrap().transcribe(&audio).await.unwrap_err();
    let message = wrong.to_string();
    assert!(message.contains("HTTP 401") && message.contains("/audio/transcriptions"), "{message}");
    assert!(!message.contains("sk-wrong-key"), "{message}");

    let vision = connector_core::config::VisionConfig {
        url: fakes.openai_url(),
        model: "gpt-4o-mini".into(),
        api_key: Some(connector_core::secrets::Secret::new("sk-right")),
    };
    let image = Media { bytes: png(9), content_type: "image/png".into() };
    let description = OpenAiClient::vision(&vision).unwrap().describe(&image).await.unwrap();
    assert_eq!(description, EnrichSim::description_for(&png(9)));
    assert!(fakes.problems().is_empty(), "{:?}", fakes.problems());
}

fn memory(id: &str, lat: f64, lon: f64) -> Memory {
    Memory {
        id: MemoryId::new(id),
        kind: Some("note".into()),
        audio: false,
        image: false,
        transcript: Some("text".into()),
        location: Some(GeoPoint { lat, lon }),
        created_at: None,
        updated_at: None,
        gcs_uri: None,
        gcs_uri_img: None,
    }
}

struct NoMedia;

#[async_trait::async_trait]
impl connector_core::enrich::MediaSource for NoMedia {
    async fn media(&self, _: &str, _: &str, _: MediaKind, _: MediaLimits) -> Result<Media, MediaError> {
        Err(MediaError::NotFound { url: "none".into(), kind: "audio" })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_are_looked_up_once_and_dry_runs_only_read_the_cache() {
    let fakes = EnrichSim::start(None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.unwrap());
    let mut config = Config::default();
    config.enrichment.geocoding.url = fakes.nominatim_url();
    config.enrichment.geocoding.requests_per_second = 50.0;
    let connector = ConnectorConfig {
        context_id: "C".into(),
        transformation: TransformationConfig { geocoding: true, ..Default::default() },
        ..Default::default()
    };
    let enricher = Enricher::for_connector(&config, &connector, Arc::new(NoMedia), store.clone()).unwrap().unwrap();

    let page =
        |memories: Vec<Memory>| FetchedPage { memories, rejected: vec![], possibly_truncated: false, attempts: 1 };
    // Three memories within ~100 m, one far away.
    let first = page(vec![
        memory("m1", 52.5200, 13.4050),
        memory("m2", 52.5202, 13.4049),
        memory("m3", 52.51996, 13.40502),
        memory("far", 48.137, 11.575),
    ]);

    let dry = enricher.enrich(&first, EnrichMode::CacheOnly, None).await;
    assert!(dry.is_empty(), "a dry run calls nothing and finds nothing cached");
    assert_eq!(fakes.calls(Service::Geocoding), 0);

    fakes.set_down(Service::Geocoding, true);
    let down = enricher.enrich(&first, EnrichMode::Full, None).await;
    assert!(down.is_empty(), "an outage gives no places");
    let tried = fakes.calls(Service::Geocoding);
    assert_eq!(tried, 3 * 2, "each lookup is tried twice; the third failure in a row stops them for this run");
    fakes.set_down(Service::Geocoding, false);

    let enriched = enricher.enrich(&first, EnrichMode::Full, None).await;
    assert_eq!(
        fakes.calls(Service::Geocoding) - tried,
        2,
        "one lookup for the three nearby memories, one for the far one"
    );
    for id in ["m1", "m2", "m3"] {
        assert_eq!(enriched.get(&MemoryId::new(id)).and_then(|e| e.place.as_deref()), Some("Berlin, Mitte, Germany"));
    }
    assert_eq!(enriched.get(&MemoryId::new("far")).and_then(|e| e.place.as_deref()), Some("Town 48.1/11.6, Simland"));

    let again = enricher.enrich(&first, EnrichMode::CacheOnly, None).await;
    assert_eq!(again.len(), 4, "the cache answers a dry run now");
    let later = enricher.enrich(&page(vec![memory("m4", 52.52001, 13.40501)]), EnrichMode::Full, None).await;
    assert_eq!(later.len(), 1);
    assert_eq!(fakes.calls(Service::Geocoding) - tried, 2, "a new memory at a known place needs no lookup");
}

struct Wavs;

#[async_trait::async_trait]
impl connector_core::enrich::MediaSource for Wavs {
    async fn media(&self, _: &str, id: &str, _: MediaKind, _: MediaLimits) -> Result<Media, MediaError> {
        Ok(Media { bytes: wav(id.len() as u64), content_type: "audio/wav".into() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_is_made_once_per_recording_and_again_for_a_new_one() {
    let fakes = EnrichSim::start(None).await.expect("fakes");
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn StateStore> =
        Arc::new(connector_core::state::sqlite::SqliteStore::open(&dir.path().join("state.db")).await.expect("sqlite"));
    let mut config = Config::default();
    config.enrichment.transcription.url = fakes.openai_url();
    let connector = ConnectorConfig {
        context_id: "C".into(),
        transformation: TransformationConfig { include_audio: true, ..Default::default() },
        ..Default::default()
    };
    let enricher = Enricher::for_connector(&config, &connector, Arc::new(Wavs), store).expect("enricher").expect("on");
    let recording = |uri: &str, transcript: Option<&str>| {
        let mut m = memory("rec", 0.0, 0.0);
        m.location = None;
        m.audio = true;
        m.transcript = transcript.map(str::to_owned);
        m.gcs_uri = Some(uri.into());
        FetchedPage { memories: vec![m], rejected: vec![], possibly_truncated: false, attempts: 1 }
    };
    let id = MemoryId::new("rec");
    let first = enricher.enrich(&recording("gs://b/rec-1.wav", None), EnrichMode::Full, None).await;
    let text = first.get(&id).and_then(|e| e.transcript.clone()).expect("transcribed");
    assert_eq!(text, EnrichSim::transcript_for(&wav(3)));
    let again = enricher.enrich(&recording("gs://b/rec-1.wav", None), EnrichMode::Full, None).await;
    assert_eq!(again.get(&id).and_then(|e| e.transcript.clone()), Some(text));
    assert_eq!(fakes.calls(Service::Transcription), 1, "the same recording is not transcribed twice");
    enricher.enrich(&recording("gs://b/rec-2.wav", None), EnrichMode::Full, None).await;
    assert_eq!(fakes.calls(Service::Transcription), 2, "a new recording is");
    let real = enricher.enrich(&recording("gs://b/rec-3.wav", Some("spoken words")), EnrichMode::Full, None).await;
    assert!(real.is_empty(), "a memory with its own transcript needs no transcription");
    assert_eq!(fakes.calls(Service::Transcription), 2);
}

/// Issue 15, item 5: the OpenAI-compatible and geocoding answers were read
/// without a limit; an endless one now fails the call with the limit named.
#[tokio::test]
async fn endless_service_answers_stop_at_their_limits() {
    let server = sims::hostile_http::EndlessServer::json().await.unwrap();
    let transcription = TranscriptionConfig { url: server.url(), model: "whisper-1".into(), api_key: None };
    let audio = Media { bytes: wav(3), content_type: "audio/wav".into() };
    let err = OpenAiClient::transcription(&transcription).unwrap().transcribe(&audio).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("/audio/transcriptions") && message.contains("limit of 8388608 bytes"), "{message}");

    let geocoding =
        connector_core::config::GeocodingConfig { url: server.url(), requests_per_second: 100.0, ..Default::default() };
    let geocoder = connector_core::enrich::Geocoder::new(&geocoding).unwrap();
    let err = geocoder.reverse(GeoPoint { lat: 1.0, lon: 2.0 }).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("/reverse") && message.contains("limit of 1048576 bytes"), "{message}");
    assert!(server.bytes_sent() < 64 * 1024 * 1024, "kept reading: {} bytes", server.bytes_sent());
}

/// Recordings whose download ends only once the run's enrichment time is up
/// (a long transcription that crosses `enrich_until`).
struct WavsPastDeadline(std::time::Instant);

#[async_trait::async_trait]
impl connector_core::enrich::MediaSource for WavsPastDeadline {
    async fn media(&self, _: &str, id: &str, _: MediaKind, _: MediaLimits) -> Result<Media, MediaError> {
        while std::time::Instant::now() < self.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Media { bytes: wav(id.len() as u64), content_type: "audio/wav".into() })
    }
}

/// A transcript made before the run's time for enrichment ran out is kept
/// when the memory's place has to wait for the next run: the next run pays
/// for the place, not for the recording again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_made_before_a_postponed_place_is_not_paid_for_twice() {
    let fakes = EnrichSim::start(None).await.expect("fakes");
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn StateStore> = Arc::new(JsonStore::open(&dir.path().join("state.json")).await.expect("store"));
    let mut config = Config::default();
    config.enrichment.transcription.url = fakes.openai_url();
    config.enrichment.geocoding.url = fakes.nominatim_url();
    config.enrichment.geocoding.requests_per_second = 50.0;
    let connector = ConnectorConfig {
        context_id: "C".into(),
        transformation: TransformationConfig { include_audio: true, geocoding: true, ..Default::default() },
        ..Default::default()
    };
    let until = std::time::Instant::now() + Duration::from_millis(200);
    let enricher = Enricher::for_connector(&config, &connector, Arc::new(WavsPastDeadline(until)), store)
        .expect("enricher")
        .expect("on");
    let mut m = memory("rec", 52.52, 13.405);
    m.audio = true;
    m.transcript = None;
    m.gcs_uri = Some("gs://b/rec.wav".into());
    let page = FetchedPage { memories: vec![m], rejected: vec![], possibly_truncated: false, attempts: 1 };
    let id = MemoryId::new("rec");

    let first = enricher.enrich(&page, EnrichMode::Full, Some(until)).await;
    assert!(first.is_postponed(&id), "the place was still needed when the time was up");
    assert_eq!(fakes.calls(Service::Transcription), 1);
    assert_eq!(fakes.calls(Service::Geocoding), 0);

    let next = enricher.enrich(&page, EnrichMode::Full, None).await;
    let enrichment = next.get(&id).expect("enriched");
    assert_eq!(enrichment.transcript.as_deref(), Some(EnrichSim::transcript_for(&wav(3)).as_str()));
    assert!(enrichment.place.is_some());
    assert_eq!(fakes.calls(Service::Transcription), 1, "the recording made in the first run is not transcribed again");
    assert_eq!(fakes.calls(Service::Geocoding), 1);
}
