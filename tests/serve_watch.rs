//! The watch loop of `serve`, in process and without Envoy: edits, deletions and a directory
//! that goes away and comes back all reach the published snapshot.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use canary_xds::serve::{Settings, start};
use tokio::net::TcpListener;

fn mapping(name: &str, weight: &str) -> String {
    format!(
        "apiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: /qotm/\nservice: {name}\n{weight}"
    )
}

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

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletions_and_a_replaced_directory_reach_the_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir(&dir).unwrap();
    write(&dir, "qotm.yaml", &mapping("qotm", ""));
    write(&dir, "qotmv2.yaml", &mapping("qotmv2", "weight: 10\n"));
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

    write(&dir, "qotmv2.yaml", &mapping("qotmv2", "weight: 50\n"));
    wait_weights(&admin, &[("qotm", 5000), ("qotmv2", 5000)]).await;

    fs::remove_file(dir.join("qotmv2.yaml")).unwrap();
    wait_weights(&admin, &[("qotm", 10000)]).await;

    // The directory goes away, files first (rm -rf): the last good config stays, never half.
    for (name, w) in [("a", 10), ("b", 20), ("c", 30)] {
        write(
            &dir,
            &format!("{name}.yaml"),
            &mapping(name, &format!("weight: {w}\n")),
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
    write(&dir, "qotm.yaml", &mapping("qotm", ""));
    write(&dir, "qotmv3.yaml", &mapping("qotmv3", "weight: 20\n"));
    wait_weights(&admin, &[("qotm", 8000), ("qotmv3", 2000)]).await;

    // And it is watched again: a later edit goes live without waiting for a rescan.
    write(&dir, "qotmv3.yaml", &mapping("qotmv3", "weight: 30\n"));
    wait_weights(&admin, &[("qotm", 7000), ("qotmv3", 3000)]).await;

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running.done)
        .await
        .expect("shuts down in time")
        .unwrap()
        .unwrap();
}
