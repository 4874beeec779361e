//! The hub: what is published, what each connected Envoy holds, and who hears of it.
//!
//! The watch loop publishes snapshots here; every ADS stream reads the latest one from here and
//! reports its Envoy's status back; admin and metrics read both.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use super::archive::Archive;
use super::identity::Access;
use super::resource::Kind;
use super::server::AdsService;
use super::snapshot::Published;
use super::stream::{TypeStatus, Variant};

/// What the server knows about one connected Envoy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EnvoyStatus {
    pub node_id: String,
    pub fleet: String,
    pub variant: Variant,
    /// Whether it takes weight changes over canary-xds's runtime layer (RTDS).
    pub runtime: bool,
    pub connected_since: SystemTime,
    /// Per resource type (`cds`, `lds`, `rds`).
    pub types: BTreeMap<&'static str, TypeStatus>,
    /// The version of the fleet's snapshot this Envoy last held completely (every response
    /// ACKed, nothing in flight), if any.
    pub synced_version: Option<String>,
    /// Whether it holds the fleet's current snapshot.
    pub in_sync: bool,
    /// The kinds (`Kind::bit`) the last change moved for this Envoy that it has not ACKed yet:
    /// its first ACK of each is the change's propagation time. Kept here, with the rest of
    /// the Envoy's status, so that a change allocates nothing per Envoy.
    #[serde(skip)]
    pub awaiting: u8,
}

/// Counters of what the server did, for logs and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub responses: AtomicU64,
    pub acks: AtomicU64,
    pub nacks: AtomicU64,
    pub streams_opened: AtomicU64,
    /// Clients refused by a limit, by `XdsRefusal` (its position in `XdsRefusal::ALL`).
    refused: [AtomicU64; XdsRefusal::ALL.len()],
    /// Connections accepted and not yet closed.
    pub connections: AtomicU64,
    /// Failed accepts of the xDS listener (out of file descriptors, say).
    pub accept_errors: AtomicU64,
}

impl Counters {
    /// Counts a client refused for `why`.
    pub fn refuse(&self, why: XdsRefusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many clients were refused for `why`.
    pub fn refused(&self, why: XdsRefusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }
}

/// Why the xDS server refused a client: each is a limit of the Limits table
/// (docs/operating.md), and has its count in `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdsRefusal {
    /// A request larger than the request size limit.
    RequestTooLarge = 0,
    /// A request naming more resources than the limit for its type.
    TooManyNames,
    /// A `node.cluster` longer than any fleet name can be.
    FleetNameTooLong,
    /// A stream whose first request did not come in time.
    NoFirstRequest,
    /// A connection over the connection limit.
    TooManyConnections,
    /// A plaintext connection whose HTTP/2 preface did not come in time.
    NoPreface,
}

impl XdsRefusal {
    pub const ALL: [XdsRefusal; 6] = [
        XdsRefusal::RequestTooLarge,
        XdsRefusal::TooManyNames,
        XdsRefusal::FleetNameTooLong,
        XdsRefusal::NoFirstRequest,
        XdsRefusal::TooManyConnections,
        XdsRefusal::NoPreface,
    ];

    /// Its label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            XdsRefusal::RequestTooLarge => "request_too_large",
            XdsRefusal::TooManyNames => "too_many_names",
            XdsRefusal::FleetNameTooLong => "fleet_name_too_long",
            XdsRefusal::NoFirstRequest => "no_first_request",
            XdsRefusal::TooManyConnections => "too_many_connections",
            XdsRefusal::NoPreface => "no_preface",
        }
    }
}

/// The smallest request size limit: gRPC's usual default.
pub const MIN_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Names a request may carry beyond twice the largest published set of its type.
pub const NAMES_MARGIN: usize = 1024;

/// How large a well-behaved Envoy's requests can be, from what is published (now and just
/// before, which a reconnecting Envoy may still hold): the bytes of the largest fleet's
/// resource names and versions, and the largest set of each type.
#[derive(Debug, Default)]
struct Budget {
    names_and_versions: AtomicUsize,
    /// By `Kind` (its position in `Kind::ALL`).
    resources: [AtomicUsize; 4],
}

/// The budget `p` needs: (bytes of names and versions of its largest fleet, largest set of
/// each kind).
fn measure(p: &Published) -> (usize, [usize; 4]) {
    let mut bytes = 0;
    let mut resources = [0; 4];
    for snap in p.fleets.values().chain(std::iter::once(&p.other)) {
        let mut fleet_bytes = 0;
        for (kind, set) in snap.sets() {
            fleet_bytes += set
                .items
                .values()
                .map(|r| r.name.len() + r.version.len())
                .sum::<usize>();
            let i = Kind::ALL.iter().position(|k| *k == kind).expect("a kind");
            resources[i] = resources[i].max(set.len());
        }
        bytes = bytes.max(fleet_bytes);
    }
    (bytes, resources)
}

/// Something an observer (metrics, logs) may want to hear of as it happens.
#[derive(Clone, Debug)]
pub enum Observed {
    /// An Envoy that was connected when the last change was published ACKed the `kind` that
    /// change moved, for the first time: `since_change` is the time from the file change.
    ChangeAcked {
        kind: Kind,
        since_change: std::time::Duration,
    },
}

/// A function told of everything observed.
type Observer = Box<dyn Fn(Observed) + Send + Sync>;

/// Shared state of the server: the published snapshots, what was sent, who is connected.
pub struct Hub {
    pub(super) snapshots: watch::Sender<Arc<Published>>,
    pub(super) archive: Mutex<Archive>,
    pub(crate) envoys: Mutex<BTreeMap<u64, EnvoyStatus>>,
    pub(super) next_stream: AtomicU64,
    pub(super) closing: watch::Sender<bool>,
    pub counters: Counters,
    pub(super) observer: Mutex<Option<Observer>>,
    budget: Budget,
}

impl Hub {
    pub fn new(initial: Published) -> Arc<Hub> {
        let mut archive = Archive::default();
        record(&mut archive, &initial);
        let hub = Hub {
            budget: Budget::default(),
            snapshots: watch::Sender::new(Arc::new(initial)),
            archive: Mutex::new(archive),
            envoys: Mutex::new(BTreeMap::new()),
            next_stream: AtomicU64::new(1),
            closing: watch::Sender::new(false),
            counters: Counters::default(),
            observer: Mutex::new(None),
        };
        hub.set_budget(measure(&hub.current()));
        Arc::new(hub)
    }

    fn set_budget(&self, (bytes, resources): (usize, [usize; 4])) {
        self.budget
            .names_and_versions
            .store(bytes, Ordering::Relaxed);
        for (n, a) in resources.iter().zip(&self.budget.resources) {
            a.store(*n, Ordering::Relaxed);
        }
    }

    /// The largest request a stream takes unless told otherwise: twice the largest fleet's
    /// resource names and versions (what a delta reconnect reports holding), and at least
    /// 4 MiB. It follows what is published, so a fleet of 50,000 long cluster names can
    /// reconnect, and a small one does not let a client send 64 MiB.
    pub fn request_limit(&self) -> usize {
        (2 * self.budget.names_and_versions.load(Ordering::Relaxed)).max(MIN_REQUEST_BYTES)
    }

    /// The most names of `kind` a request may make a stream track (subscribed, or reported
    /// held on a delta reconnect): twice the largest published set of the kind, plus
    /// `NAMES_MARGIN`. `None` (a type not served) takes the largest of every kind.
    pub fn names_limit(&self, kind: Option<Kind>) -> usize {
        let largest = |i: usize| self.budget.resources[i].load(Ordering::Relaxed);
        let largest = match kind {
            Some(k) => largest(Kind::ALL.iter().position(|x| *x == k).expect("a kind")),
            None => (0..Kind::ALL.len()).map(largest).max().unwrap_or(0),
        };
        2 * largest + NAMES_MARGIN
    }

    /// Serves `p` from now on. Streams pick it up at once, or when they next can.
    pub fn publish(&self, p: Published) {
        // What the Envoys hold now and what they will hold: a reconnect may report either.
        let (before, after) = (measure(&self.current()), measure(&p));
        let mut resources = before.1;
        for (n, a) in resources.iter_mut().zip(after.1) {
            *n = (*n).max(a);
        }
        self.set_budget((before.0.max(after.0), resources));
        {
            let mut archive = self.archive.lock().expect("archive lock");
            archive.next_generation();
            record(&mut archive, &p);
        }
        // Which kinds each connected Envoy is now to ACK, for the change's propagation time.
        {
            let old = self.current();
            let mut envoys = self.envoys.lock().expect("envoys lock");
            for e in envoys.values_mut() {
                let (before, after) = (old.fleet(&e.fleet), p.fleet(&e.fleet));
                e.awaiting = Kind::ALL
                    .iter()
                    .filter(|k| {
                        before.set_for(**k, e.runtime).version
                            != after.set_for(**k, e.runtime).version
                    })
                    .fold(0, |bits, k| bits | k.bit());
            }
        }
        self.snapshots.send_replace(Arc::new(p));
    }

    /// Whether stream `id` was awaited for `kind` (and is no longer).
    pub(super) fn take_awaited(&self, id: u64, kind: Kind) -> bool {
        let mut envoys = self.envoys.lock().expect("envoys lock");
        let Some(e) = envoys.get_mut(&id) else {
            return false;
        };
        let awaited = e.awaiting & kind.bit() != 0;
        e.awaiting &= !kind.bit();
        awaited
    }

    pub fn current(&self) -> Arc<Published> {
        Arc::clone(&self.snapshots.borrow())
    }

    /// Every connected Envoy.
    pub fn envoys(&self) -> Vec<EnvoyStatus> {
        self.envoys
            .lock()
            .expect("envoys lock")
            .values()
            .cloned()
            .collect()
    }

    /// Calls `f` on everything observed (one observer; a later call replaces it).
    pub fn observe(&self, f: impl Fn(Observed) + Send + Sync + 'static) {
        *self.observer.lock().expect("observer lock") = Some(Box::new(f));
    }

    /// Ends every stream, so the gRPC server can shut down; Envoys keep their config.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The archived sets, for `--state-dir`.
    pub fn with_archive<T>(&self, f: impl FnOnce(&mut Archive) -> T) -> T {
        f(&mut self.archive.lock().expect("archive lock"))
    }

    /// The ADS service, open to any client that reaches it.
    pub fn service(self: &Arc<Self>) -> AdsService {
        self.service_with(Access::Open)
    }

    /// The ADS service, serving each stream only the fleets `access` allows its peer.
    pub fn service_with(self: &Arc<Self>, access: Access) -> AdsService {
        AdsService::new(Arc::clone(self), access)
    }

    pub(super) fn notify(&self, o: Observed) {
        if let Some(f) = self.observer.lock().expect("observer lock").as_ref() {
            f(o);
        }
    }
}

fn record(archive: &mut Archive, p: &Published) {
    for snap in p.fleets.values().chain(std::iter::once(&p.other)) {
        archive.record_snapshot(snap);
    }
}
