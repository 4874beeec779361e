//! `canary-xds bootstrap`: prints an Envoy bootstrap that points Envoy at canary-xds. The
//! flags are `envoy::bootstrap::BootstrapArgs`, beside the rendering they drive.

use std::io::Write;
use std::process::ExitCode;

use crate::envoy::bootstrap::{self, BootstrapArgs};

/// Prints the bootstrap on standard output.
pub fn run(args: &BootstrapArgs) -> ExitCode {
    match std::io::stdout().write_all(bootstrap::render(args).as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
