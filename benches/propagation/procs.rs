//! The processes and sockets of the propagation bench: child processes that are killed however
//! the bench ends, upstreams that answer with their name, a keep-alive HTTP/1.1 client, Envoy and
//! canary-xds. Adapted from `tests/common` (benches cannot import it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// PIDs of every child still running, so that Ctrl-C (or SIGTERM) can end them: `Drop` does
/// not run when the process is killed by a signal.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// On SIGINT or SIGTERM: kill every child by its recorded PID, then exit.
pub fn kill_children_on_signal() {
    thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a signal runtime");
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let pids = CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        eprintln!("interrupted: killed the bench's child processes");
        std::process::exit(130);
    });
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    child: Child,
    pub what: String,
}

impl Proc {
    pub fn spawn(mut cmd: Command, what: &str) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        Proc {
            child,
            what: what.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics if the process has exited, naming its log.
    pub fn check_alive(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{} exited ({status}); the end of {}:\n{}",
                self.what,
                log.display(),
                tail.join("\n")
            );
        }
    }

    /// Resident memory, from /proc.
    pub fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// Time on a CPU so far, summed over every thread, in nanoseconds (the scheduler's own
    /// count in /proc/PID/task/*/schedstat: finer than `cpu`'s clock ticks).
    pub fn busy_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// CPU time (user + system) used so far, from /proc (clock ticks of 10 ms).
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id();
        let _ = self.child.kill();
        let _ = self.child.wait();
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != pid);
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `f` every 10 ms until it returns `Some`, or panics with `what` at the deadline.
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
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an upstream");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, n) = (stop.clone(), name.to_string());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let n = n.clone();
                thread::spawn(move || serve_conn(conn, &n));
            }
        });
        Upstream { port, stop }
    }

    /// `service:` text that reaches this upstream by IP (a STATIC cluster).
    pub fn service(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_conn(conn: TcpStream, name: &str) {
    let _ = conn.set_nodelay(true);
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = conn;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{name}",
        name.len()
    );
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

/// A response: status, body and the `x-marker` header (status 0: no response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub marker: Option<String>,
}

/// The response header the marker route adds (see `inputs::MARKER_PREFIX`).
pub const MARKER_HEADER: &str = "x-marker";

impl Client {
    pub fn new(port: u16) -> Client {
        Client {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            conn: None,
        }
    }

    /// GETs `path`; a connection error is status 0.
    pub fn get(&mut self, path: &str) -> Reply {
        for _ in 0..2 {
            match self.try_get(path) {
                Ok(r) => return r,
                Err(_) => self.conn = None,
            }
        }
        Reply {
            status: 0,
            body: String::new(),
            marker: None,
        }
    }

    fn try_get(&mut self, path: &str) -> std::io::Result<Reply> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected");
        conn.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())?;
        let mut status_line = String::new();
        if conn.read_line(&mut status_line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let (mut len, mut close, mut chunked) = (0usize, false, false);
        let mut marker = None;
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
                } else if k.eq_ignore_ascii_case(MARKER_HEADER) {
                    marker = Some(v.to_string());
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
            marker,
        })
    }
}

// --- Envoy ---

/// The stat that holds the route configuration version an Envoy applied: the same name on both
/// sides, since the baseline's listener uses canary-xds's stat prefix and route config name.
pub const VERSION_STAT: &str = "http.canary_xds.rds.canary-xds.version_text";

/// A real Envoy as a child process, with a keep-alive connection to its admin.
pub struct Envoy {
    pub proc: Proc,
    pub log: PathBuf,
    admin: Client,
    poll: Duration,
}

impl Envoy {
    /// Starts `envoy` with `config` (a file; its extension tells Envoy YAML from JSON) and waits
    /// until its admin answers.
    pub fn start(
        envoy: &Path,
        what: &str,
        config: &Path,
        admin_port: u16,
        poll: Duration,
    ) -> Envoy {
        let log = config.with_extension("log");
        let mut cmd = Command::new(envoy);
        cmd.arg("-c")
            .arg(config)
            .args(["--disable-hot-restart", "-l", "warn", "--drain-time-s", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("an Envoy log file"));
        let mut e = Envoy {
            proc: Proc::spawn(cmd, what),
            log,
            admin: Client::new(admin_port),
            poll,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while e.admin_get("/ready").is_none() && e.admin_get("/server_info").is_none() {
            e.proc.check_alive(&e.log.clone());
            assert!(Instant::now() < deadline, "{what}: no admin after 120 s");
            thread::sleep(Duration::from_millis(20));
        }
        // The `envoy` on PATH may be a pyenv shim, a script and the wheel's launcher: each
        // execs the next, so the PID recorded is Envoy's own. Say so if it is not.
        let exe = std::fs::read_link(format!("/proc/{}/exe", e.proc.pid())).unwrap_or_default();
        if !exe.to_string_lossy().ends_with("envoy") {
            eprintln!(
                "warning: {what}'s PID {} runs {} (not Envoy itself?)",
                e.proc.pid(),
                exe.display()
            );
        }
        e
    }

    /// GETs an admin path; `None` unless the status is 200.
    pub fn admin_get(&mut self, path: &str) -> Option<String> {
        let r = self.admin.get(path);
        (r.status == 200).then_some(r.body)
    }

    /// The versions Envoy applied: the route configuration's and the runtime layer's (empty
    /// without RTDS), in one poll; `None` before it has routes.
    pub fn versions(&mut self) -> Option<Versions> {
        let body = self.admin_get(
            "/stats?type=TextReadouts&filter=%5E%28http%5C.canary_xds%5C.rds%5C.canary-xds%7Cruntime%29%5C.version_text%24",
        )?;
        let mut v = Versions::default();
        for l in body.lines() {
            let Some((k, val)) = l.split_once(": ") else {
                continue;
            };
            let val = val.trim().trim_matches('"').to_string();
            if k == VERSION_STAT {
                v.rds = val;
            } else if k == RUNTIME_VERSION_STAT {
                v.runtime = val;
            }
        }
        (!v.rds.is_empty()).then_some(v)
    }

    /// Polls the versions until `done` accepts them; returns when they were first seen (the
    /// instant the reply arrived) and what they were. `None` at the deadline.
    pub fn wait_versions(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&Versions) -> bool,
    ) -> Option<(Instant, Versions)> {
        loop {
            let v = self.versions();
            let at = Instant::now();
            if let Some(v) = v
                && done(&v)
            {
                return Some((at, v));
            }
            if at > deadline {
                return None;
            }
            if !self.poll.is_zero() {
                thread::sleep(self.poll);
            }
        }
    }
}

/// The stat of the runtime layers' version (RTDS); Envoy keeps it whether or not it has one.
pub const RUNTIME_VERSION_STAT: &str = "runtime.version_text";

/// What an Envoy's admin says it applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versions {
    /// `http.canary_xds.rds.canary-xds.version_text`.
    pub rds: String,
    /// `runtime.version_text` (empty until an RTDS layer was loaded).
    pub runtime: String,
}

impl std::fmt::Display for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rds {:?}, runtime {:?}", self.rds, self.runtime)
    }
}

// --- canary-xds ---

/// `canary-xds serve` as a child process, logging at debug level (JSON lines) to a file.
pub struct ControlPlane {
    pub proc: Proc,
    pub xds_port: u16,
    pub admin_port: u16,
    pub log: PathBuf,
}

impl ControlPlane {
    pub fn start(
        bin: &Path,
        dir: &Path,
        log: &Path,
        listen_port: u16,
        extra: &[String],
    ) -> ControlPlane {
        let xds_port = free_port();
        let admin_port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--dir")
            .arg(dir)
            .arg("--xds")
            .arg(format!("127.0.0.1:{xds_port}"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{listen_port}"))
            .arg("--admin")
            .arg(format!("127.0.0.1:{admin_port}"))
            .args(["--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", "canary_xds=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("a canary-xds log file"));
        let mut cp = ControlPlane {
            proc: Proc::spawn(cmd, "canary-xds serve"),
            xds_port,
            admin_port,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(300);
        while cp.admin_get("/readyz").is_none() {
            cp.proc.check_alive(&cp.log.clone());
            assert!(
                Instant::now() < deadline,
                "canary-xds not ready after 300 s"
            );
            thread::sleep(Duration::from_millis(20));
        }
        cp
    }

    /// GETs an admin path over a fresh connection; `None` unless the status is 200.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        let r = Client::new(self.admin_port).get(path);
        (r.status == 200).then_some(r.body)
    }
}

/// Runs `canary-xds bootstrap` with these flags and returns the YAML it prints.
pub fn bootstrap(
    bin: &Path,
    xds_port: u16,
    admin_port: u16,
    node: &str,
    extra: &[String],
) -> String {
    let out = Command::new(bin)
        .arg("bootstrap")
        .arg("--xds")
        .arg(format!("127.0.0.1:{xds_port}"))
        .arg("--admin")
        .arg(format!("127.0.0.1:{admin_port}"))
        .arg("--node-id")
        .arg(node)
        .arg("--fleet")
        .arg("default")
        .args(extra)
        .output()
        .expect("canary-xds bootstrap runs");
    assert!(
        out.status.success(),
        "canary-xds bootstrap {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

// --- the data-plane probe ---

/// What a probe reads from each reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The body: which upstream answered.
    Body,
    /// The `x-marker` header: which route table answered.
    Marker,
}

/// What the probe saw last.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The last 2xx answer.
    pub body: String,
    /// When the reply that first carried `body` arrived.
    pub since: Instant,
    pub requests: u64,
    /// Replies that were not 2xx (or no reply at all).
    pub failures: u64,
}

/// A dedicated thread sending requests back to back on one keep-alive connection, recording
/// when the answer changes.
pub struct Probe {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Probe {
    pub fn start(port: u16, path: &str, answer: Answer, gap: Duration) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen {
            body: String::new(),
            since: Instant::now(),
            requests: 0,
            failures: 0,
        }));
        let (s, w, path) = (stop.clone(), seen.clone(), path.to_string());
        let handle = thread::spawn(move || {
            let mut client = Client::new(port);
            while !s.load(Ordering::Relaxed) {
                let r = client.get(&path);
                let at = Instant::now();
                let mut seen = w.lock().unwrap_or_else(|e| e.into_inner());
                seen.requests += 1;
                if (200..300).contains(&r.status) {
                    let a = match answer {
                        Answer::Body => r.body,
                        Answer::Marker => r.marker.unwrap_or_default(),
                    };
                    if a != seen.body {
                        seen.body = a;
                        seen.since = at;
                    }
                } else {
                    seen.failures += 1;
                }
                drop(seen);
                if !gap.is_zero() {
                    thread::sleep(gap);
                }
            }
        });
        Probe {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
