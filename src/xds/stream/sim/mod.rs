//! A protocol fuzzer's world: a simulated Envoy talks to one `StreamState` through a random
//! script (SotW or delta requests, ACKs and NACKs, right, stale and made-up nonces, route
//! subscriptions, wildcards, reconnects with what it holds, server restarts) while the files
//! change, and the protocol's invariants are checked after every step.
//!
//! Shared by the property test in the suite (`stream/proptests.rs`) and the cargo-fuzz target
//! `fuzz/fuzz_targets/protocol.rs`; compiled only for tests and with the `fuzz` feature, so
//! normal builds hold none of it.
//!
//! The invariants (`Failure::invariant` names the one broken):
//! - make-before-break: when Envoy applies a response, it never comes to hold a route
//!   configuration naming a cluster it does not hold; and every route configuration sent names
//!   only clusters Envoy had ACKed when it was sent (`plan`'s guarantee);
//! - a NACKed version is not sent again on the stream until something new calls for it:
//!   another version of it was sent since (new files, or names Envoy asked for since), or, in
//!   delta, the files moved that resource to another version or Envoy unsubscribed from it
//!   (the server keeps one refusal per resource, so that refusals cannot pile up);
//! - the stream's per-type state stays within the names the snapshots and subscriptions can
//!   hold, however many requests come;
//! - every response decodes to what the server says it is, every ACK and NACK is taken as one
//!   and a stale nonce as neither;
//! - an Envoy that then reconnects and ACKs everything ends holding the snapshot;
//! - a (re)connecting Envoy whose first request of a type says it holds what the snapshot
//!   gives it (a restart, or a switch to a replica with the same files) is sent nothing of that
//!   type until something changes: the files, its subscriptions, or its requests of that type.

mod checks;
mod envoy;
mod script;
mod world;

pub use script::{Config, Nonce, Opening, ROUTE_NAMES, Script, Step};

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};

use super::{Event, StreamState, Variant, index};
use crate::xds::resource::Kind;
use envoy::{Decoded, Envoy};
use world::World;

/// The invariants, as `Failure::invariant` names them.
pub const MAKE_BEFORE_BREAK: &str = "make-before-break";
pub const NACKED_RESENT: &str = "a NACKed version is not sent again";
pub const BOUNDED: &str = "per-type state bounded by the snapshot";
pub const WELL_FORMED: &str = "responses, ACKs and nonces are what they say";
pub const CONVERGES: &str = "an Envoy that ACKs everything ends holding the snapshot";
pub const QUIET: &str = "a reconnect holding the snapshot is sent nothing";

/// How often things happened: the property test checks that the scripts reach the cases that
/// matter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub steps: usize,
    pub responses: usize,
    pub acks: usize,
    pub nacks: usize,
    pub stale: usize,
    pub reconnects: usize,
    pub restarts: usize,
    /// Cluster responses after which Envoy still holds a cluster the files dropped, because
    /// its routes still use it (make-before-break at work).
    pub kept: usize,
    /// Cluster removals under routes that still used them, forgiven because the server could
    /// not know those routes (a SotW reconnect holding a cluster version it never sent, which
    /// it reports as `Event::UnknownVersion`).
    pub forgiven: usize,
    /// First requests of a type that held what the snapshot gives (none may be answered).
    pub quiet: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.steps += o.steps;
        self.responses += o.responses;
        self.acks += o.acks;
        self.nacks += o.nacks;
        self.stale += o.stale;
        self.reconnects += o.reconnects;
        self.restarts += o.restarts;
        self.kept += o.kept;
        self.forgiven += o.forgiven;
        self.quiet += o.quiet;
    }
}

/// An invariant broken, with what happened up to there.
#[derive(Debug)]
pub struct Failure {
    pub invariant: &'static str,
    pub detail: String,
    pub log: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.invariant, self.detail)?;
        for line in &self.log {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs the script `data` spells (at most `max_steps` steps), checking every invariant.
pub fn run(data: &[u8], max_steps: usize) -> Result<Stats, Failure> {
    run_script(&Script::decode(data, max_steps))
}

/// Runs `script`, checking every invariant after every step.
pub fn run_script(script: &Script) -> Result<Stats, Failure> {
    let mut sim = Sim {
        world: World::new(script.initial),
        envoy: Envoy::new(script.variant, script.runtime),
        conn: Conn::new(script.variant),
        stats: Stats::default(),
        log: vec![format!(
            "{} Envoy{}, files {:?}",
            script.variant,
            if script.runtime {
                " with the layer"
            } else {
                ""
            },
            script.initial
        )],
    };
    sim.connect(script.first)?;
    for step in &script.steps {
        sim.log.push(format!("{step:?}"));
        sim.step(step)?;
        sim.check_bounded()?;
        sim.stats.steps += 1;
    }
    sim.converge()?;
    Ok(sim.stats)
}

/// One stream, as both ends see it.
struct Conn {
    state: StreamState,
    /// Responses sent that Envoy has not taken yet, oldest first.
    wire: VecDeque<Decoded>,
    opened: [bool; 4],
    node_sent: bool,
    /// The nonce of the last response of each type Envoy took.
    last_nonce: [String; 4],
    /// Every nonce Envoy took on this stream.
    taken: Vec<String>,
    /// What Envoy NACKed on this stream: (kind, name, version); in SotW the name is empty and
    /// the version the response's.
    nacked: BTreeSet<(Kind, String, String)>,
    /// SotW: Envoy reconnected holding a cluster version the server does not know.
    clusters_unknown: bool,
    /// By kind: its first request held what the snapshot gives, and nothing changed since, so
    /// nothing of it may be sent.
    quiet: [bool; 4],
}

impl Conn {
    fn new(variant: Variant) -> Conn {
        Conn {
            state: StreamState::new(variant),
            wire: VecDeque::new(),
            opened: [false; 4],
            node_sent: false,
            last_nonce: Default::default(),
            taken: Vec::new(),
            nacked: BTreeSet::new(),
            clusters_unknown: false,
            quiet: [false; 4],
        }
    }
}

enum Request {
    Sotw(DiscoveryRequest),
    Delta(DeltaDiscoveryRequest),
}

/// What the answer to a request must be.
#[derive(PartialEq, Eq)]
enum Expect {
    Ack(Kind),
    Nack(Kind),
    /// Neither an ACK nor a NACK.
    Nothing,
}

struct Sim {
    world: World,
    envoy: Envoy,
    conn: Conn,
    stats: Stats,
    log: Vec<String>,
}

impl Sim {
    fn fail(&self, invariant: &'static str, detail: String) -> Failure {
        Failure {
            invariant,
            detail,
            log: self.log.clone(),
        }
    }

    fn variant(&self) -> Variant {
        self.envoy.variant
    }

    fn step(&mut self, step: &Step) -> Result<(), Failure> {
        match step {
            Step::Take { nack } => self.take(*nack),
            Step::Publish(config) => {
                self.conn.quiet = [false; 4];
                self.world.publish(*config);
                self.forget_changed_nacks();
                self.plan()
            }
            Step::Routes {
                name,
                subscribe,
                nonce,
            } => self.routes(ROUTE_NAMES[*name], *subscribe, *nonce),
            Step::Stale { kind, nonce } => self.stale(*kind, *nonce),
            Step::Open(kind) => self.open_again(*kind),
            Step::Reconnect(opening) => self.connect(*opening),
            Step::Restart(opening) => {
                self.stats.restarts += 1;
                self.world.restart();
                self.connect(*opening)
            }
        }
    }

    /// Sends a request; checks what the server made of it; plans.
    fn request(&mut self, req: Request, expect: Expect) -> Result<(), Failure> {
        let node = (!self.conn.node_sent).then(|| self.envoy.node());
        self.conn.node_sent = true;
        let archive = &self.world.archive;
        let events = match req {
            Request::Sotw(mut r) => {
                r.node = node;
                self.conn.state.on_sotw(&r, archive)
            }
            Request::Delta(mut r) => {
                r.node = node;
                self.conn.state.on_delta(&r, archive)
            }
        };
        let events = events.map_err(|e| self.fail(WELL_FORMED, format!("refused: {e}")))?;
        let mut answered = Expect::Nothing;
        for e in &events {
            match e {
                Event::Ack { kind, .. } => answered = Expect::Ack(*kind),
                Event::Nack { kind, .. } => answered = Expect::Nack(*kind),
                Event::UnknownVersion { kind, version } => {
                    self.log
                        .push(format!("  server: unknown {kind} version {version}"));
                    if *kind == Kind::Cluster && self.variant() == Variant::Sotw {
                        self.conn.clusters_unknown = true;
                    }
                }
                Event::UnknownType { .. } => {}
            }
        }
        if answered != expect {
            return Err(self.fail(WELL_FORMED, format!("the server made {events:?} of it")));
        }
        self.plan()
    }

    /// Plans as the server does after every request and snapshot, and checks what is sent.
    fn plan(&mut self) -> Result<(), Failure> {
        if !self.conn.node_sent {
            return Ok(());
        }
        let out = self
            .conn
            .state
            .plan(&self.world.snap, &mut self.world.archive);
        for r in out {
            let d = envoy::decode(self.variant(), &r).map_err(|e| self.fail(WELL_FORMED, e))?;
            let names: Vec<String> = d
                .resources
                .iter()
                .map(|(n, i)| format!("{n}@{}", i.version))
                .collect();
            self.log.push(format!(
                "  sent {} {} nonce {}: {names:?} removed {:?}",
                d.kind, d.version, d.nonce, d.removed
            ));
            self.stats.responses += 1;
            self.check_quiet(&d)?;
            self.check_not_nacked(&d)?;
            self.forget_nacks(&d);
            self.check_sent_routes(&d)?;
            self.conn.wire.push_back(d);
        }
        Ok(())
    }

    /// Envoy takes the oldest response and ACKs or NACKs it.
    fn take(&mut self, nack: bool) -> Result<(), Failure> {
        let Some(d) = self.conn.wire.pop_front() else {
            return Ok(());
        };
        let kind = d.kind;
        self.conn.last_nonce[index(kind)] = d.nonce.clone();
        self.conn.taken.push(d.nonce.clone());
        if nack {
            self.stats.nacks += 1;
            self.note_nack(&d);
            let req = self.answer(kind, &d.nonce, Some("rejected by the simulated Envoy"));
            return self.request(req, Expect::Nack(kind));
        }
        self.stats.acks += 1;
        self.apply(&d)?;
        let req = self.answer(kind, &d.nonce, None);
        self.request(req, Expect::Ack(kind))
    }

    /// An ACK (or, with `error`, a NACK) of the response with `nonce`.
    fn answer(&self, kind: Kind, nonce: &str, error: Option<&str>) -> Request {
        match self.variant() {
            Variant::Sotw => Request::Sotw(self.envoy.sotw(kind, nonce, error)),
            Variant::Delta => Request::Delta(self.envoy.delta(kind, vec![], vec![], nonce, error)),
        }
    }

    fn nonce(&self, kind: Kind, choice: Nonce) -> String {
        match choice {
            Nonce::Last => self.conn.last_nonce[index(kind)].clone(),
            // A SotW Envoy's requests carry the last nonce of their type once there is one
            // (an empty nonce is a first request, answered whatever was NACKed before).
            Nonce::Empty if self.variant() == Variant::Sotw => {
                self.conn.last_nonce[index(kind)].clone()
            }
            Nonce::Empty => String::new(),
            Nonce::Old(i) if !self.conn.taken.is_empty() => {
                self.conn.taken[usize::from(i) % self.conn.taken.len()].clone()
            }
            Nonce::Old(_) | Nonce::Bogus => "never-sent".into(),
        }
    }

    fn routes(&mut self, name: &str, subscribe: bool, nonce: Nonce) -> Result<(), Failure> {
        // Another subscription: routes (and the runtime values they read) may be answered.
        self.lift_quiet(Kind::Route);
        if subscribe {
            self.envoy.routes.insert(name.to_string());
        } else {
            self.envoy.unsubscribe(name);
            // Delta: subscribing again is a new question, answered with what there is.
            self.conn
                .nacked
                .retain(|(k, n, _)| *k != Kind::Route || n != name);
        }
        if !self.conn.opened[index(Kind::Route)] {
            return self.open(Kind::Route);
        }
        let nonce = self.nonce(Kind::Route, nonce);
        let req = match self.variant() {
            Variant::Sotw => Request::Sotw(self.envoy.sotw(Kind::Route, &nonce, None)),
            Variant::Delta => {
                let names = vec![name.to_string()];
                let (sub, unsub) = if subscribe {
                    (names, vec![])
                } else {
                    (vec![], names)
                };
                Request::Delta(self.envoy.delta(Kind::Route, sub, unsub, &nonce, None))
            }
        };
        self.request(req, Expect::Nothing)
    }

    fn stale(&mut self, kind: Option<Kind>, nonce: Nonce) -> Result<(), Failure> {
        self.stats.stale += 1;
        let Some(kind) = kind else {
            // A type canary-xds does not serve.
            let url = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
            let req = match self.variant() {
                Variant::Sotw => Request::Sotw(DiscoveryRequest {
                    type_url: url.into(),
                    ..Default::default()
                }),
                Variant::Delta => Request::Delta(DeltaDiscoveryRequest {
                    type_url: url.into(),
                    ..Default::default()
                }),
            };
            return self.request(req, Expect::Nothing);
        };
        if !self.conn.opened[index(kind)] {
            return Ok(());
        }
        let nonce = self.nonce(kind, nonce);
        if nonce.is_empty() && self.variant() == Variant::Sotw {
            // A request before any response of its type: a question asked again.
            self.lift_quiet(kind);
        }
        let req = self.answer(kind, &nonce, None);
        self.request(req, Expect::Nothing)
    }

    /// The first request of `kind` on this stream, with what Envoy holds.
    fn open(&mut self, kind: Kind) -> Result<(), Failure> {
        self.conn.opened[index(kind)] = true;
        if self.holds_snapshot(kind) {
            self.stats.quiet += 1;
            self.conn.quiet[index(kind)] = true;
        }
        let req = match self.variant() {
            Variant::Sotw => Request::Sotw(self.envoy.sotw(kind, "", None)),
            Variant::Delta => Request::Delta(self.envoy.delta_first(kind)),
        };
        self.request(req, Expect::Nothing)
    }

    /// The first request of `kind`, or the same request again, the wildcard spelled the
    /// other way.
    fn open_again(&mut self, kind: Kind) -> Result<(), Failure> {
        let kind = if kind == Kind::Runtime && !self.envoy.runtime {
            Kind::Route
        } else {
            kind
        };
        if !self.conn.opened[index(kind)] {
            return self.open(kind);
        }
        self.lift_quiet(kind);
        let nonce = self.conn.last_nonce[index(kind)].clone();
        let req = match self.variant() {
            Variant::Sotw => {
                if kind.is_wildcard() {
                    self.envoy.explicit_wildcard = !self.envoy.explicit_wildcard;
                }
                Request::Sotw(self.envoy.sotw(kind, &nonce, None))
            }
            Variant::Delta => {
                let again = match kind {
                    Kind::Cluster | Kind::Listener => vec!["*".to_string()],
                    _ => self.envoy.delta_first(kind).resource_names_subscribe,
                };
                Request::Delta(self.envoy.delta(kind, again, vec![], &nonce, None))
            }
        };
        self.request(req, Expect::Nothing)
    }

    /// A new stream (the last one broke): Envoy asks again for what it had, with what it holds.
    fn connect(&mut self, opening: Opening) -> Result<(), Failure> {
        if self.conn.node_sent {
            self.stats.reconnects += 1;
        }
        self.conn = Conn::new(self.variant());
        self.envoy.explicit_wildcard = opening.explicit_wildcard;
        let mut kinds = vec![Kind::Cluster, Kind::Listener];
        if opening.routes {
            kinds.push(Kind::Route);
        }
        if self.envoy.runtime && opening.layer {
            kinds.push(Kind::Runtime);
        }
        let n = kinds.len();
        kinds.rotate_left(usize::from(opening.rotate) % n);
        for kind in kinds {
            self.open(kind)?;
        }
        Ok(())
    }
}
