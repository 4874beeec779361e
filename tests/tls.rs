//! TLS and mTLS on the xDS port, with certificates made by the test: a real Envoy gets its
//! routes over mTLS (and keeps them through a SIGTERM), and checks canary-xds's name; clients
//! without a valid certificate are refused at the handshake; a certificate gets only the fleets
//! `--allow` gives it; plaintext beyond loopback needs `--insecure`; flags that would refuse
//! everyone do not start; and nothing secret reaches the log or the admin server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// The SPIFFE id of the edge Envoys in these tests.
const EDGE_ID: &str = "spiffe://corp/ns/prod/sa/edge";

/// A temporary directory with one Mapping, a CA, and the server's certificate.
struct Setup {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    pki: Pki,
    server: CertFiles,
}

impl Setup {
    fn new(upstream: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = mappings_dir(
            tmp.path(),
            &[("qotm.yaml", mapping("qotm", "/qotm/", upstream, ""))],
        );
        let pki = Pki::new(tmp.path(), "corp");
        let server = pki.issue("canary-xds", &["localhost", "127.0.0.1"]);
        Setup {
            tmp,
            dir,
            pki,
            server,
        }
    }

    /// `serve` flags for TLS with this server certificate, mTLS against the CA, and `allow`.
    fn mtls_flags(&self, allow: &[&str]) -> Vec<String> {
        let mut flags = vec![
            "--xds-tls-cert".to_string(),
            path(&self.server.0),
            "--xds-tls-key".into(),
            path(&self.server.1),
            "--xds-client-ca".into(),
            path(&self.pki.ca),
        ];
        for a in allow {
            flags.push("--allow".into());
            flags.push(a.to_string());
        }
        flags
    }

    fn control_plane(&self, flags: &[String]) -> ControlPlane {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        ControlPlane::start(&self.dir, free_port(), &flags)
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn envoy_gets_its_routes_over_mtls() {
    require_envoy!();
    let lock = envoy_lock();
    let main = Upstream::start("main");
    let s = Setup::new(&main.by_ip());
    let envoy_cert = s.pki.issue("envoy", &[EDGE_ID]);
    let listen = free_port();
    let flags = s.mtls_flags(&["default=spiffe://corp/ns/*/sa/edge"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cp = ControlPlane::start(&s.dir, listen, &flags);
    let admin = free_port();
    let boot = bootstrap_with(
        &Boot {
            xds_port: cp.xds_port,
            admin_port: admin,
            node_id: "edge-1",
            fleet: "default",
            delta: false,
            static_listener: None,
        },
        &[
            "--xds-tls-ca",
            &path(&s.pki.ca),
            "--client-cert",
            &path(&envoy_cert.0),
            "--client-key",
            &path(&envoy_cert.1),
        ],
    );
    let envoy = Envoy::start(s.tmp.path(), &boot, admin);
    wait_for("the listener Envoy got over mTLS", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", listen)).ok()
    });
    let counts = tally(listen, "/qotm/", &[], 50);
    assert_eq!(counts.get("main"), Some(&50), "{counts:?}");
    // Over TLS indeed: Envoy counts a handshake on the xDS cluster.
    assert!(envoy.counter("cluster.xds_cluster.ssl.handshake") >= 1);
    let log = cp.log_text();
    assert!(log.contains("xDS over TLS"), "{log}");
    assert!(!log.contains("refused an xDS stream"), "{log}");
    // SIGTERM over mTLS too: a clean exit within the drain bound, and Envoy keeps routing.
    let stopping = std::time::Instant::now();
    assert!(cp.sigterm().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    wait_for("Envoy to notice", WAIT, || {
        (envoy.stat("control_plane.connected_state").as_deref() == Some("0")).then_some(())
    });
    let counts = tally(listen, "/qotm/", &[], 20);
    assert_eq!(counts.get("main"), Some(&20), "{counts:?}");
    drop(lock);
}

/// Envoy checks canary-xds's name as the bootstrap says: `--xds-sni localhost` (a DNS SAN of the
/// server's certificate, sent as SNI) connects; a name the certificate does not carry fails the
/// handshake on Envoy's side.
#[test]
fn envoy_checks_the_name_of_canary_xds() {
    require_envoy!();
    let lock = envoy_lock();
    let s = Setup::new("127.0.0.1:9");
    let envoy_cert = s.pki.issue("envoy", &[EDGE_ID]);
    let cp = s.control_plane(&s.mtls_flags(&["default=spiffe://corp/ns/*/sa/edge"]));
    let start = |sni: &str| -> Envoy {
        let admin = free_port();
        let boot = bootstrap_with(
            &Boot {
                xds_port: cp.xds_port,
                admin_port: admin,
                node_id: "edge-1",
                fleet: "default",
                delta: true,
                static_listener: None,
            },
            &[
                "--xds-tls-ca",
                &path(&s.pki.ca),
                "--xds-sni",
                sni,
                "--client-cert",
                &path(&envoy_cert.0),
                "--client-key",
                &path(&envoy_cert.1),
            ],
        );
        // Not `start`: an Envoy that cannot reach canary-xds never gets ready.
        Envoy::spawn(s.tmp.path(), &boot, admin)
    };
    let good = start("localhost");
    wait_for("Envoy to connect", WAIT, || {
        (good.stat("control_plane.connected_state").as_deref() == Some("1")).then_some(())
    });
    drop(good);
    let wrong = start("not-canary-xds.corp");
    wait_for("Envoy to refuse the name", WAIT, || {
        (wrong.counter("cluster.xds_cluster.ssl.fail_verify_san") >= 1).then_some(())
    });
    // Not one handshake completed: Envoy hung up before sending anything.
    assert_eq!(wrong.counter("cluster.xds_cluster.ssl.handshake"), 0);
    assert_eq!(
        wrong.counter("cluster.xds_cluster.upstream_cx_tx_bytes_total"),
        0
    );
    drop(lock);
}

#[test]
fn clients_without_a_valid_certificate_are_refused() {
    let s = Setup::new("127.0.0.1:9");
    let cp = s.control_plane(&s.mtls_flags(&["default=spiffe://corp/ns/*/sa/edge"]));
    let good = s.pki.issue("edge", &[EDGE_ID]);
    // The same identity, signed by a CA canary-xds does not trust.
    let other = Pki::new(s.tmp.path(), "other");
    let forged = other.issue("forged", &[EDGE_ID]);
    let rt = runtime();
    let ask = |tls: ClientTls<'_>| rt.block_on(first_cds(cp.xds_port, tls, "edge-1", "default"));

    let plaintext = ask(ClientTls::Plaintext);
    let no_cert = ask(ClientTls::Tls {
        ca: &s.pki.ca,
        cert: None,
    });
    let wrong_ca = ask(ClientTls::Tls {
        ca: &s.pki.ca,
        cert: Some(&forged),
    });
    for (what, r) in [
        ("plaintext", &plaintext),
        ("no certificate", &no_cert),
        ("another CA's certificate", &wrong_ca),
    ] {
        // Refused by the transport (the handshake, or the connection closed right after it),
        // before any request reached the ADS service.
        let status = r.as_ref().expect_err(what);
        assert!(
            matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
            ),
            "{what}: {status:?}"
        );
    }
    // The control: a certificate from the CA, allowed for the fleet, gets its clusters.
    let ok = ask(ClientTls::Tls {
        ca: &s.pki.ca,
        cert: Some(&good),
    })
    .expect("a valid certificate is served");
    assert_eq!(ok.resources.len(), 1, "{ok:?}");
    // No stream was opened for the refused ones.
    let log = cp.log_text();
    assert!(!log.contains("refused an xDS stream"), "{log}");
}

#[test]
fn a_certificate_gets_only_the_fleets_it_is_allowed() {
    let s = Setup::new("127.0.0.1:9");
    let cp = s.control_plane(&s.mtls_flags(&[
        "edge=spiffe://corp/ns/*/sa/edge",
        "internal=*.internal.corp",
    ]));
    let edge = s.pki.issue("edge", &[EDGE_ID]);
    let internal = s.pki.issue("internal", &["api-1.internal.corp"]);
    let rt = runtime();
    let ask = |cert: &CertFiles, id: &str, fleet: &str| {
        rt.block_on(first_cds(
            cp.xds_port,
            ClientTls::Tls {
                ca: &s.pki.ca,
                cert: Some(cert),
            },
            id,
            fleet,
        ))
    };
    assert!(ask(&edge, "edge-1", "edge").is_ok());
    assert!(ask(&internal, "api-1", "internal").is_ok());
    // The edge certificate with an internal Envoy's node id and fleet: a stolen node id alone
    // gets nothing.
    let stolen = ask(&edge, "api-1", "internal").expect_err("refused");
    assert_eq!(stolen.code(), tonic::Code::PermissionDenied, "{stolen:?}");
    // A fleet no --allow names is nobody's.
    let unnamed = ask(&internal, "api-1", "default").expect_err("refused");
    assert_eq!(unnamed.code(), tonic::Code::PermissionDenied, "{unnamed:?}");

    let log = wait_for("the refusals in the log", WAIT, || {
        let log = cp.log_text();
        (log.matches("refused an xDS stream").count() == 2).then_some(log)
    });
    // Who, which fleet, which names and why; never key material.
    let line = log
        .lines()
        .find(|l| l.contains("refused an xDS stream") && l.contains("fleet=\"internal\""))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("node=\"api-1\""), "{line}");
    assert!(line.contains(&format!("URI:{EDGE_ID}")), "{line}");
    assert!(line.contains("spiffe://corp/ns/*/sa/edge") || line.contains("*.internal.corp"));
    assert!(log.contains("no --allow rule names fleet"), "{log}");
    assert_no_key_material(&log, &[&s.server.1, &edge.1, &internal.1]);
}

/// Fails if `log` holds any line of the base64 body of the key files.
fn assert_no_key_material(log: &str, keys: &[&Path]) {
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    for key in keys {
        let pem = std::fs::read_to_string(key).unwrap();
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            assert!(
                !log.contains(line),
                "key material of {} in the log",
                key.display()
            );
        }
    }
}

/// `serve` on `xds` with `extra` flags and environment, without the helpers' loopback default:
/// its output once it exits or says it serves.
fn serve_on(
    dir: &Path,
    xds: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, PathBuf) {
    let log = dir.with_extension(format!("serve-{}.log", free_port()));
    let child = canary_xds()
        .args(["serve", "--dir"])
        .arg(dir)
        .args(["--xds", xds, "--listen", "127.0.0.1:1"])
        .args(extra)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

#[test]
fn plaintext_beyond_loopback_needs_insecure() {
    let s = Setup::new("127.0.0.1:9");
    // Refused: the process exits at once with the reason.
    let (mut child, log) = serve_on(&s.dir, "0.0.0.0:0", &["--admin", "off"], &[]);
    let status = wait_for("serve to refuse", WAIT, || child.try_wait().unwrap());
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("refusing to serve xDS in plaintext") && text.contains("--insecure"),
        "{text}"
    );

    // Accepted with --insecure (as a flag, or from the environment), with a warning; the admin
    // server beyond loopback warns too.
    for (flags, env) in [
        (&["--insecure", "--admin", "0.0.0.0:0"][..], &[][..]),
        (
            &["--admin", "0.0.0.0:0"][..],
            &[("CANARY_XDS_INSECURE", "true")][..],
        ),
    ] {
        let (mut child, log) = serve_on(&s.dir, "0.0.0.0:0", flags, env);
        let text = wait_for("serve to start", WAIT, || {
            assert!(child.try_wait().unwrap().is_none(), "serve exited");
            let text = std::fs::read_to_string(&log).unwrap();
            text.contains("serving").then_some(text)
        });
        assert!(
            text.contains("serving xDS in plaintext on a non-loopback address (--insecure)"),
            "{text}"
        );
        assert!(
            text.contains("the admin server listens beyond loopback"),
            "{text}"
        );
        assert!(sigterm(&mut child).success());
    }

    // TLS on any address is fine, without --insecure; loopback plaintext needs nothing.
    let tls = [
        "--xds-tls-cert",
        &path(&s.server.0),
        "--xds-tls-key",
        &path(&s.server.1),
        "--admin",
        "off",
    ];
    let (mut child, log) = serve_on(&s.dir, "0.0.0.0:0", &tls, &[]);
    let (mut plain, plain_log) = serve_on(&s.dir, "127.0.0.1:0", &["--admin", "off"], &[]);
    for (child, log) in [(&mut child, &log), (&mut plain, &plain_log)] {
        let text = wait_for("serve to start", WAIT, || {
            assert!(child.try_wait().unwrap().is_none(), "serve exited");
            let text = std::fs::read_to_string(log).unwrap();
            text.contains("serving").then_some(text)
        });
        assert!(!text.contains("--insecure"), "{text}");
        assert!(sigterm(child).success());
    }
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("without client certificates")
    );
}

#[test]
fn mtls_flags_that_would_refuse_everyone_are_refused_at_start() {
    let s = Setup::new("127.0.0.1:9");
    // Client certificates and no --allow: every Envoy would be refused.
    let flags = s.mtls_flags(&[]);
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.extend(["--admin", "off"]);
    let (mut child, log) = serve_on(&s.dir, "127.0.0.1:0", &flags, &[]);
    let status = wait_for("serve to refuse", WAIT, || child.try_wait().unwrap());
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("without --allow would refuse every Envoy"),
        "{text}"
    );
    // --allow without client certificates: clap says what is missing.
    let (mut child, log) = serve_on(
        &s.dir,
        "127.0.0.1:0",
        &["--allow", "edge=*.edge.corp", "--admin", "off"],
        &[],
    );
    let status = wait_for("serve to refuse", WAIT, || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(2));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("--xds-client-ca"), "{text}");
}

#[test]
fn nothing_secret_reaches_the_log_or_the_admin_server() {
    let s = Setup::new("127.0.0.1:9");
    // An Envoy admin URL with credentials and a token, where nobody listens: reading it fails,
    // and the failure is shown.
    let dead = free_port();
    let url = format!("http://ops:hunter2@127.0.0.1:{dead}/?token=s3cr3t");
    let mut flags = s.mtls_flags(&["default=spiffe://corp/ns/*/sa/edge"]);
    flags.extend(["--envoy-admin".to_string(), url]);
    let cp = s.control_plane(&flags);
    wait_admin_ready(cp.admin_port);
    let rt = runtime();
    let edge = s.pki.issue("edge", &[EDGE_ID]);
    let refused = rt.block_on(first_cds(
        cp.xds_port,
        ClientTls::Tls {
            ca: &s.pki.ca,
            cert: Some(&edge),
        },
        "edge-1",
        "elsewhere",
    ));
    assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
    // The live-traffic section has tried the Envoy admin once it shows a problem, with the URL.
    let page = wait_for("the live section to show the failure", WAIT, || {
        let page = http_get(cp.admin_port, "/").body;
        (page.contains("class=\"problem\"") && page.contains(&format!("127.0.0.1:{dead}/stats")))
            .then_some(page)
    });
    let mut shown = page;
    for path in ["/api/routes", "/api/diagnostics", "/api/envoys", "/metrics"] {
        shown.push_str(&http_get(cp.admin_port, path).body);
    }
    let log = cp.log_text();
    for text in [&log, &shown] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    assert_no_key_material(&log, &[&s.server.1, &edge.1]);
    assert_no_key_material(&shown, &[&s.server.1, &edge.1]);
}
