//! The command line: one file per subcommand (`check`, `diff`, `serve`, `bootstrap`,
//! `status`), each with its entry point; `check`, `diff` and `status` keep their flags beside
//! it, `serve` and `bootstrap` in the stage whose settings they fill.
//!
//! `serve` takes each flag from the environment too (`CANARY_XDS_<FLAG>`), as daemons are
//! configured; `check` takes them from `CANARY_XDS_CHECK_<FLAG>`, so a daemon's environment never
//! changes what a one-off command does; `bootstrap`, `diff` and `status` read flags only.

pub mod bootstrap;
pub mod check;
pub mod diff;
pub mod serve;
pub mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "canary-xds",
    version,
    about = "Ambassador-style canary Mappings for any Envoy, over xDS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the route table a directory of Mappings describes, with every diagnostic.
    Check(check::CheckArgs),
    /// Show what a change of Mappings will do to traffic: BASE (a directory or a running
    /// server's admin URL) against NEW, route by route.
    Diff(diff::DiffArgs),
    /// Watch a directory of Mappings and serve it to Envoy over ADS.
    Serve(crate::serve::ServeArgs),
    /// Print an Envoy bootstrap that points Envoy at canary-xds.
    Bootstrap(crate::envoy::bootstrap::BootstrapArgs),
    /// Compare each canary's traffic with its primary's over a window, from Envoy's stats.
    Status(crate::cmd::status::StatusArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

impl Cli {
    /// Runs the subcommand; the exit code says how it went.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Check(args) => check::run(&args),
            Command::Diff(args) => diff::run(&args),
            Command::Serve(args) => serve::run(args),
            Command::Bootstrap(args) => bootstrap::run(&args),
            Command::Status(args) => ExitCode::from(status::run(&args)),
        }
    }
}
