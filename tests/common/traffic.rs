//! Traffic through Envoy: a burst counted by reply, steady background requests, and the
//! binomial interval a split's counts must fall in.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::http::{Client, Reply};
use super::wait::wait_for;

/// Sends `n` requests and counts replies by body (non-2xx replies count as `status:<code>`).
pub fn tally(port: u16, path: &str, headers: &[(&str, &str)], n: usize) -> BTreeMap<String, usize> {
    let mut client = Client::new(port);
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = client.get(path, headers);
        let key = if (200..300).contains(&r.status) {
            r.body
        } else {
            format!("status:{}", r.status)
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Steady background traffic that records every reply that is not a 2xx.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    pub failures: Arc<Mutex<Vec<(Instant, Reply)>>>,
    pub bodies: Arc<Mutex<BTreeMap<String, u64>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Traffic {
    /// About `rps` requests per second to `path` on one keep-alive connection.
    pub fn start(port: u16, path: &str, rps: u64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(BTreeMap::new()));
        let (s, n, f, b, path) = (
            stop.clone(),
            sent.clone(),
            failures.clone(),
            bodies.clone(),
            path.to_string(),
        );
        let handle = thread::spawn(move || {
            let mut client = Client::new(port);
            let gap = Duration::from_micros(1_000_000 / rps.max(1));
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let r = client.get(&path, &[]);
                n.fetch_add(1, Ordering::Relaxed);
                if (200..300).contains(&r.status) {
                    *b.lock().unwrap().entry(r.body).or_insert(0) += 1;
                } else {
                    f.lock().unwrap().push((Instant::now(), r));
                }
                next += gap;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        });
        Traffic {
            stop,
            sent,
            failures,
            bodies,
            handle: Some(handle),
        }
    }

    /// Waits until at least `n` more requests went out.
    pub fn pass(&self, n: u64) {
        let start = self.sent.load(Ordering::Relaxed);
        wait_for("traffic", Duration::from_secs(30), || {
            (self.sent.load(Ordering::Relaxed) >= start + n).then_some(())
        });
    }

    pub fn stop(mut self) -> (u64, Vec<(Instant, Reply)>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failures.lock().unwrap().clone(),
            self.bodies.lock().unwrap().clone(),
        )
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The two-sided 99.99% interval of a binomial count: mean +- 3.89 standard deviations (the
/// normal approximation is good here: n*p*(1-p) is in the hundreds). A correct system falls
/// outside it once in 10,000 runs.
pub fn binomial_interval(n: usize, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean - 3.89 * sd, mean + 3.89 * sd)
}
