//! `canary-xds status` end to end: a real Envoy 1.40 fed by canary-xds, real upstreams (the
//! canary's can be told to fail every Nth request), steady traffic, and the real binary
//! reading Envoy's admin. Each test that starts Envoy holds the Envoy lock.
//!
//! The windows are short (a few seconds). Envoy updates its histograms at each stats flush
//! (every 5 s), so a window of 6 s always holds at least one flush of latencies.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// The window of most tests: longer than Envoy's 5 s stats flush.
const WINDOW: &str = "6s";

/// A main service and a canary at `weight`% on `/qotm/`, canary-xds serving them, one Envoy.
/// The caller has checked for Envoy (`require_envoy!`).
struct Rig {
    _lock: std::sync::MutexGuard<'static, ()>,
    work: WorkDir,
    dir: PathBuf,
    listen: u16,
    cp: ControlPlane,
    envoy: Envoy,
    main: Upstream,
    canary: Upstream,
}

impl Rig {
    fn start(weight: u32) -> Rig {
        let lock = envoy_lock();
        let main = Upstream::start("main");
        let canary = Upstream::start("canary");
        let work = WorkDir::new();
        let dir = work.mappings(&canary_files(&main, &canary, weight));
        let listen = free_port();
        let cp = ControlPlane::start(&dir, listen, &[]);
        let admin = free_port();
        let boot = bootstrap(&Boot {
            xds_port: cp.xds_port,
            admin_port: admin,
            node_id: "status",
            fleet: "default",
            delta: false,
            static_listener: None,
        });
        let envoy = Envoy::start(work.path(), &boot, admin);
        let rig = Rig {
            _lock: lock,
            work,
            dir,
            listen,
            cp,
            envoy,
            main,
            canary,
        };
        rig.wait_split(weight);
        rig
    }

    fn clusters(&self) -> (String, String) {
        canary_clusters(&self.main, &self.canary)
    }

    /// Waits until Envoy routes `/qotm/` by the configured split.
    fn wait_split(&self, weight: u32) {
        let (main, canary) = self.clusters();
        wait_weights(
            &self.envoy,
            "/qotm/",
            &canary_split(&main, &canary, weight),
            WAIT,
        );
        wait_for("the listener", WAIT, || {
            (Client::new(self.listen).get("/qotm/", &[]).status == 200).then_some(())
        });
    }

    fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.envoy.admin_port)
    }
}

/// Runs `canary-xds status` with `args`, with no environment of canary-xds's.
fn status(args: &[&str]) -> Output {
    canary_xds()
        .arg("status")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The backends of the route on `/qotm/`, by name: (verdict, requests, errors).
fn qotm(doc: &Value) -> Vec<(String, String, u64, u64)> {
    let route = doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/qotm/")
        .unwrap_or_else(|| panic!("no /qotm/ route in {doc:#}"));
    route["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["verdict"].as_str().unwrap().to_string(),
                b["requests"].as_u64().unwrap(),
                b["errors_5xx"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn explain(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_canary_failing_20_percent_is_worse_and_exits_3() {
    require_envoy!();
    let rig = Rig::start(50);
    rig.canary.fail_every.store(5, Ordering::Relaxed);
    let traffic = Traffic::start(rig.listen, "/qotm/", 300);
    traffic.pass(100);
    let dir = rig.dir.to_str().unwrap().to_string();
    let admin = rig.admin();
    let out = status(&[
        "--envoy-admin",
        &admin,
        "--dir",
        &dir,
        "--window",
        WINDOW,
        "--format",
        "json",
    ]);
    let table = status(&["--envoy-admin", &admin, "--dir", &dir, "--window", "3s"]);
    traffic.stop();
    assert_eq!(out.status.code(), Some(3), "{}", explain(&out));
    let doc = json_of(&out);
    let backends = qotm(&doc);
    assert_eq!(backends[0].0, "qotm");
    assert_eq!(backends[0].1, "primary");
    assert_eq!(backends[0].3, 0);
    let (name, verdict, requests, errors) = &backends[1];
    assert_eq!((name.as_str(), verdict.as_str()), ("qotmv2", "worse"));
    // Every fifth request fails: 20% of the canary's requests in the window, give or take the
    // one in flight at each end.
    let rate = *errors as f64 / *requests as f64;
    assert!((0.18..=0.22).contains(&rate), "{errors} of {requests}");
    let canary = &doc["routes"][0]["backends"][1];
    assert_eq!(canary["worse_errors"], true);
    assert_eq!(doc["weights_from"], "dir");
    assert_eq!(doc["exit_code"], 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("waiting 6s for the second reading"),
        "{stderr}"
    );
    // The table says the same, for people.
    assert_eq!(table.status.code(), Some(3), "{}", explain(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("  qotmv2 ") && l.ends_with("WORSE")),
        "{text}"
    );
    assert!(text.contains(": worse (Fisher p="), "{text}");
}

/// Both healthy: exit 0, from each source of weights alike (the files, Envoy's
/// `/config_dump`, canary-xds's own `/api/routes`), run side by side over the same traffic.
#[test]
fn both_healthy_exit_0_whatever_the_source_of_weights() {
    require_envoy!();
    let rig = Rig::start(50);
    let traffic = Traffic::start(rig.listen, "/qotm/", 300);
    traffic.pass(100);
    let admin = rig.admin();
    let dir = rig.dir.to_str().unwrap().to_string();
    let cp = format!("http://127.0.0.1:{}", rig.cp.admin_port);
    let sources: Vec<(&str, Vec<&str>)> = vec![
        ("dir", vec!["--dir", &dir]),
        ("envoy", vec![]),
        ("control-plane", vec!["--control-plane", &cp]),
    ];
    let runs: Vec<_> = sources
        .iter()
        .map(|(name, extra)| {
            let mut args = vec![
                "--envoy-admin",
                &admin,
                "--window",
                WINDOW,
                "--format",
                "json",
                "--require-decision",
            ];
            args.extend_from_slice(extra);
            let args: Vec<String> = args.into_iter().map(str::to_string).collect();
            (
                *name,
                thread::spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    status(&args)
                }),
            )
        })
        .collect();
    let outs: Vec<(&str, Output)> = runs
        .into_iter()
        .map(|(name, h)| (name, h.join().unwrap()))
        .collect();
    let (sent, failures, _) = traffic.stop();
    assert!(failures.is_empty(), "{failures:?}");
    let (main_cluster, canary_cluster) = rig.clusters();
    for (name, out) in &outs {
        // --require-decision: a verdict of "not enough traffic" would exit 4.
        assert_eq!(out.status.code(), Some(0), "{name}: {}", explain(out));
        let doc = json_of(out);
        assert_eq!(doc["weights_from"], *name);
        let backends = &doc["routes"][0]["backends"];
        assert_eq!(backends[0]["cluster"].as_str(), Some(main_cluster.as_str()));
        assert_eq!(
            backends[1]["cluster"].as_str(),
            Some(canary_cluster.as_str())
        );
        assert_eq!(backends[1]["verdict"], "healthy", "{name}: {doc:#}");
        assert_eq!(backends[0]["weight_bp"], 5000);
        assert_eq!(backends[1]["weight_bp"], 5000);
        let requests =
            backends[0]["requests"].as_u64().unwrap() + backends[1]["requests"].as_u64().unwrap();
        assert!(requests > 500 && requests < sent, "{requests} of {sent}");
        // The latencies come from the window's buckets.
        assert!(
            backends[1]["timed_requests"].as_u64().unwrap() >= 200,
            "{doc:#}"
        );
        assert!(backends[1]["p99_ms"].as_f64().unwrap() > 0.0);
    }
    // The control plane's version and the Mapping names come through.
    let cp_doc = json_of(&outs[2].1);
    assert!(
        cp_doc["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{cp_doc:#}"
    );
    assert_eq!(cp_doc["routes"][0]["backends"][1]["name"], "qotmv2");
    // Envoy's config dump names the Mappings too (canary-xds names its routes after them).
    let envoy_doc = json_of(&outs[1].1);
    assert_eq!(envoy_doc["routes"][0]["backends"][1]["name"], "qotmv2");
}

/// The window is deltas: a canary that failed a third of its requests before the first
/// reading, and none since, is healthy.
#[test]
fn a_canary_that_failed_before_the_window_is_healthy_inside_it() {
    require_envoy!();
    let rig = Rig::start(50);
    let (_, canary_cluster) = rig.clusters();
    rig.canary.fail_every.store(3, Ordering::Relaxed);
    let traffic = Traffic::start(rig.listen, "/qotm/", 300);
    traffic.pass(600);
    rig.canary.fail_every.store(0, Ordering::Relaxed);
    // Every failure has been counted before status starts.
    traffic.pass(20);
    let failed_before = rig
        .envoy
        .counter(&format!("cluster.{canary_cluster}.upstream_rq_5xx"));
    assert!(failed_before >= 50, "{failed_before}");
    let dir = rig.dir.to_str().unwrap().to_string();
    let out = status(&[
        "--envoy-admin",
        &rig.admin(),
        "--dir",
        &dir,
        "--window",
        WINDOW,
        "--format",
        "json",
    ]);
    traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let backends = qotm(&json_of(&out));
    assert_eq!(backends[1].1, "healthy", "{backends:?}");
    assert_eq!(backends[1].3, 0);
    // Since Envoy started, the canary did fail: over the totals the same test says "worse".
    let (main_cluster, _) = rig.clusters();
    let counts = |cluster: &str| canary_xds::canary::RequestCounts {
        requests: rig
            .envoy
            .counter(&format!("cluster.{cluster}.upstream_rq_total")),
        errors: rig
            .envoy
            .counter(&format!("cluster.{cluster}.upstream_rq_5xx")),
    };
    let since_start =
        canary_xds::canary::error_test(counts(&canary_cluster), counts(&main_cluster)).unwrap();
    assert!(since_start.p_value < 1e-6, "{since_start:?}");
}

/// Two Envoys of one fleet are added up: each request counted once, by whichever Envoy
/// carried it.
#[test]
fn the_envoys_of_a_fleet_are_added_up() {
    require_envoy!();
    let rig = Rig::start(50);
    // A second Envoy with a listener of its own (static, so it does not fight the first
    // over the LDS listener's port).
    let second_listen = free_port();
    let second_admin = free_port();
    let boot = bootstrap(&Boot {
        xds_port: rig.cp.xds_port,
        admin_port: second_admin,
        node_id: "status-2",
        fleet: "default",
        delta: false,
        static_listener: Some(second_listen),
    });
    let second = Envoy::start(rig.work.path(), &boot, second_admin);
    wait_for("the second Envoy's routes", WAIT, || {
        (Client::new(second_listen).get("/qotm/", &[]).status == 200).then_some(())
    });
    let a = Traffic::start(rig.listen, "/qotm/", 150);
    let b = Traffic::start(second_listen, "/qotm/", 150);
    a.pass(50);
    b.pass(50);
    let second_url = format!("http://127.0.0.1:{second_admin}");
    let out = status(&[
        "--envoy-admin",
        &rig.admin(),
        "--envoy-admin",
        &second_url,
        "--window",
        "3s",
        "--format",
        "json",
        "--min-requests",
        "50",
    ]);
    let one = status(&[
        "--envoy-admin",
        &second_url,
        "--window",
        "3s",
        "--format",
        "json",
    ]);
    a.stop();
    b.stop();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let doc = json_of(&out);
    assert_eq!(doc["envoys"].as_array().unwrap().len(), 2);
    let both: u64 = qotm(&doc).iter().map(|b| b.2).sum();
    let alone: u64 = qotm(&json_of(&one)).iter().map(|b| b.2).sum();
    // 300 requests a second through two Envoys for 3 s, against 150 through one.
    assert!(
        both > 600 && alone > 300 && both > alone * 3 / 2,
        "{both} vs {alone}"
    );
    drop(second);
}

/// No traffic at all: undecided, which exits 0, or 4 with --require-decision. With --watch, a
/// JSON document per window, one per line.
#[test]
fn no_traffic_is_undecided_and_watch_repeats() {
    require_envoy!();
    let rig = Rig::start(10);
    let admin = rig.admin();
    let out = status(&["--envoy-admin", &admin, "--window", "1s"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not enough traffic"), "{text}");
    assert!(
        text.contains("0 requests on the canary and 0 on the primary"),
        "{text}"
    );
    let out = status(&[
        "--envoy-admin",
        &admin,
        "--window",
        "1s",
        "--require-decision",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", explain(&out));

    let mut child = Command::new(env!("CARGO_BIN_EXE_canary-xds"))
        .args([
            "status",
            "--envoy-admin",
            &admin,
            "--window",
            "500ms",
            "--watch",
        ])
        .args(["--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(started.elapsed() >= Duration::from_millis(1000));
    for doc in [first, second] {
        assert_eq!(
            doc["routes"][0]["backends"][1]["verdict"],
            "not_enough_traffic"
        );
    }
}

/// An Envoy or a control plane that cannot be read: exit 1, with the reason on stderr, at
/// once (not after the window). A usage error: 2.
#[test]
fn unreadable_sources_exit_1_and_usage_errors_2() {
    // A port nothing listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let nowhere = format!("127.0.0.1:{closed}");
    let started = Instant::now();
    let out = status(&["--envoy-admin", &nowhere, "--window", "60s"]);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: http://127.0.0.1:"), "{stderr}");

    // An HTTP server that is not an Envoy.
    let not_envoy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = not_envoy.local_addr().unwrap().port();
    thread::spawn(move || {
        for conn in not_envoy.incoming().flatten().take(4) {
            let mut conn = conn;
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope",
            );
        }
    });
    let out = status(&[
        "--envoy-admin",
        &format!("127.0.0.1:{port}"),
        "--control-plane",
        &nowhere,
        "--window",
        "60s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let out = status(&[
        "--envoy-admin",
        &format!("127.0.0.1:{port}"),
        "--window",
        "60s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 404"),
        "{}",
        explain(&out)
    );
    // The weights are read first, so a directory that is not there is what is reported.
    let out = status(&["--envoy-admin", &nowhere, "--dir", "/nonexistent/mappings"]);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: /nonexistent/mappings: "),
        "{}",
        explain(&out)
    );

    for usage in [
        &["--window", "5s"][..],
        &["--envoy-admin", &nowhere, "--alpha", "2"],
        &[
            "--envoy-admin",
            &nowhere,
            "--dir",
            "d",
            "--control-plane",
            "c",
        ],
    ] {
        let out = status(usage);
        assert_eq!(out.status.code(), Some(2), "{usage:?}: {}", explain(&out));
    }
}
