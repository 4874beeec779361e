//! The runtime layer (RTDS): weighted routes read their weights from runtime keys, so that a
//! weight change goes out in the layer alone. Everything here is a function of the files: the
//! keys' prefix of a route's structure, the route table's own weights (100% to the primary)
//! of its structure, and the layer of the current weights, so two processes on the same files
//! serve the same bytes whatever their histories.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::SnapshotBuilder;
use super::clusters::Used;
use crate::model::mapping::{Bp, FULL};
use crate::routes::Route;
use crate::xds::RUNTIME_LAYER;
use crate::xds::resource::{Kind, Layer, Resource, content_version, short_hex};

/// The default `--max-layer-routes`: at most this many routes have their weights in the runtime
/// layer, since Envoy rebuilds its runtime snapshot on every layer update. The routes whose
/// weights differ from their default go in it in table order; any beyond this many have their
/// weights in the route table instead (a pure rule of the files and flags, so every replica
/// makes the same).
pub const DEFAULT_MAX_LAYER_ROUTES: usize = 256;

/// The weights a runtime Envoy's route table gives a weighted route, a function of its
/// structure: 100% to its primary (`Route::primary`), so that an Envoy whose layer has not
/// arrived sends nothing to a canary. Envoy refuses weights that add up to 0; these never do.
pub(super) fn default_weights(route: &Route) -> Vec<Bp> {
    let primary = route.primary();
    (0..route.backends.len())
        .map(|i| if i == primary { FULL } else { 0 })
        .collect()
}

/// The prefix of a weighted route's runtime keys (`<prefix>.<cluster>`): a function of the
/// route's structure alone, so that the same files give the same keys everywhere.
pub(super) fn runtime_prefix(structure: [u8; 32]) -> String {
    format!("cx.{}", short_hex(&hash_weights(b"prefix", structure, &[])))
}

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

/// The id (content version) of a weighted route's runtime variant with `configured` weights,
/// and the prefix of its runtime keys.
pub(super) fn runtime_id(structure: [u8; 32], configured: &[Bp]) -> ([u8; 32], String) {
    (
        hash_weights(b"runtime", structure, configured),
        runtime_prefix(structure),
    )
}

impl SnapshotBuilder {
    /// The runtime variant of a weighted route with `configured` weights: its id (content
    /// version) and runtime key prefix, remembered with the route.
    pub(super) fn runtime_key(
        &mut self,
        route: &Arc<Route>,
        structure: [u8; 32],
        configured: &[Bp],
    ) -> ([u8; 32], String) {
        let cached = self.cached_route(route);
        let (_, id, prefix) = match &mut cached.runtime {
            Some(rt) if rt.0 == configured => rt,
            slot => {
                let (id, prefix) = runtime_id(structure, configured);
                slot.insert((configured.to_vec(), id, prefix))
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
