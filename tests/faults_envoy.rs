//! Process faults, and the file-system fault that needs traffic to judge, with a real Envoy:
//! canary-xds SIGKILLed in the middle of a push and restarted, Envoy killed and restarted, an
//! ADS client that never reads its responses next to a real Envoy, SIGTERM with such a client
//! connected, and a Kubernetes ConfigMap (`..data`) swapped a hundred times under traffic.
//! Each test holds the Envoy lock.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// A directory of Mappings, canary-xds serving it and one Envoy fed by it. The caller has
/// checked for Envoy (`require_envoy!`).
struct Rig {
    _lock: std::sync::MutexGuard<'static, ()>,
    work: WorkDir,
    dir: PathBuf,
    listen: u16,
    cp: ControlPlane,
    envoy: Envoy,
    boot: String,
}

impl Rig {
    /// Serves `dir` (filled by `fill`) with `extra` flags to one Envoy, node `e1`.
    fn start(fill: impl FnOnce(&Path), extra: &[&str]) -> Rig {
        let lock = envoy_lock();
        let work = WorkDir::new();
        let dir = work.mappings(&[]);
        fill(&dir);
        let listen = free_port();
        let cp = ControlPlane::start(&dir, listen, extra);
        let admin = free_port();
        let boot = bootstrap(&Boot {
            xds_port: cp.xds_port,
            admin_port: admin,
            node_id: "e1",
            fleet: "default",
            delta: false,
            static_listener: None,
        });
        let envoy = Envoy::start(work.path(), &boot, admin);
        let rig = Rig {
            _lock: lock,
            dir,
            work,
            listen,
            cp,
            envoy,
            boot,
        };
        wait_for("the listener", WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", rig.listen)).ok()
        });
        rig
    }

    fn work(&self) -> &Path {
        self.work.path()
    }

    /// Waits until Envoy's weights for `prefix` are exactly `expected` (`wait_weights`).
    fn wait_weights(&self, prefix: &str, expected: &[(&str, u64)]) {
        wait_weights(&self.envoy, prefix, expected, WAIT);
    }

    /// canary-xds's view of its Envoys (`/api/envoys`).
    fn envoys(&self) -> Vec<serde_json::Value> {
        get_json(self.cp.admin_port, "/api/envoys")["envoys"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `e1` is the only Envoy of canary-xds's and holds the current snapshot.
    fn wait_in_sync(&self) {
        wait_for("e1 in sync", WAIT, || {
            let envoys = self.envoys();
            let e1: Vec<_> = envoys.iter().filter(|e| e["node_id"] == "e1").collect();
            (e1.len() == 1 && e1[0]["in_sync"] == true).then_some(())
        });
    }
}

/// `n` Mappings, each with a service of its own (an IP nobody listens on): `n` clusters, so
/// that a push takes Envoy a while and a cluster response outgrows a 64 KiB window.
fn filler(n: usize, salt: usize) -> String {
    (0..n)
        .map(|i| {
            mapping(
                &format!("filler{i}"),
                &format!("/filler{i}/"),
                &format!(
                    "127.{}.{}.{}:{}",
                    1 + salt % 200,
                    i / 250,
                    i % 250 + 1,
                    8000
                ),
                "",
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Lines of canary-xds's log that report a push of a cluster response.
fn pushes(cp: &ControlPlane) -> usize {
    cp.log_text()
        .lines()
        .filter(|l| l.contains("push") && l.contains("kind=cds"))
        .count()
}

#[test]
fn sigkill_in_the_middle_of_a_push_then_a_restart_serves_the_same_config() {
    require_envoy!();
    let main = Upstream::start("main");
    let can = Upstream::start("canary");
    let files = canary_files(&main, &can, 10);
    let mut rig = Rig::start(
        |dir| {
            for (name, text) in &files {
                fs::write(dir.join(name), text).unwrap();
            }
            fs::write(dir.join("filler.yaml"), filler(1500, 0)).unwrap();
        },
        &[],
    );
    let (cm, cc) = canary_clusters(&main, &can);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    rig.wait_in_sync();
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);
    traffic.pass(50);
    // Three kills: as the change is written, at the first cluster push, 50 ms into it.
    for (round, delay) in [None, Some(0u64), Some(50)].into_iter().enumerate() {
        let weight = 20 + 10 * round as u32;
        let before = pushes(&rig.cp);
        write_atomically(
            &rig.dir.join("qotmv2.yaml"),
            &canary_files(&main, &can, weight)[1].1,
        );
        // A new cluster set too, so that the push is large.
        write_atomically(&rig.dir.join("filler.yaml"), &filler(1500, round + 1));
        if let Some(delay) = delay {
            wait_for("a push", WAIT, || (pushes(&rig.cp) > before).then_some(()));
            std::thread::sleep(Duration::from_millis(delay));
        }
        rig.cp.kill();
        // Envoy keeps serving what it holds, whatever part of the push arrived.
        traffic.pass(100);
        rig.cp.restart();
        // The restarted control plane serves what the files say, and Envoy gets all of it.
        rig.wait_weights("/qotm/", &canary_split(&cm, &cc, weight));
        rig.wait_in_sync();
        traffic.pass(100);
    }
    let (sent, failures, bodies) = traffic.stop();
    assert!(
        failures.is_empty(),
        "{} failed of {sent}: {failures:?}",
        failures.len()
    );
    assert!(
        bodies.contains_key("main") && bodies.contains_key("canary"),
        "{bodies:?}"
    );
}

#[test]
fn envoy_killed_and_restarted_reconnects_and_gets_its_config() {
    require_envoy!();
    let main = Upstream::start("main");
    let can = Upstream::start("canary");
    let files = canary_files(&main, &can, 10);
    let mut rig = Rig::start(
        |dir| {
            for (name, text) in &files {
                fs::write(dir.join(name), text).unwrap();
            }
        },
        &[],
    );
    let (cm, cc) = canary_clusters(&main, &can);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    rig.wait_in_sync();
    for round in 0..2 {
        let _ = rig.envoy.child.kill();
        let _ = rig.envoy.child.wait();
        // The control plane notices the stream is gone.
        wait_for("the stream to end", WAIT, || {
            rig.envoys().is_empty().then_some(())
        });
        // A change while Envoy is down.
        let weight = 30 + 20 * round;
        write_atomically(
            &rig.dir.join("qotmv2.yaml"),
            &canary_files(&main, &can, weight)[1].1,
        );
        let work = rig.work().to_path_buf();
        rig.envoy = Envoy::start(&work, &rig.boot, rig.envoy.admin_port);
        rig.wait_weights("/qotm/", &canary_split(&cm, &cc, weight));
        rig.wait_in_sync();
        let counts = tally(rig.listen, "/qotm/", &[], 50);
        assert_eq!(counts.values().sum::<usize>(), 50);
        assert!(
            counts.keys().all(|k| k == "main" || k == "canary"),
            "{counts:?}"
        );
    }
    assert!(
        rig.cp.child.try_wait().unwrap().is_none(),
        "canary-xds exited"
    );
}

/// The responses of an ADS stream, and the sender of its requests.
type Ads = (
    tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
    tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>,
);

/// An ADS client on its own runtime that asks for clusters, with a 64 KiB flow-control window,
/// and never reads what it is sent.
struct StuckClient {
    _stream: Ads,
    // Dropped last: the stream's connection lives on it.
    _runtime: tokio::runtime::Runtime,
}

impl StuckClient {
    fn connect(port: u16, node: &str) -> StuckClient {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let window = Some(65_535);
        let stream = runtime
            .block_on(open_ads_with_window(
                port,
                ClientTls::Plaintext,
                node,
                "default",
                window,
            ))
            .unwrap();
        StuckClient {
            _stream: stream,
            _runtime: runtime,
        }
    }
}

/// How long Envoy takes to apply a change of every filler cluster and a weight, written now.
fn propagation(rig: &Rig, main: &Upstream, can: &Upstream, weight: u32) -> Duration {
    let (cm, cc) = canary_clusters(main, can);
    let started = Instant::now();
    write_atomically(&rig.dir.join("filler.yaml"), &filler(1000, weight as usize));
    write_atomically(
        &rig.dir.join("qotmv2.yaml"),
        &canary_files(main, can, weight)[1].1,
    );
    rig.wait_weights("/qotm/", &canary_split(&cm, &cc, weight));
    started.elapsed()
}

#[test]
fn a_client_that_never_reads_does_not_delay_other_envoys() {
    require_envoy!();
    let main = Upstream::start("main");
    let can = Upstream::start("canary");
    let files = canary_files(&main, &can, 10);
    let rig = Rig::start(
        |dir| {
            for (name, text) in &files {
                fs::write(dir.join(name), text).unwrap();
            }
            // Clusters enough that a response outgrows the stuck client's window.
            fs::write(dir.join("filler.yaml"), filler(1000, 0)).unwrap();
        },
        &[],
    );
    let (cm, cc) = canary_clusters(&main, &can);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    rig.wait_in_sync();
    let baseline: Vec<Duration> = (0..3)
        .map(|i| propagation(&rig, &main, &can, 11 + i))
        .collect();

    let stuck = StuckClient::connect(rig.cp.xds_port, "stuck");
    wait_for("the stuck client to be sent clusters", WAIT, || {
        rig.envoys()
            .iter()
            .find(|e| e["node_id"] == "stuck" && !e["types"]["cds"]["sent"].is_null())
            .map(|_| ())
    });
    // New clusters each time, which the stuck client is never able to take.
    let with_stuck: Vec<Duration> = (0..3)
        .map(|i| propagation(&rig, &main, &can, 21 + i))
        .collect();
    rig.wait_in_sync();
    let worst = *with_stuck.iter().max().unwrap();
    let before = *baseline.iter().max().unwrap();
    eprintln!("propagation without the stuck client {baseline:?}, with it {with_stuck:?}");
    assert!(
        worst < before * 2 + Duration::from_millis(500),
        "a stuck client slowed Envoy down: {with_stuck:?} against {baseline:?}"
    );
    // The stuck client is still connected, and behind.
    let envoys = rig.envoys();
    let stuck_status = envoys.iter().find(|e| e["node_id"] == "stuck").unwrap();
    assert_eq!(stuck_status["in_sync"], false, "{stuck_status}");
    drop(stuck);
}

#[test]
fn sigterm_with_a_stuck_client_and_a_push_in_flight_exits_in_bounded_time() {
    require_envoy!();
    let main = Upstream::start("main");
    let can = Upstream::start("canary");
    let files = canary_files(&main, &can, 10);
    let mut rig = Rig::start(
        |dir| {
            for (name, text) in &files {
                fs::write(dir.join(name), text).unwrap();
            }
            fs::write(dir.join("filler.yaml"), filler(1000, 0)).unwrap();
        },
        &[],
    );
    let (cm, cc) = canary_clusters(&main, &can);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    rig.wait_in_sync();
    let stuck = StuckClient::connect(rig.cp.xds_port, "stuck");
    wait_for("the stuck client to be sent clusters", WAIT, || {
        rig.envoys()
            .iter()
            .find(|e| e["node_id"] == "stuck" && !e["types"]["cds"]["sent"].is_null())
            .map(|_| ())
    });
    let traffic = Traffic::start(rig.listen, "/qotm/", 200);
    traffic.pass(50);
    // A change on its way to Envoy, and the signal.
    write_atomically(&rig.dir.join("filler.yaml"), &filler(1000, 7));
    let before = pushes(&rig.cp);
    wait_for("a push", WAIT, || (pushes(&rig.cp) > before).then_some(()));
    let started = Instant::now();
    let status = rig.cp.sigterm();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", rig.cp.log_text());
    // The drain time (3 s) bounds the exit, stuck client or not.
    assert!(took < Duration::from_secs(8), "SIGTERM took {took:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", rig.cp.xds_port)).is_err(),
        "the xDS port still accepts"
    );
    // Envoy keeps its config and serves on.
    traffic.pass(200);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    let (sent, failures, _) = traffic.stop();
    assert!(
        failures.is_empty(),
        "{} failed of {sent}: {failures:?}",
        failures.len()
    );
    eprintln!("SIGTERM with a stuck client connected: exited in {took:?}");
    drop(stuck);
}

/// A ConfigMap volume as the kubelet writes it: the files live in a timestamped hidden
/// directory, `..data` links to it, and each visible file links into `..data`. An update
/// writes a new directory, swaps `..data` with a rename, and deletes the old directory.
struct ConfigMap {
    dir: PathBuf,
    generation: usize,
}

impl ConfigMap {
    fn new(dir: &Path, files: &[(&str, String)]) -> ConfigMap {
        let mut cm = ConfigMap {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        cm.update(files);
        for (name, _) in files {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        cm
    }

    fn update(&mut self, files: &[(&str, String)]) {
        self.generation += 1;
        let data = format!("..2026_11_27_00_00_00.{}", self.generation);
        let fresh = self.dir.join(&data);
        fs::create_dir(&fresh).unwrap();
        for (name, text) in files {
            fs::write(fresh.join(name), text).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        symlink(&data, &tmp).unwrap();
        fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if self.generation > 1 {
            let old = format!("..2026_11_27_00_00_00.{}", self.generation - 1);
            fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

#[test]
fn a_configmap_swapped_a_hundred_times_under_traffic_fails_no_request() {
    require_envoy!();
    let main = Upstream::start("main");
    let can = Upstream::start("canary");
    let other = Upstream::start("other");
    let files = |weight: u32| {
        let [a, b] = canary_files(&main, &can, weight);
        vec![
            a,
            b,
            (
                "other.yaml",
                mapping("other", "/other/", &other.by_ip(), ""),
            ),
        ]
    };
    let mut configmap = None;
    let rig = Rig::start(|dir| configmap = Some(ConfigMap::new(dir, &files(10))), &[]);
    let mut configmap = configmap.unwrap();
    let (cm, cc) = canary_clusters(&main, &can);
    rig.wait_weights("/qotm/", &[(&cm, 9000), (&cc, 1000)]);
    // A file seen as deleted for a moment would take its route away: /other/ would 404.
    let split = Traffic::start(rig.listen, "/qotm/", 150);
    let alone = Traffic::start(rig.listen, "/other/", 150);
    split.pass(30);
    let started = Instant::now();
    let mut last = 10;
    for i in 1..=100u32 {
        last = 1 + (i * 7) % 49;
        configmap.update(&files(last));
        if i % 20 == 0 {
            rig.wait_weights("/qotm/", &canary_split(&cm, &cc, last));
        } else {
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    rig.wait_weights("/qotm/", &canary_split(&cm, &cc, last));
    let took = started.elapsed();
    split.pass(30);
    let (sent, failures, bodies) = split.stop();
    let (sent_other, failures_other, _) = alone.stop();
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    assert!(
        failures_other.is_empty(),
        "{} of {sent_other} failed: {failures_other:?}",
        failures_other.len()
    );
    assert!(bodies.contains_key("canary"), "{bodies:?}");
    // Nothing was ever held or refused: every swap was read whole.
    let d = get_json(rig.cp.admin_port, "/api/diagnostics");
    assert_eq!(d["counts"]["errors"], 0, "{d}");
    eprintln!("100 ConfigMap swaps in {took:?}: {sent} + {sent_other} requests, none failed");
}
