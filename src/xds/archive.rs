//! What this server sent recently, by version: so that an Envoy that reconnects with a version
//! string can be understood (which clusters does it hold? which does its route table use?) and
//! make-before-break resumes where the last stream left off.

use std::collections::HashMap;
use std::sync::Arc;

use super::resource::{Kind, Resource, ResourceSet};

/// How many snapshot generations an unused entry survives.
const KEEP_GENERATIONS: u64 = 8;

pub use super::resource::Items;

/// Recently sent resource sets (by set version) and resources (by name and version).
#[derive(Default)]
pub struct Archive {
    generation: u64,
    sets: HashMap<(Kind, String), (Items, u64)>,
    resources: HashMap<(Kind, String, String), (Arc<Resource>, u64)>,
    latest: HashMap<(Kind, String), (Arc<Resource>, u64)>,
}

impl Archive {
    /// Records a set and its resources as sent (or about to be).
    pub fn record(&mut self, kind: Kind, set: &ResourceSet) {
        let g = self.generation;
        self.sets
            .entry((kind, set.version.clone()))
            .and_modify(|e| e.1 = g)
            .or_insert_with(|| (Arc::clone(&set.items), g));
        for r in set.items.values() {
            self.resources
                .entry((kind, r.name.clone(), r.version.clone()))
                .and_modify(|e| e.1 = g)
                .or_insert_with(|| (Arc::clone(r), g));
            self.latest
                .insert((kind, r.name.clone()), (Arc::clone(r), g));
        }
    }

    /// Starts a new generation (one per published snapshot) and forgets what has not been
    /// used for a while, so memory stays bounded however long the server runs.
    pub fn next_generation(&mut self) {
        self.generation += 1;
        let cutoff = self.generation.saturating_sub(KEEP_GENERATIONS);
        self.sets.retain(|_, (_, g)| *g >= cutoff);
        self.resources.retain(|_, (_, g)| *g >= cutoff);
        self.latest.retain(|_, (_, g)| *g >= cutoff);
    }

    /// The version of `name` recorded last: what an Envoy most likely holds under that name
    /// when its own version is not known.
    pub fn latest(&self, kind: Kind, name: &str) -> Option<Arc<Resource>> {
        self.latest
            .get(&(kind, name.to_string()))
            .map(|(r, _)| Arc::clone(r))
    }

    /// The sets recorded in the last `generations` generations, for `--state-dir`.
    pub fn recent(&self, generations: u64) -> Vec<(Kind, Vec<Arc<Resource>>)> {
        let cutoff = self
            .generation
            .saturating_sub(generations.saturating_sub(1));
        let mut out: Vec<(Kind, Vec<Arc<Resource>>)> = self
            .sets
            .iter()
            .filter(|(_, (_, g))| *g >= cutoff)
            .map(|((k, _), (items, _))| (*k, items.values().cloned().collect()))
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
            .map(|(s, _)| Arc::clone(s))
    }

    /// The resource a delta (name, version) names.
    pub fn resource(&self, kind: Kind, name: &str, version: &str) -> Option<Arc<Resource>> {
        self.resources
            .get(&(kind, name.to_string(), version.to_string()))
            .map(|(r, _)| Arc::clone(r))
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
        a.record(Kind::Cluster, &s);
        assert_eq!(a.set(Kind::Cluster, &s.version).unwrap().len(), 2);
        assert!(a.set(Kind::Route, &s.version).is_none());
        assert!(a.resource(Kind::Cluster, "a", "1").is_some());
        assert!(a.resource(Kind::Cluster, "a", "2").is_none());
    }

    #[test]
    fn forgets_what_is_not_used_for_a_while() {
        let mut a = Archive::default();
        let old = set(&["old"]);
        a.record(Kind::Cluster, &old);
        for _ in 0..KEEP_GENERATIONS + 1 {
            a.next_generation();
        }
        assert!(a.set(Kind::Cluster, &old.version).is_none());
        assert!(a.is_empty());
    }
}
