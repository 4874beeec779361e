//! The statistics checked against published and hand-worked values, and against simulated
//! identical traffic: the false-positive rate the verdict promises.

use super::*;

fn close(actual: f64, expected: f64, rel: f64) {
    let tol = rel * expected.abs().max(f64::MIN_POSITIVE);
    assert!(
        (actual - expected).abs() <= tol,
        "{actual:e} is not within {rel:e} of {expected:e}"
    );
}

fn c(requests: u64, errors: u64) -> RequestCounts {
    RequestCounts { requests, errors }
}

// Expected values of the normal distribution: Python's math.erfc (correctly rounded to a
// few ulp) and 0.5 * erfc(-z / sqrt(2)).
#[test]
fn normal_cdf_matches_reference_values() {
    let cases = [
        (-8.0, 6.220960574271819e-16),
        (-5.0, 2.866515718791946e-07),
        (-3.0, 0.0013498980316300957),
        (-1.0, 0.15865525393145707),
        (-0.5, 0.3085375387259869),
        (0.0, 0.5),
        (0.5, 0.6914624612740131),
        (1.0, 0.8413447460685429),
        (1.959963984540054, 0.975),
        (3.0, 0.9986501019683699),
    ];
    for (z, p) in cases {
        close(normal_cdf(z), p, 1e-13);
    }
    let tails = [
        (2.5, 0.006209665325776139),
        (3.5, 0.00023262907903552504),
        (4.0, 3.1671241833119965e-05),
        (6.0, 9.865876450377012e-10),
        (8.0, 6.220960574271819e-16),
        (10.0, 7.619853024160593e-24),
    ];
    for (z, p) in tails {
        close(normal_sf(z), p, 1e-12);
    }
    let erfc = [
        (0.1, 0.8875370839817152),
        (1.0, 0.15729920705028513),
        (2.4, 0.0006885138966450789),
        (2.6, 0.00023603441652934908),
        (5.0, 1.5374597944280351e-12),
        (10.0, 2.088487583762545e-45),
    ];
    for (x, e) in erfc {
        close(erfc_nonneg(x), e, 1e-12);
    }
}

#[test]
fn ln_gamma_matches_reference_values() {
    // Python's math.lgamma.
    for (x, v) in [
        (3.0, std::f64::consts::LN_2),
        (5.5, 3.9578139676187165),
        (10.0, 12.801827480081467),
        (100.0, 359.1342053695754),
        (1000.5, 5908.674175848678),
        (1e6, 12815504.569147611),
    ] {
        close(ln_gamma(x), v, 1e-13);
    }
    assert!(ln_gamma(1.0).abs() < 1e-14 && ln_gamma(2.0).abs() < 1e-14);
}

/// statsmodels' docstring example: `proportions_ztest([5, 12], [83, 99])` gives
/// z = -1.4078304151258787 (two-sided p 0.159). Turned around, the canary failing 12 of 99
/// against 5 of 83 is z = +1.4078 and the one-sided p is half: 0.0795906459.
#[test]
fn z_test_matches_statsmodels() {
    let t = two_proportion_z(c(99, 12), c(83, 5), false).unwrap();
    close(t.z, 1.4078304151258787, 1e-12);
    close(t.p_value, 0.07959064590578498, 1e-11);
    let t = two_proportion_z(c(83, 5), c(99, 12), false).unwrap();
    close(t.z, -1.4078304151258787, 1e-12);
    close(t.p_value, 1.0 - 0.07959064590578498, 1e-11);
    // By hand: pooled 17/182, se = 0.0433078...; with Yates' correction the difference
    // shrinks by (1/99 + 1/83)/2 = 0.0110746..., z = (0.0609712 - 0.0110746) / se.
    let cc = two_proportion_z(c(99, 12), c(83, 5), true).unwrap();
    let se = (17.0_f64 / 182.0 * (165.0 / 182.0) * (1.0 / 99.0 + 1.0 / 83.0)).sqrt();
    let diff = 12.0 / 99.0 - 5.0 / 83.0 - (1.0 / 99.0 + 1.0 / 83.0) / 2.0;
    close(cc.z, diff / se, 1e-12);
    // No errors anywhere: no variance, no test.
    assert_eq!(two_proportion_z(c(100, 0), c(100, 0), false), None);
    assert_eq!(two_proportion_z(c(0, 0), c(100, 1), false), None);
}

/// scipy's docstring example: `fisher_exact([[6, 2], [1, 4]], alternative="greater")`.
/// By hand: margins 8 and 5 requests, 7 errors of 13; P(X = x) = C(8, x) C(5, 7 - x) /
/// C(13, 7) with C(13, 7) = 1716: P(6) = 28 * 5 = 140, P(7) = 8 * 1 = 8, so
/// p = 148 / 1716 = 0.08624708624708624 (scipy prints 0.0862470862470862).
#[test]
fn fisher_matches_scipy_examples() {
    close(
        fisher_exact_greater(c(8, 6), c(5, 1)),
        148.0 / 1716.0,
        1e-12,
    );
    // Fisher's lady tasting tea, [[3, 1], [1, 3]]: (C(4,3) C(4,1) + 1) / C(8,4) = 17 / 70.
    close(fisher_exact_greater(c(4, 3), c(4, 1)), 17.0 / 70.0, 1e-12);
    // The other way round, [[1, 4], [6, 2]]: a = 1 is below the mode, so the sum runs
    // down: 1 - P(X = 0) = 1 - C(5, 0) C(8, 7) / 1716 = 1708 / 1716.
    close(
        fisher_exact_greater(c(5, 1), c(8, 6)),
        1708.0 / 1716.0,
        1e-12,
    );
    // [[10, 90], [2, 898]]: 12 errors in 1000, 100 of them on the canary.
    // P(X >= 10) = sum_{x=10}^{12} C(100, x) C(900, 12 - x) / C(1000, 12), worked out with
    // exact integers (Python's fractions and math.comb): 3.6499413575856494e-09.
    close(
        fisher_exact_greater(c(100, 10), c(900, 2)),
        3.6499413575856494e-09,
        1e-10,
    );
    // [[12, 988], [28, 8972]]: 40 errors in 10,000, 12 of them on the 10% canary
    // (4 expected): the same sum from 12 to 40 gives 0.00036850674938946536.
    close(
        fisher_exact_greater(c(1000, 12), c(9000, 28)),
        0.00036850674938946536,
        1e-10,
    );
    // Degenerate tables say nothing.
    assert_eq!(fisher_exact_greater(c(0, 0), c(10, 1)), 1.0);
    assert_eq!(fisher_exact_greater(c(10, 0), c(10, 0)), 1.0);
    assert_eq!(fisher_exact_greater(c(10, 10), c(10, 10)), 1.0);
}

/// The tail sum on a big table: it must not drift when the counts are large (Fisher runs
/// up to `FISHER_MAX_ERRORS`). 100,000 and 900,000 requests failing 1.1% and 1.0%: the sum
/// from 1,100 to 10,100 of C(100000, x) C(900000, 10100 - x) / C(1000000, 10100), done in
/// Python term by term with math.lgamma, is 0.0015859896336289168.
#[test]
fn fisher_stays_exact_on_large_tables() {
    let canary = c(100_000, 1_100);
    let primary = c(900_000, 9_000);
    close(
        fisher_exact_greater(canary, primary),
        0.0015859896336289168,
        1e-7,
    );
    // The continuity-corrected z-test is its normal approximation: close, not equal
    // (0.00142 here), which is why it only takes over far beyond this size.
    let z = two_proportion_z(canary, primary, true).unwrap().p_value;
    close(z, 0.0015859896336289168, 0.15);
}

#[test]
fn error_test_picks_fisher_for_small_counts_and_z_for_huge_ones() {
    let t = error_test(c(1000, 30), c(9000, 90)).unwrap();
    assert_eq!(t.method, ErrorTestMethod::Fisher);
    // 3% against 1%: p = 1.58e-6.
    assert!(t.p_value < 1e-5 && t.p_value > 1e-7, "{t:?}");
    assert!(t.z.unwrap() > 5.0);
    let t = error_test(c(10_000_000, 60_000), c(10_000_000, 50_000)).unwrap();
    assert_eq!(t.method, ErrorTestMethod::ZTest);
    assert!(t.p_value < 1e-12);
    assert_eq!(error_test(c(0, 0), c(10, 1)), None);
    // A canary better than its primary is not worse.
    assert!(error_test(c(1000, 0), c(1000, 50)).unwrap().p_value > 0.99);
}

/// Holm's example worked by hand (and `multipletests([0.01, 0.04, 0.03, 0.005], method=
/// "holm")`): sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04,
/// made monotone: 0.02, 0.03, 0.06, 0.06.
#[test]
fn holm_adjusts_known_values() {
    let adjusted = holm_adjust(&[0.01, 0.04, 0.03, 0.005]);
    for (a, e) in adjusted.iter().zip([0.03, 0.06, 0.06, 0.02]) {
        close(*a, e, 1e-12);
    }
    assert_eq!(holm_adjust(&[0.6, 0.9]), vec![1.0, 1.0]);
    assert!(holm_adjust(&[]).is_empty());
    // One test: unchanged.
    assert_eq!(holm_adjust(&[0.004]), vec![0.004]);
}

// --- false positives ---

/// SplitMix64: a small, well-mixed, seedable generator for simulations.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Binomial(n, p), exactly, by jumping from one success to the next: the number of
    /// failures before a success is geometric, P(gap >= g) = (1 - p)^g, which is
    /// floor(ln U / ln(1 - p)) for U uniform in (0, 1]. About n * p draws instead of n.
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        let ln_q = (-p).ln_1p();
        let mut successes = 0;
        let mut position = 0u64;
        loop {
            let u = 1.0 - self.uniform();
            let gap = (u.ln() / ln_q).floor() as u64;
            position = position.saturating_add(gap + 1);
            if position > n {
                return successes;
            }
            successes += 1;
        }
    }
}

/// The verdict's decision: worse when the one-sided p-value is at most alpha (one route,
/// so Holm changes nothing).
fn flags(canary: RequestCounts, primary: RequestCounts, alpha: f64) -> bool {
    error_test(canary, primary).is_some_and(|t| t.p_value <= alpha)
}

/// The simulation: windows of identical binomial traffic, both sides failing 1%,
/// are flagged as worse in at most 1% of windows. For a 90/10 canary (1,000 against 9,000
/// requests), an even split and a small 100/900 window.
///
/// Ten batches of 1,000 windows each, and the bound is asserted on all 10,000: the test's
/// exact rate is about 0.69% (below), so a single batch of 1,000 exceeds 10 flags by
/// chance in about 8% of seeds even though nothing is wrong; 10,000 windows exceed 100 in
/// about 1 of 10,000. Each batch's count is printed.
#[test]
fn identical_traffic_is_flagged_in_at_most_one_percent_of_windows() {
    let mut rng = SplitMix64(0x00c0_ffee_5eed_0001);
    for (n_canary, n_primary) in [(1000, 9000), (2000, 2000), (100, 900)] {
        let mut batches = Vec::new();
        for _ in 0..10 {
            let mut flagged = 0;
            for _ in 0..1000 {
                let canary = c(n_canary, rng.binomial(n_canary, 0.01));
                let primary = c(n_primary, rng.binomial(n_primary, 0.01));
                flagged += usize::from(flags(canary, primary, 0.01));
            }
            batches.push(flagged);
        }
        let total: usize = batches.iter().sum();
        eprintln!("{n_canary} vs {n_primary}: flagged per 1,000 windows {batches:?}");
        assert!(
            total <= 100,
            "{n_canary}/{n_primary}: {total} of 10,000 flagged"
        );
    }
}

/// The simulation's generator draws fair binomials: means and variances of 10,000 draws.
#[test]
fn the_simulated_binomials_are_binomial() {
    let mut rng = SplitMix64(7);
    let draws: Vec<f64> = (0..10_000)
        .map(|_| rng.binomial(9000, 0.01) as f64)
        .collect();
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
    // Binomial(9000, 0.01): mean 90, variance 89.1; the mean of 10,000 draws is within
    // 0.5 (5 standard errors of 0.094), the variance within 6%.
    assert!((mean - 90.0).abs() < 0.5, "{mean}");
    assert!((var - 89.1).abs() < 89.1 * 0.06, "{var}");
}

/// The same question without the luck of a seed: the exact probability that the test flags
/// identical traffic, summed over every pair of error counts with its binomial probability.
fn false_positive_rate(
    n1: u64,
    n2: u64,
    p: f64,
    test: impl Fn(RequestCounts, RequestCounts) -> bool,
) -> f64 {
    let pmf = |n: u64, k: u64| {
        (ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (-p).ln_1p()).exp()
    };
    // Beyond 12 standard deviations the probabilities no longer count.
    let limit = |n: u64| {
        let mean = n as f64 * p;
        n.min((mean + 12.0 * mean.sqrt() + 20.0) as u64)
    };
    let mut rate = 0.0;
    for a in 0..=limit(n1) {
        let pa = pmf(n1, a);
        for b in 0..=limit(n2) {
            if test(c(n1, a), c(n2, b)) {
                rate += pa * pmf(n2, b);
            }
        }
    }
    rate
}

#[test]
fn the_exact_false_positive_rate_is_at_most_alpha() {
    for (n1, n2) in [(1000, 9000), (2000, 2000), (100, 900), (300, 29_700)] {
        let rate = false_positive_rate(n1, n2, 0.01, |a, b| flags(a, b, 0.01));
        eprintln!("{n1} vs {n2}: false-positive rate {rate:.5}");
        assert!(rate <= 0.01, "{n1}/{n2}: {rate}");
    }
}

/// Why Fisher decides: the plain one-sided z-test, with the textbook "every expected count
/// at least 5", flags identical traffic on a 90/10 split in 1.5% of windows at alpha 1%.
#[test]
fn plain_z_test_overshoots_on_a_90_10_split() {
    let z = |a: RequestCounts, b: RequestCounts| {
        two_proportion_z(a, b, false).is_some_and(|t| t.p_value <= 0.01)
    };
    let rate = false_positive_rate(1000, 9000, 0.01, z);
    assert!(rate > 0.014 && rate < 0.016, "{rate}");
}

/// Counts at the top of u64 (read from a broken Envoy admin) give an answer, not an overflow:
/// the sums inside the tests stay in range.
#[test]
fn counts_at_u64_max_do_not_overflow() {
    let max = u64::MAX;
    let p = fisher_exact_greater(c(max, 50), c(max, 40));
    assert!((0.0..=1.0).contains(&p), "{p}");
    let t = error_test(c(max, max), c(max, 3)).unwrap();
    assert_eq!(t.method, ErrorTestMethod::ZTest);
    assert!(t.p_value < 1e-9, "{t:?}");
    assert!(two_proportion_z(c(max, max), c(max, max), true).is_none());
    assert!(error_test(c(max, 0), c(1, 0)).is_some());
}
