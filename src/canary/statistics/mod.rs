//! Pure statistics for judging a canary against its primary: tests on error counts, and a
//! correction for testing many routes at once. (Percentiles are read from Envoy's histograms in
//! [`crate::canary::histogram`].)
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

// --- tests on error counts ---

/// Requests and failures of one backend over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests answered.
    pub requests: u64,
    /// Of those, failures (5xx).
    pub errors: u64,
}

/// The most requests a side is counted with. Counts come from Envoy's text as printed; beyond
/// 2^62 (4.6e18, more than any Envoy serves) they are clamped, so that sums such as
/// `n1 + n2 + 2` stay within a u64. The tests work in f64, which could not tell such counts
/// apart anyway.
const MAX_COUNT: u64 = 1 << 62;

impl RequestCounts {
    /// At most [`MAX_COUNT`] requests, and no more errors than requests.
    fn bounded(self) -> RequestCounts {
        let requests = self.requests.min(MAX_COUNT);
        RequestCounts {
            requests,
            errors: self.errors.min(requests),
        }
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
pub fn two_proportion_z(
    first: RequestCounts,
    second: RequestCounts,
    continuity: bool,
) -> Option<ZTest> {
    let (first, second) = (first.bounded(), second.bounded());
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
pub fn fisher_exact_greater(first: RequestCounts, second: RequestCounts) -> f64 {
    let (first, second) = (first.bounded(), second.bounded());
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
pub enum ErrorTestMethod {
    /// Fisher's exact test, one-sided.
    Fisher,
    /// The pooled two-proportion z-test with continuity correction, one-sided.
    ZTest,
}

impl std::fmt::Display for ErrorTestMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorTestMethod::Fisher => "Fisher",
            ErrorTestMethod::ZTest => "z-test",
        })
    }
}

/// The outcome of [`error_test`]: the p-value of "the canary fails more often than the primary"
/// before any correction for multiple routes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorTest {
    pub method: ErrorTestMethod,
    pub p_value: f64,
    /// The plain z statistic (no continuity correction), for people: how many standard errors
    /// the canary's rate is above the primary's. `None` when it is undefined (no errors at all).
    pub z: Option<f64>,
}

/// Tests whether `canary` fails more often than `primary`: Fisher's exact test up to
/// `FISHER_MAX_ERRORS` (100,000) errors, the continuity-corrected z-test beyond (see the module
/// doc). `None` when a side has no requests: nothing can be said.
pub fn error_test(canary: RequestCounts, primary: RequestCounts) -> Option<ErrorTest> {
    let (canary, primary) = (canary.bounded(), primary.bounded());
    if canary.requests == 0 || primary.requests == 0 {
        return None;
    }
    let z = two_proportion_z(canary, primary, false).map(|t| t.z);
    if canary.errors + primary.errors <= FISHER_MAX_ERRORS {
        return Some(ErrorTest {
            method: ErrorTestMethod::Fisher,
            p_value: fisher_exact_greater(canary, primary),
            z,
        });
    }
    let p_value = two_proportion_z(canary, primary, true).map_or(1.0, |t| t.p_value);
    Some(ErrorTest {
        method: ErrorTestMethod::ZTest,
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

#[cfg(test)]
mod tests;
