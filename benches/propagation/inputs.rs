//! The bench's inputs: generated Mapping files for canary-xds, and the equivalent Envoy
//! resources, built from `canary-xds check --format json`, that the baseline Envoy reloads from
//! its own files (`path_config_source` with `watched_directory`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Routes per Mapping file (two Mappings each), so a change rewrites one small file among many.
pub const ROUTES_PER_FILE: usize = 5;

/// The canary weight every generated route in flight starts with; the others start at 0, their
/// default split (100% to the primary), which canary-xds's runtime layer does not carry.
pub const INITIAL_WEIGHT: u32 = 10;

/// The prefix of the route whose canary is flipped between 0 and 100. Longer than every
/// generated prefix, so it is first in the table and a probe request costs Envoy little.
pub const FLIP_PREFIX: &str = "/flip-route-tried-first-by-envoy/";

/// The prefix of the marker route: one backend, whose Mapping adds the response header
/// `x-marker: K` (K counts the changes). It lives in the changed route's file, so the rename
/// that changes the route also moves the marker, and a probe sees when the new table serves.
pub const MARKER_PREFIX: &str = "/marker-route-tried-first-by-envoy-of-all/";

/// `routes` routes, each a primary without weight and a canary with one (two Mappings, two
/// clusters), plus optionally the flip route, in files of `ROUTES_PER_FILE` routes.
pub struct Mappings {
    pub dir: PathBuf,
    pub routes: usize,
    pub primary: String,
    pub canary: String,
    /// The flip route's services (primary, canary), answering "primary" and "canary".
    pub flip: Option<(String, String)>,
    /// The routes `0..in_flight` start with their canary at `INITIAL_WEIGHT`, the rest at 0.
    in_flight: usize,
    weights: BTreeMap<usize, u32>,
    timeouts: BTreeMap<usize, u64>,
    flip_weight: u32,
    /// The marker's value, when the marker route is on.
    marker: Option<u64>,
}

impl Mappings {
    pub fn write(
        dir: &Path,
        routes: usize,
        primary: String,
        canary: String,
        flip: Option<(String, String)>,
        marker: bool,
        in_flight: usize,
    ) -> Mappings {
        std::fs::create_dir_all(dir).expect("the Mapping directory");
        let m = Mappings {
            dir: dir.to_path_buf(),
            routes,
            primary,
            canary,
            flip,
            in_flight,
            weights: BTreeMap::new(),
            timeouts: BTreeMap::new(),
            flip_weight: 0,
            marker: marker.then_some(0),
        };
        for f in 0..routes.div_ceil(ROUTES_PER_FILE) {
            std::fs::write(m.dir.join(file_name(f)), m.file_text(f)).expect("a Mapping file");
        }
        if m.flip.is_some() {
            std::fs::write(m.dir.join("flip.yaml"), m.flip_text()).expect("flip.yaml");
        }
        m
    }

    /// Sets route `route`'s canary weight; returns the file to write and its new text.
    pub fn set_weight(&mut self, route: usize, weight: u32) -> (PathBuf, String) {
        self.weights.insert(route, weight);
        let f = route / ROUTES_PER_FILE;
        (self.dir.join(file_name(f)), self.file_text(f))
    }

    /// Sets the marker's value; the next `set_weight` or `set_timeout` of route 0 writes it.
    pub fn set_marker(&mut self, value: u64) {
        self.marker = Some(value);
    }

    /// Sets route `route`'s `timeout_ms` (on both its Mappings, so it stays one Envoy route);
    /// returns the file to write and its new text.
    pub fn set_timeout(&mut self, route: usize, ms: u64) -> (PathBuf, String) {
        self.timeouts.insert(route, ms);
        let f = route / ROUTES_PER_FILE;
        (self.dir.join(file_name(f)), self.file_text(f))
    }

    /// Sets the flip canary's weight (0 or 100); returns the file to write and its new text.
    pub fn set_flip(&mut self, weight: u32) -> (PathBuf, String) {
        self.flip_weight = weight;
        (self.dir.join("flip.yaml"), self.flip_text())
    }

    /// The prefix of generated route `i`.
    pub fn prefix(i: usize) -> String {
        format!("/svc{i}/")
    }

    fn file_text(&self, f: usize) -> String {
        let mut docs = Vec::new();
        for i in f * ROUTES_PER_FILE..((f + 1) * ROUTES_PER_FILE).min(self.routes) {
            let prefix = Self::prefix(i);
            let initial = if i < self.in_flight {
                INITIAL_WEIGHT
            } else {
                0
            };
            let w = self.weights.get(&i).copied().unwrap_or(initial);
            let timeout = self
                .timeouts
                .get(&i)
                .map(|ms| format!("timeout_ms: {ms}\n"))
                .unwrap_or_default();
            let p = mapping(&format!("p{i}"), &prefix, &self.primary, None);
            let c = mapping(&format!("c{i}"), &prefix, &self.canary, Some(w));
            docs.push(p + &timeout);
            docs.push(c + &timeout);
        }
        if let (0, Some(k)) = (f, self.marker) {
            docs.push(
                mapping("marker", MARKER_PREFIX, &self.primary, None)
                    + &format!("add_response_headers:\n  x-marker: \"{k}\"\n"),
            );
        }
        docs.join("---\n")
    }

    fn flip_text(&self) -> String {
        let (primary, canary) = self.flip.as_ref().expect("a flip route");
        [
            mapping("flip-primary", FLIP_PREFIX, primary, None),
            mapping("flip-canary", FLIP_PREFIX, canary, Some(self.flip_weight)),
        ]
        .join("---\n")
    }
}

fn file_name(f: usize) -> String {
    format!("f{f:05}.yaml")
}

fn mapping(name: &str, prefix: &str, service: &str, weight: Option<u32>) -> String {
    let weight = weight.map(|w| format!("weight: {w}\n")).unwrap_or_default();
    format!(
        "apiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: {prefix}\nservice: {service}\n{weight}"
    )
}

// --- the baseline: Envoy's own files ---

/// The file format the baseline's resources are written in (Envoy picks the parser by the
/// extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }

    pub fn render(self, v: &Value) -> String {
        match self {
            Format::Yaml => yaml(v),
            Format::Json => serde_json::to_string(v).expect("JSON"),
        }
    }
}

const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// The baseline's files: `cds/`, `lds/` and `rds/`, each a directory Envoy watches for renames
/// (one directory per source, so renaming the route file reloads only the routes).
pub struct Baseline {
    pub root: PathBuf,
    pub format: Format,
    /// The RouteConfiguration, as Envoy's JSON mapping of the proto.
    route_config: Value,
    /// Route prefix to its index in the only virtual host and its Mappings' clusters.
    by_prefix: BTreeMap<String, (usize, BTreeMap<String, String>)>,
    version: u64,
}

impl Baseline {
    /// Builds the resources canary-xds would serve for `check` (the JSON of `check --format
    /// json`), with the listener on `listen_port`, and writes them under `root`.
    pub fn write(root: &Path, format: Format, check: &Value, listen_port: u16) -> Baseline {
        let routes = check["routes"].as_array().expect("check JSON has routes");
        let mut envoy_routes = Vec::new();
        let mut clusters = BTreeMap::new();
        let mut by_prefix = BTreeMap::new();
        for r in routes {
            assert_eq!(r["host"], "*", "the generated routes have no host");
            let prefix = r["prefix"].as_str().expect("a prefix").to_string();
            let backends = r["backends"].as_array().expect("backends");
            let mut weighted = Vec::new();
            let mut names = Vec::new();
            let mut cluster_of = BTreeMap::new();
            for b in backends {
                let cluster = b["cluster"].as_str().expect("a cluster").to_string();
                let service = b["service"].as_str().expect("a service");
                let (host, port) = service.rsplit_once(':').expect("host:port services");
                let port: u16 = port.parse().expect("a port");
                clusters.insert(cluster.clone(), cluster_json(&cluster, host, port));
                weighted.push(json!({"name": cluster, "weight": b["weight_bp"]}));
                names.push(mapping_id(b));
                cluster_of.insert(mapping_id(b), cluster.clone());
            }
            let mut action = json!({"prefix_rewrite": "/", "timeout": "3s"});
            if weighted.len() == 1 {
                action["cluster"] = weighted[0]["name"].clone();
            } else {
                action["weighted_clusters"] = json!({ "clusters": weighted });
            }
            by_prefix.insert(prefix.clone(), (envoy_routes.len(), cluster_of));
            let mut route = json!({
                "name": names.join(","),
                "match": {"prefix": prefix},
                "route": action,
            });
            if prefix == MARKER_PREFIX {
                // `check` does not show header fields; this one is ours (see `Mappings`).
                route["response_headers_to_add"] =
                    json!([{"header": {"key": "x-marker", "value": "0"}}]);
            }
            envoy_routes.push(route);
        }
        let route_config = json!({
            "@type": ROUTE_TYPE,
            "name": "canary-xds",
            "virtual_hosts": [{"name": "*", "domains": ["*"], "routes": envoy_routes}],
        });
        let b = Baseline {
            root: root.to_path_buf(),
            format,
            route_config,
            by_prefix,
            version: 0,
        };
        for d in ["cds", "lds", "rds"] {
            std::fs::create_dir_all(root.join(d)).expect("a baseline directory");
        }
        let clusters: Vec<Value> = clusters.into_values().collect();
        let listener = json!({
            "@type": LISTENER_TYPE,
            "name": format!("canary-xds-127.0.0.1:{listen_port}"),
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM_TYPE,
                    "stat_prefix": "canary_xds",
                    "codec_type": "AUTO",
                    "strip_any_host_port": true,
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": ROUTER_TYPE},
                    }],
                    "rds": {
                        "config_source": b.source("rds"),
                        "route_config_name": "canary-xds",
                    },
                },
            }]}],
        });
        let write = |kind: &str, resources: Vec<Value>| {
            let doc = json!({"version_info": "v0", "resources": resources});
            std::fs::write(b.path(kind), format.render(&doc)).expect("a baseline file");
        };
        let mut clusters = clusters;
        for c in &mut clusters {
            c["@type"] = json!(CLUSTER_TYPE);
        }
        write("cds", clusters);
        write("lds", vec![listener]);
        write("rds", vec![b.route_config.clone()]);
        b
    }

    /// The file of one source (`cds`, `lds`, `rds`).
    pub fn path(&self, kind: &str) -> PathBuf {
        self.root
            .join(kind)
            .join(format!("{kind}.{}", self.format.ext()))
    }

    /// A file config source that reloads when a file is renamed into its directory.
    fn source(&self, kind: &str) -> Value {
        json!({
            "path_config_source": {
                "path": self.path(kind).display().to_string(),
                "watched_directory": {"path": self.root.join(kind).display().to_string()},
            },
            "resource_api_version": "V3",
        })
    }

    /// The Envoy bootstrap: LDS and CDS from files, the same admin, overload and stats
    /// settings as `canary-xds bootstrap` prints.
    pub fn bootstrap(&self, admin_port: u16, stats_flush: Option<&str>) -> String {
        let mut doc = json!({
            "node": {"id": "baseline", "cluster": "default"},
            "dynamic_resources": {
                "cds_config": self.source("cds"),
                "lds_config": self.source("lds"),
            },
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "overload_manager": {"resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": 50000,
                },
            }]},
            "stats_config": {"histogram_bucket_settings": [{
                "match": {"safe_regex": {"regex": "^cluster\\..+\\.upstream_rq_time$"}},
                "buckets": [0.5, 1, 2, 3, 5, 7, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 125, 150,
                            200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000,
                            30000, 60000],
            }]},
        });
        if let Some(d) = stats_flush {
            doc["stats_flush_interval"] = json!(d);
        }
        self.format.render(&doc)
    }

    /// Sets the marker route's value; the next change writes it.
    pub fn set_marker(&mut self, value: u64) {
        let (i, _) = &self.by_prefix[MARKER_PREFIX];
        self.route_config["virtual_hosts"][0]["routes"][*i]["response_headers_to_add"][0]["header"]
            ["value"] = json!(value.to_string());
    }

    /// Sets the timeout of the route with `prefix` and returns the whole route file's new text
    /// and its version.
    pub fn set_timeout(&mut self, prefix: &str, ms: u64) -> (String, String) {
        let (i, _) = &self.by_prefix[prefix];
        let route = &mut self.route_config["virtual_hosts"][0]["routes"][*i];
        route["route"]["timeout"] = json!(format!("{}.{:03}s", ms / 1000, ms % 1000));
        self.next_version()
    }

    /// Sets the weights (Mapping name to hundredths of a percent) of the route with `prefix`
    /// and returns the whole route file's new text and its version.
    pub fn set_weights(&mut self, prefix: &str, weights: &[(&str, u32)]) -> (String, String) {
        let (i, cluster_of) = &self.by_prefix[prefix];
        let route = &mut self.route_config["virtual_hosts"][0]["routes"][*i];
        for (mapping, bp) in weights {
            let cluster = &cluster_of[*mapping];
            let w = route["route"]["weighted_clusters"]["clusters"]
                .as_array_mut()
                .expect("a weighted route")
                .iter_mut()
                .find(|c| c["name"] == cluster.as_str())
                .unwrap_or_else(|| panic!("cluster {cluster} on {prefix}"));
            w["weight"] = json!(bp);
        }
        self.next_version()
    }

    /// The route file's next text and its version.
    fn next_version(&mut self) -> (String, String) {
        self.version += 1;
        let version = format!("v{}", self.version);
        let doc = json!({"version_info": version, "resources": [self.route_config]});
        (self.format.render(&doc), version)
    }
}

/// The name canary-xds gives a Mapping in a route's name: `name`, or `name.namespace`.
fn mapping_id(b: &Value) -> String {
    let name = b["mapping"].as_str().expect("a mapping name");
    match b["namespace"].as_str() {
        Some("default") | None => name.to_string(),
        Some(ns) => format!("{name}.{ns}"),
    }
}

fn cluster_json(name: &str, host: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "3s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": host,
                "port_value": port,
            }}}}]}],
        },
    })
}

/// Block-style YAML, as a person writes it; strings are double-quoted (JSON escapes are valid
/// YAML), keys too when they need it.
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    yaml_into(v, 0, &mut out);
    out
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).expect("a string"),
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    }
}

fn yaml_key(k: &str) -> String {
    if k.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        k.to_string()
    } else {
        serde_json::to_string(k).expect("a key")
    }
}

/// Writes `v` (an object or array) at `indent` spaces.
fn yaml_into(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if is_scalar(v) {
                    let _ = writeln!(out, "{pad}{}: {}", yaml_key(k), yaml_scalar(v));
                } else {
                    let _ = writeln!(out, "{pad}{}:", yaml_key(k));
                    yaml_into(v, indent + 2, out);
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                if is_scalar(item) {
                    let _ = writeln!(out, "{pad}- {}", yaml_scalar(item));
                } else {
                    // The item's first line goes after the dash, the rest indented under it.
                    let mut inner = String::new();
                    yaml_into(item, indent + 2, &mut inner);
                    let inner = inner.trim_start_matches(' ');
                    let _ = write!(out, "{pad}- {inner}");
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", yaml_scalar(scalar));
        }
    }
}
