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
