//! The `canary-xds` binary: parses flags, sets up logging and hands over to the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use canary_xds::cmd::check;
use canary_xds::cmd::{Cli, Command};
use canary_xds::envoy::bootstrap;
use canary_xds::serve;

/// mimalloc rather than the system allocator: a reload allocates many small values on both
/// cores, where glibc's malloc cost a full rebuild of 10,000 Mappings a quarter of its time
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => {
            let (text, code) = check::run(&args);
            if std::io::stdout().write_all(text.as_bytes()).is_err() {
                return ExitCode::from(1);
            }
            ExitCode::from(code)
        }
        Command::Serve(args) => {
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
        Command::Bootstrap(args) => {
            print!("{}", bootstrap::render(&args));
            ExitCode::SUCCESS
        }
        Command::Status(args) => ExitCode::from(canary_xds::cmd::status::run(&args)),
    }
}
