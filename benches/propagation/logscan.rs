//! Reading canary-xds's debug log (JSON lines): when each change was reloaded, pushed to our
//! Envoy, and ACKed, so a change's time splits into ours (rename -> push) and Envoy's
//! (push -> ACK).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// One log line of interest.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: SystemTime,
    pub message: String,
    pub fields: Value,
}

/// Every JSON line of the log that carries a timestamp and a message.
pub fn read(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let at = parse_rfc3339(v["timestamp"].as_str()?)?;
            let message = v["fields"]["message"].as_str()?.to_string();
            Some(Line {
                at,
                message,
                fields: v["fields"].clone(),
            })
        })
        .collect()
}

/// Parses `2025-01-31T09:05:00.123456Z` (UTC, any number of fractional digits).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let secs = days_from_civil(y, m, day) * 86400 + hh * 3600 + mm * 60 + ss;
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
    };
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?) + Duration::from_nanos(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// What canary-xds logged for one change, as offsets from the rename.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// When the reload that saw the change finished (its `reload` line).
    pub reload_done: Option<Duration>,
    /// How long that reload took, by its own account (`ms`).
    pub reload_ms: Option<f64>,
    /// The first response pushed to our Envoy after the rename.
    pub first_push: Option<Duration>,
    /// The ACK of the last response pushed for this change.
    pub ack: Option<Duration>,
    /// Pushed types and versions, in order (`rds:3f2a...`).
    pub pushes: Vec<String>,
    /// The bytes of the pushed responses.
    pub bytes: u64,
    /// The version of the last push (for RDS, what Envoy's version_text shows).
    pub last_version: Option<String>,
}

fn field_str(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The trace of the change renamed in at `from`, reading lines before `until` (the next
/// change's rename), for the Envoy whose node id is `node`.
pub fn trace(lines: &[Line], from: SystemTime, until: SystemTime, node: &str) -> Trace {
    let off = |at: SystemTime| at.duration_since(from).unwrap_or_default();
    let window = lines.iter().filter(|l| l.at >= from && l.at < until);
    let mut t = Trace::default();
    let mut last: Option<(String, String)> = None;
    for l in window {
        match l.message.as_str() {
            "reload" if t.reload_done.is_none() && l.fields["changed"] == Value::Bool(true) => {
                t.reload_done = Some(off(l.at));
                t.reload_ms = field_str(&l.fields, "ms").parse().ok();
            }
            "push" if field_str(&l.fields, "node") == node => {
                let kind = field_str(&l.fields, "kind");
                let version = field_str(&l.fields, "version");
                t.first_push.get_or_insert(off(l.at));
                t.pushes
                    .push(format!("{kind}:{}", version.get(..8).unwrap_or(&version)));
                t.bytes += l.fields["bytes"].as_u64().unwrap_or(0);
                t.last_version = Some(version.clone());
                last = Some((kind, version));
                t.ack = None;
            }
            "ack" if field_str(&l.fields, "node") == node => {
                if let Some((kind, version)) = &last
                    && field_str(&l.fields, "kind") == *kind
                    && field_str(&l.fields, "version") == *version
                {
                    t.ack = Some(off(l.at));
                }
            }
            _ => {}
        }
    }
    t
}
