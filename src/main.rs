//! The `canary-xds` binary: parses flags and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

use canary_xds::cmd::Cli;

/// mimalloc rather than the system allocator: a reload allocates many small values on both
/// cores, where glibc's malloc cost a full rebuild of 10,000 Mappings a quarter of its time
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    Cli::parse().run()
}
