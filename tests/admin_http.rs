//! The admin server in process, without Envoy: `serve::start` with an admin listener on port 0,
//! then every endpoint over real HTTP: health, readiness before and after the first config,
//! metrics, the JSON API, the page and its headers, a clean stop, and what it refuses: other
//! host names, slow request headers, connections over the limit.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use canary_xds::admin::AllowedHosts;
use canary_xds::serve::Settings;
use common::{Mapping, metric, serve_in_process, stop_in_process, wait_until, write_atomically};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// A response: status, headers (lower-case names) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One GET over a fresh connection that the server closes after the response.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Reply> {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
    )
    .await
}

/// `request` as it is, over a fresh connection, and the answer up to the end of the connection.
async fn send(addr: SocketAddr, request: &str) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    read_reply(&mut s).await
}

/// Reads an answer up to the end of the connection.
async fn read_reply(s: &mut TcpStream) -> std::io::Result<Reply> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Starts canary-xds in process with an admin server: its handle, the admin server's address,
/// and the sender that stops it.
async fn start_with_admin(
    settings: Settings,
) -> (
    canary_xds::serve::Running,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let (running, stop) = serve_in_process(settings, true).await;
    let addr = running.admin_addr.expect("the admin server runs");
    (running, addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_stops_with_the_server() {
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join("qotm.yaml"),
        Mapping::named("qotm", "/qotm/").text(),
    )
    .unwrap();
    fs::write(
        t.path().join("qotmv2.yaml"),
        Mapping::named("qotmv2", "/qotm/").weight(10).text(),
    )
    .unwrap();
    let mut settings = Settings::for_dir(t.path());
    settings.envoy_admin = vec!["http://admin:secret@127.0.0.1:9901".into()];
    let (running, addr, stop) = start_with_admin(settings).await;

    let health = get(addr, "/healthz").await.unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    wait_until("ready", WAIT, async || {
        get(addr, "/readyz").await.is_ok_and(|r| r.status == 200)
    })
    .await;

    let metrics = get(addr, "/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(metric(&metrics.body, "canary_xds_reloads_total{result=\"ok\"}").unwrap() >= 1.0);
    assert_eq!(metric(&metrics.body, "canary_xds_mappings"), Some(2.0));
    assert_eq!(
        metric(&metrics.body, "canary_xds_xds_nacks_total"),
        Some(0.0)
    );

    let routes = get(addr, "/api/routes").await.unwrap();
    assert_eq!(routes.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&routes.body).unwrap();
    let version = running.hub.current().version();
    assert_eq!(doc["version"], version.as_str());
    assert_eq!(
        doc["fleets"]["default"]["routes"][0]["backends"][1]["weight_bp"],
        1000
    );
    let envoys: serde_json::Value =
        serde_json::from_str(&get(addr, "/api/envoys").await.unwrap().body).unwrap();
    assert_eq!(envoys["envoys"], serde_json::json!([]));
    let diagnostics: serde_json::Value =
        serde_json::from_str(&get(addr, "/api/diagnostics").await.unwrap().body).unwrap();
    assert_eq!(diagnostics["diagnostics"], serde_json::json!([]));
    assert_eq!(diagnostics["reload_ok"], true);

    let page = get(addr, "/").await.unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"));
    assert!(page.body.contains("90.00%") && page.body.contains("10.00%"));
    // The --envoy-admin URL is shown without its credentials.
    assert!(page.body.contains("http://127.0.0.1:9901"));
    assert!(!page.body.contains("secret"));
    // No external resource of any kind.
    for external in ["src=\"http", "href=\"http", "url(", "@import"] {
        assert!(!page.body.contains(external), "{external}");
    }

    assert_eq!(get(addr, "/nope").await.unwrap().status, 404);

    // A change reaches the API.
    write_atomically(
        &t.path().join("qotmv2.yaml"),
        &Mapping::named("qotmv2", "/qotm/").weight(30).text(),
    );
    wait_until("the new weights in /api/routes", WAIT, async || {
        get(addr, "/api/routes")
            .await
            .is_ok_and(|r| r.body.contains("\"weight_bp\": 3000"))
    })
    .await;

    stop.send(()).unwrap();
    running.done.await.unwrap().unwrap();
    assert!(
        get(addr, "/healthz").await.is_err(),
        "the admin server stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_directory_can_be_read() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("later");
    let (running, addr, stop) = start_with_admin(Settings::for_dir(&dir)).await;

    let ready = get(addr, "/readyz").await.unwrap();
    assert_eq!(ready.status, 503);
    assert!(
        ready.body.contains("no config loaded yet"),
        "{}",
        ready.body
    );
    assert_eq!(get(addr, "/healthz").await.unwrap().status, 200);
    let metrics = get(addr, "/metrics").await.unwrap().body;
    assert!(
        metric(&metrics, "canary_xds_reloads_total{result=\"failed\"}").unwrap() >= 1.0,
        "{metrics}"
    );
    let page = get(addr, "/").await.unwrap().body;
    assert!(page.contains("data-level=\"bad\""), "{page}");
    let diagnostics: serde_json::Value =
        serde_json::from_str(&get(addr, "/api/diagnostics").await.unwrap().body).unwrap();
    assert_eq!(diagnostics["reload_ok"], false);
    assert_eq!(diagnostics["diagnostics"][0]["file"], ".");
    let routes: serde_json::Value =
        serde_json::from_str(&get(addr, "/api/routes").await.unwrap().body).unwrap();
    assert_eq!(routes["held"][0]["file"], ".");

    // The directory appears: a config is loaded, and the server is ready.
    fs::create_dir(&dir).unwrap();
    fs::write(
        dir.join("qotm.yaml"),
        Mapping::named("qotm", "/qotm/").text(),
    )
    .unwrap();
    wait_until("ready", WAIT, async || {
        get(addr, "/readyz").await.is_ok_and(|r| r.status == 200)
    })
    .await;

    stop.send(()).unwrap();
    running.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_listener_there_is_no_admin_server() {
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join("qotm.yaml"),
        Mapping::named("qotm", "/qotm/").text(),
    )
    .unwrap();
    let (running, stop_tx) = serve_in_process(Settings::for_dir(t.path()), false).await;
    assert!(running.admin_addr.is_none());
    // The state is there all the same, for whoever embeds the control plane.
    assert!(running.admin.not_ready().is_none() || running.admin.last_reload().ok);
    stop_tx.send(()).unwrap();
    running.done.await.unwrap().unwrap();
}

/// The `/metrics` sample of `canary_xds_admin_refused_total` for `reason`.
async fn refused(addr: SocketAddr, reason: &str) -> Option<f64> {
    let body = get(addr, "/metrics").await.unwrap().body;
    metric(
        &body,
        &format!("canary_xds_admin_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// A directory with one Mapping.
fn one_mapping() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join("qotm.yaml"),
        Mapping::named("qotm", "/qotm/").text(),
    )
    .unwrap();
    t
}

/// DNS rebinding needs a name: a request for any name but localhost and the --admin-host ones
/// is refused, so that a web page cannot read the API through an operator's browser; addresses
/// (probes, scrapes) and requests without a Host (HTTP/1.0; never a browser) are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_other_host_names_are_refused() {
    let t = one_mapping();
    let mut settings = Settings::for_dir(t.path());
    settings.admin_limits.hosts = AllowedHosts::new(&["canary-xds.ops.svc"]).unwrap();
    let (running, addr, stop) = start_with_admin(settings).await;
    let port = addr.port();
    let with_host = |host: &str| {
        format!("GET /api/routes HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
    };
    assert_eq!(refused(addr, "host").await, Some(0.0));
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("[::1]:{port}"),
        format!("localhost:{port}"),
        format!("canary-xds.ops.svc:{port}"),
        "Canary-XDS.ops.svc.".to_string(),
    ] {
        let r = send(addr, &with_host(&host)).await.unwrap();
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
    let r = send(addr, "GET /api/routes HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "no Host: {}", r.body);

    let rebound = [
        with_host(&format!("evil.example:{port}")),
        with_host("127.0.0.1.nip.io"),
        with_host("canary-xds"),
        // An absolute URI names the host too.
        format!(
            "GET http://evil.example:{port}/api/routes HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
        ),
        // Two Hosts: each must be answered.
        "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n"
            .to_string(),
    ];
    for request in &rebound {
        let r = send(addr, request).await.unwrap();
        assert_eq!(r.status, 421, "{request}: {}", r.body);
        assert!(!r.body.contains("fleets"), "{}", r.body);
    }
    let r = send(addr, &with_host("evil.example")).await.unwrap();
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(
        r.body.starts_with(
            "misdirected request: the admin server answers only for an IP address, localhost or \
             a name given with --admin-host (CANARY_XDS_ADMIN_HOST), not for Host \"evil.example\""
        ),
        "{}",
        r.body
    );
    assert_eq!(
        refused(addr, "host").await,
        Some(rebound.len() as f64 + 1.0)
    );
    stop_in_process(running, stop).await;
}

/// A client that starts a request and never finishes its headers (slowloris) is cut off after
/// the header-read timeout, and so is one that sends nothing; neither keeps the stop waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_headers_are_cut_off() {
    let t = one_mapping();
    let mut settings = Settings::for_dir(t.path());
    settings.admin_limits.header_read_timeout = Duration::from_millis(300);
    let (running, addr, stop) = start_with_admin(settings).await;
    assert_eq!(refused(addr, "header_timeout").await, Some(0.0));

    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /api/routes HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Kept alive after an answer, then idle: closed as well, but not a refusal.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    for s in [&mut slow, &mut silent, &mut kept] {
        let cut = tokio::time::timeout(Duration::from_secs(5), read_reply(s))
            .await
            .expect("the connection is closed after the header-read timeout");
        // Closed, without an answer (or reset: the request was never read whole).
        assert!(cut.is_err() || cut.unwrap().status == 0);
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A request that is quick enough is answered as usual.
    assert_eq!(get(addr, "/healthz").await.unwrap().status, 200);
    assert_eq!(refused(addr, "header_timeout").await, Some(1.0));
    stop_in_process(running, stop).await;
}

/// Over --admin-max-connections, a connection is answered 503 and closed, and counted; once one
/// closes there is room again. Idle connections do not hold up the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused() {
    let t = one_mapping();
    let mut settings = Settings::for_dir(t.path());
    settings.admin_limits.max_connections = 3;
    let (running, addr, stop) = start_with_admin(settings).await;

    // Two idle connections, and a third kept alive after a request.
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = third.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    let busy = get(addr, "/healthz").await.unwrap();
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(
        busy.body,
        "too many admin connections open (--admin-max-connections)\n"
    );
    let busy = get(addr, "/metrics").await.unwrap();
    assert_eq!(busy.status, 503);

    // One closes: there is room for a request again.
    drop(first);
    wait_until("room for a connection", WAIT, async || {
        get(addr, "/healthz").await.is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(refused(addr, "connections").await.unwrap() >= 2.0);

    // The stop does not wait for idle connections (the drain would end it after 3 s).
    let stopping = Instant::now();
    stop_in_process(running, stop).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
}
