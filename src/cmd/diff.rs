//! `canary-xds diff BASE NEW`: what a change of Mappings will do to traffic, before it ships.
//!
//! The shell around `crate::diff`: it reads the two sides and prints the report. A directory is
//! read by `serve`'s own reload, so that each side is what `serve` would really send: BASE as a
//! fresh start on it, NEW as the reload that follows when NEW's files replace BASE's (a file
//! with errors keeps its BASE content, a route whose weights broke its BASE weights). BASE may
//! instead be a running server's admin URL, read from its `/api/routes`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::canary::AdminClient;
use crate::diff::{DiffReport, DiffSide, FleetScope, diff_sides, markdown, render};
use crate::envoy::snapshot::{Listen, SnapshotBuilder};
use crate::input::{DEFAULT_MAX_FILE_SIZE, Loader};
use crate::model::diagnostic::Severity;
use crate::reload::Reloader;

/// The flags of `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// BASE: a directory of Mappings, or the admin URL of a running `serve`
    /// (`http://127.0.0.1:8877`), compared as it serves now.
    pub base: String,
    /// NEW: the directory of Mappings the change would put in place.
    pub new: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: DiffFormat,
    /// The fleet (ambassador_id) to compare.
    #[arg(long, default_value = "default", conflicts_with = "all_fleets")]
    pub fleet: String,
    /// Compare every fleet.
    #[arg(long)]
    pub all_fleets: bool,
    /// Exit with 3 when there are differences (as `git diff --exit-code`).
    #[arg(long)]
    pub exit_code: bool,
    /// The largest file read, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
    /// How long to wait for a BASE URL's answer.
    #[arg(long, default_value = "10s", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// How `diff` prints its report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// For people, at 80 columns.
    #[default]
    Table,
    /// For programs: docs/diff.md documents it.
    Json,
    /// For a pull-request comment.
    Markdown,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let n = s.strip_suffix('s').unwrap_or(s);
    match n.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!("{s:?}: a number of seconds above 0 (10s)")),
    }
}

/// Why `diff` could not compare: BASE cannot be read (exit code 2, as a usage error).
#[derive(Debug, thiserror::Error)]
pub enum DiffInputError {
    /// BASE is neither a readable directory nor an admin URL.
    #[error("BASE {0}: not a directory (nor an http:// admin URL)")]
    BaseNotDir(String),
    /// The server at BASE could not be read.
    #[error("BASE {url}: {message}")]
    BaseUrl { url: String, message: String },
}

/// Runs `diff` and prints its report: exit code 0 without differences, 1 when NEW has errors,
/// 2 when BASE cannot be read, 3 with `--exit-code` when there are differences.
pub fn run(args: &DiffArgs) -> ExitCode {
    match output(args) {
        Ok((text, code)) => {
            if std::io::stdout().write_all(text.as_bytes()).is_err() {
                return ExitCode::from(1);
            }
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `diff` as the command line asked: the text to print and the exit code.
pub fn output(args: &DiffArgs) -> Result<(String, u8), DiffInputError> {
    let (base, new) = read_sides(args)?;
    let scope = if args.all_fleets {
        FleetScope::All
    } else {
        FleetScope::One(&args.fleet)
    };
    let mut report = diff_sides(&base, &new, scope);
    report.base.clone_from(&args.base);
    report.new = args.new.display().to_string();
    let text = match args.format {
        DiffFormat::Table => render::table(&report),
        DiffFormat::Json => render::json(&report),
        DiffFormat::Markdown => markdown(&report),
    };
    Ok((text, exit_code(&report, args.exit_code)))
}

/// 1 when NEW has errors, else 3 for differences with `--exit-code`, else 0.
pub fn exit_code(report: &DiffReport, exit_code: bool) -> u8 {
    if report.new_errors > 0 {
        1
    } else if exit_code && !report.is_empty() {
        3
    } else {
        0
    }
}

fn is_url(base: &str) -> bool {
    base.starts_with("http://") || base.starts_with("https://")
}

/// BASE and NEW as `serve` would serve them.
pub fn read_sides(args: &DiffArgs) -> Result<(DiffSide, DiffSide), DiffInputError> {
    if is_url(&args.base) {
        let base = fetch_base(&args.base, args.timeout)?;
        let mut new = served_dirs(None, &args.new, args.max_file_size).1;
        // The server keeps a file with errors at its last good content, which only it knows:
        // its routes are kept as the server serves them.
        let broken: BTreeSet<String> = new
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error && d.file != ".")
            .map(|d| d.file.clone())
            .collect();
        if !broken.is_empty() {
            new.hold_files(
                &base,
                &broken,
                "a file of this route has errors: the server keeps serving its last good content",
            );
        }
        return Ok((base, new));
    }
    let base = Path::new(&args.base);
    if !base.is_dir() {
        return Err(DiffInputError::BaseNotDir(args.base.clone()));
    }
    let (base, new) = served_dirs(Some(base), &args.new, args.max_file_size);
    Ok((base.unwrap_or_default(), new))
}

/// What `serve` serves for `base` (when given) and then for `new`, with each reload's
/// diagnostics: one reloader reads both, so NEW's broken files keep BASE's content.
pub fn served_dirs(
    base: Option<&Path>,
    new: &Path,
    max_file_size: u64,
) -> (Option<DiffSide>, DiffSide) {
    let builder = SnapshotBuilder::new(
        Listen {
            default: ([127, 0, 0, 1], 8080).into(),
            fleets: BTreeMap::new(),
        },
        None,
    );
    // No grace for emptied files: a change that empties a file means it.
    let mut reloader = Reloader::new(
        Loader::new(base.unwrap_or(new), max_file_size),
        builder,
        Duration::ZERO,
    );
    let side = |reloader: &mut Reloader| {
        let outcome = reloader.reload(false, Instant::now());
        let tables = outcome.served.map(|s| s.tables).unwrap_or_default();
        DiffSide::from_tables(&tables, outcome.diagnostics)
    };
    let base_side = base.map(|_| side(&mut reloader));
    if base.is_some() {
        reloader.read_from(Loader::new(new, max_file_size));
    }
    (base_side, side(&mut reloader))
}

/// BASE from a running server's `/api/routes`.
fn fetch_base(url: &str, timeout: Duration) -> Result<DiffSide, DiffInputError> {
    let failed = |message: String| DiffInputError::BaseUrl {
        url: url.to_string(),
        message,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))?;
    let (routes_url, text) = runtime
        .block_on(AdminClient::new(timeout).control_plane_routes(url))
        .map_err(|e| failed(e.to_string()))?;
    DiffSide::from_routes_json(&text).map_err(|e| DiffInputError::BaseUrl {
        url: routes_url,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_util::arbitrary_mapping;

    fn write_dir(dir: &Path, bodies: &[String]) {
        std::fs::create_dir_all(dir).unwrap();
        for (i, b) in bodies.iter().enumerate() {
            let text = format!(
                "apiVersion: ambassador/v1\nkind: Mapping\nname: m{i:02}\nservice: s{}\n{b}",
                i % 3
            );
            std::fs::write(dir.join(format!("f{i:02}.yaml")), text).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// `diff X X` through `serve`'s reload is empty, whatever the directory holds (weights
        /// over 100% and held routes included), and so is X against a copy of itself.
        #[test]
        fn a_directory_against_itself_is_no_difference(
            bodies in prop::collection::vec(arbitrary_mapping(), 0..10),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let (x, copy) = (tmp.path().join("x"), tmp.path().join("copy"));
            write_dir(&x, &bodies);
            write_dir(&copy, &bodies);
            for new in [&x, &copy] {
                let (base, new) = served_dirs(Some(&x), new, DEFAULT_MAX_FILE_SIZE);
                let r = diff_sides(&base.unwrap(), &new, FleetScope::All);
                prop_assert!(r.is_empty(), "{:#?}", r);
                prop_assert!(r.risks.is_empty(), "{:#?}", r.risks);
            }
        }
    }
}
