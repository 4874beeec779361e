//! The protocol fuzzer's invariants as a property test, so CI holds them on stable: random
//! scripts of a simulated Envoy (see `sim`) against the stream state, every invariant checked
//! after every step.

use proptest::prelude::*;

use super::sim;

/// Long enough for make-before-break to play out several times, short enough that 256
/// scripts take a few seconds.
const MAX_STEPS: usize = 40;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_envoys_never_break_a_protocol_invariant(
        data in proptest::collection::vec(any::<u8>(), 0..4 * MAX_STEPS),
    ) {
        if let Err(failure) = sim::run(&data, MAX_STEPS) {
            prop_assert!(false, "{}", failure);
        }
    }
}

/// Scripts from a fixed generator (xorshift), so the coverage below does not depend on luck.
fn scripts(n: usize, len: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n).map(move |_| {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    })
}

#[test]
fn the_scripts_reach_the_cases_that_matter() {
    let mut total = sim::Stats::default();
    for data in scripts(64, 4 * MAX_STEPS) {
        match sim::run(&data, MAX_STEPS) {
            Ok(stats) => total += stats,
            Err(failure) => panic!("{failure}"),
        }
    }
    // Clusters kept for routes that still use them (make-before-break at work), NACKs, stale
    // nonces, reconnects, restarts and quiet reconnects all happen.
    assert!(total.kept > 0, "{total:?}");
    assert!(total.nacks > 0, "{total:?}");
    assert!(total.stale > 0, "{total:?}");
    assert!(total.reconnects > 0, "{total:?}");
    assert!(total.restarts > 0, "{total:?}");
    // Reconnects holding what the snapshot gives: none of them may be answered.
    assert!(total.quiet > 0, "{total:?}");
    assert!(total.acks > total.nacks, "{total:?}");
}

/// Inputs the cargo-fuzz target once failed on, kept so that they stay fixed.
#[test]
fn the_fuzzers_findings_stay_fixed() {
    let findings: &[&[u8]] = &[
        // A SotW Envoy unsubscribes a route table, resubscribes, and reconnects holding the
        // version of the one table it kept.
        b"\x00sn\x00s\x00RRRR\x06\xe6\xd3\xd2\xc6~R",
    ];
    for data in findings {
        if let Err(failure) = sim::run(data, 400) {
            panic!("{failure}");
        }
    }
}
