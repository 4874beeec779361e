//! What a route table costs Envoy, measured before its route configuration is built: the
//! route entries across virtual hosts and the encoded size. A table over the limits is refused,
//! so that two valid files (thousands of hosts, thousands of hostless routes) cannot make a
//! table of millions of entries that takes seconds to build and hundreds of MiB to hold.

use std::fmt;
use std::sync::Arc;

use super::SnapshotBuilder;
use crate::envoy::translate::{self, Growth, thousands};
use crate::routes::{Route, RouteTable};

/// The default `--max-routes`: route entries per fleet, across its virtual hosts.
pub const DEFAULT_MAX_ROUTES: u64 = 500_000;
/// The default `--max-route-bytes`: a fleet's encoded route configuration.
pub const DEFAULT_MAX_ROUTE_BYTES: u64 = 256 * 1024 * 1024;

/// The most a fleet's route configuration may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLimits {
    /// Route entries (`VirtualHost.routes` entries, every link of a chain counted) across every
    /// virtual host.
    pub max_routes: u64,
    /// The encoded route configuration, in bytes.
    pub max_bytes: u64,
}

impl Default for RouteLimits {
    fn default() -> Self {
        RouteLimits {
            max_routes: DEFAULT_MAX_ROUTES,
            max_bytes: DEFAULT_MAX_ROUTE_BYTES,
        }
    }
}

/// The size of a fleet's route configuration, counted without building it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSize {
    /// Route entries across every virtual host.
    pub entries: u64,
    /// Virtual hosts, `*` included.
    pub virtual_hosts: u64,
    /// The route entries' encoded bytes across every virtual host (the configuration's own
    /// framing, a few bytes per virtual host, aside).
    pub bytes: u64,
}

/// A route table over the limits, and why it is so big.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oversized {
    pub size: TableSize,
    pub limits: RouteLimits,
    pub growth: Growth,
}

impl fmt::Display for Oversized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, l) = (&self.size, &self.limits);
        if s.entries > l.max_routes {
            write!(
                f,
                "the route table would hold {} route entries across {} virtual hosts, over the \
                 limit of {} (--max-routes)",
                thousands(s.entries),
                thousands(s.virtual_hosts),
                thousands(l.max_routes)
            )?;
        } else {
            write!(
                f,
                "the route table would take {} bytes encoded, over the limit of {} \
                 (--max-route-bytes)",
                thousands(s.bytes),
                thousands(l.max_bytes)
            )?;
        }
        if self.growth.hosts > 0 && self.growth.hostless > 0 {
            write!(f, ": {}", self.growth)?;
        }
        Ok(())
    }
}

/// A fleet's last measured table, with each route's part of the size: a table whose route keys
/// are the same (what a weight or setting change gives) is measured again from its changed
/// routes alone.
pub(super) struct Measured {
    table: Arc<RouteTable>,
    repeats: Vec<u64>,
    /// Each route's entries and bytes in one virtual host.
    parts: Vec<(u64, u64)>,
    size: TableSize,
}

impl SnapshotBuilder {
    /// What `table` would cost Envoy, translating and encoding only its routes not cached yet
    /// (once each, however many virtual hosts repeat them).
    pub fn measure(&mut self, fleet: &str, table: &Arc<RouteTable>) -> TableSize {
        if let Some(mut m) = self.measured.remove(fleet)
            && m.table.routes.len() == table.routes.len()
        {
            let changed: Vec<usize> = (0..table.routes.len())
                .filter(|&i| !Arc::ptr_eq(&m.table.routes[i], &table.routes[i]))
                .collect();
            if changed
                .iter()
                .all(|&i| m.table.routes[i].key == table.routes[i].key)
            {
                for i in changed {
                    let part = self.part(&table.routes[i]);
                    let (n, old) = (m.repeats[i], m.parts[i]);
                    m.size.entries = (m.size.entries.saturating_sub(n * old.0))
                        .saturating_add(n.saturating_mul(part.0));
                    m.size.bytes = (m.size.bytes.saturating_sub(n * old.1))
                        .saturating_add(n.saturating_mul(part.1));
                    m.parts[i] = part;
                }
                m.table = Arc::clone(table);
                let size = m.size;
                self.measured.insert(fleet.to_string(), m);
                return size;
            }
        }
        let repeats = translate::repetitions(table);
        let parts: Vec<(u64, u64)> = table.routes.iter().map(|r| self.part(r)).collect();
        let mut size = TableSize {
            virtual_hosts: translate::virtual_hosts(table),
            ..TableSize::default()
        };
        for (&n, &(entries, bytes)) in repeats.iter().zip(&parts) {
            size.entries = size.entries.saturating_add(n.saturating_mul(entries));
            size.bytes = size.bytes.saturating_add(n.saturating_mul(bytes));
        }
        self.measured.insert(
            fleet.to_string(),
            Measured {
                table: Arc::clone(table),
                repeats,
                parts,
                size,
            },
        );
        size
    }

    /// A route's entries and encoded bytes in one virtual host.
    fn part(&mut self, r: &Arc<Route>) -> (u64, u64) {
        (
            translate::links(r),
            self.cached_route(r).entries.len() as u64,
        )
    }

    /// `Err` when fleet's `table` is over `limits`, saying by how much and why.
    pub fn check(
        &mut self,
        fleet: &str,
        table: &Arc<RouteTable>,
        limits: RouteLimits,
    ) -> Result<(), Oversized> {
        let size = self.measure(fleet, table);
        if size.entries <= limits.max_routes && size.bytes <= limits.max_bytes {
            return Ok(());
        }
        Err(Oversized {
            size,
            limits,
            growth: translate::growth(table),
        })
    }
}
