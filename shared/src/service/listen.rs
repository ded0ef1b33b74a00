//! How the API and metrics servers hold their connections, so that slow or
//! idle clients cannot starve them:
//! - a header-read timeout ([`HEADER_READ_TIMEOUT`], hyper's own, which
//!   `axum::serve` does not switch on): a client that has not sent a whole
//!   request head by then, idle keep-alive included, is closed;
//! - a connection budget shared by both servers ([`Connections`]): at the
//!   budget a new client is still accepted, and the connection idle the
//!   longest (waiting for a request head, no handler running) is closed to
//!   make room. Slowloris clients are those, so they are the ones shed,
//!   never the new client and never a request being answered;
//! - the soft `RLIMIT_NOFILE` raised to the hard limit at start
//!   ([`raise_descriptor_limit`], as Go's runtime does), and the budget
//!   derived from it, so the process keeps descriptors for its own files
//!   and outgoing requests. Running out anyway (`EMFILE` on accept) sheds an
//!   idle connection instead of stalling the accept loop.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// How long a client may take to send a request head (and how long an idle
/// keep-alive connection is kept).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most connections both servers hold together, whatever the limit.
pub const MAX_CONNECTIONS: usize = 4096;

/// Raises the soft limit on open descriptors to the hard limit and returns
/// the soft limit in force (`None` where it cannot be read).
pub fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        // macOS refuses RLIM_INFINITY for descriptors; nobody needs more than this.
        let wanted = hard.min(1 << 20);
        if wanted > soft {
            match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
                Ok(()) => tracing::debug!(from = soft, to = wanted, "raised the open-file limit"),
                Err(error) => tracing::debug!(%error, soft, hard, "could not raise the open-file limit"),
            }
        }
        getrlimit(Resource::RLIMIT_NOFILE).ok().map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection budget for a descriptor limit: what is left after a
/// quarter (at least 128) is kept for the rest of the process, at most
/// [`MAX_CONNECTIONS`], at least 16.
pub fn connection_budget(descriptor_limit: Option<u64>) -> usize {
    let Some(limit) = descriptor_limit else { return MAX_CONNECTIONS };
    let reserve = (limit / 4).max(128);
    usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX).clamp(16, MAX_CONNECTIONS)
}

/// The live connections of the servers and which of them to shed.
#[derive(Debug)]
pub struct Connections {
    budget: usize,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    live: HashMap<u64, Connection>,
    /// Connections with no request in progress, longest idle first.
    idle: BTreeSet<(Instant, u64)>,
}

#[derive(Debug)]
struct Connection {
    idle_since: Option<Instant>,
    requests: u32,
    shed: Option<oneshot::Sender<()>>,
}

impl Connections {
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(Self { budget: budget.max(1), registry: Mutex::new(Registry::default()) })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection; at the budget, sheds the longest idle one
    /// first. The receiver fires when this one is shed in turn.
    fn admit(&self) -> (u64, oneshot::Receiver<()>) {
        let mut registry = self.registry();
        if registry.live.len() >= self.budget {
            registry.shed_longest_idle();
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let (shed, receiver) = oneshot::channel();
        let now = Instant::now();
        registry.live.insert(id, Connection { idle_since: Some(now), requests: 0, shed: Some(shed) });
        registry.idle.insert((now, id));
        (id, receiver)
    }

    /// Sheds the longest idle connection; `false` when none is idle.
    fn shed_one(&self) -> bool {
        self.registry().shed_longest_idle()
    }

    fn request_started(&self, id: u64) {
        let mut registry = self.registry();
        let Some(connection) = registry.live.get_mut(&id) else { return };
        connection.requests += 1;
        if let Some(since) = connection.idle_since.take() {
            registry.idle.remove(&(since, id));
        }
    }

    fn request_done(&self, id: u64) {
        let mut registry = self.registry();
        let now = Instant::now();
        let Some(connection) = registry.live.get_mut(&id) else { return };
        connection.requests = connection.requests.saturating_sub(1);
        if connection.requests == 0 && connection.idle_since.is_none() {
            connection.idle_since = Some(now);
            registry.idle.insert((now, id));
        }
    }

    fn closed(&self, id: u64) {
        let mut registry = self.registry();
        if let Some(connection) = registry.live.remove(&id)
            && let Some(since) = connection.idle_since
        {
            registry.idle.remove(&(since, id));
        }
    }

    /// Connections held now.
    pub fn len(&self) -> usize {
        self.registry().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registry {
    fn shed_longest_idle(&mut self) -> bool {
        let Some((since, id)) = self.idle.pop_first() else { return false };
        if let Some(connection) = self.live.get_mut(&id) {
            connection.idle_since = None;
            if let Some(shed) = connection.shed.take() {
                let _ = shed.send(());
            }
            tracing::debug!(
                idle_ms = since.elapsed().as_millis() as u64,
                "connection budget reached: closed the longest idle connection"
            );
        }
        true
    }
}

/// Marks a connection busy while one request's handler runs.
struct InRequest {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.connections.request_done(self.id);
    }
}

/// Serves `router` on `listener` until `stop` turns true; then lets the
/// requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(router);
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_out_of_descriptors(&error) => {
                // Make room rather than wait: the pending client is served next.
                if !connections.shed_one() {
                    tracing::warn!(%error, "out of file descriptors and no idle connection to close");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
            // The client went away before it was accepted.
            Err(_) => continue,
        };
        let (id, shed) = connections.admit();
        tokio::spawn(connection(
            stream,
            service.clone(),
            Arc::clone(&connections),
            id,
            shed,
            header_timeout,
            stop.clone(),
        ));
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    service: TowerToHyperService<Router>,
    connections: Arc<Connections>,
    id: u64,
    shed: oneshot::Receiver<()>,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let tracked = Arc::clone(&connections);
    let handler = hyper::service::service_fn(move |request| {
        tracked.request_started(id);
        let in_request = InRequest { connections: Arc::clone(&tracked), id };
        let answer = hyper::service::Service::call(&service, request);
        async move {
            let answer = answer.await;
            drop(in_request);
            answer
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), handler);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Dropping the connection closes the socket.
        _ = shed => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    connections.closed(id);
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn is_out_of_descriptors(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(error.raw_os_error(), Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE)
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_descriptors_for_the_rest_of_the_process() {
        assert_eq!(connection_budget(Some(1024)), 768);
        assert_eq!(connection_budget(Some(256)), 128);
        assert_eq!(connection_budget(Some(100)), 16);
        assert_eq!(connection_budget(Some(1 << 20)), MAX_CONNECTIONS);
        assert_eq!(connection_budget(None), MAX_CONNECTIONS);
    }

    async fn start(budget: usize, header_timeout: Duration) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(serve(listener, router, Connections::new(budget), header_timeout, stop));
        (addr, stop_tx)
    }

    /// A client that sends part of a request head and then nothing.
    async fn slow_client(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow
    }

    /// Waits until the server closes `stream` (EOF or reset), at most 5 s.
    async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                // A `408` or the like before the close.
                Ok(Ok(_)) => {}
            }
        }
    }

    #[tokio::test]
    async fn a_request_head_that_never_ends_is_cut_off_while_others_are_answered() {
        let (addr, stop) = start(16, Duration::from_millis(300)).await;
        let mut slow = slow_client(addr).await;
        let answer = reqwest::get(format!("http://{addr}/health")).await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "ok");
        let started = Instant::now();
        assert!(closed_by_server(&mut slow).await, "the header-read timeout closes the slow client");
        assert!(started.elapsed() < Duration::from_secs(2));
        stop.send_replace(true);
    }

    #[tokio::test]
    async fn at_the_budget_new_clients_are_served_and_slow_ones_shed() {
        let (addr, stop) = start(4, Duration::from_secs(60)).await;
        let mut slow = Vec::new();
        for _ in 0..10 {
            slow.push(slow_client(addr).await);
        }
        for _ in 0..3 {
            let answer = tokio::time::timeout(Duration::from_secs(5), reqwest::get(format!("http://{addr}/health")))
                .await
                .expect("answered in time")
                .unwrap();
            assert_eq!(answer.status().as_u16(), 200);
        }
        assert!(closed_by_server(&mut slow[0]).await, "the longest idle client was shed");
        stop.send_replace(true);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_budget_the_longest_idle_connection_is_shed_never_a_busy_one() {
        let connections = Connections::new(2);
        let (first, mut first_shed) = connections.admit();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (second, mut second_shed) = connections.admit();
        connections.request_started(first);
        tokio::time::advance(Duration::from_millis(10)).await;
        let (_third, mut third_shed) = connections.admit();
        assert!(second_shed.try_recv().is_ok(), "the idle one goes, though it came later");
        assert!(first_shed.try_recv().is_err(), "a request in progress is never shed");
        connections.closed(second);
        tokio::time::advance(Duration::from_millis(5)).await;
        connections.request_done(first);
        tokio::time::advance(Duration::from_millis(5)).await;
        let _ = connections.admit();
        assert!(third_shed.try_recv().is_ok(), "idle since it came, before the first became idle again");
        assert!(first_shed.try_recv().is_err());
        assert!(!connections.is_empty());
    }
}
