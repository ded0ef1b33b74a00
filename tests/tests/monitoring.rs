//! The monitoring files are code. The alert rules (`infra/prometheus`) pass
//! `promtool check rules` and their unit tests; the Grafana dashboard
//! (`infra/grafana`) is well formed, its queries parse and name only metrics
//! the binary exposes; and two scrapes of a real `serve` run against the
//! simulators, fed to promtool as input series, make the configuration
//! reference's queries and every dashboard query return data and fire
//! exactly the alerts that the runs between the scrapes called for.

use connector_core::telemetry::metrics::{ErrorType, FAMILIES, Family};
use serde_json::{Value, json};
use sims::harness::{ConfigSpec, Workspace};
use sims::lightrag_sim::{LightragSim, LightragSimOptions, SimFault, SimRoute};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use sims::serve::{Serve, finished};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

const RULES: &str = "infra/prometheus/memory-connector.rules.yml";
const RULE_TESTS: &str = "infra/prometheus/memory-connector.rules.test.yml";
const SCRAPE_CONFIG: &str = "infra/prometheus/prometheus.yml";
const DASHBOARD: &str = "infra/grafana/memory-connector.json";
const ID: &str = "personal-memories";
/// The labels Prometheus adds to every scraped series (the rules' scrape job).
const TARGET: [(&str, &str); 2] = [("job", "memory-connector"), ("instance", "server:9623")];

fn promtool(what: &str) -> Option<PathBuf> {
    sims::tools::require("promtool", what, "tests/scripts/promtool.sh")
}

/// Runs promtool; panics with its output unless it succeeds.
fn run_promtool(promtool: &Path, args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new(promtool).args(args).current_dir(dir).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} failed:\n{text}", args.join(" "));
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = promtool("the alert rule checks") else { return };
    let root = sims::tools::repo_root();
    let checked = run_promtool(&promtool, &["check", "rules", RULES], &root);
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    let tested = run_promtool(&promtool, &["test", "rules", RULE_TESTS], &root);
    assert!(tested.contains("SUCCESS"), "{tested}");
    run_promtool(&promtool, &["check", "config", SCRAPE_CONFIG], &root);
}

// ---------------------------------------------------------------- dashboard

fn dashboard() -> Value {
    let text = std::fs::read_to_string(sims::tools::repo_root().join(DASHBOARD)).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// `(panel title, refId, expr)` of every query, the dashboard's variables
/// replaced by what "All" and a 1-minute scrape give.
fn queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let expr = expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*");
            queries.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                target["refId"].as_str().unwrap_or_default().to_owned(),
                expr.replace("$connector", ".*"),
            ));
        }
    }
    queries
}

/// The metric names in a PromQL expression: its identifiers with our prefix.
fn metric_names(expr: &str) -> BTreeSet<String> {
    identifiers(expr)
        .into_iter()
        .filter(|(_, word)| word.starts_with("memory_connector_") || word.starts_with("process_"))
        .map(|(_, word)| word)
        .collect()
}

/// Identifiers with their byte offsets (label values in quotes skipped).
fn identifiers(expr: &str) -> Vec<(usize, String)> {
    let bytes = expr.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':') {
                i += 1;
            }
            found.push((start, expr[start..i].to_owned()));
        } else {
            i += 1;
        }
    }
    found
}

/// The label names an expression selects on, per metric (`metric{a="x"}`),
/// and those it groups by (`by (a, b)`).
fn label_uses(expr: &str) -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let mut matchers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut grouping = BTreeSet::new();
    for (start, word) in identifiers(expr) {
        let rest = &expr[start + word.len()..];
        if word.starts_with("memory_connector_") && rest.starts_with('{') {
            let inside = &rest[1..rest.find('}').expect("closed selector")];
            let names = matchers.entry(word).or_default();
            for (_, name) in identifiers(inside) {
                names.insert(name);
            }
        } else if word == "by" || word == "without" {
            let rest = rest.trim_start();
            if let Some(list) = rest.strip_prefix('(') {
                for name in list[..list.find(')').expect("closed grouping")].split(',') {
                    grouping.insert(name.trim().to_owned());
                }
            }
        }
    }
    (matchers, grouping)
}

/// What the binary exposes: each family's name, with `_bucket`, `_sum` and
/// `_count` for histograms.
fn exposed_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for family in FAMILIES {
        let name = family.name();
        if matches!(family, Family::Histogram(_)) {
            names.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
        } else {
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn the_grafana_dashboard_is_well_formed_and_names_only_exposed_metrics() {
    let dashboard = dashboard();
    for field in ["uid", "title", "schemaVersion", "panels", "templating", "time"] {
        assert!(!dashboard[field].is_null(), "the dashboard needs {field}");
    }
    let variables: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, BTreeSet::from(["datasource", "job", "instance", "connector"]));

    let exposed = exposed_names();
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64().expect("numeric id")), "{title}: duplicate panel id");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().expect("gridPos.x"), grid["w"].as_u64().expect("gridPos.w"));
        assert!(x + w <= 24 && grid["h"].as_u64().is_some_and(|h| h > 0), "{title}: gridPos {grid}");
        if panel["type"] == "row" {
            continue;
        }
        assert!(["stat", "timeseries"].contains(&panel["type"].as_str().unwrap_or_default()), "{title}: type");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}: use the datasource variable");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let refs: BTreeSet<&str> = targets.iter().filter_map(|t| t["refId"].as_str()).collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds must be unique");
    }
    for (title, ref_id, expr) in queries(&dashboard) {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{title} {ref_id}: no metric in {expr}");
        for name in &names {
            assert!(exposed.contains(name), "{title} {ref_id}: {name} is not exposed by the binary");
        }
        used.extend(names);
    }
    // The families an operator looks at first all have a panel.
    for name in [
        "memory_connector_syncs_total",
        "memory_connector_errors_total",
        "memory_connector_sync_duration_seconds",
        "memory_connector_memories_processed",
        "memory_connector_ledger_memories",
        "memory_connector_lightrag_request_duration_seconds_count",
    ] {
        assert!(used.contains(name), "no panel shows {name}");
    }

    // Every query parses: promtool checks them as recording rules.
    let Some(promtool) = promtool("the PromQL syntax check of the dashboard") else { return };
    let rules: Vec<Value> = queries(&dashboard)
        .iter()
        .enumerate()
        .map(|(i, (_, _, expr))| json!({ "record": format!("dashboard:query_{i}"), "expr": expr }))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, json!({ "groups": [{ "name": "dashboard", "rules": rules }] }).to_string()).expect("write");
    run_promtool(&promtool, &["check", "rules", file.to_str().expect("utf-8")], dir.path());
}

// ------------------------------------------------------------- real scrape

/// One sample of the text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: String,
}

impl Sample {
    /// The series as a PromQL selector, with the scrape target's labels.
    fn selector(&self) -> String {
        let mut labels = self.labels.clone();
        labels.extend(TARGET.map(|(k, v)| (k.to_owned(), v.to_owned())));
        let parts: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
            .collect();
        format!("{}{{{}}}", self.name, parts.join(","))
    }
}

/// Parses the samples of a text exposition (0.0.4).
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).expect("a sample line");
        let name = line[..name_end].to_owned();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut key = String::new();
            loop {
                let Some((i, c)) = chars.next() else { panic!("unterminated labels: {line}") };
                match c {
                    '}' => {
                        rest = &inner[i + 1..];
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '"' => break,
                                '\\' => match chars.next().map(|(_, c)| c) {
                                    Some('n') => value.push('\n'),
                                    Some(other) => value.push(other),
                                    None => panic!("{line}"),
                                },
                                other => value.push(other),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    other => key.push(other),
                }
            }
        }
        samples.push(Sample { name, labels, value: rest.trim().to_owned() });
    }
    samples
}

/// Promtool input series: every series of either scrape, the first scrape at
/// 0m and the second at 1m (`_` where a series did not exist yet).
fn input_series(first: &[Sample], second: &[Sample]) -> Vec<Value> {
    let mut series: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for s in first {
        series.entry(s.selector()).or_default().0 = Some(s.value.clone());
    }
    for s in second {
        series.entry(s.selector()).or_default().1 = Some(s.value.clone());
    }
    series
        .into_iter()
        .map(|(selector, (a, b))| {
            let values = format!("{} {}", a.as_deref().unwrap_or("_"), b.as_deref().unwrap_or("_"));
            json!({ "series": selector, "values": values })
        })
        .collect()
}

/// A promql_expr_test that passes when `expr` returns at least one sample.
fn returns_data(expr: &str) -> Value {
    json!({ "expr": format!("count({expr}) > bool 0"), "eval_time": "1m", "exp_samples": [{ "labels": "{}", "value": 1 }] })
}

fn firing(alert: &str, severity: &str, extra: (&str, &str)) -> Value {
    let mut labels = BTreeMap::from([
        ("__name__", "ALERTS"),
        ("alertname", alert),
        ("alertstate", "firing"),
        ("severity", severity),
        extra,
    ]);
    labels.extend(TARGET);
    let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    json!({ "labels": format!("{{{}}}", text.join(",")), "value": 1 })
}

/// Starts run number `runs` once the previous one has let go of the
/// connector (its history record is written a moment before), and waits for it.
async fn trigger_and_wait(serve: &Serve, runs: usize) -> Vec<Value> {
    let started = std::time::Instant::now();
    while serve.get("/health").await.1["active_jobs"] != 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the previous run did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = serve.post(&format!("/connectors/{ID}/trigger")).await;
    assert_eq!(status, 202, "{body}");
    serve
        .wait_history("the triggered run", Duration::from_secs(60), |h| h.len() == runs && h.iter().all(finished))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_scrape_answers_the_reference_queries_the_dashboard_and_the_alerts() {
    let Some(promtool) = promtool("the rules over a real scrape") else { return };
    let mem = MemorySim::start(MemorySimOptions {
        api_key: Some("mem-key-for-monitoring-1234".into()),
        seed: 11,
        contexts: vec![("CTX123".into(), 8)],
        ..Default::default()
    })
    .await
    .expect("memory sim");
    let rag = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    let mut spec = ConfigSpec::new(&mem.url(), &rag.url());
    spec.max_attempts = 2;
    let yaml = spec.render().replace(
        "api:\n  enabled: false\n",
        "api:\n  enabled: true\n  host: \"127.0.0.1\"\n  port: 0\n  api_key: \"${CONNECTOR_API_KEY}\"\n\
         monitoring:\n  prometheus:\n    enabled: true\n    port: 0\n    path: /metrics\n",
    );
    let mut ws = Workspace::new();
    ws.write_config(&yaml);
    ws.set_env("MEMORY_API_KEY", "mem-key-for-monitoring-1234");
    ws.set_env("CONNECTOR_API_KEY", "api-key-for-monitoring-5678");
    let serve = Serve::start(&ws, &["--api-only"]).await;
    let first = serve.metrics_text().await;

    // 1: LightRAG refuses the health check: the run fails before sending.
    rag.inject(SimFault::new(SimRoute::Health, 400));
    let history = trigger_and_wait(&serve, 1).await;
    assert_eq!(history[0]["status"], "failed", "{history:?}");
    // 2: everything is delivered.
    let history = trigger_and_wait(&serve, 2).await;
    assert_eq!(history[0]["status"], "completed", "{history:?}");
    // 3 and 4: a new memory whose document LightRAG fails in its pipeline,
    // twice (max_attempts 2): then it is dead.
    let mut boom = mem.expected("CTX123").into_iter().next().expect("a memory");
    boom["id"] = json!("boom-1");
    boom["transcript"] = json!("this memo makes the LLM fail: BOOM");
    mem.add_raw("CTX123", vec![boom]);
    rag.fail_texts_containing("BOOM");
    trigger_and_wait(&serve, 3).await;
    let history = trigger_and_wait(&serve, 4).await;
    assert!(history.iter().take(2).all(|r| r["status"] == "partial"), "{history:?}");
    let second = serve.metrics_text().await;

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("metrics.txt"), &second).expect("write");
    let out = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(dir.path().join("metrics.txt")).expect("metrics file"))
        .output()
        .expect("run promtool");
    assert!(out.status.success(), "promtool check metrics:\n{}", String::from_utf8_lossy(&out.stdout));

    let (first, second) = (parse_exposition(&first), parse_exposition(&second));
    let value = |name: &str, labels: &[(&str, &str)]| {
        second
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("{name}{labels:?} is not in the scrape"))
    };
    assert_eq!(value("memory_connector_ledger_memories", &[("status", "dead")]), "1");
    assert_eq!(value("memory_connector_errors_total", &[("error_type", "lightrag_failed")]), "1");
    assert_eq!(value("memory_connector_syncs_total", &[("status", "success")]), "1");

    // Every dashboard selector uses labels the real series carry.
    let mut labels_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in &second {
        labels_of.entry(s.name.as_str()).or_default().extend(s.labels.keys().map(String::as_str));
    }
    let dashboard = dashboard();
    for (title, ref_id, expr) in queries(&dashboard) {
        let (matchers, grouping) = label_uses(&expr);
        let mut known: BTreeSet<&str> = TARGET.iter().map(|(k, _)| *k).collect();
        for (metric, names) in &matchers {
            let real = labels_of.get(metric.as_str()).unwrap_or_else(|| panic!("{title}: {metric} not scraped"));
            known.extend(real.iter());
            for name in names {
                let target = TARGET.iter().any(|(k, _)| k == name);
                assert!(real.contains(name.as_str()) || target, "{title} {ref_id}: {metric} has no label {name}");
            }
        }
        for name in &grouping {
            assert!(known.contains(name.as_str()), "{title} {ref_id}: no metric of {expr} has a label {name}");
        }
    }

    let sync_duration = value("memory_connector_sync_duration_seconds", &[("connector_id", ID)]);
    let mut checks = vec![
        // The configuration reference's three queries, as written there.
        returns_data("rate(memory_connector_syncs_total{status=\"success\"}[5m]) > 0"),
        json!({
            "expr": "avg(memory_connector_sync_duration_seconds) by (connector_id)",
            "eval_time": "1m",
            "exp_samples": [{ "labels": format!("{{connector_id=\"{ID}\"}}"), "value": sync_duration.parse::<f64>().expect("a number") }],
        }),
        json!({
            "expr": "count(rate(memory_connector_errors_total[5m]))",
            "eval_time": "1m",
            "exp_samples": [{ "labels": "{}", "value": ErrorType::ALL.len() }],
        }),
        returns_data("rate(memory_connector_errors_total[5m]) > 0"),
        // Exactly the alerts the four runs call for: a dead memory, the
        // refused health check, the document LightRAG failed; not "failing"
        // (the last runs did not fail), not "no recent sync".
        json!({
            "expr": "ALERTS{alertstate=\"firing\"}",
            "eval_time": "1m",
            "exp_samples": [
                firing("MemoryConnectorDeadMemories", "warning", ("connector_id", ID)),
                firing("MemoryConnectorLightRAGDocumentsFailed", "warning", ("connector_id", ID)),
                firing("MemoryConnectorLightRAGRequestErrors", "warning", ("operation", "preflight")),
            ],
        }),
    ];
    checks.extend(queries(&dashboard).iter().map(|(_, _, expr)| returns_data(expr)));
    let test = json!({
        "rule_files": [sims::tools::repo_root().join(RULES)],
        "evaluation_interval": "1m",
        "tests": [{ "interval": "1m", "input_series": input_series(&first, &second), "promql_expr_test": checks }],
    });
    let file = dir.path().join("scraped.test.yml");
    std::fs::write(&file, test.to_string()).expect("write the promtool test");
    run_promtool(&promtool, &["test", "rules", file.to_str().expect("utf-8")], dir.path());
}
