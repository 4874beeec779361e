//! The server's side of the simulation: snapshots made from a `Config` by the real pipeline
//! (Mapping files, route tables, the snapshot builder, kept between builds as the reloader
//! keeps it), plus a side route table, and the archive a hub keeps of what it published.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
    route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier,
    weighted_cluster::ClusterWeight,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use prost::Message;

use super::script::Config;
use crate::envoy::snapshot::{Listen, SnapshotBuilder};
use crate::input::parse::parse_file;
use crate::routes::compile;
use crate::xds::Snapshot;
use crate::xds::archive::Archive;
use crate::xds::resource::{Items, Kind, Resource, ResourceSet, content_version};

/// Every cluster a snapshot of the simulation can name.
pub const CLUSTERS: [&str; 5] = ["main", "canary-a", "canary-b", "second-a", "second-b"];

/// The snapshots published, as a hub publishes them.
pub struct World {
    builder: SnapshotBuilder,
    pub snap: Arc<Snapshot>,
    pub archive: Archive,
}

fn mapping(name: &str, prefix: &str, service: &str, weight: Option<u8>) -> String {
    let mut m = format!(
        "apiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: {prefix}\nservice: {service}\n"
    );
    if let Some(w) = weight {
        m.push_str(&format!("weight: {w}\n"));
    }
    m
}

/// The side route table: one route to `clusters` (weighted when more than one).
fn side_table(clusters: &[&str]) -> Arc<Resource> {
    let specifier = match clusters {
        [one] => ClusterSpecifier::Cluster(one.to_string()),
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|c| ClusterWeight {
                    name: c.to_string(),
                    weight: Some(UInt32Value { value: 50 }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let rc = RouteConfiguration {
        name: "side".into(),
        virtual_hosts: vec![VirtualHost {
            name: "side".into(),
            domains: vec!["side.example".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(specifier),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let refs: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
    Arc::new(Resource::new(
        Kind::Route,
        "side".into(),
        content_version(Kind::Route, &refs),
        rc.encode_to_vec(),
        refs,
    ))
}

fn with_side(set: &ResourceSet, side: &Arc<Resource>) -> ResourceSet {
    let mut items = (*set.items).clone();
    items.insert(side.name.clone(), Arc::clone(side));
    ResourceSet::new(items)
}

impl World {
    pub fn new(config: Config) -> World {
        let builder = SnapshotBuilder::new(
            Listen {
                default: "127.0.0.1:8080".parse().expect("an address"),
                fleets: BTreeMap::new(),
            },
            None,
        );
        let mut world = World {
            builder,
            snap: Arc::new(Snapshot::plain(
                "default".into(),
                ResourceSet::default(),
                ResourceSet::default(),
                ResourceSet::default(),
            )),
            archive: Archive::default(),
        };
        world.snap = Arc::new(world.build(config));
        world.record();
        world
    }

    /// The snapshot `config` makes.
    fn build(&mut self, config: Config) -> Snapshot {
        let mut files = vec![mapping("main", "/q/", "main", None)];
        let canary = config.canary.map(|(service, weight)| {
            let service = ["canary-a", "canary-b"][usize::from(service)];
            files.push(mapping("canary", "/q/", service, Some(weight)));
            service
        });
        let second = config.second.map(|service| {
            let service = ["second-a", "second-b"][usize::from(service)];
            files.push(mapping("second", "/r/", service, None));
            service
        });
        let parsed: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, text)| parse_file(&format!("f{i}.yaml"), text.as_bytes()))
            .collect();
        let tables = compile(&parsed, None).tables;
        let table = Arc::clone(&tables.fleets["default"]);
        let s = self.builder.build("default", table);
        self.builder.retain();
        let side = side_table(&match (config.side, canary, second) {
            (1, Some(c), _) => vec![c],
            (2, _, Some(s)) => vec![s],
            (3, Some(c), _) => vec!["main", c],
            _ => vec!["main"],
        });
        let mut snap = Snapshot::new(
            s.fleet.clone(),
            s.clusters.clone(),
            s.listeners.clone(),
            with_side(&s.routes, &side),
            with_side(&s.routes_runtime, &side),
            s.runtime.clone(),
        );
        // The side table names only clusters of the snapshot, like every table ours.
        snap.routes_within_clusters = s.routes_within_clusters;
        snap
    }

    /// Records the current snapshot's sets, as a hub does with what it publishes.
    fn record(&mut self) {
        self.archive.record_snapshot(&self.snap);
    }

    /// Publishes the snapshot of `config`.
    pub fn publish(&mut self, config: Config) {
        self.snap = Arc::new(self.build(config));
        self.archive.next_generation();
        self.record();
    }

    /// A restarted server: the same files, nothing remembered of what was sent.
    pub fn restart(&mut self) {
        self.archive = Archive::default();
        self.record();
    }

    /// The snapshot's items of `kind` for an Envoy with (or without) the runtime layer.
    pub fn items(&self, kind: Kind, runtime: bool) -> &Items {
        &self.snap.set_for(kind, runtime).items
    }
}
