//! Graceful shutdown of the xDS port, in process (`serve::start` with a shutdown future, over
//! mTLS and in plaintext): once shutdown begins new connections are refused (xDS and admin), a
//! response in flight still arrives whole and its stream ends with an OK status, and a client
//! that stops reading cannot hold the exit past the drain time. (`tests/e2e.rs` and
//! `tests/tls.rs` check the real process: SIGTERM exits cleanly in under 5 s and Envoy keeps its
//! config.)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use canary_xds::serve::tls::TlsFiles;
use canary_xds::serve::{Running, Settings};
use common::*;
use prost::Message;

/// How many Mappings (each its own upstream, so its own cluster): enough for a cluster
/// response larger than the client's 64 KiB flow-control window.
const MAPPINGS: usize = 1000;
const WINDOW: u32 = 65_535;

/// One file of `MAPPINGS` Mappings, each with its own upstream IP.
fn many_mappings(dir: &Path) {
    std::fs::create_dir(dir).unwrap();
    let text: Vec<String> = (0..MAPPINGS)
        .map(|i| {
            mapping(
                &format!("svc{i}"),
                &format!("/svc{i}/"),
                &format!("127.0.{}.{}:8080", i / 200, i % 200 + 1),
                "",
            )
        })
        .collect();
    std::fs::write(dir.join("many.yaml"), text.join("---\n")).unwrap();
}

/// Waits until the server has started sending a response.
async fn wait_sent(running: &Running) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while running
        .hub
        .counters
        .responses
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "no response was sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the first window's worth reach the client.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_refuses_new_connections_and_finishes_the_response_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mappings");
    many_mappings(&dir);
    let pki = Pki::new(tmp.path(), "corp");
    let server = pki.issue("canary-xds", &["localhost", "127.0.0.1"]);
    let edge = pki.issue("edge", &["spiffe://corp/ns/prod/sa/edge"]);
    let mut settings = Settings::for_dir(&dir);
    settings.xds_tls = Some(TlsFiles {
        cert: server.0.clone(),
        key: server.1.clone(),
        client_ca: Some(pki.ca.clone()),
    });
    settings.allow = vec!["default=spiffe://corp/ns/*/sa/edge".parse().unwrap()];
    // Long enough that finishing before it means the drain was graceful, not cut.
    settings.drain = Duration::from_secs(15);
    let (running, stop) = serve_in_process(settings, true).await;
    let port = running.xds_addr.port();
    let tls = ClientTls::Tls {
        ca: &pki.ca,
        cert: Some(&edge),
    };
    let (mut stream, _requests) =
        open_ads_with_window(port, tls, "edge-1", "default", Some(WINDOW))
            .await
            .unwrap();
    wait_sent(&running).await;

    let admin = running.admin_addr.unwrap();
    let stopping = Instant::now();
    stop.send(()).unwrap();
    // New connections are refused at once, by the xDS and the admin server: both listeners are
    // closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    for addr in [std::net::SocketAddr::from(([127, 0, 0, 1], port)), admin] {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "{addr} still accepts after shutdown"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The response that was in flight (most of it still waiting for the client's window)
    // arrives whole, then the stream ends with an OK status, not a reset.
    let response = stream.message().await.expect("a whole response").unwrap();
    assert_eq!(response.resources.len(), MAPPINGS);
    assert!(
        response.encoded_len() > WINDOW as usize,
        "the response fits the window: {} bytes",
        response.encoded_len()
    );
    assert!(
        stream.message().await.expect("an OK status").is_none(),
        "nothing after the response in flight"
    );
    // And the server finished on its own, well within the drain time.
    tokio::time::timeout(Duration::from_secs(10), running.done)
        .await
        .expect("done within the drain time")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_cannot_hold_the_exit_past_the_drain_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mappings");
    many_mappings(&dir);
    let mut settings = Settings::for_dir(&dir);
    let drain = Duration::from_millis(500);
    settings.drain = drain;
    let (running, stop) = serve_in_process(settings, true).await;
    let port = running.xds_addr.port();
    // A response far larger than the client's window, which the client never reads.
    let (_stream, _requests) =
        open_ads_with_window(port, ClientTls::Plaintext, "stuck", "default", Some(WINDOW))
            .await
            .unwrap();
    wait_sent(&running).await;

    let stopping = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(drain + Duration::from_secs(3), running.done)
        .await
        .expect("done within the drain time and a little")
        .unwrap()
        .unwrap();
    // It did wait for the stuck connection, up to the drain time.
    assert!(stopping.elapsed() >= drain, "{:?}", stopping.elapsed());
}
