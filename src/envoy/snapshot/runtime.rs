//! The runtime layer (RTDS): weighted routes read their weights from runtime keys, defaulting
//! to base weights, so that a weight change goes out in the layer alone.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::SnapshotBuilder;
use super::clusters::Used;
use crate::model::mapping::Bp;
use crate::routes::Route;
use crate::xds::RUNTIME_LAYER;
use crate::xds::resource::{Kind, Layer, Resource, content_version, short_hex};

/// The base weights baked into a fleet's runtime route configuration, by route structure.
/// A weight change keeps the bases (the runtime layer carries the difference); any other
/// change to the route configuration rebases every route, emptying the layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetBases {
    /// The structure version the bases were taken at.
    pub structure: [u8; 32],
    pub bases: HashMap<[u8; 32], Vec<Bp>>,
}

/// A runtime layer larger than this many routes is folded into the route configuration
/// (rebased): Envoy rebuilds its runtime snapshot on every layer update, so it must stay small.
pub const MAX_LAYER_ROUTES: usize = 256;

/// A digest of a route structure and weights, `tag` telling apart what it names.
pub(super) fn hash_weights(tag: &[u8], structure: [u8; 32], weights: &[Bp]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(structure);
    for w in weights {
        h.update(w.to_be_bytes());
    }
    h.finalize().into()
}

/// The id (content version) of a weighted route's runtime variant on base weights `base`,
/// and the prefix of its runtime keys.
pub(super) fn runtime_id(structure: [u8; 32], base: &[Bp]) -> ([u8; 32], String) {
    let id = hash_weights(b"runtime", structure, base);
    let prefix = format!("cx.{}", short_hex(&id));
    (id, prefix)
}

impl SnapshotBuilder {
    /// The runtime variant of a weighted route on base weights `base`: its id (content
    /// version) and runtime key prefix, remembered with the route.
    pub(super) fn runtime_key(
        &mut self,
        route: &Arc<Route>,
        structure: [u8; 32],
        base: &[Bp],
    ) -> ([u8; 32], String) {
        let cached = self.cached_route(route);
        let (_, id, prefix) = match &mut cached.runtime {
            Some(rt) if rt.0 == base => rt,
            slot => {
                let (id, prefix) = runtime_id(structure, base);
                slot.insert((base.to_vec(), id, prefix))
            }
        };
        (*id, prefix.clone())
    }

    /// The runtime layer resource holding `layer`.
    pub(super) fn layer(&mut self, layer: &Layer) -> Arc<Resource> {
        let generation = self.generation;
        let version = content_version(Kind::Runtime, layer);
        match self.layers.get_mut(&version) {
            Some(c) => {
                c.generation = generation;
                Arc::clone(&c.value)
            }
            None => {
                let r = Arc::new(Resource::runtime_layer(RUNTIME_LAYER, layer.clone()));
                self.layers.insert(
                    version,
                    Used {
                        value: Arc::clone(&r),
                        generation,
                    },
                );
                r
            }
        }
    }
}
