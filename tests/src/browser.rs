//! A real browser for the console's end-to-end test: Debian's headless
//! Chromium driven through `chromedriver` over the W3C WebDriver protocol
//! (JSON over loopback HTTP; the dozen commands the test uses are written
//! here on the `reqwest` the tests already have, see decision 0023).
//!
//! `tests/scripts/chromium.sh` installs both packages for `make test`; a
//! machine without them SKIPS loudly (fails under `REQUIRE_EMULATORS=1`).

use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the driver (and with it the browser) is
/// killed on drop.
pub struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    session: String,
    base: String,
    _profile: tempfile::TempDir,
}

/// A reference to an element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// The browser's binary and its driver, or `None` after saying SKIPPED.
pub fn find_browser(what: &str) -> Option<(PathBuf, PathBuf)> {
    let driver = crate::tools::require("chromedriver", what, "tests/scripts/chromium.sh")?;
    let browser = crate::tools::require("chromium", what, "tests/scripts/chromium.sh")?;
    Some((browser, driver))
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port and a headless session
    /// with a fresh profile and every background connection turned off.
    pub async fn start(browser: &Path, driver: &Path) -> Browser {
        let mut child = tokio::process::Command::new(driver)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let stdout = child.stdout.take().expect("chromedriver stdout");
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await.expect("chromedriver output") {
                // "ChromeDriver was started successfully on port 36189."
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().expect("port number");
                }
            }
            panic!("chromedriver exited without saying its port");
        })
        .await
        .expect("chromedriver did not start within 30 s");
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1300".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser.to_string_lossy(), "args": args},
        }}});
        let answer = command(&http, reqwest::Method::POST, &format!("{base}/session"), Some(capabilities)).await;
        let session = answer["sessionId"].as_str().expect("session id").to_owned();
        Browser { driver: child, http, session, base, _profile: profile }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        command(&self.http, method, &format!("{}/session/{}{path}", self.base, self.session), body).await
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The page's markup as the browser parsed it.
    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn find(&self, css: &str) -> Element {
        match self.try_find(css).await {
            Some(element) => element,
            None => panic!("no element `{css}` on {}:\n{}", self.url().await, self.source().await),
        }
    }

    pub async fn try_find(&self, css: &str) -> Option<Element> {
        self.find_all(css).await.into_iter().next()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found =
            self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        found
            .as_array()
            .map(|all| all.iter().filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned()))).collect())
            .unwrap_or_default()
    }

    /// The rendered text of an element (what a person sees).
    pub async fn text(&self, element: &Element) -> String {
        let path = format!("/element/{}/text", element.0);
        self.call(reqwest::Method::GET, &path, None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.text(&element).await
    }

    /// Clicks something that loads another page (a link, a submit button)
    /// and waits until that page has loaded: the old document carries a
    /// mark the new one lacks.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.execute("window.__leaving = true; return null;").await;
        self.call(reqwest::Method::POST, &format!("/element/{}/click", element.0), Some(json!({}))).await;
        let loaded = "return window.__leaving !== true && document.readyState === 'complete';";
        let what = format!("the page that clicking `{css}` loads");
        crate::harness::wait_until(&what, Duration::from_secs(30), || async {
            self.try_execute(loaded).await == Some(Value::Bool(true))
        })
        .await;
    }

    /// Types `text` into the field matching `css` (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{}/clear", element.0), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &format!("/element/{}/value", element.0), Some(json!({ "text": text }))).await;
    }

    /// Every cookie of the current page, HttpOnly ones included.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    /// Runs `script` in the page (WebDriver's injection, not subject to the
    /// page's Content-Security-Policy) and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// [`Browser::execute`], or `None` while the page is between documents.
    async fn try_execute(&self, script: &str) -> Option<Value> {
        let url = format!("{}/session/{}/execute/sync", self.base, self.session);
        let answer = self.http.post(url).json(&json!({"script": script, "args": []})).send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.json::<Value>().await.ok().map(|body| body["value"].clone())
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("screenshot data"))
            .expect("screenshot base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Reloads `url` until `ready(page source)` holds; that source.
    pub async fn wait_for(&self, url: &str, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let source = std::sync::Mutex::new(String::new());
        crate::harness::wait_until(what, timeout, || async {
            self.goto(url).await;
            let page = self.source().await;
            let done = ready(&page);
            *source.lock().unwrap_or_else(|p| p.into_inner()) = page;
            done
        })
        .await;
        source.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send().await;
        let _ = self.driver.kill().await;
    }
}

/// One WebDriver command; its `value`, or a panic with the driver's error.
async fn command(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success(),
        "WebDriver {method} {url} answered {status}: {} {}",
        body["value"]["error"],
        body["value"]["message"]
    );
    body["value"].clone()
}

/// Where screenshots go: `target/console-screenshots/` (or below
/// `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| crate::tools::repo_root().join("target"), PathBuf::from);
    target.join("console-screenshots")
}
