//! Shared helpers of the integration tests, one concern per module. Every wait polls with a
//! deadline; every port comes from the kernel (bind port 0); tests that start Envoy hold
//! `envoy_lock()`, so they run one at a time on a 2-core machine.
//!
//! Each test binary uses part of this (`mod common;`), hence the `allow`s.

#![allow(dead_code, unused_imports, unused_macros)]

pub mod admin;
pub mod ads;
pub mod bootstrap;
pub mod canary;
pub mod chromium;
pub mod control_plane;
pub mod envoy;
pub mod golden;
pub mod http;
pub mod in_process;
pub mod manifests;
pub mod mapping;
pub mod pki;
pub mod tools;
pub mod traffic;
pub mod upstream;
pub mod wait;
pub mod weights;
pub mod workdir;

pub use admin::{metric, wait_admin_ready};
pub use ads::{
    ClientTls, ads_channel, delta_on, end_status, first_cds, node, open_ads, open_ads_with_window,
    sotw_on,
};
pub use bootstrap::{
    Boot, bootstrap, bootstrap_with, envoy_validate, envoy_validate_pb, strict_regex,
};
pub use canary::{canary_clusters, canary_files, canary_split};
pub use chromium::{Chromium, artifacts_dir};
pub use control_plane::{ControlPlane, canary_xds, sigterm};
pub use envoy::{Envoy, envoy_lock};
pub use golden::{assert_golden, golden_path, repo_root};
pub use http::{Client, Reply, free_port, get_json, http_get};
pub use in_process::{serve_in_process, stop_in_process};
pub use mapping::{Mapping, mapping, mapping_body, write_atomically};
pub use pki::{CertFiles, Pki};
pub use tools::{have_envoy, have_kubectl, tool_available, under_ci};
pub(crate) use tools::{require_chromium, require_envoy};
pub use traffic::{Traffic, binomial_interval, tally};
pub use upstream::Upstream;
pub use wait::{wait_for, wait_until};
pub use weights::{Order, served_weights, wait_served, wait_weights};
pub use workdir::{WorkDir, mappings_dir};
