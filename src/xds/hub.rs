//! The hub: what is published, what each connected Envoy holds, and who hears of it.
//!
//! The watch loop publishes snapshots here; every ADS stream reads the latest one from here and
//! reports its Envoy's status back; admin and metrics read both.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
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
    pub(super) envoys: Mutex<BTreeMap<u64, EnvoyStatus>>,
    pub(super) next_stream: AtomicU64,
    pub(super) closing: watch::Sender<bool>,
    pub counters: Counters,
    pub(super) observer: Mutex<Option<Observer>>,
}

impl Hub {
    pub fn new(initial: Published) -> Arc<Hub> {
        let mut archive = Archive::default();
        record(&mut archive, &initial);
        Arc::new(Hub {
            snapshots: watch::Sender::new(Arc::new(initial)),
            archive: Mutex::new(archive),
            envoys: Mutex::new(BTreeMap::new()),
            next_stream: AtomicU64::new(1),
            closing: watch::Sender::new(false),
            counters: Counters::default(),
            observer: Mutex::new(None),
        })
    }

    /// Serves `p` from now on. Streams pick it up at once, or when they next can.
    pub fn publish(&self, p: Published) {
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
