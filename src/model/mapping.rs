//! The Mapping as canary-xds understands it: typed, validated and defaulted.
//!
//! `parse` builds these from YAML; nothing after it re-checks a field. A Mapping's fields fall in
//! four parts: what selects its route (`RouteKey`), where its share of traffic goes (`Service`,
//! `ClusterSettings`), what its route does to a request (`RouteSettings`), and what is done to the
//! requests sent to this backend only (`BackendSettings`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::diagnostic::Location;

/// The fleet a Mapping belongs to when it names no `ambassador_id`.
pub const DEFAULT_FLEET: &str = "default";

/// A weight in hundredths of a percent ("basis points"): 10000 is 100%.
pub type Bp = u32;

/// 100% in hundredths of a percent.
pub const FULL: Bp = 10_000;

/// What makes a Mapping unique: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct MappingId {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for MappingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace == "default" {
            f.write_str(&self.name)
        } else {
            write!(f, "{}.{}", self.name, self.namespace)
        }
    }
}

/// Where a Mapping was read from. Ordered by path order: file, then document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub file: String,
    pub document: usize,
    pub line: u64,
    pub column: u64,
}

impl Origin {
    pub fn location(&self) -> Location {
        Location::new(self.file.clone(), self.line, self.column)
    }
}

/// A validated Mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    pub id: MappingId,
    pub origin: Origin,
    /// The fleets (`ambassador_id`s) this Mapping applies to; never empty.
    pub fleets: BTreeSet<String>,
    pub key: RouteKey,
    pub service: Service,
    /// The explicit weight, in hundredths of a percent; `None` when the Mapping has none.
    pub weight: Option<Bp>,
    /// A shadow Mapping mirrors traffic instead of taking a share.
    pub shadow: bool,
    pub cluster: ClusterSettings,
    pub route: RouteSettings,
    pub backend: BackendSettings,
    /// Where each field given in the YAML was (line and column in the Mapping's file), for
    /// diagnostics about it.
    pub fields: BTreeMap<&'static str, (u64, u64)>,
    /// The base of its cluster's name (see `cluster_base_name`), computed once.
    pub cluster_base: String,
    /// `key`'s hash (`RouteKey::hash_once`), computed once: grouping thousands of Mappings on
    /// every reload hashes this instead of the whole key.
    pub key_hash: u64,
}

impl Mapping {
    /// Whether `other` is this Mapping with at most what its route carries changed (its weight,
    /// route and backend settings): the same name, place, route key, upstream and cluster
    /// settings, so that it takes the very same place in every table and cluster.
    pub fn same_place(&self, other: &Mapping) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let Mapping {
            id,
            origin,
            fleets,
            key,
            service,
            weight: _,
            shadow,
            cluster,
            route: _,
            backend: _,
            fields,
            cluster_base,
            key_hash,
        } = self;
        *key_hash == other.key_hash
            && *shadow == other.shadow
            && *id == other.id
            && *origin == other.origin
            && *key == other.key
            && *service == other.service
            && *cluster == other.cluster
            && *fields == other.fields
            && *cluster_base == other.cluster_base
            && *fleets == other.fleets
    }

    /// The location of `field` if the YAML gave it, else of the Mapping itself.
    pub fn field_location(&self, field: &str) -> Location {
        match self.fields.get(field) {
            Some(&(line, column)) => Location::new(self.origin.file.clone(), line, column),
            None => self.origin.location(),
        }
    }
}

/// Everything that decides which requests a route matches. Mappings with equal keys form one
/// route and share its traffic. Maps and sets make header and query matchers order-free.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RouteKey {
    pub precedence: i32,
    /// Lower-case host, or a regex when `host_regex`; `None` matches any host.
    pub host: Option<String>,
    pub host_regex: bool,
    /// Upper-case HTTP method; `None` matches any method.
    pub method: Option<String>,
    pub prefix: String,
    pub prefix_regex: bool,
    pub case_sensitive: bool,
    pub headers: BTreeMap<String, HeaderMatch>,
    pub regex_headers: BTreeMap<String, String>,
    pub query_parameters: BTreeMap<String, HeaderMatch>,
}

impl RouteKey {
    /// A hash of the key, the same in every process (a fixed seed).
    pub fn hash_once(&self) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(0x63616e617279).hash_one(self)
    }

    /// How many matchers beyond the path this route has: more specific routes go first.
    pub fn matcher_count(&self) -> usize {
        usize::from(self.host.is_some())
            + usize::from(self.method.is_some())
            + self.headers.len()
            + self.regex_headers.len()
            + self.query_parameters.len()
    }

    /// A canonical text of the header and query matchers, used to order routes.
    pub fn matcher_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.headers {
            s.push_str(&format!("h:{k}={v};"));
        }
        for (k, v) in &self.regex_headers {
            s.push_str(&format!("r:{k}~{v};"));
        }
        for (k, v) in &self.query_parameters {
            s.push_str(&format!("q:{k}={v};"));
        }
        s
    }
}

/// How a header or query parameter must look for a route to match.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeaderMatch {
    /// The value must equal this string.
    Exact(String),
    /// The header or parameter must be present, with any value.
    Present,
}

impl fmt::Display for HeaderMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderMatch::Exact(v) => write!(f, "{v:?}"),
            HeaderMatch::Present => f.write_str("present"),
        }
    }
}

impl Serialize for HeaderMatch {
    /// `true` for presence, the string for an exact match: the shape of the YAML. Binary
    /// formats (the content version's postcard) name the variant instead, since without a
    /// type on the wire `true` and a one-byte string could read the same.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return match self {
                HeaderMatch::Exact(v) => s.serialize_newtype_variant("HeaderMatch", 0, "exact", v),
                HeaderMatch::Present => s.serialize_unit_variant("HeaderMatch", 1, "present"),
            };
        }
        match self {
            HeaderMatch::Exact(v) => s.serialize_str(v),
            HeaderMatch::Present => s.serialize_bool(true),
        }
    }
}

/// Plain HTTP or TLS to the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The upstream a Mapping sends its share to: `[scheme://]host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Service {
    pub scheme: Scheme,
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The text as written, for people.
    pub raw: String,
}

impl Service {
    pub fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

/// Settings of the Envoy cluster a Mapping's traffic goes through.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterSettings {
    pub connect_timeout_ms: u64,
    /// HTTP/2 to the upstream.
    pub grpc: bool,
    pub cluster_tag: Option<String>,
}

/// Settings that act on the whole route (Envoy's RouteAction). They may differ between the
/// Mappings of one route; each Mapping keeps its own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteSettings {
    /// The prefix rewrite; `None` leaves the path alone (`rewrite: ""`).
    pub rewrite: Option<String>,
    /// 0 disables the timeout, as in Envoy.
    pub timeout_ms: u64,
    pub idle_timeout_ms: Option<u64>,
    pub retry_policy: Option<RetryPolicy>,
    /// Upgrade types allowed (`websocket`...), lower-case.
    pub upgrades: BTreeSet<String>,
}

/// Ambassador's `retry_policy`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub retry_on: Option<String>,
    pub num_retries: Option<u32>,
    pub per_try_timeout_ms: Option<u64>,
}

/// Settings that act only on the requests sent to this Mapping's backend (Envoy's
/// ClusterWeight): Ambassador merges them across a route; canary-xds keeps them per backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendSettings {
    pub host_rewrite: Option<String>,
    pub add_request_headers: BTreeMap<String, AddHeader>,
    pub add_response_headers: BTreeMap<String, AddHeader>,
    pub remove_request_headers: BTreeSet<String>,
    pub remove_response_headers: BTreeSet<String>,
}

/// A header to add, and whether to append to an existing value or replace it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddHeader {
    pub value: String,
    pub append: bool,
}

/// Keeps letters, digits, `-` and `_`; everything else becomes `_` (dots would split Envoy's
/// stat names).
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A cluster's name before collisions: its upstream host, then `_<port>` when not the scheme's
/// default, `_https` for TLS, `_<cluster_tag>` when tagged.
pub fn cluster_base_name(service: &Service, tag: Option<&str>) -> String {
    let mut name = sanitize(&service.host);
    if service.port != service.scheme.default_port() {
        name.push_str(&format!("_{}", service.port));
    }
    if service.scheme == Scheme::Https {
        name.push_str("_https");
    }
    if let Some(tag) = tag {
        name.push('_');
        name.push_str(&sanitize(tag));
    }
    name
}
