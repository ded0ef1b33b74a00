//! End to end: `include_audio`, `include_image` and `geocoding` through the
//! real binary, against the Memory API simulator (which serves small WAV and
//! PNG files), the LightRAG simulator and fakes of OpenAI (transcription,
//! chat completions with images) and Nominatim, whose counters show that
//! each service is called once per memory.

use connector_core::transform::file_source;
use serde_json::{Value, json};
use sims::enrich_sim::{EnrichSim, Service};
use sims::harness::{CliRun, ConfigSpec, Workspace};
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};

const MEMORY_KEY: &str = "mem-key-enrich";
const OPENAI_KEY: &str = "sk-test-enrich-0042";
const CTX: &str = "ENR";

/// Five memories: two recordings without transcript at (nearly) one place in
/// Berlin, one with a photo too; a photo with text in Munich; a note at the
/// unknown place 0,0; a recording that already has its transcript; a photo
/// without words or place.
fn memories() -> Vec<Value> {
    vec![
        json!({"id": "a1", "type": "record", "audio": true, "image": false, "transcript": "",
               "location_lat": 52.5200, "location_lon": 13.4050, "created_at": "2025-12-18T08:10:00Z",
               "gcs_uri": "gs://bucket/audio/a1.wav", "gcs_uri_img": null}),
        json!({"id": "a2", "type": "record", "audio": true, "image": true,
               "location_lat": 52.52004, "location_lon": 13.40497, "created_at": "2025-12-18T19:45:00Z",
               "gcs_uri": "gs://bucket/audio/a2.wav", "gcs_uri_img": "gs://bucket/images/a2.png"}),
        json!({"id": "p1", "type": "photo", "audio": false, "image": true, "transcript": "Fresh #bread from the market",
               "location_lat": 48.137, "location_lon": 11.575, "created_at": "2025-12-17T12:00:00Z",
               "gcs_uri": null, "gcs_uri_img": "gs://bucket/images/p1.png"}),
        json!({"id": "n1", "type": "note", "audio": false, "image": false, "transcript": "Call the plumber",
               "location_lat": 0.0, "location_lon": 0.0, "created_at": "2025-12-16T10:00:00Z"}),
        json!({"id": "t1", "type": "record", "audio": true, "image": false, "transcript": "Spoken and already transcribed",
               "location_lat": null, "location_lon": null, "created_at": "2025-12-15T10:00:00Z",
               "gcs_uri": "gs://bucket/audio/t1.wav"}),
        json!({"id": "ph", "type": "photo", "audio": false, "image": true, "transcript": null,
               "created_at": "2025-12-14T10:00:00Z", "gcs_uri_img": "gs://bucket/images/ph.png"}),
    ]
}

struct Setup {
    mem: MemorySim,
    rag: LightragSim,
    fakes: EnrichSim,
    ws: Workspace,
}

async fn setup(backend: &'static str) -> Setup {
    let mem =
        MemorySim::start(MemorySimOptions { api_key: Some(MEMORY_KEY.into()), contexts: vec![], ..Default::default() })
            .await
            .expect("memory sim");
    mem.add_raw(CTX, memories());
    let rag = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    let fakes = EnrichSim::start(Some(OPENAI_KEY)).await.expect("enrichment fakes");
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.context_id = CTX.into();
    spec.strategy = "rich";
    spec.backend = backend;
    spec.state_path = if backend == "sqlite" { "state.db".into() } else { "state.json".into() };
    spec.transformation_extra =
        vec!["include_audio: true".into(), "include_image: true".into(), "geocoding: true".into()];
    spec.extra_yaml = fakes.config_section();
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws.set_env("OPENAI_API_KEY", OPENAI_KEY);
    Setup { mem, rag, fakes, ws }
}

async fn sync(ws: &Workspace) -> CliRun {
    let run = ws.run_async(&["sync", "--connector-id", "personal-memories", "--json"]).await;
    assert_eq!(run.code, 0, "sync failed\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    run
}

fn counts(run: &CliRun) -> (u64, u64, u64, u64) {
    let c = &run.json()["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(u64::MAX);
    (n("new"), n("updated"), n("unchanged"), n("skipped"))
}

fn text(rag: &LightragSim, id: &str) -> String {
    rag.document_named(&file_source(CTX, id)).unwrap_or_else(|| panic!("no document for {id}")).text
}

fn calls(f: &EnrichSim) -> (usize, usize, usize) {
    (f.calls(Service::Transcription), f.calls(Service::Vision), f.calls(Service::Geocoding))
}

#[tokio::test(flavor = "multi_thread")]
async fn transcripts_descriptions_and_places_once_per_memory() {
    let Setup { mem, rag, fakes, ws } = setup("json").await;

    let first = sync(&ws).await;
    assert_eq!(counts(&first), (6, 0, 0, 0), "{}", first.stdout);

    let a1 = text(&rag, "a1");
    assert!(
        a1.starts_with("# Voice recording in Berlin, Mitte, Germany on Thursday morning, 18 December 2025\n"),
        "{a1}"
    );
    assert!(a1.contains("Where: Berlin, Mitte, Germany (52.52000, 13.40500)\n"), "{a1}");
    assert!(
        a1.contains("## Transcript (automatic transcription of the audio recording)\n\nAutomatic transcript "),
        "{a1}"
    );
    assert!(a1.contains("Tags: #holidays\n"), "tags come from the automatic transcript too:\n{a1}");
    let a2 = text(&rag, "a2");
    assert!(a2.contains("Where: Berlin, Mitte, Germany"), "{a2}");
    assert!(a2.contains("## Photo description (automatic)\n\nA small square picture, colour code "), "{a2}");
    assert_ne!(
        a1.split("Automatic transcript ").nth(1),
        a2.split("Automatic transcript ").nth(1),
        "each recording has its own text"
    );
    let p1 = text(&rag, "p1");
    assert!(p1.contains("Where: Town 48.1/11.6, Simland (48.13700, 11.57500)"), "{p1}");
    assert!(p1.contains("## Transcript\n\nFresh #bread from the market\n"), "{p1}");
    assert!(p1.contains("## Photo description (automatic)"), "{p1}");
    let n1 = text(&rag, "n1");
    assert!(!n1.contains("Where:"), "0,0 is an unknown place, not geocoded:\n{n1}");
    let t1 = text(&rag, "t1");
    assert!(t1.contains("## Transcript\n\nSpoken and already transcribed"), "{t1}");
    assert!(!t1.contains("automatic"), "{t1}");

    let ph = text(&rag, "ph");
    assert!(
        ph.contains("(no transcript)\n\n## Photo description (automatic)"),
        "a described photo needs no words:\n{ph}"
    );

    // a1 and a2 (audio), a2, p1 and ph (images), Berlin once for two memories and Munich.
    assert_eq!(calls(&fakes), (2, 3, 2));
    assert_eq!(mem.media_requests(), 5);
    assert!(
        fakes.geocoding_user_agents().iter().all(|ua| ua == "memory-connector-tests/1.0 (contact: tests@example.org)")
    );
    assert!(fakes.problems().is_empty(), "{:?}", fakes.problems());

    let documents = rag.documents().len();
    let second = sync(&ws).await;
    assert_eq!(counts(&second), (0, 0, 6, 0), "cached enrichments give the same documents:\n{}", second.stdout);
    assert_eq!(calls(&fakes), (2, 3, 2), "no service is called again");
    assert_eq!(mem.media_requests(), 5, "no download on a no-op run");
    assert_eq!(rag.documents().len(), documents);
    assert_eq!(text(&rag, "a1"), a1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_degrades_then_the_next_run_completes_and_a_real_transcript_wins() {
    let Setup { mem, rag, fakes, ws } = setup("sqlite").await;
    fakes.set_down(Service::Transcription, true);
    fakes.set_down(Service::Geocoding, true);

    let first = sync(&ws).await;
    // a1 waits for a transcript (skip_empty_transcripts); a2 goes with its photo
    // description only; the rest go without places.
    assert_eq!(counts(&first), (5, 0, 0, 1), "{}", first.stdout);
    assert!(text(&rag, "a2").contains("(no transcript)"));
    let p1 = text(&rag, "p1");
    assert!(p1.contains("Where: 48.13700, 11.57500\n"), "no place name while the geocoder is down:\n{p1}");
    assert!(p1.contains("## Photo description (automatic)"), "the photo is described all the same:\n{p1}");
    let down_calls = calls(&fakes);
    assert_eq!(down_calls.1, 3, "the photos of a2, p1 and ph");

    fakes.set_down(Service::Transcription, false);
    fakes.set_down(Service::Geocoding, false);
    let second = sync(&ws).await;
    assert_eq!(
        counts(&second),
        (1, 2, 3, 0),
        "a1 new; a2 gains its transcript and place, p1 its place:\n{}",
        second.stdout
    );
    assert!(text(&rag, "p1").contains("Where: Town 48.1/11.6, Simland"));
    assert!(text(&rag, "a2").contains("## Photo description (automatic)"));
    assert!(text(&rag, "a1").contains("Automatic transcript "));
    let after = calls(&fakes);
    assert_eq!(after.0 - down_calls.0, 2, "a1 and a2 transcribed once each");
    assert_eq!(after.1, down_calls.1, "the photos were described once, in the first run");

    let third = sync(&ws).await;
    assert_eq!(counts(&third), (0, 0, 6, 0), "{}", third.stdout);
    assert_eq!(calls(&fakes), after);

    // The Memory API's own transcript replaces the automatic one.
    assert_eq!(mem.fill_transcripts(CTX, Some(&["a1".to_owned()])), 1);
    let fourth = sync(&ws).await;
    assert_eq!(counts(&fourth), (0, 1, 5, 0), "{}", fourth.stdout);
    let a1 = text(&rag, "a1");
    assert!(a1.contains("## Transcript\n\nTranscribed later: "), "{a1}");
    assert!(!a1.contains("Automatic transcript"), "{a1}");
    assert_eq!(calls(&fakes), after, "a real transcript needs no service");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_flags_nothing_is_called_and_no_key_is_needed() {
    let mem =
        MemorySim::start(MemorySimOptions { api_key: Some(MEMORY_KEY.into()), contexts: vec![], ..Default::default() })
            .await
            .expect("memory sim");
    mem.add_raw(CTX, memories());
    let rag = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.context_id = CTX.into();
    // The section is there, with OpenAI's URL and an unset key variable allowed to stay empty.
    spec.extra_yaml = "\nenrichment:\n  transcription:\n    api_key: \"${OPENAI_API_KEY:-}\"\n".into();
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    let run = sync(&ws).await;
    assert_eq!(counts(&run), (3, 0, 0, 3), "{}", run.stdout);
    assert_eq!(mem.media_requests(), 0);
    assert!(text(&rag, "p1").contains("Location: 48.13700, 11.57500\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_without_a_key_is_a_config_error_naming_the_field() {
    let mut spec = ConfigSpec::new("http://127.0.0.1:9", "http://127.0.0.1:9");
    spec.transformation_extra = vec!["include_audio: true".into()];
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    let run = ws.run_async(&["sync", "--connector-id", "personal-memories"]).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("enrichment.transcription.api_key"), "{}", run.stderr);
}
