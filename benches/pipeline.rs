//! Pipeline benchmark: read, parse, weights, translate and encode generated Mappings.
//!
//! `cargo bench --bench pipeline` (add `-- 1000 10000` to choose sizes). For each size it
//! reports the full rebuild from a cold start (reading and parsing included), its stages, and
//! one changed file among all the others, the way `serve` reloads it (the watcher's paths) and
//! by a stat of every file. Every figure is the median and p99 of repeated runs on the same
//! machine, with the allocator the binary uses. Peak heap: `cargo bench --bench pipeline_heap`.
//! `ONLY_FULL=1` or `ONLY_INCREMENTAL=1` runs one half.

#[path = "pipeline/common.rs"]
mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    common::main(None);
}
