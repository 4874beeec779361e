//! The invariants, checked as the simulation goes: what may be sent (and what may not be sent
//! again to a reconnecting Envoy), what Envoy may come to hold, how big the stream's state may
//! grow, and where it must end.

use std::collections::BTreeSet;

use super::super::index;
use super::envoy::Decoded;
use super::world::CLUSTERS;
use super::{
    BOUNDED, CONVERGES, Failure, MAKE_BEFORE_BREAK, NACKED_RESENT, Opening, QUIET, ROUTE_NAMES, Sim,
};
use crate::xds::resource::Kind;
use crate::xds::stream::Variant;

/// How many names of `kind` the simulation can make: a bound on each part of its state.
fn universe(kind: Kind) -> usize {
    match kind {
        Kind::Cluster => CLUSTERS.len(),
        Kind::Route => ROUTE_NAMES.len(),
        Kind::Listener | Kind::Runtime => 1,
    }
}

impl Sim {
    /// A route table is sent only once Envoy holds (has ACKed) every cluster it names.
    pub(super) fn check_sent_routes(&self, d: &Decoded) -> Result<(), Failure> {
        if d.kind != Kind::Route {
            return Ok(());
        }
        let held = &self.envoy.held(Kind::Cluster).items;
        for (rc, item) in &d.resources {
            if let Some(c) = item.clusters.iter().find(|c| !held.contains_key(*c)) {
                return Err(self.fail(
                    MAKE_BEFORE_BREAK,
                    format!("{rc} names {c}, which Envoy had not ACKed when it was sent"),
                ));
            }
        }
        Ok(())
    }

    /// Envoy applies an accepted response: it must not come to hold a route table naming a
    /// cluster it does not hold (a new route to a missing cluster, or a cluster removed under
    /// a route).
    pub(super) fn apply(&mut self, d: &Decoded) -> Result<(), Failure> {
        let before = self.envoy.missing();
        self.envoy.apply(d);
        let new: Vec<(String, String)> =
            self.envoy.missing().difference(&before).cloned().collect();
        if d.kind == Kind::Cluster {
            // Make-before-break at work: Envoy keeps a cluster the files dropped, for its routes.
            let snap = self.world.items(Kind::Cluster, self.envoy.runtime);
            let used: BTreeSet<&String> = self
                .envoy
                .held(Kind::Route)
                .items
                .values()
                .flat_map(|i| &i.clusters)
                .collect();
            if self
                .envoy
                .held(Kind::Cluster)
                .items
                .keys()
                .any(|c| !snap.contains_key(c) && used.contains(c))
            {
                self.stats.kept += 1;
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        if d.kind == Kind::Cluster && self.conn.clusters_unknown {
            self.stats.forgiven += 1;
            return Ok(());
        }
        Err(self.fail(
            MAKE_BEFORE_BREAK,
            format!(
                "once Envoy applied {} {} (nonce {}), these (route table, cluster) lack the cluster: {new:?}",
                d.kind, d.version, d.nonce
            ),
        ))
    }

    /// Envoy refused `d`: remember what, to check it is not sent again.
    pub(super) fn note_nack(&mut self, d: &Decoded) {
        let kind = d.kind;
        match self.variant() {
            Variant::Sotw => {
                self.conn
                    .nacked
                    .insert((kind, String::new(), d.version.clone()));
            }
            Variant::Delta => {
                // Resources Envoy unsubscribed from meanwhile are a new question if it
                // subscribes again, as are those the files have moved on from already.
                for (n, i) in d
                    .resources
                    .iter()
                    .filter(|(n, _)| self.envoy.wants(kind, n))
                {
                    self.conn
                        .nacked
                        .insert((kind, n.clone(), i.version.clone()));
                }
                self.forget_changed_nacks();
            }
        }
    }

    /// A NACKed version is not sent again on the stream.
    pub(super) fn check_not_nacked(&self, d: &Decoded) -> Result<(), Failure> {
        let again: Vec<&(Kind, String, String)> = match self.variant() {
            Variant::Sotw => self
                .conn
                .nacked
                .get(&(d.kind, String::new(), d.version.clone()))
                .into_iter()
                .collect(),
            Variant::Delta => d
                .resources
                .iter()
                .filter_map(|(n, i)| {
                    self.conn
                        .nacked
                        .get(&(d.kind, n.clone(), i.version.clone()))
                })
                .collect(),
        };
        if again.is_empty() {
            Ok(())
        } else {
            Err(self.fail(NACKED_RESENT, format!("sent again: {again:?}")))
        }
    }
    /// Once another version was sent, a NACKed one may be sent again: what the server sends
    /// then is an answer to something new (new files, or names Envoy asked for since).
    pub(super) fn forget_nacks(&mut self, d: &Decoded) {
        let kind = d.kind;
        match self.variant() {
            Variant::Sotw => self
                .conn
                .nacked
                .retain(|(k, _, v)| *k != kind || *v == d.version),
            Variant::Delta => self.conn.nacked.retain(|(k, n, v)| {
                *k != kind
                    || !(d.removed.contains(n)
                        || d.resources.iter().any(|(m, i)| m == n && i.version != *v))
            }),
        }
    }
    /// Delta: a resource NACKed at a version the files no longer have may be sent at that
    /// version again later: it is new config by then (the server keeps one refusal per
    /// resource, not every version ever refused).
    pub(super) fn forget_changed_nacks(&mut self) {
        if self.variant() == Variant::Sotw {
            return;
        }
        let runtime = self.envoy.runtime;
        let world = &self.world;
        self.conn.nacked.retain(|(kind, n, v)| {
            world
                .items(*kind, runtime)
                .get(n)
                .is_some_and(|r| r.version == *v)
        });
    }
    /// Each part of each type's state holds at most as many names as the simulation can
    /// make of that type, however many requests came.
    pub(super) fn check_bounded(&self) -> Result<(), Failure> {
        for kind in Kind::ALL {
            let bound = universe(kind);
            let f = self.conn.state.footprint(kind);
            if let Some((part, n)) = f.parts().into_iter().find(|(_, n)| *n > bound) {
                return Err(self.fail(
                    BOUNDED,
                    format!("{kind} {part}: {n} entries, but only {bound} names exist"),
                ));
            }
        }
        Ok(())
    }
    /// Reconnects, asks for everything, ACKs every response; Envoy must end holding the
    /// snapshot.
    pub(super) fn converge(&mut self) -> Result<(), Failure> {
        self.log
            .push("converge: reconnect, ask for everything, ACK all".into());
        self.connect(Opening {
            explicit_wildcard: false,
            routes: true,
            layer: true,
            rotate: 0,
        })?;
        for _ in 0..32 {
            if self.conn.wire.is_empty() {
                break;
            }
            self.take(false)?;
        }
        if !self.conn.wire.is_empty() {
            return Err(self.fail(CONVERGES, "still sending after 32 ACKs".into()));
        }
        let runtime = self.envoy.runtime;
        for kind in Kind::ALL {
            if kind == Kind::Runtime && !runtime {
                continue;
            }
            let snap = self.world.items(kind, runtime);
            // State of the world carries no version per resource.
            let delta = self.variant() == Variant::Delta;
            // Route tables Envoy dropped and asked for again under a version that holds
            // them: no server can tell (`Envoy::forgotten`).
            let forgotten = |n: &str| kind == Kind::Route && self.envoy.forgotten.contains(n);
            let want: Vec<(&str, &str, BTreeSet<&str>)> = snap
                .iter()
                .filter(|(n, _)| kind != Kind::Route || self.envoy.routes.contains(*n))
                .filter(|(n, _)| !forgotten(n))
                .map(|(n, r)| {
                    let version = if delta { r.version.as_str() } else { "" };
                    (
                        n.as_str(),
                        version,
                        r.refs.iter().map(String::as_str).collect(),
                    )
                })
                .collect();
            let held: Vec<(&str, &str, BTreeSet<&str>)> = self
                .envoy
                .held(kind)
                .items
                .iter()
                .filter(|(n, _)| !forgotten(n))
                .map(|(n, i)| {
                    let clusters = i.clusters.iter().map(String::as_str).collect();
                    (n.as_str(), i.version.as_str(), clusters)
                })
                .collect();
            if want != held {
                return Err(self.fail(
                    CONVERGES,
                    format!("{kind}: Envoy holds {held:?}, the snapshot has {want:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl Sim {
    /// Whether Envoy, asking for `kind` for the first time on this stream, holds what the
    /// snapshot gives it, so that the server has nothing to send: state of the world, the
    /// snapshot's set by its version, every name of it asked for and no other; delta, by name
    /// and version, every resource it asks for and nothing else.
    pub(super) fn holds_snapshot(&self, kind: Kind) -> bool {
        let runtime = self.envoy.runtime;
        let held = self.envoy.held(kind);
        let set = self.world.snap.set_for(kind, runtime);
        let routes = &self.world.snap.set_for(Kind::Route, runtime).items;
        let asks_every_route = routes.keys().all(|n| self.envoy.routes.contains(n));
        // Asks for exactly the route tables `names`.
        let asks_only_these =
            |names: BTreeSet<&String>| names == self.envoy.routes.iter().collect();
        // The runtime values Envoy keeps are those of the routes it asks for.
        if kind == Kind::Runtime && !asks_every_route {
            return false;
        }
        match self.variant() {
            Variant::Sotw => {
                !held.version_info.is_empty()
                    && held.version_info == set.version
                    && (kind != Kind::Route || asks_only_these(set.items.keys().collect()))
            }
            Variant::Delta => {
                let want: Vec<(&str, &str)> = set
                    .items
                    .iter()
                    .filter(|(n, _)| self.envoy.wants(kind, n))
                    .map(|(n, r)| (n.as_str(), r.version.as_str()))
                    .collect();
                let has: Vec<(&str, &str)> = held
                    .items
                    .iter()
                    .map(|(n, i)| (n.as_str(), i.version.as_str()))
                    .collect();
                !has.is_empty()
                    && want == has
                    && (kind != Kind::Route || asks_only_these(held.items.keys().collect()))
            }
        }
    }

    /// Nothing is sent of a kind whose first request held what the snapshot gives, until
    /// something changed.
    pub(super) fn check_quiet(&self, d: &Decoded) -> Result<(), Failure> {
        if self.conn.quiet[index(d.kind)] {
            return Err(self.fail(
                QUIET,
                format!(
                    "{} {} sent to an Envoy that holds what the snapshot gives it",
                    d.kind, d.version
                ),
            ));
        }
        Ok(())
    }

    /// Something changed for `kind` (its requests, or, for routes, the subscriptions, which
    /// also decide the runtime values Envoy keeps): it may be answered.
    pub(super) fn lift_quiet(&mut self, kind: Kind) {
        self.conn.quiet[index(kind)] = false;
        if kind == Kind::Route {
            self.conn.quiet[index(Kind::Runtime)] = false;
        }
    }
}
