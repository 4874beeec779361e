//! The runtime layer (RTDS) for one Envoy: which weight keys it may hold, and when a new layer
//! is safe to send given the route table it holds.

use std::collections::BTreeSet;

use super::{StreamState, index};
use crate::xds::resource::{Kind, Layer};

/// The node metadata field by which a bootstrap declares canary-xds's runtime layer.
pub const RUNTIME_METADATA: &str = "canary_xds_rtds";

/// Runtime key prefixes, sorted and without repeats.
pub(super) struct Prefixes<'a>(pub(super) &'a [&'a str]);

impl Prefixes<'_> {
    fn contains(&self, p: &str) -> bool {
        self.0.binary_search(&p).is_ok()
    }
}

/// The prefix of a runtime key (`cx.<id>.<cluster>` -> `cx.<id>`).
fn key_prefix(key: &str) -> &str {
    match key.match_indices('.').nth(1) {
        Some((i, _)) => &key[..i],
        None => key,
    }
}

impl StreamState {
    /// The runtime layer Envoy should hold: the snapshot's values for the prefixes of the
    /// routes being sent, and the held values for prefixes that only the routes Envoy holds
    /// (or is being sent) still read.
    pub(super) fn desired_layer(&self, target: &Layer, target_prefixes: &Prefixes<'_>) -> Layer {
        let mut layer = target.clone();
        let held = self.held_layer();
        // Values of routes that are not in the target but that Envoy may still hold. Usually
        // there are none, and the prefixes its routes read need not be gathered.
        let leaving: Vec<(&String, &u32)> = held
            .iter()
            .filter(|(k, _)| !target_prefixes.contains(key_prefix(k)))
            .collect();
        if leaving.is_empty() {
            return layer;
        }
        let rds = &self.types[index(Kind::Route)];
        let mut in_use: BTreeSet<&str> = BTreeSet::new();
        for r in rds
            .acked
            .known()
            .chain(rds.inflight.iter().flat_map(|i| i.upserts.values()))
        {
            in_use.extend(r.prefixes.iter().map(String::as_str));
        }
        let keep_everything = self.routes_unknown || !rds.acked_exact;
        for (k, v) in leaving {
            if keep_everything || in_use.contains(key_prefix(k)) {
                layer.insert(k.clone(), *v);
            }
        }
        layer
    }

    /// The runtime layer Envoy holds (empty before it ACKed one).
    pub(super) fn held_layer(&self) -> Layer {
        self.types[index(Kind::Runtime)]
            .acked
            .known()
            .filter_map(|r| r.layer.as_deref().cloned())
            .next()
            .unwrap_or_default()
    }

    /// Whether the layer Envoy holds gives the routes about to be sent exactly the values the
    /// snapshot means for them.
    pub(super) fn layer_ready(&self, target: &Layer, target_prefixes: &Prefixes<'_>) -> bool {
        if target_prefixes.0.is_empty() {
            return true;
        }
        let rtds = &self.types[index(Kind::Runtime)];
        if !rtds.subscribed {
            return false;
        }
        let held = self.held_layer();
        let relevant = |l: &Layer| -> Vec<(String, u32)> {
            l.iter()
                .filter(|(k, _)| target_prefixes.contains(key_prefix(k)))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        relevant(&held) == relevant(target)
    }
}
