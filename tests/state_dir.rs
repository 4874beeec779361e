//! `--state-dir` faults, without Envoy: a second `serve` on one state directory, and caches
//! found corrupt at start.

mod common;

use std::process::Stdio;
use std::time::Duration;

use canary_xds::serve::{Settings, start};
use common::*;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

const LOCKED: &str = "another canary-xds serve is using this directory";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_one_state_dir_refuses_to_start() {
    let work = WorkDir::new();
    let dir = work.mappings(&[("qotm.yaml", Mapping::named("qotm", "/qotm/").text())]);
    let mut settings = Settings::for_dir(&dir);
    settings.state_dir = Some(work.path().join("state"));
    let (running, stop) = serve_in_process(settings.clone(), false).await;

    let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
    match start(settings.clone(), xds, std::future::pending()).await {
        Ok(_) => panic!("a second serve started on the same --state-dir"),
        Err(e) => assert!(e.to_string().contains(LOCKED), "{e}"),
    }
    // The binary says so and exits 1.
    let out = canary_xds()
        .args(["serve", "--dir"])
        .arg(&dir)
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .args(["--xds", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", "off"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(LOCKED), "{stderr}");

    // Once the first is gone, the directory is free.
    stop_in_process(running, stop).await;
    let (running, stop) = serve_in_process(settings, false).await;
    wait_served(&running.admin, &[("qotm", 10000)], Order::Served, WAIT).await;
    stop_in_process(running, stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_over_corrupt_caches_and_writes_them_anew() {
    let work = WorkDir::new();
    let dir = work.mappings(&[
        ("qotm.yaml", Mapping::named("qotm", "/qotm/").text()),
        (
            "canary.yaml",
            Mapping::named("canary", "/qotm/").weight(10).text(),
        ),
    ]);
    let state = work.path().join("state");
    let mut settings = Settings::for_dir(&dir);
    settings.state_dir = Some(state.clone());
    let expected = [("canary", 1000), ("qotm", 9000)];
    let (running, stop) = serve_in_process(settings.clone(), false).await;
    wait_served(&running.admin, &expected, Order::ByName, WAIT).await;
    stop_in_process(running, stop).await;

    // A crash (or a disk) left both caches unreadable: one NUL-filled, one not even UTF-8.
    let len = std::fs::metadata(state.join("served.bin")).unwrap().len();
    std::fs::write(state.join("served.bin"), vec![0u8; len as usize]).unwrap();
    std::fs::write(
        state.join("bases.json"),
        b"{\"default\": {\"structure\": \"\xff",
    )
    .unwrap();
    let (running, stop) = serve_in_process(settings, false).await;
    wait_served(&running.admin, &expected, Order::ByName, WAIT).await;
    // Written anew at the next persist, which follows the first reload.
    wait_until("the caches to be written anew", WAIT, async || {
        std::fs::read(state.join("served.bin")).is_ok_and(|b| b.iter().any(|&x| x != 0))
    })
    .await;
    stop_in_process(running, stop).await;
}
