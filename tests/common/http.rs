//! A small HTTP/1.1 client for 127.0.0.1 (keep-alive, chunked bodies), and free ports.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A keep-alive HTTP/1.1 client for one host:port.
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

/// A response: status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            conn: None,
        }
    }

    /// GETs `path` with extra headers; a connection error is status 0.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        for _ in 0..2 {
            match self.try_get(path, headers) {
                Ok(r) => return r,
                Err(_) => self.conn = None,
            }
        }
        Reply {
            status: 0,
            body: String::new(),
        }
    }

    fn try_get(&mut self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Reply> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().unwrap();
        // An address, not a name: canary-xds's admin server answers no other name by default.
        let mut req = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        conn.get_mut().write_all(req.as_bytes())?;
        let mut status_line = String::new();
        if conn.read_line(&mut status_line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let mut len = 0usize;
        let mut close = false;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            conn.read_line(&mut h)?;
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    close = true;
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let mut size = String::new();
                conn.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                let mut chunk = vec![0; n + 2];
                conn.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body
        } else {
            let mut body = vec![0; len];
            conn.read_exact(&mut body)?;
            body
        };
        if close {
            let _ = conn.get_ref().shutdown(Shutdown::Both);
            self.conn = None;
        }
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// GETs `path` from an HTTP server on 127.0.0.1:`port` over a fresh connection.
pub fn http_get(port: u16, path: &str) -> Reply {
    Client::new(port).get(path, &[])
}

/// GETs `path` and parses the body as JSON; panics unless the status is 200.
pub fn get_json(port: u16, path: &str) -> serde_json::Value {
    let r = http_get(port, path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
}
