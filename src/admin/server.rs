//! The admin server's connections: HTTP/1.1 over hyper, at most `max_connections` open at once,
//! each closed when a request's headers take longer than `header_read_timeout` to come (or when
//! it stays idle that long between requests), and a graceful stop.
//!
//! `axum::serve` has neither limit: one client opening connections and sending nothing, or a
//! byte a minute, could hold every file descriptor of the process, xDS streams included.

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::admin::host::AllowedHosts;

/// The default `--admin-max-connections`: far more than probes, scrapes and a few open pages
/// need, far fewer than the file descriptors of the process.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;

/// How long a client has to send a request's headers, and how long a connection may stay idle
/// between requests (the page refreshes every 5 s over one connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin server accepts: which `Host`s, how many connections, how slow a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Names answered besides IP addresses and `localhost` (`--admin-host`).
    pub hosts: AllowedHosts,
    /// Connections open at once (`--admin-max-connections`); more are answered 503 and closed.
    pub max_connections: u32,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            hosts: AllowedHosts::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Why the admin server refused a request or a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A `Host` that is not an IP address, `localhost` or an `--admin-host` name: 421.
    Host,
    /// A connection over `--admin-max-connections`: 503, closed.
    Connections,
    /// A connection that started a request and did not finish its headers within the
    /// header-read timeout: closed. (One that sends nothing for that long, new or kept alive
    /// after an answer, is closed too, as idle, and not counted.)
    HeaderTimeout,
}

impl Refusal {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Refusal; 3] = [Refusal::Host, Refusal::Connections, Refusal::HeaderTimeout];

    /// The value of the `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Connections => "connections",
            Refusal::HeaderTimeout => "header_timeout",
        }
    }
}

/// Refusals counted since start, by reason (`AdminState::refused` reads them).
#[derive(Debug, Default)]
pub(crate) struct Refusals([AtomicU64; 3]);

impl Refusals {
    /// One more refusal for `why`.
    pub(crate) fn count(&self, why: Refusal) {
        self.0[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The refusals for `why` so far.
    pub(crate) fn get(&self, why: Refusal) -> u64 {
        self.0[why as usize].load(Ordering::Relaxed)
    }
}

/// How many connections over the limit are answered at once (each for a second at most); past
/// that they are closed without a word.
const REFUSING_AT_ONCE: usize = 64;

/// The answer to a connection over the limit.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    content-type: text/plain; charset=utf-8\r\n\
    content-length: 58\r\n\
    connection: close\r\n\r\n\
    too many admin connections open (--admin-max-connections)\n";

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then stops accepting,
/// lets each connection finish the request it is answering, and returns once all are closed.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: &AdminLimits,
    refusals: Arc<Refusals>,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.max(1);
    // A connection holds a slot until it closes.
    let slots = Arc::new(Semaphore::new(max as usize));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let service = TowerToHyperService::new(app);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refusals.count(Refusal::Connections);
            if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_busy(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mid_request = Arc::new(AtomicBool::new(false));
        let io = Noting {
            stream,
            mid_request: Arc::clone(&mid_request),
        };
        let conn = http.serve_connection(TokioIo::new(io), service.clone());
        let mut stop = stop_rx.clone();
        let refusals = Arc::clone(&refusals);
        tokio::spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stopped => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            match result {
                Err(e) if e.is_timeout() && !mid_request.load(Ordering::Relaxed) => {}
                Err(e) if e.is_timeout() => refusals.count(Refusal::HeaderTimeout),
                Err(e) => tracing::debug!("admin connection: {e}"),
                Ok(()) => {}
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every slot back means every connection closed.
    let _ = slots.acquire_many(max).await;
}

/// A failed accept: the peer gave up (go on), or the process is out of something, such as file
/// descriptors (say so, and wait a little rather than spin).
async fn accept_failed(e: &std::io::Error) {
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!("the admin server cannot accept a connection: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Says 503 to a connection over the limit and closes it, within a second. What the client
/// sent is read until it closes too: closing with its request unread would reset the
/// connection, and the client could lose the answer.
async fn refuse_busy(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if stream.read(&mut sink).await? == 0 {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// A connection's socket, noting whether part of a request has come since the last answer was
/// written, so that a header-read timeout tells a slow request from an idle connection.
struct Noting {
    stream: TcpStream,
    mid_request: Arc<AtomicBool>,
}

impl AsyncRead for Noting {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.mid_request.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for Noting {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.mid_request.store(false, Ordering::Relaxed);
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.mid_request.store(false, Ordering::Relaxed);
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_says_its_length() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
