//! The JSON documents of the admin API: `/api/routes` (what is served, in the shape of
//! `check --format json --all-fleets`, plus versions and what is held back), `/api/diagnostics`
//! and `/api/envoys`. Pure functions from state to text; the shapes are documented in docs/admin.md.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::LastReload;
use crate::model::diagnostic::{Counts, Diagnostic};
use crate::reload::Served;
use crate::routes::render::{FORMAT, RouteJson, routes_json};
use crate::xds::stream::{TypeStatus, Variant};
use crate::xds::{EnvoyStatus, Published};

/// The diagnostics that say something is held at its last good state rather than served as it
/// is on disk: files with errors or just emptied, and the directory itself.
pub fn held_notes(diagnostics: &[Diagnostic]) -> impl Iterator<Item = &Diagnostic> {
    diagnostics.iter().filter(|d| d.held_back)
}

#[derive(Serialize)]
struct FleetDoc<'a> {
    version: &'a str,
    routes: Vec<RouteJson<'a>>,
}

#[derive(Serialize)]
struct HeldDoc<'a> {
    file: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct RoutesDoc<'a> {
    format: u32,
    version: String,
    /// Always null, as in `check --all-fleets`.
    fleet: Option<&'a str>,
    fleets: BTreeMap<&'a str, FleetDoc<'a>>,
    held: Vec<HeldDoc<'a>>,
    diagnostics: &'a [Diagnostic],
}

/// `/api/routes`: every fleet's served routes with its version, what is held and why, and the
/// last reload's diagnostics.
pub fn routes(served: &Served, diagnostics: &[Diagnostic]) -> String {
    let doc = RoutesDoc {
        format: FORMAT,
        version: served.published.version(),
        fleet: None,
        fleets: served
            .fleets()
            .map(|(name, snap, table)| {
                (
                    name.as_str(),
                    FleetDoc {
                        version: &snap.version,
                        routes: routes_json(table),
                    },
                )
            })
            .collect(),
        held: held_notes(diagnostics)
            .map(|d| HeldDoc {
                file: &d.file,
                message: &d.message,
            })
            .collect(),
        diagnostics,
    };
    to_json(&doc)
}

#[derive(Serialize)]
struct CountsDoc {
    errors: usize,
    warnings: usize,
    infos: usize,
}

#[derive(Serialize)]
struct DiagnosticsDoc<'a> {
    format: u32,
    version: String,
    reloaded_at: String,
    reload_ok: bool,
    counts: CountsDoc,
    diagnostics: &'a [Diagnostic],
}

/// `/api/diagnostics`: the last reload's diagnostics, as `check --format json` prints them.
pub fn diagnostics(published: &Published, last: &LastReload) -> String {
    let c = Counts::of(&last.diagnostics);
    to_json(&DiagnosticsDoc {
        format: FORMAT,
        version: published.version(),
        reloaded_at: rfc3339(last.at),
        reload_ok: last.ok,
        counts: CountsDoc {
            errors: c.errors,
            warnings: c.warnings,
            infos: c.infos,
        },
        diagnostics: &last.diagnostics,
    })
}

/// Where an Envoy stands with its fleet's current snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvoyState {
    /// It holds the current snapshot: every response ACKed.
    InSync,
    /// It rejected what it was last sent (NACK) and keeps its previous config.
    Rejected,
    /// A response is on its way or waiting for its ACK.
    Syncing,
}

/// Whether Envoy rejected the last response of this type and nothing newer was sent since.
pub fn rejected(t: &TypeStatus) -> bool {
    matches!(&t.last_nack, Some((v, _)) if t.sent.as_deref() == Some(v.as_str()) && t.acked.as_deref() != Some(v.as_str()))
}

/// Where `e` stands.
pub fn envoy_state(e: &EnvoyStatus) -> EnvoyState {
    if e.types.values().any(rejected) {
        EnvoyState::Rejected
    } else if e.in_sync {
        EnvoyState::InSync
    } else {
        EnvoyState::Syncing
    }
}

/// `sotw` or `delta`.
pub fn variant_name(v: Variant) -> &'static str {
    match v {
        Variant::Sotw => "sotw",
        Variant::Delta => "delta",
    }
}

#[derive(Serialize)]
struct NackDoc<'a> {
    version: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct TypeDoc<'a> {
    sent: Option<&'a str>,
    acked: Option<&'a str>,
    waiting_for_ack: bool,
    rejected: bool,
    last_nack: Option<NackDoc<'a>>,
}

#[derive(Serialize)]
struct EnvoyDoc<'a> {
    node_id: &'a str,
    fleet: &'a str,
    ads: &'static str,
    connected_since: String,
    state: EnvoyState,
    in_sync: bool,
    synced_version: Option<&'a str>,
    fleet_version: String,
    types: BTreeMap<&'static str, TypeDoc<'a>>,
}

#[derive(Serialize)]
struct EnvoysDoc<'a> {
    format: u32,
    version: String,
    envoys: Vec<EnvoyDoc<'a>>,
}

/// `/api/envoys`: every connected Envoy and, per resource type, what it was sent, what it
/// ACKed and the last NACK with Envoy's message.
pub fn envoys(published: &Published, envoys: &[EnvoyStatus]) -> String {
    let docs = sorted(envoys)
        .into_iter()
        .map(|e| EnvoyDoc {
            node_id: &e.node_id,
            fleet: &e.fleet,
            ads: variant_name(e.variant),
            connected_since: rfc3339(e.connected_since),
            state: envoy_state(e),
            in_sync: e.in_sync,
            synced_version: e.synced_version.as_deref(),
            fleet_version: published.fleet(&e.fleet).version.clone(),
            types: e
                .types
                .iter()
                .map(|(k, t)| {
                    (
                        *k,
                        TypeDoc {
                            sent: t.sent.as_deref(),
                            acked: t.acked.as_deref(),
                            waiting_for_ack: t.waiting_for_ack,
                            rejected: rejected(t),
                            last_nack: t.last_nack.as_ref().map(|(v, m)| NackDoc {
                                version: v,
                                message: m,
                            }),
                        },
                    )
                })
                .collect(),
        })
        .collect();
    to_json(&EnvoysDoc {
        format: FORMAT,
        version: published.version(),
        envoys: docs,
    })
}

/// Envoys by fleet, then node id, then connection time.
pub fn sorted(envoys: &[EnvoyStatus]) -> Vec<&EnvoyStatus> {
    let mut v: Vec<&EnvoyStatus> = envoys.iter().collect();
    v.sort_by(|a, b| {
        (&a.fleet, &a.node_id, a.connected_since).cmp(&(&b.fleet, &b.node_id, b.connected_since))
    });
    v
}

fn to_json(doc: &impl Serialize) -> String {
    serde_json::to_string_pretty(doc).expect("the document serializes") + "\n"
}

/// A time as RFC 3339 in UTC, to the second: `2025-01-31T09:05:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), so that no date crate is needed for one format.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{CANARY, MAIN, envoy, published, served};
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
            "2024-12-31T23:59:59Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(4_102_444_800_999)),
            "2100-01-01T00:00:00Z"
        );
    }

    #[test]
    fn routes_are_the_check_shape_plus_versions_and_held_notes() {
        let served = served(&[("qotm.yaml", MAIN), ("qotmv2.yaml", CANARY)]);
        let p = &served.published;
        let held = Diagnostic::warning(
            &crate::model::diagnostic::Location::new("qotmv2.yaml", 0, 0),
            "it has errors, so its last good content keeps serving: 1 Mapping (qotmv2)",
        )
        .held_back()
        .field("file");
        let doc: serde_json::Value =
            serde_json::from_str(&routes(&served, std::slice::from_ref(&held))).unwrap();
        assert_eq!(doc["format"], 1);
        assert_eq!(doc["fleet"], serde_json::Value::Null);
        assert_eq!(doc["version"], p.version());
        let fleet = &doc["fleets"]["default"];
        assert_eq!(fleet["version"], p.fleet("default").version);
        let backends = &fleet["routes"][0]["backends"];
        assert_eq!(backends[0]["mapping"], "qotm");
        assert_eq!(backends[0]["weight_bp"], 9000);
        assert_eq!(backends[1]["weight"], 10.0);
        assert_eq!(backends[1]["file"], "qotmv2.yaml");
        assert_eq!(doc["held"][0]["file"], "qotmv2.yaml");
        assert!(
            doc["held"][0]["message"]
                .as_str()
                .unwrap()
                .contains("last good content")
        );
        assert_eq!(doc["diagnostics"][0]["severity"], "warning");
    }

    /// The held notes are recognised in what a real reload says about a broken file.
    #[test]
    fn a_real_reload_s_hold_notes_are_found() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a.yaml"), MAIN).unwrap();
        std::fs::write(t.path().join("b.yaml"), CANARY).unwrap();
        let mut r = crate::test_util::reloader(t.path(), Duration::from_millis(100));
        let first = r.reload(false, std::time::Instant::now());
        assert_eq!(held_notes(&first.diagnostics).count(), 0);
        std::fs::write(
            t.path().join("b.yaml"),
            CANARY.replace("weight: 10", "weight: ["),
        )
        .unwrap();
        let broken = r.reload(false, std::time::Instant::now());
        let notes: Vec<_> = held_notes(&broken.diagnostics).collect();
        assert_eq!(notes.len(), 1, "{:?}", broken.diagnostics);
        assert_eq!(notes[0].file, "b.yaml");
        std::fs::remove_dir_all(t.path()).unwrap();
        let gone = r.reload(false, std::time::Instant::now());
        assert_eq!(held_notes(&gone.diagnostics).count(), 1);
    }

    fn typed(sent: &str, acked: &str, nack: Option<&str>) -> TypeStatus {
        TypeStatus {
            subscribed: true,
            sent: Some(sent.into()),
            acked: Some(acked.into()),
            waiting_for_ack: false,
            last_nack: nack.map(|v| (v.to_string(), "regex too big".to_string())),
        }
    }

    #[test]
    fn envoys_say_what_was_sent_acked_and_rejected() {
        let p = published(&[("qotm.yaml", MAIN)]);
        let mut nacked = envoy("strict", "default", Variant::Delta);
        nacked.types.insert("cds", typed("c1", "c1", None));
        nacked.types.insert("rds", typed("r2", "r1", Some("r2")));
        let mut fine = envoy("fine", "default", Variant::Sotw);
        fine.in_sync = true;
        fine.synced_version = Some(p.fleet("default").version.clone());
        // An old NACK, superseded by an accepted version.
        fine.types.insert("rds", typed("r3", "r3", Some("r2")));
        let doc: serde_json::Value = serde_json::from_str(&envoys(&p, &[nacked, fine])).unwrap();
        let list = doc["envoys"].as_array().unwrap();
        assert_eq!(list[0]["node_id"], "fine");
        assert_eq!(list[0]["state"], "in_sync");
        assert_eq!(list[0]["ads"], "sotw");
        assert_eq!(list[0]["connected_since"], "1970-01-01T00:00:00Z");
        assert_eq!(list[0]["synced_version"], list[0]["fleet_version"]);
        assert_eq!(list[0]["types"]["rds"]["rejected"], false);
        assert_eq!(list[0]["types"]["rds"]["last_nack"]["version"], "r2");
        assert_eq!(list[1]["node_id"], "strict");
        assert_eq!(list[1]["state"], "rejected");
        assert_eq!(list[1]["ads"], "delta");
        assert_eq!(list[1]["types"]["rds"]["sent"], "r2");
        assert_eq!(list[1]["types"]["rds"]["acked"], "r1");
        assert_eq!(list[1]["types"]["rds"]["rejected"], true);
        assert_eq!(
            list[1]["types"]["rds"]["last_nack"]["message"],
            "regex too big"
        );
    }
}
