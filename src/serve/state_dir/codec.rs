//! The encodings of `served.bin` and `bases.json`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, Resource as XdsResource,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::envoy::snapshot::FleetBases;
use crate::xds::resource::{Kind, Resource, ResourceSet};

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A 32-byte digest from 64 hex digits. Bytes, not characters: the file may hold anything.
fn unhex(s: &str) -> Result<[u8; 32], String> {
    let not_hex = || format!("{s:?} is not a 32-byte hex digest");
    if s.len() != 64 {
        return Err(not_hex());
    }
    let digit = |c: u8| char::from(c).to_digit(16).ok_or_else(not_hex);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = ((digit(pair[0])? << 4) | digit(pair[1])?) as u8;
    }
    Ok(out)
}

/// The bases file: JSON, `{fleet: {"structure": hex, "bases": {hex: [weights]}}}`.
pub(super) fn encode_bases(bases: &HashMap<String, FleetBases>) -> Vec<u8> {
    let v: BTreeMap<&str, serde_json::Value> = bases
        .iter()
        .map(|(fleet, b)| {
            let routes: BTreeMap<String, &Vec<u32>> =
                b.bases.iter().map(|(k, w)| (hex(k), w)).collect();
            (
                fleet.as_str(),
                serde_json::json!({"structure": hex(&b.structure), "bases": routes}),
            )
        })
        .collect();
    serde_json::to_vec(&v).expect("JSON serializes")
}

pub(super) fn decode_bases(bytes: &[u8]) -> Result<HashMap<String, FleetBases>, String> {
    let v: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (fleet, b) in v {
        let structure = unhex(b["structure"].as_str().ok_or("no structure")?)?;
        let mut bases = HashMap::new();
        for (k, w) in b["bases"].as_object().ok_or("no bases")? {
            let weights: Vec<u32> = serde_json::from_value(w.clone()).map_err(|e| e.to_string())?;
            bases.insert(unhex(k)?, weights);
        }
        out.insert(fleet, FleetBases { structure, bases });
    }
    Ok(out)
}

/// The sets file: per kind, one message with every resource (payload included, once), then one
/// message per set listing its members by name and version. A route configuration's clusters
/// travel in `aliases`.
pub(super) fn encode_sets(sets: &[(Kind, Vec<Arc<Resource>>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut all: BTreeMap<(Kind, &str, &str), &Arc<Resource>> = BTreeMap::new();
    for (kind, items) in sets {
        for r in items {
            all.insert((*kind, &r.name, &r.version), r);
        }
    }
    for kind in Kind::ALL {
        let resources: Vec<XdsResource> = all
            .iter()
            .filter(|((k, _, _), _)| *k == kind)
            .map(|(_, r)| XdsResource {
                name: r.name.clone(),
                version: r.version.clone(),
                aliases: r.refs.to_vec(),
                resource: Any::decode(r.any.as_ref()).ok(),
                ..Default::default()
            })
            .collect();
        let block = DeltaDiscoveryResponse {
            type_url: kind.type_url().to_string(),
            resources,
            ..Default::default()
        };
        block
            .encode_length_delimited(&mut out)
            .expect("a Vec grows");
    }
    for (kind, items) in sets {
        let set = DeltaDiscoveryResponse {
            type_url: kind.type_url().to_string(),
            system_version_info: "set".into(),
            resources: items
                .iter()
                .map(|r| XdsResource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        set.encode_length_delimited(&mut out).expect("a Vec grows");
    }
    out
}

pub(super) fn decode_sets(mut bytes: &[u8]) -> Result<Vec<(Kind, ResourceSet)>, String> {
    let mut resources: HashMap<(Kind, String, String), Arc<Resource>> = HashMap::new();
    let mut sets = Vec::new();
    while !bytes.is_empty() {
        let msg = DeltaDiscoveryResponse::decode_length_delimited(&mut bytes)
            .map_err(|e| e.to_string())?;
        let kind = Kind::from_type_url(&msg.type_url)
            .ok_or_else(|| format!("unknown type {}", msg.type_url))?;
        if msg.system_version_info == "set" {
            let mut items = BTreeMap::new();
            for r in msg.resources {
                let res = resources
                    .get(&(kind, r.name.clone(), r.version.clone()))
                    .ok_or_else(|| format!("set member {} is not stored", r.name))?;
                items.insert(r.name, Arc::clone(res));
            }
            sets.push((kind, ResourceSet::new(items)));
        } else {
            for r in msg.resources {
                let value = r.resource.map(|a| a.value).unwrap_or_default();
                let res = Resource::new(kind, r.name.clone(), r.version.clone(), value, r.aliases);
                resources.insert((kind, r.name, r.version), Arc::new(res));
            }
        }
    }
    Ok(sets)
}
