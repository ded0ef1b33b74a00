//! End to end in a real browser: headless Chromium (Debian's package,
//! through chromedriver) drives the web console of `memory-connector serve`
//! against the simulators: a wrong key cannot log in, the right one gets an
//! HttpOnly SameSite cookie, every page loads, every action (trigger, pause,
//! resume, retry failed, reset with its confirmation) shows its result in
//! the page and in the state, a hostile memory id and error show as text,
//! an action without the CSRF token is refused. Screenshots go to
//! `target/console-screenshots/`.

use connector_core::text;
use serde_json::{Value, json};
use sims::browser::{Browser, find_browser, screenshot_dir};
use sims::harness::{ConfigSpec, Workspace};
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use sims::serve::{Serve, finished};
use std::time::Duration;

const MEMORY_KEY: &str = "mem-secret-value-c0n5";
const API_KEY: &str = "api-key-for-the-console-7f3e";
const CTX: &str = "CTX123";
const ID: &str = "personal-memories";
/// What LightRAG's pipeline fails on (and quotes in its error).
const MARKER: &str = "BOOM<img src=x onerror=alert(1)>";
/// A memory id as hostile as the Memory API may send.
const HOSTILE_ID: &str = "<script>alert(\"pwned\")</script>'\"\n\u{202E}gpj.exe\u{7}";
const WAIT: Duration = Duration::from_secs(60);

/// Two attempts: the hostile memory is dead after the two runs.
fn config(mem: &MemorySim, rag: &LightragSim) -> String {
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.max_attempts = 2;
    spec.render()
        .replace(
            "  - id: \"personal-memories\"\n",
            "  - id: \"personal-memories\"\n    description: \"Voice memos, photos and places of the family account\"\n",
        )
        .replace(
            "api:\n  enabled: false\n",
            "api:\n  enabled: true\n  host: \"127.0.0.1\"\n  port: 0\n  enable_auth: true\n  api_key: \"${CONNECTOR_API_KEY}\"\n",
        )
}

/// A copy of the simulator's first memory under another id and text.
fn memory_like(mem: &MemorySim, id: &str, transcript: &str) -> Value {
    let mut memory = mem.expected(CTX).into_iter().next().expect("a memory");
    memory["id"] = json!(id);
    memory["transcript"] = json!(transcript);
    memory
}

async fn status(serve: &Serve) -> Value {
    let (code, body) = serve.get(&format!("/connectors/{ID}/status")).await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser() {
    let Some((chromium, driver)) = find_browser("the console's browser test (tests/tests/e2e_console.rs)") else {
        return;
    };
    let mem = MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        seed: 11,
        contexts: vec![(CTX.into(), 12)],
        ..Default::default()
    })
    .await
    .expect("memory sim");
    let rag = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    mem.add_raw(CTX, vec![memory_like(&mem, HOSTILE_ID, &format!("this memo makes the LLM fail: {MARKER}"))]);
    rag.fail_texts_containing(MARKER);
    let mut ws = Workspace::new();
    ws.write_config(&config(&mem, &rag));
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws.set_env("CONNECTOR_API_KEY", API_KEY);
    let serve = Serve::start(&ws, &["--api-only"]).await;
    let b = Browser::start(&chromium, &driver).await;
    let shots = screenshot_dir();
    let page_url = serve.url(&format!("/console/{ID}"));

    // Without a session every page leads to the login form; a wrong key stays there.
    b.goto(&page_url).await;
    assert_eq!(b.url().await, serve.url("/login"));
    b.screenshot(&shots.join("login.png")).await;
    b.type_into("#key", "wrong-key").await;
    b.click("main form button").await;
    assert!(b.text_of(".alert").await.contains("not the API key"));
    assert!(b.cookies().await.is_empty(), "no cookie for a wrong key");
    b.goto(&serve.url("/")).await;
    assert_eq!(b.url().await, serve.url("/login"));

    // The right key: a session cookie (not the key), never the key in a URL.
    b.type_into("#key", API_KEY).await;
    b.click("main form button").await;
    assert_eq!(b.url().await, serve.url("/"));
    let cookies = b.cookies().await;
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert_eq!(cookie["name"], "mc_session");
    assert_eq!((cookie["httpOnly"].clone(), cookie["sameSite"].clone()), (json!(true), json!("Strict")), "{cookie}");
    assert_eq!(cookie["secure"], json!(false), "plain http on loopback: {cookie}");
    let session = cookie["value"].as_str().expect("cookie value").to_owned();
    assert!(!session.contains(API_KEY));
    assert!(b.text_of("table.overview").await.contains(ID));
    assert!(!b.source().await.contains(API_KEY) && !b.source().await.contains(MEMORY_KEY));

    // Trigger two runs from the connector's page (new memories in between).
    b.click(&format!("a[href='./console/{ID}']")).await;
    assert_eq!(b.url().await, page_url);
    b.click("form[action$='/trigger'] button").await;
    assert!(b.text_of(".notice").await.contains("Run started"));
    serve.wait_history("the first run", WAIT, |h| h.len() == 1 && h.iter().all(finished)).await;
    let late: Vec<Value> =
        (1..=5).map(|i| memory_like(&mem, &format!("late-{i}"), &format!("later memo {i}"))).collect();
    mem.add_raw(CTX, late);
    b.goto(&page_url).await;
    b.click("form[action$='/trigger'] button").await;
    let history = serve.wait_history("the second run", WAIT, |h| h.len() == 2 && h.iter().all(finished)).await;
    assert_eq!(history[0]["trigger"], "api");
    let source = b.wait_for(&page_url, "two runs in the table", WAIT, |s| s.matches("<td title=").count() == 2).await;
    assert!(source.contains("<svg class=\"chart\""));

    // The hostile id and LightRAG's error show as text: nothing became markup.
    let shown = b.text_of("td.memory-id code").await;
    assert_eq!(shown, text::shown_cut(HOSTILE_ID, 120));
    assert!(b.text_of("table.failed td.error").await.contains("<img src=x onerror=alert(1)>"));
    let injected = b.execute("return document.querySelectorAll('script, img, iframe, object, embed').length").await;
    assert_eq!(injected, json!(0));
    assert!(!source.contains("<script>alert") && !source.contains('\u{202E}'));
    b.screenshot(&shots.join("connector.png")).await;
    b.goto(&serve.url("/")).await;
    b.screenshot(&shots.join("overview.png")).await;

    // Pause and resume.
    b.goto(&page_url).await;
    b.click("form[action$='/pause'] button").await;
    assert!(b.text_of(".notice").await.contains("Paused"));
    assert_eq!(status(&serve).await["paused"], json!(true));
    b.click("form[action$='/resume'] button").await;
    assert!(b.text_of(".notice").await.contains("Resumed"));
    assert_eq!(status(&serve).await["paused"], json!(false));

    // Without the CSRF token an action is refused: a form stripped of it in
    // the browser, and a hand-made request with the session cookie.
    b.execute("document.querySelector(\"form[action$='/pause'] input[name=csrf]\").remove(); return null;").await;
    b.click("form[action$='/pause'] button").await;
    assert!(b.text_of(".alert").await.contains("security token"), "{}", b.source().await);
    let forged = serve
        .http
        .post(serve.url(&format!("/console/{ID}/pause")))
        .header("Cookie", format!("mc_session={session}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("force=1")
        .send()
        .await
        .expect("forged POST");
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(status(&serve).await["paused"], json!(false), "refused means not done");

    // Retry failed: the hostile memory, dead after two attempts, is eligible
    // again with its attempts reset.
    let (_, failed) = serve.get(&format!("/connectors/{ID}/failed")).await;
    assert_eq!(failed[0]["status"], "dead", "{failed}");
    b.goto(&page_url).await;
    b.click("form[action$='/retry-failed'] button").await;
    assert!(b.text_of(".notice").await.contains("1 failed or dead memories are eligible again"));
    let (_, failed) = serve.get(&format!("/connectors/{ID}/failed")).await;
    let entry = failed.as_array().and_then(|all| all.iter().find(|e| e["memory_id"] == HOSTILE_ID)).cloned();
    let entry = entry.unwrap_or_else(|| panic!("the hostile memory is listed: {failed}"));
    assert_eq!((entry["status"].clone(), entry["attempts"].clone()), (json!("failed"), json!(0)), "{entry}");

    // Reset, with its confirmation step.
    b.click("a.danger").await;
    assert_eq!(b.url().await, format!("{page_url}/reset"));
    b.screenshot(&shots.join("reset.png")).await;
    b.type_into("#confirm", "not-the-id").await;
    b.click("main form button").await;
    assert!(b.text_of(".alert").await.contains("does not match"));
    assert!(status(&serve).await["processed"].as_u64().unwrap_or(0) > 0, "nothing reset yet");
    b.type_into("#confirm", ID).await;
    b.click("main form button").await;
    assert!(b.text_of(".notice").await.contains("Reset:"));
    let after = status(&serve).await;
    assert_eq!((after["processed"].clone(), after["failed"].clone()), (json!(0), json!(0)), "{after}");

    // Logging out ends the session.
    b.click("header form.logout button").await;
    assert_eq!(b.url().await, serve.url("/login"));
    assert!(b.cookies().await.is_empty());
    b.goto(&page_url).await;
    assert_eq!(b.url().await, serve.url("/login"));
    b.quit().await;
    eprintln!("console screenshots: {}", shots.display());
}
