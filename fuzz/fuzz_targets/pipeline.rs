//! Any bytes, as up to four Mapping files, through the whole pure pipeline: parse, weights
//! (route tables), translation and snapshots. It must never panic, whatever the files say.

#![no_main]

use std::sync::Arc;

use canary_xds::input::parse::parse_file;
use canary_xds::serve::parse_listen;
use canary_xds::envoy::snapshot::SnapshotBuilder;
use canary_xds::routes::compile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A 0xFF byte (never in UTF-8) separates files, so one input can make routes across files.
    let files: Vec<_> = data
        .split(|&b| b == 0xFF)
        .take(4)
        .enumerate()
        .map(|(i, bytes)| parse_file(&format!("f{i}.yaml"), bytes))
        .collect();
    let compiled = compile(&files, None);
    let mut builder = SnapshotBuilder::new(parse_listen(&[]).expect("defaults"), None);
    for (fleet, table) in &compiled.tables.fleets {
        let snapshot = builder.build(fleet, Arc::clone(table));
        assert!(!snapshot.version.is_empty());
    }
    // Again with the tables as the last good ones, as `serve` compiles a reload.
    let _ = compile(&files, Some(&compiled.tables));
});
