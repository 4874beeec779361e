//! `canary-xds serve`: sets up logging and the runtime, then serves until a signal. The flags
//! are `serve::ServeArgs`, beside the settings they fill.

use std::process::ExitCode;

use crate::serve::{self, ServeArgs, Settings};

/// Runs `serve` until SIGINT or SIGTERM; a failure to start or to serve is logged.
pub fn run(args: ServeArgs) -> ExitCode {
    if args.validate_flags {
        return validate_flags(&args);
    }
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

/// `serve --validate-flags`: `ok` and exit 0 when `serve` would accept these flags, else the
/// error and exit 2, as clap exits on a flag it refuses. Nothing is bound, no file is read.
fn validate_flags(args: &ServeArgs) -> ExitCode {
    match Settings::check_flags(args) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
