//! `canary-xds serve`: sets up logging and the runtime, then serves until a signal. The flags
//! are `serve::ServeArgs`, beside the settings they fill.

use std::process::ExitCode;

use crate::serve::{self, ServeArgs};

/// Runs `serve` until SIGINT or SIGTERM; a failure to start or to serve is logged.
pub fn run(args: ServeArgs) -> ExitCode {
    serve::init_logging(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
