//! Sending: a response per type, encoded from the snapshot's shared bytes, with its nonce and
//! version, as SotW (the whole set) or delta (what changed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use prost::Message;
use sha2::{Digest, Sha256};

use super::{Desired, Encoded, Holding, Inflight, Response, StreamState, Variant, index};
use crate::xds::archive::Archive;
use crate::xds::resource::{Kind, Resource, ResourceSet, short_hex};

impl StreamState {
    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        self.nonce.to_string()
    }

    pub(super) fn send(
        &mut self,
        kind: Kind,
        desired: Desired,
        protected: &BTreeSet<String>,
        snapshot_version: &str,
        archive: &mut Archive,
    ) -> Option<Response> {
        {
            let t = &self.types[index(kind)];
            if !t.subscribed || t.inflight.is_some() {
                return None;
            }
        }
        match self.variant {
            Variant::Sotw => self.send_sotw(kind, desired, archive),
            Variant::Delta => self.send_delta(kind, desired, protected, snapshot_version, archive),
        }
    }

    fn send_sotw(
        &mut self,
        kind: Kind,
        desired: Desired,
        archive: &mut Archive,
    ) -> Option<Response> {
        let set = desired.into_set();
        {
            let t = &self.types[index(kind)];
            // The set sent last goes again only to answer a request (new names), and never
            // when Envoy refused it: it would refuse it again.
            let refused = t.last_nack.as_ref().is_some_and(|(v, _)| *v == set.version);
            if (!t.respond || refused) && t.sent_version.as_deref() == Some(set.version.as_str()) {
                return None;
            }
        }
        self.epoch += 1;
        archive.record(kind, &set);
        let nonce = self.next_nonce();
        let header = DiscoveryResponse {
            version_info: set.version.clone(),
            type_url: kind.type_url().to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        let chunks = vec![Bytes::from(header.encode_to_vec()), set.sotw_body()];
        let t = self.ty(kind);
        t.respond = false;
        t.sent_version = Some(set.version.clone());
        t.last_nonce = Some(nonce.clone());
        let resources = set.len();
        t.inflight = Some(Inflight {
            nonce: nonce.clone(),
            version: set.version.clone(),
            upserts: set.items,
            removals: Vec::new(),
        });
        Some(Response {
            kind,
            nonce,
            version: set.version,
            resources,
            removed: 0,
            body: Encoded { chunks },
        })
    }

    fn send_delta(
        &mut self,
        kind: Kind,
        desired: Desired,
        protected: &BTreeSet<String>,
        snapshot_version: &str,
        archive: &mut Archive,
    ) -> Option<Response> {
        let desired = desired.into_set();
        let t = &self.types[index(kind)];
        // Envoy already holds this very set (the map is shared): nothing to compare. On a push
        // that moves only routes, this is every other type of every stream.
        if !t.respond
            && t.force.is_empty()
            && t.acked.unknown.is_empty()
            && Arc::ptr_eq(&t.acked.known, &desired.items)
        {
            return None;
        }
        // A refusal stands until another version of the resource is sent (newer files), or
        // the resource is no longer to be sent (gone, or unsubscribed): not when the version to
        // send only moves for a while (a layer that keeps values for routes Envoy still holds)
        // and comes back to the refused one.
        self.types[index(kind)]
            .rejected
            .retain(|n, _| desired.items.contains_key(n));
        let t = &self.types[index(kind)];
        let upserts: BTreeMap<String, Arc<Resource>> = desired
            .items
            .iter()
            .filter(|(name, _)| t.wants(name))
            .filter(|(name, r)| {
                t.force.contains(*name) || t.acked.version(name).is_none_or(|v| v != r.version)
            })
            .filter(|(name, r)| t.rejected.get(*name) != Some(&r.version))
            .map(|(n, r)| (n.clone(), Arc::clone(r)))
            .collect();
        let removals: Vec<String> = t
            .acked
            .names()
            .filter(|n| !desired.items.contains_key(*n) && !protected.contains(*n))
            .cloned()
            .collect();
        if upserts.is_empty() && removals.is_empty() && !t.respond {
            // Envoy holds exactly this set: share its map rather than keep a copy per stream.
            // (Not when it holds another version of a resource whose version here it refused.)
            if t.acked.unknown.is_empty()
                && t.acked.known.len() == desired.items.len()
                && !Arc::ptr_eq(&t.acked.known, &desired.items)
                && desired
                    .items
                    .iter()
                    .all(|(n, r)| t.acked.version(n) == Some(r.version.as_str()))
            {
                self.ty(kind).acked = Holding::shared(Arc::clone(&desired.items));
            }
            return None;
        }
        self.epoch += 1;
        // Everything at once (a first answer): the set's shared body; else just the changes.
        let set = if upserts.len() == desired.items.len() {
            desired
        } else {
            ResourceSet::new(upserts)
        };
        archive.record(kind, &set);
        let mut h = Sha256::new();
        h.update(set.version.as_bytes());
        for r in &removals {
            h.update(r.as_bytes());
            h.update([0]);
        }
        let change = short_hex(&h.finalize());
        let nonce = self.next_nonce();
        let header = DeltaDiscoveryResponse {
            system_version_info: snapshot_version.to_string(),
            type_url: kind.type_url().to_string(),
            removed_resources: removals.clone(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        let chunks = vec![Bytes::from(header.encode_to_vec()), set.delta_body()];
        let t = self.ty(kind);
        t.rejected
            .retain(|n, v| set.items.get(n).is_none_or(|r| r.version == *v));
        t.respond = false;
        t.force.clear();
        t.last_nonce = Some(nonce.clone());
        t.sent_version = Some(change.clone());
        let (resources, removed) = (set.len(), removals.len());
        t.inflight = Some(Inflight {
            nonce: nonce.clone(),
            version: change.clone(),
            upserts: set.items,
            removals,
        });
        Some(Response {
            kind,
            nonce,
            version: change,
            resources,
            removed,
            body: Encoded { chunks },
        })
    }
}
