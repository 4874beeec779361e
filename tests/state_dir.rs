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
