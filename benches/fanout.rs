//! Fan-out and churn benchmark: many Envoy-like ADS streams against one control plane.
//!
//! `cargo bench --bench fanout -- [fanout|churn] [flags]` (or `benches/fanout.sh`, which raises
//! `ulimit -n` first; `--help` lists the flags). The control plane runs in this process
//! (`serve::start` on 127.0.0.1:0 over a temporary directory of generated Mappings), so the
//! counting allocator sees only its heap; the load client runs in a child process (this binary
//! again, with `--client`) and reports over its stdout when each stream ACKed what.
//!
//! - `fanout`: N streams (100, 1,000, 5,000) per ADS variant. One weight edit at a time, written
//!   with a rename; measured from the rename to the moment each stream sent its ACK of the route
//!   table that carries it (both processes read the same wall clock). Also: the live heap idle
//!   with 0 and with N streams, its peak during a push (sampled every 0.5 ms), and the process
//!   CPU time (`/proc/self/stat`) from the rename until the control plane is idle again.
//! - `churn`: 10 weight edits a second for 60 s with 100 streams, some of them slow readers
//!   (they sleep before reading each response): live heap at start, middle and end, and every
//!   stream must end on the final version.
//!
//! The client opens one HTTP/2 connection per stream by default, because that is what Envoy
//! does (one ADS stream on its own connection per Envoy), so the per-stream figures include a
//! connection's buffers; `--conns K` multiplexes the streams over K connections instead, which
//! shows how much of the cost is the connection's. The client shares the machine's cores with
//! the control plane (its CPU is reported beside it), so on a small machine the times are an
//! upper bound of what separate Envoys would see.
//!
//! Targets are reported as met or missed, never asserted; the exit code is non-zero only when a
//! stream does not reach the version it must (a correctness failure).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canary_xds::serve::{Running, Settings, start};
use canary_xds::xds::Hub;
use canary_xds::xds::Snapshot;
use canary_xds::xds::resource::ResourceSet;
use mimalloc::MiMalloc;
use stats_alloc::StatsAlloc;

#[path = "shared/mapping_doc.rs"]
mod mapping_doc;
use mapping_doc::write_mapping_files;

/// Counts heap bytes (the counting is stats_alloc's): a steadier gauge than RSS.
#[global_allocator]
static ALLOC: &StatsAlloc<MiMalloc> = &COUNTED;
static COUNTED: StatsAlloc<MiMalloc> = StatsAlloc::new(MiMalloc);

/// The route configuration every stream subscribes to.
const ROUTE_NAME: &str = "canary-xds";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// The file the benchmark edits, and the Mapping in it whose weight it moves.
const EDIT_FILE: &str = "canary.yaml";
const EDITED_MAPPING: &str = "canary-a";
/// Kernel clock ticks per second for `/proc/*/stat` (USER_HZ: 100 on every Linux we run on).
const CLOCK_TICKS: u64 = 100;
/// The 64 KiB per stream of the target.
const STREAM_BUDGET: f64 = 64.0 * 1024.0;

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--client") {
        return client::main(&args[1..]);
    }
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fanout: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    println!(
        "fanout bench: {} Mappings; {}; open files limit {}",
        opts.mappings,
        loadavg(),
        fd_limit()
    );
    println!(
        "load client: a child process, {}",
        match opts.conns {
            Some(k) => format!("{k} HTTP/2 connection(s) multiplexing the streams"),
            None => "one HTTP/2 connection per stream (as Envoy: one connection per Envoy)".into(),
        }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut failed = false;
    let mut results = Vec::new();
    if opts.fanout {
        for &variant in &opts.variants {
            for &n in &opts.streams {
                match fanout_case(&rt, &opts, variant, n) {
                    Ok(r) => {
                        failed |= r.missing > 0;
                        r.print();
                        results.push(r);
                    }
                    Err(e) => {
                        println!("!! fanout {variant} {n}: {e}");
                        failed = true;
                    }
                }
            }
        }
        print_summary(&results, opts.mappings);
    }
    if opts.churn {
        for &variant in &opts.variants {
            match churn_case(&rt, &opts, variant) {
                Ok(ok) => failed |= !ok,
                Err(e) => {
                    println!("!! churn {variant}: {e}");
                    failed = true;
                }
            }
        }
    }
    println!("load at the end: {}", loadavg());
    if failed {
        println!("FAILED: a stream did not reach the version it had to (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

const USAGE: &str = "\
usage: cargo bench --bench fanout -- [fanout|churn] [flags]   (both when neither is named)

  --streams 100,1000,5000   fan-out stream counts
  --variants sotw,delta     ADS variants (fan-out and churn)
  --mappings 1000           generated Mappings served
  --reps N                  pushes per fan-out case (default 10; 5 at 5,000 streams or more)
  --conns K                 HTTP/2 connections the load client multiplexes its streams over
                            (default: one per stream, as Envoy has)
  --duration SECS           churn length (default 60)
  --rate N                  churn edits per second (default 10)
  --churn-streams N         churn streams (default 100)
  --slow N                  churn streams that are slow readers (default 10)
  --slow-ms MS              how long a slow reader sleeps before reading each response (default 500)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Sotw,
    Delta,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Sotw => "sotw",
            Variant::Delta => "delta",
        }
    }

    fn parse(s: &str) -> Option<Variant> {
        match s {
            "sotw" => Some(Variant::Sotw),
            "delta" => Some(Variant::Delta),
            _ => None,
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

struct Options {
    help: bool,
    fanout: bool,
    churn: bool,
    streams: Vec<usize>,
    variants: Vec<Variant>,
    mappings: usize,
    reps: Option<usize>,
    conns: Option<usize>,
    duration: Duration,
    rate: u32,
    churn_streams: usize,
    slow: usize,
    slow_ms: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            help: false,
            fanout: false,
            churn: false,
            streams: vec![100, 1_000, 5_000],
            variants: vec![Variant::Sotw, Variant::Delta],
            mappings: 1_000,
            reps: None,
            conns: None,
            duration: Duration::from_secs(60),
            rate: 10,
            churn_streams: 100,
            slow: 10,
            slow_ms: 500,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let num = |name: &str, v: String| -> Result<usize, String> {
                v.replace([',', '_'], "")
                    .parse()
                    .map_err(|_| format!("{name}: not a number: {v}"))
            };
            match a.as_str() {
                "-h" | "--help" => o.help = true,
                "fanout" => o.fanout = true,
                "churn" => o.churn = true,
                "--streams" => {
                    o.streams = value(a)?
                        .split(',')
                        .map(|s| num(a, s.to_string()))
                        .collect::<Result<_, _>>()?
                }
                "--variants" => {
                    o.variants = value(a)?
                        .split(',')
                        .map(|s| Variant::parse(s).ok_or(format!("unknown variant {s}")))
                        .collect::<Result<_, _>>()?
                }
                "--mappings" => o.mappings = num(a, value(a)?)?.max(2),
                "--reps" => o.reps = Some(num(a, value(a)?)?.clamp(1, 80)),
                "--conns" => o.conns = Some(num(a, value(a)?)?.max(1)),
                "--duration" => o.duration = Duration::from_secs(num(a, value(a)?)? as u64),
                "--rate" => o.rate = num(a, value(a)?)?.max(1) as u32,
                "--churn-streams" => o.churn_streams = num(a, value(a)?)?.max(1),
                "--slow" => o.slow = num(a, value(a)?)?,
                "--slow-ms" => o.slow_ms = num(a, value(a)?)? as u64,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if !o.fanout && !o.churn {
            o.fanout = true;
            o.churn = true;
        }
        Ok(o)
    }

    fn reps(&self, n: usize) -> usize {
        self.reps.unwrap_or(if n >= 5_000 { 5 } else { 10 })
    }
}

// --- the control plane under test ---

/// Writes `n` Mappings over files of 10 (the generator of `benches/pipeline.rs`: groups of 1 to
/// 3 backends, mixed weights, a few hosts and header canaries), two of them in `EDIT_FILE`.
fn generate(dir: &Path, n: usize) {
    write_mapping_files(dir, n - 2);
    fs::write(dir.join(EDIT_FILE), edit_text(5)).unwrap();
}

/// A canary and its stable service on one prefix: the canary takes `weight` percent.
fn edit_text(weight: u32) -> String {
    format!(
        "apiVersion: ambassador/v1\nkind: Mapping\nname: {EDITED_MAPPING}\nprefix: /canary/\nservice: canary-a.ns:8080\nweight: {weight}\n---\napiVersion: ambassador/v1\nkind: Mapping\nname: canary-b\nprefix: /canary/\nservice: canary-b.ns:8080\n"
    )
}

/// A control plane serving generated Mappings from a temporary directory.
struct Server {
    running: Running,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dir: PathBuf,
    staging: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    fn start(rt: &tokio::runtime::Runtime, mappings: usize) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        generate(&dir, mappings);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            start(Settings::for_dir(&dir), listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("the control plane starts")
        });
        Server {
            running,
            stop: Some(stop),
            staging: tmp.path().join("staging.yaml"),
            dir,
            _tmp: tmp,
        }
    }

    /// Moves the canary's weight the way an editor or `kubectl cp` would: write, then rename
    /// into place (the staging file is outside the watched directory).
    fn edit(&self, weight: u32) {
        fs::write(&self.staging, edit_text(weight)).unwrap();
        fs::rename(&self.staging, self.dir.join(EDIT_FILE)).unwrap();
    }

    /// Waits until the served snapshot gives the canary `weight` percent.
    fn wait_weight(&self, weight: u32, timeout: Duration) -> Result<Arc<Snapshot>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            // The admin state takes what is served just before the hub does.
            let tables = self.running.admin.served();
            let snap = self.running.hub.current().fleet("default");
            let served = tables
                .tables
                .fleet("default")
                .into_iter()
                .flat_map(|t| &t.routes)
                .flat_map(|r| &r.backends)
                .find(|b| b.mapping.id.name == EDITED_MAPPING)
                .map(|b| b.weight_bp);
            let in_hub = tables.published.fleet("default").version == snap.version;
            if in_hub && served == Some(weight * 100) {
                return Ok(snap);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the snapshot never gave {EDITED_MAPPING} {weight}% (it has {served:?} bp)"
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn stop(mut self, rt: &tokio::runtime::Runtime) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let done = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), &mut self.running.done).await
        });
        if !matches!(done, Ok(Ok(Ok(())))) {
            println!("   (the control plane did not stop cleanly: {done:?})");
        }
    }
}

/// The size of what a new stream is sent: it is also what each stream's transport buffers hold.
fn served(snap: &Snapshot) -> String {
    let bytes = |set: &ResourceSet| set.items.values().map(|r| r.any.len()).sum::<usize>();
    format!(
        "{} clusters ({:.0} KiB encoded), {} route table(s) ({:.0} KiB encoded)",
        snap.clusters.items.len(),
        bytes(&snap.clusters) as f64 / 1024.0,
        snap.routes.items.len(),
        bytes(&snap.routes) as f64 / 1024.0
    )
}

/// The version a stream reports once it holds `snap`'s route table: the set version (SotW
/// `version_info`), or the resource's version (delta).
fn route_version(snap: &Snapshot, variant: Variant) -> String {
    let route = snap
        .routes
        .items
        .get(ROUTE_NAME)
        .expect("the snapshot has the route configuration");
    match variant {
        Variant::Sotw => {
            ResourceSet::new([(ROUTE_NAME.to_string(), Arc::clone(route))].into()).version
        }
        Variant::Delta => route.version.clone(),
    }
}

// --- measuring ---

/// Heap bytes allocated and not yet freed, by the whole process. (stats_alloc already adds a
/// `realloc`'s growth to `bytes_allocated` and its shrinking to `bytes_deallocated`;
/// `bytes_reallocated` is the net of the two and must not be added again.)
fn live() -> i64 {
    let s = ALLOC.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Waits until the control plane is quiet: no ACK counted and at most one CPU tick (10 ms) per
/// 100 ms, for 300 ms (60 s at most). Returns when it was last busy. Streams keep working after
/// the last ACK (each ACK is planned on), so "all ACKed" is not "done".
fn quiesce(hub: &Hub) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut busy = Instant::now();
    let sample = || (hub.counters.acks.load(Ordering::Relaxed), cpu_time(None));
    let mut last = sample();
    loop {
        thread::sleep(Duration::from_millis(100));
        let now = sample();
        if now.0 != last.0 || now.1.saturating_sub(last.1) > Duration::from_millis(10) {
            busy = Instant::now();
        }
        last = now;
        if busy.elapsed() >= Duration::from_millis(300) || Instant::now() > deadline {
            return busy;
        }
    }
}

/// Live heap once the control plane is quiet: the median of a few samples.
fn settled_live(hub: &Hub) -> i64 {
    quiesce(hub);
    let mut v: Vec<i64> = (0..5)
        .map(|_| {
            thread::sleep(Duration::from_millis(100));
            live()
        })
        .collect();
    v.sort();
    v[2]
}

/// Samples the live heap on a thread of its own: its maximum, a series every `every`, and the
/// CPU time the sampling itself cost (to be taken off the process's).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Sampled>,
}

struct Sampled {
    max: i64,
    series: Vec<(Duration, i64)>,
    cpu: Duration,
}

impl Sampler {
    fn start(period: Duration, every: Option<Duration>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let cpu0 = cpu_time(Some("thread-self"));
            let t0 = Instant::now();
            let mut max = live();
            let mut series = vec![(Duration::ZERO, max)];
            let mut next = every.map(|e| t0 + e);
            while !flag.load(Ordering::Relaxed) {
                let l = live();
                max = max.max(l);
                if let (Some(at), Some(e)) = (next, every)
                    && Instant::now() >= at
                {
                    series.push((t0.elapsed(), l));
                    next = Some(at + e);
                }
                thread::sleep(period);
            }
            Sampled {
                max: max.max(live()),
                series,
                cpu: cpu_time(Some("thread-self")).saturating_sub(cpu0),
            }
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the sampler does not panic")
    }
}

/// User plus system CPU time from `/proc/<of>/stat`: of this process when `of` is `None` (which
/// counts its threads that have exited too), of a child by pid, or of `thread-self`.
fn cpu_time(of: Option<&str>) -> Duration {
    let path = format!("/proc/{}/stat", of.unwrap_or("self"));
    let Ok(stat) = fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    let ticks: u64 = f.iter().sum();
    Duration::from_millis(ticks * 1000 / CLOCK_TICKS)
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| {
            let f: Vec<&str> = s.split_whitespace().take(3).collect();
            format!("load average {} (1, 5, 15 min)", f.join(" "))
        })
        .unwrap_or_else(|_| "load average unknown".into())
}

fn fd_limit() -> String {
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(b: i64) -> f64 {
    b as f64 / 1048576.0
}

fn kib(b: f64) -> f64 {
    b / 1024.0
}

// --- the load client, seen from the parent ---

/// The child process running the streams.
struct LoadClient {
    child: std::process::Child,
    stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
}

impl LoadClient {
    fn spawn(
        addr: std::net::SocketAddr,
        n: usize,
        variant: Variant,
        conns: Option<usize>,
        slow: usize,
        slow_ms: u64,
    ) -> LoadClient {
        let exe = std::env::current_exe().expect("the bench binary's path");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--client",
            &addr.to_string(),
            &n.to_string(),
            variant.name(),
            &conns.unwrap_or(n).min(n).to_string(),
            &slow.to_string(),
            &slow_ms.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("the load client starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std_mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LoadClient {
            child,
            stdin,
            lines,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn send(&mut self, line: &str) {
        let _ = writeln!(self.stdin, "{line}");
        let _ = self.stdin.flush();
    }

    /// The next line starting with `word`, split into words (without it).
    fn expect(&mut self, word: &str, timeout: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|e| format!("no `{word}` from the load client: {e}"))?;
            let mut words = line.split_whitespace().map(str::to_string);
            match words.next().as_deref() {
                Some(w) if w == word => return Ok(words.collect()),
                Some("failed") => {
                    return Err(format!(
                        "the load client failed: {}",
                        words.collect::<Vec<_>>().join(" ")
                    ));
                }
                _ => {}
            }
        }
    }

    /// Asks when each stream ACKed `version`: per stream, the Unix time in ns, or `None`.
    fn acks(&mut self, version: &str, timeout: Duration) -> Result<Vec<Option<u64>>, String> {
        self.send(&format!("wait {version} {}", timeout.as_millis()));
        let words = self.expect("acks", timeout + Duration::from_secs(10))?;
        Ok(words.iter().map(|w| w.parse().ok()).collect())
    }

    fn quit(mut self) {
        self.send("quit");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- fan-out ---

struct FanoutResult {
    /// What is served, for the record (see `served`).
    served: String,
    variant: Variant,
    n: usize,
    reps: usize,
    connect: Duration,
    idle0: i64,
    idle_n: i64,
    after: i64,
    /// Every stream's completion time of every push.
    per_stream: Vec<Duration>,
    /// Per push: the last stream's completion, the reload (rename to published), peak minus
    /// the live heap just before the rename, server CPU, client CPU.
    last: Vec<Duration>,
    publish: Vec<Duration>,
    /// Per push: rename -> the control plane idle again (within the 100 ms of `quiesce`).
    done: Vec<Duration>,
    peak_over_idle: Vec<i64>,
    peak: Vec<i64>,
    cpu: Vec<Duration>,
    client_cpu: Vec<Duration>,
    missing: usize,
}

impl FanoutResult {
    fn per_stream_idle(&self) -> f64 {
        (self.idle_n - self.idle0) as f64 / self.n as f64
    }

    fn per_stream_push(&self) -> f64 {
        let peak = median_i64(&self.peak);
        (peak - self.idle0) as f64 / self.n as f64
    }

    fn print(&self) {
        let mut all = self.per_stream.clone();
        all.sort();
        let mut last = self.last.clone();
        last.sort();
        let mut publish = self.publish.clone();
        publish.sort();
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
        println!(
            "\n== fan-out: {} ADS, {} streams, {} pushes (all connected and in sync {:.0} ms after the client started)",
            self.variant,
            self.n,
            self.reps,
            ms(self.connect)
        );
        println!("   serving {}", self.served);
        println!("   rename -> stream ACKed the new route table (all streams, all pushes):");
        println!(
            "     p50 {:>8.1} ms   p99 {:>8.1} ms   last stream: median {:>8.1} ms, worst {:>8.1} ms",
            ms(pct(&all, 0.5)),
            ms(pct(&all, 0.99)),
            ms(pct(&last, 0.5)),
            ms(pct(&last, 1.0)),
        );
        let mut done = self.done.clone();
        done.sort();
        println!(
            "     rename -> snapshot published (the reload): median {:.1} ms; rename -> control plane idle again: median {:.0} ms (100 ms resolution)",
            ms(pct(&publish, 0.5)),
            ms(pct(&done, 0.5))
        );
        println!(
            "   live heap: idle, 0 streams {:>8.2} MiB | idle, {} streams {:>8.2} MiB | after they left {:>8.2} MiB",
            mib(self.idle0),
            self.n,
            mib(self.idle_n),
            mib(self.after)
        );
        println!(
            "              per stream beyond the shared snapshot (idle N - idle 0)/N: {:>7.1} KiB",
            kib(self.per_stream_idle())
        );
        println!(
            "              peak during a push minus idle just before it: median {:>7.2} MiB, max {:>7.2} MiB ({:.1} KiB per stream)",
            mib(median_i64(&self.peak_over_idle)),
            mib(*self.peak_over_idle.iter().max().unwrap_or(&0)),
            kib(median_i64(&self.peak_over_idle) as f64 / self.n as f64)
        );
        println!(
            "              per stream during a push (peak - idle 0)/N: {:>7.1} KiB",
            kib(self.per_stream_push())
        );
        println!(
            "   CPU per push (rename until the control plane is idle again; 10 ms ticks, mean): control plane {:.0} ms, load client {:.0} ms",
            ms(mean(&self.cpu)),
            ms(mean(&self.client_cpu))
        );
        if self.missing > 0 {
            println!(
                "   !! {} stream-pushes never ACKed the new route table",
                self.missing
            );
        }
    }
}

fn median_i64(v: &[i64]) -> i64 {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn fanout_case(
    rt: &tokio::runtime::Runtime,
    opts: &Options,
    variant: Variant,
    n: usize,
) -> Result<FanoutResult, String> {
    let reps = opts.reps(n);
    if let Ok(limit) = fd_limit().parse::<usize>()
        && limit < n + 200
    {
        println!(
            "   (only {limit} open files allowed: {n} streams need about {}; run benches/fanout.sh)",
            n + 200
        );
    }
    let server = Server::start(rt, opts.mappings);
    // Let the generated files leave the reloader's "racy" window (2 s), so that a reload reads
    // only what changed, as on a real system.
    thread::sleep(Duration::from_millis(2200));
    let idle0 = settled_live(&server.running.hub);
    let served = served(&server.running.hub.current().fleet("default"));
    let t = Instant::now();
    let mut client = LoadClient::spawn(server.running.xds_addr, n, variant, opts.conns, 0, 0);
    let ready = client.expect("ready", Duration::from_secs(600));
    let connect = t.elapsed();
    if let Err(e) = ready {
        client.quit();
        server.stop(rt);
        return Err(e);
    }
    let idle_n = settled_live(&server.running.hub);
    let mut r = FanoutResult {
        served,
        variant,
        n,
        reps,
        connect,
        idle0,
        idle_n,
        after: 0,
        per_stream: Vec::new(),
        last: Vec::new(),
        publish: Vec::new(),
        done: Vec::new(),
        peak_over_idle: Vec::new(),
        peak: Vec::new(),
        cpu: Vec::new(),
        client_cpu: Vec::new(),
        missing: 0,
    };
    let mut error = None;
    for rep in 0..reps {
        let weight = 10 + rep as u32;
        let before = live();
        let sampler = Sampler::start(Duration::from_micros(500), None);
        let (cpu0, ccpu0) = (cpu_time(None), cpu_time(Some(&client.pid())));
        let t0_ns = unix_ns();
        let t0 = Instant::now();
        server.edit(weight);
        let snap = match server.wait_weight(weight, Duration::from_secs(10)) {
            Ok(s) => s,
            Err(e) => {
                sampler.finish();
                error = Some(e);
                break;
            }
        };
        r.publish.push(t0.elapsed());
        let version = route_version(&snap, variant);
        drop(snap);
        let acks = match client.acks(&version, Duration::from_secs(60)) {
            Ok(a) => a,
            Err(e) => {
                sampler.finish();
                error = Some(e);
                break;
            }
        };
        let busy = quiesce(&server.running.hub);
        r.done.push(busy.saturating_duration_since(t0));
        let (cpu1, ccpu1) = (cpu_time(None), cpu_time(Some(&client.pid())));
        let sampled = sampler.finish();
        let peak = sampled.max;
        r.cpu
            .push(cpu1.saturating_sub(cpu0).saturating_sub(sampled.cpu));
        r.client_cpu.push(ccpu1.saturating_sub(ccpu0));
        r.peak.push(peak);
        r.peak_over_idle.push(peak - before);
        let mut last = Duration::ZERO;
        for a in &acks {
            match a {
                Some(at) => {
                    let d = Duration::from_nanos(at.saturating_sub(t0_ns));
                    last = last.max(d);
                    r.per_stream.push(d);
                }
                None => r.missing += 1,
            }
        }
        r.last.push(last);
    }
    client.quit();
    r.after = settled_live(&server.running.hub);
    server.stop(rt);
    match error {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

fn print_summary(results: &[FanoutResult], mappings: usize) {
    if results.is_empty() {
        return;
    }
    println!("\n== fan-out summary ({mappings} Mappings)");
    println!(
        "{:<6} {:>6} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>11} {:>10} {:>11} | {:>8} {:>8}",
        "ADS",
        "N",
        "p50 ms",
        "p99 ms",
        "last ms",
        "worst ms",
        "idle MiB",
        "idle KiB/st",
        "peak-idle",
        "push KiB/st",
        "cpu ms",
        "cli ms"
    );
    for r in results {
        let mut all = r.per_stream.clone();
        all.sort();
        let mut last = r.last.clone();
        last.sort();
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
        println!(
            "{:<6} {:>6} | {:>9.1} {:>9.1} {:>9.1} {:>9.1} | {:>9.2} {:>11.1} {:>9.2}M {:>11.1} | {:>8.0} {:>8.0}",
            r.variant.name(),
            r.n,
            ms(pct(&all, 0.5)),
            ms(pct(&all, 0.99)),
            ms(pct(&last, 0.5)),
            ms(pct(&last, 1.0)),
            mib(r.idle_n),
            kib(r.per_stream_idle()),
            mib(median_i64(&r.peak_over_idle)),
            kib(r.per_stream_push()),
            ms(mean(&r.cpu)),
            ms(mean(&r.client_cpu)),
        );
    }
    println!(
        "(p50/p99 over every stream of every push; last = the last stream of a push, median over pushes; worst = the slowest push;\n idle KiB/st = (idle N - idle 0)/N; peak-idle = peak during a push minus the live heap just before it, median;\n push KiB/st = (peak - idle 0)/N; cpu = control plane CPU per push, cli = the load client's)"
    );
    println!("\n== targets (issue 5, point 4)");
    for variant in [Variant::Sotw, Variant::Delta] {
        let of: Vec<&FanoutResult> = results.iter().filter(|r| r.variant == variant).collect();
        if of.is_empty() {
            continue;
        }
        if let Some(r) = of.iter().find(|r| r.n == 1_000) {
            let mut last = r.last.clone();
            last.sort();
            let median = pct(&last, 0.5);
            println!(
                "{variant:<5} 1,000 streams all in sync within 1 s: {} (the last stream of a push: median {:.0} ms over {} pushes; the worst push {:.0} ms)",
                verdict(median <= Duration::from_secs(1)),
                ms(median),
                last.len(),
                ms(pct(&last, 1.0))
            );
        }
        for r in &of {
            // The issue sets the budget at 1,000 streams; with fewer, a push's fixed cost (the
            // reload, about 0.5 MiB) weighs more per stream, so smaller runs are shown, not judged.
            let judge = |met: bool| {
                if r.n >= 1_000 {
                    verdict(met)
                } else {
                    "shown (the target is set at 1,000 streams)"
                }
            };
            println!(
                "{variant:<5} {:>5} streams: <= 64 KiB per stream idle: {} ({:.1} KiB); during a push: {} ({:.1} KiB)",
                r.n,
                judge(r.per_stream_idle() <= STREAM_BUDGET),
                kib(r.per_stream_idle()),
                judge(r.per_stream_push() <= STREAM_BUDGET),
                kib(r.per_stream_push()),
            );
        }
        if of.len() >= 2 {
            let first = of.first().unwrap();
            let last = of.last().unwrap();
            let (a, b) = (
                median_i64(&first.peak_over_idle),
                median_i64(&last.peak_over_idle),
            );
            // "Does not grow": within 2x (plus 1 MiB of noise) while the streams grew.
            let flat = b as f64 <= 2.0 * a.max(0) as f64 + 1048576.0;
            let slope = (b - a) as f64 / (last.n as f64 - first.n as f64).max(1.0);
            println!(
                "{variant:<5} peak - idle does not grow with N (at most 2x + 1 MiB): {} ({:.2} MiB at {} streams, {:.2} MiB at {}: {:+.1} KiB per added stream)",
                verdict(flat),
                mib(a),
                first.n,
                mib(b),
                last.n,
                kib(slope)
            );
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

// --- churn ---

fn churn_case(
    rt: &tokio::runtime::Runtime,
    opts: &Options,
    variant: Variant,
) -> Result<bool, String> {
    let n = opts.churn_streams;
    let slow = opts.slow.min(n);
    println!(
        "\n== churn: {variant} ADS, {n} streams ({slow} slow readers sleeping {} ms before each read), {} Mappings, {} edits/s for {} s",
        opts.slow_ms,
        opts.mappings,
        opts.rate,
        opts.duration.as_secs()
    );
    let server = Server::start(rt, opts.mappings);
    println!(
        "   serving {}",
        served(&server.running.hub.current().fleet("default"))
    );
    thread::sleep(Duration::from_millis(2200));
    let mut client = LoadClient::spawn(
        server.running.xds_addr,
        n,
        variant,
        opts.conns,
        slow,
        opts.slow_ms,
    );
    if let Err(e) = client.expect("ready", Duration::from_secs(600)) {
        client.quit();
        server.stop(rt);
        return Err(e);
    }
    let start_live = settled_live(&server.running.hub);
    let responses0 = server
        .running
        .hub
        .counters
        .responses
        .load(Ordering::Relaxed);
    let (cpu0, ccpu0) = (cpu_time(None), cpu_time(Some(&client.pid())));
    let every = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let edits = (opts.duration.as_secs_f64() * opts.rate as f64).round() as usize;
    let sampler = Sampler::start(
        Duration::from_millis(1),
        Some(opts.duration / 10).filter(|d| !d.is_zero()),
    );
    let t0 = Instant::now();
    let mut middle_live = None;
    let mut published = 0usize;
    let mut last_version = server
        .running
        .hub
        .current()
        .fleet("default")
        .version
        .clone();
    let mut weight = 0;
    for k in 0..edits {
        let at = t0 + every * k as u32;
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            thread::sleep(d);
        }
        let v = server
            .running
            .hub
            .current()
            .fleet("default")
            .version
            .clone();
        if v != last_version {
            published += 1;
            last_version = v;
        }
        if middle_live.is_none() && k >= edits / 2 {
            middle_live = Some(live());
        }
        weight = 10 + (k % 80) as u32;
        server.edit(weight);
    }
    let end_live = live();
    let edited = t0.elapsed();
    let t_last = unix_ns();
    let snap = server.wait_weight(weight, Duration::from_secs(10));
    let Sampled {
        max: max_live,
        series,
        cpu: sampler_cpu,
    } = sampler.finish();
    let snap = match snap {
        Ok(s) => s,
        Err(e) => {
            client.quit();
            server.stop(rt);
            return Err(e);
        }
    };
    if snap.version != last_version {
        published += 1;
    }
    let version = route_version(&snap, variant);
    drop(snap);
    let acks = client.acks(&version, Duration::from_secs(60));
    let (cpu1, ccpu1) = (cpu_time(None), cpu_time(Some(&client.pid())));
    let responses = server
        .running
        .hub
        .counters
        .responses
        .load(Ordering::Relaxed)
        - responses0;
    client.send("counts");
    let counts = client.expect("counts", Duration::from_secs(10));
    let synced_live = settled_live(&server.running.hub);
    client.quit();
    server.stop(rt);
    let acks = acks?;
    let counts: Vec<u64> = counts?.iter().filter_map(|w| w.parse().ok()).collect();

    println!(
        "   {edits} edits written in {:.1} s; at least {published} snapshots published (polled between edits)",
        edited.as_secs_f64()
    );
    println!(
        "   live heap: start {:.2} MiB | middle {:.2} MiB | end {:.2} MiB | all in sync after {:.2} MiB | max during churn {:.2} MiB",
        mib(start_live),
        mib(middle_live.unwrap_or(end_live)),
        mib(end_live),
        mib(synced_live),
        mib(max_live)
    );
    let series: Vec<String> = series
        .iter()
        .map(|(t, l)| format!("{:.1}s {:.2}", t.as_secs_f64(), mib(*l)))
        .collect();
    println!("   live heap over time (MiB): {}", series.join(" | "));
    let middle_live = middle_live.unwrap_or(end_live);
    let (growth, late) = (end_live - start_live, end_live - middle_live);
    println!(
        "   memory flat from start to end (within 2 MiB): {} (end - start {:+.2} MiB); no growth in the second half (bounded): {} (end - middle {:+.2} MiB)",
        verdict(growth.abs() <= 2 * 1048576),
        mib(growth),
        verdict(late.abs() <= 2 * 1048576),
        mib(late)
    );
    let reached = acks.iter().filter(|a| a.is_some()).count();
    let mut lag: Vec<Duration> = acks
        .iter()
        .flatten()
        .map(|at| Duration::from_nanos(at.saturating_sub(t_last)))
        .collect();
    lag.sort();
    println!(
        "   every stream ends on the final version: {reached}/{n} {}; last edit -> ACK: p50 {:.0} ms, last {:.0} ms",
        if reached == n { "(ok)" } else { "(FAILED)" },
        ms(pct(&lag, 0.5)),
        ms(pct(&lag, 1.0))
    );
    let stats = |v: &[u64]| {
        let sum: u64 = v.iter().sum();
        format!(
            "mean {:.0}, min {}, max {}",
            sum as f64 / v.len().max(1) as f64,
            v.iter().min().unwrap_or(&0),
            v.iter().max().unwrap_or(&0)
        )
    };
    if counts.len() == n {
        println!(
            "   route tables received per stream (skipping is expected; a backlog would show as slow = fast): slow {} | fast {}",
            stats(&counts[..slow]),
            stats(&counts[slow..])
        );
    }
    println!(
        "   responses sent by the server during churn: {responses} ({:.1} per stream)",
        responses as f64 / n as f64
    );
    let secs = edited.as_secs_f64().max(0.001);
    let cpu = cpu1.saturating_sub(cpu0).saturating_sub(sampler_cpu);
    let ccpu = ccpu1.saturating_sub(ccpu0);
    println!(
        "   CPU: control plane {:.2} s ({:.0}% of a core), load client {:.2} s ({:.0}% of a core)",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / secs,
        ccpu.as_secs_f64(),
        100.0 * ccpu.as_secs_f64() / secs
    );
    Ok(reached == n)
}

// --- the load client, in the child process ---

mod client {
    //! N Envoy-like ADS streams: the node (id, cluster `default`) on the first request only,
    //! CDS and LDS as wildcards, RDS `canary-xds` once the listener arrived, and an ACK with the
    //! right version and nonce for every response. Delta streams subscribe the same way and
    //! track the resources they hold. Commands come on stdin, reports go to stdout.

    use std::collections::HashMap;
    use std::hash::{DefaultHasher, Hash, Hasher};
    use std::io::{BufRead, Write};
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
    use tokio::sync::{Semaphore, mpsc};
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::{Channel, Endpoint};

    use super::{CDS, LDS, RDS, ROUTE_NAME, Variant, unix_ns};

    const MAX_MESSAGE: usize = 256 * 1024 * 1024;
    /// Connections opened at once: more would overflow the listen backlog.
    const CONNECTING: usize = 128;

    struct Config {
        addr: String,
        n: usize,
        variant: Variant,
        conns: usize,
        slow: usize,
        slow_delay: Duration,
    }

    /// What a stream tells the collector.
    enum Event {
        /// ACKed a response of `kind` (0 CDS, 1 LDS, 2 RDS); for RDS, the route version it now
        /// holds.
        Acked {
            stream: usize,
            kind: usize,
            route: Option<String>,
            at: u64,
        },
        Failed {
            stream: usize,
            error: String,
        },
    }

    pub fn main(args: &[String]) -> ExitCode {
        let parsed = (|| -> Option<Config> {
            Some(Config {
                addr: format!("http://{}", args.first()?),
                n: args.get(1)?.parse().ok()?,
                variant: Variant::parse(args.get(2)?)?,
                conns: args.get(3)?.parse().ok()?,
                slow: args.get(4)?.parse().ok()?,
                slow_delay: Duration::from_millis(args.get(5)?.parse().ok()?),
            })
        })();
        let Some(cfg) = parsed else {
            eprintln!("fanout --client ADDR N sotw|delta CONNS SLOW SLOW_MS");
            return ExitCode::from(2);
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(run(cfg));
        // Streams may still be open: leave without waiting for them.
        rt.shutdown_background();
        ExitCode::SUCCESS
    }

    fn say(line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    async fn run(cfg: Config) {
        let (events, mut event_rx) = mpsc::unbounded_channel();
        let (cmd_tx, mut commands) = mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if cmd_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let t0 = Instant::now();
        let endpoint = Endpoint::from_shared(cfg.addr.clone())
            .expect("a valid address")
            .tcp_nodelay(true);
        // Shared connections when multiplexing; otherwise each stream connects its own.
        let mut shared: Vec<Channel> = Vec::new();
        if cfg.conns < cfg.n {
            for _ in 0..cfg.conns {
                match endpoint.connect().await {
                    Ok(c) => shared.push(c),
                    Err(e) => {
                        say(&format!("failed connecting: {e}"));
                        return;
                    }
                }
            }
        }
        let gate = Arc::new(Semaphore::new(CONNECTING));
        for i in 0..cfg.n {
            let events = events.clone();
            let channel = shared.get(i % cfg.conns.max(1)).cloned();
            let endpoint = endpoint.clone();
            let gate = Arc::clone(&gate);
            let slow = (i < cfg.slow).then_some(cfg.slow_delay);
            let variant = cfg.variant;
            tokio::spawn(async move {
                let channel = match channel {
                    Some(c) => c,
                    None => {
                        let _permit = gate.acquire().await;
                        match endpoint.connect().await {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = events.send(Event::Failed {
                                    stream: i,
                                    error: format!("connect: {e}"),
                                });
                                return;
                            }
                        }
                    }
                };
                let result = match variant {
                    Variant::Sotw => sotw(i, channel, slow, &events).await,
                    Variant::Delta => delta(i, channel, slow, &events).await,
                };
                if let Err(error) = result {
                    let _ = events.send(Event::Failed { stream: i, error });
                }
            });
        }
        drop(events);

        let n = cfg.n;
        let mut kinds = vec![0u8; n];
        let mut ready = 0usize;
        let mut current: Vec<Option<(String, u64)>> = vec![None; n];
        let mut updates = vec![0u64; n];
        let mut waiting: Option<(String, tokio::time::Instant)> = None;
        let mut matching = 0usize;
        let mut open = true;
        let reply = |version: &str, current: &[Option<(String, u64)>]| {
            let mut line = String::with_capacity(8 + current.len() * 20);
            line.push_str("acks");
            for c in current {
                match c {
                    Some((v, at)) if v == version => line.push_str(&format!(" {at}")),
                    _ => line.push_str(" -"),
                }
            }
            say(&line);
        };
        loop {
            let deadline = waiting.as_ref().map(|(_, d)| *d);
            tokio::select! {
                event = event_rx.recv(), if open => match event {
                    Some(Event::Acked { stream, kind, route, at }) => {
                        if kinds[stream] != 7 {
                            kinds[stream] |= 1 << kind;
                            if kinds[stream] == 7 {
                                ready += 1;
                                if ready == n {
                                    say(&format!("ready {}", t0.elapsed().as_millis()));
                                }
                            }
                        }
                        if let Some(v) = route {
                            updates[stream] += 1;
                            if let Some((want, _)) = &waiting {
                                let was = current[stream].as_ref().is_some_and(|(c, _)| c == want);
                                let now = &v == want;
                                if was && !now { matching -= 1; }
                                if !was && now { matching += 1; }
                            }
                            current[stream] = Some((v, at));
                            if let Some((want, _)) = &waiting && matching == n {
                                reply(want, &current);
                                waiting = None;
                            }
                        }
                    }
                    Some(Event::Failed { stream, error }) => {
                        eprintln!("fanout client: stream {stream}: {error}");
                        if ready < n {
                            say(&format!("failed stream {stream} before all were in sync: {error}"));
                        }
                    }
                    // Every stream ended: keep answering the parent's commands.
                    None => open = false,
                },
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let words: Vec<&str> = command.split_whitespace().collect();
                    match words.as_slice() {
                        ["wait", version, timeout_ms] => {
                            let timeout = Duration::from_millis(timeout_ms.parse().unwrap_or(30_000));
                            matching = current
                                .iter()
                                .filter(|c| c.as_ref().is_some_and(|(v, _)| v == version))
                                .count();
                            if matching == n {
                                reply(version, &current);
                            } else {
                                waiting = Some((version.to_string(), tokio::time::Instant::now() + timeout));
                            }
                        }
                        ["counts"] => {
                            let mut line = "counts".to_string();
                            for u in &updates {
                                line.push_str(&format!(" {u}"));
                            }
                            say(&line);
                        }
                        ["quit"] => return,
                        _ => eprintln!("fanout client: unknown command {command:?}"),
                    }
                }
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    if let Some((want, _)) = waiting.take() {
                        reply(&want, &current);
                    }
                }
            }
        }
    }

    fn node(i: usize) -> Option<Node> {
        Some(Node {
            id: format!("fanout-{i}"),
            cluster: "default".into(),
            ..Default::default()
        })
    }

    fn kind(type_url: &str) -> Option<usize> {
        [CDS, LDS, RDS].iter().position(|t| *t == type_url)
    }

    /// A state-of-the-world ADS stream, as Envoy runs one with `set_node_on_first_message_only`.
    async fn sotw(
        i: usize,
        channel: Channel,
        slow: Option<Duration>,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), String> {
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let (tx, rx) = mpsc::channel(8);
        let request =
            |type_url: &str, names: Vec<String>, version: String, nonce: String| DiscoveryRequest {
                version_info: version,
                resource_names: names,
                type_url: type_url.to_string(),
                response_nonce: nonce,
                ..Default::default()
            };
        // Envoy asks for clusters first, listeners once clusters are in, and the route table
        // once a listener names it.
        let mut first = request(CDS, vec![], String::new(), String::new());
        first.node = node(i);
        tx.send(first).await.map_err(|e| e.to_string())?;
        let mut inbound = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|e| format!("open: {e}"))?
            .into_inner();
        let (mut lds, mut rds) = (false, false);
        loop {
            if let Some(d) = slow {
                tokio::time::sleep(d).await;
            }
            let response = inbound
                .message()
                .await
                .map_err(|e| format!("receive: {e}"))?
                .ok_or("the server ended the stream")?;
            let Some(k) = kind(&response.type_url) else {
                return Err(format!("unexpected type {}", response.type_url));
            };
            let names = if k == 2 {
                vec![ROUTE_NAME.to_string()]
            } else {
                vec![]
            };
            let ack = request(
                &response.type_url,
                names,
                response.version_info.clone(),
                response.nonce.clone(),
            );
            tx.send(ack).await.map_err(|e| e.to_string())?;
            let at = unix_ns();
            let route = (k == 2).then(|| response.version_info.clone());
            drop(response);
            let _ = events.send(Event::Acked {
                stream: i,
                kind: k,
                route,
                at,
            });
            if k == 0 && !lds {
                lds = true;
                let req = request(LDS, vec![], String::new(), String::new());
                tx.send(req).await.map_err(|e| e.to_string())?;
            }
            if k == 1 && !rds {
                rds = true;
                let req = request(
                    RDS,
                    vec![ROUTE_NAME.to_string()],
                    String::new(),
                    String::new(),
                );
                tx.send(req).await.map_err(|e| e.to_string())?;
            }
        }
    }

    /// Names and versions kept as hashes: a client with thousands of streams holds a thousand
    /// clusters per stream.
    fn h(s: &str) -> u64 {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    }

    /// An incremental ADS stream: subscribes as Envoy does, tracks what it holds, ACKs by nonce.
    async fn delta(
        i: usize,
        channel: Channel,
        slow: Option<Duration>,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), String> {
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let (tx, rx) = mpsc::channel(8);
        let subscribe = |type_url: &str, names: Vec<String>| DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names_subscribe: names,
            ..Default::default()
        };
        let mut first = subscribe(CDS, vec![]);
        first.node = node(i);
        tx.send(first).await.map_err(|e| e.to_string())?;
        let mut inbound = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|e| format!("open: {e}"))?
            .into_inner();
        // Per kind: name hash -> version hash; the route table's version in full.
        let mut held: [HashMap<u64, u64>; 3] = Default::default();
        let mut route: Option<String> = None;
        let (mut lds, mut rds) = (false, false);
        loop {
            if let Some(d) = slow {
                tokio::time::sleep(d).await;
            }
            let response = inbound
                .message()
                .await
                .map_err(|e| format!("receive: {e}"))?
                .ok_or("the server ended the stream")?;
            let Some(k) = kind(&response.type_url) else {
                return Err(format!("unexpected type {}", response.type_url));
            };
            for r in &response.resources {
                held[k].insert(h(&r.name), h(&r.version));
                if k == 2 && r.name == ROUTE_NAME {
                    route = Some(r.version.clone());
                }
            }
            for name in &response.removed_resources {
                held[k].remove(&h(name));
                if k == 2 && name == ROUTE_NAME {
                    route = None;
                }
            }
            let ack = DeltaDiscoveryRequest {
                type_url: response.type_url.clone(),
                response_nonce: response.nonce.clone(),
                ..Default::default()
            };
            tx.send(ack).await.map_err(|e| e.to_string())?;
            let at = unix_ns();
            drop(response);
            let _ = events.send(Event::Acked {
                stream: i,
                kind: k,
                route: if k == 2 { route.clone() } else { None },
                at,
            });
            if k == 0 && !lds {
                lds = true;
                tx.send(subscribe(LDS, vec![]))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if k == 1 && !rds {
                rds = true;
                tx.send(subscribe(RDS, vec![ROUTE_NAME.to_string()]))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
}
