//! The route-table cap against a real `serve` over loopback: two valid files that multiply
//! into millions of route entries are refused, and with no good table to fall back on their
//! fleet is sent nothing (never an empty table), `/readyz` says why, and the fleet is served
//! again as soon as the files fit.

mod common;

use std::fs;
use std::time::Duration;

use canary_xds::serve::Settings;
use common::{
    ClientTls, Mapping, http_get, open_ads, serve_in_process, stop_in_process, wait_until,
    write_atomically,
};

const WAIT: Duration = Duration::from_secs(20);

/// `n` Mappings in one file; with `hosts`, each on a host of its own.
fn many(n: usize, name: &str, hosts: bool) -> String {
    (0..n)
        .map(|i| {
            let m = Mapping::named(&format!("{name}{i}"), &format!("/{name}{i}/")).document_start();
            let m = if hosts {
                m.extra(&format!("host: h{i}.example.com\n"))
            } else {
                m
            };
            m.text()
        })
        .collect()
}

async fn readyz(port: u16) -> common::Reply {
    tokio::task::spawn_blocking(move || http_get(port, "/readyz"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_over_the_limit_at_start_is_sent_nothing_until_it_fits() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("hostless.yaml"), many(3_000, "r", false)).unwrap();
    fs::write(t.path().join("hosts.yaml"), many(3_000, "h", true)).unwrap();
    let (running, stop) = serve_in_process(Settings::for_dir(t.path()), true).await;
    let admin = running.admin_addr.unwrap().port();
    let xds = running.xds_addr.port();

    let r = readyz(admin).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.starts_with(
            "not ready: fleet default is sent nothing: the route table would hold 9,006,000 \
             route entries across 3,001 virtual hosts, over the limit of 500,000 \
             (--max-routes): hosts.yaml adds 3,000 hosts, and each repeats the 3,000 hostless \
             routes of hostless.yaml"
        ),
        "{}",
        r.body
    );

    // An Envoy of the withheld fleet asks, and is answered nothing; one of another fleet is
    // answered at once.
    let (mut withheld, _keep) = open_ads(xds, ClientTls::Plaintext, "edge-1", "default")
        .await
        .unwrap();
    let (mut other, _keep_other) = open_ads(xds, ClientTls::Plaintext, "other-1", "other")
        .await
        .unwrap();
    let answered = tokio::time::timeout(WAIT, other.message()).await;
    assert!(matches!(answered, Ok(Ok(Some(_)))), "{answered:?}");
    wait_until(
        "the withheld Envoy's request to be taken in",
        WAIT,
        async || running.hub.envoys().iter().any(|e| e.node_id == "edge-1"),
    )
    .await;
    let nothing = tokio::time::timeout(Duration::from_millis(200), withheld.message()).await;
    assert!(nothing.is_err(), "a withheld fleet got {nothing:?}");

    // Once the files fit, the fleet is served, and the control plane is ready.
    write_atomically(&t.path().join("hosts.yaml"), &many(10, "h", true));
    let cds = tokio::time::timeout(WAIT, withheld.message()).await;
    let cds = cds.expect("served once it fits").unwrap().unwrap();
    assert!(!cds.resources.is_empty());
    wait_until("ready", WAIT, async || readyz(admin).await.status == 200).await;
    stop_in_process(running, stop).await;
}
