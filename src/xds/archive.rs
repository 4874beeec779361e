//! What this server sent recently, by version: so that an Envoy that reconnects with a version
//! string can be understood (which clusters does it hold? which does its route table use?) and
//! make-before-break resumes where the last stream left off.

use std::collections::HashMap;
use std::sync::Arc;

use super::resource::{Kind, Resource, ResourceSet};

/// How many snapshot generations an unused entry survives.
const KEEP_GENERATIONS: u64 = 8;

pub use super::resource::Items;

/// Recently sent resource sets, by set version. A resource is found through the sets that hold
/// it: recording a set is then one entry whatever its size (a push of ten thousand clusters
/// used to touch ten thousand entries under this lock), and lookups by resource, which only
/// (re)connecting streams make, look through the few recent sets.
#[derive(Default)]
pub struct Archive {
    generation: u64,
    /// Counts recordings, so that the set recorded last is known.
    recorded: u64,
    /// By kind and set version: the set, the generation that last recorded it and when.
    sets: HashMap<(Kind, String), (Items, u64, u64)>,
}

impl Archive {
    /// Records a set as sent (or about to be). A set recorded already in this generation is
    /// left as it is: every stream records what it sends.
    pub fn record(&mut self, kind: Kind, set: &ResourceSet) {
        let g = self.generation;
        self.recorded += 1;
        let recorded = self.recorded;
        match self.sets.get_mut(&(kind, set.version.clone())) {
            Some(e) if e.1 == g => {}
            Some(e) => (e.1, e.2) = (g, recorded),
            None => {
                self.sets.insert(
                    (kind, set.version.clone()),
                    (Arc::clone(&set.items), g, recorded),
                );
            }
        }
    }

    /// Starts a new generation (one per published snapshot) and forgets what has not been
    /// used for a while, so memory stays bounded however long the server runs.
    pub fn next_generation(&mut self) {
        self.generation += 1;
        let cutoff = self.generation.saturating_sub(KEEP_GENERATIONS);
        self.sets.retain(|_, (_, g, _)| *g >= cutoff);
    }

    /// The version of `name` recorded last: what an Envoy most likely holds under that name
    /// when its own version is not known.
    pub fn latest(&self, kind: Kind, name: &str) -> Option<Arc<Resource>> {
        self.sets
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .filter_map(|(_, (items, _, recorded))| Some((recorded, items.get(name)?)))
            .max_by_key(|(recorded, _)| **recorded)
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
            .filter(|(_, (_, g, _))| *g >= cutoff)
            .map(|((k, _), (items, _, _))| (*k, items.values().cloned().collect()))
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
            .map(|(s, _, _)| Arc::clone(s))
    }

    /// The resource a delta (name, version) names.
    pub fn resource(&self, kind: Kind, name: &str, version: &str) -> Option<Arc<Resource>> {
        self.sets
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .find_map(|(_, (items, _, _))| items.get(name).filter(|r| r.version == version))
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
        a.record(Kind::Cluster, &s);
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
        a.record(Kind::Cluster, &versioned("a", "1"));
        a.next_generation();
        a.record(Kind::Cluster, &versioned("a", "2"));
        assert_eq!(a.latest(Kind::Cluster, "a").unwrap().version, "2");
        a.next_generation();
        a.record(Kind::Cluster, &versioned("a", "1"));
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
        assert!(a.resource(Kind::Cluster, "a", "1").is_some());
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
