//! Propagation benchmark: how fast a changed Mapping file reaches a real Envoy, against Envoy
//! reloading the same configuration from its own files (issue 5, point 2), and the data-plane
//! probe for weight changes (issue 5, point 3).
//!
//! ```text
//! cargo bench --bench propagation                    # both cases, default sizes (~10 min)
//! cargo bench --bench propagation -- --help          # every flag
//! # point 2, route-table path (no runtime layer in Envoy's bootstrap):
//! cargo bench --bench propagation -- --case propagation --bootstrap-arg=--no-runtime
//! # point 2 as the default bootstrap does it (weights over RTDS when it has a runtime layer):
//! cargo bench --bench propagation -- --case propagation
//! # a route-table change even with a runtime layer (the route's timeout instead of a weight):
//! cargo bench --bench propagation -- --case propagation --change timeout
//! # point 3, data-plane probe, with and without the runtime layer:
//! cargo bench --bench propagation -- --case flip --flip-sizes 1000,10000 --flips 50
//! cargo bench --bench propagation -- --case flip --bootstrap-arg=--no-runtime
//! # a quick look:
//! cargo bench --bench propagation -- --sizes 1,1000 --changes 10 --flip-sizes 1000 --flips 10
//! ```
//!
//! It needs `envoy` (1.40) on PATH (or `--envoy PATH`); it starts everything else itself, on
//! loopback ports the kernel picks, and kills every process it started when it ends (Ctrl-C
//! included). A size is a number of routes, each weighted over 2 Mappings (a primary without
//! weight and a canary with one), so 2 Envoy clusters per route, as in the issue's measurement
//! ("10,000 routes, each weighted over 2 clusters"); `--count mappings` reads sizes as Mappings
//! instead (routes = Mappings / 2). Clusters are STATIC (127.0.0.1 upstreams), so they warm at
//! once on both sides.
//!
//! **propagation**: canary-xds (the release build, `RUST_LOG=canary_xds=debug`, JSON log) serves
//! the generated Mappings to an Envoy started from `canary-xds bootstrap` (plus any
//! `--bootstrap-arg`). A baseline Envoy reads the equivalent resources, built from `canary-xds
//! check --format json`, from its own files: LDS and CDS from files, the HCM's routes from a file
//! (`path_config_source` with `watched_directory`, one directory per file, so a rename reloads
//! only the routes), YAML by default; the bench checks from both config dumps that the two hold
//! the same routes and clusters. Each change edits one route (its canary weight, or with
//! `--change timeout` its timeout): the Mapping file (or Envoy's route file) is written under a
//! temporary name outside the watched directory and renamed into place, and the clock runs from
//! just before the rename until Envoy shows the change. Changes alternate between the two
//! Envoys, each after the other has settled, so machine noise hits both alike. From
//! canary-xds's log (and its `/metrics`), our time splits into rename -> push (ours) and
//! push -> ACK (Envoy's).
//!
//! How "Envoy shows the change" is seen (`--detect`):
//! - `marker` (default): the changed route's file also holds a one-backend marker route, tried
//!   first by Envoy, whose Mapping adds the response header `x-marker: K`; each change bumps K
//!   in the same rename, so the route table that carries the change is the one that answers K. A
//!   probe thread asks for it every `--marker-gap-us` on a keep-alive connection and stops at
//!   the first reply with the new K. It costs Envoy's workers a little and its main thread
//!   nothing.
//! - `stats`: poll Envoy's admin (`/stats?type=TextReadouts`, keep-alive) until
//!   `http.canary_xds.rds.canary-xds.version_text` (or, when a weight travels in a runtime layer,
//!   `runtime.version_text`) moves. Exact and cheap at small sizes, but Envoy answers it on its
//!   main thread after walking every stats scope: ~0.1 ms at 1 route, ~2 ms at 1,000 and
//!   ~40-70 ms at 10,000 routes (20,000 clusters), which then delays the very update being
//!   timed. The report prints one poll's cost for both Envoys.
//!
//! With a runtime layer in the bootstrap (RTDS), a weight-only change travels as a runtime
//! update, and the marker makes it a route-table change too; the flip case measures the weight
//! path alone. `--bootstrap-arg=--no-runtime` serves weights in the route table only.
//!
//! **flip**: the same setup plus a route whose canary (weight 0 <-> 100) answers "canary" and
//! whose primary answers "primary", tried first by Envoy; a dedicated thread sends requests to
//! it back to back (`--probe-gap-us`) through our Envoy on one keep-alive connection, and the
//! clock runs from the rename until the first reply that says the new name arrives. It works
//! whichever way the weight travels (RDS or RTDS). `--flip-baseline` also flips the baseline's
//! route file.
//!
//! Percentiles are nearest-rank: with 50 samples, p99 is the largest. Timings taken while the
//! machine is busy are noisy: the report prints `uptime` and the load average around each size.

#[path = "propagation/inputs.rs"]
mod inputs;
#[path = "propagation/logscan.rs"]
mod logscan;
#[path = "propagation/procs.rs"]
mod procs;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use serde_json::Value;

use inputs::{Baseline, FLIP_PREFIX, Format, INITIAL_WEIGHT, MARKER_PREFIX, Mappings};
use procs::{Answer, ControlPlane, Envoy, Probe, Upstream, free_port, wait_for};

/// The node id of the Envoy canary-xds serves.
const NODE: &str = "bench";

/// The canary-xds binary of this build (`cargo bench` builds it with the bench profile).
const BIN: &str = env!("CARGO_BIN_EXE_canary-xds");

#[derive(Parser, Debug)]
#[command(
    name = "propagation",
    bin_name = "cargo bench --bench propagation --",
    about = "Rename of a changed Mapping file -> live in a real Envoy: canary-xds over ADS \
             against Envoy reloading its own files, and a data-plane probe for weight flips",
    after_help = "Run through cargo: cargo bench --bench propagation -- [FLAGS]. Timings on a \
                  busy machine are noisy: the header prints the load average."
)]
struct Args {
    /// Which measurements to run.
    #[arg(long, value_enum, default_value_t = Case::All)]
    case: Case,
    /// Sizes for the propagation case (see --count).
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
    sizes: Vec<usize>,
    /// Measured changes per size (after the warm-up).
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// Sizes for the flip case (see --count); the /flip/ route comes on top.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    flip_sizes: Vec<usize>,
    /// Measured flips per size (after the warm-up).
    #[arg(long, default_value_t = 50)]
    flips: usize,
    /// What each propagation change edits on one route: the canary's weight, or the route's
    /// timeout (a route-table change even where weights travel over RTDS).
    #[arg(long, value_enum, default_value_t = Change::Weight)]
    change: Change,
    /// How the propagation case sees that Envoy took a change: a probe of the marker route on
    /// the data plane (cheap at any size), or Envoy's admin version_text stats (what the issue
    /// names; one poll costs Envoy's main thread time that grows with the number of clusters).
    #[arg(long, value_enum, default_value_t = Detect::Marker)]
    detect: Detect,
    /// How many generated routes have a canary in flight (at 10%); the others start with their
    /// canary at 0, the default split the runtime layer does not carry. Default: all of them.
    #[arg(long)]
    in_flight: Option<usize>,
    /// What a size counts: routes (2 Mappings and 2 clusters each) or Mappings.
    #[arg(long, value_enum, default_value_t = Count::Routes)]
    count: Count,
    /// Changes (and flips) made first and not counted.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Skip the baseline Envoy in the propagation case.
    #[arg(long)]
    no_baseline: bool,
    /// Also flip the baseline Envoy (its route file) after ours, with the same probe.
    #[arg(long)]
    flip_baseline: bool,
    /// The format of the baseline's files (Envoy parses YAML more slowly than JSON).
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    baseline_format: Format,
    /// Pause after each change is seen, so the next starts on an idle Envoy.
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
    /// Pause between two admin polls (0: back to back; a poll costs Envoy ~0.2 ms).
    #[arg(long, default_value_t = 200)]
    poll_us: u64,
    /// Pause between two probe requests in the flip case (0: back to back).
    #[arg(long, default_value_t = 0)]
    probe_gap_us: u64,
    /// Pause between two marker probe requests in the propagation case: the probe's resolution,
    /// traded against the CPU it takes from Envoy and canary-xds on a small machine.
    #[arg(long, default_value_t = 500)]
    marker_gap_us: u64,
    /// Give up on one change after this long (counted as a failure).
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Write the temporary file inside the watched directory (hidden, as editors do) instead of
    /// beside it; canary-xds then also sees the temporary file being written.
    #[arg(long)]
    temp_in_dir: bool,
    /// Envoy's `stats_flush_interval` in both Envoys' bootstraps (e.g. `60s`); Envoy's default
    /// is 5 s. With thousands of clusters each flush holds Envoy's main thread for 80-110 ms,
    /// and an xDS update that arrives meanwhile waits for it.
    #[arg(long, value_name = "DURATION")]
    envoy_stats_flush: Option<String>,
    /// An extra flag for `canary-xds bootstrap`, e.g. `--bootstrap-arg=--delta`. Repeatable.
    #[arg(
        long = "bootstrap-arg",
        value_name = "FLAG",
        allow_hyphen_values = true
    )]
    bootstrap_args: Vec<String>,
    /// An extra flag for `canary-xds serve`. Repeatable.
    #[arg(long = "serve-arg", value_name = "FLAG", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// The Envoy binary.
    #[arg(long, default_value = "envoy")]
    envoy: PathBuf,
    /// The canary-xds binary (default: the one this bench was built with), e.g. a build with
    /// frame pointers for `perf record -g -p PID`.
    #[arg(long, default_value = BIN)]
    canary_xds: PathBuf,
    /// Keep the work directory (Mappings, Envoy files, logs) and print where it is.
    #[arg(long)]
    keep: bool,
    /// Also write every sample to this CSV file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Case {
    All,
    Propagation,
    Flip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Change {
    Weight,
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Detect {
    Marker,
    Stats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Count {
    Routes,
    Mappings,
}

impl Args {
    fn routes(&self, size: usize) -> usize {
        match self.count {
            Count::Routes => size.max(1),
            Count::Mappings => (size / 2).max(1),
        }
    }
}

// --- statistics ---

/// Samples in milliseconds.
#[derive(Clone, Debug, Default)]
struct Dist(Vec<f64>);

impl Dist {
    /// Nearest-rank percentile; NaN when empty.
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }
    fn p50(&self) -> f64 {
        self.pct(0.5)
    }
    fn p99(&self) -> f64 {
        self.pct(0.99)
    }
    fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }
    fn row(&self, what: &str) -> String {
        if self.0.is_empty() {
            return format!("  {what:<44} {:>9} {:>9} {:>9} {:>4}", "-", "-", "-", 0);
        }
        format!(
            "  {what:<44} {:>9.2} {:>9.2} {:>9.2} {:>4}",
            self.p50(),
            self.p99(),
            self.mean(),
            self.0.len()
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const HEADER: &str =
    "                                                  p50 ms    p99 ms   mean ms    n";

// --- setup ---

/// Everything one size runs on.
struct Setup {
    work: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    maps: Mappings,
    cp: ControlPlane,
    ours: Envoy,
    ours_listen: u16,
    base: Option<(Baseline, Envoy)>,
    base_listen: u16,
    clusters: usize,
    notes: Vec<String>,
}

impl Setup {
    fn start(
        args: &Args,
        routes: usize,
        flip: bool,
        marker: bool,
        baseline: bool,
        ups: &Upstreams,
    ) -> Setup {
        let tmp = tempfile::Builder::new()
            .prefix("canary-xds-propagation-")
            .tempdir()
            .expect("a work directory");
        let (work, tmp) = if args.keep {
            let p = tmp.keep();
            eprintln!("work directory (kept): {}", p.display());
            (p, None)
        } else {
            (tmp.path().to_path_buf(), Some(tmp))
        };
        std::fs::create_dir_all(work.join("staging")).expect("staging");
        let poll = Duration::from_micros(args.poll_us);
        let mut notes = Vec::new();
        let maps = Mappings::write(
            &work.join("maps"),
            routes,
            ups.primary.service(),
            ups.canary.service(),
            flip.then(|| (ups.primary.service(), ups.canary.service())),
            marker,
            args.in_flight.unwrap_or(routes),
        );
        let ours_listen = free_port();
        let base_listen = free_port();

        let t = Instant::now();
        let cp = ControlPlane::start(
            &args.canary_xds,
            &maps.dir,
            &work.join("canary-xds.log"),
            ours_listen,
            &args.serve_args,
        );
        let cp_ready = t.elapsed();
        let admin = free_port();
        let boot = procs::bootstrap(
            &args.canary_xds,
            cp.xds_port,
            admin,
            NODE,
            &args.bootstrap_args,
        );
        let boot = match &args.envoy_stats_flush {
            Some(d) => format!("{boot}stats_flush_interval: {d}\n"),
            None => boot,
        };
        let boot_path = work.join("ours.yaml");
        std::fs::write(&boot_path, boot).expect("our bootstrap");
        let t = Instant::now();
        let mut ours = Envoy::start(&args.envoy, "our Envoy", &boot_path, admin, poll);
        let mut cp_alive = || {
            let body = cp.admin_get("/api/envoys")?;
            let v: Value = serde_json::from_str(&body).ok()?;
            v["envoys"]
                .as_array()?
                .iter()
                .any(|e| e["node_id"] == NODE && e["in_sync"] == true)
                .then_some(())
        };
        wait_for("our Envoy in sync", Duration::from_secs(600), &mut cp_alive);
        wait_for("our Envoy's route version", Duration::from_secs(60), || {
            ours.versions()
        });
        let ours_ready = t.elapsed();
        notes.push(format!(
            "canary-xds ready in {:.1} s; our Envoy in sync {:.1} s after it started",
            cp_ready.as_secs_f64(),
            ours_ready.as_secs_f64()
        ));

        let check = check_json(&args.canary_xds, &maps.dir);
        let clusters: usize = check["routes"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| r["backends"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0);
        let mut base = baseline.then(|| {
            let b = Baseline::write(
                &work.join("base"),
                args.baseline_format,
                &check,
                base_listen,
            );
            let admin = free_port();
            let path = work.join(format!("base-bootstrap.{}", args.baseline_format.ext()));
            let boot = b.bootstrap(admin, args.envoy_stats_flush.as_deref());
            std::fs::write(&path, boot).expect("the baseline bootstrap");
            let t = Instant::now();
            let mut e = Envoy::start(&args.envoy, "the baseline Envoy", &path, admin, poll);
            wait_for("the baseline's routes", Duration::from_secs(600), || {
                e.proc.check_alive(&e.log.clone());
                e.versions().filter(|v| v.rds == "v0")
            });
            let rds_bytes = std::fs::metadata(b.path("rds")).map_or(0, |m| m.len());
            notes.push(format!(
                "baseline Envoy loaded its files in {:.1} s; its route file is {:.0} KiB of {}",
                t.elapsed().as_secs_f64(),
                rds_bytes as f64 / 1024.0,
                args.baseline_format.ext()
            ));
            (b, e)
        });
        let mut polls = vec![format!("ours {:.2} ms", poll_cost(&mut ours))];
        if let Some((_, e)) = base.as_mut() {
            polls.push(format!("baseline {:.2} ms", poll_cost(e)));
        }
        notes.push(format!(
            "one admin poll of version_text (/stats?type=TextReadouts, median of 5): {}",
            polls.join(", ")
        ));
        let mut s = Setup {
            work,
            _tmp: tmp,
            maps,
            cp,
            ours,
            ours_listen,
            base,
            base_listen,
            clusters,
            notes,
        };
        if s.base.is_some() {
            let eq = s.compare();
            s.notes.push(eq);
        }
        s
    }

    /// Whether both Envoys hold the same route table and clusters (from their config dumps).
    fn compare(&mut self) -> String {
        let Some((_, base)) = self.base.as_mut() else {
            return String::new();
        };
        let routes = |e: &mut Envoy, keyed: &mut usize| -> Value {
            let dump: Value = e
                .admin_get("/config_dump?resource=dynamic_route_configs")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let mut rc = dump["configs"][0]["route_config"].clone();
            // With an RTDS layer canary-xds names each route's runtime keys; the baseline has
            // no runtime, and without a value under the key Envoy uses the route's weights.
            for vh in rc["virtual_hosts"].as_array_mut().into_iter().flatten() {
                for r in vh["routes"].as_array_mut().into_iter().flatten() {
                    if let Some(w) = r["route"]["weighted_clusters"].as_object_mut()
                        && w.remove("runtime_key_prefix").is_some()
                    {
                        *keyed += 1;
                    }
                }
            }
            rc
        };
        let clusters = |e: &mut Envoy| -> BTreeMap<String, Value> {
            let dump: Value = e
                .admin_get("/config_dump?resource=dynamic_active_clusters")
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            dump["configs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["cluster"]["name"].as_str().unwrap_or("").to_string(),
                        c["cluster"].clone(),
                    )
                })
                .collect()
        };
        let mut keyed = 0;
        let ro = routes(&mut self.ours, &mut keyed);
        let rb = routes(base, &mut 0);
        let (co, cb) = (clusters(&mut self.ours), clusters(base));
        let mut out = String::from("both Envoys hold ");
        match first_difference(&ro, &rb, "route_config") {
            None => {
                let n = ro["virtual_hosts"][0]["routes"]
                    .as_array()
                    .map_or(0, Vec::len);
                let _ = write!(out, "the same route table ({n} routes");
                if keyed > 0 {
                    let _ = write!(out, "; ours names runtime keys on {keyed}");
                }
                out.push(')');
            }
            Some(d) => {
                out = format!("WARNING: the route tables differ at {d}");
            }
        }
        if co.len() != cb.len() {
            let _ = write!(
                out,
                "; WARNING: {} clusters against the baseline's {}",
                co.len(),
                cb.len()
            );
        } else if let Some(d) = co
            .iter()
            .zip(&cb)
            .find_map(|((_, a), (_, b))| first_difference(a, b, "cluster"))
        {
            let _ = write!(out, "; WARNING: the clusters differ at {d}");
        } else {
            let _ = write!(out, " and the same {} clusters", co.len());
        }
        out
    }

    fn rss(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".into(), |m| format!("{m:.0} MiB"));
        let mut s = format!(
            "RSS: canary-xds {}, our Envoy {}",
            f(self.cp.proc.rss_mib()),
            f(self.ours.proc.rss_mib())
        );
        if let Some((_, e)) = &self.base {
            let _ = write!(s, ", baseline Envoy {}", f(e.proc.rss_mib()));
        }
        s
    }
}

/// How long one version_text poll takes (median of 5): Envoy's main thread is busy that long.
fn poll_cost(e: &mut Envoy) -> f64 {
    let mut d = Dist::default();
    for _ in 0..5 {
        let t = Instant::now();
        let _ = e.versions();
        d.0.push(ms(t.elapsed()));
    }
    d.p50()
}

/// Writes `text` under a temporary name and returns it, ready to be renamed to `path`: beside
/// the watched directory (in `work`), or in it as a hidden file.
fn stage(work: &Path, path: &Path, text: &str, in_dir: bool) -> PathBuf {
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = if in_dir {
        path.with_file_name(format!(".{name}.tmp"))
    } else {
        work.join("staging").join(format!("{name}.tmp"))
    };
    std::fs::write(&tmp, text).expect("a staged file");
    tmp
}

/// The JSON path of the first difference between two values, if any.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (&x.get(k), &y.get(k));
                match (va, vb) {
                    (Some(va), Some(vb)) => {
                        if let Some(d) = first_difference(va, vb, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    _ => return Some(format!("{path}.{k} ({va:?} vs {vb:?})")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path} ({} vs {} items)", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (va, vb))| first_difference(va, vb, &format!("{path}[{i}]")))
        }
        _ => (a != b).then(|| format!("{path} ({a} vs {b})")),
    }
}

/// `canary-xds check DIR --format json`.
fn check_json(bin: &Path, dir: &Path) -> Value {
    let out = Command::new(bin)
        .arg("check")
        .arg(dir)
        .args(["--format", "json"])
        .output()
        .expect("canary-xds check runs");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "canary-xds check: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let errors = v["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["severity"] == "error")
        .count();
    assert_eq!(errors, 0, "the generated Mappings have errors: {v}");
    v
}

/// The upstreams every route's backends point at.
struct Upstreams {
    primary: Upstream,
    canary: Upstream,
}

/// The canary weight of change `k`: never the same twice in a row, nor the initial one first.
fn weight_for(k: usize) -> u32 {
    let w = 11 + (k % 80) as u32;
    debug_assert_ne!(w, INITIAL_WEIGHT);
    w
}

/// One type's `canary_xds_change_to_ack_seconds` histogram: count, sum, (le, cumulative count).
#[derive(Clone, Debug, Default)]
struct Hist {
    count: f64,
    sum: f64,
    buckets: Vec<(f64, f64)>,
}

/// Reads canary-xds's `change_to_ack_seconds` histograms, by `type` label.
fn change_to_ack(cp: &ControlPlane) -> BTreeMap<String, Hist> {
    let text = cp.admin_get("/metrics").unwrap_or_default();
    let mut out: BTreeMap<String, Hist> = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("canary_xds_change_to_ack_seconds") else {
            continue;
        };
        let Some((series, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            series
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        let Some(kind) = label("type") else { continue };
        let h = out.entry(kind).or_default();
        if series.starts_with("_count") {
            h.count = value;
        } else if series.starts_with("_sum") {
            h.sum = value;
        } else if let Some(le) = label("le") {
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            h.buckets.push((le, value));
        }
    }
    for h in out.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The histograms' growth between two readings, per type that grew: n, mean, and the buckets
/// holding p50 and p99 (their upper bounds, in ms).
fn histogram_delta(before: &BTreeMap<String, Hist>, after: &BTreeMap<String, Hist>) -> String {
    let mut parts = Vec::new();
    for (kind, a) in after {
        let b = before.get(kind).cloned().unwrap_or_default();
        let n = a.count - b.count;
        if n <= 0.0 {
            continue;
        }
        let mean = (a.sum - b.sum) / n * 1000.0;
        let at = |p: f64| {
            a.buckets
                .iter()
                .map(|(le, c)| {
                    let was = b
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (*le, c - was)
                })
                .find(|(_, c)| *c >= p * n)
                .map_or(f64::NAN, |(le, _)| le * 1000.0)
        };
        parts.push(format!(
            "{kind}: n {n:.0}, mean {mean:.2} ms, p50 <= {} ms, p99 <= {} ms",
            at(0.5),
            at(0.99)
        ));
    }
    if parts.is_empty() {
        "no observation".into()
    } else {
        parts.join("; ")
    }
}

/// CPU used by the three processes so far.
/// Waits until canary-xds and both Envoys are idle - together under a tenth of a core over
/// 20 ms - for at most 3 s, so that each change starts on a quiet machine whichever process
/// the last one kept busy (the baseline goes on working for a while after its change is seen).
/// Returns how long it waited.
fn settle(s: &Setup) -> Duration {
    let started = Instant::now();
    let busy = || {
        s.cp.proc.busy_ns()
            + s.ours.proc.busy_ns()
            + s.base.as_ref().map_or(0, |(_, e)| e.proc.busy_ns())
    };
    let mut last = busy();
    while started.elapsed() < Duration::from_secs(3) {
        thread::sleep(Duration::from_millis(20));
        let now = busy();
        if now.saturating_sub(last) < 2_000_000 {
            break;
        }
        last = now;
    }
    started.elapsed()
}

fn cpu_now(s: &Setup) -> [Option<Duration>; 3] {
    [
        s.cp.proc.cpu(),
        s.ours.proc.cpu(),
        s.base.as_ref().and_then(|(_, e)| e.proc.cpu()),
    ]
}

fn cpu_per_change(
    before: &[Option<Duration>; 3],
    after: &[Option<Duration>; 3],
    n: usize,
) -> String {
    let per = |i: usize| match (before[i], after[i]) {
        (Some(b), Some(a)) if n > 0 => format!("{:.1} ms", ms(a - b) / n as f64),
        _ => "-".into(),
    };
    format!(
        "CPU per change (10 ms ticks, admin polls included): canary-xds {}, our Envoy {}, baseline Envoy {}",
        per(0),
        per(1),
        per(2)
    )
}

/// One row of the CSV.
struct Sample {
    case: &'static str,
    routes: usize,
    k: usize,
    system: &'static str,
    total_ms: f64,
    trace: Option<logscan::Trace>,
}

/// The result of one size, for the summary.
struct Summary {
    case: &'static str,
    routes: usize,
    ours: Dist,
    base: Dist,
    ours_push: Dist,
    envoy_ack: Dist,
    failures: usize,
    /// What canary-xds pushed per change (`rds x50`).
    pushed: String,
}

fn log_breakdown(
    out: &mut String,
    lines: &[logscan::Line],
    marks: &[(SystemTime, f64)],
) -> (Dist, Dist, Vec<logscan::Trace>, String) {
    let mut traces = Vec::new();
    let (mut done, mut reload, mut push, mut ack, mut seen, mut after_push) = (
        Dist::default(),
        Dist::default(),
        Dist::default(),
        Dist::default(),
        Dist::default(),
        Dist::default(),
    );
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes = 0;
    for (i, (at, total)) in marks.iter().enumerate() {
        let until = marks
            .get(i + 1)
            .map_or(SystemTime::now() + Duration::from_secs(3600), |m| m.0);
        let t = logscan::trace(lines, *at, until, NODE);
        if let Some(d) = t.reload_done {
            done.0.push(ms(d));
        }
        if let Some(r) = t.reload_ms {
            reload.0.push(r);
        }
        if let Some(p) = t.first_push {
            push.0.push(ms(p));
            after_push.0.push(total - ms(p));
            if let Some(a) = t.ack {
                ack.0.push(ms(a - p));
                seen.0.push(total - ms(a));
            }
        }
        let k: Vec<&str> = t
            .pushes
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        *kinds.entry(k.join("+")).or_default() += 1;
        bytes = bytes.max(t.bytes);
        traces.push(t);
    }
    let kinds = kinds
        .iter()
        .map(|(k, n)| format!("{} x{n}", if k.is_empty() { "none" } else { k }))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "  -- where our time goes (canary-xds's debug log; pushed per change: {kinds}; largest {:.0} KiB) --",
        bytes as f64 / 1024.0
    );
    let _ = writeln!(out, "{}", done.row("rename -> reload done"));
    let _ = writeln!(
        out,
        "{}",
        reload.row("  the reload itself (its `ms` field)")
    );
    let _ = writeln!(out, "{}", push.row("rename -> push (ours)"));
    let _ = writeln!(out, "{}", ack.row("push -> ACK (Envoy's own)"));
    let _ = writeln!(
        out,
        "{}",
        seen.row("ACK -> seen (negative: seen before the ACK)")
    );
    let _ = writeln!(out, "{}", after_push.row("push -> seen"));
    (push, ack, traces, kinds)
}

/// Renames `tmp` to `path`; returns the wall clock and the instant just before.
fn rename(tmp: &Path, path: &Path) -> (SystemTime, Instant) {
    let wall = SystemTime::now();
    let t0 = Instant::now();
    std::fs::rename(tmp, path).expect("rename into place");
    (wall, t0)
}

/// Starts a probe of the marker route on `port`, waits until it answers the marker before
/// `marker`, runs `change` (the rename) and waits for the first reply carrying `marker`.
/// Returns the rename's wall clock and the time from it to that reply.
fn marker_seen(
    args: &Args,
    port: u16,
    marker: u64,
    change: impl FnOnce() -> (SystemTime, Instant),
) -> Option<(SystemTime, Duration)> {
    let probe = Probe::start(
        port,
        MARKER_PREFIX,
        Answer::Marker,
        Duration::from_micros(args.marker_gap_us),
    );
    let old = (marker - 1).to_string();
    let new = marker.to_string();
    let ready = Instant::now() + Duration::from_secs(10);
    while probe.seen().body != old {
        if Instant::now() > ready {
            eprintln!("the marker probe on {port} never saw {old:?}");
            return None;
        }
        thread::sleep(Duration::from_micros(100));
    }
    let (wall, t0) = change();
    let deadline = t0 + Duration::from_secs(args.timeout_s);
    loop {
        let seen = probe.seen();
        if seen.body == new && seen.since >= t0 {
            return Some((wall, seen.since - t0));
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_micros(100));
    }
}

// --- the propagation case ---

fn propagation(args: &Args, size: usize, ups: &Upstreams, samples: &mut Vec<Sample>) -> Summary {
    let routes = args.routes(size);
    let mut s = Setup::start(args, routes, false, true, !args.no_baseline, ups);
    let timeout = Duration::from_secs(args.timeout_s);
    let gap = Duration::from_millis(args.gap_ms);
    // Files younger than ~2 s are re-read on every reload (their mtime could still change
    // unseen); let them age, as they would on a real system.
    thread::sleep(Duration::from_millis(2100));
    let prefix = Mappings::prefix(0);
    let (mut ours_d, mut base_d) = (Dist::default(), Dist::default());
    let mut marks = Vec::new();
    let (mut failures, mut mismatches) = (0, Vec::new());
    let mut moved_kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let hist_before = change_to_ack(&s.cp);
    let cpu_before = cpu_now(&s);
    let load_before = loadavg();
    let total = args.warmup + args.changes;
    let mut settled = Vec::new();
    for k in 0..total {
        let measured = k >= args.warmup;
        let w = weight_for(k);
        let timeout_ms = 3001 + (k % 997) as u64;
        let marker = (k + 1) as u64;
        // canary-xds
        s.maps.set_marker(marker);
        let (path, text) = match args.change {
            Change::Weight => s.maps.set_weight(0, w),
            Change::Timeout => s.maps.set_timeout(0, timeout_ms),
        };
        let tmp = stage(&s.work, &path, &text, args.temp_in_dir);
        let before = s.ours.versions().unwrap_or_default();
        let seen = match args.detect {
            Detect::Marker => {
                marker_seen(args, s.ours_listen, marker, || rename(&tmp, &path))
                    // Not timed: which versions the new table came with.
                    .map(|(w, d)| (w, d, s.ours.versions().unwrap_or_default()))
            }
            Detect::Stats => {
                let (wall, t0) = rename(&tmp, &path);
                // Whichever moves: a route table (RDS), or the runtime layer (RTDS) when the
                // bootstrap has one and the change only moved weights.
                s.ours
                    .wait_versions(t0 + timeout, |v| *v != before)
                    .map(|(at, v)| (wall, at - t0, v))
            }
        };
        match seen {
            Some((wall, took, v)) => {
                if measured {
                    ours_d.0.push(ms(took));
                    let moved = match (v.rds != before.rds, v.runtime != before.runtime) {
                        (true, true) => "rds+runtime",
                        (true, false) => "rds",
                        (false, true) => "runtime",
                        (false, false) => "nothing",
                    };
                    *moved_kinds.entry(moved).or_insert(0usize) += 1;
                    marks.push((wall, ms(took), v));
                }
            }
            None => {
                failures += 1;
                eprintln!("change {k}: our Envoy did not take it within {timeout:?}");
            }
        }
        thread::sleep(gap);
        settled.push(ms(settle(&s)));
        // the baseline
        if let Some((b, e)) = s.base.as_mut() {
            let bp = w * 100;
            b.set_marker(marker);
            let (text, version) = match args.change {
                Change::Weight => b.set_weights(&prefix, &[("c0", bp), ("p0", 10_000 - bp)]),
                Change::Timeout => b.set_timeout(&prefix, timeout_ms),
            };
            let path = b.path("rds");
            let tmp = stage(&s.work, &path, &text, args.temp_in_dir);
            let took = match args.detect {
                Detect::Marker => {
                    marker_seen(args, s.base_listen, marker, || rename(&tmp, &path)).map(|x| x.1)
                }
                Detect::Stats => {
                    let (_, t0) = rename(&tmp, &path);
                    e.wait_versions(t0 + timeout, |v| v.rds == version)
                        .map(|(at, _)| at - t0)
                }
            };
            match took {
                Some(took) => {
                    if measured {
                        base_d.0.push(ms(took));
                    }
                }
                None => {
                    failures += 1;
                    eprintln!("change {k}: the baseline Envoy did not reach {version}");
                }
            }
            thread::sleep(gap);
            settled.push(ms(settle(&s)));
        }
        s.ours.proc.check_alive(&s.ours.log.clone());
    }
    let cpu_after = cpu_now(&s);
    let hist_after = change_to_ack(&s.cp);
    // Let the last lines reach the log.
    thread::sleep(Duration::from_millis(200));
    let lines = logscan::read(&s.cp.log);

    let seen_by = match args.detect {
        Detect::Marker => "marker served",
        Detect::Stats => "version_text",
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== propagation: {routes} routes + the marker route ({} Mappings, {} clusters), {} changes of one route's {} after {} warm-up",
        routes * 2 + 1,
        s.clusters,
        args.changes,
        match args.change {
            Change::Weight => "canary weight",
            Change::Timeout => "timeout",
        },
        args.warmup
    );
    let _ = writeln!(
        out,
        "  canaries in flight (at 10%, the rest at 0%): {}",
        args.in_flight.unwrap_or(routes).min(routes)
    );
    if !args.bootstrap_args.is_empty() {
        let _ = writeln!(
            out,
            "  canary-xds bootstrap {}",
            args.bootstrap_args.join(" ")
        );
    }
    if let Some(d) = &args.envoy_stats_flush {
        let _ = writeln!(out, "  both Envoys: stats_flush_interval {d}");
    }
    for n in &s.notes {
        let _ = writeln!(out, "  {n}");
    }
    let _ = writeln!(
        out,
        "  load average before / after: {load_before} / {}",
        loadavg()
    );
    let settled = Dist(settled);
    let _ = writeln!(
        out,
        "  before each change, waited for the processes to go idle: p50 {:.0} ms, max {:.0} ms",
        settled.p50(),
        settled.pct(1.0)
    );
    let _ = writeln!(out, "{HEADER}");
    let _ = writeln!(
        out,
        "{}",
        ours_d.row(&format!("canary-xds: rename -> {seen_by}"))
    );
    if s.base.is_some() {
        let _ = writeln!(
            out,
            "{}",
            base_d.row(&format!(
                "baseline: {} file rename -> {seen_by}",
                args.baseline_format.ext()
            ))
        );
        let _ = writeln!(
            out,
            "  {:<44} {:>8.3}x {:>8.3}x {:>8.3}x",
            "ratio ours / baseline",
            ours_d.p50() / base_d.p50(),
            ours_d.p99() / base_d.p99(),
            ours_d.mean() / base_d.mean()
        );
    }
    let mark_pairs: Vec<(SystemTime, f64)> = marks.iter().map(|(w, t, _)| (*w, *t)).collect();
    let _ = writeln!(
        out,
        "  (what moved in our Envoy: {})",
        moved_kinds
            .iter()
            .map(|(k, n)| format!("{k} version_text x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (push, ack, traces, pushed) = log_breakdown(&mut out, &lines, &mark_pairs);
    for ((_, _, seen), t) in marks.iter().zip(&traces) {
        let last = t.last_version.as_deref();
        if last != Some(seen.rds.as_str()) && last != Some(seen.runtime.as_str()) {
            mismatches.push(format!("saw {seen}, last push {last:?}"));
        }
    }
    let _ = writeln!(
        out,
        "  /metrics change_to_ack (from the watcher's event; bucket bounds): {}",
        histogram_delta(&hist_before, &hist_after)
    );
    let _ = writeln!(out, "  {}", cpu_per_change(&cpu_before, &cpu_after, total));
    let _ = writeln!(out, "  {}", s.rss());
    let _ = writeln!(
        out,
        "  failures (timeouts): {failures}; version seen != version pushed: {}{}",
        mismatches.len(),
        mismatches
            .first()
            .map(|m| format!(" (first: {m})"))
            .unwrap_or_default()
    );
    print!("{out}");
    for (i, ((_, total, _), t)) in marks.iter().zip(traces).enumerate() {
        samples.push(Sample {
            case: "propagation",
            routes,
            k: i,
            system: "canary-xds",
            total_ms: *total,
            trace: Some(t),
        });
    }
    for (i, v) in base_d.0.iter().enumerate() {
        samples.push(Sample {
            case: "propagation",
            routes,
            k: i,
            system: "baseline",
            total_ms: *v,
            trace: None,
        });
    }
    if args.keep {
        eprintln!("logs: {} and {}", s.cp.log.display(), s.ours.log.display());
    }
    Summary {
        case: "propagation",
        routes,
        ours: ours_d,
        base: base_d,
        ours_push: push,
        envoy_ack: ack,
        failures,
        pushed,
    }
}

// --- the flip case ---

/// Flips the /flip/ canary `n` times on one Envoy; returns the rename -> first new reply times
/// (ms), the rename instants (wall clock) and failures.
fn flip_loop(
    args: &Args,
    s: &mut Setup,
    port: u16,
    baseline: bool,
) -> (Dist, Vec<(SystemTime, f64)>, usize, u64, f64) {
    let probe = Probe::start(
        port,
        FLIP_PREFIX,
        Answer::Body,
        Duration::from_micros(args.probe_gap_us),
    );
    let timeout = Duration::from_secs(args.timeout_s);
    let gap = Duration::from_millis(args.gap_ms);
    // Every flip loop starts with the canary at 0: the probe must see that first.
    wait_for("the probe's first answer", Duration::from_secs(60), || {
        (probe.seen().body == "primary").then_some(())
    });
    let start = probe.seen();
    let started = Instant::now();
    let mut d = Dist::default();
    let mut marks = Vec::new();
    let mut failures = 0;
    for k in 0..args.warmup + args.flips {
        let weight = if k % 2 == 0 { 100 } else { 0 };
        let expect = if weight == 100 { "canary" } else { "primary" };
        let (path, text) = if baseline {
            let (b, _) = s.base.as_mut().expect("a baseline");
            let (text, _) = b.set_weights(
                FLIP_PREFIX,
                &[
                    ("flip-canary", weight * 100),
                    ("flip-primary", 10_000 - weight * 100),
                ],
            );
            (b.path("rds"), text)
        } else {
            s.maps.set_flip(weight)
        };
        let tmp = stage(&s.work, &path, &text, args.temp_in_dir);
        let wall = SystemTime::now();
        let t0 = Instant::now();
        std::fs::rename(&tmp, &path).expect("rename into place");
        let deadline = t0 + timeout;
        loop {
            let seen = probe.seen();
            if seen.body == expect && seen.since >= t0 {
                if k >= args.warmup {
                    d.0.push(ms(seen.since - t0));
                    marks.push((wall, ms(seen.since - t0)));
                }
                break;
            }
            if Instant::now() > deadline {
                failures += 1;
                eprintln!("flip {k}: no reply said {expect:?} within {timeout:?}");
                break;
            }
            thread::sleep(Duration::from_micros(100));
        }
        thread::sleep(gap);
    }
    let end = probe.seen();
    let rate = (end.requests - start.requests) as f64 / started.elapsed().as_secs_f64();
    drop(probe);
    (d, marks, failures, end.failures, rate)
}

fn flips(args: &Args, size: usize, ups: &Upstreams, samples: &mut Vec<Sample>) -> Summary {
    let routes = args.routes(size);
    let mut s = Setup::start(args, routes, true, false, args.flip_baseline, ups);
    thread::sleep(Duration::from_millis(2100));
    let load_before = loadavg();
    let hist_before = change_to_ack(&s.cp);
    let port = s.ours_listen;
    let (ours_d, marks, mut failures, bad_replies, rate) = flip_loop(args, &mut s, port, false);
    let hist_after = change_to_ack(&s.cp);
    thread::sleep(Duration::from_millis(200));
    let lines = logscan::read(&s.cp.log);
    let mut base_d = Dist::default();
    let mut base_bad = 0;
    if s.base.is_some() {
        let port = s.base_listen;
        let (d, _, f, bad, _) = flip_loop(args, &mut s, port, true);
        base_d = d;
        failures += f;
        base_bad = bad;
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== flip: {routes} routes + /flip/ ({} Mappings, {} clusters), {} flips (0 <-> 100) after {} warm-up",
        routes * 2 + 2,
        s.clusters,
        args.flips,
        args.warmup
    );
    let _ = writeln!(
        out,
        "  canaries in flight (at 10%, the rest at 0%): {}",
        args.in_flight.unwrap_or(routes).min(routes)
    );
    if !args.bootstrap_args.is_empty() {
        let _ = writeln!(
            out,
            "  canary-xds bootstrap {}",
            args.bootstrap_args.join(" ")
        );
    }
    if let Some(d) = &args.envoy_stats_flush {
        let _ = writeln!(out, "  both Envoys: stats_flush_interval {d}");
    }
    for n in &s.notes {
        let _ = writeln!(out, "  {n}");
    }
    let _ = writeln!(
        out,
        "  probe: {rate:.0} requests/s on one keep-alive connection; non-2xx replies: {bad_replies}"
    );
    let _ = writeln!(
        out,
        "  load average before / after: {load_before} / {}",
        loadavg()
    );
    let _ = writeln!(out, "{HEADER}");
    let _ = writeln!(
        out,
        "{}",
        ours_d.row("canary-xds: rename -> first reply routed anew")
    );
    if s.base.is_some() {
        let _ = writeln!(
            out,
            "{}",
            base_d.row("baseline: rename -> first reply routed anew")
        );
        let _ = writeln!(out, "  baseline probe non-2xx replies: {base_bad}");
    }
    let (push, ack, traces, pushed) = log_breakdown(&mut out, &lines, &marks);
    let _ = writeln!(
        out,
        "  /metrics change_to_ack (from the watcher's event; bucket bounds): {}",
        histogram_delta(&hist_before, &hist_after)
    );
    let _ = writeln!(out, "  {}", s.rss());
    let _ = writeln!(out, "  failures (timeouts): {failures}");
    print!("{out}");
    for (i, ((_, total), t)) in marks.iter().zip(traces).enumerate() {
        samples.push(Sample {
            case: "flip",
            routes,
            k: i,
            system: "canary-xds",
            total_ms: *total,
            trace: Some(t),
        });
    }
    for (i, v) in base_d.0.iter().enumerate() {
        samples.push(Sample {
            case: "flip",
            routes,
            k: i,
            system: "baseline",
            total_ms: *v,
            trace: None,
        });
    }
    Summary {
        case: "flip",
        routes,
        ours: ours_d,
        base: base_d,
        ours_push: push,
        envoy_ack: ack,
        failures,
        pushed,
    }
}

// --- main ---

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn print_summary(args: &Args, results: &[Summary]) {
    println!(
        "\n== summary (ms; total = rename -> Envoy serves it; ours = rename -> push; Envoy = push -> ACK)"
    );
    println!(
        "  {:<12} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>5}  pushed",
        "case",
        "routes",
        "total p50",
        "total p99",
        "base p50",
        "base p99",
        "x p50",
        "x p99",
        "ours p50",
        "Envoy p50",
        "fail"
    );
    let f = |v: f64, w: usize, p: usize| {
        if v.is_nan() {
            format!("{:>w$}", "-")
        } else {
            format!("{v:>w$.p$}")
        }
    };
    for r in results {
        println!(
            "  {:<12} {:>7} {} {} {} {} {} {} {} {} {:>5}  {}",
            r.case,
            r.routes,
            f(r.ours.p50(), 9, 2),
            f(r.ours.p99(), 9, 2),
            f(r.base.p50(), 9, 2),
            f(r.base.p99(), 9, 2),
            f(r.ours.p50() / r.base.p50(), 8, 3),
            f(r.ours.p99() / r.base.p99(), 8, 3),
            f(r.ours_push.p50(), 9, 2),
            f(r.envoy_ack.p50(), 9, 2),
            r.failures,
            r.pushed
        );
    }
    println!("\n== targets (issue 5)");
    let mut any = false;
    for r in results {
        let size = match args.count {
            Count::Routes => r.routes,
            Count::Mappings => r.routes * 2,
        };
        let unit = match args.count {
            Count::Routes => "routes",
            Count::Mappings => "Mappings",
        };
        let has_base = !r.base.0.is_empty();
        match (r.case, size) {
            ("propagation", 1) if has_base => {
                let (x50, x99) = (r.ours.p50() / r.base.p50(), r.ours.p99() / r.base.p99());
                println!(
                    "  propagation at 1 {unit}: ours <= 1.5x baseline: p50 {x50:.2}x {}, p99 {x99:.2}x {}",
                    verdict(x50 <= 1.5),
                    verdict(x99 <= 1.5)
                );
                any = true;
            }
            ("propagation", 10_000) => {
                if has_base {
                    let (x50, x99) = (r.ours.p50() / r.base.p50(), r.ours.p99() / r.base.p99());
                    println!(
                        "  propagation at 10k {unit}: ours <= 0.2x baseline: p50 {x50:.3}x {}, p99 {x99:.3}x {}",
                        verdict(x50 <= 0.2),
                        verdict(x99 <= 0.2)
                    );
                }
                println!(
                    "  propagation at 10k {unit}: p50 {:.1} ms <= 250 {}; p99 {:.1} ms <= 350 {}",
                    r.ours.p50(),
                    verdict(r.ours.p50() <= 250.0),
                    r.ours.p99(),
                    verdict(r.ours.p99() <= 350.0)
                );
                println!(
                    "  propagation at 10k {unit}: ours (rename -> push) p50 {:.1} ms <= 30 {}",
                    r.ours_push.p50(),
                    verdict(r.ours_push.p50() <= 30.0)
                );
                any = true;
            }
            ("flip", 10_000) => {
                // Issue 13: with Envoy's stats flush out of the way (`--envoy-stats-flush 299s`).
                println!(
                    "  weight flip at 10k {unit} (issue 13): p50 {:.1} ms <= 10 {}, p99 {:.1} ms <= 25 {}",
                    r.ours.p50(),
                    verdict(r.ours.p50() <= 10.0),
                    r.ours.p99(),
                    verdict(r.ours.p99() <= 25.0)
                );
                any = true;
            }
            _ => {}
        }
    }
    if !any {
        println!("  (none at these sizes: the targets are at 1 and 10,000)");
    }
}

fn write_csv(path: &Path, samples: &[Sample]) {
    let mut out = String::from(
        "case,routes,k,system,total_ms,rename_to_reload_done_ms,reload_ms,rename_to_push_ms,push_to_ack_ms,pushes\n",
    );
    let f = |d: Option<Duration>| d.map_or(String::new(), |d| format!("{:.3}", ms(d)));
    for s in samples {
        let (done, reload, push, ack, pushes) = match &s.trace {
            Some(t) => (
                f(t.reload_done),
                t.reload_ms.map_or(String::new(), |m| format!("{m:.1}")),
                f(t.first_push),
                match (t.first_push, t.ack) {
                    (Some(p), Some(a)) => format!("{:.3}", ms(a - p)),
                    _ => String::new(),
                },
                t.pushes.join(" "),
            ),
            None => Default::default(),
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{:.3},{done},{reload},{push},{ack},{pushes}",
            s.case, s.routes, s.k, s.system, s.total_ms
        );
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn main() {
    let args = Args::parse();
    procs::kill_children_on_signal();
    let envoy_version = Command::new(&args.envoy)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args.envoy.display()));
    let uptime = Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| format!("load average: {}", loadavg()));
    println!("propagation bench: {}", args.canary_xds.display());
    println!("  {envoy_version}");
    println!(
        "  {} cores; uptime: {uptime}",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  changes {} (+{} warm-up), flips {}, gap {} ms, admin poll every {} us, baseline files {}",
        args.changes,
        args.warmup,
        args.flips,
        args.gap_ms,
        args.poll_us,
        args.baseline_format.ext()
    );
    let ups = Upstreams {
        primary: Upstream::start("primary"),
        canary: Upstream::start("canary"),
    };
    let mut results = Vec::new();
    let mut samples = Vec::new();
    if args.case != Case::Flip {
        for &size in &args.sizes {
            results.push(propagation(&args, size, &ups, &mut samples));
        }
    }
    if args.case != Case::Propagation {
        for &size in &args.flip_sizes {
            results.push(flips(&args, size, &ups, &mut samples));
        }
    }
    print_summary(&args, &results);
    println!(
        "\n  uptime at the end: {}",
        Command::new("uptime")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    );
    if let Some(path) = &args.csv {
        write_csv(path, &samples);
        println!("  samples: {}", path.display());
    }
}
