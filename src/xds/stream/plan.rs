//! The push plan: what to send this Envoy now, in make-before-break order (clusters before the
//! routes that name them, listeners after clusters), at most one response per type in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::runtime::Prefixes;
use super::{Desired, Response, StreamState, Variant, index, is_subset};
use crate::xds::archive::Archive;
use crate::xds::resource::{Items, Kind, Resource, ResourceSet};
use crate::xds::snapshot::Snapshot;

impl StreamState {
    /// What to send now, given the fleet's current snapshot, in push order. Every response
    /// returned is in flight until Envoy ACKs or NACKs it.
    pub fn plan(&mut self, snap: &Snapshot, archive: &mut Archive) -> Vec<Response> {
        if self.settled_for(snap) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let rt = self.runtime;
        // Clusters: the snapshot's, plus any still used by routes Envoy holds or is being sent.
        let (clusters, protected) = self.desired_clusters(snap, archive);
        if let Some(r) = self.send(Kind::Cluster, clusters, &protected, &snap.version, archive) {
            out.push(r);
        }
        // The runtime layer: the snapshot's, plus the values routes Envoy holds still read.
        let route_set = snap.set_for(Kind::Route, rt);
        let routes = self.wanted(Kind::Route, route_set);
        // Sorted (a route configuration's prefixes come sorted, so this is one pass).
        let mut target_prefixes: Vec<&str> = routes
            .items()
            .values()
            .flat_map(|r| r.prefixes.iter().map(String::as_str))
            .collect();
        target_prefixes.sort_unstable();
        target_prefixes.dedup();
        let target_prefixes = Prefixes(&target_prefixes);
        let snap_layer = snap.runtime.items.values().next();
        let target_layer = snap_layer.and_then(|r| r.layer.clone()).unwrap_or_default();
        if rt {
            let layer = self.desired_layer(&target_layer, &target_prefixes);
            let desired = if snap_layer.and_then(|r| r.layer.as_deref()) == Some(&layer) {
                self.wanted(Kind::Runtime, &snap.runtime)
            } else {
                let r = Resource::runtime_layer(crate::xds::RUNTIME_LAYER, layer);
                let set = ResourceSet::new(BTreeMap::from([(r.name.clone(), Arc::new(r))]));
                self.wanted(Kind::Runtime, &set)
            };
            if let Some(r) = self.send(
                Kind::Runtime,
                desired,
                &BTreeSet::new(),
                &snap.version,
                archive,
            ) {
                out.push(r);
            }
        }
        // Listeners: after clusters are settled.
        if self.types[index(Kind::Cluster)].inflight.is_none() {
            let listeners = Desired::Set(snap.listeners.clone());
            if let Some(r) = self.send(
                Kind::Listener,
                listeners,
                &BTreeSet::new(),
                &snap.version,
                archive,
            ) {
                out.push(r);
            }
        }
        // Routes: only once Envoy holds every cluster they name and, for a runtime Envoy, the
        // runtime values they read.
        let cds = &self.types[index(Kind::Cluster)];
        let held = &cds.acked;
        let names_only = |has: &dyn Fn(&str) -> bool| {
            routes
                .items()
                .values()
                .all(|r| r.refs.iter().all(|c| has(c)))
        };
        // Holding the snapshot's very cluster map, Envoy holds every cluster its routes name;
        // else each is looked up.
        let within_snapshot =
            |items: &Items| snap.routes_within_clusters && Arc::ptr_eq(items, &snap.clusters.items);
        let mut ready = within_snapshot(&held.known) || names_only(&|c| held.contains_key(c));
        // Envoy takes a cluster response in flight before these routes: it must not remove a
        // cluster they name.
        if let Some(i) = &cds.inflight {
            ready &= match self.variant {
                Variant::Sotw => {
                    within_snapshot(&i.upserts) || names_only(&|c| i.upserts.contains_key(c))
                }
                Variant::Delta => {
                    let removed: BTreeSet<&str> = i.removals.iter().map(String::as_str).collect();
                    removed.is_empty() || names_only(&|c| !removed.contains(c))
                }
            };
        }
        if rt {
            ready &= self.layer_ready(&target_layer, &target_prefixes);
        }
        if ready
            && let Some(r) = self.send(
                Kind::Route,
                routes,
                &BTreeSet::new(),
                &snap.version,
                archive,
            )
        {
            out.push(r);
        }
        self.last_plan = Some((snap.version.clone(), self.epoch));
        out
    }

    /// Whether planning for `snap` now would send nothing because neither the snapshot nor
    /// anything Envoy said changed since the last plan: a thousand streams waking up for
    /// nothing cost nothing (and take no lock).
    pub fn settled_for(&self, snap: &Snapshot) -> bool {
        self.last_plan
            .as_ref()
            .is_some_and(|(v, e)| *v == snap.version && *e == self.epoch)
    }

    /// The resources of `set` this stream asks for: the set itself (shared, with its
    /// version) when it wants them all.
    fn wanted(&self, kind: Kind, set: &ResourceSet) -> Desired {
        let t = &self.types[index(kind)];
        if set.items.keys().all(|n| t.wants(n)) {
            Desired::Set(set.clone())
        } else {
            let items: BTreeMap<String, Arc<Resource>> = set
                .items
                .iter()
                .filter(|(n, _)| t.wants(n))
                .map(|(n, r)| (n.clone(), Arc::clone(r)))
                .collect();
            Desired::Items(Arc::new(items))
        }
    }

    /// The clusters Envoy should hold now (the snapshot's set itself when nothing else must
    /// stay), and (delta) names it holds that we must not remove though we cannot send them.
    fn desired_clusters(&self, snap: &Snapshot, archive: &Archive) -> (Desired, BTreeSet<String>) {
        let snap_set = snap.set_for(Kind::Cluster, self.runtime);
        let mut extra: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
        let mut protected = BTreeSet::new();
        let cds = &self.types[index(Kind::Cluster)];
        let rds = &self.types[index(Kind::Route)];
        // Nearly always Envoy holds exactly the snapshot's clusters, or fewer (a weight moved,
        // a cluster was added): then nothing else must stay, and the clusters its routes use
        // need not be gathered (ten thousand names into a set, on every push to every stream).
        let holds_only_snapshot_clusters = cds.acked_exact
            && !cds.acked.is_empty()
            && cds.acked.unknown.is_empty()
            && (Arc::ptr_eq(&cds.acked.known, &snap_set.items)
                || is_subset(&cds.acked.known, &snap_set.items));
        if holds_only_snapshot_clusters {
            return (Desired::Set(snap_set.clone()), protected);
        }
        let mut in_use: BTreeSet<&str> = BTreeSet::new();
        for r in rds
            .acked
            .known()
            .chain(rds.inflight.iter().flat_map(|i| i.upserts.values()))
        {
            in_use.extend(r.refs.iter().map(String::as_str));
        }
        let keep_everything = self.routes_unknown || !rds.acked_exact;
        // Clusters the routes Envoy holds use but whose definition this stream never saw (a
        // SotW reconnect to a restarted server): send the last definition we know.
        if !cds.acked_exact || cds.acked.is_empty() {
            for name in &in_use {
                if !snap_set.items.contains_key(*name)
                    && !cds.acked.contains_key(name)
                    && let Some(r) = archive.latest(Kind::Cluster, name)
                {
                    extra.insert(name.to_string(), r);
                }
            }
        }
        for (name, r) in cds.acked.known.iter() {
            if !snap_set.items.contains_key(name)
                && (keep_everything || in_use.contains(name.as_str()))
            {
                extra.insert(name.clone(), Arc::clone(r));
            }
        }
        for name in cds.acked.unknown.keys() {
            if !snap_set.items.contains_key(name)
                && (keep_everything || in_use.contains(name.as_str()))
            {
                protected.insert(name.clone());
            }
        }
        if extra.is_empty() {
            return (Desired::Set(snap_set.clone()), protected);
        }
        let mut all = (*snap_set.items).clone();
        all.extend(extra);
        (Desired::Items(Arc::new(all)), protected)
    }
}
