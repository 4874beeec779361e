//! The watch loop of `serve`, in process and without Envoy: edits, deletions and a directory
//! that goes away and comes back all reach the published snapshot.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use canary_xds::serve::{Settings, start};
use common::{Mapping, write_atomically};
use tokio::net::TcpListener;

/// The default fleet's weights, by Mapping.
fn weights(admin: &canary_xds::admin::AdminState) -> Vec<(String, u32)> {
    let served = admin.served();
    served
        .tables
        .fleet("default")
        .expect("the default fleet")
        .routes
        .iter()
        .flat_map(|r| {
            r.backends
                .iter()
                .map(|b| (b.mapping.id.name.clone(), b.weight_bp))
        })
        .collect()
}

async fn wait_weights(admin: &canary_xds::admin::AdminState, expected: &[(&str, u32)]) {
    let expected: Vec<(String, u32)> = expected.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if weights(admin) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {:?} is not {expected:?}",
            weights(admin)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletions_and_a_replaced_directory_reach_the_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir(&dir).unwrap();
    let qotm = |name: &str| Mapping::named(name, "/qotm/");
    write_atomically(&dir.join("qotm.yaml"), &qotm("qotm").text());
    write_atomically(&dir.join("qotmv2.yaml"), &qotm("qotmv2").weight(10).text());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = start(Settings::for_dir(&dir), listener, async {
        let _ = stop_rx.await;
    })
    .await
    .unwrap();
    let hub = running.hub.clone();
    let admin = running.admin.clone();
    wait_weights(&admin, &[("qotm", 9000), ("qotmv2", 1000)]).await;

    write_atomically(&dir.join("qotmv2.yaml"), &qotm("qotmv2").weight(50).text());
    wait_weights(&admin, &[("qotm", 5000), ("qotmv2", 5000)]).await;

    fs::remove_file(dir.join("qotmv2.yaml")).unwrap();
    wait_weights(&admin, &[("qotm", 10000)]).await;

    // The directory goes away, files first (rm -rf): the last good config stays, never half.
    for (name, w) in [("a", 10), ("b", 20), ("c", 30)] {
        write_atomically(
            &dir.join(format!("{name}.yaml")),
            &qotm(name).weight(w).text(),
        );
    }
    let full = [("a", 1000), ("b", 2000), ("c", 3000), ("qotm", 4000)];
    wait_weights(&admin, &full).await;
    let version = hub.current().fleet("default").version.clone();
    fs::remove_dir_all(&dir).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hub.current().fleet("default").version, version);

    // It comes back with other content: the watch starts again and the change goes live.
    fs::create_dir(&dir).unwrap();
    write_atomically(&dir.join("qotm.yaml"), &qotm("qotm").text());
    write_atomically(&dir.join("qotmv3.yaml"), &qotm("qotmv3").weight(20).text());
    wait_weights(&admin, &[("qotm", 8000), ("qotmv3", 2000)]).await;

    // And it is watched again: a later edit goes live without waiting for a rescan.
    write_atomically(&dir.join("qotmv3.yaml"), &qotm("qotmv3").weight(30).text());
    wait_weights(&admin, &[("qotm", 7000), ("qotmv3", 3000)]).await;

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running.done)
        .await
        .expect("shuts down in time")
        .unwrap()
        .unwrap();
}
