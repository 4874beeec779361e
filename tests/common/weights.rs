//! Waiting for weights: the split a real Envoy routes by, and the one canary-xds serves in
//! process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use canary_xds::admin::AdminState;

use super::envoy::Envoy;
use super::wait::wait_for;

/// Waits until Envoy's weights for `prefix` are exactly `expected` (cluster, weight in basis
/// points: 10000 is all the traffic).
pub fn wait_weights(envoy: &Envoy, prefix: &str, expected: &[(&str, u64)], timeout: Duration) {
    let expected: BTreeMap<String, u64> =
        expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    wait_for(&format!("weights {expected:?}"), timeout, || {
        (envoy.weights(prefix) == expected).then_some(())
    });
}

/// The order `served_weights` lists backends in.
#[derive(Clone, Copy, Debug)]
pub enum Order {
    /// As the route table holds them.
    Served,
    /// By Mapping name, then weight.
    ByName,
}

/// The default fleet's backends as canary-xds serves them in process: (Mapping, weight_bp).
pub fn served_weights(admin: &AdminState, order: Order) -> Vec<(String, u32)> {
    let served = admin.served();
    let mut out: Vec<(String, u32)> = served
        .tables
        .fleet("default")
        .expect("the default fleet")
        .routes
        .iter()
        .flat_map(|r| {
            r.backends
                .iter()
                .map(|b| (b.mapping.id.name.clone(), b.weight_bp))
        })
        .collect();
    if let Order::ByName = order {
        out.sort();
    }
    out
}

/// Waits until `served_weights(admin, order)` is `expected`.
pub async fn wait_served(
    admin: &AdminState,
    expected: &[(&str, u32)],
    order: Order,
    timeout: Duration,
) {
    let expected: Vec<(String, u32)> = expected.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    let deadline = Instant::now() + timeout;
    while served_weights(admin, order) != expected {
        assert!(
            Instant::now() < deadline,
            "timed out: {:?} is not {expected:?}",
            served_weights(admin, order)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
