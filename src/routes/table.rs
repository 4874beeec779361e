//! The route table types: one table per fleet, routes in the order Envoy will try them, each
//! route's backends with their exact shares and the Envoy cluster each one goes through.
//!
//! This is the model the rest of canary-xds serves and shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::{Bp, ClusterSettings, Mapping, RouteKey, Service};
use crate::model::weights::Remark;

/// Cluster names Envoy already uses for its own purposes (the bootstrap's xDS cluster).
pub const RESERVED_CLUSTER_NAMES: &[&str] = &["xds_cluster"];

/// The route tables of every fleet, by fleet name. The `default` fleet is always present.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tables {
    pub fleets: BTreeMap<String, Arc<RouteTable>>,
}

impl Tables {
    pub fn fleet(&self, name: &str) -> Option<&RouteTable> {
        self.fleets.get(name).map(Arc::as_ref)
    }
}

/// The routes of one fleet, in Envoy's matching order, and the clusters they use.
///
/// Routes and cluster specs are shared: a compile given the last tables reuses each route whose
/// Mappings did not change, so a reload costs what changed and the snapshot builder can tell
/// an unchanged route by its address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTable {
    pub routes: Vec<Arc<Route>>,
    pub clusters: Arc<BTreeMap<String, Arc<ClusterSpec>>>,
}

impl RouteTable {
    pub fn route(&self, key: &RouteKey) -> Option<&Route> {
        self.routes.iter().find(|r| &r.key == key).map(Arc::as_ref)
    }

    pub fn mapping_count(&self) -> usize {
        self.routes
            .iter()
            .map(|r| r.backends.len() + usize::from(r.shadow.is_some()))
            .sum()
    }
}

/// One route: the Mappings that share a match, with their shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub key: RouteKey,
    /// In (namespace, name) order; the weights sum to exactly 10000.
    pub backends: Vec<Backend>,
    pub shadow: Option<Shadow>,
    /// Set when `serve` kept this route's last good weights; says why.
    pub held: Option<String>,
    /// What the arithmetic had to say about the weights, reported again on every compile.
    pub remark: Option<Remark>,
}

impl Route {
    /// The route's primary, by structure alone: the first backend (they are in (namespace,
    /// name) order) of a Mapping without a weight, or the first backend when every Mapping has
    /// one. A runtime Envoy's route table gives it 100% until the runtime layer says otherwise.
    pub fn primary(&self) -> usize {
        self.backends
            .iter()
            .position(|b| b.mapping.weight.is_none())
            .unwrap_or(0)
    }
}

/// A Mapping's share of a route, with everything it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub mapping: Arc<Mapping>,
    pub weight_bp: Bp,
    pub cluster: String,
}

/// A shadow Mapping: `percent_bp` hundredths of the route's requests are mirrored to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Shadow {
    pub mapping: Arc<Mapping>,
    pub percent_bp: Bp,
    pub cluster: String,
}

/// What Envoy needs to know of a cluster: its upstream and settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ClusterSpec {
    pub service: Service,
    pub settings: ClusterSettings,
}

/// The route tables and every diagnostic about the input.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub tables: Tables,
    pub diagnostics: Vec<Diagnostic>,
}
