//! What a change of Mappings will do to traffic: two sides (each fleet's routes as served,
//! with their diagnostics) compared route by route, matched by their match, never by position.
//!
//! Pure: `cmd diff` reads the directories (through `serve`'s own containment, so that NEW is
//! what would really be served) or a server's `/api/routes`, and hands the sides here.
//! `diff_sides` makes the typed `DiffReport`; `render` and `markdown` show it.

mod compare;
mod markdown;
mod overlap;
pub mod render;
mod report;
mod risk;
mod settings;
mod side;

pub use compare::{FleetScope, diff_sides};
pub use markdown::markdown;
pub use overlap::may_overlap;
pub use report::{
    BackendDelta, ClusterDelta, DIFF_FORMAT, DiffReport, FleetDiff, MirrorEnd, RiskKind, RiskNote,
    RouteChange, RouteDiff, SettingDelta, ShadowDelta, cluster_stats,
};
pub use side::{BackendView, DiffSide, MappingSettings, RouteView, RoutesDocError};

#[cfg(test)]
mod tests;
