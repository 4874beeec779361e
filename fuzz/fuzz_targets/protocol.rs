//! Any bytes, as a script of a simulated Envoy talking to one stream's protocol state (SotW or
//! delta requests, ACKs and NACKs, stale nonces, subscriptions, wildcards, reconnects with what
//! it holds, server restarts) while new snapshots are published. It must never panic nor break
//! an invariant: see `canary_xds::xds::stream::sim` (the `fuzz` feature; the property test in
//! the suite runs the same simulation).

#![no_main]

use canary_xds::xds::stream::sim;
use libfuzzer_sys::fuzz_target;

/// Longer than the property test's 40: state must stay bounded however long a stream lives.
const MAX_STEPS: usize = 400;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = sim::run(data, MAX_STEPS) {
        panic!("{failure}");
    }
});
