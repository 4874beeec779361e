//! End-to-end for the admin server: a real Envoy 1.40 and real upstreams on 127.0.0.1, and
//! canary-xds serving a watched directory with `--admin`. Traffic flows, then `/api/routes`,
//! `/api/envoys`, `/api/diagnostics` and `/metrics` must say what happened; the page must show it
//! in a real browser (headless Chromium). Each test holds the Envoy lock.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// The runtime layer that makes Envoy refuse any regex program over 5 instructions: a route
/// table valid for canary-xds (and for a default Envoy) is rejected by it.
const STRICT_RUNTIME: &str = "strict";

/// One Envoy fed by one canary-xds (with its admin server) over a directory of Mappings. The
/// caller has checked for Envoy (`require_envoy!`).
struct Rig {
    _lock: std::sync::MutexGuard<'static, ()>,
    _work: WorkDir,
    dir: PathBuf,
    listen: u16,
    admin: u16,
    _cp: ControlPlane,
    envoy: Envoy,
}

impl Rig {
    fn start(files: &[(&str, String)], node_id: &str, delta: bool, boot_extra: &str) -> Rig {
        let lock = envoy_lock();
        let work = WorkDir::new();
        let dir = work.mappings(files);
        let listen = free_port();
        let admin = free_port();
        let admin_flag = format!("127.0.0.1:{admin}");
        // The page reads this Envoy's stats for its live-traffic section.
        let envoy_admin = free_port();
        let envoy_admin_url = format!("http://127.0.0.1:{envoy_admin}");
        let cp = ControlPlane::start(
            &dir,
            listen,
            &["--admin", &admin_flag, "--envoy-admin", &envoy_admin_url],
        );
        wait_admin_ready(admin);
        let boot = bootstrap(&Boot {
            xds_port: cp.xds_port,
            admin_port: envoy_admin,
            node_id,
            fleet: "default",
            delta,
            static_listener: None,
        });
        let boot = if boot_extra == STRICT_RUNTIME {
            strict_regex(&boot)
        } else {
            boot
        };
        let envoy = Envoy::start(work.path(), &boot, envoy_admin);
        wait_for("Envoy's listener", WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", listen)).ok()
        });
        Rig {
            _lock: lock,
            _work: work,
            dir,
            listen,
            admin,
            _cp: cp,
            envoy,
        }
    }

    fn api(&self, path: &str) -> Value {
        get_json(self.admin, path)
    }

    fn metrics(&self) -> String {
        let r = http_get(self.admin, "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Polls `/metrics` until `series` reaches at least `min`; returns the text.
    fn wait_metric(&self, series: &str, min: f64) -> String {
        wait_for(&format!("{series} >= {min}"), WAIT, || {
            let text = self.metrics();
            (metric(&text, series).unwrap_or(-1.0) >= min).then_some(text)
        })
    }

    /// Polls `/api/envoys` until the only Envoy satisfies `ok`; returns it.
    fn wait_envoy(&self, what: &str, ok: impl Fn(&Value, &Value) -> bool) -> Value {
        wait_for(what, WAIT, || {
            let envoys = self.api("/api/envoys");
            let routes = self.api("/api/routes");
            let list = envoys["envoys"].as_array()?;
            (list.len() == 1 && ok(&list[0], &routes)).then(|| list[0].clone())
        })
    }

    /// The default fleet's first route's backends in `/api/routes`: (mapping, weight_bp).
    fn served_weights(&self) -> Vec<(String, u64)> {
        backends(&self.api("/api/routes")["fleets"]["default"]["routes"][0])
    }
}

fn backends(route: &Value) -> Vec<(String, u64)> {
    route["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["mapping"].as_str().unwrap().to_string(),
                b["weight_bp"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn w(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(n, b)| (n.to_string(), *b)).collect()
}

/// Text as the page escapes it.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Takes a screenshot of the page into `tests/artifacts/` when Chromium is here (the browser
/// test proper is `the_page_shows_the_canary_in_a_real_browser`).
fn snapshot_page(admin: u16, name: &str) {
    if let Some(chromium) = Chromium::find() {
        let png = artifacts_dir().join(name);
        chromium.screenshot(&format!("http://127.0.0.1:{admin}/"), &png);
        eprintln!("screenshot: {}", png.display());
    }
}

#[test]
fn the_api_and_the_metrics_say_what_happened() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let rig = Rig::start(&canary_files(&main, &canary, 10), "admin-e2e", false, "");

    // Traffic flows, split 90/10.
    let n = 400;
    let got = tally(rig.listen, "/qotm/", &[], n);
    assert_eq!(got.values().sum::<usize>(), n, "{got:?}");
    let (lo, hi) = binomial_interval(n, 0.1);
    let c = got.get("canary").copied().unwrap_or(0) as f64;
    assert!((lo..=hi).contains(&c), "canary got {c} of {n}: {got:?}");

    assert_eq!(http_get(rig.admin, "/healthz").status, 200);
    assert_eq!(http_get(rig.admin, "/readyz").body, "ready\n");

    // /api/routes: the table served, with its version.
    let routes = rig.api("/api/routes");
    let version = routes["version"].as_str().unwrap().to_string();
    assert_eq!(routes["format"], 1);
    assert_eq!(routes["fleets"]["default"]["version"], version.as_str());
    let route = &routes["fleets"]["default"]["routes"][0];
    assert_eq!(route["prefix"], "/qotm/");
    assert_eq!(backends(route), w(&[("qotm", 9000), ("qotmv2", 1000)]));
    assert_eq!(route["backends"][1]["file"], "qotmv2.yaml");
    assert_eq!(route["backends"][1]["line"], 1);
    assert_eq!(routes["held"], Value::Array(vec![]));

    // /api/envoys: in sync, holding exactly that version, and what Envoy itself applied.
    let envoy = rig.wait_envoy("the Envoy in sync", |e, _| e["in_sync"] == true);
    assert_eq!(envoy["node_id"], "admin-e2e");
    assert_eq!(envoy["fleet"], "default");
    assert_eq!(envoy["ads"], "sotw");
    assert_eq!(envoy["state"], "in_sync");
    assert_eq!(envoy["synced_version"], version.as_str());
    assert_eq!(envoy["fleet_version"], version.as_str());
    let since = envoy["connected_since"].as_str().unwrap();
    assert!(since.len() == 20 && since.ends_with('Z'), "{since}");
    for kind in ["cds", "lds", "rds"] {
        let t = &envoy["types"][kind];
        assert_eq!(t["sent"], t["acked"], "{kind}: {t}");
        assert_eq!(t["rejected"], false);
        assert_eq!(t["last_nack"], Value::Null);
    }
    assert_eq!(
        envoy["types"]["rds"]["acked"].as_str(),
        rig.envoy.route_version().as_deref(),
        "the version Envoy applied"
    );

    // /metrics: the counters moved.
    let text = rig.wait_metric("canary_xds_xds_acks_total", 3.0);
    assert!(metric(&text, "canary_xds_reloads_total{result=\"ok\"}").unwrap() >= 1.0);
    assert_eq!(
        metric(&text, "canary_xds_reloads_total{result=\"failed\"}"),
        Some(0.0)
    );
    assert!(metric(&text, "canary_xds_xds_responses_total").unwrap() >= 3.0);
    assert!(metric(&text, "canary_xds_xds_streams_opened_total").unwrap() >= 1.0);
    assert_eq!(metric(&text, "canary_xds_xds_nacks_total"), Some(0.0));
    assert_eq!(
        metric(
            &text,
            "canary_xds_envoys_connected{fleet=\"default\",ads=\"sotw\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "canary_xds_envoys_connected{fleet=\"default\",ads=\"delta\"}"
        ),
        Some(0.0)
    );
    assert_eq!(metric(&text, "canary_xds_mappings"), Some(2.0));
    assert_eq!(metric(&text, "canary_xds_routes"), Some(1.0));
    assert_eq!(metric(&text, "canary_xds_clusters"), Some(2.0));
    assert_eq!(
        metric(
            &text,
            &format!("canary_xds_config_version_info{{version=\"{version}\"}}")
        ),
        Some(1.0)
    );
    let responses = metric(&text, "canary_xds_xds_responses_total").unwrap();

    // A change: the weights move, and the time it took to reach Envoy is measured.
    write_atomically(
        &rig.dir.join("qotmv2.yaml"),
        &mapping("qotmv2", "/qotm/", &canary.by_ip(), "weight: 50\n"),
    );
    wait_for("Envoy to split 50/50", WAIT, || {
        (rig.envoy.weights("/qotm/").values().collect::<Vec<_>>() == [&5000, &5000]).then_some(())
    });
    let routes = rig.api("/api/routes");
    let changed = routes["version"].as_str().unwrap().to_string();
    assert_ne!(changed, version);
    assert_eq!(rig.served_weights(), w(&[("qotm", 5000), ("qotmv2", 5000)]));
    rig.wait_envoy("the Envoy in sync with the change", |e, r| {
        e["in_sync"] == true && e["synced_version"] == r["version"]
    });
    // Only the weights changed: this Envoy has the runtime layer, so an rtds sample (no rds,
    // no cds one).
    let text = rig.wait_metric("canary_xds_change_to_ack_seconds_count{type=\"rtds\"}", 1.0);
    assert_eq!(
        metric(
            &text,
            "canary_xds_change_to_ack_seconds_count{type=\"cds\"}"
        ),
        Some(0.0)
    );
    assert!(metric(&text, "canary_xds_xds_responses_total").unwrap() > responses);
    assert!(metric(&text, "canary_xds_reloads_total{result=\"ok\"}").unwrap() >= 2.0);
    assert_eq!(
        metric(
            &text,
            &format!("canary_xds_config_version_info{{version=\"{changed}\"}}")
        ),
        Some(1.0)
    );
    assert!(!text.contains(&format!("version=\"{version}\"")));
    // A local Envoy gets a change in well under the histogram's top bucket.
    let within = metric(
        &text,
        "canary_xds_change_to_ack_seconds_bucket{type=\"rtds\",le=\"5\"}",
    )
    .unwrap();
    assert!(within >= 1.0, "{text}");

    // A broken file is held at its last good content: /api/routes says so (and differs from
    // what `check` says of the files), /api/diagnostics says why.
    write_atomically(
        &rig.dir.join("qotmv2.yaml"),
        &mapping("qotmv2", "/qotm/", &canary.by_ip(), "weight: [\n"),
    );
    let routes = wait_for("the file to be held", WAIT, || {
        let r = rig.api("/api/routes");
        (r["held"].as_array()?.len() == 1).then_some(r)
    });
    assert_eq!(routes["held"][0]["file"], "qotmv2.yaml");
    assert!(
        routes["held"][0]["message"]
            .as_str()
            .unwrap()
            .contains("last good content keeps serving"),
        "{}",
        routes["held"]
    );
    assert_eq!(rig.served_weights(), w(&[("qotm", 5000), ("qotmv2", 5000)]));
    assert_eq!(
        routes["version"],
        changed.as_str(),
        "nothing new was served"
    );
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_canary-xds"))
        .args(["check", "--format", "json", "--all-fleets"])
        .arg(&rig.dir)
        .output()
        .unwrap();
    let check: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(
        backends(&check["fleets"]["default"]["routes"][0]),
        w(&[("qotm", 10000)]),
        "check shows the files as they are"
    );
    let diagnostics = rig.api("/api/diagnostics");
    assert!(diagnostics["counts"]["errors"].as_u64().unwrap() >= 1);
    assert_eq!(diagnostics["reload_ok"], true);
    assert!(
        diagnostics["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| {
                d["severity"] == "error"
                    && d["file"] == "qotmv2.yaml"
                    && d["line"].as_u64() > Some(0)
            }),
        "{diagnostics}"
    );
    let text = rig.metrics();
    assert_eq!(metric(&text, "canary_xds_held_files"), Some(1.0));
    assert!(metric(&text, "canary_xds_diagnostics{severity=\"error\"}").unwrap() >= 1.0);
    // Traffic still splits by the held weights.
    let got = tally(rig.listen, "/qotm/", &[], 200);
    assert!(
        got.get("canary").copied().unwrap_or(0) > 50 && got.get("main").copied().unwrap_or(0) > 50,
        "{got:?}"
    );
    let page = http_get(rig.admin, "/").body;
    assert!(page.contains("held at its last good content"), "{page}");
    snapshot_page(rig.admin, "admin-page-held.png");
}

#[test]
fn a_nack_shows_in_the_api_the_metrics_and_the_page() {
    require_envoy!();
    let main = Upstream::start("main");
    let rig = Rig::start(
        &[("qotm.yaml", mapping("qotm", "/qotm/", &main.by_ip(), ""))],
        "strict",
        true,
        STRICT_RUNTIME,
    );
    rig.wait_envoy("the Envoy in sync", |e, _| e["in_sync"] == true);
    let text = rig.metrics();
    assert_eq!(metric(&text, "canary_xds_xds_nacks_total"), Some(0.0));
    assert_eq!(
        metric(
            &text,
            "canary_xds_envoys_connected{fleet=\"default\",ads=\"delta\"}"
        ),
        Some(1.0)
    );

    fs::write(
        rig.dir.join("regex.yaml"),
        mapping(
            "rx",
            "^/v[0-9]+/items/[a-z]+$",
            &main.by_ip(),
            "prefix_regex: true\n",
        ),
    )
    .unwrap();
    let envoy = rig.wait_envoy("the NACK", |e, _| e["state"] == "rejected");
    assert_eq!(envoy["ads"], "delta");
    assert_eq!(envoy["in_sync"], false);
    let rds = &envoy["types"]["rds"];
    assert_eq!(rds["rejected"], true, "{envoy}");
    assert_eq!(rds["last_nack"]["version"], rds["sent"]);
    assert_ne!(rds["acked"], rds["sent"]);
    let message = rds["last_nack"]["message"].as_str().unwrap().to_string();
    assert!(!message.is_empty(), "{envoy}");
    let text = rig.wait_metric("canary_xds_xds_nacks_total", 1.0);
    assert_eq!(metric(&text, "canary_xds_xds_nacks_total"), Some(1.0));
    // Envoy keeps serving the previous config.
    assert_eq!(
        tally(rig.listen, "/qotm/", &[], 20),
        BTreeMap::from([("main".to_string(), 20)])
    );
    let page = http_get(rig.admin, "/").body;
    assert!(page.contains("rejected the config (NACK)"), "{page}");
    assert!(
        page.contains(&html_escape(&message)),
        "the page shows Envoy's message {message:?}"
    );
    snapshot_page(rig.admin, "admin-page-nack.png");

    // The next change is accepted; the NACK stays on record, superseded.
    fs::remove_file(rig.dir.join("regex.yaml")).unwrap();
    fs::write(
        rig.dir.join("other.yaml"),
        mapping("other", "/other/", &main.by_ip(), ""),
    )
    .unwrap();
    let envoy = rig.wait_envoy("the Envoy back in sync", |e, r| {
        e["in_sync"] == true && e["synced_version"] == r["version"]
    });
    assert_eq!(envoy["state"], "in_sync");
    assert_eq!(envoy["types"]["rds"]["rejected"], false);
    assert_eq!(
        envoy["types"]["rds"]["last_nack"]["message"],
        message.as_str()
    );
}

#[test]
fn the_page_shows_the_canary_in_a_real_browser() {
    let chromium = require_chromium!();
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let header = "headers:\n  x-canary: \"true\"\n";
    let [main_file, canary_file] = canary_files(&main, &canary, 10);
    let rig = Rig::start(
        &[
            main_file,
            canary_file,
            (
                "header-canary.yaml",
                mapping("qotm-header-canary", "/qotm/", &canary.by_ip(), header),
            ),
        ],
        "laptop-envoy",
        false,
        "",
    );
    let got = tally(rig.listen, "/qotm/", &[], 100);
    assert_eq!(got.values().sum::<usize>(), 100, "{got:?}");
    rig.wait_envoy("the Envoy in sync", |e, _| e["in_sync"] == true);

    let url = format!("http://127.0.0.1:{}/", rig.admin);
    let dom = chromium.dump_dom(&url);
    // The route table, with the effective weights.
    assert!(dom.contains("id=\"routes\""), "{dom}");
    let routes_part = &dom[dom.find("id=\"routes\"").unwrap()..];
    let routes_part = &routes_part[..routes_part.find("id=\"traffic\"").unwrap()];
    for needle in [
        "data-mapping=\"qotm\"",
        "data-mapping=\"qotmv2\"",
        "90.00%",
        "10.00%",
        "100.00%",
        "qotmv2.yaml:1",
        "header x-canary: true",
        "no weight",
        "weight 10",
    ] {
        assert!(routes_part.contains(needle), "{needle} in {routes_part}");
    }
    // The Envoy, in sync; all is well; the live-traffic section reads this Envoy's admin.
    assert!(dom.contains("data-node=\"laptop-envoy\""), "{dom}");
    assert!(dom.contains(">in sync<"), "{dom}");
    assert!(dom.contains("data-level=\"good\""), "{dom}");
    assert!(!dom.contains("No Envoy admin configured"), "{dom}");
    // The inline script ran (the Content-Security-Policy lets it): times are local now, not
    // the RFC 3339 the server wrote.
    let time = dom
        .split("<time class=\"local\"")
        .nth(1)
        .and_then(|t| t.split('>').nth(1))
        .and_then(|t| t.split('<').next())
        .unwrap_or_default();
    assert!(!time.is_empty() && !time.ends_with('Z'), "{time:?}");

    let png = artifacts_dir().join("admin-page.png");
    chromium.screenshot(&url, &png);
    eprintln!("screenshot: {}", png.display());
}

/// Serves `first` to the first request, then `then(n)` (status and body) to the n-th: a stand-in
/// for canary-xds whose answers change between the page load and its refresh.
fn stub_server(first: String, then: fn(&str) -> (u16, String)) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let (status, body) = if n == 0 {
                (200, first.clone())
            } else {
                then(&first)
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-type: text/html; charset=utf-8\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn the_page_refreshes_itself_and_says_when_canary_xds_is_unreachable() {
    let chromium = require_chromium!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = mappings_dir(
        tmp.path(),
        &[
            ("qotm.yaml", mapping("qotm", "/qotm/", "qotm", "")),
            (
                "qotmv2.yaml",
                mapping("qotmv2", "/qotm/", "qotmv2", "weight: 10\n"),
            ),
        ],
    );
    let cp = ControlPlane::start(&dir, free_port(), &[]);
    wait_admin_ready(cp.admin_port);
    let page = http_get(cp.admin_port, "/").body;
    assert!(page.contains("class=\"share\">10.00%"), "{page}");
    // 5 s of the page's life pass in no time (virtual time): one refresh.
    let budget = "--virtual-time-budget=7000".to_string();

    // The weights change: the refresh shows the new ones without a reload.
    let port = stub_server(page.clone(), |page| {
        (
            200,
            page.replace("10.00%", "25.00%").replace("90.00%", "75.00%"),
        )
    });
    let dom = chromium.run_with(&[
        budget.clone(),
        "--dump-dom".into(),
        format!("http://127.0.0.1:{port}/"),
    ]);
    assert!(dom.contains("class=\"share\">25.00%"), "{dom}");
    assert!(!dom.contains("class=\"stale\""), "{dom}");

    // canary-xds is gone: the last answer stays, marked stale.
    let port = stub_server(page, |_| (503, String::new()));
    let dom = chromium.run_with(&[
        budget,
        "--dump-dom".into(),
        format!("http://127.0.0.1:{port}/"),
    ]);
    let body = &dom[dom.find("<body").unwrap()..];
    let body_tag = &body[..body.find('>').unwrap()];
    assert!(body_tag.contains("class=\"stale\""), "{body_tag}");
    assert!(dom.contains("cannot reach canary-xds since"), "{dom}");
    assert!(dom.contains("class=\"share\">10.00%"), "{dom}");
}

#[test]
fn the_page_shows_a_failing_canary_as_worse() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    // The canary fails one request in five; the primary none.
    canary
        .fail_every
        .store(5, std::sync::atomic::Ordering::Relaxed);
    let rig = Rig::start(&canary_files(&main, &canary, 30), "live", false, "");
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);
    // Two readings of Envoy's stats, five seconds apart, with traffic between them.
    let page = wait_for("the live verdict", Duration::from_secs(40), || {
        let page = http_get(rig.admin, "/").body;
        page.contains("worse than the primary").then_some(page)
    });
    drop(traffic);
    assert!(page.contains("qotmv2"), "{page}");
    // Chromium::find fails under CI when Chromium is missing, and skips elsewhere.
    if let Some(chromium) = Chromium::find() {
        let dom = chromium.dump_dom(&format!("http://127.0.0.1:{}/", rig.admin));
        assert!(dom.contains("worse than the primary"), "{dom}");
    }
    snapshot_page(rig.admin, "admin-page-live-worse.png");
}
