//! Envoy's configuration: the bootstrap `canary-xds bootstrap` prints, edits of it, and
//! `envoy --mode validate` on a bootstrap (no network, no listener bound).

use std::io::Write;
use std::process::Command;

/// Flags for `canary-xds bootstrap`.
pub struct Boot<'a> {
    pub xds_port: u16,
    pub admin_port: u16,
    pub node_id: &'a str,
    pub fleet: &'a str,
    pub delta: bool,
    pub static_listener: Option<u16>,
}

/// The bootstrap `canary-xds bootstrap` prints for these flags.
pub fn bootstrap(b: &Boot<'_>) -> String {
    bootstrap_with(b, &[])
}

/// The bootstrap for these flags plus `extra` ones (such as `--no-runtime`).
pub fn bootstrap_with(b: &Boot<'_>, extra: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canary-xds"));
    cmd.arg("bootstrap")
        .arg("--xds")
        .arg(format!("127.0.0.1:{}", b.xds_port))
        .arg("--admin")
        .arg(format!("127.0.0.1:{}", b.admin_port))
        .arg("--node-id")
        .arg(b.node_id)
        .arg("--fleet")
        .arg(b.fleet);
    if b.delta {
        cmd.arg("--delta");
    }
    if let Some(p) = b.static_listener {
        cmd.arg("--static-listener").arg(format!("127.0.0.1:{p}"));
    }
    cmd.args(extra);
    let out = cmd.output().expect("canary-xds bootstrap runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `boot` with a runtime layer that makes Envoy refuse any regex program over 5 instructions:
/// a route table valid for canary-xds (and for a default Envoy) is rejected by such an Envoy.
/// The layer goes first, under the bootstrap's own layers if it has some.
pub fn strict_regex(boot: &str) -> String {
    const LAYER: &str =
        "  - name: strict\n    static_layer:\n      re2.max_program_size.error_level: 5\n";
    match boot.find("layered_runtime:\n  layers:\n") {
        Some(i) => {
            let at = i + "layered_runtime:\n  layers:\n".len();
            format!("{}{LAYER}{}", &boot[..at], &boot[at..])
        }
        None => format!("{boot}\nlayered_runtime:\n  layers:\n{LAYER}"),
    }
}

/// `envoy --mode validate` on a binary bootstrap (no network, no listener bound): Envoy's
/// output, `Ok` when it accepts the bootstrap and `Err` when it refuses it. Envoy must be on
/// PATH: callers check first (`require_envoy!`, `have_envoy`).
pub fn envoy_validate_pb(
    bootstrap: &envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap,
) -> Result<String, String> {
    use prost::Message;
    // Envoy reads a bootstrap as binary proto when its name ends in .pb.
    envoy_validate(&bootstrap.encode_to_vec(), ".pb")
}

/// `envoy --mode validate` on a bootstrap's bytes, written to a file whose name ends in
/// `suffix` (`.pb`, `.yaml`: how Envoy decides to read it). As `envoy_validate_pb`.
pub fn envoy_validate(bytes: &[u8], suffix: &str) -> Result<String, String> {
    let mut file = tempfile::Builder::new()
        .prefix("canary-xds-")
        .suffix(suffix)
        .tempfile()
        .unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    let out = Command::new("envoy")
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(file.path())
        .output()
        .expect("envoy runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}
