//! `canary-xds status`: reads the Envoys twice, a window apart, and shows each canary beside its
//! primary with a verdict, as a table for people or JSON for pipelines; the exit code gates a
//! deploy.
//!
//! The reading and the statistics live in [`crate::canary`]; this module is the command: flags,
//! the loop over windows, and the two renderings. It reads flags only, never the environment,
//! so a daemon's `CANARY_XDS_*` never changes what it says.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::canary::{
    AdminClient, BackendReport, CanaryReport, ConfiguredWeights, LiveError, Thresholds, Verdict,
    VerdictCounts, WeightsFrom, ms, trim_float,
};
use crate::cmd::Format;
use crate::input::DEFAULT_MAX_FILE_SIZE;

/// The version of `status --format json`.
pub const FORMAT: u32 = 1;

/// The width the table is laid out for.
const WIDTH: usize = 80;

/// The flags of `status`.
#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// An Envoy admin URL (`http://127.0.0.1:9901`); repeat it for every Envoy of the fleet:
    /// their traffic is added up.
    #[arg(long = "envoy-admin", value_name = "URL", required = true)]
    pub envoy_admin: Vec<String>,
    /// Take the configured weights from canary-xds's admin API (`http://127.0.0.1:8877`).
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    pub control_plane: Option<String>,
    /// Take the configured weights from this directory of Mappings. Without this flag or
    /// --control-plane, from the first Envoy's /config_dump.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The fleet (ambassador_id) the Envoys belong to, for --control-plane and --dir.
    #[arg(long, default_value = "default")]
    pub fleet: String,
    /// The time between the two readings: `60s`, `5m`, `1500ms`, or seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub window: Duration,
    /// Keep going: a new verdict every window, until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Exit with 4 when a canary has not had enough traffic for a verdict.
    #[arg(long)]
    pub require_decision: bool,
    /// The false-positive rate of the error test per window, family-wise across every canary
    /// of every route (Holm's correction).
    #[arg(long, default_value_t = 0.01, value_parser = parse_alpha)]
    pub alpha: f64,
    /// A canary's p99 is worse only when it exceeds the primary's by this factor...
    #[arg(long, default_value_t = 1.5, value_parser = parse_positive)]
    pub p99_ratio: f64,
    /// ...and by this many milliseconds.
    #[arg(long, default_value_t = 10.0, value_parser = parse_non_negative)]
    pub p99_margin_ms: f64,
    /// The fewest requests on each side for a verdict of healthy and for the latency test.
    #[arg(long, default_value_t = 200)]
    pub min_requests: u64,
    /// How long to wait for an answer from an Envoy or the control plane.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The largest Mapping file read with --dir, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
}

impl StatusArgs {
    /// The thresholds the flags describe.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            alpha: self.alpha,
            p99_ratio: self.p99_ratio,
            p99_margin_ms: self.p99_margin_ms,
            min_requests: self.min_requests,
        }
    }
}

/// What can stop `status`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// An Envoy or the control plane could not be read.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// The Mapping directory could not be read.
    #[error("{dir}: {message}")]
    Dir { dir: PathBuf, message: String },
    /// No Tokio runtime.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// `60s`, `5m`, `1500ms`, `1h` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 60s, 5m or 1500ms"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{s:?}: must be more than 0"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(a) if a > 0.0 && a < 1.0 => Ok(a),
        _ => Err(format!(
            "{s:?}: a rate strictly between 0 and 1, such as 0.01"
        )),
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{s:?}: a number above 0")),
    }
}

fn parse_non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{s:?}: a number, 0 or more")),
    }
}

/// Runs `status` as the command line asked and returns the exit code: 0 when every canary is
/// healthy or undecided, 3 when one is worse, 4 when one is undecided and a decision is
/// required, 1 when an Envoy or the control plane cannot be read.
pub fn run(args: &StatusArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", StatusError::Runtime(e));
            return 1;
        }
    };
    runtime.block_on(async {
        tokio::select! {
            code = watch(args) => code,
            // Ctrl-C while waiting: stop quietly; the last verdict was already printed.
            _ = tokio::signal::ctrl_c() => 130,
        }
    })
}

/// The loop: a first reading, then a verdict every window (once without `--watch`).
async fn watch(args: &StatusArgs) -> u8 {
    let client = AdminClient::new(args.timeout);
    let thresholds = args.thresholds();
    // Read the weights first, so that a wrong URL fails at once rather than after a window.
    if let Err(e) = read_weights(&client, args).await {
        eprintln!("error: {e}");
        return 1;
    }
    let mut before = match client.sample(&args.envoy_admin).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    loop {
        eprintln!(
            "waiting {} for the second reading of {} Envoy{}...",
            human_duration(args.window),
            args.envoy_admin.len(),
            if args.envoy_admin.len() == 1 { "" } else { "s" }
        );
        tokio::time::sleep(args.window).await;
        let round = async {
            let after = client.sample(&args.envoy_admin).await?;
            let weights = read_weights(&client, args).await?;
            Ok::<_, StatusError>((after, weights))
        };
        let (after, weights) = match round.await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                if args.watch {
                    // Keep the last good reading and try again next window.
                    continue;
                }
                return 1;
            }
        };
        let report = crate::canary::compare(&weights, &before, &after, &thresholds);
        let code = report.exit_code(args.require_decision);
        let text = match args.format {
            Format::Table => table(&report, &weights, args),
            Format::Json => json(&report, &weights, args, code, !args.watch),
        };
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return 1;
        }
        if !args.watch {
            return code;
        }
        before = after;
    }
}

/// The configured weights from the source the flags name.
async fn read_weights(
    client: &AdminClient,
    args: &StatusArgs,
) -> Result<ConfiguredWeights, StatusError> {
    if let Some(cp) = &args.control_plane {
        return Ok(client.control_plane_weights(cp, &args.fleet).await?);
    }
    if let Some(dir) = &args.dir {
        let compiled = crate::cmd::check::compile_dir(dir, args.max_file_size).map_err(|e| {
            StatusError::Dir {
                dir: dir.clone(),
                message: e.to_diagnostic().message,
            }
        })?;
        return Ok(ConfiguredWeights::from_tables(
            &compiled.tables,
            &args.fleet,
            &dir.display().to_string(),
        ));
    }
    let first = &args.envoy_admin[0];
    Ok(client.envoy_weights(first).await?)
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", trim_float(s, 1))
    }
}

/// The document of `status --format json`.
#[derive(Serialize)]
struct StatusJson<'a> {
    format: u32,
    envoys: &'a [String],
    weights_from: WeightsFrom,
    source: &'a str,
    version: Option<&'a str>,
    /// The fleet whose weights were read; `null` when they came from Envoy.
    fleet: Option<&'a str>,
    #[serde(flatten)]
    report: &'a CanaryReport,
    summary: VerdictCounts,
    exit_code: u8,
}

/// The JSON document, pretty for one verdict, one line per verdict with `--watch` (JSON
/// Lines), so that a stream of them can be read line by line.
pub fn json(
    report: &CanaryReport,
    weights: &ConfiguredWeights,
    args: &StatusArgs,
    code: u8,
    pretty: bool,
) -> String {
    let doc = StatusJson {
        format: FORMAT,
        envoys: &args.envoy_admin,
        weights_from: weights.weights_from,
        source: &weights.source,
        version: weights.version.as_deref(),
        fleet: (weights.weights_from != WeightsFrom::Envoy).then_some(args.fleet.as_str()),
        report,
        summary: report.summary(),
        exit_code: code,
    };
    let text = if pretty {
        serde_json::to_string_pretty(&doc)
    } else {
        serde_json::to_string(&doc)
    };
    text.expect("the report serializes") + "\n"
}

/// The human table: a heading, then per route one line per backend and the reasons for each
/// canary's verdict below it, then the count of verdicts. Fits 80 columns for ordinary names.
pub fn table(report: &CanaryReport, weights: &ConfiguredWeights, args: &StatusArgs) -> String {
    let mut out = String::new();
    let from = match weights.weights_from {
        WeightsFrom::ControlPlane => weights.source.clone(),
        WeightsFrom::Dir => format!("the files in {}", weights.source),
        WeightsFrom::Envoy => "Envoy's /config_dump".to_string(),
    };
    let n = args.envoy_admin.len();
    let _ = writeln!(
        out,
        "{n} Envoy{}, {} window",
        if n == 1 { "" } else { "s" },
        human_duration(Duration::from_secs_f64(report.window_seconds)),
    );
    let version = weights
        .version
        .as_ref()
        .map_or(String::new(), |v| format!(", version {v}"));
    wrap(&mut out, &format!("weights from {from}{version}"), "");
    if report.routes.is_empty() {
        let _ = writeln!(out, "\nno route with more than one backend");
    }
    for route in &report.routes {
        out.push('\n');
        let _ = writeln!(out, "{}", route.route);
        if let Some(note) = &route.note {
            wrap(&mut out, &format!("({note})"), "  ");
        }
        write_backends(&mut out, &route.backends);
    }
    let s = report.summary();
    let _ = writeln!(
        out,
        "\n{} worse, {} healthy, {} not enough traffic, {} promoted",
        s.worse, s.healthy, s.not_enough_traffic, s.promoted
    );
    out
}

fn write_backends(out: &mut String, backends: &[BackendReport]) {
    let header = [
        "BACKEND", "WEIGHT", "SHARE", "REQS", "SUCCESS", "P50", "P99", "VERDICT",
    ];
    let mut rows: Vec<[String; 8]> = vec![header.map(str::to_string)];
    for b in backends {
        let percent = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| pct(v, d));
        let latency = |v: Option<f64>, capped: bool| match v {
            None => "-".to_string(),
            Some(v) if capped => format!(">{}", ms(v)),
            Some(v) => ms(v),
        };
        rows.push([
            b.name.clone(),
            pct(b.weight, 2),
            percent(b.share, 1),
            b.requests.to_string(),
            percent(b.success_rate, 2),
            latency(b.p50_ms, false),
            latency(b.p99_ms, b.p99_capped),
            b.verdict.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::from("  ");
        for (c, cell) in row.iter().enumerate() {
            match c {
                0 => {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
                }
                7 => line.push_str(cell),
                // Numbers right-aligned, so that their digits line up.
                _ => {
                    let _ = write!(line, "{cell:>w$}  ", w = widths[c]);
                }
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if i > 0 {
            let b = &backends[i - 1];
            if b.verdict != Verdict::Primary {
                for reason in &b.reasons {
                    wrap(out, &format!("{}: {reason}", b.name), "    ");
                }
            }
        }
    }
}

/// A percentage with at most `decimals` decimals: `90%`, `10.5%`, `99.95%`.
fn pct(v: f64, decimals: usize) -> String {
    format!("{}%", trim_float(v, decimals))
}

/// Writes `text` wrapped to `WIDTH` columns: the first line indented by `indent`, the next
/// ones by two more spaces, so that each reason stands out as one item.
fn wrap(out: &mut String, text: &str, indent: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > WIDTH {
            let _ = writeln!(out, "{line}");
            line = format!("{indent}  ");
        } else if line.is_empty() {
            line.push_str(indent);
        } else {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests;
