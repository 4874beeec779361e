//! The watch loop of `serve`, in process and without Envoy: edits, deletions and a directory
//! that goes away and comes back all reach the published snapshot.

mod common;

use std::fs;
use std::time::Duration;

use canary_xds::serve::Settings;
use common::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletions_and_a_replaced_directory_reach_the_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir(&dir).unwrap();
    let qotm = |name: &str| Mapping::named(name, "/qotm/");
    write_atomically(&dir.join("qotm.yaml"), &qotm("qotm").text());
    write_atomically(&dir.join("qotmv2.yaml"), &qotm("qotmv2").weight(10).text());
    let (running, stop) = serve_in_process(Settings::for_dir(&dir), false).await;
    let hub = running.hub.clone();
    let admin = running.admin.clone();
    let wait = async |expected: &[(&str, u32)]| {
        wait_served(&admin, expected, Order::Served, WAIT).await;
    };
    wait(&[("qotm", 9000), ("qotmv2", 1000)]).await;

    write_atomically(&dir.join("qotmv2.yaml"), &qotm("qotmv2").weight(50).text());
    wait(&[("qotm", 5000), ("qotmv2", 5000)]).await;

    fs::remove_file(dir.join("qotmv2.yaml")).unwrap();
    wait(&[("qotm", 10000)]).await;

    // The directory goes away, files first (rm -rf): the last good config stays, never half.
    for (name, w) in [("a", 10), ("b", 20), ("c", 30)] {
        write_atomically(
            &dir.join(format!("{name}.yaml")),
            &qotm(name).weight(w).text(),
        );
    }
    let full = [("a", 1000), ("b", 2000), ("c", 3000), ("qotm", 4000)];
    wait(&full).await;
    let version = hub.current().fleet("default").version.clone();
    fs::remove_dir_all(&dir).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hub.current().fleet("default").version, version);

    // It comes back with other content: the watch starts again and the change goes live.
    fs::create_dir(&dir).unwrap();
    write_atomically(&dir.join("qotm.yaml"), &qotm("qotm").text());
    write_atomically(&dir.join("qotmv3.yaml"), &qotm("qotmv3").weight(20).text());
    wait(&[("qotm", 8000), ("qotmv3", 2000)]).await;

    // And it is watched again: a later edit goes live without waiting for a rescan.
    write_atomically(&dir.join("qotmv3.yaml"), &qotm("qotmv3").weight(30).text());
    wait(&[("qotm", 7000), ("qotmv3", 3000)]).await;

    stop_in_process(running, stop).await;
}
