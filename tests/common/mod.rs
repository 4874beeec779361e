//! Shared helpers for the end-to-end tests: real upstream HTTP servers on 127.0.0.1, canary-xds
//! as a child process, a real Envoy as a child process, a small HTTP client, and for TLS a
//! test CA (rcgen) and an ADS client (tonic, plaintext or TLS).
//!
//! Every wait polls with a deadline; every port comes from the kernel (bind port 0). Tests that
//! start Envoy hold `envoy_lock()`, so they run one at a time on a 2-core machine.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Serializes the tests that start Envoy (and listeners with fixed ports).
pub fn envoy_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether Envoy can be run here; CI installs it, so a missing Envoy fails there.
pub fn require_envoy() {
    let ok = Command::new("envoy")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "envoy is not on PATH: run scripts/test.sh, which installs Envoy 1.40"
    );
}

/// `envoy --mode validate` on a binary bootstrap (no network, no listener bound): Envoy's
/// output, `Ok` when it accepts the bootstrap and `Err` when it refuses it. Envoy must be on
/// PATH; callers decide what its absence means.
pub fn envoy_validate_pb(
    bootstrap: &envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap,
) -> Result<String, String> {
    use prost::Message;
    // Envoy reads a bootstrap as binary proto when its name ends in .pb.
    envoy_validate(&bootstrap.encode_to_vec(), ".pb")
}

/// `envoy --mode validate` on a bootstrap's bytes, written to a file whose name ends in
/// `suffix` (`.pb`, `.yaml`: how Envoy decides to read it). As `envoy_validate_pb`.
pub fn envoy_validate(bytes: &[u8], suffix: &str) -> Result<String, String> {
    let mut file = tempfile::Builder::new()
        .prefix("canary-xds-")
        .suffix(suffix)
        .tempfile()
        .unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    let out = Command::new("envoy")
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(file.path())
        .output()
        .expect("envoy runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, or panics with `what` at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

// --- upstreams ---

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

// --- HTTP client ---

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
        let mut req = format!("GET {path} HTTP/1.1\r\nhost: test\r\n");
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

/// Sends `n` requests and counts replies by body (non-2xx replies count as `status:<code>`).
pub fn tally(port: u16, path: &str, headers: &[(&str, &str)], n: usize) -> BTreeMap<String, usize> {
    let mut client = Client::new(port);
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = client.get(path, headers);
        let key = if (200..300).contains(&r.status) {
            r.body
        } else {
            format!("status:{}", r.status)
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Steady background traffic that records every reply that is not a 2xx.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    pub failures: Arc<Mutex<Vec<(Instant, Reply)>>>,
    pub bodies: Arc<Mutex<BTreeMap<String, u64>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Traffic {
    /// About `rps` requests per second to `path` on one keep-alive connection.
    pub fn start(port: u16, path: &str, rps: u64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(BTreeMap::new()));
        let (s, n, f, b, path) = (
            stop.clone(),
            sent.clone(),
            failures.clone(),
            bodies.clone(),
            path.to_string(),
        );
        let handle = thread::spawn(move || {
            let mut client = Client::new(port);
            let gap = Duration::from_micros(1_000_000 / rps.max(1));
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let r = client.get(&path, &[]);
                n.fetch_add(1, Ordering::Relaxed);
                if (200..300).contains(&r.status) {
                    *b.lock().unwrap().entry(r.body).or_insert(0) += 1;
                } else {
                    f.lock().unwrap().push((Instant::now(), r));
                }
                next += gap;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        });
        Traffic {
            stop,
            sent,
            failures,
            bodies,
            handle: Some(handle),
        }
    }

    /// Waits until at least `n` more requests went out.
    pub fn pass(&self, n: u64) {
        let start = self.sent.load(Ordering::Relaxed);
        wait_for("traffic", Duration::from_secs(30), || {
            (self.sent.load(Ordering::Relaxed) >= start + n).then_some(())
        });
    }

    pub fn stop(mut self) -> (u64, Vec<(Instant, Reply)>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failures.lock().unwrap().clone(),
            self.bodies.lock().unwrap().clone(),
        )
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// --- canary-xds ---

/// canary-xds `serve` as a child process, its log captured.
pub struct ControlPlane {
    pub child: Child,
    pub xds_port: u16,
    /// The admin server's port (`--admin`, a free port unless the test gives one; 0 if `off`).
    pub admin_port: u16,
    pub log: PathBuf,
    pub dir: PathBuf,
    extra: Vec<String>,
}

impl ControlPlane {
    /// Starts `serve --dir dir` with `extra` flags, and waits until the xDS port accepts.
    pub fn start(dir: &Path, listen_port: u16, extra: &[&str]) -> ControlPlane {
        let xds_port = free_port();
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !extra.iter().any(|e| e == "--listen") {
            extra.push("--listen".into());
            extra.push(format!("127.0.0.1:{listen_port}"));
        }
        // Never the default admin address: two control planes (or one a developer runs) would
        // fight over it.
        if !extra.iter().any(|e| e == "--admin") {
            extra.push("--admin".into());
            extra.push(format!("127.0.0.1:{}", free_port()));
        }
        let admin_port = extra
            .iter()
            .position(|e| e == "--admin")
            .and_then(|i| extra.get(i + 1))
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0);
        let log = dir.with_extension(format!("cp-{xds_port}.log"));
        let child = spawn_control_plane(dir, xds_port, &extra, &log);
        let cp = ControlPlane {
            child,
            xds_port,
            admin_port,
            log,
            dir: dir.to_path_buf(),
            extra,
        };
        cp.wait_ready();
        cp
    }

    fn wait_ready(&self) {
        wait_for("canary-xds to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", self.xds_port)).ok()
        });
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports and flags.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_control_plane(&self.dir, self.xds_port, &self.extra, &self.log);
        self.wait_ready();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        wait_for("canary-xds to exit", Duration::from_secs(20), || {
            self.child.try_wait().unwrap()
        })
    }
}

fn spawn_control_plane(dir: &Path, xds_port: u16, extra: &[String], log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_canary-xds"))
        .arg("serve")
        .arg("--dir")
        .arg(dir)
        .arg("--xds")
        .arg(format!("127.0.0.1:{xds_port}"))
        .args(extra)
        .env("RUST_LOG", "canary_xds=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("canary-xds starts")
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- Envoy ---

/// A real Envoy as a child process.
pub struct Envoy {
    pub child: Child,
    pub admin_port: u16,
    pub log: PathBuf,
}

/// Flags for `canary-xds bootstrap`.
pub struct Boot<'a> {
    pub xds_port: u16,
    pub admin_port: u16,
    pub node_id: &'a str,
    pub fleet: &'a str,
    pub delta: bool,
    pub static_listener: Option<u16>,
}

/// The bootstrap `canary-xds bootstrap` prints for these flags.
pub fn bootstrap(b: &Boot<'_>) -> String {
    bootstrap_with(b, &[])
}

/// The bootstrap for these flags plus `extra` ones (such as `--no-runtime`).
pub fn bootstrap_with(b: &Boot<'_>, extra: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canary-xds"));
    cmd.arg("bootstrap")
        .arg("--xds")
        .arg(format!("127.0.0.1:{}", b.xds_port))
        .arg("--admin")
        .arg(format!("127.0.0.1:{}", b.admin_port))
        .arg("--node-id")
        .arg(b.node_id)
        .arg("--fleet")
        .arg(b.fleet);
    if b.delta {
        cmd.arg("--delta");
    }
    if let Some(p) = b.static_listener {
        cmd.arg("--static-listener").arg(format!("127.0.0.1:{p}"));
    }
    cmd.args(extra);
    let out = cmd.output().expect("canary-xds bootstrap runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Envoy {
    /// Starts Envoy with `bootstrap_yaml` (written into `work`) and waits until its admin
    /// answers.
    pub fn start(work: &Path, bootstrap_yaml: &str, admin_port: u16) -> Envoy {
        let envoy = Envoy::spawn(work, bootstrap_yaml, admin_port);
        wait_for("Envoy's admin", Duration::from_secs(30), || {
            envoy.admin("/ready").ok()
        });
        envoy
    }

    /// Starts Envoy with `bootstrap_yaml` (written into `work`) without waiting for anything:
    /// for an Envoy that is not expected to get ready.
    pub fn spawn(work: &Path, bootstrap_yaml: &str, admin_port: u16) -> Envoy {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let config = work.join(format!("envoy-{admin_port}-{n}.yaml"));
        std::fs::write(&config, bootstrap_yaml).unwrap();
        let log = work.join(format!("envoy-{admin_port}-{n}.log"));
        let child = Command::new("envoy")
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "-l", "warn", "--drain-time-s", "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("envoy starts");
        Envoy {
            child,
            admin_port,
            log,
        }
    }

    /// GETs an admin path.
    pub fn admin(&self, path: &str) -> Result<String, String> {
        let mut c = Client::new(self.admin_port);
        let r = c.get(path, &[]);
        if r.status == 200 {
            Ok(r.body)
        } else {
            Err(format!("{}: {}", r.status, r.body))
        }
    }

    /// POSTs nothing to an admin path (e.g. `/reset_counters`).
    pub fn admin_post(&self, path: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
    }

    /// Every counter and gauge from `/stats`, by name (text readouts keep their quotes off).
    pub fn stats(&self) -> BTreeMap<String, String> {
        let text = self.admin("/stats").unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect()
    }

    pub fn stat(&self, name: &str) -> Option<String> {
        self.stats().remove(name)
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.stat(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// The route version Envoy applied.
    pub fn route_version(&self) -> Option<String> {
        self.stat("http.canary_xds.rds.canary-xds.version_text")
    }

    /// What Envoy routes by: its route version and its runtime layer version (weight changes
    /// reach an Envoy with canary-xds's runtime layer as runtime updates alone).
    pub fn config_version(&self) -> (Option<String>, Option<String>) {
        let stats = self.stats();
        (
            stats
                .get("http.canary_xds.rds.canary-xds.version_text")
                .cloned(),
            stats.get("runtime.version_text").cloned(),
        )
    }

    /// How many route and runtime updates Envoy applied.
    pub fn updates(&self) -> u64 {
        self.counter("http.canary_xds.rds.canary-xds.update_success")
            + self.counter("runtime.update_success")
    }

    /// `/config_dump` as JSON.
    pub fn config_dump(&self, resource: &str) -> serde_json::Value {
        let text = self
            .admin(&format!("/config_dump?resource={resource}"))
            .unwrap_or_else(|e| panic!("config_dump: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// The weighted clusters of the first route whose prefix is `prefix` (name -> weight), or
    /// one cluster with weight 10000.
    /// The effective weights: a weighted route with a `runtime_key_prefix` reads each
    /// cluster's weight from Envoy's runtime (canary-xds's RTDS layer) when a value is there.
    pub fn weights(&self, prefix: &str) -> BTreeMap<String, u64> {
        let dump = self.config_dump("dynamic_route_configs");
        let runtime: serde_json::Value = self
            .admin("/runtime")
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let from_runtime = |key: &str| -> Option<u64> {
            runtime["entries"][key]["final_value"]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .map(|v| v as u64)
        };
        let mut out = BTreeMap::new();
        let Some(configs) = dump["configs"].as_array() else {
            return out;
        };
        for c in configs {
            for vh in c["route_config"]["virtual_hosts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for r in vh["routes"].as_array().into_iter().flatten() {
                    if r["match"]["prefix"] != prefix || r["match"].get("headers").is_some() {
                        continue;
                    }
                    if let Some(ws) = r["route"]["weighted_clusters"]["clusters"].as_array() {
                        let key_prefix = r["route"]["weighted_clusters"]["runtime_key_prefix"]
                            .as_str()
                            .unwrap_or("");
                        for w in ws {
                            let name = w["name"].as_str().unwrap().to_string();
                            let configured = w["weight"].as_u64().unwrap_or(0);
                            let weight = if key_prefix.is_empty() {
                                configured
                            } else {
                                from_runtime(&format!("{key_prefix}.{name}")).unwrap_or(configured)
                            };
                            out.insert(name, weight);
                        }
                    } else if let Some(c) = r["route"]["cluster"].as_str() {
                        out.insert(c.to_string(), 10000);
                    }
                    return out;
                }
            }
        }
        out
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- statistics ---

/// The two-sided 99.99% interval of a binomial count: mean +- 3.89 standard deviations (the
/// normal approximation is good here: n*p*(1-p) is in the hundreds). A correct system falls
/// outside it once in 10,000 runs.
pub fn binomial_interval(n: usize, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean - 3.89 * sd, mean + 3.89 * sd)
}

/// Writes `text` to `path` the way `mv` does: a temporary file renamed into place.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A Mapping document.
pub fn mapping(name: &str, prefix: &str, service: &str, extra: &str) -> String {
    format!(
        "apiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: {prefix}\nservice: {service}\n{extra}"
    )
}

// --- the admin server ---

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

/// Waits until the admin server on `port` says it is ready.
pub fn wait_admin_ready(port: u16) {
    wait_for(
        "the admin server to be ready",
        Duration::from_secs(20),
        || (http_get(port, "/readyz").status == 200).then_some(()),
    );
}

/// The value of one sample in Prometheus text: `series` is the name with its labels exactly as
/// printed (`canary_xds_reloads_total{result="ok"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Where tests leave files for people to look at (gitignored).
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// --- a real browser ---

/// Headless Chromium (Debian's `chromium`), each run with a fresh profile.
pub struct Chromium {
    pub bin: PathBuf,
}

impl Chromium {
    /// Finds Chromium on PATH. Without it, a test fails under CI (`CI` set: `.ci/run` installs
    /// it) and is skipped with a note elsewhere.
    pub fn find() -> Option<Chromium> {
        let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()
                .filter(|s| s.success())
                .map(|_| PathBuf::from(name))
        });
        match found {
            Some(bin) => Some(Chromium { bin }),
            None if std::env::var_os("CI").is_some() => {
                panic!("chromium is not on PATH: .ci/run installs it (apt-get install chromium)")
            }
            None => {
                eprintln!(
                    "note: chromium is not on PATH; skipping the browser check (apt-get install \
                     chromium to run it)"
                );
                None
            }
        }
    }

    /// Runs Chromium headless with `args` (after the usual flags) and returns what it printed.
    pub fn run_with(&self, args: &[String]) -> String {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&self.bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let mut out = String::new();
        let mut stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium {args:?} did not finish in 90 s");
            }
            thread::sleep(Duration::from_millis(20));
        };
        out.push_str(&reader.join().unwrap());
        assert!(status.success(), "chromium {args:?} failed: {status}");
        out
    }

    /// The DOM of `url` once it has loaded and its scripts ran.
    pub fn dump_dom(&self, url: &str) -> String {
        self.run_with(&["--dump-dom".into(), url.into()])
    }

    /// A 1366x900 screenshot of `url` (a laptop screen), written to `png`.
    pub fn screenshot(&self, url: &str, png: &Path) {
        let _ = std::fs::remove_file(png);
        self.run_with(&[
            format!("--screenshot={}", png.display()),
            "--window-size=1366,900".into(),
            url.into(),
        ]);
        assert!(png.exists(), "no screenshot at {}", png.display());
    }
}

/// `boot` with a runtime layer that makes Envoy refuse any regex program over 5 instructions:
/// a route table valid for canary-xds (and for a default Envoy) is rejected by such an Envoy.
/// The layer goes first, under the bootstrap's own layers if it has some.
pub fn strict_regex(boot: &str) -> String {
    const LAYER: &str =
        "  - name: strict\n    static_layer:\n      re2.max_program_size.error_level: 5\n";
    match boot.find("layered_runtime:\n  layers:\n") {
        Some(i) => {
            let at = i + "layered_runtime:\n  layers:\n".len();
            format!("{}{LAYER}{}", &boot[..at], &boot[at..])
        }
        None => format!("{boot}\nlayered_runtime:\n  layers:\n{LAYER}"),
    }
}

// --- TLS ---

/// A certificate authority made for a test, writing PEM files into a directory.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA certificate's file.
    pub ca: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate's files: (certificate, private key).
pub type CertFiles = (PathBuf, PathBuf);

impl Pki {
    /// A new CA whose files are named after `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate signed by this CA for `sans`: a URI when it holds `://`, an IP address
    /// when it parses as one, a DNS name otherwise. Good for servers and clients alike.
    pub fn issue(&self, name: &str, sans: &[&str]) -> CertFiles {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        params.subject_alt_names = sans
            .iter()
            .map(|s| {
                if s.contains("://") {
                    rcgen::SanType::URI(s.to_string().try_into().unwrap())
                } else if let Ok(ip) = s.parse() {
                    rcgen::SanType::IpAddress(ip)
                } else {
                    rcgen::SanType::DnsName(s.to_string().try_into().unwrap())
                }
            })
            .collect();
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&files.0, cert.pem()).unwrap();
        std::fs::write(&files.1, key.serialize_pem()).unwrap();
        files
    }
}

/// How an ADS test client talks to canary-xds.
pub enum ClientTls<'a> {
    Plaintext,
    /// TLS verifying the server as `localhost` against `ca`, presenting `cert` if given.
    Tls {
        ca: &'a Path,
        cert: Option<&'a CertFiles>,
    },
}

/// Opens a state-of-the-world ADS stream to canary-xds on 127.0.0.1:`port` as node `id` of
/// `fleet`, asks for clusters, and returns the first response, or the status that ended the
/// stream (a failed connection or handshake is `Unavailable`). Waits at most 10 s.
pub async fn first_cds(
    port: u16,
    tls: ClientTls<'_>,
    id: &str,
    fleet: &str,
) -> Result<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse, tonic::Status> {
    let (mut stream, _requests) = open_ads(port, tls, id, fleet).await?;
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer in 10 s"))??
        .ok_or_else(|| tonic::Status::ok("the stream ended without a response"))
}

/// An open ADS stream after its first request (clusters, as node `id` of `fleet`): the
/// responses, and the sender of further requests (the stream ends when it is dropped).
pub async fn open_ads(
    port: u16,
    tls: ClientTls<'_>,
    id: &str,
    fleet: &str,
) -> Result<
    (
        tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
        tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>,
    ),
    tonic::Status,
> {
    open_ads_with_window(port, tls, id, fleet, None).await
}

/// `open_ads` with HTTP/2 flow-control windows of `window` bytes (stream and connection): a
/// response larger than that stays in flight until the client reads it.
pub async fn open_ads_with_window(
    port: u16,
    tls: ClientTls<'_>,
    id: &str,
    fleet: &str,
    window: Option<u32>,
) -> Result<
    (
        tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
        tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>,
    ),
    tonic::Status,
> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use prost::Name;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let unavailable = |e: &dyn std::error::Error| {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        tonic::Status::unavailable(text)
    };
    let mut endpoint = match tls {
        ClientTls::Plaintext => Endpoint::from_shared(format!("http://127.0.0.1:{port}")),
        ClientTls::Tls { .. } => Endpoint::from_shared(format!("https://127.0.0.1:{port}")),
    }
    .unwrap()
    .connect_timeout(Duration::from_secs(5))
    .initial_stream_window_size(window)
    .initial_connection_window_size(window);
    if let ClientTls::Tls { ca, cert } = tls {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
            .domain_name("localhost");
        if let Some((cert, key)) = cert {
            config = config.identity(Identity::from_pem(
                std::fs::read(cert).unwrap(),
                std::fs::read(key).unwrap(),
            ));
        }
        endpoint = endpoint.tls_config(config).unwrap();
    }
    let channel = endpoint.connect().await.map_err(|e| unavailable(&e))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: id.into(),
            cluster: fleet.into(),
            ..Default::default()
        }),
        type_url: envoy_types::pb::envoy::config::cluster::v3::Cluster::type_url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((stream, tx))
}
