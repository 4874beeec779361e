//! The configured weights: the routes whose traffic is split, with each backend's share, from
//! the route tables in process (here), from canary-xds's `/api/routes` ([`routes_json`]) or from
//! Envoy's `/config_dump` ([`config_dump`]).

use serde::Serialize;

use crate::routes::{RouteTable, Tables, describe};

pub mod config_dump;
pub mod routes_json;
pub mod runtime;

/// Where the configured weights came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightsFrom {
    /// canary-xds's admin API, `/api/routes`.
    ControlPlane,
    /// The Mapping files, read in process.
    Dir,
    /// Envoy's `/config_dump`.
    Envoy,
}

/// The routes whose traffic is split, with each backend's configured weight.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfiguredWeights {
    pub weights_from: WeightsFrom,
    /// The URL or directory read.
    pub source: String,
    /// The control plane's version of what it serves, when it says.
    pub version: Option<String>,
    pub routes: Vec<RouteWeights>,
}

/// One route: a description for people, and its backends.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteWeights {
    /// `/qotm/` or `/qotm/ (host foo.com, GET)`, as `check` describes routes.
    pub route: String,
    /// Something to know about the route, e.g. that `serve` holds it at its last good weights.
    pub note: Option<String>,
    pub backends: Vec<BackendWeight>,
}

/// One backend of a route.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendWeight {
    /// The Envoy cluster whose stats are this backend's.
    pub cluster: String,
    /// The Mapping's name, when known.
    pub mapping: Option<String>,
    pub namespace: Option<String>,
    /// The configured share in hundredths of a percent.
    pub weight_bp: u32,
    /// Whether the Mapping sets `weight` (`None`: not known, as from Envoy's config).
    pub weighted: Option<bool>,
}

impl BackendWeight {
    /// How people know it: the Mapping (`name`, `name.namespace` outside `default`), else the
    /// cluster.
    pub fn label(&self) -> String {
        match (&self.mapping, self.namespace.as_deref()) {
            (Some(m), None | Some("default")) => m.clone(),
            (Some(m), Some(ns)) => format!("{m}.{ns}"),
            (None, _) => self.cluster.clone(),
        }
    }
}

impl ConfiguredWeights {
    /// The weights of one fleet of in-memory route tables (the files read with
    /// `check::compile_dir`); a fleet no Mapping names has no routes.
    pub fn from_tables(tables: &Tables, fleet: &str, source: &str) -> ConfiguredWeights {
        match tables.fleet(fleet) {
            Some(t) => ConfiguredWeights::from_table(t, source),
            None => ConfiguredWeights {
                weights_from: WeightsFrom::Dir,
                source: source.to_string(),
                version: None,
                routes: Vec::new(),
            },
        }
    }

    /// The weights of one route table, such as the one `serve` publishes for a fleet; the
    /// caller may set `weights_from` and `version` to say where it came from.
    pub fn from_table(table: &RouteTable, source: &str) -> ConfiguredWeights {
        let routes = table
            .routes
            .iter()
            .map(|r| RouteWeights {
                route: describe(&r.key),
                note: r.held.clone(),
                backends: r
                    .backends
                    .iter()
                    .map(|b| BackendWeight {
                        cluster: b.cluster.clone(),
                        mapping: Some(b.mapping.id.name.clone()),
                        namespace: Some(b.mapping.id.namespace.clone()),
                        weight_bp: b.weight_bp,
                        weighted: Some(b.mapping.weight.is_some()),
                    })
                    .collect(),
            })
            .collect();
        ConfiguredWeights {
            weights_from: WeightsFrom::Dir,
            source: source.to_string(),
            version: None,
            routes,
        }
    }
}

#[cfg(test)]
mod tests;
