//! What the simulated Envoy and the files do, decoded from bytes: any input is a script (a
//! byte that runs out reads as 0), so the fuzzer and the property test share one generator.

use crate::xds::resource::Kind;
use crate::xds::stream::Variant;

/// The route configurations the simulated Envoy may subscribe to: ours, the side table, and
/// one no snapshot has.
pub const ROUTE_NAMES: [&str; 3] = ["canary-xds", "side", "ghost"];

/// One run: who the Envoy is, then what happens.
#[derive(Clone, Debug)]
pub struct Script {
    pub variant: Variant,
    /// Whether the Envoy declares canary-xds's runtime layer (and so asks for RTDS).
    pub runtime: bool,
    /// The files before the Envoy first connects.
    pub initial: Config,
    /// How the Envoy opens its first stream.
    pub first: Opening,
    pub steps: Vec<Step>,
}

/// The files, as the few things about them that matter to the protocol: a canary beside
/// `main` whose weight moves and whose service (so cluster) comes and goes, a second route
/// with its own cluster, and a side route table naming some of those clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The canary's service (0: `canary-a`, 1: `canary-b`) and weight, if any.
    pub canary: Option<(u8, u8)>,
    /// The second route's service (0: `second-a`, 1: `second-b`), if any.
    pub second: Option<u8>,
    /// What the side table routes to: 0 `main`, 1 the canary, 2 the second route's service,
    /// 3 `main` and the canary, weighted (`main` alone when that service is absent).
    pub side: u8,
}

/// How the Envoy opens a stream: which kinds it asks for at once, in which order, and
/// whether it names the wildcard `*` or leaves the names empty (legacy wildcard).
#[derive(Clone, Copy, Debug)]
pub struct Opening {
    pub explicit_wildcard: bool,
    /// Asks for route configurations at once (else after a later step).
    pub routes: bool,
    /// Asks for the runtime layer at once (runtime Envoys only).
    pub layer: bool,
    /// Rotates the order of the first requests.
    pub rotate: u8,
}

/// Which nonce a request carries.
#[derive(Clone, Copy, Debug)]
pub enum Nonce {
    /// The nonce of the last response of this type the Envoy took.
    Last,
    Empty,
    /// The nonce of an older response on this stream (any type).
    Old(u8),
    /// A nonce this stream never sent.
    Bogus,
}

#[derive(Clone, Debug)]
pub enum Step {
    /// The Envoy takes the oldest response it was sent and ACKs or NACKs it.
    Take { nack: bool },
    /// The files change: a snapshot is published.
    Publish(Config),
    /// The Envoy subscribes to or unsubscribes from a route configuration.
    Routes {
        name: usize,
        subscribe: bool,
        nonce: Nonce,
    },
    /// A request that answers nothing (a stale or made-up nonce); `kind` None is a type
    /// canary-xds does not serve.
    Stale { kind: Option<Kind>, nonce: Nonce },
    /// The Envoy's first request for `kind` on this stream, or, if it asked already, the same
    /// request again (for a wildcard kind, with the other spelling of the wildcard).
    Open(Kind),
    /// The stream breaks; the Envoy reconnects with what it holds.
    Reconnect(Opening),
    /// The server restarts (forgetting every version it sent); the Envoy reconnects.
    Restart(Opening),
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
}

impl Config {
    fn decode(b: &mut Bytes<'_>) -> Config {
        let (a, c) = (b.next(), b.next());
        Config {
            canary: (a & 1 == 1).then_some(((a >> 1) & 1, ((a >> 2) % 11) * 10)),
            second: (c & 1 == 1).then_some((c >> 1) & 1),
            side: (c >> 2) % 4,
        }
    }
}

impl Opening {
    fn decode(b: &mut Bytes<'_>) -> Opening {
        let x = b.next();
        Opening {
            explicit_wildcard: x & 1 == 1,
            routes: x & 2 == 0,
            layer: x & 4 == 0,
            rotate: (x >> 3) % 4,
        }
    }
}

impl Nonce {
    fn decode(b: &mut Bytes<'_>) -> Nonce {
        let x = b.next();
        match x % 4 {
            0 => Nonce::Last,
            1 => Nonce::Empty,
            2 => Nonce::Old(x >> 2),
            _ => Nonce::Bogus,
        }
    }
}

fn kind(x: u8) -> Kind {
    Kind::ALL[usize::from(x) % Kind::ALL.len()]
}

impl Script {
    /// The script `data` spells, at most `max_steps` steps long.
    pub fn decode(data: &[u8], max_steps: usize) -> Script {
        let mut b = Bytes(data);
        let head = b.next();
        let initial = Config::decode(&mut b);
        let first = Opening::decode(&mut b);
        let mut steps = Vec::new();
        while !b.0.is_empty() && steps.len() < max_steps {
            let op = b.next() % 32;
            steps.push(match op {
                0..=9 | 27..=31 => Step::Take { nack: false },
                10..=11 => Step::Take { nack: true },
                12..=16 => Step::Publish(Config::decode(&mut b)),
                17..=19 => {
                    let x = b.next();
                    Step::Routes {
                        name: usize::from(x) % ROUTE_NAMES.len(),
                        subscribe: x & 0x80 == 0,
                        nonce: Nonce::decode(&mut b),
                    }
                }
                20..=21 => {
                    let x = b.next();
                    Step::Stale {
                        kind: (x % 5 != 4).then(|| kind(x % 5)),
                        nonce: Nonce::decode(&mut b),
                    }
                }
                22..=23 => Step::Open(kind(b.next())),
                24..=25 => Step::Reconnect(Opening::decode(&mut b)),
                _ => Step::Restart(Opening::decode(&mut b)),
            });
        }
        Script {
            variant: if head & 1 == 0 {
                Variant::Sotw
            } else {
                Variant::Delta
            },
            runtime: head & 2 == 2,
            initial,
            first,
            steps,
        }
    }
}
