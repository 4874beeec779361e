//! `canary-xds diff` at scale (`cargo bench --bench diff`; sizes: `-- 1000 10000`): the issue's
//! bar is under 1 s at 10,000 Mappings.
//!
//! The generated Mappings of the pipeline bench (`benches/shared/mapping_doc.rs`), 10 per file,
//! as BASE; NEW is BASE with
//!
//! - `one weight`: one canary's weight moved (a typical pull request);
//! - `10% of files`: every tenth file's weights moved and one route added per such file;
//! - `from nothing`: BASE empty, so every route is added.
//!
//! For each, the release binary is run end to end (process start, reading both directories
//! through `serve`'s reload, comparing, printing the table; `--format json` too), and in process
//! the two halves: reading the sides, and comparing and rendering them. Medians and p99 of
//! repeated runs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use canary_xds::cmd::diff::{DiffArgs, DiffFormat, served_dirs};
use canary_xds::diff::{FleetScope, diff_sides, render};
use canary_xds::input::DEFAULT_MAX_FILE_SIZE;

#[path = "shared/mapping_doc.rs"]
mod mapping_doc;
use mapping_doc::{mapping_doc, write_mapping_files};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BIN: &str = env!("CARGO_BIN_EXE_canary-xds");

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn show(what: &str, mut v: Vec<Duration>) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p99) = (pct(&mut v, 0.5), pct(&mut v, 0.99));
    println!(
        "  {what:<38} p50 {:>8.1} ms  p99 {:>8.1} ms  ({} runs)",
        ms(p50),
        ms(p99),
        v.len()
    );
}

fn time(reps: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Rewrites file `f` of a generated directory of `n` Mappings with its weights moved, plus one
/// new route when `add`.
fn rewrite(dir: &Path, n: usize, f: usize, add: bool) {
    let mut docs: Vec<String> = (f * 10..(f * 10 + 10).min(n))
        .map(|i| {
            mapping_doc(i)
                .replace("weight: 1", "weight: 2")
                .replace("weight: 5", "weight: 6")
        })
        .collect();
    if add {
        docs.push(format!(
            "apiVersion: ambassador/v1\nkind: Mapping\nname: added{f}\nprefix: /added{f}/\nservice: added{f}\n"
        ));
    }
    std::fs::write(dir.join(format!("f{f:05}.yaml")), docs.join("---\n")).unwrap();
}

fn run(n: usize, reps: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    write_mapping_files(&base, n);
    let files = n.div_ceil(10);
    let one = tmp.path().join("one");
    write_mapping_files(&one, n);
    // Mapping 10 (the first of file 1) has weight 11: one canary moves to 12.
    let text = std::fs::read_to_string(base.join("f00001.yaml")).unwrap();
    let moved = text.replacen("weight: 11\n", "weight: 12\n", 1);
    assert_ne!(
        moved, text,
        "mapping_doc(10) changed: pick another weight to move"
    );
    std::fs::write(one.join("f00001.yaml"), moved).unwrap();
    let tenth = tmp.path().join("tenth");
    write_mapping_files(&tenth, n);
    for f in (0..files).step_by(10) {
        rewrite(&tenth, n, f, true);
    }
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();

    println!("== {n} Mappings in {files} files (load {})", load());
    for (name, from, to) in [
        ("one weight", &base, &one),
        ("10% of files", &base, &tenth),
        ("from nothing", &empty, &base),
    ] {
        println!("{name}:");
        for format in ["table", "json"] {
            let times = time(reps, || {
                let out = Command::new(BIN)
                    .args(["diff", from.to_str().unwrap(), to.to_str().unwrap()])
                    .args(["--format", format, "--all-fleets"])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            });
            show(&format!("binary, end to end, --format {format}"), times);
        }
        let args = DiffArgs {
            base: from.display().to_string(),
            new: to.to_path_buf(),
            format: DiffFormat::Table,
            fleet: "default".into(),
            all_fleets: true,
            exit_code: false,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            timeout: Duration::from_secs(10),
        };
        let mut sides = None;
        show(
            "in process: read both sides",
            time(reps, || {
                sides = Some(served_dirs(Some(from), to, args.max_file_size));
            }),
        );
        let (b, n) = sides.unwrap();
        let b = b.unwrap();
        let mut routes = 0;
        show(
            "in process: compare and render",
            time(reps, || {
                let r = diff_sides(&b, &n, FleetScope::All);
                routes = r.fleets.iter().map(|f| f.routes.len()).sum();
                std::hint::black_box(render::table(&r));
            }),
        );
        println!("  ({routes} routes differ)");
    }
    println!("(load after {})", load());
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    for n in sizes {
        run(n, if n >= 10_000 { 10 } else { 20 });
    }
}
