//! Envoy's stats as canary-xds reads them: the per-cluster request counters and latency
//! histogram of `/stats?format=prometheus`, cumulative since that Envoy started.

use std::collections::BTreeMap;

use crate::canary::error::LiveError;
use crate::canary::histogram::{Bucket, Histogram};

/// The stats of one cluster in one Envoy, cumulative since that Envoy started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterStats {
    /// `upstream_rq_total`: requests started (retries included). A window reads it only to tell
    /// that Envoy restarted (it went down).
    pub rq_total: u64,
    /// `upstream_rq_<N>xx` for N = 1..=5: responses by class, Envoy's own (a 503 when the
    /// upstream could not be reached, a 504 on timeout) included.
    pub rq_xx: [u64; 5],
    /// `upstream_rq_time`, in milliseconds. Envoy updates histograms at each stats flush (5 s
    /// by default), counters at once: over a short window the two can disagree a little.
    pub rq_time: Histogram,
}

impl ClusterStats {
    /// Responses of every class: the requests that finished. Saturates at `u64::MAX` (each
    /// class is what Envoy printed, so their sum can overflow).
    pub fn responses(&self) -> u64 {
        self.rq_xx.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }
}

/// One Envoy's cluster stats at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvoyStats {
    /// By Envoy cluster name.
    pub clusters: BTreeMap<String, ClusterStats>,
    /// `server.uptime` in seconds: when it goes down, Envoy restarted.
    pub uptime: Option<u64>,
}

/// The Prometheus metric names read, as Envoy 1.40 prints them.
const RQ_TOTAL: &str = "envoy_cluster_upstream_rq_total";
const RQ_XX: &str = "envoy_cluster_upstream_rq_xx";
const RQ_TIME_BUCKET: &str = "envoy_cluster_upstream_rq_time_bucket";
const UPTIME: &str = "envoy_server_uptime";

/// The `filter` sent with `/stats`: only the stats read (Envoy matches it against the names
/// before tag extraction, `cluster.<name>.upstream_rq_5xx`). It keeps a fleet of Envoys with
/// thousands of clusters from sending megabytes of other stats every few seconds.
pub const STATS_FILTER: &str = r"^cluster\..+\.upstream_rq_(total|[0-9]xx|time)$|^server\.uptime$";

/// Reads the stats canary-xds needs from Envoy's `/stats?format=prometheus`. Other metrics,
/// comments and the per-origin copies (`envoy_cluster_external_upstream_rq_xx`...) are skipped;
/// a malformed line of a metric we need is an error.
pub fn parse_prometheus(text: &str) -> Result<EnvoyStats, LiveError> {
    let mut out = EnvoyStats::default();
    let mut buckets: BTreeMap<String, Vec<Bucket>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if ![RQ_TOTAL, RQ_XX, RQ_TIME_BUCKET, UPTIME].contains(&name) {
            continue;
        }
        let err = |message: String| LiveError::Prometheus {
            line: i + 1,
            message,
        };
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end + 1..]).map_err(|m| err(format!("{name}: {m}")))?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        // A sample may carry a timestamp after the value; Envoy prints none.
        let value = rest.split_whitespace().next().unwrap_or("");
        let value =
            parse_count(value).ok_or_else(|| err(format!("{name}: bad value {value:?}")))?;
        if name == UPTIME {
            out.uptime = Some(value);
            continue;
        }
        let cluster = labels
            .get("envoy_cluster_name")
            .ok_or_else(|| err(format!("{name} without envoy_cluster_name")))?
            .clone();
        match name {
            RQ_TOTAL => out.clusters.entry(cluster).or_default().rq_total = value,
            RQ_XX => {
                let class = labels
                    .get("envoy_response_code_class")
                    .and_then(|c| c.parse::<usize>().ok())
                    .filter(|c| (1..=5).contains(c))
                    .ok_or_else(|| err(format!("{name} without a class 1 to 5")))?;
                out.clusters.entry(cluster).or_default().rq_xx[class - 1] = value;
            }
            _ => {
                let le = labels
                    .get("le")
                    .and_then(|le| parse_le(le))
                    .ok_or_else(|| err(format!("{name} without a valid le")))?;
                buckets
                    .entry(cluster)
                    .or_default()
                    .push(Bucket { le, count: value });
            }
        }
    }
    for (cluster, b) in buckets {
        out.clusters.entry(cluster).or_default().rq_time = Histogram::new(b);
    }
    Ok(out)
}

/// `{a="x",b="y\"z"} rest`, after the `{`: the labels and what follows the `}`.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without =")?;
        let key = rest[..eq].trim().to_string();
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(key, value);
        rest = &rest[end + 1..];
    }
}

/// A counter or bucket count: Envoy prints integers; a float form is accepted too.
fn parse_count(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().or_else(|| {
        let f: f64 = s.parse().ok()?;
        (f.is_finite() && f >= 0.0).then_some(f as u64)
    })
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse::<f64>().ok().filter(|f| !f.is_nan()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Envoy 1.40 printed for `/stats?format=prometheus&filter=<STATS_FILTER>` with
    /// `canary-xds bootstrap`'s buckets (trimmed to two clusters; the per-origin copies kept
    /// in part, to show they are skipped).
    const ENVOY_STATS: &str = include_str!("../../tests/fixtures/status/envoy-1.40-stats.prom");

    const QOTM: &str = "127_0_0_1_19001__qotm";
    const QOTMV2: &str = "127_0_0_1_19002__qotmv2";

    #[test]
    fn reads_envoy_1_40_prometheus_output() {
        let s = parse_prometheus(ENVOY_STATS).unwrap();
        assert_eq!(s.uptime, Some(1241));
        assert_eq!(
            s.clusters.keys().collect::<Vec<_>>(),
            [QOTM, QOTMV2, "xds_cluster"]
        );
        let v2 = &s.clusters[QOTMV2];
        assert_eq!(v2.rq_total, 57);
        assert_eq!(v2.rq_xx, [0, 45, 0, 0, 12]);
        assert_eq!(v2.responses(), 57);
        // 32 finite buckets from 0.5 ms to 60 s, then +Inf; the external copy is not mixed in.
        assert_eq!(v2.rq_time.buckets.len(), 33);
        assert_eq!(v2.rq_time.buckets[0], Bucket { le: 0.5, count: 35 });
        assert_eq!(v2.rq_time.buckets[32].le, f64::INFINITY);
        assert_eq!(v2.rq_time.count(), 57);
        // p50: rank 28.5 in (0, 0.5] holding 35; p99: rank 56.43 in (40, 50] above 52 of 57.
        let p50 = v2.rq_time.quantile(0.5).unwrap().value;
        let p99 = v2.rq_time.quantile(0.99).unwrap().value;
        assert!((p50 - 0.5 * 28.5 / 35.0).abs() < 1e-9, "{p50}");
        assert!(
            (p99 - (40.0 + 10.0 * (56.43 - 52.0) / 5.0)).abs() < 1e-9,
            "{p99}"
        );
        assert_eq!(s.clusters[QOTM].rq_xx, [0, 143, 0, 0, 0]);
        assert_eq!(s.clusters["xds_cluster"].rq_total, 1);
    }

    #[test]
    fn prometheus_labels_and_errors() {
        let text = "# HELP x\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\\\"b\\\\c\"} 7 1700000000\n\
                    envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"a\\\"b\\\\c\", envoy_response_code_class=\"5\"} 3\n\
                    something_else{broken 1\n";
        let s = parse_prometheus(text).unwrap();
        let c = &s.clusters["a\"b\\c"];
        assert_eq!((c.rq_total, c.rq_xx[4]), (7, 3));
        let bad =
            parse_prometheus("\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} x\n");
        assert!(
            matches!(bad, Err(LiveError::Prometheus { line: 2, .. })),
            "{bad:?}"
        );
        assert!(parse_prometheus("envoy_cluster_upstream_rq_total 3\n").is_err());
        assert!(
            parse_prometheus(
                "envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"a\",envoy_response_code_class=\"9\"} 1"
            )
            .is_err()
        );
        assert!(
            parse_prometheus("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"a} 1").is_err()
        );
    }

    #[test]
    fn counters_at_the_top_of_u64_are_read_and_add_up_without_overflow() {
        let text = "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 18446744073709551615\n\
                    envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"a\",envoy_response_code_class=\"2\"} 18446744073709551615\n\
                    envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"a\",envoy_response_code_class=\"5\"} 1e30\n";
        let a = &parse_prometheus(text).unwrap().clusters["a"];
        assert_eq!(a.rq_total, u64::MAX);
        assert_eq!(a.rq_xx, [0, u64::MAX, 0, 0, u64::MAX]);
        assert_eq!(a.responses(), u64::MAX);
    }
}
