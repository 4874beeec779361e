//! The encoding of `served.bin`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, Resource as XdsResource,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::xds::resource::{Kind, Resource, ResourceSet};

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
