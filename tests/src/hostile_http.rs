//! A hostile HTTP server for the body-limit tests: it answers every request
//! with a status and a body that never ends (chunked, 64 KiB at a time,
//! until the client hangs up), and counts what it sent, so a test can tell
//! that the client stopped reading near its limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A loopback server whose every answer is endless.
pub struct EndlessServer {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl EndlessServer {
    /// Answers `status` with `content_type`: `opening`, then `filler`
    /// repeated forever.
    pub async fn start(status: u16, content_type: &str, opening: &str, filler: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let head =
            format!("HTTP/1.1 {status} Hostile\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n");
        let mut block = String::from(opening);
        while block.len() < 64 * 1024 {
            block.push_str(filler);
        }
        let first = chunk(block.as_bytes());
        let mut more = String::new();
        while more.len() < 64 * 1024 {
            more.push_str(filler);
        }
        let more = chunk(more.as_bytes());
        let counter = Arc::clone(&sent);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let (head, first, more, counter) = (head.clone(), first.clone(), more.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    // The request head; its body, if any, is not needed.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    if socket.write_all(head.as_bytes()).await.is_err() || socket.write_all(&first).await.is_err() {
                        return;
                    }
                    counter.fetch_add(first.len() as u64, Ordering::Relaxed);
                    while socket.write_all(&more).await.is_ok() {
                        counter.fetch_add(more.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        Ok(Self { addr, sent, task })
    }

    /// An endless JSON answer (`200`, an array that never closes).
    pub async fn json() -> std::io::Result<Self> {
        Self::start(200, "application/json", r#"{"memories":["#, r#"{"id":"m","transcript":"la la la"},"#).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Body bytes written so far (on every connection).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for EndlessServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}
