//! Envoy's requests, SotW and delta: the node, subscriptions, ACKs and NACKs, stale nonces,
//! and a reconnecting Envoy's versions.
//!
//! What a client sends is bounded before it is kept: a fleet name longer than any fleet is
//! refused, a node id and a NACK's message are cut (they are copied into every status read),
//! and the server can ask, before any per-name work, how many names a request would make it
//! track and whether taking it reads the archive.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};

use super::{Event, Holding, ProtocolError, RUNTIME_METADATA, StreamState, index};
use crate::xds::archive::Archive;
use crate::xds::resource::Kind;

/// The longest `node.cluster` taken: no fleet name is longer (Mapping names and
/// `ambassador_id`s are at most 253 characters).
pub const MAX_FLEET_BYTES: usize = 253;

/// A node id is kept to this many bytes.
pub const MAX_NODE_ID_BYTES: usize = 256;

/// A NACK's message is kept to this many bytes.
pub const MAX_NACK_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl StreamState {
    /// The fleet a stream's first request claims (`node.cluster`, `default` when empty), read
    /// before anything else in it, so that who may have what is decided first.
    pub fn claimed_fleet(node: Option<&Node>) -> Result<&str, ProtocolError> {
        let node = node.ok_or(ProtocolError::NoNode)?;
        if node.cluster.len() > MAX_FLEET_BYTES {
            return Err(ProtocolError::FleetTooLong {
                len: node.cluster.len(),
            });
        }
        Ok(if node.cluster.is_empty() {
            crate::model::mapping::DEFAULT_FLEET
        } else {
            &node.cluster
        })
    }

    /// How many names this stream would track for the request's type after taking `req`, at
    /// most: what it asks for (SotW replaces the names of its type).
    pub fn names_after_sotw(&self, req: &DiscoveryRequest) -> usize {
        req.resource_names.len()
    }

    /// How many names of `kind` this stream would track after taking `req`, at most: those it
    /// tracks plus those it subscribes to, or those it reports holding on a reconnect.
    pub fn names_after_delta(&self, req: &DeltaDiscoveryRequest, kind: Kind) -> usize {
        let t = &self.types[index(kind)];
        (t.names.len() + req.resource_names_subscribe.len())
            .max(req.initial_resource_versions.len())
    }

    /// Whether `on_sotw` may look `req` up in the archive (a reconnecting Envoy's version):
    /// other requests are taken without it.
    pub fn sotw_reads_archive(req: &DiscoveryRequest) -> bool {
        req.response_nonce.is_empty() && !req.version_info.is_empty()
    }

    /// Whether `on_delta` may look `req` up in the archive (the versions a reconnecting Envoy
    /// holds).
    pub fn delta_reads_archive(req: &DeltaDiscoveryRequest) -> bool {
        !req.initial_resource_versions.is_empty()
    }

    /// Whether the route tables Envoy holds are known (so which clusters and runtime values
    /// it routes by): a reconnecting Envoy's that we found in the archive, or ones it ACKed.
    fn routes_held_known(&self) -> bool {
        let rds = &self.types[index(Kind::Route)];
        rds.subscribed
            && match self.variant {
                super::Variant::Sotw => rds.acked_exact && rds.acked_version.is_some(),
                super::Variant::Delta => !rds.acked.is_empty() && rds.acked.unknown.is_empty(),
            }
    }

    fn take_node(&mut self, node: Option<&Node>) -> Result<(), ProtocolError> {
        if self.node_id.is_some() {
            return Ok(());
        }
        let fleet = Self::claimed_fleet(node)?.to_string();
        let node = node.ok_or(ProtocolError::NoNode)?;
        self.node_id = Some(cut(&node.id, MAX_NODE_ID_BYTES));
        self.fleet = Some(fleet);
        use envoy_types::pb::google::protobuf::value::Kind as ValueKind;
        self.runtime = node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get(RUNTIME_METADATA))
            .is_some_and(|v| matches!(v.kind, Some(ValueKind::BoolValue(true))));
        Ok(())
    }

    /// Takes a state-of-the-world request.
    pub fn on_sotw(
        &mut self,
        req: &DiscoveryRequest,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError> {
        self.epoch += 1;
        self.take_node(req.node.as_ref())?;
        if req.type_url.is_empty() {
            return Err(ProtocolError::NoTypeUrl);
        }
        let Some(kind) = Kind::from_type_url(&req.type_url) else {
            return Ok(vec![Event::UnknownType {
                type_url: req.type_url.clone(),
            }]);
        };
        let mut events = Vec::new();
        let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
        let first = !self.ty(kind).subscribed;
        {
            let t = self.ty(kind);
            t.subscribed = true;
            // Wildcard: `*`, or a wildcard kind that never named a resource (legacy wildcard).
            let wildcard = names.contains("*")
                || (kind.is_wildcard() && names.is_empty() && (first || t.wildcard));
            if wildcard != t.wildcard || (!wildcard && names != t.names) {
                t.respond = true;
            }
            t.wildcard = wildcard;
            t.names = names.into_iter().filter(|n| n != "*").collect();
        }
        if req.response_nonce.is_empty() {
            // A request before any response of this type on the stream: answered, unless it is
            // the first of a reconnecting Envoy that holds a version we know (below).
            self.ty(kind).respond = true;
            if kind != Kind::Route
                && first
                && !req.version_info.is_empty()
                && !self.routes_held_known()
            {
                // A reconnecting Envoy: until its route table is known, it may route to any
                // cluster it holds, by any runtime value it holds.
                self.routes_unknown = true;
            }
            if !req.version_info.is_empty() && first {
                match archive.set(kind, &req.version_info) {
                    Some(set) => {
                        let t = self.ty(kind);
                        // Envoy holds this very set (versions name content): as if this stream
                        // had sent it and Envoy ACKed it. Unless it asks for a name the set
                        // lacks, it is answered only once what it should hold differs (a
                        // restart of this server, or a switch to another replica with the same
                        // files, then sends nothing: Envoy reapplies a route table and reloads
                        // its runtime on every response, even an unchanged one).
                        let satisfied = t.wildcard || t.names.iter().all(|n| set.contains_key(n));
                        if satisfied {
                            t.respond = false;
                            t.sent_version = Some(req.version_info.clone());
                        }
                        t.acked = Holding::shared(set);
                        t.acked_version = Some(req.version_info.clone());
                        t.acked_exact = true;
                        if kind == Kind::Route {
                            // Its route table is known: it routes to what that table names.
                            self.routes_unknown = false;
                        }
                    }
                    None => {
                        let t = self.ty(kind);
                        t.acked_exact = false;
                        t.acked_version = Some(req.version_info.clone());
                        if kind == Kind::Route {
                            self.routes_unknown = true;
                        }
                        events.push(Event::UnknownVersion {
                            kind,
                            version: req.version_info.clone(),
                        });
                    }
                }
            }
            return Ok(events);
        }
        let t = self.ty(kind);
        let current = t
            .inflight
            .as_ref()
            .is_some_and(|i| i.nonce == req.response_nonce);
        if !current {
            // A stale nonce, or a request about a response already answered (a change of
            // names, handled above). Nothing to ACK.
            return Ok(events);
        }
        let inflight = t.inflight.take().expect("checked above");
        match &req.error_detail {
            None => {
                t.acked = Holding::shared(Arc::clone(&inflight.upserts));
                t.acked_exact = true;
                t.acked_version = Some(inflight.version.clone());
                if kind == Kind::Route {
                    self.routes_unknown = false;
                }
                events.push(Event::Ack {
                    kind,
                    version: inflight.version,
                });
            }
            Some(status) => {
                let message = cut(&status.message, MAX_NACK_BYTES);
                t.last_nack = Some((inflight.version.clone(), message.clone()));
                events.push(Event::Nack {
                    kind,
                    version: inflight.version,
                    message,
                });
            }
        }
        Ok(events)
    }

    /// Takes an incremental (delta) request.
    pub fn on_delta(
        &mut self,
        req: &DeltaDiscoveryRequest,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError> {
        self.epoch += 1;
        self.take_node(req.node.as_ref())?;
        if req.type_url.is_empty() {
            return Err(ProtocolError::NoTypeUrl);
        }
        let Some(kind) = Kind::from_type_url(&req.type_url) else {
            return Ok(vec![Event::UnknownType {
                type_url: req.type_url.clone(),
            }]);
        };
        let mut events = Vec::new();
        let first = !self.ty(kind).subscribed;
        let routes_known = self.routes_held_known();
        if first {
            let t = self.ty(kind);
            t.subscribed = true;
            // A reconnecting Envoy says what it holds: it is sent what differs (and removals),
            // and nothing at all when it holds what it should (below, the names it subscribes
            // to that it does not hold are answered). A new Envoy is answered whatever there is.
            let reconnect = !req.initial_resource_versions.is_empty();
            t.respond = !reconnect;
            // Legacy wildcard: a wildcard kind whose first request names nothing.
            t.wildcard = kind.is_wildcard() && req.resource_names_subscribe.is_empty();
            let mut unknown_routes = false;
            for (name, version) in &req.initial_resource_versions {
                match archive.resource(kind, name, version) {
                    Some(r) => t.acked.insert(name.clone(), r),
                    None => {
                        if kind == Kind::Route {
                            unknown_routes = true;
                        }
                        t.acked.unknown.insert(name.clone(), version.clone());
                    }
                }
            }
            if kind != Kind::Route && reconnect && !routes_known {
                // A reconnecting Envoy: until its route table is known, it may route to any
                // cluster it holds, by any runtime value it holds.
                unknown_routes = true;
            }
            if unknown_routes {
                self.routes_unknown = true;
                if kind == Kind::Route {
                    events.push(Event::UnknownVersion {
                        kind,
                        version: "(initial_resource_versions)".into(),
                    });
                }
            } else if kind == Kind::Route && reconnect {
                // Every route table it holds is known: it routes to what they name.
                self.routes_unknown = false;
            }
        }
        // Subscription changes are honoured whatever the nonce (xds_protocol, incremental).
        {
            let t = self.ty(kind);
            for name in &req.resource_names_subscribe {
                if name == "*" {
                    t.wildcard = true;
                } else if t.names.insert(name.clone()) || first {
                    // Sent even if Envoy claims to hold it, except a name a reconnecting
                    // Envoy lists with the version it holds (sent only if that differs).
                    if !(first && t.acked.contains_key(name)) {
                        t.force.insert(name.clone());
                        t.respond = true;
                    }
                }
            }
            for name in &req.resource_names_unsubscribe {
                if name == "*" {
                    t.wildcard = false;
                } else {
                    t.names.remove(name);
                    t.force.remove(name);
                    if !t.wildcard {
                        t.acked.remove(name);
                    }
                }
            }
        }
        if req.response_nonce.is_empty() {
            return Ok(events);
        }
        let t = self.ty(kind);
        if t.inflight
            .as_ref()
            .is_none_or(|i| i.nonce != req.response_nonce)
        {
            return Ok(events);
        }
        let inflight = t.inflight.take().expect("checked above");
        match &req.error_detail {
            None => {
                for (name, r) in inflight.upserts.iter() {
                    t.acked.insert(name.clone(), Arc::clone(r));
                }
                for name in &inflight.removals {
                    t.acked.remove(name);
                }
                t.acked_version = Some(inflight.version.clone());
                if kind == Kind::Route && t.acked.unknown.is_empty() {
                    self.routes_unknown = false;
                }
                events.push(Event::Ack {
                    kind,
                    version: inflight.version,
                });
            }
            Some(status) => {
                for (name, r) in inflight.upserts.iter() {
                    t.rejected.insert(name.clone(), r.version.clone());
                }
                let message = cut(&status.message, MAX_NACK_BYTES);
                t.last_nack = Some((inflight.version.clone(), message.clone()));
                events.push(Event::Nack {
                    kind,
                    version: inflight.version,
                    message,
                });
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod limits {
    use super::*;
    use crate::xds::stream::Variant;

    fn node(id: &str, cluster: &str) -> Node {
        Node {
            id: id.into(),
            cluster: cluster.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_fleet_name_longer_than_any_fleet_is_refused() {
        assert_eq!(StreamState::claimed_fleet(None), Err(ProtocolError::NoNode));
        assert_eq!(
            StreamState::claimed_fleet(Some(&node("n", ""))),
            Ok("default")
        );
        let longest = "f".repeat(MAX_FLEET_BYTES);
        assert_eq!(
            StreamState::claimed_fleet(Some(&node("n", &longest))),
            Ok(longest.as_str())
        );
        let over = "f".repeat(MAX_FLEET_BYTES + 1);
        assert_eq!(
            StreamState::claimed_fleet(Some(&node("n", &over))),
            Err(ProtocolError::FleetTooLong { len: 254 })
        );
        let mut st = StreamState::new(Variant::Sotw);
        let req = DiscoveryRequest {
            node: Some(node("n", &over)),
            type_url: Kind::Cluster.type_url().into(),
            ..Default::default()
        };
        assert_eq!(
            st.on_sotw(&req, &Archive::default()),
            Err(ProtocolError::FleetTooLong { len: 254 })
        );
        assert_eq!(st.fleet(), None);
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("ééé", 4), "éé");
        assert_eq!(cut("abc", 10), "abc");
        assert_eq!(cut("", 0), "");
    }

    #[test]
    fn a_long_node_id_and_a_long_nack_are_cut() {
        let mut st = StreamState::new(Variant::Delta);
        let a = Archive::default();
        let req = DeltaDiscoveryRequest {
            node: Some(node(&"ü".repeat(1000), "default")),
            type_url: Kind::Cluster.type_url().into(),
            ..Default::default()
        };
        st.on_delta(&req, &a).unwrap();
        assert_eq!(st.node_id(), Some("ü".repeat(128).as_str()));
        st.types[index(Kind::Cluster)].inflight = Some(super::super::Inflight {
            nonce: "1".into(),
            version: "v".into(),
            upserts: Default::default(),
            removals: Vec::new(),
        });
        let nack = DeltaDiscoveryRequest {
            type_url: Kind::Cluster.type_url().into(),
            response_nonce: "1".into(),
            error_detail: Some(envoy_types::pb::google::rpc::Status {
                code: 13,
                message: "é".repeat(10_000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let events = st.on_delta(&nack, &a).unwrap();
        let Event::Nack { message, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(message.len(), MAX_NACK_BYTES);
        let kept = st.status(Kind::Cluster).last_nack.unwrap().1;
        assert_eq!(kept, *message);
    }

    #[test]
    fn the_names_a_request_would_add_are_counted_before_it_is_taken() {
        let mut st = StreamState::new(Variant::Delta);
        let sub = |names: &[&str]| DeltaDiscoveryRequest {
            node: Some(node("n", "default")),
            type_url: Kind::Route.type_url().into(),
            resource_names_subscribe: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(st.names_after_delta(&sub(&["a", "b"]), Kind::Route), 2);
        st.on_delta(&sub(&["a", "b"]), &Archive::default()).unwrap();
        assert_eq!(st.names_after_delta(&sub(&["c"]), Kind::Route), 3);
        let reconnect = DeltaDiscoveryRequest {
            initial_resource_versions: (0..5).map(|i| (i.to_string(), "v".into())).collect(),
            ..sub(&[])
        };
        assert_eq!(st.names_after_delta(&reconnect, Kind::Cluster), 5);
        assert!(StreamState::delta_reads_archive(&reconnect));
        assert!(!StreamState::delta_reads_archive(&sub(&["a"])));
        let sotw = DiscoveryRequest {
            version_info: "v1".into(),
            ..Default::default()
        };
        assert!(StreamState::sotw_reads_archive(&sotw));
        let ack = DiscoveryRequest {
            response_nonce: "1".into(),
            ..sotw
        };
        assert!(!StreamState::sotw_reads_archive(&ack));
    }
}
