//! Fixtures shared by unit tests across modules: Mapping text, what a reload would serve for
//! it, a connected Envoy's status, and (in `canary`) Envoy stats and windows built from a few
//! numbers. Test-only; every module's tests may use it.

pub mod canary;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::{Strategy, prop};

use crate::envoy::snapshot::{Listen, SnapshotBuilder};
use crate::input::parse::parse_file;
use crate::input::{DEFAULT_MAX_FILE_SIZE, Loader};
use crate::reload::{Reloader, Served};
use crate::routes::{Tables, compile};
use crate::xds::stream::Variant;
use crate::xds::{EnvoyStatus, Published, Snapshot};

/// The docs' primary Mapping, alone on `/qotm/`.
pub const MAIN: &str =
    "apiVersion: ambassador/v1\nkind: Mapping\nname: qotm\nprefix: /qotm/\nservice: qotm\n";
/// The docs' canary beside `MAIN`, at 10%.
pub const CANARY: &str = "apiVersion: ambassador/v1\nkind: Mapping\nname: qotmv2\nprefix: /qotm/\nservice: qotmv2\nweight: 10\n";

/// The route tables `files` ((path, YAML) pairs) compile to.
pub fn tables(files: &[(&str, &str)]) -> Tables {
    let parsed: Vec<_> = files
        .iter()
        .map(|(rel, text)| parse_file(rel, text.as_bytes()))
        .collect();
    compile(&parsed, None).tables
}

/// A snapshot builder with the default listener on 127.0.0.1:8080.
pub fn builder() -> SnapshotBuilder {
    SnapshotBuilder::new(
        Listen {
            default: "127.0.0.1:8080".parse().unwrap(),
            fleets: BTreeMap::new(),
        },
        None,
    )
}

/// What the reloader would serve for `files`.
pub fn served(files: &[(&str, &str)]) -> Served {
    let tables = tables(files);
    let mut builder = builder();
    let fleets = tables
        .fleets
        .iter()
        .map(|(name, t)| (name.clone(), Arc::new(builder.build(name, Arc::clone(t)))))
        .collect();
    let other = Arc::new(builder.build("", Arc::new(Default::default())));
    Served {
        published: Published {
            fleets,
            other,
            since: Instant::now(),
            withheld: BTreeMap::new(),
        },
        tables,
    }
}

/// The snapshots for `files`, as the reloader would publish them.
pub fn published(files: &[(&str, &str)]) -> Published {
    served(files).published
}

/// Builds the default fleet's snapshots one after another, keeping the builder's caches between
/// builds as the reloader does.
pub struct Fleet {
    builder: SnapshotBuilder,
}

impl Fleet {
    pub fn new() -> Self {
        Fleet { builder: builder() }
    }

    /// The default fleet's snapshot for `files`.
    pub fn snapshot(&mut self, files: &[(&str, &str)]) -> Snapshot {
        let t = tables(files);
        let snap = self
            .builder
            .build("default", Arc::clone(&t.fleets["default"]));
        self.builder.retain();
        snap
    }
}

/// A reloader of `dir` with the default listener and file size limit.
pub fn reloader(dir: &Path, empty_grace: Duration) -> Reloader {
    Reloader::new(
        Loader::new(dir, DEFAULT_MAX_FILE_SIZE),
        builder(),
        empty_grace,
    )
}

/// A connected Envoy that has not ACKed anything.
pub fn envoy(node: &str, fleet: &str, variant: Variant) -> EnvoyStatus {
    EnvoyStatus {
        node_id: node.into(),
        fleet: fleet.into(),
        variant,
        runtime: false,
        connected_since: SystemTime::UNIX_EPOCH,
        types: BTreeMap::new(),
        synced_version: None,
        in_sync: false,
        awaiting: 0,
    }
}

/// The body of a generated Mapping (no name or service): a prefix among three that nest, maybe
/// a method, a host, a weight, a precedence and a header canary, so that routes group, overlap
/// and order in every way.
pub fn arbitrary_mapping() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["/a/", "/b/", "/a/b/"]),
        prop::option::of(prop::sample::select(vec!["GET", "POST"])),
        prop::option::of(prop::sample::select(vec!["foo.com", "bar.com"])),
        prop::option::of(0u32..=60),
        prop::option::of(-1i32..=1),
        prop::bool::ANY,
    )
        .prop_map(|(prefix, method, host, weight, precedence, header)| {
            let mut extra = String::new();
            if let Some(m) = method {
                extra.push_str(&format!("method: {m}\n"));
            }
            if let Some(h) = host {
                extra.push_str(&format!("host: {h}\n"));
            }
            if let Some(w) = weight {
                extra.push_str(&format!("weight: {w}\n"));
            }
            if let Some(p) = precedence {
                extra.push_str(&format!("precedence: {p}\n"));
            }
            if header {
                extra.push_str("headers: {x-canary: \"true\"}\n");
            }
            format!("prefix: {prefix}\n{extra}")
        })
}
