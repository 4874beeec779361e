//! One reload of the watched directory: scan, contain bad files, compile, build snapshots.
//!
//! Containment: the unit is the file. A file with any error keeps serving its last good
//! content; a file with no good past is left out. A route whose weights became invalid across
//! files keeps its last good weights. A directory that cannot be read keeps everything as it is.
//! A file that suddenly became empty (an editor truncating before it writes) keeps its content
//! until it has stayed empty for `empty_grace`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::envoy::snapshot::{RouteLimits, SnapshotBuilder};
use crate::input::parse::ParsedFile;
use crate::input::{Content, Loader, Scan, SourceError};
use crate::model::diagnostic::{Counts, Diagnostic, Location};
use crate::routes::{Compiled, RouteTable, Tables, compile, diagnostic_order, recompile_routes};
use crate::xds::{Published, Snapshot};

/// What a good reload gives to serve: the snapshots for the hub, and the route tables they
/// were built from, for the admin page and API (the snapshots carry only Envoy's bytes).
#[derive(Clone, Debug)]
pub struct Served {
    pub published: Published,
    pub tables: Tables,
}

impl Served {
    /// Each fleet's name, snapshot and route table.
    pub fn fleets(&self) -> impl Iterator<Item = (&String, &Arc<Snapshot>, &Arc<RouteTable>)> {
        self.published
            .fleets
            .iter()
            .filter_map(|(name, snap)| Some((name, snap, self.tables.fleets.get(name)?)))
    }
}

/// The outcome of a reload.
#[derive(Debug)]
pub struct Outcome {
    /// What to serve, when the directory could be read.
    pub served: Option<Served>,
    /// Whether the content served changed.
    pub changed: bool,
    pub stats: ReloadStats,
    /// Every diagnostic about what is on disk now, plus notes on what is held back.
    pub diagnostics: Vec<Diagnostic>,
    /// Call again after this long even without a file event (a file held while empty).
    pub recheck_after: Option<Duration>,
    /// Files accepted as good with new content in this reload, with that content as it was
    /// read (for `--state-dir`, which keeps these bytes rather than read the file again).
    pub accepted: Vec<(String, Content)>,
    /// How many files that were there at the last reload are gone.
    pub removed_files: usize,
}

/// What a reload did, for the log line and metrics.
#[derive(Clone, Debug, Default)]
pub struct ReloadStats {
    pub files: usize,
    pub files_read: usize,
    pub files_parsed: usize,
    pub mappings: usize,
    pub routes: usize,
    pub clusters: usize,
    pub version: String,
    pub took: Duration,
    /// Where the time went: reading and parsing, building the tables, building the snapshots.
    pub took_scan: Duration,
    pub took_compile: Duration,
    pub took_snapshot: Duration,
    pub counts: Counts,
    /// Files (relative paths) held at their last good content.
    pub held_files: usize,
    /// Fleets whose route table is over the limits: refused, this reload.
    pub refused_tables: usize,
    /// Fleets sent nothing: refused, with no good table to keep serving.
    pub withheld_fleets: usize,
}

/// What containment leaves of a scan: the files to compile (each as it is on disk or at its
/// last good content), and what it found.
#[derive(Default)]
struct Contained {
    effective: Vec<Arc<ParsedFile>>,
    diagnostics: Vec<Diagnostic>,
    held_files: usize,
    recheck_after: Option<Duration>,
    accepted: Vec<(String, Content)>,
    removed_files: usize,
}

/// A file's last good content and when it became empty, if it did.
struct FileMemory {
    good: Arc<ParsedFile>,
    digest: Option<[u8; 32]>,
    empty_since: Option<Instant>,
}

/// Reloads a directory again and again, remembering the last good state of each file and of
/// the route tables.
pub struct Reloader {
    loader: Loader,
    builder: SnapshotBuilder,
    files: HashMap<String, FileMemory>,
    /// The files of the last compile and what it gave: the tables to fall back on, and the
    /// start of a recompile of only the routes that changed (`table::recompile_routes`).
    last_compile: Option<(Vec<Arc<ParsedFile>>, Compiled)>,
    last: Option<Served>,
    empty_grace: Duration,
    /// When the directory was first seen without any Mapping file, while it used to have some.
    dir_empty_since: Option<Instant>,
    /// The most a fleet's route configuration may hold.
    limits: RouteLimits,
}

impl Reloader {
    pub fn new(loader: Loader, builder: SnapshotBuilder, empty_grace: Duration) -> Self {
        Reloader {
            loader,
            builder,
            files: HashMap::new(),
            last_compile: None,
            last: None,
            empty_grace,
            dir_empty_since: None,
            limits: RouteLimits::default(),
        }
    }

    /// Refuses route tables over `limits` (the defaults otherwise).
    pub fn with_limits(mut self, limits: RouteLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Seeds a file's last good content (from `--state-dir`), used if the file is broken now.
    pub fn remember(&mut self, rel: String, good: Arc<ParsedFile>) {
        self.files.insert(
            rel,
            FileMemory {
                good,
                digest: None,
                empty_since: None,
            },
        );
    }

    /// The last good content of every file, for `--state-dir`.
    pub fn good_files(&self) -> impl Iterator<Item = (&str, &Arc<ParsedFile>)> {
        self.files.iter().map(|(k, v)| (k.as_str(), &v.good))
    }

    /// Compiles only the remembered good files: what `serve` falls back on when it starts with
    /// `--state-dir` and the directory cannot be read.
    pub fn from_memory(&mut self, since: Instant) -> Option<Served> {
        if self.files.is_empty() {
            return None;
        }
        let mut files: Vec<(&String, &FileMemory)> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.cmp(b.0));
        let effective: Vec<Arc<ParsedFile>> =
            files.iter().map(|(_, m)| Arc::clone(&m.good)).collect();
        let compiled = compile(&effective, None);
        let served = self.publish(&compiled.tables, since, &mut Vec::new());
        self.last_compile = Some((effective, compiled));
        self.last = Some(served.clone());
        Some(served)
    }

    /// Reads another directory from now on, keeping what it learnt of the last one (each file's
    /// last good content, by relative path, and the last tables): `diff` reloads BASE, then NEW,
    /// as if NEW's files had replaced BASE's in one watched directory.
    pub fn read_from(&mut self, loader: Loader) {
        self.loader = loader;
    }

    /// What is being served now.
    pub fn last(&self) -> Option<&Served> {
        self.last.as_ref()
    }

    /// Reloads. `verify` reads every file again (the periodic safety net); `since` is when the
    /// change that triggered this reload was seen.
    pub fn reload(&mut self, verify: bool, since: Instant) -> Outcome {
        let started = Instant::now();
        let scan = self.loader.scan(verify);
        self.reload_from(scan, started, since)
    }

    /// Reloads after a watcher named `paths` as changed: only those files are looked at when
    /// the directory is plain enough for that (see `Loader::scan_paths`), else all of them.
    pub fn reload_paths(&mut self, paths: &[PathBuf], since: Instant) -> Outcome {
        let started = Instant::now();
        let scan = self.loader.scan_paths(paths);
        self.reload_from(scan, started, since)
    }

    fn reload_from(
        &mut self,
        scan: Result<Scan, SourceError>,
        started: Instant,
        since: Instant,
    ) -> Outcome {
        let scan = match scan {
            Ok(scan) => scan,
            Err(e) => return self.unreadable(&e, started),
        };
        let scanned_at = Instant::now();
        if let Some(held) = self.hold_emptied_directory(&scan, started) {
            return held;
        }
        let files = scan.files.len();
        let (files_read, files_parsed) = (scan.read, scan.parsed);
        let Contained {
            effective,
            mut diagnostics,
            held_files,
            recheck_after,
            accepted,
            removed_files,
        } = self.contain(scan);

        let compiled = match &self.last_compile {
            Some((files, last)) => recompile_routes(files, last, &effective)
                .unwrap_or_else(|| compile(&effective, Some(&last.tables))),
            None => compile(&effective, None),
        };
        let compiled_at = Instant::now();
        diagnostics.extend(compiled.diagnostics.iter().cloned());
        let before = diagnostics.len();
        let served = self.publish(&compiled.tables, since, &mut diagnostics);
        let refused_tables = diagnostics.len() - before;
        // The compiler re-reports the served files' own diagnostics: sorting drops the repeats.
        diagnostics.sort_by(diagnostic_order);
        diagnostics.dedup();
        let tables = &served.tables;
        let built_at = Instant::now();
        let changed = self
            .last
            .as_ref()
            .is_none_or(|old| old.published.fleet_versions() != served.published.fleet_versions());
        let stats = ReloadStats {
            files,
            files_read,
            files_parsed,
            mappings: tables.fleets.values().map(|t| t.mapping_count()).sum(),
            routes: tables.fleets.values().map(|t| t.routes.len()).sum(),
            clusters: tables.fleets.values().map(|t| t.clusters.len()).sum(),
            version: served.published.version(),
            took: started.elapsed(),
            took_scan: scanned_at - started,
            took_compile: compiled_at - scanned_at,
            took_snapshot: built_at - compiled_at,
            counts: Counts::of(&diagnostics),
            held_files,
            withheld_fleets: served.published.withheld.len(),
            refused_tables,
        };
        self.last_compile = Some((effective, compiled));
        if changed {
            self.last = Some(served.clone());
        }
        Outcome {
            served: Some(if changed {
                served
            } else {
                self.last.clone().expect("set when first published")
            }),
            changed,
            stats,
            diagnostics,
            recheck_after,
            accepted,
            removed_files,
        }
    }

    /// A directory whose every file vanished is more likely being replaced or deleted than
    /// meant to serve nothing: the last config is held for `empty_grace`, as for an emptied
    /// file. `Some` while it is held.
    fn hold_emptied_directory(&mut self, scan: &Scan, started: Instant) -> Option<Outcome> {
        if !(scan.files.is_empty()
            && self.last.is_some()
            && self.files.values().any(|m| !m.good.mappings.is_empty()))
        {
            self.dir_empty_since = None;
            return None;
        }
        let now = Instant::now();
        let since_empty = *self.dir_empty_since.get_or_insert(now);
        let waited = now.duration_since(since_empty);
        if waited >= self.empty_grace {
            self.dir_empty_since = None;
            return None;
        }
        let d = Diagnostic::warning(
            &Location::directory(),
            "the directory has no Mapping file any more; the last config keeps serving until it \
             stays empty",
        )
        .held_back();
        Some(Outcome {
            served: self.last.clone(),
            changed: false,
            stats: ReloadStats {
                took: started.elapsed(),
                counts: Counts::of(std::slice::from_ref(&d)),
                ..ReloadStats::default()
            },
            diagnostics: vec![d],
            recheck_after: Some(self.empty_grace - waited),
            accepted: Vec::new(),
            removed_files: 0,
        })
    }

    /// Containment, file by file: a file with errors keeps its last good content (or, with
    /// none, is left out); a file that just became empty keeps its content for `empty_grace`;
    /// any other file is accepted as it is. Deleted files are forgotten.
    fn contain(&mut self, scan: Scan) -> Contained {
        let mut out = Contained {
            effective: Vec::with_capacity(scan.files.len()),
            diagnostics: scan.diagnostics,
            ..Contained::default()
        };
        let mut present = BTreeSet::new();
        let now = Instant::now();
        for f in &scan.files {
            present.insert(f.rel.clone());
            let parsed = &f.parsed;
            out.diagnostics.extend(parsed.diagnostics.iter().cloned());
            let is_empty = parsed.mappings.is_empty()
                && parsed.rejected.is_empty()
                && parsed.diagnostics.is_empty();
            match self.files.get_mut(&f.rel) {
                Some(m) if parsed.has_errors() => {
                    out.held_files += 1;
                    out.diagnostics.push(hold_note(
                        &f.rel,
                        &m.good,
                        "it has errors, so its last good content keeps serving",
                    ));
                    out.effective.push(Arc::clone(&m.good));
                }
                Some(m) if is_empty && !m.good.mappings.is_empty() => {
                    let since_empty = *m.empty_since.get_or_insert(now);
                    let waited = now.duration_since(since_empty);
                    if waited < self.empty_grace {
                        out.held_files += 1;
                        out.diagnostics.push(hold_note(
                            &f.rel,
                            &m.good,
                            "it just became empty (an editor mid-save?), so its last content \
                             keeps serving until it stays empty",
                        ));
                        out.effective.push(Arc::clone(&m.good));
                        let left = self.empty_grace - waited;
                        out.recheck_after =
                            Some(out.recheck_after.map_or(left, |r: Duration| r.min(left)));
                    } else {
                        accept(m, f, &mut out.accepted);
                        out.effective.push(Arc::clone(parsed));
                    }
                }
                Some(m) => {
                    accept(m, f, &mut out.accepted);
                    out.effective.push(Arc::clone(parsed));
                }
                None if parsed.has_errors() => {
                    out.diagnostics.push(
                        Diagnostic::error(
                            &Location::new(f.rel.clone(), 0, 0),
                            "this file has errors and no good past content, so none of it is \
                             served",
                        )
                        .field("file"),
                    );
                }
                None => {
                    let mut m = FileMemory {
                        good: Arc::clone(parsed),
                        digest: None,
                        empty_since: None,
                    };
                    accept(&mut m, f, &mut out.accepted);
                    self.files.insert(f.rel.clone(), m);
                    out.effective.push(Arc::clone(parsed));
                }
            }
        }
        let before = self.files.len();
        self.files.retain(|rel, _| present.contains(rel));
        out.removed_files = before - self.files.len();
        out
    }

    /// Builds every fleet's snapshot. A fleet whose table is over the limits keeps its last good
    /// table, or, with none, is withheld (sent nothing): each refusal is an error in
    /// `diagnostics`, naming the size and what made it.
    fn publish(
        &mut self,
        tables: &Tables,
        since: Instant,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Served {
        let mut fleets = BTreeMap::new();
        let mut served = Tables::default();
        let mut withheld = BTreeMap::new();
        for (name, table) in &tables.fleets {
            let table = match self.builder.check(name, table, self.limits) {
                Ok(()) => Arc::clone(table),
                Err(over) => {
                    let last = self.last.as_ref().and_then(|s| s.tables.fleets.get(name));
                    let d =
                        Diagnostic::error(&Location::directory(), format!("fleet {name}: {over}"));
                    match last {
                        Some(last) => {
                            diagnostics.push(
                                Diagnostic {
                                    message: format!(
                                        "{}; its last good route table keeps serving",
                                        d.message
                                    ),
                                    ..d
                                }
                                .held_back(),
                            );
                            Arc::clone(last)
                        }
                        None => {
                            diagnostics.push(Diagnostic {
                                message: format!(
                                    "{}; with no good route table to keep serving, its Envoys are \
                                     sent nothing until it fits",
                                    d.message
                                ),
                                ..d
                            });
                            withheld.insert(name.clone(), over.to_string());
                            continue;
                        }
                    }
                }
            };
            let snap = self.builder.build(name, Arc::clone(&table));
            fleets.insert(name.clone(), Arc::new(snap));
            served.fleets.insert(name.clone(), table);
        }
        // Envoys of a fleet no Mapping names get the default listener and no routes.
        let other = Arc::new(self.builder.build("", Arc::new(Default::default())));
        self.builder.retain();
        Served {
            published: Published {
                fleets,
                other,
                since,
                withheld,
            },
            tables: served,
        }
    }

    fn unreadable(&self, e: &SourceError, started: Instant) -> Outcome {
        let mut d = e.to_diagnostic().held_back();
        d.message.push_str("; the last good config keeps serving");
        Outcome {
            served: None,
            changed: false,
            stats: ReloadStats {
                took: started.elapsed(),
                counts: Counts::of(std::slice::from_ref(&d)),
                ..ReloadStats::default()
            },
            diagnostics: vec![d],
            recheck_after: None,
            accepted: Vec::new(),
            removed_files: 0,
        }
    }
}

/// Takes a file's current content as its last good one.
fn accept(m: &mut FileMemory, f: &crate::input::FileState, accepted: &mut Vec<(String, Content)>) {
    m.good = Arc::clone(&f.parsed);
    m.empty_since = None;
    if let Some(c) = &f.content
        && m.digest != Some(c.digest)
    {
        m.digest = Some(c.digest);
        accepted.push((f.rel.clone(), c.clone()));
    }
}

fn hold_note(rel: &str, good: &ParsedFile, why: &str) -> Diagnostic {
    let names: Vec<String> = good.mappings.iter().map(|m| m.id.to_string()).collect();
    Diagnostic::warning(
        &Location::new(rel, 0, 0),
        format!(
            "{why}: {} Mapping{} ({})",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ),
    )
    .field("file")
    .held_back()
}

#[cfg(test)]
mod tests;
