//! Command-line interface: the flags of every subcommand.
//!
//! `serve` takes each flag from the environment too (`CANARY_XDS_<FLAG>`), as daemons are
//! configured; `check` takes them from `CANARY_XDS_CHECK_<FLAG>`, so a daemon's environment never
//! changes what a one-off command does; `bootstrap` and `status` read flags only.

pub mod check;
pub mod status;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::input::source::DEFAULT_MAX_FILE_SIZE;

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
    Check(CheckArgs),
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
