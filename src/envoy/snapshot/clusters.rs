//! The cluster set of a snapshot: each cluster translated and encoded once, cached by content,
//! and reused by every fleet and build that has the same spec.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use rayon::prelude::*;

use super::{PARALLEL_MIN, SnapshotBuilder};
use crate::envoy::translate;
use crate::routes::ClusterSpec;
use crate::xds::resource::{Kind, Resource, ResourceSet, content_version};

/// A cluster encoded for one spec.
pub(super) type ClusterVariant = (Arc<ClusterSpec>, Used<Arc<Resource>>);

/// A cache entry and the generation that last used it.
pub(super) struct Used<T> {
    pub(super) value: T,
    pub(super) generation: u64,
}

/// A fleet's cluster resources, kept while its table's cluster map is the same `Arc`.
#[derive(Clone)]
pub(super) struct ClusterSet {
    pub(super) map: Arc<BTreeMap<String, Arc<ClusterSpec>>>,
    pub(super) resources: ResourceSet,
    /// The cluster names, which every route configuration built on this map refers to.
    pub(super) names: Arc<[String]>,
}

/// Our model of a cluster for its version: the upstream without the text as written.
#[derive(serde::Serialize)]
pub(super) struct ClusterModel<'a> {
    pub(super) scheme: crate::model::mapping::Scheme,
    pub(super) host: &'a str,
    pub(super) port: u16,
    pub(super) settings: &'a crate::model::mapping::ClusterSettings,
}

impl<'a> ClusterModel<'a> {
    fn of(spec: &'a ClusterSpec) -> Self {
        ClusterModel {
            scheme: spec.service.scheme,
            host: &spec.service.host,
            port: spec.service.port,
            settings: &spec.settings,
        }
    }
}

impl SnapshotBuilder {
    /// The cluster resources of a table's cluster map, encoding only the clusters not cached
    /// (on every core when there are many: a first load encodes them all).
    pub(super) fn cluster_set(
        &mut self,
        table_clusters: &BTreeMap<String, Arc<ClusterSpec>>,
        options: &translate::Options,
    ) -> ResourceSet {
        let generation = self.generation;
        let mut clusters = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, spec) in table_clusters {
            let cached = self.clusters.get_mut(name.as_str()).and_then(|variants| {
                variants
                    .iter_mut()
                    .find(|(s, _)| Arc::ptr_eq(s, spec) || s == spec)
            });
            match cached {
                Some((_, used)) => {
                    used.generation = generation;
                    clusters.insert(name.clone(), Arc::clone(&used.value));
                }
                None => missing.push((name, spec)),
            }
        }
        let encode = |&(name, spec): &(&String, &Arc<ClusterSpec>)| {
            let version = content_version(
                Kind::Cluster,
                &(name, ClusterModel::of(spec), &options.upstream_ca),
            );
            let bytes = translate::cluster(name, spec, options).encode_to_vec();
            Arc::new(Resource::new(
                Kind::Cluster,
                name.clone(),
                version,
                bytes,
                Vec::new(),
            ))
        };
        let encoded: Vec<Arc<Resource>> = if missing.len() < PARALLEL_MIN {
            missing.iter().map(encode).collect()
        } else {
            missing.par_iter().map(encode).collect()
        };
        for ((name, spec), r) in missing.into_iter().zip(encoded) {
            self.clusters.entry(name.clone()).or_default().push((
                Arc::clone(spec),
                Used {
                    value: Arc::clone(&r),
                    generation,
                },
            ));
            clusters.insert(name.clone(), r);
        }
        ResourceSet::new(clusters)
    }
}
