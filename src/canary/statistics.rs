//! Pure statistics for judging a canary against its primary: tests on error counts, a
//! correction for testing many routes at once, and percentiles from cumulative histograms.
//!
//! Nothing here reads a clock, a file or the network, so every function is tested with plain
//! numbers (the expected values in the tests come from textbook and scipy/statsmodels examples,
//! worked out by hand where the test says so).
//!
//! The error test is one-sided: the question is only ever "does the canary fail more often than
//! the primary?". [`error_test`] decides with Fisher's exact test for every table up to
//! [`FISHER_MAX_ERRORS`] errors, and with the two-proportion z-test (continuity corrected) only
//! beyond. The reason is measured, not folklore: for the typical 90/10 split the plain one-sided
//! z-test flags healthy canaries more often than its nominal rate (1.50% instead of 1% at 1,000
//! versus 9,000 requests failing 1%; see `plain_z_test_overshoots_on_a_90_10_split`), while
//! Fisher's test never does and costs a few hundred multiplications with the recurrence used
//! here. The z statistic is still reported beside it, for people.

/// Up to this many errors on the two backends together, [`error_test`] uses Fisher's exact test;
/// beyond, the continuity-corrected z-test. Fisher's tail sum takes O(sqrt(errors)) steps, so the
/// bound only keeps the log-gamma arithmetic far from the sizes where it would lose precision.
pub const FISHER_MAX_ERRORS: u64 = 100_000;

// --- the normal distribution ---

/// The complementary error function for `x >= 0`, to about 1e-15 relative.
///
/// Below 2.5 a series with only positive terms gives erf (no cancellation); above, a continued
/// fraction gives erfc directly, so the far tail keeps full relative precision.
fn erfc_nonneg(x: f64) -> f64 {
    const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
    if x < 2.5 {
        // erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1))
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        1.0 - FRAC_2_SQRT_PI * (-x2).exp() * sum
    } else {
        // erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))),
        // evaluated with the modified Lentz method.
        let tiny = 1e-300;
        let mut f = x;
        let mut c = x;
        let mut d = 0.0;
        for n in 1..1000 {
            let a = f64::from(n) / 2.0;
            d = x + a * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = x + a / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        FRAC_2_SQRT_PI / 2.0 * (-x * x).exp() / f
    }
}

/// The standard normal distribution function: P(Z <= z).
pub fn normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    let x = z / std::f64::consts::SQRT_2;
    if x <= 0.0 {
        0.5 * erfc_nonneg(-x)
    } else {
        1.0 - 0.5 * erfc_nonneg(x)
    }
}

/// The upper tail P(Z > z), exact in the far tail (where `1 - normal_cdf(z)` would be 0).
pub fn normal_sf(z: f64) -> f64 {
    normal_cdf(-z)
}

/// The standard normal quantile: the `z` with `normal_cdf(z) == p`. `p` outside (0, 1) gives
/// -inf, +inf or NaN.
///
/// Acklam's rational approximation (about 1e-9 relative), then one Halley step on
/// [`normal_cdf`], which brings it to double precision.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    // Halley's step; in the upper tail work with the upper tail so that `p` close to 1 keeps
    // its precision.
    let e = if x > 0.0 {
        (1.0 - p) - normal_sf(x)
    } else {
        normal_cdf(x) - p
    };
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

// --- tests on error counts ---

/// Requests and failures of one backend over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests answered.
    pub requests: u64,
    /// Of those, failures (5xx).
    pub errors: u64,
}

impl Counts {
    /// The failure rate, or `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// The result of the one-sided two-proportion z-test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZTest {
    /// The statistic: how many standard errors the first rate is above the second.
    pub z: f64,
    /// P(Z >= z) under "both rates are equal".
    pub p_value: f64,
}

/// The one-sided two-proportion z-test of "the first rate is higher", with the pooled standard
/// error, as `statsmodels.stats.proportion.proportions_ztest([x1, x2], [n1, n2],
/// alternative="larger")`. `continuity` subtracts Yates' correction (1/n1 + 1/n2)/2 from the
/// difference, which brings the test closer to Fisher's. `None` when a side has no requests or
/// the pooled rate is 0 or 1 (no variance: the data cannot show a difference).
pub fn two_proportion_z(first: Counts, second: Counts, continuity: bool) -> Option<ZTest> {
    if first.requests == 0 || second.requests == 0 {
        return None;
    }
    let (n1, n2) = (first.requests as f64, second.requests as f64);
    let pooled = (first.errors + second.errors) as f64 / (n1 + n2);
    if pooled <= 0.0 || pooled >= 1.0 {
        return None;
    }
    let inv = 1.0 / n1 + 1.0 / n2;
    let se = (pooled * (1.0 - pooled) * inv).sqrt();
    let mut diff = first.errors as f64 / n1 - second.errors as f64 / n2;
    if continuity {
        diff -= inv / 2.0;
    }
    let z = diff / se;
    Some(ZTest {
        z,
        p_value: normal_sf(z),
    })
}

/// ln Γ(x) for x >= 0.5 (Lanczos, g = 7, n = 9: about 1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut a = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln C(n, k).
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// Fisher's exact test, one-sided, of the 2x2 table `[[a, b], [c, d]]` = `[[first's errors,
/// first's successes], [second's errors, second's successes]]`: the probability, with every
/// margin fixed, of a table at least as bad for the first row. The same as
/// `scipy.stats.fisher_exact([[a, b], [c, d]], alternative="greater").pvalue`.
///
/// The hypergeometric terms are summed from the observed count outwards by their ratio, away
/// from the mode (so each sum shrinks geometrically and stops when a term no longer counts):
/// O(sqrt(errors)) steps at any size.
pub fn fisher_exact_greater(first: Counts, second: Counts) -> f64 {
    let n1 = first.requests;
    let n2 = second.requests;
    let a = first.errors.min(n1);
    let k = a + second.errors.min(n2);
    let n = n1 + n2;
    if n1 == 0 || n2 == 0 || k == 0 || k == n {
        return 1.0;
    }
    let lo = k.saturating_sub(n2);
    let hi = k.min(n1);
    if a <= lo {
        return 1.0;
    }
    let ln_total = ln_choose(n, k);
    let pmf = |x: u64| (ln_choose(n1, x) + ln_choose(n2, k - x) - ln_total).exp();
    // The mode of the hypergeometric distribution.
    let mode = ((n1 + 1) as f64 * (k + 1) as f64 / (n + 2) as f64).floor() as u64;
    if a > mode {
        // Upper tail: terms shrink as x grows.
        let mut term = pmf(a);
        let mut sum = term;
        let mut x = a;
        while x < hi {
            term *= (n1 - x) as f64 * (k - x) as f64 / ((x + 1) as f64 * (n2 + x + 1 - k) as f64);
            x += 1;
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        sum.min(1.0)
    } else {
        // 1 - P(X <= a - 1); terms shrink as x falls below the mode.
        let mut x = a - 1;
        let mut term = pmf(x);
        let mut sum = term;
        while x > lo {
            term *= x as f64 * (n2 + x - k) as f64 / ((n1 - x + 1) as f64 * (k - x + 1) as f64);
            x -= 1;
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        (1.0 - sum).clamp(0.0, 1.0)
    }
}

/// Which test decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Fisher's exact test, one-sided.
    Fisher,
    /// The pooled two-proportion z-test with continuity correction, one-sided.
    ZTest,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Fisher => "Fisher",
            Method::ZTest => "z-test",
        })
    }
}

/// The outcome of [`error_test`]: the p-value of "the canary fails more often than the primary"
/// before any correction for multiple routes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorTest {
    pub method: Method,
    pub p_value: f64,
    /// The plain z statistic (no continuity correction), for people: how many standard errors
    /// the canary's rate is above the primary's. `None` when it is undefined (no errors at all).
    pub z: Option<f64>,
}

/// Tests whether `canary` fails more often than `primary`: Fisher's exact test up to
/// [`FISHER_MAX_ERRORS`] errors, the continuity-corrected z-test beyond (see the module doc).
/// `None` when a side has no requests: nothing can be said.
pub fn error_test(canary: Counts, primary: Counts) -> Option<ErrorTest> {
    if canary.requests == 0 || primary.requests == 0 {
        return None;
    }
    let z = two_proportion_z(canary, primary, false).map(|t| t.z);
    if canary.errors + primary.errors <= FISHER_MAX_ERRORS {
        return Some(ErrorTest {
            method: Method::Fisher,
            p_value: fisher_exact_greater(canary, primary),
            z,
        });
    }
    let p_value = two_proportion_z(canary, primary, true).map_or(1.0, |t| t.p_value);
    Some(ErrorTest {
        method: Method::ZTest,
        p_value,
        z,
    })
}

// --- many routes at once ---

/// Holm's step-down adjusted p-values, in the input's order: sorted ascending, the i-th
/// smallest (from 0) is multiplied by `m - i`, then made non-decreasing and capped at 1. A
/// hypothesis is rejected at family-wise rate `alpha` when its adjusted p-value is at most
/// `alpha`. Holm controls the family-wise error rate under any dependence between the tests,
/// like Bonferroni, and rejects at least as much. As `statsmodels`' `multipletests(p,
/// method="holm")`.
pub fn holm_adjust(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]).then(i.cmp(&j)));
    let mut out = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let adjusted = (p_values[i] * (m - rank) as f64).min(1.0);
        running = running.max(adjusted);
        out[i] = running;
    }
    out
}

/// Bonferroni's adjusted p-values: each times the number of tests, capped at 1.
pub fn bonferroni_adjust(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len() as f64;
    p_values.iter().map(|p| (p * m).min(1.0)).collect()
}

// --- histograms ---

/// One bucket of a cumulative histogram: how many observations were at most `le`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The upper bound (inclusive); `f64::INFINITY` for the last bucket.
    pub le: f64,
    /// Observations at most `le` (cumulative).
    pub count: u64,
}

/// A cumulative histogram as Prometheus exposes it (`_bucket{le="..."}`), buckets ordered by
/// `le`. Envoy's are cumulative since it started; the difference of two readings is the
/// histogram of the time between them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<Bucket>,
}

/// A percentile read from a histogram.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Quantile {
    /// The value, in the histogram's unit (milliseconds for Envoy's `upstream_rq_time`).
    pub value: f64,
    /// The percentile fell in the `+Inf` bucket: `value` is the largest finite bound, and the
    /// truth is at least that.
    pub capped: bool,
}

impl Histogram {
    /// A histogram from `(le, cumulative count)` pairs in any order.
    pub fn new(mut buckets: Vec<Bucket>) -> Histogram {
        buckets.sort_by(|a, b| a.le.total_cmp(&b.le));
        Histogram { buckets }
    }

    /// The number of observations (the `+Inf` bucket, or the largest bucket there is).
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.count)
    }

    /// The histogram of what happened between `earlier` and `self`: bucket by bucket
    /// differences. `None` when a bucket went down or the bounds differ: the source restarted
    /// (or was reconfigured) in between, and the caller decides what to do.
    pub fn since(&self, earlier: &Histogram) -> Option<Histogram> {
        if earlier.buckets.is_empty() {
            return Some(self.clone());
        }
        if earlier.buckets.len() != self.buckets.len() {
            return None;
        }
        self.buckets
            .iter()
            .zip(&earlier.buckets)
            .map(|(now, then)| {
                let count = now.count.checked_sub(then.count)?;
                (now.le == then.le).then_some(Bucket { le: now.le, count })
            })
            .collect::<Option<Vec<_>>>()
            .map(|buckets| Histogram { buckets })
    }

    /// The sum of two histograms (two Envoys). With different bounds, the union of the bounds,
    /// each side counting what it knows to be at most that bound (its largest bucket below):
    /// an undercount inside the odd buckets, never an invented observation.
    pub fn add(&self, other: &Histogram) -> Histogram {
        if self.buckets.is_empty() {
            return other.clone();
        }
        if other.buckets.is_empty() {
            return self.clone();
        }
        let mut bounds: Vec<f64> = self
            .buckets
            .iter()
            .chain(&other.buckets)
            .map(|b| b.le)
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let at = |h: &Histogram, le: f64| {
            h.buckets
                .iter()
                .take_while(|b| b.le <= le)
                .last()
                .map_or(0, |b| b.count)
        };
        Histogram {
            buckets: bounds
                .into_iter()
                .map(|le| Bucket {
                    le,
                    count: at(self, le) + at(other, le),
                })
                .collect(),
        }
    }

    /// The `q`-quantile (0 <= q <= 1), as Prometheus' `histogram_quantile` computes it: find
    /// the bucket holding rank `q * count` and interpolate linearly inside it, the first
    /// bucket starting at 0 (a latency is never negative). When the rank falls in the `+Inf`
    /// bucket, the largest finite bound is returned, marked `capped`. `None` without
    /// observations, without a `+Inf` bucket, or without a finite bucket.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        let last = self.buckets.last()?;
        if last.le != f64::INFINITY || self.buckets.len() < 2 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let total = last.count;
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        // The first bucket whose cumulative count reaches the rank.
        let i = self
            .buckets
            .iter()
            .position(|b| b.count as f64 >= rank)
            .unwrap_or(self.buckets.len() - 1);
        if i == self.buckets.len() - 1 {
            return Some(Quantile {
                value: self.buckets[i - 1].le,
                capped: true,
            });
        }
        let end = self.buckets[i].le;
        let (start, below) = if i == 0 {
            if end <= 0.0 {
                return Some(Quantile {
                    value: end,
                    capped: false,
                });
            }
            (0.0, 0)
        } else {
            (self.buckets[i - 1].le, self.buckets[i - 1].count)
        };
        let inside = self.buckets[i].count.saturating_sub(below);
        let value = if inside == 0 {
            end
        } else {
            start + (end - start) * (rank - below as f64) / inside as f64
        };
        Some(Quantile {
            value,
            capped: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, rel: f64) {
        let tol = rel * expected.abs().max(f64::MIN_POSITIVE);
        assert!(
            (actual - expected).abs() <= tol,
            "{actual:e} is not within {rel:e} of {expected:e}"
        );
    }

    fn c(requests: u64, errors: u64) -> Counts {
        Counts { requests, errors }
    }

    // Expected values of the normal distribution: Python's math.erfc (correctly rounded to a
    // few ulp), 0.5 * erfc(-z / sqrt(2)), and statistics.NormalDist().inv_cdf.
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
    fn normal_quantile_matches_reference_values() {
        let cases = [
            (1e-10, -6.361340902404056),
            (1e-6, -4.753424308822899),
            (0.001, -3.090232306167813),
            (0.01, -2.3263478740408408),
            (0.025, -1.9599639845400538),
            (0.05, -1.6448536269514726),
            (0.3, -0.5244005127080407),
            (0.9, 1.2815515655446008),
            (0.99, 2.3263478740408408),
            (0.999, 3.090232306167813),
        ];
        for (p, z) in cases {
            close(normal_quantile(p), z, 1e-12);
        }
        assert_eq!(normal_quantile(0.5), 0.0);
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(1.5).is_nan());
        // The round trip.
        for p in [1e-8, 0.0123, 0.4, 0.77, 0.995] {
            close(normal_cdf(normal_quantile(p)), p, 1e-12);
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
        assert_eq!(t.method, Method::Fisher);
        // 3% against 1%: p = 1.58e-6.
        assert!(t.p_value < 1e-5 && t.p_value > 1e-7, "{t:?}");
        assert!(t.z.unwrap() > 5.0);
        let t = error_test(c(10_000_000, 60_000), c(10_000_000, 50_000)).unwrap();
        assert_eq!(t.method, Method::ZTest);
        assert!(t.p_value < 1e-12);
        assert_eq!(error_test(c(0, 0), c(10, 1)), None);
        // A canary better than its primary is not worse.
        assert!(error_test(c(1000, 0), c(1000, 50)).unwrap().p_value > 0.99);
    }

    /// Holm's example worked by hand (and `multipletests([0.01, 0.04, 0.03, 0.005], method=
    /// "holm")`): sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04,
    /// made monotone: 0.02, 0.03, 0.06, 0.06.
    #[test]
    fn holm_and_bonferroni_adjust_known_values() {
        let adjusted = holm_adjust(&[0.01, 0.04, 0.03, 0.005]);
        for (a, e) in adjusted.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            close(*a, e, 1e-12);
        }
        let bonf = bonferroni_adjust(&[0.01, 0.04, 0.03, 0.005]);
        for (a, e) in bonf.iter().zip([0.04, 0.16, 0.12, 0.02]) {
            close(*a, e, 1e-12);
        }
        assert_eq!(holm_adjust(&[0.6, 0.9]), vec![1.0, 1.0]);
        assert!(holm_adjust(&[]).is_empty());
        // One test: unchanged.
        assert_eq!(holm_adjust(&[0.004]), vec![0.004]);
    }

    fn hist(pairs: &[(f64, u64)]) -> Histogram {
        Histogram::new(
            pairs
                .iter()
                .map(|&(le, count)| Bucket { le, count })
                .collect(),
        )
    }

    /// The worked example of Prometheus' documentation style: buckets 0.5, 1, 2, +Inf with
    /// cumulative counts 10, 20, 40, 40. The median (rank 20) ends bucket `le=1` exactly: 1.0.
    /// p90 (rank 36) is 16/20 into (1, 2]: 1.8. p10 (rank 4) is 4/10 into (0, 0.5]: 0.2.
    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        let h = hist(&[(0.5, 10), (1.0, 20), (2.0, 40), (f64::INFINITY, 40)]);
        close(h.quantile(0.5).unwrap().value, 1.0, 1e-12);
        close(h.quantile(0.9).unwrap().value, 1.8, 1e-12);
        close(h.quantile(0.1).unwrap().value, 0.2, 1e-12);
        assert!(!h.quantile(0.99).unwrap().capped);
        // Rank in +Inf: the largest finite bound, capped.
        let h = hist(&[(0.5, 1), (1.0, 2), (f64::INFINITY, 100)]);
        assert_eq!(
            h.quantile(0.99),
            Some(Quantile {
                value: 1.0,
                capped: true
            })
        );
        // Nothing observed, no +Inf bucket, a lone bucket: no answer.
        assert_eq!(hist(&[(1.0, 0), (f64::INFINITY, 0)]).quantile(0.5), None);
        assert_eq!(hist(&[(1.0, 3), (2.0, 5)]).quantile(0.5), None);
        assert_eq!(hist(&[(f64::INFINITY, 5)]).quantile(0.5), None);
    }

    #[test]
    fn a_window_is_the_difference_of_two_cumulative_readings() {
        let before = hist(&[(1.0, 1000), (10.0, 1050), (f64::INFINITY, 1050)]);
        let after = hist(&[(1.0, 1000), (10.0, 1150), (f64::INFINITY, 1152)]);
        let w = after.since(&before).unwrap();
        assert_eq!(w, hist(&[(1.0, 0), (10.0, 100), (f64::INFINITY, 102)]));
        // Inside the window everything took over 1 ms: the median is in (1, 10], not at the
        // 0.58 ms the totals since start would say.
        close(
            w.quantile(0.5).unwrap().value,
            1.0 + 9.0 * 51.0 / 100.0,
            1e-12,
        );
        assert!(after.quantile(0.5).unwrap().value < 1.0);
        // A restart in between (a count went down) is not a window.
        assert_eq!(before.since(&after), None);
        // Different bounds are not comparable either.
        assert_eq!(after.since(&hist(&[(2.0, 1), (f64::INFINITY, 1)])), None);
        assert_eq!(after.since(&Histogram::default()), Some(after.clone()));
    }

    #[test]
    fn histograms_of_two_envoys_add_up() {
        let a = hist(&[(1.0, 1), (2.0, 3), (f64::INFINITY, 4)]);
        let b = hist(&[(1.0, 2), (2.0, 2), (f64::INFINITY, 5)]);
        assert_eq!(a.add(&b), hist(&[(1.0, 3), (2.0, 5), (f64::INFINITY, 9)]));
        // Other bounds: the union, each side counting what is surely below.
        let c = hist(&[(1.5, 2), (f64::INFINITY, 2)]);
        assert_eq!(
            a.add(&c),
            hist(&[(1.0, 1), (1.5, 3), (2.0, 5), (f64::INFINITY, 6)])
        );
        assert_eq!(Histogram::default().add(&a), a);
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
    fn flags(canary: Counts, primary: Counts, alpha: f64) -> bool {
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
    fn false_positive_rate(n1: u64, n2: u64, p: f64, test: impl Fn(Counts, Counts) -> bool) -> f64 {
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
        let z =
            |a: Counts, b: Counts| two_proportion_z(a, b, false).is_some_and(|t| t.p_value <= 0.01);
        let rate = false_positive_rate(1000, 9000, 0.01, z);
        assert!(rate > 0.014 && rate < 0.016, "{rate}");
    }
}
