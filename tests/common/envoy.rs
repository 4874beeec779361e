//! A real Envoy as a child process, and what its admin says: stats, config dump, the weights
//! it routes by. Tests that start Envoy hold `envoy_lock()`, so they run one at a time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::http::Client;
use super::wait::wait_for;

/// Serializes the tests that start Envoy (and listeners with fixed ports).
pub fn envoy_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A real Envoy as a child process.
pub struct Envoy {
    pub child: Child,
    pub admin_port: u16,
    pub log: PathBuf,
}

impl Envoy {
    /// Starts Envoy with `bootstrap_yaml` (written into `work`) and waits until its admin
    /// answers.
    pub fn start(work: &Path, bootstrap_yaml: &str, admin_port: u16) -> Envoy {
        let envoy = Envoy::spawn(work, bootstrap_yaml, admin_port);
        wait_for("Envoy's admin", Duration::from_secs(30), || {
            envoy.admin("/ready").ok()
        });
        envoy
    }

    /// Starts Envoy with `bootstrap_yaml` (written into `work`) without waiting for anything:
    /// for an Envoy that is not expected to get ready.
    pub fn spawn(work: &Path, bootstrap_yaml: &str, admin_port: u16) -> Envoy {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let config = work.join(format!("envoy-{admin_port}-{n}.yaml"));
        std::fs::write(&config, bootstrap_yaml).unwrap();
        let log = work.join(format!("envoy-{admin_port}-{n}.log"));
        let child = Command::new("envoy")
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "-l", "warn", "--drain-time-s", "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("envoy starts");
        Envoy {
            child,
            admin_port,
            log,
        }
    }

    /// GETs an admin path.
    pub fn admin(&self, path: &str) -> Result<String, String> {
        let mut c = Client::new(self.admin_port);
        let r = c.get(path, &[]);
        if r.status == 200 {
            Ok(r.body)
        } else {
            Err(format!("{}: {}", r.status, r.body))
        }
    }

    /// POSTs nothing to an admin path (e.g. `/reset_counters`).
    pub fn admin_post(&self, path: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
    }

    /// Every counter and gauge from `/stats`, by name (text readouts keep their quotes off).
    pub fn stats(&self) -> BTreeMap<String, String> {
        let text = self.admin("/stats").unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect()
    }

    pub fn stat(&self, name: &str) -> Option<String> {
        self.stats().remove(name)
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.stat(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// The route version Envoy applied.
    pub fn route_version(&self) -> Option<String> {
        self.stat("http.canary_xds.rds.canary-xds.version_text")
    }

    /// What Envoy routes by: its route version and its runtime layer version (weight changes
    /// reach an Envoy with canary-xds's runtime layer as runtime updates alone).
    pub fn config_version(&self) -> (Option<String>, Option<String>) {
        let stats = self.stats();
        (
            stats
                .get("http.canary_xds.rds.canary-xds.version_text")
                .cloned(),
            stats.get("runtime.version_text").cloned(),
        )
    }

    /// How many route and runtime updates Envoy applied.
    pub fn updates(&self) -> u64 {
        self.counter("http.canary_xds.rds.canary-xds.update_success")
            + self.counter("runtime.update_success")
    }

    /// `/config_dump` as JSON.
    pub fn config_dump(&self, resource: &str) -> serde_json::Value {
        let text = self
            .admin(&format!("/config_dump?resource={resource}"))
            .unwrap_or_else(|e| panic!("config_dump: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// The weighted clusters of the first route whose prefix is `prefix` (name -> weight), or
    /// one cluster with weight 10000.
    /// The effective weights: a weighted route with a `runtime_key_prefix` reads each
    /// cluster's weight from Envoy's runtime (canary-xds's RTDS layer) when a value is there.
    pub fn weights(&self, prefix: &str) -> BTreeMap<String, u64> {
        let dump = self.config_dump("dynamic_route_configs");
        let runtime: serde_json::Value = self
            .admin("/runtime")
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let from_runtime = |key: &str| -> Option<u64> {
            runtime["entries"][key]["final_value"]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .map(|v| v as u64)
        };
        let mut out = BTreeMap::new();
        let Some(configs) = dump["configs"].as_array() else {
            return out;
        };
        for c in configs {
            for vh in c["route_config"]["virtual_hosts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for r in vh["routes"].as_array().into_iter().flatten() {
                    if r["match"]["prefix"] != prefix || r["match"].get("headers").is_some() {
                        continue;
                    }
                    if let Some(ws) = r["route"]["weighted_clusters"]["clusters"].as_array() {
                        let key_prefix = r["route"]["weighted_clusters"]["runtime_key_prefix"]
                            .as_str()
                            .unwrap_or("");
                        for w in ws {
                            let name = w["name"].as_str().unwrap().to_string();
                            let configured = w["weight"].as_u64().unwrap_or(0);
                            let weight = if key_prefix.is_empty() {
                                configured
                            } else {
                                from_runtime(&format!("{key_prefix}.{name}")).unwrap_or(configured)
                            };
                            out.insert(name, weight);
                        }
                    } else if let Some(c) = r["route"]["cluster"].as_str() {
                        out.insert(c.to_string(), 10000);
                    }
                    return out;
                }
            }
        }
        out
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
