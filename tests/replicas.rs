//! Replicas, proven with a real Envoy (issue 13 §2): two `serve` processes on one directory,
//! one Envoy whose bootstrap lists both (`bootstrap --xds A --xds B`), real upstreams and
//! traffic the whole time. Killing the replica Envoy is connected to moves it to the other
//! without a failed request, without a wrong split (counted where requests land), and without
//! Envoy seeing any new config: same versions, and its reload counters do not move. A change
//! made on the second replica then goes live as usual. Over SotW and delta.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// The node id of the test's Envoy, as the replicas list it in `/api/envoys`.
const NODE: &str = "replicas";

/// Envoy's counters that move when it applies config again: none may move when it switches
/// to a replica that serves what it holds.
const RELOADS: [&str; 4] = [
    "http.canary_xds.rds.canary-xds.config_reload",
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_modified",
    "runtime.load_success",
];

/// Whether the replica whose admin is on `admin_port` has our Envoy connected, and if so
/// whether that Envoy is in sync with it; `None` when it is not connected (or the replica is
/// gone).
fn envoy_on(admin_port: u16) -> Option<bool> {
    let r = http_get(admin_port, "/api/envoys");
    if r.status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v["envoys"]
        .as_array()?
        .iter()
        .find(|e| e["node_id"] == NODE)
        .map(|e| e["in_sync"] == true)
}

/// The version of everything a replica serves (`/api/routes`).
fn served_version(admin_port: u16) -> String {
    get_json(admin_port, "/api/routes")["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The versions Envoy holds: CDS, LDS and RDS from `/config_dump`, the runtime layer's from
/// its RTDS subscription's `version_text`.
fn held_versions(envoy: &Envoy) -> BTreeMap<&'static str, String> {
    let dump = envoy.config_dump("dynamic_active_clusters");
    let clusters = dump["configs"][0]["version_info"]
        .as_str()
        .map(String::from);
    let dump: serde_json::Value =
        serde_json::from_str(&envoy.admin("/config_dump").unwrap()).unwrap();
    let of = |t: &str| {
        dump["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["@type"]
                    .as_str()
                    .is_some_and(|x| x.ends_with(&format!(".{t}")))
            })
            .cloned()
            .unwrap_or_default()
    };
    let listeners = of("ListenersConfigDump");
    let routes = of("RoutesConfigDump");
    let cds = of("ClustersConfigDump");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let stats = envoy.stats();
    let stat = |k: &str| stats.get(k).cloned().unwrap_or_default();
    BTreeMap::from([
        ("cds", text(&cds["version_info"])),
        ("cds (a cluster's)", clusters.unwrap_or_default()),
        ("lds", text(&listeners["version_info"])),
        (
            "lds (the listener's)",
            text(&listeners["dynamic_listeners"][0]["active_state"]["version_info"]),
        ),
        (
            "rds",
            text(&routes["dynamic_route_configs"][0]["version_info"]),
        ),
        ("rtds", stat("runtime.version_text")),
        ("cds stat", stat("cluster_manager.cds.version_text")),
        ("lds stat", stat("listener_manager.lds.version_text")),
        (
            "rds stat",
            stat("http.canary_xds.rds.canary-xds.version_text"),
        ),
    ])
}

fn counters(envoy: &Envoy) -> BTreeMap<&'static str, u64> {
    RELOADS.iter().map(|k| (*k, envoy.counter(k))).collect()
}

/// The route on `/dark/`: `old` (no weight, so the rest: 0%) and `new` at 100%. Its route
/// table's default gives `old` everything; only the runtime layer sends traffic to `new`, so
/// an Envoy that ever routed by anything less than the right layer would send `old` requests.
fn dark_files(old: &Upstream, new: &Upstream) -> [(&'static str, String); 2] {
    [
        ("old.yaml", mapping("old", "/dark/", &old.by_ip(), "")),
        (
            "new.yaml",
            mapping("new", "/dark/", &new.by_ip(), "weight: 100\n"),
        ),
    ]
}

fn move_canary(dir: &Path, envoy: &Envoy, main: &Upstream, canary: &Upstream, weight: u32) {
    write_atomically(
        &dir.join("qotmv2.yaml"),
        &canary_files(main, canary, weight)[1].1,
    );
    let (cm, cc) = canary_clusters(main, canary);
    wait_weights(envoy, "/qotm/", &canary_split(&cm, &cc, weight), WAIT);
}

fn switch_replicas(delta: bool) {
    let _lock = envoy_lock();
    let work = WorkDir::new();
    let (main, canary) = (Upstream::start("main"), Upstream::start("canary"));
    let (old, new) = (Upstream::start("old"), Upstream::start("new"));
    let mut files = canary_files(&main, &canary, 10).to_vec();
    files.extend(dark_files(&old, &new));
    let dir = work.mappings(&files);
    let listen = free_port();
    // Two replicas on the same directory, each with its own admin port and no state.
    let mut replicas = [
        ControlPlane::start(&dir, listen, &[]),
        ControlPlane::start(&dir, listen, &[]),
    ];
    let admin = free_port();
    let second = format!("127.0.0.1:{}", replicas[1].xds_port);
    let boot = bootstrap_with(
        &Boot {
            xds_port: replicas[0].xds_port,
            admin_port: admin,
            node_id: NODE,
            fleet: "default",
            delta,
            static_listener: None,
        },
        &["--xds", &second],
    );
    let envoy = Envoy::start(work.path(), &boot, admin);
    wait_for("the listener", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", listen)).ok()
    });
    let (cm, cc) = canary_clusters(&main, &canary);
    wait_weights(&envoy, "/qotm/", &canary_split(&cm, &cc, 10), WAIT);
    let dark = [
        (format!("127_0_0_1_{}", old.port), 0),
        (format!("127_0_0_1_{}", new.port), 10000),
    ];
    let dark: Vec<(&str, u64)> = dark.iter().map(|(c, w)| (c.as_str(), *w)).collect();
    wait_weights(&envoy, "/dark/", &dark, WAIT);

    let traffic = Traffic::start(listen, "/qotm/", 200);
    let dark_traffic = Traffic::start(listen, "/dark/", 200);
    traffic.pass(50);
    // A canary moving as people move it.
    for weight in [25, 50, 30] {
        move_canary(&dir, &envoy, &main, &canary, weight);
        traffic.pass(50);
    }

    // Both replicas serve the same files, the same way.
    let ports = [replicas[0].admin_port, replicas[1].admin_port];
    wait_for("both replicas to serve the same version", WAIT, || {
        (served_version(ports[0]) == served_version(ports[1])).then_some(())
    });
    let on = wait_for("Envoy in sync with one replica", WAIT, || {
        (0..2).find(|i| envoy_on(ports[*i]) == Some(true))
    });
    let other = 1 - on;
    assert_eq!(envoy_on(ports[other]), None, "Envoy holds one stream");
    let versions = held_versions(&envoy);
    assert!(versions.values().all(|v| !v.is_empty()), "{versions:?}");
    let reloads = counters(&envoy);
    dark_traffic.pass(100);

    // Kill the replica Envoy is connected to: it moves to the other.
    replicas[on].kill();
    wait_for("Envoy to connect to the other replica", WAIT, || {
        (envoy_on(ports[other]) == Some(true)
            && envoy.stat("control_plane.connected_state").as_deref() == Some("1"))
        .then_some(())
    });
    traffic.pass(200);
    dark_traffic.pass(200);
    assert_eq!(
        held_versions(&envoy),
        versions,
        "Envoy's versions moved on the switch"
    );
    assert_eq!(
        counters(&envoy),
        reloads,
        "Envoy applied config again on the switch"
    );
    let pushes = |cp: &ControlPlane| -> Vec<String> {
        let log = cp.log_text();
        log.lines()
            .filter(|l| l.contains(": push "))
            .map(String::from)
            .collect()
    };
    let sent = pushes(&replicas[other]);
    assert!(sent.is_empty(), "the second replica sent {sent:#?}");

    // A change made while Envoy is on the second replica goes live: over the runtime layer.
    move_canary(&dir, &envoy, &main, &canary, 70);
    let sent = pushes(&replicas[other]);
    assert!(
        !sent.is_empty() && sent.iter().all(|l| l.contains("kind=rtds")),
        "{sent:#?}"
    );
    traffic.pass(100);
    dark_traffic.pass(100);

    let (sent, failures, bodies) = traffic.stop();
    let (dark_sent, dark_failures, dark_bodies) = dark_traffic.stop();
    assert!(
        failures.is_empty() && dark_failures.is_empty(),
        "{} of {sent} and {} of {dark_sent} requests failed: {:?} {:?}",
        failures.len(),
        dark_failures.len(),
        &failures[..failures.len().min(5)],
        &dark_failures[..dark_failures.len().min(5)],
    );
    assert!(bodies.get("canary").copied().unwrap_or(0) > 0, "{bodies:?}");
    // Not one request to the 0% backend, at any moment: counted where requests land.
    assert_eq!(old.hits.load(Ordering::Relaxed), 0, "{dark_bodies:?}");
    assert_eq!(
        new.hits.load(Ordering::Relaxed),
        dark_sent,
        "{dark_bodies:?}"
    );
    eprintln!(
        "{} ADS: {sent} + {dark_sent} requests, none failed; the 0% backend got 0; versions \
         {versions:?}; counters {reloads:?} unchanged across the switch",
        if delta { "delta" } else { "SotW" }
    );
}

#[test]
fn envoy_switches_replicas_without_a_new_config_sotw() {
    require_envoy!();
    switch_replicas(false);
}

#[test]
fn envoy_switches_replicas_without_a_new_config_delta() {
    require_envoy!();
    switch_replicas(true);
}
