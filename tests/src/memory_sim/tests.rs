//! The simulator's own tests: determinism, the untidiness it promises, range
//! and limit, faults, and the control endpoints.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used)]

use super::*;
use connector_core::memory_api::{parse_page, parse_timestamp};
use serde_json::{Value, json};
use std::collections::HashSet;

fn get_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

async fn list(sim: &MemorySim, query: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(format!("{}/memory/CTX123{query}", sim.url())).await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn ids_of(body: &[u8]) -> Vec<String> {
    let page = parse_page(body, u32::MAX).unwrap();
    assert!(page.rejected.is_empty(), "{:?}", page.rejected);
    page.memories.iter().map(|m| m.id.to_string()).collect()
}

fn created(item: &Value) -> DateTime<Utc> {
    parse_timestamp(item["created_at"].as_str().unwrap()).unwrap()
}

fn transcript_is_blank(item: &Value) -> bool {
    item.get("transcript").and_then(Value::as_str).is_none_or(|t| t.trim().is_empty())
}

#[test]
fn the_same_seed_gives_the_same_data() {
    let now = default_now();
    let a = generate(42, "CTX123", 300, now);
    assert_eq!(a, generate(42, "CTX123", 300, now));
    assert_eq!(serde_json::to_vec(&a).unwrap(), serde_json::to_vec(&generate(42, "CTX123", 300, now)).unwrap());
    assert_ne!(a, generate(43, "CTX123", 300, now));
    // A prefix of a larger set is the smaller set: counts can grow without reshuffling.
    assert_eq!(&generate(42, "CTX123", 500, now)[..300], &a[..]);
}

#[test]
fn ids_are_unique_per_context_and_differ_between_contexts() {
    let now = default_now();
    let ids = |ctx| -> HashSet<String> {
        let body = serde_json::to_vec(&json!({ "memories": generate(7, ctx, 2000, now) })).unwrap();
        let ids = ids_of(&body);
        assert_eq!(ids.len(), 2000);
        ids.into_iter().collect()
    };
    let (a, b) = (ids("A"), ids("B"));
    assert_eq!(a.len(), 2000, "duplicate ids");
    assert!(a.is_disjoint(&b));
}

#[test]
fn generated_data_holds_every_untidy_case_and_parses_without_rejection() {
    let now = default_now();
    let items = generate(42, "CTX123", 40, now);
    let body = serde_json::to_vec(&json!({ "memories": items })).unwrap();
    let page = parse_page(&body, 1000).unwrap();
    assert!(page.rejected.is_empty(), "{:?}", page.rejected);
    assert_eq!(page.memories.len(), 40);

    let has = |f: &dyn Fn(&Value) -> bool| items.iter().any(f);
    assert!(has(&|i| i["id"].is_string()));
    assert!(has(&|i| i["id"].is_number()));
    assert!(has(&|i| i["id"].as_str().is_some_and(|id| id.starts_with("mem_"))));
    assert!(has(&|i| i.get("transcript").is_none()));
    assert!(has(&|i| i.get("transcript") == Some(&Value::Null)));
    assert!(has(&|i| i["transcript"] == ""));
    assert!(has(&|i| i["transcript"].as_str().is_some_and(|t| !t.is_empty() && t.trim().is_empty())));
    assert!(has(&|i| i["transcript"].as_str().is_some_and(|t| t.len() >= 20_000 && t.len() <= 41_000)));
    assert!(has(&|i| i["transcript"].as_str().is_some_and(|t| t.chars().any(|c| c as u32 >= 0x1F300))));
    assert!(has(&|i| i["transcript"].as_str().is_some_and(|t| t.starts_with("# "))));
    assert!(has(&|i| i["transcript"].as_str().is_some_and(|t| t.contains("<script>"))));
    assert!(has(&|i| i["transcript"].as_str().is_some_and(|t| t.starts_with("---\n"))));
    assert!(has(&|i| i["transcript"].as_str().is_some_and(|t| t.contains("\r\n"))));
    assert!(has(&|i| i["transcript"].as_str().is_some_and(|t| t.contains(" #"))));
    assert!(has(&|i| i.get("location_lat") == Some(&Value::Null)));
    assert!(has(&|i| i.get("location_lat").is_none()));
    assert!(has(&|i| i["location_lat"] == json!(0.0) && i["location_lon"] == json!(0.0)));
    assert!(has(&|i| i["location_lat"].as_f64().is_some_and(|l| l != 0.0)));
    let created_text = |i: &Value| i["created_at"].as_str().unwrap_or_default().to_owned();
    assert!(has(&|i| created_text(i).ends_with('Z') && created_text(i).contains('.')));
    assert!(has(&|i| created_text(i).len() == 19 && created_text(i).contains('T')));
    assert!(has(&|i| created_text(i).contains(' ')));
    assert!(has(&|i| created_text(i).ends_with("+01:00")));
    assert!(has(&|i| i["audio"].is_number()));
    assert!(has(&|i| i["audio"].is_boolean()));
    assert!(has(&|i| i.get("image").is_none_or(Value::is_null)));
    for kind in ["record", "note", "photo"] {
        assert!(has(&|i| i["type"] == kind), "{kind}");
    }
    assert!(has(&|i| !["record", "note", "photo"].contains(&i["type"].as_str().unwrap_or_default())));
    assert!(has(&|i| i.get("mood").is_some() || i.get("device").is_some()));

    // Every memory has a readable time in the 25 days before `now`.
    for memory in &page.memories {
        let at = memory.created_at.unwrap();
        assert!(at <= now && at > now - chrono::Duration::days(25), "{at}");
    }
}

#[test]
fn about_fifteen_percent_have_no_transcript() {
    let items = generate(42, "CTX123", 2000, default_now());
    let blank = items.iter().filter(|i| transcript_is_blank(i)).count();
    assert!((200..=400).contains(&blank), "{blank} of 2000 without transcript");
    let long = items.iter().filter(|i| i["transcript"].as_str().is_some_and(|t| t.len() >= 20_000)).count();
    assert!((5..=50).contains(&long), "{long} long transcripts");
}

#[test]
fn malformed_items_are_only_made_when_asked_and_are_all_rejected() {
    let items = generate_malformed(42, "CTX123", 7, default_now());
    let body = serde_json::to_vec(&json!({ "memories": items })).unwrap();
    let page = parse_page(&body, 100).unwrap();
    assert_eq!((page.memories.len(), page.rejected.len()), (0, 7));
    assert!(generate_malformed(42, "CTX123", 0, default_now()).is_empty());
}

#[tokio::test]
async fn range_and_limit_select_the_newest_in_the_window() {
    let options = MemorySimOptions { contexts: vec![("CTX123".into(), 200)], ..MemorySimOptions::default() };
    let sim = MemorySim::start(options).await.unwrap();
    let items = sim.expected("CTX123");
    assert_eq!(items.len(), 200);
    let now = sim.now();
    let in_window = |days: i64| -> HashSet<String> {
        let since = now - chrono::Duration::days(days);
        let window: Vec<Value> = items.iter().filter(|i| created(i) >= since).cloned().collect();
        ids_of(&serde_json::to_vec(&json!({ "memories": window })).unwrap()).into_iter().collect()
    };

    for (range, days) in [("day", 1), ("week", 7), ("month", 30)] {
        let (status, body) = list(&sim, &format!("?range={range}&limit=1000")).await;
        assert_eq!(status, 200);
        let got: HashSet<String> = ids_of(&body).into_iter().collect();
        assert_eq!(got, in_window(days), "{range}");
    }
    let (_, body) = list(&sim, "?range=all&limit=1000").await;
    assert_eq!(ids_of(&body).len(), 200);

    // Defaults: week, limit 10, and they are the 10 newest of the week.
    let (_, body) = list(&sim, "").await;
    let got = ids_of(&body);
    assert_eq!(got.len(), 10);
    let mut week: Vec<&Value> = items.iter().filter(|i| created(i) >= now - chrono::Duration::days(7)).collect();
    week.sort_by_key(|i| std::cmp::Reverse(created(i)));
    let newest: Vec<Value> = week[..10].iter().map(|i| (*i).clone()).collect();
    let newest_ids: HashSet<String> =
        ids_of(&serde_json::to_vec(&json!({ "memories": newest })).unwrap()).into_iter().collect();
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), newest_ids);

    assert_eq!(list(&sim, "?range=year").await.0, 422);
    assert_eq!(list(&sim, "?limit=ten").await.0, 422);
    assert_eq!(sim.list_requests(), 7);
}

#[tokio::test]
async fn answers_are_shuffled_and_count_is_sometimes_missing() {
    let sim = MemorySim::start(MemorySimOptions::default()).await.unwrap();
    let mut orders = HashSet::new();
    let (mut with_count, mut without_count) = (0, 0);
    for _ in 0..20 {
        let (_, body) = list(&sim, "?range=all&limit=40").await;
        let value = get_json(&body);
        match value.get("count") {
            Some(count) => {
                assert_eq!(count, 40);
                with_count += 1;
            }
            None => without_count += 1,
        }
        orders.insert(ids_of(&body));
    }
    assert!(orders.len() > 1, "the order never changed");
    assert!(with_count > 0 && without_count > 0, "{with_count} with count, {without_count} without");
}

#[tokio::test]
async fn the_key_is_checked_and_unknown_contexts_are_404() {
    let options = MemorySimOptions { api_key: Some("k-1".into()), ..MemorySimOptions::default() };
    let sim = MemorySim::start(options).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/memory/CTX123", sim.url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&url).header("X-API-KEY", "wrong").send().await.unwrap().status(), 401);
    assert_eq!(http.get(&url).header("X-API-KEY", "k-1").send().await.unwrap().status(), 200);
    let unknown = format!("{}/memory/NOPE", sim.url());
    assert_eq!(http.get(&unknown).header("X-API-KEY", "k-1").send().await.unwrap().status(), 404);
    // The control endpoints need no key.
    assert_eq!(http.get(format!("{}/_control/stats", sim.url())).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn faults_apply_in_order_then_normal_answers_resume() {
    let sim = MemorySim::start(MemorySimOptions::default()).await.unwrap();
    sim.inject(Fault::status(503).with_times(2));
    sim.inject(Fault::status(429).with_retry_after("1"));
    sim.inject(Fault::garbage("<html>proxy</html>"));
    sim.inject(Fault::slow(Duration::from_millis(300)));

    let http = reqwest::Client::new();
    let url = format!("{}/memory/CTX123", sim.url());
    for _ in 0..2 {
        assert_eq!(http.get(&url).send().await.unwrap().status(), 503);
    }
    let limited = http.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let garbage = http.get(&url).send().await.unwrap();
    assert_eq!(garbage.status(), 200);
    assert_eq!(garbage.text().await.unwrap(), "<html>proxy</html>");
    let started = std::time::Instant::now();
    let slow = http.get(&url).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(ids_of(&slow.bytes().await.unwrap()).len(), 10);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);

    sim.inject(Fault::status(500).with_times(5));
    sim.clear_faults();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(sim.list_requests(), 7);
}

#[tokio::test]
async fn transcripts_can_be_filled_and_edited() {
    let sim = MemorySim::start(MemorySimOptions::default()).await.unwrap();
    let before = sim.expected("CTX123");
    let blank = before.iter().filter(|i| transcript_is_blank(i)).count();
    assert!(blank > 0);

    assert_eq!(sim.fill_transcripts("CTX123", None), blank);
    let after = sim.expected("CTX123");
    assert!(after.iter().all(|i| !transcript_is_blank(i)));
    for (old, new) in before.iter().zip(&after) {
        if transcript_is_blank(old) {
            let (old_at, new_at) = (old["updated_at"].as_str(), new["updated_at"].as_str().unwrap());
            let old_at = old_at.and_then(parse_timestamp).unwrap_or_else(|| created(old));
            assert!(parse_timestamp(new_at).unwrap() > old_at);
        } else {
            assert_eq!(old, new);
        }
    }
    assert_eq!(sim.fill_transcripts("CTX123", None), 0);

    // Deterministic: another simulator with the same seed fills the same text.
    let twin = MemorySim::start(MemorySimOptions::default()).await.unwrap();
    twin.fill_transcripts("CTX123", None);
    assert_eq!(twin.expected("CTX123"), after);

    let id = ids_of(&serde_json::to_vec(&json!({ "memories": [after[0].clone()] })).unwrap()).remove(0);
    assert_eq!(sim.edit_transcripts("CTX123", std::slice::from_ref(&id), " (edited)"), 1);
    let edited = &sim.expected("CTX123")[0];
    assert!(edited["transcript"].as_str().unwrap().ends_with(" (edited)"));
    assert_ne!(edited["updated_at"], after[0]["updated_at"]);
    assert_eq!(sim.edit_transcripts("CTX123", &["no-such-id".into()], "x"), 0);
    assert_eq!(sim.fill_transcripts("NOPE", None), 0);
}

#[tokio::test]
async fn control_endpoints_mirror_the_handle() {
    let sim = MemorySim::start(MemorySimOptions { contexts: vec![], ..MemorySimOptions::default() }).await.unwrap();
    let http = reqwest::Client::new();
    let control = |path: &str| format!("{}/_control/{path}", sim.url());

    let added: Value = http
        .post(control("memories"))
        .json(&json!({"ctx": "NEW", "items": [
            {"id": "a", "transcript": "", "created_at": "2025-12-18T10:00:00Z"},
            {"id": 2, "transcript": "hello", "created_at": "2025-12-18T11:00:00"},
            "not an object"
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added, json!({"added": 3, "total": 3}));
    assert_eq!(sim.expected("NEW")[2], json!("not an object"));

    let filled: Value =
        http.post(control("fill_transcripts")).json(&json!({"ctx": "NEW"})).send().await.unwrap().json().await.unwrap();
    assert_eq!(filled, json!({"filled": 1}));
    let edited: Value = http
        .post(control("edit_transcripts"))
        .json(&json!({"ctx": "NEW", "ids": ["2"], "suffix": "!"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(edited, json!({"edited": 1}));
    assert_eq!(sim.expected("NEW")[1]["transcript"], "hello!");
    let unknown = http.post(control("fill_transcripts")).json(&json!({"ctx": "X"})).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    let items: Value = http.get(control("memories/NEW")).send().await.unwrap().json().await.unwrap();
    assert_eq!(items, Value::Array(sim.expected("NEW")));

    let queued: Value = http
        .post(control("faults"))
        .json(&json!({"status": 502, "body": "bad gateway", "delay_ms": 10, "times": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued, json!({"queued": 2}));
    let list_url = format!("{}/memory/NEW?range=all", sim.url());
    let faulted = http.get(&list_url).send().await.unwrap();
    assert_eq!(faulted.status(), 502);
    assert_eq!(faulted.text().await.unwrap(), "bad gateway");
    let cleared: Value = http.delete(control("faults")).send().await.unwrap().json().await.unwrap();
    assert_eq!(cleared, json!({"cleared": 1}));
    let page = http.get(&list_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = parse_page(&page.bytes().await.unwrap(), 10).unwrap();
    assert_eq!((page.memories.len(), page.rejected.len()), (2, 1));

    let stats: Value = http.get(control("stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["list_requests"], 2);
    assert_eq!(stats["faults_queued"], 0);
    assert_eq!(stats["contexts"], json!({"NEW": 3}));
}

#[test]
fn faults_read_from_json_with_defaults() {
    let fault: Fault = serde_json::from_value(json!({"status": 429, "retry_after": "2"})).unwrap();
    assert_eq!(fault, Fault { body: String::new(), ..Fault::status(429).with_retry_after("2") });
    let fault: Fault = serde_json::from_value(json!({"delay": 1500})).unwrap();
    assert_eq!((fault.status, fault.delay, fault.times), (503, Duration::from_millis(1500), 1));
    assert_eq!(serde_json::to_value(Fault::slow(Duration::from_millis(5))).unwrap()["delay_ms"], 5);
}

#[tokio::test]
async fn ten_thousand_memories_are_served_whole() {
    let options = MemorySimOptions { contexts: vec![("BIG".into(), 10_000)], ..MemorySimOptions::default() };
    let sim = MemorySim::start(options).await.unwrap();
    let response = reqwest::get(format!("{}/memory/BIG?range=all&limit=10000", sim.url())).await.unwrap();
    let page = parse_page(&response.bytes().await.unwrap(), 10_000).unwrap();
    assert_eq!(page.memories.len(), 10_000);
    assert!(page.rejected.is_empty());
    assert!(page.possibly_truncated);
}

#[tokio::test]
async fn malformed_items_are_served_when_configured() {
    let options = MemorySimOptions { malformed: 3, ..MemorySimOptions::default() };
    let sim = MemorySim::start(options).await.unwrap();
    assert_eq!(sim.expected("CTX123").len(), 43);
    let (_, body) = list(&sim, "?range=week&limit=100").await;
    let page = parse_page(&body, 100).unwrap();
    assert_eq!(page.rejected.len(), 3);
}

#[tokio::test]
async fn media_routes_serve_small_files_for_flagged_memories() {
    let sim = MemorySim::start(MemorySimOptions { api_key: Some("k".into()), contexts: vec![], ..Default::default() })
        .await
        .unwrap();
    sim.add_raw(
        "C",
        vec![
            serde_json::json!({"id": "both", "audio": true, "image": 1, "transcript": ""}),
            serde_json::json!({"id": 7, "audio": false, "image": false, "transcript": "x"}),
        ],
    );
    let http = reqwest::Client::new();
    let get =
        |path: &str, key: &str| http.get(format!("{}/memory/C/{path}", sim.url())).header("x-api-key", key).send();
    let audio = get("both/audio", "k").await.unwrap();
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.headers()["content-type"], "audio/wav");
    assert_eq!(&audio.bytes().await.unwrap()[..4], b"RIFF");
    let image = get("both/image", "k").await.unwrap();
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(&image.bytes().await.unwrap()[..4], b"\x89PNG");
    assert_eq!(get("7/audio", "k").await.unwrap().status(), 404, "no audio flag, no audio");
    assert_eq!(get("unknown/image", "k").await.unwrap().status(), 404);
    assert_eq!(get("both/audio", "wrong").await.unwrap().status(), 401);
    assert_eq!(sim.media_requests(), 4, "the refused request is not counted");
}

#[tokio::test]
async fn hostile_items_are_served_byte_for_byte_and_read_as_promised() {
    let options = MemorySimOptions { contexts: vec![("CTX123".into(), 3)], hostile: true, ..Default::default() };
    let sim = MemorySim::start(options).await.unwrap();
    let (status, body) = list(&sim, "?limit=100&range=all").await;
    assert_eq!(status, 200);
    let items = hostile_items();
    for item in &items {
        assert!(body.windows(item.json.len()).any(|w| w == item.json.as_slice()), "{} not served as is", item.what);
    }
    let page = parse_page(&body, 100).unwrap();
    for item in &items {
        let kept = page.memories.iter().any(|m| Some(m.id.as_str()) == item.id.as_deref());
        assert_eq!(kept, item.syncs, "{}: {:?}", item.what, page.rejected);
        if !item.syncs && item.id.is_some() {
            assert!(page.rejected.iter().any(|r| r.id == item.id), "{} rejected by id: {:?}", item.what, page.rejected);
        }
    }
    assert_eq!(page.memories.len(), 3 + items.iter().filter(|i| i.syncs).count());
    assert_eq!(page.rejected.len(), items.iter().filter(|i| !i.syncs).count(), "{:?}", page.rejected);
}
