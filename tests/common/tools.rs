//! Envoy, Chromium and kubectl on PATH, or not: the one policy for a tool a test needs. Under
//! CI (`CI` set and not empty) a missing tool fails the test; elsewhere the test is skipped,
//! with a note on stderr.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Whether this is CI (`CI` set and not empty), where every tool the tests use is installed.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Whether `program --version` runs and succeeds; asked once per program and test binary.
pub fn on_path(program: &str) -> bool {
    static SEEN: Mutex<BTreeMap<String, bool>> = Mutex::new(BTreeMap::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    *seen.entry(program.to_string()).or_insert_with(|| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The policy: `true` when `tool` was `found`. Otherwise a failure under CI, and elsewhere a
/// note and `false`, on which the caller returns (the test, or its part that needs the tool, is
/// skipped). `installer` says what installs the tool.
pub fn tool_available(tool: &str, found: bool, installer: &str) -> bool {
    if found {
        return true;
    }
    assert!(
        !under_ci(),
        "{tool} not on PATH ({installer} installs it); under CI this fails"
    );
    eprintln!("skipped: {tool} not on PATH ({installer} installs it); under CI this fails");
    false
}

/// Whether Envoy can be run here, by the policy above.
pub fn have_envoy() -> bool {
    tool_available("envoy", on_path("envoy"), "scripts/test.sh")
}

/// The oldest kustomize (built into kubectl) that renders `deploy/kubernetes`: Debian's
/// `kubernetes-client` (kubectl 1.20, kustomize 2) reads neither `patches` nor `labels`.
pub const KUSTOMIZE_MIN_MAJOR: u64 = 5;

/// Whether `kubectl kustomize` can render the manifests here (kubectl on PATH with kustomize
/// `KUSTOMIZE_MIN_MAJOR` or later), by the policy above; `.ci/run` installs a pinned kubectl.
pub fn have_kubectl() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        let Ok(out) = Command::new("kubectl")
            .args(["version", "--client", "-o", "json"])
            .stderr(Stdio::null())
            .output()
        else {
            return false;
        };
        let version: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let major = version["kustomizeVersion"].as_str().and_then(|v| {
            v.trim_start_matches('v')
                .split('.')
                .next()?
                .parse::<u64>()
                .ok()
        });
        match major {
            Some(m) if m >= KUSTOMIZE_MIN_MAJOR => true,
            _ => {
                eprintln!(
                    "the kubectl on PATH has no kustomize v{KUSTOMIZE_MIN_MAJOR} or later \
                     (kustomizeVersion: {})",
                    version["kustomizeVersion"]
                );
                false
            }
        }
    });
    tool_available(
        &format!("kubectl with kustomize v{KUSTOMIZE_MIN_MAJOR} or later"),
        found,
        ".ci/run",
    )
}

/// Returns from the calling test unless Envoy is on PATH (`have_envoy`: under CI a missing
/// Envoy fails the test instead).
macro_rules! require_envoy {
    () => {
        if !$crate::common::have_envoy() {
            return;
        }
    };
}

/// Headless Chromium (`Chromium::find`), or a return from the calling test as with
/// `require_envoy!`.
macro_rules! require_chromium {
    () => {
        match $crate::common::Chromium::find() {
            Some(chromium) => chromium,
            None => return,
        }
    };
}

pub(crate) use {require_chromium, require_envoy};
