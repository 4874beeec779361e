//! The xDS port against clients that abuse it (issue 12, sections 2 and 4): oversized
//! requests, streams and connections without end, a stream that never speaks, a certificate no
//! rule allows, a million names, long strings, subscriptions cycled to grow the archive, fleets
//! claimed to grow `/metrics`, and a NACK that forges log lines.
//!
//! Each test runs `serve` as a child process over loopback, attacks it with a tonic client,
//! and asserts the refusal (gRPC status and text, and its count in `/metrics`). And each checks
//! that the server still works for a well-behaved real Envoy on it: a weight change made during
//! the attack reaches that Envoy within 1 s. Traffic alone would prove nothing, since Envoy
//! keeps routing on its last config when its control plane is dead; the weights Envoy routes by
//! are read from its admin. Every test holds the Envoy lock.

mod common;

use std::cell::Cell;
use std::future::Future;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

/// How long every attacker may take to finish its first attack. A debug build making and
/// encoding a million names three times over takes seconds on a loaded 2-core machine; this is a
/// deadline, not a wait.
const ATTACK_START: Duration = Duration::from_secs(90);

/// How soon a weight change must reach the well-behaved Envoy, attack or not.
const PROPAGATION: Duration = Duration::from_secs(1);

const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// What a rig starts with, besides the canary on `/qotm/`.
#[derive(Default)]
struct Opts<'a> {
    /// `serve` flags.
    flags: Vec<String>,
    /// `canary-xds bootstrap` flags for the Envoy (TLS files).
    envoy_flags: Vec<String>,
    /// More Mapping files.
    files: Vec<(&'a str, String)>,
    /// The open-file limit `serve` runs under.
    open_files: Option<u64>,
}

/// canary-xds serving the canary on `/qotm/` to one real Envoy (node `e1`, fleet `default`),
/// and a runtime for the attacking clients.
struct Rig {
    rt: tokio::runtime::Runtime,
    envoy: Envoy,
    cp: ControlPlane,
    dir: PathBuf,
    main: Upstream,
    canary: Upstream,
    weight: Cell<u32>,
    _work: WorkDir,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Rig {
    fn start(flags: &[&str]) -> Rig {
        Rig::start_with(
            WorkDir::new(),
            Opts {
                flags: flags.iter().map(|f| f.to_string()).collect(),
                ..Opts::default()
            },
        )
    }

    fn start_with(work: WorkDir, opts: Opts<'_>) -> Rig {
        let lock = envoy_lock();
        let main = Upstream::start("main");
        let canary = Upstream::start("canary");
        let mut files: Vec<(&str, String)> = canary_files(&main, &canary, 10).into();
        files.extend(opts.files);
        let dir = work.mappings(&files);
        let listen = free_port();
        let flags: Vec<&str> = opts.flags.iter().map(String::as_str).collect();
        let cp = match opts.open_files {
            Some(n) => ControlPlane::start_with_open_files(&dir, listen, &flags, n),
            None => ControlPlane::start(&dir, listen, &flags),
        };
        let admin = free_port();
        let envoy_flags: Vec<&str> = opts.envoy_flags.iter().map(String::as_str).collect();
        let boot = bootstrap_with(
            &Boot {
                xds_port: cp.xds_port,
                admin_port: admin,
                node_id: "e1",
                fleet: "default",
                delta: false,
                static_listener: None,
            },
            &envoy_flags,
        );
        let envoy = Envoy::start(work.path(), &boot, admin);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rig = Rig {
            rt,
            envoy,
            cp,
            dir,
            main,
            canary,
            weight: Cell::new(10),
            _work: work,
            _lock: lock,
        };
        let (cm, cc) = canary_clusters(&rig.main, &rig.canary);
        wait_weights(&rig.envoy, "/qotm/", &canary_split(&cm, &cc, 10), WAIT);
        rig
    }

    fn port(&self) -> u16 {
        self.cp.xds_port
    }

    /// Moves the canary to a new weight and asserts that Envoy routes by it within 1 s.
    fn weight_change_reaches_envoy(&self) -> Duration {
        let w = 11 + self.weight.get() % 80;
        self.weight.set(w);
        let (cm, cc) = canary_clusters(&self.main, &self.canary);
        let expected: std::collections::BTreeMap<String, u64> = canary_split(&cm, &cc, w)
            .iter()
            .map(|(c, bp)| (c.to_string(), *bp))
            .collect();
        let started = Instant::now();
        write_atomically(
            &self.dir.join("qotmv2.yaml"),
            &canary_files(&self.main, &self.canary, w)[1].1,
        );
        loop {
            let weights = self.envoy.weights("/qotm/");
            if weights == expected {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < PROPAGATION,
                "a weight change took more than {PROPAGATION:?} to reach Envoy: it routes by \
                 {weights:?}, not {expected:?}\n{}",
                self.cp.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `attack` over and over, `n` at once, until a weight change made meanwhile reached
    /// Envoy (within 1 s, or the test fails); returns how each attack ended.
    fn under_attack<F, Fut>(&self, n: usize, attack: F) -> Vec<tonic::Status>
    where
        F: Fn(u16) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = tonic::Status> + Send,
    {
        let attack = Arc::new(attack);
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (attack, stop, ended, port) =
                    (attack.clone(), stop.clone(), ended.clone(), self.port());
                self.rt.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let status = attack(port).await;
                        ended.lock().unwrap().push(status);
                    }
                })
            })
            .collect();
        wait_for("the attack to be under way", ATTACK_START, || {
            (ended.lock().unwrap().len() >= n).then_some(())
        });
        let took = self.weight_change_reaches_envoy();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            self.rt.block_on(t).unwrap();
        }
        let ended = std::mem::take(&mut *ended.lock().unwrap());
        eprintln!(
            "a weight change reached Envoy in {took:?} during {} attacks",
            ended.len()
        );
        ended
    }

    /// The value of a sample of `/metrics`.
    fn metric(&self, series: &str) -> f64 {
        let text = http_get(self.cp.admin_port, "/metrics").body;
        metric(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    fn refused(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "canary_xds_xds_refused_total{{reason=\"{reason}\"}}"
        ))
    }

    /// canary-xds's view of its Envoys (`/api/envoys`).
    fn envoys(&self) -> Vec<serde_json::Value> {
        get_json(self.cp.admin_port, "/api/envoys")["envoys"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Every status is `code`, with `text` in its message.
fn assert_all(statuses: &[tonic::Status], code: Code, text: &str) {
    assert!(!statuses.is_empty());
    for s in statuses {
        assert_eq!(s.code(), code, "{s:?}");
        assert!(s.message().contains(text), "{text:?} not in {s:?}");
    }
}

fn sotw(node_id: &str, fleet: &str, type_url: &str, names: Vec<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(node(node_id, fleet)),
        type_url: type_url.into(),
        resource_names: names,
        ..Default::default()
    }
}

/// Opens a SotW stream whose first request is `first`, and returns how it ended (10 s at most).
async fn sotw_ending(port: u16, first: DiscoveryRequest) -> tonic::Status {
    let channel = match ads_channel(port, ClientTls::Plaintext, None).await {
        Ok(c) => c,
        Err(s) => return s,
    };
    match sotw_on(channel, Some(first)).await {
        Ok((mut stream, _tx)) => end_status(&mut stream, Duration::from_secs(10)).await,
        Err(s) => s,
    }
}

/// Opens a delta stream whose first request is `first`, and returns how it ended (10 s at most).
async fn delta_ending(port: u16, first: DeltaDiscoveryRequest) -> tonic::Status {
    let channel = match ads_channel(port, ClientTls::Plaintext, None).await {
        Ok(c) => c,
        Err(s) => return s,
    };
    match delta_on(channel, Some(first)).await {
        Ok((mut stream, _tx)) => end_status(&mut stream, Duration::from_secs(10)).await,
        Err(s) => s,
    }
}

// --- message size ---

#[test]
fn a_request_over_the_size_limit_ends_its_stream_with_resource_exhausted() {
    require_envoy!();
    let rig = Rig::start(&[]);
    // 10 MiB: under the old limit of 64 MiB, over the 4 MiB a small fleet needs.
    let ended = rig.under_attack(2, |port| async move {
        let big = "x".repeat(10 * 1024 * 1024);
        sotw_ending(port, sotw("big", "default", CLUSTER, vec![big])).await
    });
    assert_all(&ended, Code::ResourceExhausted, "request too large");
    assert_all(
        &ended,
        Code::ResourceExhausted,
        "the limit is: 4194304 bytes",
    );
    assert!(rig.refused("request_too_large") >= ended.len() as f64);
}

/// `n` Mappings of fleet `big` with long service names (about 200 bytes), in files of 1,000.
fn big_fleet(n: usize) -> Vec<(String, String)> {
    let pad = format!("{}.{}.{}", "a".repeat(60), "b".repeat(60), "c".repeat(50));
    (0..n.div_ceil(1000))
        .map(|f| {
            let text = (f * 1000..n.min((f + 1) * 1000))
                .map(|i| {
                    Mapping::new(&format!("m{i}"))
                        .prefix(&format!("/m{i}/"))
                        .service(&format!("s{i}.{pad}.big:8080"))
                        .extra("ambassador_id: big\n")
                        .text()
                })
                .collect::<Vec<_>>()
                .join("---\n");
            (format!("big{f:03}.yaml"), text)
        })
        .collect()
}

#[test]
fn a_delta_reconnect_of_50000_long_cluster_names_is_taken() {
    require_envoy!();
    const CLUSTERS: usize = 50_000;
    let rig = Rig::start(&[]);
    // Written once Envoy is up: the first reload of 50,000 Mappings takes a while.
    for (name, text) in big_fleet(CLUSTERS) {
        write_atomically(&rig.dir.join(name), &text);
    }
    wait_for(
        "the big fleet to be served",
        Duration::from_secs(300),
        || (rig.metric("canary_xds_clusters") >= CLUSTERS as f64).then_some(()),
    );
    let port = rig.port();
    let (held, request_bytes) = rig.rt.block_on(async move {
        // What a delta Envoy of the fleet holds: every cluster, by name and version (asked
        // again until the whole fleet is published: the metric comes just before).
        let deadline = Instant::now() + WAIT;
        let held = loop {
            let channel = ads_channel(port, ClientTls::Plaintext, None).await.unwrap();
            let first = DeltaDiscoveryRequest {
                node: Some(node("big-1", "big")),
                type_url: CLUSTER.into(),
                ..Default::default()
            };
            let (mut stream, _tx) = delta_on(channel, Some(first)).await.unwrap();
            let response = tokio::time::timeout(WAIT, stream.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if response.resources.len() >= CLUSTERS || Instant::now() > deadline {
                break response
                    .resources
                    .iter()
                    .map(|r| (r.name.clone(), r.version.clone()))
                    .collect::<std::collections::HashMap<String, String>>();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let reconnect = DeltaDiscoveryRequest {
            node: Some(node("big-1", "big")),
            type_url: CLUSTER.into(),
            initial_resource_versions: held.clone(),
            ..Default::default()
        };
        (held, prost::Message::encoded_len(&reconnect))
    });
    assert_eq!(held.len(), CLUSTERS);
    assert!(
        request_bytes > 8 * 1024 * 1024,
        "the reconnect is {request_bytes} bytes: more than twice the 4 MiB floor"
    );
    // The reconnect is taken (no refusal), and Envoy holds everything already: nothing is sent
    // for clusters. The stream lives on: the listeners asked for next are its first answer.
    let response = rig.rt.block_on(async move {
        let channel = ads_channel(port, ClientTls::Plaintext, None).await.unwrap();
        let reconnect = DeltaDiscoveryRequest {
            node: Some(node("big-1", "big")),
            type_url: CLUSTER.into(),
            initial_resource_versions: held,
            ..Default::default()
        };
        let (mut stream, tx) = delta_on(channel, Some(reconnect)).await.unwrap();
        tx.send(DeltaDiscoveryRequest {
            type_url: LISTENER.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        tokio::time::timeout(WAIT, stream.message()).await.unwrap()
    });
    let response = response
        .unwrap_or_else(|s| panic!("the reconnect was refused: {s:?}"))
        .unwrap();
    assert_eq!(response.type_url, LISTENER, "nothing for clusters");
    assert_eq!(rig.refused("request_too_large"), 0.0);
    let took = rig.weight_change_reaches_envoy();
    eprintln!("with the big fleet served, a weight change reached Envoy in {took:?}");
}

// --- streams and connections ---

#[test]
fn streams_per_connection_are_capped() {
    require_envoy!();
    let rig = Rig::start(&[]);
    let port = rig.port();
    let first = |i: usize| sotw(&format!("s{i}"), "default", CLUSTER, vec![]);
    // A hundred streams on one connection, each answered.
    let (channel, mut streams) = rig.rt.block_on(async move {
        let channel = ads_channel(port, ClientTls::Plaintext, None).await.unwrap();
        let mut streams = Vec::new();
        for i in 0..100 {
            let (mut s, tx) = sotw_on(channel.clone(), Some(first(i))).await.unwrap();
            let r = tokio::time::timeout(WAIT, s.message()).await.unwrap();
            assert!(matches!(r, Ok(Some(_))), "{r:?}");
            streams.push((s, tx));
        }
        (channel, streams)
    });
    // The 101st waits: the server's SETTINGS allow 100 (hyper's own default was removed).
    let extra = rig.rt.spawn({
        let channel = channel.clone();
        async move {
            let (mut s, _tx) = sotw_on(channel, Some(first(100))).await?;
            s.message().await.map(|m| m.is_some())
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(!extra.is_finished(), "a 101st stream was opened at once");
    // Meanwhile Envoy, on its own connection, gets its changes.
    rig.weight_change_reaches_envoy();
    // One stream ends: the 101st opens.
    drop(streams.pop());
    let answered = rig
        .rt
        .block_on(async { tokio::time::timeout(WAIT, extra).await })
        .expect("the 101st stream opens once another closed")
        .unwrap();
    assert!(answered.unwrap(), "the 101st stream is answered");
    drop(streams);
}

/// Opens `n` connections to 127.0.0.1:`port`, each sending the HTTP/2 preface (so it is a
/// client, not an idle socket).
fn connections(port: u16, n: usize) -> Vec<TcpStream> {
    use std::io::Write;
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = s
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
            s
        })
        .collect()
}

/// The open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Reads `s` until the server closes it, failing if it stays open for 10 s.
fn closed_by_server(mut s: TcpStream) {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    if let Err(e) = s.read_to_end(&mut sink) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the server kept a silent connection open: {e}"
        );
    }
}

#[test]
fn a_connection_that_never_sends_the_http2_preface_is_closed() {
    use std::io::Write;
    require_envoy!();
    let rig = Rig::start(&["--xds-handshake-timeout", "1"]);
    let started = Instant::now();
    let silent: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(("127.0.0.1", rig.port())).unwrap())
        .collect();
    // Half the preface is not the preface.
    let mut half = TcpStream::connect(("127.0.0.1", rig.port())).unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    wait_for("the silent connections to be closed", WAIT, || {
        (rig.refused("no_preface") >= 51.0).then_some(())
    });
    assert!(started.elapsed() >= Duration::from_millis(900));
    for s in silent {
        closed_by_server(s);
    }
    closed_by_server(half);
    assert_eq!(rig.metric("canary_xds_xds_connections"), 1.0);
    // Envoy sent its preface long ago and is silent now, as a settled Envoy is: it keeps its
    // connection, and a weight change reaches it.
    rig.weight_change_reaches_envoy();
    assert_eq!(rig.refused("no_preface"), 51.0);
}

#[test]
fn connections_over_the_limit_are_refused_and_leave_descriptors_for_the_files() {
    require_envoy!();
    // 256 open files: the default limit keeps 128 of them for connections, the rest for the
    // files, the watcher and the admin server.
    let rig = Rig::start_with(
        WorkDir::new(),
        Opts {
            open_files: Some(256),
            ..Opts::default()
        },
    );
    let flood = connections(rig.port(), 300);
    wait_for("connections over the limit to be refused", WAIT, || {
        (rig.refused("too_many_connections") >= 100.0).then_some(())
    });
    assert_eq!(rig.metric("canary_xds_xds_connections"), 128.0);
    let fds = open_fds(rig.cp.child.id());
    assert!(fds < 256, "{fds} files open");
    // Files can still be read: a weight change reaches Envoy.
    rig.weight_change_reaches_envoy();
    drop(flood);
    wait_for("the connections to close", WAIT, || {
        (rig.metric("canary_xds_xds_connections") == 1.0).then_some(())
    });
}

/// CPU time (user and system) of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name (in parentheses): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = String::from_utf8(
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn out_of_descriptors_the_accept_loop_pauses_instead_of_spinning() {
    require_envoy!();
    // A connection limit above what 64 open files allow: accepts fail (EMFILE) first.
    let rig = Rig::start_with(
        WorkDir::new(),
        Opts {
            flags: vec!["--xds-max-connections".into(), "1000".into()],
            open_files: Some(64),
            ..Opts::default()
        },
    );
    assert!(
        rig.cp
            .log_text()
            .contains("--xds-max-connections is above what the open-file limit"),
        "{}",
        rig.cp.log_text()
    );
    let pid = rig.cp.child.id();
    let flood = connections(rig.port(), 100);
    wait_for("accepts to fail", WAIT, || {
        rig.cp
            .log_text()
            .contains("the xDS port cannot accept connections")
            .then_some(())
    });
    // tonic's own loop would try again at once, a core's worth of CPU for as long as it lasts.
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time(pid) - before;
    eprintln!("out of file descriptors: {used:?} of CPU in 1 s");
    assert!(used < Duration::from_millis(200), "{used:?} of CPU in 1 s");
    // Once connections close, it accepts again, and Envoy (connected before) still gets its
    // changes (while no descriptor was left, even the files could not be read).
    drop(flood);
    wait_for("the admin server to answer", WAIT, || {
        (http_get(rig.cp.admin_port, "/metrics").status == 200).then_some(())
    });
    assert!(rig.metric("canary_xds_xds_accept_errors_total") >= 1.0);
    rig.weight_change_reaches_envoy();
}

// --- a stream that never speaks ---

#[test]
fn a_stream_whose_first_request_does_not_come_is_closed_and_only_the_first_is_timed() {
    require_envoy!();
    let rig = Rig::start(&["--xds-first-request-timeout", "1"]);
    let ended = rig.under_attack(20, |port| async move {
        let channel = match ads_channel(port, ClientTls::Plaintext, None).await {
            Ok(c) => c,
            Err(s) => return s,
        };
        let started = Instant::now();
        match sotw_on(channel, None).await {
            Ok((mut stream, _tx)) => {
                let status = end_status(&mut stream, Duration::from_secs(10)).await;
                assert!(started.elapsed() >= Duration::from_millis(900));
                status
            }
            Err(s) => s,
        }
    });
    assert_all(
        &ended,
        Code::DeadlineExceeded,
        "no request within 1s of opening the stream",
    );
    assert!(rig.refused("no_first_request") >= ended.len() as f64);
    // Envoy, settled and silent for longer than that, is still on its first stream.
    let e1 = |rig: &Rig| {
        rig.envoys()
            .into_iter()
            .find(|e| e["node_id"] == "e1")
            .map(|e| e["connected_since"].clone())
    };
    let since = e1(&rig).expect("e1 connected");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(e1(&rig), Some(since));
}

// --- authorize first ---

#[test]
fn a_certificate_no_rule_allows_is_refused_before_its_request_is_looked_at() {
    require_envoy!();
    let work = WorkDir::new();
    let pki = Pki::new(work.path(), "corp");
    let server = pki.issue("canary-xds", &["localhost", "127.0.0.1"]);
    let edge = pki.issue("edge", &["spiffe://corp/ns/prod/sa/edge"]);
    let intruder = pki.issue("intruder", &["spiffe://corp/ns/prod/sa/intruder"]);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let opts = Opts {
        flags: vec![
            "--xds-tls-cert".into(),
            path(&server.0),
            "--xds-tls-key".into(),
            path(&server.1),
            "--xds-client-ca".into(),
            path(&pki.ca),
            "--allow".into(),
            "default=spiffe://corp/ns/*/sa/edge".into(),
        ],
        envoy_flags: vec![
            "--xds-tls-ca".into(),
            path(&pki.ca),
            "--client-cert".into(),
            path(&edge.0),
            "--client-key".into(),
            path(&edge.1),
        ],
        ..Opts::default()
    };
    let (ca, cert) = (pki.ca.clone(), intruder.clone());
    let rig = Rig::start_with(work, opts);
    // Requests that, looked at first, would be refused for what they hold (no type_url; a
    // million names) or cost the server work: the certificate is checked first, so every one
    // gets PERMISSION_DENIED.
    let ended = rig.under_attack(2, move |port| {
        let (ca, cert) = (ca.clone(), cert.clone());
        async move {
            let tls = ClientTls::Tls {
                ca: &ca,
                cert: Some(&cert),
            };
            let channel = match ads_channel(port, tls, None).await {
                Ok(c) => c,
                Err(s) => return s,
            };
            let names: Vec<String> = (0..1_000_000).map(|i| (i % 10).to_string()).collect();
            let first = DeltaDiscoveryRequest {
                node: Some(node("intruder", "default")),
                type_url: ROUTE.into(),
                resource_names_subscribe: names,
                ..Default::default()
            };
            match delta_on(channel.clone(), Some(first)).await {
                Ok((mut s, _tx)) => {
                    let status = end_status(&mut s, Duration::from_secs(10)).await;
                    if status.code() != Code::PermissionDenied {
                        return status;
                    }
                }
                Err(s) => return s,
            }
            let no_type = DiscoveryRequest {
                node: Some(node("intruder", "default")),
                ..Default::default()
            };
            match sotw_on(channel, Some(no_type)).await {
                Ok((mut s, _tx)) => end_status(&mut s, Duration::from_secs(10)).await,
                Err(s) => s,
            }
        }
    });
    assert_all(
        &ended,
        Code::PermissionDenied,
        "this client certificate may not receive fleet \"default\"",
    );
    assert_eq!(rig.refused("too_many_names"), 0.0);
}

// --- bounded names ---

#[test]
fn a_request_naming_a_million_resources_is_refused_before_any_per_name_work() {
    require_envoy!();
    let rig = Rig::start(&[]);
    let ended = rig.under_attack(2, |port| async move {
        // One-byte names: 3 MB, under the size limit, so that the names limit is what refuses.
        let names: Vec<String> = (0..1_000_000).map(|i| (i % 10).to_string()).collect();
        let subscribe = DeltaDiscoveryRequest {
            node: Some(node("many", "default")),
            type_url: ROUTE.into(),
            resource_names_subscribe: names.clone(),
            ..Default::default()
        };
        let status = delta_ending(port, subscribe).await;
        if status.code() != Code::ResourceExhausted {
            return status;
        }
        let reconnect = DeltaDiscoveryRequest {
            node: Some(node("many", "default")),
            type_url: CLUSTER.into(),
            initial_resource_versions: (0..300_000)
                .map(|i| (i.to_string(), String::new()))
                .collect(),
            ..Default::default()
        };
        let status = delta_ending(port, reconnect).await;
        if status.code() != Code::ResourceExhausted {
            return status;
        }
        sotw_ending(port, sotw("many", "default", ROUTE, names)).await
    });
    assert_all(&ended, Code::ResourceExhausted, "resources; at most");
    assert!(rig.refused("too_many_names") >= 3.0 * ended.len() as f64);
    assert_eq!(rig.refused("request_too_large"), 0.0);
}

// --- bounded strings ---

#[test]
fn a_fleet_name_longer_than_any_fleet_is_refused_and_long_ids_and_nacks_are_cut() {
    require_envoy!();
    let rig = Rig::start(&[]);
    let ended = rig.under_attack(4, |port| async move {
        sotw_ending(port, sotw("long", &"f".repeat(254), CLUSTER, vec![])).await
    });
    assert_all(
        &ended,
        Code::InvalidArgument,
        "node.cluster is 254 bytes long; no fleet name is longer than 253 bytes",
    );
    assert!(rig.refused("fleet_name_too_long") >= ended.len() as f64);
    // A 10,000-byte node id and a 100 KB NACK, of two-byte characters: kept cut.
    let port = rig.port();
    let _client = rig.rt.block_on(async move {
        let channel = ads_channel(port, ClientTls::Plaintext, None).await.unwrap();
        let first = sotw(&"é".repeat(5000), "default", CLUSTER, vec![]);
        let (mut stream, tx) = sotw_on(channel, Some(first)).await.unwrap();
        let response = stream.message().await.unwrap().unwrap();
        tx.send(DiscoveryRequest {
            type_url: CLUSTER.into(),
            response_nonce: response.nonce,
            error_detail: Some(envoy_types::pb::google::rpc::Status {
                code: 13,
                message: "ü".repeat(50_000),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
        (stream, tx)
    });
    let long = wait_for("the NACK to be seen", WAIT, || {
        rig.envoys()
            .into_iter()
            .find(|e| e["node_id"].as_str().is_some_and(|id| id.starts_with('é')))
            .filter(|e| !e["types"]["cds"]["last_nack"].is_null())
    });
    assert_eq!(long["node_id"].as_str().unwrap(), "é".repeat(128));
    let nack = long["types"]["cds"]["last_nack"]["message"]
        .as_str()
        .unwrap();
    assert_eq!(nack, "ü".repeat(2048));
}

// --- the archive ---

#[test]
fn a_client_cycling_subscriptions_grows_neither_the_archive_nor_served_bin() {
    require_envoy!();
    let work = WorkDir::new();
    let state = work.path().join("state");
    let filler: Vec<(String, String)> = (0..8)
        .map(|i| {
            let port = 9000 + i;
            (
                format!("f{i}.yaml"),
                mapping(
                    &format!("f{i}"),
                    &format!("/f{i}/"),
                    &format!("127.0.0.1:{port}"),
                    "",
                ),
            )
        })
        .collect();
    let rig = Rig::start_with(
        work,
        Opts {
            flags: vec!["--state-dir".into(), state.to_str().unwrap().into()],
            files: filler
                .iter()
                .map(|(n, t)| (n.as_str(), t.clone()))
                .collect(),
            ..Opts::default()
        },
    );
    let sets = || rig.metric("canary_xds_xds_archived_sets");
    let archived = sets();
    let port = rig.port();
    // A delta client subscribes to pairs of clusters, one pair after the other, each answered
    // and ACKed: each answer is a set of its own.
    let answers = rig.rt.block_on(async move {
        let clusters: Vec<String> = (0..8).map(|i| format!("127_0_0_1_{}", 9000 + i)).collect();
        let channel = ads_channel(port, ClientTls::Plaintext, None).await.unwrap();
        let first = DeltaDiscoveryRequest {
            node: Some(node("cycler", "default")),
            type_url: CLUSTER.into(),
            resource_names_subscribe: vec![clusters[0].clone()],
            ..Default::default()
        };
        let (mut stream, tx) = delta_on(channel, Some(first)).await.unwrap();
        let mut held = vec![clusters[0].clone()];
        let mut answers = 0;
        for a in 0..8 {
            for b in a + 1..8 {
                let r = tokio::time::timeout(WAIT, stream.message())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                answers += 1;
                let pair = vec![clusters[a].clone(), clusters[b].clone()];
                tx.send(DeltaDiscoveryRequest {
                    type_url: CLUSTER.into(),
                    response_nonce: r.nonce,
                    resource_names_subscribe: pair.clone(),
                    resource_names_unsubscribe: held
                        .into_iter()
                        .filter(|n| !pair.contains(n))
                        .collect(),
                    ..Default::default()
                })
                .await
                .unwrap();
                held = pair;
            }
        }
        // The answer to the last pair.
        tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        answers + 1
    });
    assert!(answers >= 28);
    assert_eq!(sets(), archived, "the archive grew");
    // A change publishes and writes served.bin: only the sets of what was published.
    let written = || {
        std::fs::metadata(state.join("served.bin"))
            .and_then(|m| m.modified())
            .ok()
    };
    let before = written();
    rig.weight_change_reaches_envoy();
    wait_for("served.bin to be written", WAIT, || {
        (written() != before).then_some(())
    });
    let published = rig.metric("canary_xds_clusters") as usize;
    let mut rig = rig;
    assert!(rig.cp.sigterm().success());
    let (_dir, saved) = canary_xds::serve::state_dir::StateDir::open(&state).unwrap();
    for (kind, set) in &saved.sets {
        if *kind == canary_xds::xds::resource::Kind::Cluster {
            assert!(
                set.is_empty() || set.len() == published,
                "served.bin holds a cluster set of {} (one client's subset)",
                set.len()
            );
        }
    }
}

// --- metrics cardinality ---

#[test]
fn fleets_a_client_claims_add_no_series_to_metrics() {
    require_envoy!();
    let rig = Rig::start(&[]);
    let port = rig.port();
    let clients = rig.rt.block_on(async move {
        let channel = ads_channel(port, ClientTls::Plaintext, None).await.unwrap();
        let mut clients = Vec::new();
        for i in 0..50 {
            let first = sotw(&format!("c{i}"), &format!("made-up-{i}"), CLUSTER, vec![]);
            let (mut s, tx) = sotw_on(channel.clone(), Some(first)).await.unwrap();
            s.message().await.unwrap().unwrap();
            clients.push((s, tx));
        }
        clients
    });
    rig.weight_change_reaches_envoy();
    let text = http_get(rig.cp.admin_port, "/metrics").body;
    assert!(!text.contains("made-up-"), "{text}");
    assert_eq!(
        metric(
            &text,
            "canary_xds_envoys_connected{fleet=\"other\",ads=\"sotw\"}"
        ),
        Some(50.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "canary_xds_envoys_connected{fleet=\"default\",ads=\"sotw\"}"
        ),
        Some(1.0),
        "{text}"
    );
    drop(clients);
}

// --- log injection ---

#[test]
fn a_nack_cannot_forge_log_lines() {
    require_envoy!();
    let rig = Rig::start(&[]);
    const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO canary_xds: FORGED all is well";
    let ended = rig.under_attack(2, |port| async move {
        let channel = match ads_channel(port, ClientTls::Plaintext, None).await {
            Ok(c) => c,
            Err(s) => return s,
        };
        let (mut stream, tx) =
            match sotw_on(channel, Some(sotw("liar", "default", CLUSTER, vec![]))).await {
                Ok(s) => s,
                Err(s) => return s,
            };
        let Ok(Some(response)) = stream.message().await else {
            return tonic::Status::unknown("no response");
        };
        let _ = tx
            .send(DiscoveryRequest {
                type_url: CLUSTER.into(),
                response_nonce: response.nonce,
                error_detail: Some(envoy_types::pb::google::rpc::Status {
                    code: 13,
                    message: format!("bad\n{FORGED}\r\n\u{1b}[31m"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        // Until the server logged it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        tonic::Status::ok("")
    });
    assert!(!ended.is_empty());
    let log = rig.cp.log_text();
    let nacks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rejected a config (NACK)"))
        .collect();
    assert!(!nacks.is_empty(), "{log}");
    assert!(
        nacks
            .iter()
            .all(|l| l.contains("error_detail=bad\\n2026-01-01")),
        "{nacks:?}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00.000000Z")),
        "a forged line:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
}
