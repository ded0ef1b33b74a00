//! End to end: `memory-connector serve` under 1,100 slow clients (each sends
//! part of a request head and then nothing), with the descriptor limit of
//! systemd's default unit (1,024). Issue 15, item 7: such clients made
//! `/health` and `trigger` time out ("Too many open files").

use sims::harness::{ConfigSpec, Workspace};
use sims::lightrag_sim::{LightragSim, LightragSimOptions};
use sims::memory_sim::{MemorySim, MemorySimOptions};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const MEMORY_KEY: &str = "mem-secret-value-77aa";
const API_KEY: &str = "api-key-for-tests-0b9c";
const ID: &str = "personal-memories";
const SLOW_CLIENTS: usize = 1100;

/// This test process holds the slow clients' sockets: it needs more
/// descriptors than the usual soft limit of 1,024.
fn raise_own_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if hard > soft {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        soft >= SLOW_CLIENTS as u64 + 300,
        "this test needs {} open files and the hard limit is {soft}; raise it (ulimit -Hn)",
        SLOW_CLIENTS + 300
    );
}

async fn workspace() -> (MemorySim, LightragSim, Workspace) {
    let mem = MemorySim::start(MemorySimOptions {
        api_key: Some(MEMORY_KEY.into()),
        contexts: vec![("CTX123".into(), 3)],
        ..Default::default()
    })
    .await
    .expect("memory sim");
    let rag = LightragSim::start(LightragSimOptions::default()).await.expect("lightrag sim");
    let yaml = ConfigSpec::new(&mem.url(), &rag.url()).render().replace(
        "api:\n  enabled: false\n",
        "api:\n  enabled: true\n  host: \"127.0.0.1\"\n  port: 0\n  enable_auth: true\n  api_key: \"${CONNECTOR_API_KEY}\"\n",
    );
    let mut ws = Workspace::new();
    ws.write_config(&yaml);
    ws.set_env("MEMORY_API_KEY", MEMORY_KEY);
    ws.set_env("CONNECTOR_API_KEY", API_KEY);
    (mem, rag, ws)
}

/// `serve --api-only` started by `sh` after `ulimit {limit}`; killed on drop.
struct Serve {
    child: tokio::process::Child,
    port: u16,
}

impl Serve {
    async fn start(ws: &Workspace, limit: &str) -> Serve {
        let port_file = ws.path().join("ports.json");
        let port_file_arg = port_file.to_string_lossy().into_owned();
        let inner = ws.command(&["serve", "--api-only", "--port-file", &port_file_arg]);
        let mut command = tokio::process::Command::new("sh");
        command.arg("-c").arg(format!("ulimit {limit} && exec \"$0\" \"$@\"")).arg(inner.get_program());
        command.args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command.current_dir(ws.path()).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        let log = std::fs::File::create(ws.path().join("serve.log")).expect("log file");
        command.stderr(log).kill_on_drop(true);
        let mut child = command.spawn().expect("spawn serve");
        let ports = sims::harness::wait_port_file(&mut child, &port_file, &ws.path().join("serve.log")).await;
        Serve { child, port: ports["api"].as_u64().expect("api port") as u16 }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn log_text(ws: &Workspace) -> String {
    std::fs::read_to_string(ws.path().join("serve.log")).unwrap_or_default()
}

/// Opens `count` connections that each send part of a request head.
async fn slow_clients(port: u16, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        tasks.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            stream.write_all(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: ").await.ok()?;
            Some(stream)
        });
    }
    let mut streams = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        streams.extend(joined.expect("task"));
    }
    streams
}

/// The server's open descriptors once they stop changing: it has taken in
/// (or shed) every slow client it could accept.
async fn settled_descriptors(pid: u32) -> usize {
    let count = || std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let started = Instant::now();
    let mut last = count();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = count();
        if now == last || started.elapsed() > Duration::from_secs(15) {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_trigger_answer_under_1100_slow_clients_at_1024_descriptors() {
    raise_own_descriptor_limit();
    let (_mem, _rag, ws) = workspace().await;
    // Soft and hard limit 1,024: the server cannot raise it; its connection
    // budget must keep it answering.
    let serve = Serve::start(&ws, "-n 1024").await;
    let slow = slow_clients(serve.port, SLOW_CLIENTS).await;
    assert!(slow.len() > 1000, "only {} slow clients connected", slow.len());
    let pid = serve.child.id().expect("pid");
    let held = settled_descriptors(pid).await;
    assert!(held > 700, "the server took in the slow clients ({held} descriptors)");

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build().unwrap();
    for i in 0..5 {
        let answer = http.get(serve.url("/health")).send().await;
        let answer = answer.unwrap_or_else(|e| panic!("/health #{i} under slow clients: {e}\n{}", log_text(&ws)));
        assert_eq!(answer.status().as_u16(), 200);
    }
    let trigger = http.post(serve.url(&format!("/connectors/{ID}/trigger"))).header("X-API-Key", API_KEY).send().await;
    let trigger = trigger.unwrap_or_else(|e| panic!("trigger under slow clients: {e}\n{}", log_text(&ws)));
    assert_eq!(trigger.status().as_u16(), 202);
    let log = log_text(&ws);
    assert!(!log.contains("Too many open files"), "{log}");
    drop(slow);
    drop(serve);
}

/// Go's runtime does it too: the soft descriptor limit goes up to the hard
/// one at start (systemd's default unit gives 1,024 soft, 512 Ki hard).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn serve_raises_its_soft_descriptor_limit_to_the_hard_one() {
    let (_mem, _rag, ws) = workspace().await;
    let serve = Serve::start(&ws, "-S -n 256").await;
    let pid = serve.child.id().expect("pid");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers.len(), 2, "{line}");
    assert_eq!(numbers[0], numbers[1], "soft = hard after start: {line}");
    assert_ne!(numbers[0], "256", "{line}");
}
