//! The xDS port's accept loop: at most so many connections open at once, and a pause after an
//! accept that failed for want of resources (out of file descriptors), where tonic's own loop
//! would try again at once and spin a core for as long as the shortage lasts.
//!
//! Also the open-file limit: raised to its hard limit at start, since every connection is a
//! file descriptor, and the default connection limit kept below it; and, in plaintext, a
//! deadline for the HTTP/2 preface, so that silent connections do not hold places under it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::xds::Hub;
use crate::xds::hub::XdsRefusal;

/// Connections to the xDS port by default: room for 5,000 Envoys, each with one connection,
/// twice over (a reconnecting Envoy's old connection may linger while its new one opens).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// File descriptors left for everything but xDS connections (the watched directory, files
/// being read, the admin server, `--state-dir`), at most half the limit.
const RESERVED_FDS: u64 = 256;

/// The longest pause after a failed accept.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// How often a run of failures or refusals is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The HTTP/2 client preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: 24 bytes.
const PREFACE_LEN: usize = 24;

/// Raises the soft limit of open files to the hard limit, and returns the soft limit then in
/// force (`None`: unlimited). A failure to raise it is logged; the limit stays as it was.
pub fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return raised.current,
            Err(e) => tracing::warn!(
                soft = ?limit.current,
                hard = ?limit.maximum,
                error = %e,
                "cannot raise the open-file limit (RLIMIT_NOFILE) to its hard limit"
            ),
        }
    }
    limit.current
}

/// The connection limit: `wanted` (`--xds-max-connections`) or the default, which stays below
/// what the open-file limit `open_files` leaves; and, when `wanted` is above that, what it
/// leaves (to warn about).
pub fn connection_limit(wanted: Option<usize>, open_files: Option<u64>) -> (usize, Option<usize>) {
    let room = open_files.map(|n| {
        let room = n - RESERVED_FDS.min(n / 2);
        usize::try_from(room).unwrap_or(usize::MAX)
    });
    match (wanted, room) {
        (Some(w), Some(room)) if w > room => (w, Some(room)),
        (Some(w), _) => (w, None),
        (None, room) => (
            DEFAULT_MAX_CONNECTIONS.min(room.unwrap_or(usize::MAX)),
            None,
        ),
    }
}

/// The connections of `listener`, at most `limit` open at once: one over it is closed as soon
/// as it is accepted (and counted), so that it is refused at once rather than left waiting in
/// the kernel's queue. Accept errors never reach tonic: a per-connection one is skipped, any
/// other (no file descriptor, no memory) pauses the loop, 10 ms at first and doubling up to
/// 1 s. Each connection gets `TCP_NODELAY` (a small push must not wait for Nagle's algorithm:
/// up to 40 ms) and TCP keepalive. With `preface_timeout` (plaintext), a connection whose first
/// 24 bytes (the HTTP/2 preface) do not come within it is closed and counted.
pub fn incoming(
    listener: TcpListener,
    limit: usize,
    preface_timeout: Option<Duration>,
    hub: Arc<Hub>,
) -> impl Stream<Item = Result<Conn, std::convert::Infallible>> + Send + 'static {
    let acceptor = Acceptor {
        listener,
        slots: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))),
        limit,
        preface_timeout,
        hub,
        pause: None,
        failing_since: None,
        refusing_since: None,
    };
    futures::stream::unfold(acceptor, |mut a| async move {
        let conn = a.next().await;
        Some((Ok(conn), a))
    })
}

struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limit: usize,
    preface_timeout: Option<Duration>,
    hub: Arc<Hub>,
    /// The pause after the last failed accept, while they fail.
    pause: Option<Duration>,
    /// When failures, and refusals, were last logged.
    failing_since: Option<Instant>,
    refusing_since: Option<Instant>,
}

impl Acceptor {
    async fn next(&mut self) -> Conn {
        loop {
            match self.listener.accept().await {
                Ok((io, peer)) => {
                    self.pause = None;
                    self.failing_since = None;
                    if let Some(conn) = self.admit(io, peer) {
                        return conn;
                    }
                }
                Err(e) if per_connection(&e) => {}
                Err(e) => {
                    self.hub
                        .counters
                        .accept_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let pause = next_pause(self.pause);
                    self.pause = Some(pause);
                    if due(&mut self.failing_since) {
                        tracing::warn!(
                            error = %e,
                            ?pause,
                            "the xDS port cannot accept connections (out of file descriptors? \
                             see --xds-max-connections); pausing before the next try"
                        );
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// The connection, or `None` when the limit is reached (it is then closed).
    fn admit(&mut self, io: TcpStream, peer: SocketAddr) -> Option<Conn> {
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.hub.counters.refuse(XdsRefusal::TooManyConnections);
            if due(&mut self.refusing_since) {
                tracing::warn!(
                    peer = %peer,
                    limit = self.limit,
                    "refused a connection to the xDS port: too many are open \
                     (--xds-max-connections)"
                );
            }
            return None;
        };
        self.refusing_since = None;
        // Best effort: a socket that refuses an option still works.
        let _ = io.set_nodelay(true);
        let _ = rustix::net::sockopt::set_socket_keepalive(&io, true);
        let _ = rustix::net::sockopt::set_tcp_keepidle(&io, Duration::from_secs(30));
        self.hub
            .counters
            .connections
            .fetch_add(1, Ordering::Relaxed);
        Some(Conn {
            io,
            preface: self.preface_timeout.map(|t| Preface {
                left: PREFACE_LEN,
                timeout: t,
                due: Box::pin(tokio::time::sleep(t)),
            }),
            _permit: permit,
            hub: Arc::clone(&self.hub),
        })
    }
}

/// Whether an accept error concerns only the connection being accepted (it was reset or
/// aborted before it was taken): the next one may well succeed at once.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// The pause after a failed accept, given the one before it.
fn next_pause(last: Option<Duration>) -> Duration {
    match last {
        None => Duration::from_millis(10),
        Some(p) => (p * 2).min(MAX_PAUSE),
    }
}

/// Whether to log now, for a run of events last logged at `since`: at its first event, then
/// every `LOG_EVERY`.
fn due(since: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    match since {
        Some(t) if now.duration_since(*t) < LOG_EVERY => false,
        _ => {
            *since = Some(now);
            true
        }
    }
}

/// An accepted xDS connection: it holds its place under the limit until it is dropped.
pub struct Conn {
    io: TcpStream,
    /// The deadline for the HTTP/2 preface, until it has come.
    preface: Option<Preface>,
    _permit: OwnedSemaphorePermit,
    hub: Arc<Hub>,
}

/// The preface bytes still to come, and by when.
struct Preface {
    left: usize,
    timeout: Duration,
    due: Pin<Box<tokio::time::Sleep>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.hub
            .counters
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        let Some(preface) = &mut self.preface else {
            return read;
        };
        match &read {
            Poll::Ready(Ok(())) => {
                preface.left = preface.left.saturating_sub(buf.filled().len() - before);
                if preface.left == 0 {
                    self.preface = None;
                }
                read
            }
            Poll::Ready(Err(_)) => read,
            Poll::Pending => {
                if preface.due.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let timeout = preface.timeout;
                self.hub.counters.refuse(XdsRefusal::NoPreface);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no HTTP/2 preface within {timeout:?} of connecting"),
                )))
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_stays_below_the_open_file_limit() {
        assert_eq!(
            connection_limit(None, None),
            (DEFAULT_MAX_CONNECTIONS, None)
        );
        assert_eq!(
            connection_limit(None, Some(1_048_576)),
            (DEFAULT_MAX_CONNECTIONS, None)
        );
        // A common hard limit: 4096 files leave 3840 connections.
        assert_eq!(connection_limit(None, Some(4096)), (3840, None));
        // A tiny limit keeps half for the rest.
        assert_eq!(connection_limit(None, Some(64)), (32, None));
        // Asked for more than the files allow: taken, with what they allow, to warn.
        assert_eq!(connection_limit(Some(5000), Some(4096)), (5000, Some(3840)));
        assert_eq!(connection_limit(Some(100), Some(4096)), (100, None));
    }

    #[test]
    fn failed_accepts_pause_longer_and_longer_up_to_a_second() {
        let mut pause = None;
        let mut pauses = Vec::new();
        for _ in 0..10 {
            let p = next_pause(pause);
            pauses.push(p.as_millis());
            pause = Some(p);
        }
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }

    #[test]
    fn a_run_of_failures_is_logged_once_then_every_ten_seconds() {
        let mut since = None;
        assert!(due(&mut since));
        assert!(!due(&mut since));
        since = Some(Instant::now() - LOG_EVERY);
        assert!(due(&mut since));
    }
}
