//! Peak heap of the pipeline benchmark's full rebuild (`cargo bench --bench pipeline_heap`,
//! sizes as for `pipeline`): the same work, counted by stats_alloc over the binary's allocator.
//! Counting costs every allocation two shared atomic updates, so nothing here is timed.

use mimalloc::MiMalloc;
use stats_alloc::StatsAlloc;

#[path = "pipeline/common.rs"]
mod common;

#[global_allocator]
static ALLOC: &StatsAlloc<MiMalloc> = &COUNTED;
static COUNTED: StatsAlloc<MiMalloc> = StatsAlloc::new(MiMalloc);

/// Bytes allocated and not freed so far (stats_alloc counts a realloc's growth in
/// `bytes_allocated` already).
fn live() -> isize {
    let s = ALLOC.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

fn main() {
    common::main(Some(live));
}
