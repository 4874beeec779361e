//! xDS resources as the server holds them: encoded once, shared by every stream.
//!
//! A `Resource` carries its `Any` already encoded, plus the two wire forms a response needs (an
//! entry of a state-of-the-world `DiscoveryResponse` and of a `DeltaDiscoveryResponse`), so that
//! sending a snapshot to a thousand Envoys copies bytes and never encodes a proto again.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use sha2::{Digest, Sha256};

/// The resource types canary-xds serves, in the order Envoy must receive them
/// (make-before-break: clusters before the listeners and routes that use them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Cluster,
    /// The runtime layer (RTDS) that carries weight changes without resending routes.
    Runtime,
    Listener,
    Route,
}

impl Kind {
    /// Every kind, in push order.
    pub const ALL: [Kind; 4] = [Kind::Cluster, Kind::Runtime, Kind::Listener, Kind::Route];

    /// This kind's bit in a set of kinds.
    pub fn bit(self) -> u8 {
        1 << self as u8
    }

    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Kind::Runtime => "type.googleapis.com/envoy.service.runtime.v3.Runtime",
            Kind::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Kind::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    pub fn from_type_url(url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == url)
    }

    /// Short name for logs and metrics: `cds`, `rtds`, `lds`, `rds`.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Cluster => "cds",
            Kind::Runtime => "rtds",
            Kind::Listener => "lds",
            Kind::Route => "rds",
        }
    }

    /// Envoy subscribes to every resource of these kinds (wildcard) rather than by name.
    pub fn is_wildcard(self) -> bool {
        matches!(self, Kind::Cluster | Kind::Listener)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// One named resource, encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: Kind,
    pub name: String,
    /// The content version: a hash of our own model of the resource (stable across restarts).
    pub version: String,
    /// The clusters this resource sends traffic to (route configurations only), shared by
    /// every configuration built on the same cluster map.
    pub refs: Arc<[String]>,
    /// The runtime key prefixes its weighted routes read (route configurations for Envoys
    /// with the RTDS layer only), sorted.
    pub prefixes: Vec<String>,
    /// The layer's values by key (runtime layers only).
    pub layer: Option<Arc<Layer>>,
    /// The `Any` holding the resource, encoded: the one copy of its bytes.
    pub any: Bytes,
    /// What goes before `any` to make an entry of `DiscoveryResponse.resources` (field 2).
    sotw_prefix: Bytes,
    /// What goes before `any` to make an entry of `DeltaDiscoveryResponse.resources`: the
    /// `Resource` message's own fields, then its `resource` field's key and length.
    delta_prefix: Bytes,
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.kind, self.name, self.version)
    }
}

impl Resource {
    /// Wraps an encoded proto message (`value`) of `kind` with its name and version.
    pub fn new(
        kind: Kind,
        name: String,
        version: String,
        value: Vec<u8>,
        refs: impl Into<Arc<[String]>>,
    ) -> Self {
        use prost::encoding::{WireType, encode_key, encode_varint, string};
        let any = Any {
            type_url: kind.type_url().to_string(),
            value,
        }
        .encode_to_vec();
        let mut sotw_prefix = Vec::with_capacity(8);
        encode_key(2, WireType::LengthDelimited, &mut sotw_prefix);
        encode_varint(any.len() as u64, &mut sotw_prefix);
        // `Resource { version: 1, resource: 2, name: 3 }` in tag order, with `resource` last
        // on the wire so that the shared `Any` bytes can follow the prefix as they are.
        let mut fields = Vec::with_capacity(name.len() + version.len() + 16);
        string::encode(1, &version, &mut fields);
        string::encode(3, &name, &mut fields);
        encode_key(2, WireType::LengthDelimited, &mut fields);
        encode_varint(any.len() as u64, &mut fields);
        let mut delta_prefix = Vec::with_capacity(fields.len() + 8);
        encode_key(2, WireType::LengthDelimited, &mut delta_prefix);
        encode_varint((fields.len() + any.len()) as u64, &mut delta_prefix);
        delta_prefix.extend_from_slice(&fields);
        Resource {
            kind,
            name,
            version,
            refs: refs.into(),
            prefixes: Vec::new(),
            layer: None,
            any: Bytes::from(any),
            sotw_prefix: Bytes::from(sotw_prefix),
            delta_prefix: Bytes::from(delta_prefix),
        }
    }

    /// This resource as an entry of `DiscoveryResponse.resources` (field 2): shared bytes.
    pub fn sotw_entry(&self) -> [Bytes; 2] {
        [self.sotw_prefix.clone(), self.any.clone()]
    }

    /// This resource as an entry of `DeltaDiscoveryResponse.resources` (field 2).
    pub fn delta_entry(&self) -> [Bytes; 2] {
        [self.delta_prefix.clone(), self.any.clone()]
    }
}

/// A runtime layer: weights by runtime key (`<prefix>.<cluster>`), in hundredths.
pub type Layer = BTreeMap<String, u32>;

impl Resource {
    /// A route configuration whose weighted routes read runtime keys under `prefixes`.
    pub fn with_prefixes(mut self, mut prefixes: Vec<String>) -> Self {
        prefixes.sort_unstable();
        prefixes.dedup();
        self.prefixes = prefixes;
        self
    }

    /// The runtime layer `name` holding `layer`, encoded as Envoy's `Runtime` resource. Its
    /// version is its content's.
    pub fn runtime_layer(name: &str, layer: Layer) -> Self {
        use envoy_types::pb::envoy::service::runtime::v3::Runtime;
        use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind as ValueKind};
        let version = content_version(Kind::Runtime, &layer);
        let runtime = Runtime {
            name: name.to_string(),
            layer: Some(Struct {
                fields: layer
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Value {
                                kind: Some(ValueKind::NumberValue(f64::from(*v))),
                            },
                        )
                    })
                    .collect(),
            }),
        };
        // `Struct.fields` is a map, which prost encodes in hash order: the bytes may differ
        // between two encodings of one layer, but the version comes from the layer itself.
        let mut r = Resource::new(
            Kind::Runtime,
            name.to_string(),
            version,
            runtime.encode_to_vec(),
            Vec::new(),
        );
        r.layer = Some(Arc::new(layer));
        r
    }
}

/// Resources by name, shared: a snapshot's set, a stream's in-flight and ACKed sets and the
/// archive all point at one map.
pub type Items = Arc<BTreeMap<String, Arc<Resource>>>;

/// A set of resources of one kind, with a version that names exactly this content.
#[derive(Clone, Debug)]
pub struct ResourceSet {
    pub version: String,
    pub items: Items,
    /// Every entry, concatenated, built the first time a stream sends the whole set and then
    /// shared: a response is a small header and one buffer, however many resources.
    bodies: Arc<Bodies>,
}

#[derive(Debug, Default)]
struct Bodies {
    sotw: std::sync::OnceLock<Bytes>,
    delta: std::sync::OnceLock<Bytes>,
}

impl PartialEq for ResourceSet {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.items == other.items
    }
}

impl Eq for ResourceSet {}

impl Default for ResourceSet {
    fn default() -> Self {
        ResourceSet::new(BTreeMap::new())
    }
}

impl ResourceSet {
    pub fn new(items: BTreeMap<String, Arc<Resource>>) -> Self {
        Self::shared(Arc::new(items))
    }

    /// The set of `items`, shared as they are.
    pub fn shared(items: Items) -> Self {
        let mut h = Sha256::new();
        for (name, r) in items.iter() {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(r.version.as_bytes());
            h.update([0]);
        }
        ResourceSet {
            version: short_hex(&h.finalize()),
            items,
            bodies: Arc::default(),
        }
    }

    /// Every resource as entries of `DiscoveryResponse.resources`, in one shared buffer.
    pub fn sotw_body(&self) -> Bytes {
        self.bodies
            .sotw
            .get_or_init(|| concat(self.items.values().flat_map(|r| r.sotw_entry())))
            .clone()
    }

    /// Every resource as entries of `DeltaDiscoveryResponse.resources`, in one shared buffer.
    pub fn delta_body(&self) -> Bytes {
        self.bodies
            .delta
            .get_or_init(|| concat(self.items.values().flat_map(|r| r.delta_entry())))
            .clone()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn concat(chunks: impl Iterator<Item = Bytes>) -> Bytes {
    let chunks: Vec<Bytes> = chunks.collect();
    let mut out = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
    for c in &chunks {
        out.extend_from_slice(c);
    }
    Bytes::from(out)
}

/// The first 16 hex digits of a digest: 64 bits name a version well enough.
pub fn short_hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(16);
    for b in digest.iter().take(8) {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 15)]));
    }
    hex
}

/// A content version for `model`, salted with what decides how a model becomes Envoy config
/// (our release), so that the same files give the same versions across restarts and replicas,
/// and an upgrade that changes the translation also changes the versions.
pub fn content_version(kind: Kind, model: &impl serde::Serialize) -> String {
    short_hex(&content_digest(kind, model))
}

/// The SHA-256 behind `content_version`.
pub fn content_digest(kind: Kind, model: &impl serde::Serialize) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(concat!("canary-xds/", env!("CARGO_PKG_VERSION"), "/").as_bytes());
    h.update(kind.short().as_bytes());
    h.update([0]);
    // postcard writes struct fields in declaration order, lengths before contents and our maps
    // are BTreeMaps, so the bytes are canonical and tell any two models apart (they decode back
    // to the model). They go to the hash as they are written, never held whole: a quarter of
    // the bytes serde_json would write, field names and escapes left out.
    postcard::serialize_with_flavor(model, Hashing(h))
        .expect("models serialize")
        .finalize()
        .into()
}

/// A postcard output that feeds a hash.
struct Hashing(Sha256);

impl postcard::ser_flavors::Flavor for Hashing {
    type Output = Sha256;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update([data]);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Sha256> {
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse,
    };

    fn res(name: &str, version: &str) -> Arc<Resource> {
        Arc::new(Resource::new(
            Kind::Cluster,
            name.into(),
            version.into(),
            vec![10, 1, b'x'],
            vec![],
        ))
    }

    #[test]
    fn pre_encoded_entries_decode_as_responses() {
        let r = res("a", "v1");
        let mut body = DiscoveryResponse {
            version_info: "7".into(),
            type_url: Kind::Cluster.type_url().into(),
            nonce: "1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        for chunk in r.sotw_entry() {
            body.extend_from_slice(&chunk);
        }
        let decoded = DiscoveryResponse::decode(body.as_slice()).unwrap();
        assert_eq!(decoded.resources.len(), 1);
        assert_eq!(decoded.resources[0].value, vec![10, 1, b'x']);
        assert_eq!(decoded.version_info, "7");

        let mut body = DeltaDiscoveryResponse {
            nonce: "2".into(),
            ..Default::default()
        }
        .encode_to_vec();
        for chunk in r.delta_entry() {
            body.extend_from_slice(&chunk);
        }
        let decoded = DeltaDiscoveryResponse::decode(body.as_slice()).unwrap();
        assert_eq!(decoded.resources[0].name, "a");
        assert_eq!(decoded.resources[0].version, "v1");
    }

    #[test]
    fn set_versions_name_the_content() {
        let a = ResourceSet::new(BTreeMap::from([("a".into(), res("a", "1"))]));
        let b = ResourceSet::new(BTreeMap::from([("a".into(), res("a", "1"))]));
        let c = ResourceSet::new(BTreeMap::from([("a".into(), res("a", "2"))]));
        assert_eq!(a.version, b.version);
        assert_ne!(a.version, c.version);
        assert_eq!(a.version.len(), 16);
    }

    #[test]
    fn short_hex_is_the_first_eight_bytes_in_lowercase_hex() {
        let digest: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37)).collect();
        let want: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(short_hex(&digest), want);
        assert_eq!(short_hex(&[0x0f, 0xa0]), "0fa0");
    }

    #[test]
    fn header_matches_of_different_kinds_never_share_a_version() {
        use crate::model::mapping::HeaderMatch;
        // Untagged, `true` and the string "\u{1}" would encode as the same bytes here.
        let present = (HeaderMatch::Present, "\0");
        let exact = (HeaderMatch::Exact("\u{1}".into()), "");
        assert_ne!(
            content_digest(Kind::Route, &present),
            content_digest(Kind::Route, &exact)
        );
    }

    #[test]
    fn content_versions_are_stable() {
        // A fixed input must give a fixed version across runs and machines (no random hasher).
        let v = content_version(Kind::Route, &("qotm", 9000u32));
        assert_eq!(v, content_version(Kind::Route, &("qotm", 9000u32)));
        assert_ne!(v, content_version(Kind::Cluster, &("qotm", 9000u32)));
    }
}
