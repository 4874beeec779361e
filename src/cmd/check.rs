//! `canary-xds check`: the route table the files describe right now, and every diagnostic.
//!
//! `check` is a pure function of the files: no last good state, no fallback.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::cmd::Format;
use crate::input::parse::ParsedFile;
use crate::input::{DEFAULT_MAX_FILE_SIZE, Loader, SourceError};
use crate::model::diagnostic::{Diagnostic, Location, Severity};
use crate::routes::{Compiled, compile, render};

/// The flags of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The directory of Mapping YAML files (read recursively).
    #[arg(env = "CANARY_XDS_CHECK_DIR")]
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t, env = "CANARY_XDS_CHECK_FORMAT")]
    pub format: Format,
    /// The fleet (ambassador_id) to show.
    #[arg(
        long,
        default_value = "default",
        env = "CANARY_XDS_CHECK_FLEET",
        conflicts_with = "all_fleets"
    )]
    pub fleet: String,
    /// Show every fleet.
    #[arg(long, env = "CANARY_XDS_CHECK_ALL_FLEETS")]
    pub all_fleets: bool,
    /// The largest file read, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE, env = "CANARY_XDS_CHECK_MAX_FILE_SIZE")]
    pub max_file_size: u64,
}

/// Runs `check` and prints its output: exit code 0 without errors, 1 with any.
pub fn run(args: &CheckArgs) -> ExitCode {
    let (text, code) = output(args);
    if std::io::stdout().write_all(text.as_bytes()).is_err() {
        return ExitCode::from(1);
    }
    ExitCode::from(code)
}

/// Runs `check` as the command line asked: the text to print and the exit code (0 without
/// errors, 1 with any).
pub fn output(args: &CheckArgs) -> (String, u8) {
    // A directory that cannot be read is one error about the directory, with empty tables.
    let mut compiled = compile_dir(&args.dir, args.max_file_size).unwrap_or_else(|e| {
        let mut empty = compile::<ParsedFile>(&[], None);
        empty.diagnostics.push(e.to_diagnostic());
        empty
    });
    let fleet = (!args.all_fleets).then_some(args.fleet.as_str());
    if let Some(fleet) = fleet
        && compiled.tables.fleet(fleet).is_none()
    {
        let known: Vec<&str> = compiled.tables.fleets.keys().map(String::as_str).collect();
        compiled.diagnostics.push(
            Diagnostic::warning(
                &Location::directory(),
                format!(
                    "no Mapping belongs to fleet {fleet} (ambassador_id); the fleets are: {}",
                    known.join(", ")
                ),
            )
            .field("ambassador_id"),
        );
    }
    let text = match args.format {
        Format::Table => render::table(&compiled.tables, fleet, &compiled.diagnostics),
        Format::Json => render::json(&compiled.tables, fleet, &compiled.diagnostics),
    };
    (text, exit_code(&compiled))
}

/// Reads and compiles a directory once, with every diagnostic about its files; `Err` when the
/// directory cannot be read at all.
pub fn compile_dir(dir: &Path, max_file_size: u64) -> Result<Compiled, SourceError> {
    let scan = Loader::new(dir, max_file_size).scan(false)?;
    let files: Vec<_> = scan.files.iter().map(|f| &*f.parsed).collect();
    let mut compiled = compile(&files, None);
    compiled.diagnostics.extend(scan.diagnostics);
    compiled
        .diagnostics
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Ok(compiled)
}

/// The exit code of `check`: 1 when any diagnostic is an error, else 0.
pub fn exit_code(compiled: &Compiled) -> u8 {
    u8::from(
        compiled
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error),
    )
}
