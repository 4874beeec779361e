//! The Prometheus metrics of `serve`: one registry, the handles the watch loop and the ADS
//! observer move, and the text the admin server's `/metrics` returns.
//!
//! Every series that can be known in advance exists from the start (counters at 0, each label
//! value of a labelled family created up front), so dashboards and alerts can be written before
//! the first reload fails or the first NACK arrives. The ADS server's own counters and its
//! connected Envoys are read from the hub at scrape time, so they cannot drift from it.
//!
//! A label takes only values the server chose: Envoys are counted by the fleets the files
//! define, and those of any fleet a client merely claims under `other`, so a client cannot add
//! series.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::server::{Refusal as AdminRefusal, Refusals};
use crate::reload::Outcome;
use crate::xds::hub::XdsRefusal;
use crate::xds::resource::Kind;
use crate::xds::stream::Variant;
use crate::xds::{EnvoyStatus, Hub, Observed, Published};

/// The fleet label of Envoys whose fleet the files do not define.
pub const OTHER_FLEET: &str = "other";

/// The `Content-Type` of what `render` returns (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Bucket bounds (seconds) of the change-to-ACK histogram: from half a millisecond, since a
/// change usually reaches a local Envoy in a few milliseconds, up to a minute (a slow or stuck
/// Envoy).
pub const PROPAGATION_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0, 60.0,
];

/// Bucket bounds (seconds) of the reload-duration histogram: a reload of a few files takes well
/// under a millisecond; thousands of files take seconds.
pub const RELOAD_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct EnvoyLabels {
    fleet: String,
    ads: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn propagation_histogram() -> Histogram {
    Histogram::new(PROPAGATION_BUCKETS)
}

/// What a scrape remembers between scrapes.
#[derive(Default)]
struct ScrapeState {
    /// The version label currently exported.
    version: Option<String>,
    /// Every (fleet, ADS variant) series created so far; each is set (to 0 if need be) at every
    /// scrape, since a family cannot be listed.
    envoy_series: BTreeSet<EnvoyLabels>,
}

/// The registry and every metric handle.
pub struct Metrics {
    registry: Registry,
    reloads: Family<ResultLabel, Counter>,
    reload_duration: Histogram,
    version: Family<VersionLabel, Gauge>,
    mappings: Gauge,
    routes: Gauge,
    clusters: Gauge,
    held_files: Gauge,
    route_tables_refused: Counter,
    fleets_withheld: Gauge,
    diagnostics: Family<SeverityLabel, Gauge>,
    envoys: Family<EnvoyLabels, Gauge>,
    streams: Counter,
    responses: Counter,
    acks: Counter,
    nacks: Counter,
    refused: Family<ReasonLabel, Counter>,
    /// `canary_xds_admin_refused_total`, brought up to the admin server's counts at each scrape.
    admin_refused: Family<ReasonLabel, Counter>,
    accept_errors: Counter,
    connections: Gauge,
    archived_sets: Gauge,
    change_to_ack: HistogramFamily<TypeLabel>,
    /// Scrapes copy the hub's counters by difference: one at a time, or two would add the
    /// same difference twice.
    scrape: Mutex<ScrapeState>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `canary_xds_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("canary_xds");
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the Mapping directory, by result: failed when the directory could not \
             be read (the last good config keeps serving)",
            reloads.clone(),
        );
        let reload_duration = Histogram::new(RELOAD_BUCKETS);
        registry.register(
            "reload_duration_seconds",
            "How long a reload took: scan, parse, compile and build the snapshots",
            reload_duration.clone(),
        );
        let version = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "config_version_info",
            "The version of the config being served (1, with the version as a label)",
            version.clone(),
        );
        let mappings = Gauge::default();
        registry.register(
            "mappings",
            "Mappings in the route tables being served, every fleet together (files held at \
             their last good content included)",
            mappings.clone(),
        );
        let routes = Gauge::default();
        registry.register(
            "routes",
            "Routes in the route tables being served, every fleet together",
            routes.clone(),
        );
        let clusters = Gauge::default();
        registry.register(
            "clusters",
            "Envoy clusters in the route tables being served, every fleet together",
            clusters.clone(),
        );
        let held_files = Gauge::default();
        registry.register(
            "held_files",
            "Files held at their last good content (they have errors now, or just became empty)",
            held_files.clone(),
        );
        let route_tables_refused = Counter::default();
        registry.register(
            "route_tables_refused",
            "Fleet route tables refused for being over --max-routes or --max-route-bytes, one per \
             fleet and reload (the fleet keeps its last good table, or is sent nothing)",
            route_tables_refused.clone(),
        );
        let fleets_withheld = Gauge::default();
        registry.register(
            "fleets_withheld",
            "Fleets sent nothing: their route table is refused and there is no good one to serve",
            fleets_withheld.clone(),
        );
        let diagnostics = Family::<SeverityLabel, Gauge>::default();
        registry.register(
            "diagnostics",
            "Diagnostics of the last reload, by severity",
            diagnostics.clone(),
        );
        let envoys = Family::<EnvoyLabels, Gauge>::default();
        registry.register(
            "envoys_connected",
            "Envoys connected over ADS, by fleet and ADS variant (sotw or delta)",
            envoys.clone(),
        );
        let streams = Counter::default();
        registry.register(
            "xds_streams_opened",
            "ADS streams opened by Envoys",
            streams.clone(),
        );
        let responses = Counter::default();
        registry.register(
            "xds_responses",
            "ADS responses sent to Envoys",
            responses.clone(),
        );
        let acks = Counter::default();
        registry.register(
            "xds_acks",
            "ADS responses Envoys accepted (ACK)",
            acks.clone(),
        );
        let nacks = Counter::default();
        registry.register(
            "xds_nacks",
            "ADS responses Envoys rejected (NACK); Envoy keeps its previous config",
            nacks.clone(),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "xds_refused",
            "Clients of the xDS port refused by a limit, by reason: request_too_large, \
             too_many_names, fleet_name_too_long, no_first_request, too_many_connections, \
             no_preface \
             (docs/operating.md, Limits)",
            refused.clone(),
        );
        let admin_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "admin_refused",
            "Admin requests and connections refused: a Host that is not an IP address, localhost \
             or an --admin-host name (host), a connection over --admin-max-connections \
             (connections), request headers not sent within the header-read timeout \
             (header_timeout)",
            admin_refused.clone(),
        );
        let accept_errors = Counter::default();
        registry.register(
            "xds_accept_errors",
            "Failed accepts on the xDS port (out of file descriptors, say); each pauses the \
             accept loop",
            accept_errors.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "xds_connections",
            "Connections open on the xDS port",
            connections.clone(),
        );
        let archived_sets = Gauge::default();
        registry.register(
            "xds_archived_sets",
            "Resource sets kept to understand reconnecting Envoys: those of recent snapshots \
             and make-before-break unions",
            archived_sets.clone(),
        );
        let change_to_ack: HistogramFamily<TypeLabel> =
            Family::new_with_constructor(propagation_histogram);
        registry.register(
            "change_to_ack_seconds",
            "Time from a file change to each connected Envoy's first ACK of the resource type \
             it changed (rds: the new weights are live)",
            change_to_ack.clone(),
        );

        for result in ["ok", "failed"] {
            let _ = reloads.get_or_create(&ResultLabel { result });
        }
        for severity in ["error", "warning", "info"] {
            let _ = diagnostics.get_or_create(&SeverityLabel { severity });
        }
        for kind in Kind::ALL {
            let _ = change_to_ack.get_or_create(&type_label(kind));
        }
        for why in XdsRefusal::ALL {
            let _ = refused.get_or_create(&ReasonLabel {
                reason: why.label(),
            });
        }
        for why in AdminRefusal::ALL {
            let _ = admin_refused.get_or_create(&ReasonLabel {
                reason: why.label(),
            });
        }
        Metrics {
            registry,
            reloads,
            reload_duration,
            version,
            mappings,
            routes,
            clusters,
            held_files,
            route_tables_refused,
            fleets_withheld,
            diagnostics,
            envoys,
            streams,
            responses,
            acks,
            nacks,
            refused,
            admin_refused,
            accept_errors,
            connections,
            archived_sets,
            change_to_ack,
            scrape: Mutex::new(ScrapeState::default()),
        }
    }

    /// Records one reload: its result and duration, its diagnostics, and (when it read the
    /// directory) the size of what it built.
    pub fn reload(&self, outcome: &Outcome) {
        let ok = outcome.served.is_some();
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
        let s = &outcome.stats;
        self.reload_duration.observe(s.took.as_secs_f64());
        for (severity, n) in [
            ("error", s.counts.errors),
            ("warning", s.counts.warnings),
            ("info", s.counts.infos),
        ] {
            self.diagnostics
                .get_or_create(&SeverityLabel { severity })
                .set(as_i64(n));
        }
        // A failed reload built nothing: what is served, and so its size, did not change.
        if ok {
            self.mappings.set(as_i64(s.mappings));
            self.routes.set(as_i64(s.routes));
            self.clusters.set(as_i64(s.clusters));
            self.held_files.set(as_i64(s.held_files));
            self.route_tables_refused.inc_by(s.refused_tables as u64);
            self.fleets_withheld.set(as_i64(s.withheld_fleets));
        }
    }

    /// Hears what the ADS server observed (pass it to `Hub::observe`). The hub reports the
    /// first ACK of each changed type from each Envoy connected when the change was published:
    /// Envoys that connect later, and types that did not change, are not counted, since their
    /// ACKs say when they connected, not how fast a change travels.
    pub fn observed(&self, o: &Observed) {
        match o {
            Observed::ChangeAcked { kind, since_change } => {
                self.change_to_ack
                    .get_or_create(&type_label(*kind))
                    .observe(since_change.as_secs_f64());
            }
        }
    }

    /// Brings `canary_xds_admin_refused_total` up to the admin server's counts.
    pub(crate) fn admin_refusals(&self, refusals: &Refusals) {
        for why in AdminRefusal::ALL {
            let counter = self.admin_refused.get_or_create(&ReasonLabel {
                reason: why.label(),
            });
            let (value, have) = (refusals.get(why), counter.get());
            if value > have {
                counter.inc_by(value - have);
            }
        }
    }

    /// The Prometheus text of every metric, with the hub's counters, connected Envoys and
    /// current version read now.
    pub fn render(&self, hub: &Hub) -> String {
        let mut scrape = self.scrape.lock().expect("scrape lock");
        self.sync(hub, &mut scrape);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn sync(&self, hub: &Hub, scrape: &mut ScrapeState) {
        let c = &hub.counters;
        let refused: Vec<(Counter, u64)> = XdsRefusal::ALL
            .iter()
            .map(|why| {
                let label = ReasonLabel {
                    reason: why.label(),
                };
                (self.refused.get_or_create(&label).clone(), c.refused(*why))
            })
            .collect();
        for (counter, value) in [
            (&self.streams, c.streams_opened.load(Ordering::Relaxed)),
            (&self.responses, c.responses.load(Ordering::Relaxed)),
            (&self.acks, c.acks.load(Ordering::Relaxed)),
            (&self.nacks, c.nacks.load(Ordering::Relaxed)),
            (&self.accept_errors, c.accept_errors.load(Ordering::Relaxed)),
        ]
        .into_iter()
        .chain(refused.iter().map(|(c, v)| (c, *v)))
        {
            let have = counter.get();
            if value > have {
                counter.inc_by(value - have);
            }
        }
        self.connections
            .set(i64::try_from(c.connections.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        self.archived_sets
            .set(as_i64(hub.with_archive(|a| a.len())));

        let published = hub.current();
        let version = published.version();
        if scrape.version.as_deref() != Some(version.as_str()) {
            // The new series first, so that no scrape ever sees no version at all.
            self.version
                .get_or_create(&VersionLabel {
                    version: version.clone(),
                })
                .set(1);
            if let Some(old) = scrape.version.replace(version) {
                self.version.remove(&VersionLabel { version: old });
            }
        }

        // One series per fleet of the files and variant, and `other`: never one per fleet
        // name a client claims. A fleet gone from the files loses its series.
        let counts = envoy_counts(&hub.envoys(), &published);
        let series: BTreeSet<EnvoyLabels> = published
            .fleets
            .keys()
            .map(String::as_str)
            .chain([OTHER_FLEET])
            .flat_map(|fleet| [Variant::Sotw, Variant::Delta].map(|v| envoy_labels(fleet, v)))
            .collect();
        for gone in scrape.envoy_series.difference(&series) {
            self.envoys.remove(gone);
        }
        for labels in &series {
            let n = counts.get(labels).copied().unwrap_or(0);
            self.envoys.get_or_create(labels).set(as_i64(n));
        }
        scrape.envoy_series = series;
    }
}

fn type_label(kind: Kind) -> TypeLabel {
    TypeLabel {
        r#type: kind.short(),
    }
}

fn envoy_labels(fleet: &str, variant: Variant) -> EnvoyLabels {
    EnvoyLabels {
        fleet: fleet.to_string(),
        ads: match variant {
            Variant::Sotw => "sotw",
            Variant::Delta => "delta",
        },
    }
}

/// Connected Envoys by fleet and variant, the fleets the files do not define counted as
/// `other`.
fn envoy_counts(envoys: &[EnvoyStatus], published: &Published) -> BTreeMap<EnvoyLabels, usize> {
    let mut counts = BTreeMap::new();
    for e in envoys {
        let fleet = if published.fleets.contains_key(&e.fleet) {
            e.fleet.as_str()
        } else {
            OTHER_FLEET
        };
        *counts.entry(envoy_labels(fleet, e.variant)).or_insert(0) += 1;
    }
    counts
}

/// A count as a gauge's value (gauges are `i64`), saturating.
fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::test_util::{CANARY, MAIN, envoy, published, served};

    /// The value of the sample line `series` (name and labels exactly as printed).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
        })
    }

    #[test]
    fn every_metric_is_exported_from_the_start() {
        let m = Metrics::new();
        let hub = Hub::new(published(&[("a.yaml", MAIN)]));
        let text = m.render(&hub);
        for (series, value) in [
            ("canary_xds_reloads_total{result=\"ok\"}", 0.0),
            ("canary_xds_reloads_total{result=\"failed\"}", 0.0),
            ("canary_xds_reload_duration_seconds_count", 0.0),
            ("canary_xds_mappings", 0.0),
            ("canary_xds_routes", 0.0),
            ("canary_xds_clusters", 0.0),
            ("canary_xds_held_files", 0.0),
            ("canary_xds_route_tables_refused_total", 0.0),
            ("canary_xds_fleets_withheld", 0.0),
            ("canary_xds_diagnostics{severity=\"error\"}", 0.0),
            ("canary_xds_diagnostics{severity=\"warning\"}", 0.0),
            ("canary_xds_diagnostics{severity=\"info\"}", 0.0),
            (
                "canary_xds_envoys_connected{fleet=\"default\",ads=\"sotw\"}",
                0.0,
            ),
            (
                "canary_xds_envoys_connected{fleet=\"default\",ads=\"delta\"}",
                0.0,
            ),
            ("canary_xds_xds_streams_opened_total", 0.0),
            ("canary_xds_xds_responses_total", 0.0),
            ("canary_xds_xds_acks_total", 0.0),
            ("canary_xds_xds_nacks_total", 0.0),
            ("canary_xds_change_to_ack_seconds_count{type=\"cds\"}", 0.0),
            ("canary_xds_change_to_ack_seconds_count{type=\"lds\"}", 0.0),
            ("canary_xds_change_to_ack_seconds_count{type=\"rds\"}", 0.0),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        let version = hub.current().version();
        assert_eq!(
            sample(
                &text,
                &format!("canary_xds_config_version_info{{version=\"{version}\"}}")
            ),
            Some(1.0),
            "{text}"
        );
        assert!(text.contains("# TYPE canary_xds_change_to_ack_seconds histogram"));
        assert!(text.contains("# TYPE canary_xds_xds_nacks_total counter"));
        // Fine enough for milliseconds.
        assert!(
            text.contains("canary_xds_change_to_ack_seconds_bucket{le=\"0.001\",type=\"rds\"} 0")
                || text.contains(
                    "canary_xds_change_to_ack_seconds_bucket{type=\"rds\",le=\"0.001\"} 0"
                ),
            "{text}"
        );
    }

    #[test]
    fn a_reload_sets_counts_and_a_failed_one_keeps_them() {
        let m = Metrics::new();
        let hub = Hub::new(published(&[("a.yaml", MAIN)]));
        let mut outcome = Outcome {
            served: Some(served(&[("a.yaml", MAIN), ("b.yaml", CANARY)])),
            changed: true,
            stats: crate::reload::ReloadStats {
                mappings: 2,
                routes: 1,
                clusters: 2,
                took: Duration::from_micros(300),
                counts: crate::model::diagnostic::Counts {
                    errors: 0,
                    warnings: 1,
                    infos: 2,
                },
                ..Default::default()
            },
            diagnostics: Vec::new(),
            recheck_after: None,
            accepted: Vec::new(),
            removed_files: 0,
        };
        m.reload(&outcome);
        outcome.served = None;
        outcome.stats = crate::reload::ReloadStats {
            counts: crate::model::diagnostic::Counts {
                errors: 1,
                warnings: 0,
                infos: 0,
            },
            ..Default::default()
        };
        m.reload(&outcome);
        let text = m.render(&hub);
        for (series, value) in [
            ("canary_xds_reloads_total{result=\"ok\"}", 1.0),
            ("canary_xds_reloads_total{result=\"failed\"}", 1.0),
            ("canary_xds_reload_duration_seconds_count", 2.0),
            ("canary_xds_mappings", 2.0),
            ("canary_xds_routes", 1.0),
            ("canary_xds_clusters", 2.0),
            ("canary_xds_diagnostics{severity=\"error\"}", 1.0),
            ("canary_xds_diagnostics{severity=\"warning\"}", 0.0),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
    }

    #[test]
    fn the_hub_is_read_at_scrape_time_and_the_version_label_moves() {
        let m = Metrics::new();
        let hub = Hub::new(published(&[("a.yaml", MAIN)]));
        let first = hub.current().version();
        let _ = m.render(&hub);
        hub.counters.responses.fetch_add(3, Ordering::Relaxed);
        hub.counters.nacks.fetch_add(1, Ordering::Relaxed);
        hub.publish(published(&[("a.yaml", MAIN), ("b.yaml", CANARY)]));
        let second = hub.current().version();
        assert_ne!(first, second);
        let text = m.render(&hub);
        assert_eq!(sample(&text, "canary_xds_xds_responses_total"), Some(3.0));
        assert_eq!(sample(&text, "canary_xds_xds_nacks_total"), Some(1.0));
        // Scraping again adds nothing.
        let text = m.render(&hub);
        assert_eq!(sample(&text, "canary_xds_xds_responses_total"), Some(3.0));
        assert!(text.contains(&format!("version=\"{second}\"")), "{text}");
        assert!(!text.contains(&format!("version=\"{first}\"")), "{text}");
    }

    #[test]
    fn a_change_acked_is_a_sample_of_its_type() {
        let m = Metrics::new();
        let hub = Hub::new(published(&[("a.yaml", MAIN)]));
        for kind in [Kind::Cluster, Kind::Route] {
            m.observed(&Observed::ChangeAcked {
                kind,
                since_change: Duration::from_millis(3),
            });
        }
        let text = m.render(&hub);
        for t in ["rds", "cds"] {
            let series = format!("canary_xds_change_to_ack_seconds_count{{type=\"{t}\"}}");
            assert_eq!(sample(&text, &series), Some(1.0), "{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("canary_xds_change_to_ack_seconds_bucket")
                    && l.contains("le=\"0.005\"")
                    && l.contains("type=\"rds\"")
                    && l.ends_with(" 1")),
            "{text}"
        );
    }

    #[test]
    fn connected_envoys_are_counted_by_fleet_and_variant() {
        let edge = "apiVersion: ambassador/v1\nkind: Mapping\nname: edge\nprefix: /edge/\nservice: edge\nambassador_id: edge\n";
        let published = published(&[("a.yaml", MAIN), ("e.yaml", edge)]);
        let counts = envoy_counts(
            &[
                envoy("a", "default", Variant::Sotw),
                envoy("b", "default", Variant::Sotw),
                envoy("c", "edge", Variant::Delta),
                envoy("d", "made-up", Variant::Delta),
                envoy("e", "made-up-too", Variant::Delta),
            ],
            &published,
        );
        assert_eq!(counts[&envoy_labels("default", Variant::Sotw)], 2);
        assert_eq!(counts[&envoy_labels("edge", Variant::Delta)], 1);
        assert_eq!(counts[&envoy_labels(OTHER_FLEET, Variant::Delta)], 2);
        assert!(!counts.contains_key(&envoy_labels("default", Variant::Delta)));
    }

    #[test]
    fn a_fleet_a_client_claims_adds_no_series() {
        let m = Metrics::new();
        let hub = Hub::new(published(&[("a.yaml", MAIN)]));
        {
            let mut envoys = hub.envoys.lock().unwrap();
            for i in 0..50 {
                envoys.insert(
                    i,
                    envoy(&format!("n{i}"), &format!("claimed-{i}"), Variant::Sotw),
                );
            }
        }
        let text = m.render(&hub);
        assert!(!text.contains("claimed-"), "{text}");
        let other = "canary_xds_envoys_connected{fleet=\"other\",ads=\"sotw\"}";
        assert_eq!(sample(&text, other), Some(50.0), "{text}");
        let series = text
            .lines()
            .filter(|l| l.starts_with("canary_xds_envoys_connected{"))
            .count();
        assert_eq!(series, 4, "default and other, sotw and delta: {text}");
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let m = Metrics::new();
        let hub = Hub::new(published(&[("a.yaml", MAIN)]));
        let text = m.render(&hub);
        for why in XdsRefusal::ALL {
            let series = format!("canary_xds_xds_refused_total{{reason=\"{}\"}}", why.label());
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in {text}");
        }
        hub.counters.refuse(XdsRefusal::TooManyNames);
        hub.counters.refuse(XdsRefusal::TooManyNames);
        let text = m.render(&hub);
        assert_eq!(
            sample(
                &text,
                "canary_xds_xds_refused_total{reason=\"too_many_names\"}"
            ),
            Some(2.0)
        );
        assert!(sample(&text, "canary_xds_xds_archived_sets").unwrap() > 0.0);
    }
}
