//! Upstream services: HTTP/1.1 servers on 127.0.0.1 that answer with their name, and can be
//! told to fail every Nth request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with its name.
pub struct Upstream {
    pub name: String,
    pub port: u16,
    pub hits: Arc<AtomicU64>,
    /// Every `fail_every`-th request gets a 503 (0: never).
    pub fail_every: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let fail_every = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, f, s, n) = (
            hits.clone(),
            fail_every.clone(),
            stop.clone(),
            name.to_string(),
        );
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, f, n) = (h.clone(), f.clone(), n.clone());
                thread::spawn(move || serve_conn(conn, &n, &h, &f));
            }
        });
        Upstream {
            name: name.to_string(),
            port,
            hits,
            fail_every,
            stop,
        }
    }

    /// `service:` text that reaches this upstream by IP.
    pub fn by_ip(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `service:` text that reaches this upstream by host name (a STRICT_DNS cluster).
    pub fn by_name(&self) -> String {
        format!("localhost:{}", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_conn(conn: TcpStream, name: &str, hits: &AtomicU64, fail_every: &AtomicU64) {
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        let n = hits.fetch_add(1, Ordering::Relaxed) + 1;
        let every = fail_every.load(Ordering::Relaxed);
        let status = if every > 0 && n.is_multiple_of(every) {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{name}",
            name.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
