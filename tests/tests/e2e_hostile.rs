//! End to end against hostile inputs: the real binary, real files, real
//! SQLite, simulators serving hostile pages. Each test is one finding of the
//! adversarial review (issue 15) kept fixed.

use serde_json::json;
use sims::harness::{ConfigSpec, Workspace};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::path::{Path, PathBuf};

const CTX: &str = "CTX123";
const ID: &str = "personal-memories";

async fn memory_sim(count: usize) -> MemorySim {
    MemorySim::start(MemorySimOptions { contexts: vec![(CTX.into(), count)], ..Default::default() })
        .await
        .expect("memory sim")
}

/// A workspace syncing `mem` in direct mode into `rag/`, with the given state backend.
fn direct_workspace(mem: &MemorySim, backend: &'static str, state: &str) -> Workspace {
    let mut spec = ConfigSpec::new(&mem.url(), "unused");
    spec.direct_dir = Some("rag".into());
    spec.backend = backend;
    spec.state_path = state.into();
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", "k");
    ws
}

/// The bytes of every file directly in `dir` whose name starts with `prefix`.
fn files_named(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .map(|p| (p.file_name().unwrap_or_default().to_string_lossy().into_owned(), std::fs::read(&p).expect("read")))
        .collect();
    out.sort();
    out
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread")]
async fn state_restore_refuses_hostile_backups_and_restores_over_a_corrupt_state() {
    let mem = memory_sim(12).await;
    for (backend, state) in [("json", "state.json"), ("sqlite", "state.db")] {
        let ws = direct_workspace(&mem, backend, state);
        let first = ws.run_async(&["sync", "--connector-id", ID, "--json"]).await;
        assert_eq!(first.code, 0, "{backend}: {}", first.stderr);
        let synced = ws.run_async(&["status", "--connector-id", ID, "--json"]).await.json()["processed"].clone();
        assert!(synced.as_u64().is_some_and(|n| n > 0), "{backend}: {synced}");
        let good = ws.path().join("good.backup");
        let backup = ws.run_async(&["state", "backup", "--to", text(&good)]).await;
        assert_eq!(backup.code, 0, "{backend}: {}", backup.stderr);

        let junk = |name: &str, bytes: &[u8]| -> PathBuf {
            let path = ws.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            path
        };
        let foreign = ws.path().join("foreign.db");
        let conn = foreign_db(&foreign);
        let mut hostile = vec![
            junk("empty.bin", b""),
            junk("no-version.json", br#"{"connectors": {}}"#),
            junk("shapes.json", br#"{"version": 1, "connectors": {"c": {"entries": []}}}"#),
            junk("magic.bin", &[b"MCSTATE-ENC1\n".as_slice(), &[0xa5; 64]].concat()),
            conn,
        ];
        hostile.push(junk("text.bin", b"not a state"));
        let before = files_named(ws.path(), state);
        for path in &hostile {
            let run = ws.run_async(&["state", "restore", "--from", text(path)]).await;
            assert_ne!(run.code, 0, "{backend}: {} was restored:\n{}", path.display(), run.stdout);
            assert!(run.stderr.contains(text(path)), "{backend}: the error names the file: {}", run.stderr);
            assert!(run.stderr.contains("was not changed"), "{backend}: {}", run.stderr);
            assert_eq!(files_named(ws.path(), state), before, "{backend}: {} touched the state", path.display());
        }
        let status = ws.run_async(&["status", "--connector-id", ID, "--json"]).await;
        assert_eq!(status.code, 0, "{backend}: {}", status.stderr);
        assert_eq!(status.json()["processed"], synced, "{backend}");

        // The live state is destroyed; the good backup still goes in, and the wreck is kept.
        std::fs::write(ws.path().join(state), b"\x00garbage").expect("corrupt");
        let broken = ws.run_async(&["status", "--connector-id", ID, "--json"]).await;
        assert_ne!(broken.code, 0, "{backend}: a corrupt state is reported");
        let run = ws.run_async(&["state", "restore", "--from", text(&good), "--json"]).await;
        assert_eq!(run.code, 0, "{backend}: {}\n{}", run.stdout, run.stderr);
        let answer = run.json();
        let previous = PathBuf::from(answer["previous_state"].as_str().expect("previous state kept"));
        assert_eq!(std::fs::read(&previous).expect("side copy"), b"\x00garbage");
        assert_eq!(answer["entries"], json!(12), "{backend}: {answer}");
        let status = ws.run_async(&["status", "--connector-id", ID, "--json"]).await;
        assert_eq!(status.json()["processed"], synced, "{backend}: {}", status.stderr);
        let again = ws.run_async(&["sync", "--connector-id", ID, "--json"]).await;
        assert_eq!(again.json()["counts"]["new"], json!(0), "{backend}: the restored ledger knows every memory");
    }
}

/// A SQLite database that is not a memory-connector state.
fn foreign_db(path: &Path) -> PathBuf {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('sourdough');").expect("fill");
    path.to_path_buf()
}

/// Two ids an adversary chose so that the 64-bit name suffix of the old
/// rule collided (a birthday search, minutes on two cores).
fn colliding_ids() -> [String; 2] {
    [format!("{}6a34ccf462cf0da7", "a".repeat(81)), format!("{}7c0b9c90a57b9bf2", "a".repeat(81))]
}

fn inputs(ws: &Workspace) -> Vec<(String, String)> {
    let dir = ws.path().join("rag/inputs");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("inputs")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            (
                p.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_chosen_to_collide_each_get_their_own_document() {
    let mem = memory_sim(0).await;
    let [a, b] = colliding_ids();
    mem.add_raw(
        CTX,
        vec![json!({"id": a, "transcript": "the first memory"}), json!({"id": b, "transcript": "the second"})],
    );
    let ws = direct_workspace(&mem, "json", "state.json");
    let run = ws.run_async(&["sync", "--connector-id", ID, "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let files = inputs(&ws);
    assert_eq!(files.len(), 2, "one document each: {files:?}");
    assert!(files.iter().any(|(_, text)| text.contains("the first memory")));
    assert!(files.iter().any(|(_, text)| text.contains("the second")));
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_names_are_kept_and_a_name_two_memories_share_is_refused() {
    let mem = memory_sim(0).await;
    mem.add_raw(CTX, vec![json!({"id": "x", "transcript": "x one"}), json!({"id": "y", "transcript": "y one"})]);
    let ws = direct_workspace(&mem, "json", "state.json");
    assert_eq!(ws.run_async(&["sync", "--connector-id", ID]).await.code, 0);
    // A ledger written by an older naming rule: both memories got one name.
    let state_path = ws.path().join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("read")).expect("json");
    for id in ["x", "y"] {
        state["connectors"][ID]["entries"][id]["file_source"] = json!("memory_CTX123_legacy.txt");
    }
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).expect("json")).expect("write");
    mem.edit_transcripts(CTX, &["x".into(), "y".into()], " edited");
    let run = ws.run_async(&["sync", "--connector-id", ID, "--json"]).await;
    let report = run.json();
    assert_eq!(report["counts"]["updated"], json!(1), "{report}");
    assert_eq!(report["counts"]["rejected"], json!(1), "{report}");
    assert!(report["errors"].to_string().contains("already that of memory x"), "{report}");
    let legacy = inputs(&ws).into_iter().find(|(name, _)| name == "memory_CTX123_legacy.txt").expect("kept name");
    assert!(legacy.1.contains("x one edited"), "the stored name was used: {legacy:?}");
}

/// How to run a command with a private mount namespace (to mount a tmpfs
/// without touching the host): `unshare -m` as root, `unshare -rm` in a user
/// namespace otherwise; `None` when the kernel or sandbox allows neither.
fn mount_namespace() -> Option<Vec<&'static str>> {
    let probe = |flags: &[&'static str]| {
        let dir = tempfile::tempdir().ok()?;
        let script = "mount -t tmpfs -o size=16k tmpfs \"$1\"";
        let ok = std::process::Command::new("unshare")
            .args(flags)
            .args(["sh", "-c", script, "sh"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| flags.to_vec())
    };
    probe(&["-m"]).or_else(|| probe(&["-r", "-m"]))
}

/// Runs the binary with `<workspace>/rag` on a fresh tmpfs of `size`
/// (filled up first when `fill`), in a mount namespace of its own.
fn run_on_small_disk(ws: &Workspace, unshare: &[&str], size: &str, fill: bool, args: &[&str]) -> sims::harness::CliRun {
    let inner = ws.command(args);
    let script = format!(
        "mkdir -p rag && mount -t tmpfs -o size={size},mode=0755 tmpfs rag || exit 97; {} exec \"$@\"",
        if fill { "dd if=/dev/zero of=rag/filler bs=4k >/dev/null 2>&1;" } else { "" }
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(unshare).args(["sh", "-c", &script, "sh"]).arg(inner.get_program()).args(inner.get_args());
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let run: sims::harness::CliRun = cmd.stdin(std::process::Stdio::null()).output().expect("unshare").into();
    assert_ne!(run.code, 97, "mounting the tmpfs failed: {}", run.stderr);
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_in_direct_mode_fails_the_run_and_charges_no_memory() {
    let Some(unshare) = mount_namespace() else {
        eprintln!("WARNING: no mount namespace (unshare -m / -rm) here: the full-disk test is SKIPPED");
        return;
    };
    let mem = memory_sim(30).await;
    let mut spec = ConfigSpec::new(&mem.url(), "unused");
    spec.direct_dir = Some("rag".into());
    // One charged attempt would make a memory dead at once.
    spec.max_attempts = 1;
    let mut ws = Workspace::new();
    ws.write_config(&spec.render());
    ws.set_env("MEMORY_API_KEY", "k");
    let id = ["sync", "--connector-id", ID, "--json"];
    let status = |ws: &Workspace| ws.run(&["status", "--connector-id", ID, "--json"]).json();

    // A disk with room for a few documents, then one with none at all.
    for (size, fill) in [("16k", false), ("64k", true)] {
        let run = tokio::task::block_in_place(|| run_on_small_disk(&ws, &unshare, size, fill, &id));
        assert_ne!(run.code, 0, "a full disk fails the run:\n{}\n{}", run.stdout, run.stderr);
        let report = run.json();
        assert!(report["error"].as_str().is_some_and(|e| e.contains("No space left")), "{report}");
        assert_eq!(report["counts"]["failed"], json!(0), "{report}");
        assert_eq!(report["counts"]["dead"], json!(0), "{report}");
        let now = tokio::task::block_in_place(|| status(&ws));
        assert_eq!(now["ledger"]["dead"], json!(0), "{now}");
        assert_eq!(now["ledger"]["failed"], json!(0), "{now}");
    }
    // Space is back: every memory goes in, none was lost to the full disk.
    let run = ws.run_async(&id).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let now = ws.run_async(&["status", "--connector-id", ID, "--json"]).await.json();
    let with_text =
        mem.expected(CTX).iter().filter(|m| m["transcript"].as_str().is_some_and(|t| !t.trim().is_empty())).count();
    assert_eq!(now["processed"], json!(with_text), "{now}");
    assert_eq!(now["failed"], json!(0), "{now}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_page_syncs_every_good_memory_and_reports_each_bad_one_by_id() {
    use sims::memory_sim::hostile_items;
    let mem =
        MemorySim::start(MemorySimOptions { contexts: vec![(CTX.into(), 20)], hostile: true, ..Default::default() })
            .await
            .expect("memory sim");
    let ws = direct_workspace(&mem, "json", "state.json");
    let run = ws.run_async(&["sync", "--connector-id", ID, "--json"]).await;
    let report = run.json();
    assert_eq!(report["error"], json!(null), "{report}\n{}", run.stderr);
    let items = hostile_items();
    let bad: Vec<_> = items.iter().filter(|i| !i.syncs).collect();
    assert_eq!(report["counts"]["rejected"], json!(bad.len()), "{report}");
    let errors = report["errors"].as_array().expect("errors");
    for item in &bad {
        let reported = errors.iter().any(|e| {
            e["stage"] == "fetch"
                && match &item.id {
                    Some(id) => e["memory_id"] == json!(id),
                    None => e["memory_id"].is_null(),
                }
        });
        assert!(reported, "{} is reported with its id {:?}: {errors:?}", item.what, item.id);
    }
    // Every good memory is in the ledger and has its document.
    let documents = inputs(&ws);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("state.json")).expect("state")).expect("json");
    let entries = &state["connectors"][ID]["entries"];
    for item in items.iter().filter(|i| i.syncs) {
        let id = item.id.as_deref().expect("good items have ids");
        let entry = &entries[id];
        assert_eq!(entry["status"], json!("submitted"), "{}: {entry}", item.what);
        let name = entry["file_source"].as_str().expect("name");
        let text =
            &documents.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{}: no file {name}", item.what)).1;
        // The header is the fixed set of lines: an id or type cannot add one.
        let header: Vec<&str> = text.split("\n\n").next().unwrap_or_default().lines().collect();
        assert!(header.iter().all(|line| !line.starts_with("Context: other")), "{}: {text:?}", item.what);
        assert!(!header.contains(&"Tags: #forged"), "{}: {text:?}", item.what);
        assert!(!text.contains('\u{1b}') && !text.contains('\0'), "{}: a raw control character: {text:?}", item.what);
    }
    let again = ws.run_async(&["sync", "--connector-id", ID, "--json"]).await.json();
    assert_eq!(again["counts"]["new"], json!(0), "nothing is sent twice: {again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_keep_each_hostile_id_on_its_own_line() {
    let mem =
        MemorySim::start(MemorySimOptions { contexts: vec![(CTX.into(), 3)], hostile: true, ..Default::default() })
            .await
            .expect("memory sim");
    let mut ws = direct_workspace(&mem, "json", "state.json");
    ws.set_env("LOG_FORMAT", "text");
    let run = ws.run_async(&["sync", "--connector-id", ID]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("h-1\\nType: forged header\\r\\nContext: other\\u{1b}[31m"), "{}", run.stderr);
    for line in run.stderr.lines() {
        // Every line is a log line of its own: `<RFC 3339 time>  LEVEL ...`.
        let time = line.split_whitespace().next().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "a line that is not a log line: {line:?}");
        assert!(!line.contains('\u{1b}'), "a raw terminal escape: {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_health_endpoint_on_an_api_route_is_refused_by_validate_and_serve() {
    let mem = memory_sim(1).await;
    let ws = direct_workspace(&mem, "json", "state.json");
    let yaml = std::fs::read_to_string(ws.config_path()).expect("config").replace(
        "api:\n  enabled: false",
        "api:\n  enabled: true\n  host: 127.0.0.1\n  port: 0\n  enable_auth: false\nmonitoring:\n  health_check:\n    endpoint: /connectors",
    );
    ws.write_config(&yaml);
    let validate = ws.run_async(&["validate"]).await;
    assert_ne!(validate.code, 0, "validate accepted it: {}", validate.stdout);
    assert!(validate.stderr.contains("monitoring.health_check.endpoint"), "{}", validate.stderr);
    let mut serve = tokio::process::Command::from(ws.command(&["serve"]));
    serve.kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), serve.output())
        .await
        .expect("serve refused the config at once")
        .expect("run serve");
    let run: sims::harness::CliRun = out.into();
    assert_ne!(run.code, 101, "serve panicked: {}", run.stderr);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("monitoring.health_check.endpoint"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_shows_no_url_password_and_never_echoes_or_changes_a_key() {
    let mem = memory_sim(1).await;
    let ws = direct_workspace(&mem, "json", "state.json");
    let base = std::fs::read_to_string(ws.config_path()).expect("config");
    let with_password = base.replace("url: \"http://127.0.0.1", "url: \"http://reader:pw-4411-secret@127.0.0.1");
    assert_ne!(with_password, base);
    ws.write_config(&with_password);
    for args in [&["validate", "--show"][..], &["validate", "--show", "--json"]] {
        let run = ws.run_async(args).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(!run.stdout.contains("pw-4411-secret"), "{args:?} shows the password:\n{}", run.stdout);
        assert!(run.stdout.contains("reader:***@127.0.0.1"), "{}", run.stdout);
    }
    for key in ["0x1F2E3D4C", "123456789012345678901234567890"] {
        ws.write_config(&base.replace("api_key: \"${MEMORY_API_KEY}\"", &format!("api_key: {key}")));
        let run = ws.run_async(&["validate"]).await;
        assert_ne!(run.code, 0, "{key} accepted: {}", run.stdout);
        assert!(run.stderr.contains("memory_api.api_key"), "{}", run.stderr);
        assert!(!run.stderr.contains(&key[2..]), "{key} echoed: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_warns_when_the_api_listens_beyond_loopback_without_a_key() {
    let mem = memory_sim(1).await;
    let ws = direct_workspace(&mem, "json", "state.json");
    let base = std::fs::read_to_string(ws.config_path()).expect("config");
    let open =
        base.replace("api:\n  enabled: false", "api:\n  enabled: true\n  enable_auth: false\n  host: \"0.0.0.0\"");
    ws.write_config(&open);
    let run = ws.run_async(&["validate"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("warning: api.host `0.0.0.0` listens beyond loopback"), "{}", run.stdout);
    let json = ws.run_async(&["validate", "--json"]).await.json();
    assert_eq!(json["warnings"].as_array().map(Vec::len), Some(1), "{json}");
    // Left to its default, the API listens on loopback: nothing to warn about.
    ws.write_config(&base.replace("api:\n  enabled: false", "api:\n  enabled: true\n  enable_auth: false"));
    let quiet = ws.run_async(&["validate", "--json"]).await.json();
    assert_eq!(quiet["warnings"], json!([]), "{quiet}");
}
