//! Envoy's requests, SotW and delta: the node, subscriptions, ACKs and NACKs, stale nonces,
//! and a reconnecting Envoy's versions.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};

use super::{Event, Holding, ProtocolError, RUNTIME_METADATA, StreamState};
use crate::xds::archive::Archive;
use crate::xds::resource::Kind;

impl StreamState {
    fn take_node(
        &mut self,
        node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
    ) -> Result<(), ProtocolError> {
        if self.node_id.is_some() {
            return Ok(());
        }
        let node = node.ok_or(ProtocolError::NoNode)?;
        self.node_id = Some(node.id.clone());
        self.fleet = Some(if node.cluster.is_empty() {
            crate::model::mapping::DEFAULT_FLEET.to_string()
        } else {
            node.cluster.clone()
        });
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
            // The first request of this type on the stream: answer it whatever the versions.
            self.ty(kind).respond = true;
            if kind == Kind::Cluster && first && !req.version_info.is_empty() {
                // A reconnecting Envoy: until its route table is known, it may route to any
                // cluster it holds.
                self.routes_unknown = true;
            }
            if !req.version_info.is_empty() && first {
                match archive.set(kind, &req.version_info) {
                    Some(set) => {
                        let t = self.ty(kind);
                        t.acked = Holding::shared(set);
                        t.acked_version = Some(req.version_info.clone());
                        t.acked_exact = true;
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
                t.last_nack = Some((inflight.version.clone(), status.message.clone()));
                events.push(Event::Nack {
                    kind,
                    version: inflight.version,
                    message: status.message.clone(),
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
        if first {
            let t = self.ty(kind);
            t.subscribed = true;
            t.respond = true;
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
            if kind == Kind::Cluster && !req.initial_resource_versions.is_empty() {
                // A reconnecting Envoy: until its route table is known, it may route to any
                // cluster it holds.
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
            }
        }
        // Subscription changes are honoured whatever the nonce (xds_protocol, incremental).
        {
            let t = self.ty(kind);
            for name in &req.resource_names_subscribe {
                if name == "*" {
                    t.wildcard = true;
                } else if t.names.insert(name.clone()) || first {
                    t.force.insert(name.clone());
                    t.respond = true;
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
                t.last_nack = Some((inflight.version.clone(), status.message.clone()));
                events.push(Event::Nack {
                    kind,
                    version: inflight.version,
                    message: status.message.clone(),
                });
            }
        }
        Ok(events)
    }
}
