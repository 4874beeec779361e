//! What this server sent recently, by version: so that an Envoy that reconnects with a version
//! string can be understood (which clusters does it hold? which does its route table use?) and
//! make-before-break resumes where the last stream left off.
//!
//! It keeps the sets snapshots hold (recorded when they are published, or restored from
//! `--state-dir`) and the make-before-break unions a stream sends while an Envoy still needs
//! clusters the snapshot dropped (a state-of-the-world reconnect names such a union by its
//! version). It never keeps what one stream alone asked for (a subset of names, a delta's
//! changes): a client cycling through subscriptions must not grow it, nor `served.bin`.

use std::collections::HashMap;
use std::sync::Arc;

use super::resource::{Kind, Resource, ResourceSet};
use super::snapshot::Snapshot;

/// How many snapshot generations an unused entry survives.
const KEEP_GENERATIONS: u64 = 8;

/// Make-before-break unions kept at most; past this the one recorded longest ago goes (an
/// Envoy reconnecting with it is then treated as holding an unknown version, which is safe).
pub const MAX_UNIONS: usize = 256;

pub use super::resource::Items;

/// A kept set: its resources, the generation that last recorded it, when (the count of
/// recordings then), and whether a snapshot holds it (else it is a union).
#[derive(Clone)]
struct Entry {
    items: Items,
    generation: u64,
    recorded: u64,
    published: bool,
}

/// Recently sent resource sets, by set version. A resource is found through the sets that hold
/// it: recording a set is then one entry whatever its size (a push of ten thousand clusters
/// used to touch ten thousand entries under this lock), and lookups by resource, which only
/// (re)connecting streams make, look through the few recent sets.
#[derive(Clone, Default)]
pub struct Archive {
    generation: u64,
    /// Counts recordings, so that the set recorded last is known.
    recorded: u64,
    /// By kind and set version.
    sets: HashMap<(Kind, String), Entry>,
    /// The sets published in this generation, by kind: what a union must hold.
    published: HashMap<Kind, Vec<Items>>,
    /// How many entries are unions.
    unions: usize,
}

impl Archive {
    /// Records every set of a published snapshot.
    pub fn record_snapshot(&mut self, snap: &Snapshot) {
        for (kind, set) in snap.sets() {
            self.record_published(kind, set);
        }
    }

    /// Records a set a snapshot holds (published, or restored from `--state-dir`): kept for
    /// `KEEP_GENERATIONS` after it was last recorded.
    pub fn record_published(&mut self, kind: Kind, set: &ResourceSet) {
        self.published
            .entry(kind)
            .or_default()
            .push(Arc::clone(&set.items));
        self.keep(kind, set, true);
    }

    /// Records a set a stream sends (or is about to). A set already kept is kept longer: a
    /// stream still sends it. A new one is kept only when it holds every name of a set published
    /// in this generation (a make-before-break union: the snapshot's set plus what an Envoy
    /// still needs), and at most `MAX_UNIONS` of those; anything else is one stream's own
    /// subset, and is not kept.
    pub fn record(&mut self, kind: Kind, set: &ResourceSet) {
        if self.sets.contains_key(&(kind, set.version.clone())) || self.is_union(kind, set) {
            self.keep(kind, set, false);
        }
    }

    fn keep(&mut self, kind: Kind, set: &ResourceSet, published: bool) {
        let g = self.generation;
        self.recorded += 1;
        let recorded = self.recorded;
        match self.sets.get_mut(&(kind, set.version.clone())) {
            Some(e) => {
                if e.generation != g {
                    (e.generation, e.recorded) = (g, recorded);
                }
                if published && !e.published {
                    e.published = true;
                    self.unions -= 1;
                }
            }
            None => {
                self.sets.insert(
                    (kind, set.version.clone()),
                    Entry {
                        items: Arc::clone(&set.items),
                        generation: g,
                        recorded,
                        published,
                    },
                );
                if !published {
                    self.unions += 1;
                    if self.unions > MAX_UNIONS {
                        self.forget_oldest_union();
                    }
                }
            }
        }
    }

    /// Whether `set` is a make-before-break union: it holds every name of a (non-empty) set
    /// of its kind published in this generation, and what it holds beyond that set is served
    /// by no set of this generation (clusters the snapshot dropped, which an Envoy's routes
    /// still use). A subset of one fleet's set is then no union of a smaller fleet's set that
    /// shares a name with it.
    fn is_union(&self, kind: Kind, set: &ResourceSet) -> bool {
        let Some(published) = self.published.get(&kind) else {
            return false;
        };
        let served_now = |name: &str| published.iter().any(|p| p.contains_key(name));
        published.iter().any(|p| {
            !p.is_empty()
                && p.len() <= set.items.len()
                && p.keys().all(|n| set.items.contains_key(n))
                && set
                    .items
                    .keys()
                    .all(|n| p.contains_key(n) || !served_now(n))
        })
    }

    fn forget_oldest_union(&mut self) {
        let oldest = self
            .sets
            .iter()
            .filter(|(_, e)| !e.published)
            .min_by_key(|(_, e)| e.recorded)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.sets.remove(&k);
            self.unions -= 1;
        }
    }

    /// Starts a new generation (one per published snapshot) and forgets what has not been
    /// used for a while, so memory stays bounded however long the server runs.
    pub fn next_generation(&mut self) {
        self.generation += 1;
        self.published.clear();
        let cutoff = self.generation.saturating_sub(KEEP_GENERATIONS);
        self.sets.retain(|_, e| e.generation >= cutoff);
        self.unions = self.sets.values().filter(|e| !e.published).count();
    }

    /// The version of `name` recorded last: what an Envoy most likely holds under that name
    /// when its own version is not known.
    pub fn latest(&self, kind: Kind, name: &str) -> Option<Arc<Resource>> {
        self.sets
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .filter_map(|(_, e)| Some((e.recorded, e.items.get(name)?)))
            .max_by_key(|(recorded, _)| *recorded)
            .map(|(_, r)| Arc::clone(r))
    }

    /// The sets recorded in the last `generations` generations, for `--state-dir`.
    pub fn recent(&self, generations: u64) -> Vec<(Kind, Vec<Arc<Resource>>)> {
        let cutoff = self
            .generation
            .saturating_sub(generations.saturating_sub(1));
        let mut out: Vec<(Kind, Vec<Arc<Resource>>)> = self
            .sets
            .iter()
            .filter(|(_, e)| e.generation >= cutoff)
            .map(|((k, _), e)| (*k, e.items.values().cloned().collect()))
            .collect();
        out.sort_by(|a, b| {
            (a.0, a.1.iter().map(|r| &r.version).collect::<Vec<_>>())
                .cmp(&(b.0, b.1.iter().map(|r| &r.version).collect()))
        });
        out
    }

    /// The set a state-of-the-world version names.
    pub fn set(&self, kind: Kind, version: &str) -> Option<Items> {
        self.sets
            .get(&(kind, version.to_string()))
            .map(|e| Arc::clone(&e.items))
    }

    /// The resource a delta (name, version) names.
    pub fn resource(&self, kind: Kind, name: &str, version: &str) -> Option<Arc<Resource>> {
        self.sets
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .find_map(|(_, e)| e.items.get(name).filter(|r| r.version == version))
            .map(Arc::clone)
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> ResourceSet {
        ResourceSet::new(
            names
                .iter()
                .map(|n| {
                    let r = Resource::new(Kind::Cluster, n.to_string(), "1".into(), vec![], vec![]);
                    (n.to_string(), Arc::new(r))
                })
                .collect(),
        )
    }

    #[test]
    fn finds_sets_and_resources_by_version() {
        let mut a = Archive::default();
        let s = set(&["a", "b"]);
        a.record_published(Kind::Cluster, &s);
        assert_eq!(a.set(Kind::Cluster, &s.version).unwrap().len(), 2);
        assert!(a.set(Kind::Route, &s.version).is_none());
        assert!(a.resource(Kind::Cluster, "a", "1").is_some());
        assert!(a.resource(Kind::Cluster, "a", "2").is_none());
    }

    fn versioned(name: &str, version: &str) -> ResourceSet {
        let r = Resource::new(Kind::Cluster, name.into(), version.into(), vec![], vec![]);
        ResourceSet::new([(name.to_string(), Arc::new(r))].into())
    }

    #[test]
    fn the_latest_version_is_the_one_recorded_last_and_older_ones_stay_findable() {
        let mut a = Archive::default();
        a.record_published(Kind::Cluster, &versioned("a", "1"));
        a.next_generation();
        a.record_published(Kind::Cluster, &versioned("a", "2"));
        assert_eq!(a.latest(Kind::Cluster, "a").unwrap().version, "2");
        a.next_generation();
        a.record_published(Kind::Cluster, &versioned("a", "1"));
        assert_eq!(a.latest(Kind::Cluster, "a").unwrap().version, "1");
        assert!(a.resource(Kind::Cluster, "a", "2").is_some());
        // Recorded again in the same generation: nothing changes.
        a.record(Kind::Cluster, &versioned("a", "1"));
        assert_eq!(a.len(), 2);
        for _ in 0..KEEP_GENERATIONS {
            a.next_generation();
            a.record(Kind::Cluster, &versioned("a", "1"));
        }
        assert!(
            a.resource(Kind::Cluster, "a", "2").is_none(),
            "version 2 was forgotten"
        );
        assert!(
            a.resource(Kind::Cluster, "a", "1").is_some(),
            "a stream still sends version 1: it is kept"
        );
    }

    #[test]
    fn forgets_what_is_not_used_for_a_while() {
        let mut a = Archive::default();
        let old = set(&["old"]);
        a.record_published(Kind::Cluster, &old);
        for _ in 0..KEEP_GENERATIONS + 1 {
            a.next_generation();
        }
        assert!(a.set(Kind::Cluster, &old.version).is_none());
        assert!(a.is_empty());
    }

    #[test]
    fn keeps_make_before_break_unions_and_never_one_streams_subsets() {
        let mut a = Archive::default();
        let published = set(&["a", "b", "c"]);
        a.record_published(Kind::Cluster, &published);
        // Subsets a client cycles through: none is kept.
        for names in [&["a"][..], &["b"], &["a", "b"], &["b", "c"], &[]] {
            a.record(Kind::Cluster, &set(names));
        }
        assert_eq!(a.len(), 1);
        // A union (the snapshot's set plus a cluster an Envoy's routes still use) is kept.
        let union = set(&["a", "b", "c", "old"]);
        a.record(Kind::Cluster, &union);
        assert!(a.set(Kind::Cluster, &union.version).is_some());
        // Of another kind, it is no union.
        a.record(Kind::Route, &union);
        assert!(a.set(Kind::Route, &union.version).is_none());
        // Nor is a subset of a larger fleet's set that holds a smaller fleet's, nor anything
        // over an empty set (a fleet without clusters).
        a.record_published(Kind::Cluster, &set(&["a", "x", "y", "z"]));
        a.record_published(Kind::Cluster, &set(&[]));
        a.record(Kind::Cluster, &set(&["a", "b", "c", "x"]));
        a.record(Kind::Cluster, &set(&["q"]));
        assert_eq!(a.len(), 4);
        // Unions are bounded: the one recorded longest ago goes first.
        for i in 0..MAX_UNIONS + 10 {
            a.record(Kind::Cluster, &set(&["a", "b", "c", &format!("x{i}")]));
        }
        assert_eq!(a.len(), 3 + MAX_UNIONS);
        assert!(a.set(Kind::Cluster, &union.version).is_none());
        assert!(a.set(Kind::Cluster, &published.version).is_some());
    }
}
