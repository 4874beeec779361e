//! End-to-end: a real Envoy 1.40, real upstreams on 127.0.0.1, and canary-xds serving a
//! watched directory. Each test holds the Envoy lock, so they run one at a time.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// One Envoy fed by one canary-xds over a directory of Mappings. The caller has checked for
/// Envoy (`require_envoy!`).
struct Rig {
    _lock: std::sync::MutexGuard<'static, ()>,
    dir: PathBuf,
    _work: WorkDir,
    listen: u16,
    cp: ControlPlane,
    envoy: Envoy,
}

impl Rig {
    fn start(files: &[(&str, String)], delta: bool, extra: &[&str]) -> Rig {
        Rig::start_with(files, delta, extra, &[])
    }

    /// With `boot_extra` flags for `canary-xds bootstrap` (such as `--no-runtime`).
    fn start_with(
        files: &[(&str, String)],
        delta: bool,
        extra: &[&str],
        boot_extra: &[&str],
    ) -> Rig {
        let lock = envoy_lock();
        let work = WorkDir::new();
        let dir = work.mappings(files);
        let listen = free_port();
        let cp = ControlPlane::start(&dir, listen, extra);
        let admin = free_port();
        let boot = bootstrap_with(
            &Boot {
                xds_port: cp.xds_port,
                admin_port: admin,
                node_id: "e2e",
                fleet: "default",
                delta,
                static_listener: None,
            },
            boot_extra,
        );
        let envoy = Envoy::start(work.path(), &boot, admin);
        let rig = Rig {
            _lock: lock,
            dir,
            _work: work,
            listen,
            cp,
            envoy,
        };
        wait_for("the listener", WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", rig.listen)).ok()
        });
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn wait_route_change(&self, before: (Option<String>, Option<String>)) {
        wait_for("Envoy to apply the change", WAIT, || {
            let now = self.envoy.config_version();
            (now != before).then_some(())
        });
    }

    /// Waits until Envoy's weights for `prefix` are exactly `expected` (`wait_weights`).
    fn wait_weights(&self, prefix: &str, expected: &[(&str, u64)]) {
        wait_weights(&self.envoy, prefix, expected, WAIT);
    }
}

#[test]
fn split_90_10_matches_the_weights_and_envoys_counters() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let rig = Rig::start(&canary_files(&main, &canary, 10), false, &[]);
    let (cm, cc) = canary_clusters(&main, &canary);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);

    rig.envoy.admin_post("/reset_counters");
    let n = 4000;
    let counts = tally(rig.listen, "/qotm/", &[], n);
    assert_eq!(counts.values().sum::<usize>(), n);
    assert_eq!(
        counts.keys().filter(|k| k.starts_with("status:")).count(),
        0,
        "{counts:?}"
    );
    let canary_n = counts.get("canary").copied().unwrap_or(0);
    // 99.99% binomial interval around 10% of 4,000: 400 +- 74.
    let (lo, hi) = binomial_interval(n, 0.10);
    assert!(
        (lo..=hi).contains(&(canary_n as f64)),
        "canary got {canary_n} of {n}, outside [{lo:.0}, {hi:.0}]"
    );
    // Envoy's own counters agree with what the client saw, request for request.
    let stats = rig.envoy.stats();
    let rq = |c: &str| {
        stats
            .get(&format!("cluster.{c}.upstream_rq_total"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    assert_eq!(rq(&cm), counts["main"]);
    assert_eq!(rq(&cc), canary_n);
}

#[test]
fn a_weight_change_and_a_deleted_canary_go_live() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let rig = Rig::start(&canary_files(&main, &canary, 10), false, &[]);
    let (cm, cc) = canary_clusters(&main, &canary);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);

    write_atomically(
        &rig.path("qotmv2.yaml"),
        &canary_files(&main, &canary, 50)[1].1,
    );
    rig.wait_weights("/qotm/", &[(&cm, 5000), (&cc, 5000)]);
    let n = 2000;
    let counts = tally(rig.listen, "/qotm/", &[], n);
    let (lo, hi) = binomial_interval(n, 0.5);
    let c = counts.get("canary").copied().unwrap_or(0) as f64;
    assert!((lo..=hi).contains(&c), "{counts:?}");

    fs::remove_file(rig.path("qotmv2.yaml")).unwrap();
    rig.wait_weights("/qotm/", &[(&cm, 10000)]);
    let counts = tally(rig.listen, "/qotm/", &[], 200);
    assert_eq!(counts, BTreeMap::from([("main".to_string(), 200)]));
}

/// `runtime`: the Envoy has canary-xds's runtime layer, so weight changes go over RTDS;
/// without it, every change goes in the route table.
fn zero_failures(delta: bool, runtime: bool) {
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let third = Upstream::start("third");
    let rig = Rig::start_with(
        &[("qotm.yaml", mapping("qotm", "/qotm/", &main.by_ip(), ""))],
        delta,
        &[],
        if runtime { &[] } else { &["--no-runtime"] },
    );
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);
    traffic.pass(50);

    // (file, new content or deletion, whether Envoy's routes change)
    let steps: Vec<(&str, Option<String>, bool)> = vec![
        // Add a canary at 10%, then move it to 50 and 100.
        (
            "qotmv2.yaml",
            Some(mapping("qotmv2", "/qotm/", &canary.by_ip(), "weight: 10\n")),
            true,
        ),
        (
            "qotmv2.yaml",
            Some(mapping("qotmv2", "/qotm/", &canary.by_ip(), "weight: 50\n")),
            true,
        ),
        (
            "qotmv2.yaml",
            Some(mapping(
                "qotmv2",
                "/qotm/",
                &canary.by_ip(),
                "weight: 100\n",
            )),
            true,
        ),
        // Retire the old Mapping, then drop the canary's weight (a lone Mapping gets 100%
        // either way, so Envoy's routes stay as they are).
        ("qotm.yaml", None, true),
        (
            "qotmv2.yaml",
            Some(mapping("qotmv2", "/qotm/", &canary.by_ip(), "")),
            false,
        ),
        // Move the remaining Mapping to a third upstream, by host name, in one save.
        (
            "qotmv2.yaml",
            Some(mapping("qotmv2", "/qotm/", &third.by_name(), "")),
            true,
        ),
    ];
    for (file, content, changes) in steps {
        let before = rig.envoy.config_version();
        match content {
            Some(text) => write_atomically(&rig.path(file), &text),
            None => fs::remove_file(rig.path(file)).unwrap(),
        }
        if changes {
            rig.wait_route_change(before);
        }
        traffic.pass(100);
    }
    let (sent, failures, bodies) = traffic.stop();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(bodies.get("third").copied().unwrap_or(0) > 0, "{bodies:?}");
    assert!(sent > 600, "{sent}");
    let log = rig.cp.log_text();
    if delta {
        // Deleting qotm.yaml removed its cluster with removed_resources, not a full resend.
        assert!(
            log.lines().any(|l| l.contains("push")
                && l.contains("kind=cds")
                && l.contains("resources=0")
                && l.contains("removed=1")),
            "no CDS removal in the log:\n{log}"
        );
    }
    assert!(rig.envoy.counter("cluster_manager.cds.update_rejected") == 0);
    assert!(
        rig.envoy
            .counter("http.canary_xds.rds.canary-xds.update_rejected")
            == 0
    );
}

#[test]
fn zero_failed_requests_while_weights_change_sotw() {
    require_envoy!();
    zero_failures(false, true);
}

#[test]
fn zero_failed_requests_while_weights_change_sotw_without_the_runtime_layer() {
    require_envoy!();
    zero_failures(false, false);
}

#[test]
fn zero_failed_requests_while_weights_change_delta() {
    require_envoy!();
    zero_failures(true, true);
}

#[test]
fn edits_as_people_make_them_never_show_a_transient_table() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    // Both Mappings in one file, so a truncated file would take the whole route away.
    let both = |w: u32| {
        format!(
            "{}---\n{}",
            mapping("qotm", "/qotm/", &main.by_ip(), ""),
            mapping(
                "qotmv2",
                "/qotm/",
                &canary.by_ip(),
                &format!("weight: {w}\n")
            )
        )
    };
    let rig = Rig::start(&[("both.yaml", both(10))], false, &[]);
    let (cm, cc) = canary_clusters(&main, &canary);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);
    traffic.pass(50);

    // An in-place truncate-then-write, in two writes 20 ms apart.
    let updates_before = rig.envoy.updates();
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(rig.path("both.yaml"))
            .unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        f.write_all(both(20).as_bytes()).unwrap();
    }
    rig.wait_weights("/qotm/", &[(&cm, 8000), (&cc, 2000)]);
    traffic.pass(100);
    let updates = rig.envoy.updates() - updates_before;
    assert_eq!(updates, 1, "Envoy saw an intermediate route table");

    // A ConfigMap-style ..data swap.
    let cm_dir = rig.dir.join("cm");
    fs::create_dir(&cm_dir).unwrap();
    let swap = |n: u32, w: u32| {
        let ts = cm_dir.join(format!("..2026_01_01_00_00_0{n}.000"));
        fs::create_dir(&ts).unwrap();
        fs::write(
            ts.join("canary.yaml"),
            mapping(
                "cmcanary",
                "/cm/",
                &canary.by_ip(),
                &format!("weight: {w}\n"),
            ),
        )
        .unwrap();
        fs::write(
            ts.join("main.yaml"),
            mapping("cmmain", "/cm/", &main.by_ip(), ""),
        )
        .unwrap();
        let tmp = cm_dir.join("..data_tmp");
        std::os::unix::fs::symlink(ts.file_name().unwrap(), &tmp).unwrap();
        fs::rename(&tmp, cm_dir.join("..data")).unwrap();
    };
    swap(1, 30);
    for f in ["canary.yaml", "main.yaml"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), cm_dir.join(f)).unwrap();
    }
    // Both weighted routes use both upstreams, so each backend's cluster adds its Mapping's name.
    let (cmm, cmc) = (format!("{cm}__cmmain"), format!("{cc}__cmcanary"));
    rig.wait_weights("/cm/", &[(&cmm, 7000), (&cmc, 3000)]);
    let before = rig.envoy.updates();
    swap(2, 40);
    rig.wait_weights("/cm/", &[(&cmm, 6000), (&cmc, 4000)]);
    assert_eq!(rig.envoy.updates() - before, 1);
    traffic.pass(100);
    let (sent, failures, _) = traffic.stop();
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        failures.first()
    );
}

#[test]
fn bad_yaml_keeps_the_last_good_split_and_names_the_line() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let rig = Rig::start(&canary_files(&main, &canary, 10), false, &[]);
    let (cm, cc) = canary_clusters(&main, &canary);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);

    let broken = mapping("qotmv2", "/qotm/", &canary.by_ip(), "weight: [50\n");
    write_atomically(&rig.path("qotmv2.yaml"), &broken);
    wait_for("the log to name the file and line", WAIT, || {
        let log = rig.cp.log_text();
        log.lines()
            .any(|l| l.contains("qotmv2.yaml:6") && l.contains("ERROR"))
            .then_some(())
    });
    traffic.pass(100);
    assert_eq!(
        rig.envoy.weights("/qotm/"),
        BTreeMap::from([(cm.clone(), 9000), (cc.clone(), 1000)])
    );

    write_atomically(
        &rig.path("qotmv2.yaml"),
        &canary_files(&main, &canary, 50)[1].1,
    );
    rig.wait_weights("/qotm/", &[(&cm, 5000), (&cc, 5000)]);
    let (_, failures, _) = traffic.stop();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn envoy_keeps_serving_through_a_control_plane_restart() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let mut rig = Rig::start(&canary_files(&main, &canary, 10), false, &[]);
    let (cm, cc) = canary_clusters(&main, &canary);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    let versions = |e: &Envoy| {
        (
            e.stat("cluster_manager.cds.version_text"),
            e.stat("listener_manager.lds.version_text"),
            e.config_version(),
        )
    };
    let before = versions(&rig.envoy);
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);
    rig.cp.kill();
    wait_for("Envoy to notice", WAIT, || {
        (rig.envoy.stat("control_plane.connected_state").as_deref() == Some("0")).then_some(())
    });
    traffic.pass(200);
    let updates = rig.envoy.updates();
    rig.cp.restart();
    wait_for("Envoy to reconnect", WAIT, || {
        (rig.envoy.stat("control_plane.connected_state").as_deref() == Some("1")).then_some(())
    });
    traffic.pass(100);
    // The same files give the same versions: Envoy's config does not change.
    assert_eq!(versions(&rig.envoy), before);
    assert!(rig.envoy.updates() >= updates);
    // Later edits apply.
    write_atomically(
        &rig.path("qotmv2.yaml"),
        &canary_files(&main, &canary, 30)[1].1,
    );
    rig.wait_weights("/qotm/", &[(&cm, 7000), (&cc, 3000)]);
    // SIGTERM: a clean exit in bounded time, and Envoy keeps its config.
    let started = std::time::Instant::now();
    assert!(rig.cp.sigterm().success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    traffic.pass(100);
    rig.wait_weights("/qotm/", &[(&cm, 7000), (&cc, 3000)]);
    let (_, failures, _) = traffic.stop();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn a_nack_is_not_resent_and_the_previous_config_keeps_serving() {
    require_envoy!();
    let main = Upstream::start("main");
    let lock = envoy_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = mappings_dir(
        tmp.path(),
        &[("qotm.yaml", mapping("qotm", "/qotm/", &main.by_ip(), ""))],
    );
    let listen = free_port();
    let cp = ControlPlane::start(&dir, listen, &[]);
    let admin = free_port();
    // This Envoy refuses any regex program over 5 instructions: a route table that is valid
    // for canary-xds (and for a default Envoy) is rejected by it.
    let boot = bootstrap(&Boot {
        xds_port: cp.xds_port,
        admin_port: admin,
        node_id: "strict",
        fleet: "default",
        delta: false,
        static_listener: None,
    });
    let boot = strict_regex(&boot);
    let envoy = Envoy::start(tmp.path(), &boot, admin);
    wait_for("the listener", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", listen)).ok()
    });
    let good = envoy.route_version();
    assert_eq!(
        tally(listen, "/qotm/", &[], 20),
        BTreeMap::from([("main".to_string(), 20)])
    );

    fs::write(
        dir.join("regex.yaml"),
        mapping(
            "rx",
            "^/v[0-9]+/items/[a-z]+$",
            &main.by_ip(),
            "prefix_regex: true\n",
        ),
    )
    .unwrap();
    wait_for("a NACK", WAIT, || {
        (envoy.counter("http.canary_xds.rds.canary-xds.update_rejected") >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    // No resend loop: one rejection, and the previous config keeps serving.
    assert_eq!(
        envoy.counter("http.canary_xds.rds.canary-xds.update_rejected"),
        1
    );
    assert_eq!(envoy.route_version(), good);
    assert_eq!(
        tally(listen, "/qotm/", &[], 20),
        BTreeMap::from([("main".to_string(), 20)])
    );
    let log = cp.log_text();
    assert!(
        log.contains("NACK") && log.contains("node=\"strict\"") || log.contains("node=strict"),
        "{log}"
    );
    // The next change goes out (and, without the regex, is accepted).
    fs::remove_file(dir.join("regex.yaml")).unwrap();
    fs::write(
        dir.join("other.yaml"),
        mapping("other", "/other/", &main.by_ip(), ""),
    )
    .unwrap();
    wait_for("the next version", WAIT, || {
        (envoy.route_version() != good).then_some(())
    });
    drop(lock);
}

#[test]
fn two_fleets_get_their_own_routes() {
    require_envoy!();
    let main = Upstream::start("main");
    let edge = Upstream::start("edge");
    let lock = envoy_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = mappings_dir(
        tmp.path(),
        &[
            ("a.yaml", mapping("qotm", "/qotm/", &main.by_ip(), "")),
            (
                "b.yaml",
                mapping("edge", "/qotm/", &edge.by_ip(), "ambassador_id: edge\n"),
            ),
        ],
    );
    let (default_port, edge_port) = (free_port(), free_port());
    let default_listen = format!("127.0.0.1:{default_port}");
    let edge_listen = format!("edge=127.0.0.1:{edge_port}");
    let cp = ControlPlane::start(
        &dir,
        0,
        &["--listen", &default_listen, "--listen", &edge_listen],
    );
    let start = |fleet: &str| {
        let admin = free_port();
        let boot = bootstrap(&Boot {
            xds_port: cp.xds_port,
            admin_port: admin,
            node_id: fleet,
            fleet,
            delta: fleet == "edge",
            static_listener: None,
        });
        Envoy::start(tmp.path(), &boot, admin)
    };
    let (_d, _e) = (start("default"), start("edge"));
    for port in [default_port, edge_port] {
        wait_for("the listener", WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }
    assert_eq!(
        tally(default_port, "/qotm/", &[], 20),
        BTreeMap::from([("main".to_string(), 20)])
    );
    assert_eq!(
        tally(edge_port, "/qotm/", &[], 20),
        BTreeMap::from([("edge".to_string(), 20)])
    );
    drop(lock);
}

#[test]
fn the_static_listener_bootstrap_works() {
    require_envoy!();
    let main = Upstream::start("main");
    let lock = envoy_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = mappings_dir(
        tmp.path(),
        &[("a.yaml", mapping("qotm", "/qotm/", &main.by_ip(), ""))],
    );
    let cp = ControlPlane::start(&dir, free_port(), &[]);
    let (admin, listener) = (free_port(), free_port());
    let boot = bootstrap(&Boot {
        xds_port: cp.xds_port,
        admin_port: admin,
        node_id: "static",
        fleet: "default",
        delta: false,
        static_listener: Some(listener),
    });
    let envoy = Envoy::start(tmp.path(), &boot, admin);
    wait_for("routes on the static listener", WAIT, || {
        let r = Client::new(listener).get("/qotm/", &[]);
        (r.status == 200 && r.body == "main").then_some(())
    });
    // No LDS: the only listener is the static one.
    assert!(
        envoy
            .config_dump("dynamic_listeners")
            .get("configs")
            .is_none_or(|c| c.as_array().is_none_or(|a| a.is_empty()))
    );
    drop(lock);
}

#[test]
fn a_restart_with_state_dir_serves_the_last_good_content_and_moves_safely() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let third = Upstream::start("third");
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap().to_string();
    let mut rig = Rig::start(
        &canary_files(&main, &canary, 10),
        false,
        &["--state-dir", &state_arg],
    );
    let (cm, cc) = canary_clusters(&main, &canary);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);
    let route = rig.envoy.route_version();

    // Down: the canary's file breaks. Up again: its last good content still serves.
    rig.cp.kill();
    write_atomically(
        &rig.path("qotmv2.yaml"),
        &mapping("qotmv2", "/qotm/", &canary.by_ip(), "weight: [\n"),
    );
    rig.cp.restart();
    wait_for("Envoy to reconnect", WAIT, || {
        (rig.envoy.stat("control_plane.connected_state").as_deref() == Some("1")).then_some(())
    });
    traffic.pass(100);
    assert_eq!(rig.envoy.route_version(), route);
    assert!(
        rig.cp
            .log_text()
            .contains("last good content keeps serving")
    );

    // Down again: the main Mapping moves to another upstream. Up again: Envoy moves over
    // make-before-break (the restarted server knows the routes Envoy holds), with no error.
    rig.cp.kill();
    write_atomically(
        &rig.path("qotm.yaml"),
        &mapping("qotm", "/qotm/", &third.by_name(), ""),
    );
    rig.cp.restart();
    let third_cluster = format!("localhost_{}", third.port);
    rig.wait_weights("/qotm/", &[(&third_cluster, 9000), (&cc, 1000)]);
    traffic.pass(200);
    let (sent, failures, bodies) = traffic.stop();
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(bodies.get("third").copied().unwrap_or(0) > 0, "{bodies:?}");
}

#[test]
fn a_restart_with_state_dir_keeps_runtime_weights_as_they_are() {
    require_envoy!();
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap().to_string();
    let mut rig = Rig::start(
        &canary_files(&main, &canary, 10),
        false,
        &["--state-dir", &state_arg],
    );
    let (cm, cc) = canary_clusters(&main, &canary);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    // A weight change goes over the runtime layer (the route table keeps its base weights).
    let route = rig.envoy.route_version();
    write_atomically(
        &rig.path("qotmv2.yaml"),
        &canary_files(&main, &canary, 50)[1].1,
    );
    rig.wait_weights("/qotm/", &[(&cm, 5000), (&cc, 5000)]);
    assert_eq!(
        rig.envoy.route_version(),
        route,
        "a weight change is not a new route table"
    );
    let before = rig.envoy.config_version();
    let updates = rig.envoy.updates();
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);
    rig.cp.restart();
    wait_for("Envoy to reconnect", WAIT, || {
        (rig.envoy.stat("control_plane.connected_state").as_deref() == Some("1")).then_some(())
    });
    traffic.pass(200);
    // The same route table and layer (answered again on the new stream, with the very same
    // versions): Envoy's config does not change.
    assert_eq!(rig.envoy.config_version(), before);
    assert!(rig.envoy.updates() >= updates);
    assert_eq!(
        rig.envoy.weights("/qotm/"),
        BTreeMap::from([(cm.clone(), 5000), (cc.clone(), 5000)])
    );
    let (_, failures, _) = traffic.stop();
    assert!(failures.is_empty(), "{failures:?}");
}
