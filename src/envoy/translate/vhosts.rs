//! Virtual hosts: which of a table's routes each virtual host repeats, and what that costs.
//!
//! Envoy picks exactly one virtual host per request (exact domains first, then the longest
//! suffix wildcard, then the longest prefix wildcard, then `*`) and never falls through to
//! another. So every virtual host repeats, in the table's global order, the routes that can
//! apply to all of its hosts: routes without a host, `host_regex` routes (which match
//! `:authority` themselves), its own host's routes, and the routes of every wildcard host that
//! covers all the hosts it stands for (`*.foo.com` routes are in the `a.foo.com` virtual host).
//!
//! The table therefore grows as hosts times hostless routes. `Coverage` finds the wildcards
//! that cover a host by walking two tries of the wildcard patterns (one of reversed suffixes,
//! one of prefixes), so the plan costs what it holds, and its size is counted without building
//! it: in time linear in the hosts' and patterns' lengths plus the routes.

use std::collections::{BTreeMap, BTreeSet};

use super::ANY_HOST;
use crate::routes::{Route, RouteTable};

/// The virtual hosts of the route configuration: each domain (one per distinct host, then
/// `*`) with the indexes of the table's routes it holds, in the table's order.
pub fn virtual_host_plan(table: &RouteTable) -> Vec<(String, Vec<usize>)> {
    let coverage = Coverage::of(table);
    let mut out: Vec<(String, Vec<usize>)> = coverage
        .hosts
        .iter()
        .map(|&host| {
            let mut routes: Vec<usize> = coverage.everywhere.clone();
            for pattern in std::iter::once(host).chain(coverage.covering(host)) {
                routes.extend_from_slice(&coverage.by_host[pattern]);
            }
            routes.sort_unstable();
            (host.to_string(), routes)
        })
        .collect();
    out.push((ANY_HOST.to_string(), coverage.everywhere.clone()));
    out
}

/// The sum, over every virtual host of the plan, of `weight` of each route it holds: with
/// `links` it is the number of route entries Envoy receives. Computed without the plan.
pub fn repeated_total(table: &RouteTable, weight: impl Fn(usize) -> u64) -> u64 {
    repetitions(table)
        .iter()
        .enumerate()
        .fold(0u64, |sum, (i, &n)| {
            sum.saturating_add(n.saturating_mul(weight(i)))
        })
}

/// How many virtual hosts repeat each route of the table: every virtual host for a route
/// without a host (or with `host_regex`), else its own host's plus every host its wildcard
/// covers. `repeated_total` is the sum of these times a weight.
pub fn repetitions(table: &RouteTable) -> Vec<u64> {
    let coverage = Coverage::of(table);
    let everywhere = coverage.hosts.len() as u64 + 1;
    let mut covered: BTreeMap<&str, u64> = BTreeMap::new();
    for &host in &coverage.hosts {
        for pattern in coverage.covering(host) {
            *covered.entry(pattern).or_default() += 1;
        }
    }
    table
        .routes
        .iter()
        .map(|r| match r.key.host.as_deref() {
            Some(host) if !r.key.host_regex => 1 + covered.get(host).copied().unwrap_or(0),
            _ => everywhere,
        })
        .collect()
}

/// How many virtual hosts the table's route configuration has: one per distinct host, and `*`.
pub fn virtual_hosts(table: &RouteTable) -> u64 {
    let hosts: BTreeSet<&str> = table
        .routes
        .iter()
        .filter(|r| !r.key.host_regex)
        .filter_map(|r| r.key.host.as_deref())
        .collect();
    hosts.len() as u64 + 1
}

/// How many route entries a table route becomes in a virtual host: one, or a chain of one link
/// per backend when its backends differ in route-level settings (see `envoy_routes`).
pub fn links(route: &Route) -> u64 {
    let chained = route.backends.len() > 1 && !super::is_weighted(route);
    if chained {
        route.backends.len() as u64
    } else {
        u64::from(!route.backends.is_empty())
    }
}

/// Whether every host that Envoy domain `host` matches is also matched by `pattern`: equal
/// domains, or `pattern` a wildcard (`*.foo.com`, `foo.*`) that includes `host`. Envoy's
/// wildcards never match the empty string (`*.foo.com` does not match `.foo.com`).
pub fn covers(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let host_suffix = host.strip_prefix('*');
    let host_prefix = host.strip_suffix('*');
    if let Some(suffix) = pattern.strip_prefix('*') {
        match (host_suffix, host_prefix) {
            // `*.a.foo.com` under `*.foo.com`: whatever the star stands for, the host ends so.
            (Some(h), _) => h.ends_with(suffix),
            // `a.*` can end any way at all.
            (None, Some(_)) => false,
            (None, None) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        match (host_suffix, host_prefix) {
            (Some(_), _) => false,
            (None, Some(h)) => h.starts_with(prefix),
            (None, None) => host.len() > prefix.len() && host.starts_with(prefix),
        }
    } else {
        false
    }
}

/// The table's routes by host, and the wildcard hosts indexed for `covering`.
struct Coverage<'t> {
    /// Every distinct host (not `host_regex`), sorted: one virtual host each.
    hosts: BTreeSet<&'t str>,
    /// The routes of each host, in table order.
    by_host: BTreeMap<&'t str, Vec<usize>>,
    /// The routes every virtual host holds: no host, or a `host_regex`.
    everywhere: Vec<usize>,
    /// `*X` patterns by X reversed, and `X*` patterns (not starting with `*`) by X.
    suffixes: Trie<'t>,
    prefixes: Trie<'t>,
}

impl<'t> Coverage<'t> {
    fn of(table: &'t RouteTable) -> Self {
        let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut everywhere = Vec::new();
        for (i, r) in table.routes.iter().enumerate() {
            match r.key.host.as_deref() {
                Some(host) if !r.key.host_regex => by_host.entry(host).or_default().push(i),
                _ => everywhere.push(i),
            }
        }
        let mut suffixes = Trie::default();
        let mut prefixes = Trie::default();
        for &pattern in by_host.keys() {
            if let Some(x) = pattern.strip_prefix('*') {
                suffixes.insert(x.bytes().rev(), pattern);
            } else if let Some(x) = pattern.strip_suffix('*') {
                prefixes.insert(x.bytes(), pattern);
            }
        }
        Coverage {
            hosts: by_host.keys().copied().collect(),
            by_host,
            everywhere,
            suffixes,
            prefixes,
        }
    }

    /// The wildcard hosts other than `host` that cover it (`covers(pattern, host)`).
    fn covering(&self, host: &'t str) -> impl Iterator<Item = &'t str> + '_ {
        // What `covers` compares a pattern's fixed part with, and how long a match may be: a
        // wildcard host's own fixed part may match whole, a plain host's must leave the star
        // at least one character.
        let (suffix_text, suffix_max) = match (host.strip_prefix('*'), host.strip_suffix('*')) {
            (Some(h), _) => (Some(h), h.len()),
            (None, Some(_)) => (None, 0),
            (None, None) => (Some(host), host.len().saturating_sub(1)),
        };
        let (prefix_text, prefix_max) = match (host.strip_prefix('*'), host.strip_suffix('*')) {
            (Some(_), _) => (None, 0),
            (None, Some(h)) => (Some(h), h.len()),
            (None, None) => (Some(host), host.len().saturating_sub(1)),
        };
        let by_suffix = suffix_text
            .map(|t| self.suffixes.matches(t.bytes().rev(), suffix_max))
            .unwrap_or_default();
        let by_prefix = prefix_text
            .map(|t| self.prefixes.matches(t.bytes(), prefix_max))
            .unwrap_or_default();
        by_suffix
            .into_iter()
            .chain(by_prefix)
            .filter(move |&p| p != host)
    }
}

/// A byte trie of wildcard patterns' fixed parts.
#[derive(Default)]
struct Trie<'t> {
    nodes: Vec<TrieNode<'t>>,
}

#[derive(Default)]
struct TrieNode<'t> {
    children: BTreeMap<u8, usize>,
    pattern: Option<&'t str>,
}

impl<'t> Trie<'t> {
    fn insert(&mut self, key: impl Iterator<Item = u8>, pattern: &'t str) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut at = 0;
        for b in key {
            at = match self.nodes[at].children.get(&b) {
                Some(&next) => next,
                None => {
                    self.nodes.push(TrieNode::default());
                    let next = self.nodes.len() - 1;
                    self.nodes[at].children.insert(b, next);
                    next
                }
            };
        }
        self.nodes[at].pattern = Some(pattern);
    }

    /// The patterns whose key is a prefix of `text`, at most `max` bytes long.
    fn matches(&self, text: impl Iterator<Item = u8>, max: usize) -> Vec<&'t str> {
        let mut out = Vec::new();
        let Some(root) = self.nodes.first() else {
            return out;
        };
        out.extend(root.pattern);
        let mut at = 0;
        for b in text.take(max) {
            match self.nodes[at].children.get(&b) {
                Some(&next) => at = next,
                None => break,
            }
            out.extend(self.nodes[at].pattern);
        }
        out
    }
}

/// Where a table's size comes from, to say so when it is too big: its hosts and the routes
/// every host repeats, each with the file that brings the most of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Growth {
    /// Distinct hosts (one virtual host each, besides `*`).
    pub hosts: u64,
    /// The file that adds the most hosts (the file of each host's first Mapping), and how many.
    pub hosts_file: Option<(String, u64)>,
    /// Route entries without a host (or with `host_regex`): every virtual host repeats them.
    pub hostless: u64,
    /// The file with the most of those entries, and how many.
    pub hostless_file: Option<(String, u64)>,
}

/// What makes `table` as big as it is.
pub fn growth(table: &RouteTable) -> Growth {
    let mut host_files: BTreeMap<&str, &str> = BTreeMap::new();
    let mut hostless: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &table.routes {
        let Some(first) = r.backends.first() else {
            continue;
        };
        let file = first.mapping.origin.file.as_str();
        match r.key.host.as_deref() {
            Some(host) if !r.key.host_regex => {
                host_files.entry(host).or_insert(file);
            }
            _ => *hostless.entry(file).or_default() += links(r),
        }
    }
    let mut hosts_by_file: BTreeMap<&str, u64> = BTreeMap::new();
    for file in host_files.values() {
        *hosts_by_file.entry(file).or_default() += 1;
    }
    let top = |counts: &BTreeMap<&str, u64>| {
        counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(f, n)| (f.to_string(), *n))
    };
    Growth {
        hosts: host_files.len() as u64,
        hosts_file: top(&hosts_by_file),
        hostless: hostless.values().sum(),
        hostless_file: top(&hostless),
    }
}

impl std::fmt::Display for Growth {
    /// "hosts.yaml adds 3,000 hosts, and each repeats the 3,000 hostless routes of
    /// hostless.yaml", naming the biggest contributor when there are several.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = thousands;
        match &self.hosts_file {
            Some((file, k)) if *k == self.hosts => write!(f, "{file} adds {} hosts", n(*k))?,
            Some((file, k)) => write!(f, "{} hosts ({file} adds {})", n(self.hosts), n(*k))?,
            None => write!(f, "no host")?,
        }
        match &self.hostless_file {
            Some((file, k)) if *k == self.hostless => write!(
                f,
                ", and each repeats the {} hostless routes of {file}",
                n(*k)
            ),
            Some((file, k)) => write!(
                f,
                ", and each repeats the {} hostless routes ({file} has {})",
                n(self.hostless),
                n(*k)
            ),
            None => Ok(()),
        }
    }
}

/// `n` with a comma between each group of three digits: `9,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
