//! The route-table cap (`cargo bench --bench route_cap`): what refusing a table that multiplies
//! into millions of route entries costs `serve`, in time and in peak memory.
//!
//! 3,000 Mappings on 3,000 hosts (`hosts.yaml`) and 3,000 hostless Mappings
//! (`hostless.yaml`) make 9,006,000 route entries, over the default `--max-routes` of 500,000.
//! For each case a fresh `canary-xds serve` (the release binary) starts on a directory, and
//! the bench waits until its `/readyz` tells what it decided, then reads the process's peak RSS
//! (`VmHWM` in /proc/PID/status):
//!
//! - `hosts only`: the same files without the hostless routes, the baseline;
//! - `refused at start`: both files, no good past: the fleet is withheld;
//! - `refused later`: `hosts.yaml` served, then `hostless.yaml` renamed in: the last good table
//!   keeps serving. Also the time from the rename to `/api/diagnostics` reporting the refusal.
//!
//! The issue's bar: the refusal within a few seconds, and under 100 MiB more than `hosts only`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_canary-xds");
const N: usize = 3_000;

fn many(n: usize, name: &str, hosts: bool) -> String {
    (0..n)
        .map(|i| {
            let host = if hosts {
                format!("host: h{i}.example.com\n")
            } else {
                String::new()
            };
            format!(
                "---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}{i}\nprefix: /{name}{i}/\nservice: {name}{i}\n{host}"
            )
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`: the status and the body, or `None` if nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

struct Serve {
    child: Child,
    admin: u16,
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let admin = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .args(["--xds", &format!("127.0.0.1:{}", free_port())])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("canary-xds serve starts");
        Serve { child, admin }
    }

    /// Polls `path` until `done` holds (30 s at most).
    fn wait(&self, path: &str, done: impl Fn(u16, &str) -> bool) -> Duration {
        let t0 = Instant::now();
        loop {
            if let Some((status, body)) = get(self.admin, path)
                && done(status, &body)
            {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out on {path}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The peak resident set size so far, in MiB.
    fn peak_mib(&self) -> f64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb / 1024.0
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let t = tempfile::tempdir().unwrap();
    let hosts = many(N, "h", true);
    let hostless = many(N, "r", false);

    let only = t.path().join("only");
    fs::create_dir(&only).unwrap();
    fs::write(only.join("hosts.yaml"), &hosts).unwrap();
    let s = Serve::start(&only);
    let took = s.wait("/readyz", |status, _| status == 200);
    let base = s.peak_mib();
    println!("hosts only:        ready in {took:.2?}, peak RSS {base:.1} MiB");
    drop(s);

    let both = t.path().join("both");
    fs::create_dir(&both).unwrap();
    fs::write(both.join("hosts.yaml"), &hosts).unwrap();
    fs::write(both.join("hostless.yaml"), &hostless).unwrap();
    let s = Serve::start(&both);
    let took = s.wait("/readyz", |status, body| {
        status == 503 && body.contains("9,006,000 route entries")
    });
    let start = s.peak_mib();
    println!(
        "refused at start:  refused in {took:.2?}, peak RSS {start:.1} MiB ({:+.1} MiB)",
        start - base
    );
    drop(s);

    let later = t.path().join("later");
    fs::create_dir(&later).unwrap();
    fs::write(later.join("hosts.yaml"), &hosts).unwrap();
    let s = Serve::start(&later);
    s.wait("/readyz", |status, _| status == 200);
    let staged = t.path().join("hostless.yaml");
    fs::write(&staged, &hostless).unwrap();
    let t0 = Instant::now();
    fs::rename(&staged, later.join("hostless.yaml")).unwrap();
    s.wait("/api/diagnostics", |_, body| {
        body.contains("9,006,000 route entries")
    });
    let took = t0.elapsed();
    let peak = s.peak_mib();
    println!(
        "refused later:     refused {took:.2?} after the rename, peak RSS {peak:.1} MiB ({:+.1} MiB)",
        peak - base
    );
    let ok = start - base < 100.0 && peak - base < 100.0;
    println!(
        "target: under 100 MiB more than hosts only: {}",
        if ok { "met" } else { "MISSED" }
    );
}
