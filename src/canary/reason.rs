//! Why a canary got its verdict, as data: one [`VerdictReason`] per test that ran or traffic
//! check that failed. Code decides on the fields (whether a finding made the canary worse); the
//! words people read (`status`'s table and JSON, the admin page) are its `Display`.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::canary::format::{ms, p_is, sci, signed_ms, trim_float};
use crate::canary::statistics::ErrorTestMethod;

/// One reason for a canary's verdict, in the order the verdict was reached: the error test, the
/// latency rule, then what kept the tests from deciding. Serialized as its words.
#[derive(Clone, Debug, PartialEq)]
pub enum VerdictReason {
    /// The canary is at 100%: `primary` gets no traffic to compare it with.
    Promoted { primary: String },
    /// The error test's outcome: the 5xx rates, and the p-value against `alpha`.
    ErrorTest {
        /// The canary's 5xx responses, as a percentage; `None` without requests.
        canary_5xx_percent: Option<f64>,
        /// The primary's, likewise.
        primary_5xx_percent: Option<f64>,
        method: ErrorTestMethod,
        p_value: f64,
        /// After Holm's correction across every canary of the report.
        adjusted_p_value: f64,
        alpha: f64,
        /// The canary fails significantly more often: `adjusted_p_value <= alpha`.
        worse: bool,
    },
    /// The latency rule's outcome: the p99s against the ratio and the margin.
    LatencyTest {
        canary_p99_ms: f64,
        primary_p99_ms: f64,
        p99_ratio: f64,
        p99_margin_ms: f64,
        /// The canary's p99 exceeds the primary's by both the ratio and the margin.
        worse: bool,
    },
    /// No Envoy read has the canary's cluster.
    NotInEnvoy { cluster: String },
    /// Too few requests on a side for a verdict of healthy.
    TooFewRequests {
        canary: u64,
        primary: u64,
        needed: u64,
    },
    /// Enough requests, but too few timed ones on a side for the latency rule.
    TooFewTimedRequests {
        canary: u64,
        primary: u64,
        needed: u64,
    },
}

impl VerdictReason {
    /// Whether this reason makes the canary worse: a test that found it worse.
    pub fn is_worse(&self) -> bool {
        match self {
            VerdictReason::ErrorTest { worse, .. } | VerdictReason::LatencyTest { worse, .. } => {
                *worse
            }
            VerdictReason::Promoted { .. }
            | VerdictReason::NotInEnvoy { .. }
            | VerdictReason::TooFewRequests { .. }
            | VerdictReason::TooFewTimedRequests { .. } => false,
        }
    }
}

/// `worse` or `not worse`, as a test's outcome reads.
fn verb(worse: bool) -> &'static str {
    if worse { "worse" } else { "not worse" }
}

impl fmt::Display for VerdictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerdictReason::Promoted { primary } => {
                write!(f, "at 100%: {primary} gets no traffic to compare it with")
            }
            VerdictReason::ErrorTest {
                canary_5xx_percent,
                primary_5xx_percent,
                method,
                p_value,
                adjusted_p_value,
                alpha,
                worse,
            } => {
                let rate = |r: &Option<f64>| {
                    r.map_or("-".to_string(), |r| format!("{}%", trim_float(r, 2)))
                };
                let cmp = if *worse { "<=" } else { ">" };
                write!(
                    f,
                    "5xx {} vs {}: {} ({method} {}",
                    rate(canary_5xx_percent),
                    rate(primary_5xx_percent),
                    verb(*worse),
                    p_is(*p_value)
                )?;
                // The corrected p-value only when the correction changed it (several canaries).
                if adjusted_p_value != p_value {
                    write!(f, ", Holm-adjusted {}", sci(*adjusted_p_value))?;
                }
                write!(f, " {cmp} {})", sci(*alpha))
            }
            VerdictReason::LatencyTest {
                canary_p99_ms,
                primary_p99_ms,
                p99_ratio,
                p99_margin_ms,
                worse,
            } => write!(
                f,
                "p99 {} vs {}: {} (x{} and {}; limits x{} and +{})",
                ms(*canary_p99_ms),
                ms(*primary_p99_ms),
                verb(*worse),
                trim_float(canary_p99_ms / primary_p99_ms.max(1e-9), 2),
                signed_ms(canary_p99_ms - primary_p99_ms),
                trim_float(*p99_ratio, 2),
                ms(*p99_margin_ms),
            ),
            VerdictReason::NotInEnvoy { cluster } => write!(
                f,
                "no Envoy has a cluster {cluster}: wrong --envoy-admin, or another fleet?"
            ),
            VerdictReason::TooFewRequests {
                canary,
                primary,
                needed,
            } => write!(
                f,
                "{canary} requests on the canary and {primary} on the primary; {needed} needed \
                 on each"
            ),
            VerdictReason::TooFewTimedRequests {
                canary,
                primary,
                needed,
            } => write!(
                f,
                "latency: {canary} timed requests on the canary and {primary} on the primary; \
                 {needed} needed on each (Envoy updates histograms at each stats flush, every 5 s \
                 by default)"
            ),
        }
    }
}

/// As its words: the JSON's `reasons` are the strings `status`'s table shows.
impl Serialize for VerdictReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words are the ones `status` printed before reasons were typed; only the test
    /// findings that say "worse" (not "not worse") make a canary worse.
    #[test]
    fn each_reason_reads_as_before_and_says_whether_it_is_worse() {
        let errors = |adjusted_p_value: f64, worse: bool| VerdictReason::ErrorTest {
            canary_5xx_percent: Some(0.7),
            primary_5xx_percent: None,
            method: ErrorTestMethod::Fisher,
            p_value: 5e-4,
            adjusted_p_value,
            alpha: 0.01,
            worse,
        };
        let latency = |canary_p99_ms: f64, worse: bool| VerdictReason::LatencyTest {
            canary_p99_ms,
            primary_p99_ms: 49.9,
            p99_ratio: 1.5,
            p99_margin_ms: 10.0,
            worse,
        };
        let cases = [
            (
                errors(2e-3, true),
                "5xx 0.7% vs -: worse (Fisher p=5.0e-4, Holm-adjusted 0.002 <= 0.01)",
            ),
            (
                errors(5e-4, false),
                "5xx 0.7% vs -: not worse (Fisher p=5.0e-4 > 0.01)",
            ),
            (
                latency(120.0, true),
                "p99 120ms vs 49.9ms: worse (x2.4 and +70.1ms; limits x1.5 and +10ms)",
            ),
            (
                latency(0.0, false),
                "p99 0ms vs 49.9ms: not worse (x0 and -49.9ms; limits x1.5 and +10ms)",
            ),
            (
                VerdictReason::Promoted {
                    primary: "qotm".into(),
                },
                "at 100%: qotm gets no traffic to compare it with",
            ),
            (
                VerdictReason::NotInEnvoy {
                    cluster: "qotmv2".into(),
                },
                "no Envoy has a cluster qotmv2: wrong --envoy-admin, or another fleet?",
            ),
            (
                VerdictReason::TooFewRequests {
                    canary: 90,
                    primary: 4000,
                    needed: 200,
                },
                "90 requests on the canary and 4000 on the primary; 200 needed on each",
            ),
            (
                VerdictReason::TooFewTimedRequests {
                    canary: 0,
                    primary: 12,
                    needed: 200,
                },
                "latency: 0 timed requests on the canary and 12 on the primary; 200 needed on \
                 each (Envoy updates histograms at each stats flush, every 5 s by default)",
            ),
        ];
        for (reason, words) in cases {
            assert_eq!(reason.to_string(), words);
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                serde_json::to_string(words).unwrap()
            );
            let says_worse = words.contains(": worse (");
            assert_eq!(reason.is_worse(), says_worse, "{words}");
        }
    }
}
