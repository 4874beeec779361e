//! The pipeline benchmark's body, shared by `pipeline` (timings, with the allocator the binary
//! uses) and `pipeline_heap` (peak heap, with a counting allocator whose shared counters would
//! slow every allocation down on two cores, so it is never timed).

use std::fs;
use std::time::{Duration, Instant};

use canary_xds::envoy::snapshot::{Listen, SnapshotBuilder};
use canary_xds::input::{DEFAULT_MAX_FILE_SIZE, Loader};
use canary_xds::reload::Reloader;
use canary_xds::routes::compile;

#[path = "../shared/mapping_doc.rs"]
mod mapping_doc;
use mapping_doc::write_mapping_files;

/// Live heap bytes now, when a counting allocator is installed.
pub type Live = fn() -> isize;

fn listen() -> Listen {
    Listen {
        default: "0.0.0.0:8080".parse().unwrap(),
        fleets: Default::default(),
    }
}

struct Times(Vec<Duration>);

impl Times {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
    fn show(&self, what: &str, per: usize) -> String {
        let p50 = self.pct(0.5);
        format!(
            "{what:<34} p50 {:>9.2} ms  p99 {:>9.2} ms  ({:.2} us per Mapping)",
            ms(p50),
            ms(self.pct(0.99)),
            p50.as_secs_f64() * 1e6 / per as f64
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run(n: usize, reps: usize, live: Option<Live>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write_mapping_files(&dir, n);
    println!("== {n} Mappings in {} files", n.div_ceil(10));

    let only_incremental = std::env::var_os("ONLY_INCREMENTAL").is_some();
    // Stages, each from a cold loader.
    let (mut scan_t, mut compile_t, mut build_t, mut full_t) = (vec![], vec![], vec![], vec![]);
    let mut peak = 0isize;
    let mut encoded = 0;
    for _ in 0..if only_incremental { 0 } else { reps } {
        let base = live.map_or(0, |f| f());
        let now = || live.map_or(0, |f| f() - base);
        let mut high = 0isize;
        let t0 = Instant::now();
        let mut loader = Loader::new(&dir, DEFAULT_MAX_FILE_SIZE);
        let scan = loader.scan(false).unwrap();
        let t1 = Instant::now();
        high = high.max(now());
        let files: Vec<_> = scan
            .files
            .iter()
            .map(|f| std::sync::Arc::clone(&f.parsed))
            .collect();
        let compiled = compile(&files, None);
        let t2 = Instant::now();
        high = high.max(now());
        let mut builder = SnapshotBuilder::new(listen(), None);
        let snaps: Vec<_> = compiled
            .tables
            .fleets
            .iter()
            .map(|(f, t)| builder.build(f, std::sync::Arc::clone(t)))
            .collect();
        let t3 = Instant::now();
        encoded = snaps
            .iter()
            .map(|s| {
                s.routes.items.values().map(|r| r.any.len()).sum::<usize>()
                    + s.clusters
                        .items
                        .values()
                        .map(|r| r.any.len())
                        .sum::<usize>()
            })
            .sum();
        high = high.max(now());
        peak = peak.max(high);
        drop(snaps);
        scan_t.push(t1 - t0);
        compile_t.push(t2 - t1);
        build_t.push(t3 - t2);
        full_t.push(t3 - t0);
    }
    if live.is_some() {
        println!(
            "heap held at the end of a stage, at most: {:.1} MiB; encoded resources {:.1} MiB",
            peak as f64 / 1048576.0,
            encoded as f64 / 1048576.0
        );
        return;
    }
    if !only_incremental {
        println!("{}", Times(full_t).show("full rebuild (read..encode)", n));
        println!("{}", Times(scan_t).show("  read + parse", n));
        println!(
            "{}",
            Times(compile_t).show("  groups + weights + clusters", n)
        );
        println!("{}", Times(build_t).show("  translate + encode + hash", n));
    }
    if std::env::var_os("ONLY_FULL").is_some() {
        return;
    }
    // One changed file among the others, through the incremental reloader serve uses.
    let mut reloader = Reloader::new(
        Loader::new(&dir, DEFAULT_MAX_FILE_SIZE),
        SnapshotBuilder::new(listen(), None),
        Duration::from_secs(1),
    );
    reloader.reload(false, Instant::now());
    // Let the files age out of the "racy" window, as they would on a real system.
    std::thread::sleep(Duration::from_millis(2100));
    reloader.reload(false, Instant::now());
    let target = dir.join("f00003.yaml");
    let original = fs::read_to_string(&target).unwrap();
    assert!(original.contains("weight: 2\n"));
    // `serve` reloads the paths its watcher names; `stat all` is the scan it falls back on. A
    // weight is what a rollout moves; a timeout is a route setting, which the snapshot cannot
    // patch in place (the route's structure changes).
    for (mode, named, weight) in [
        ("watcher paths", true, true),
        ("stat all", false, true),
        ("a timeout, watcher paths", true, false),
    ] {
        let mut one = vec![];
        let (mut t_scan, mut t_compile, mut t_snap) = (vec![], vec![], vec![]);
        for rep in 0..if only_incremental { 300 } else { reps.max(20) } {
            let text = if weight {
                // A canary's weight moves, as in a rollout.
                original.replace("weight: 2\n", &format!("weight: {}\n", 3 + rep % 40))
            } else {
                original.replace(
                    "weight: 2\n",
                    &format!("weight: 2\ntimeout_ms: {}\n", 1000 + rep),
                )
            };
            let tmp = dir.join(".edit.tmp");
            fs::write(&tmp, &text).unwrap();
            fs::rename(&tmp, &target).unwrap();
            let t = Instant::now();
            let o = if named {
                reloader.reload_paths(&[tmp, target.clone()], Instant::now())
            } else {
                reloader.reload(false, Instant::now())
            };
            one.push(t.elapsed());
            t_scan.push(o.stats.took_scan);
            t_compile.push(o.stats.took_compile);
            t_snap.push(o.stats.took_snapshot);
            assert!(o.changed);
        }
        println!(
            "{}",
            Times(one).show(&format!("one changed file ({mode})"), n)
        );
        println!("{}", Times(t_scan).show("  scan", n));
        println!(
            "{}",
            Times(t_compile).show("  groups + weights + clusters", n)
        );
        println!(
            "{}",
            Times(t_snap).show("  snapshots (cached translation)", n)
        );
    }
}

/// Runs every size given on the command line (default 1k, 10k, 50k).
pub fn main(live: Option<Live>) {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 50_000]
    } else {
        sizes
    };
    for n in sizes {
        let reps = if live.is_some() {
            3
        } else if n >= 50_000 {
            5
        } else if n >= 10_000 {
            // Enough for a steady median on a noisy 2-vCPU VM.
            30
        } else {
            30
        };
        run(n, reps, live);
    }
}
