//! The shape of `src/`, kept by tests so that later work keeps to it:
//!
//! - dependencies between top-level modules point one way, down the pipeline: every
//!   `crate::<module>` path (in `use` lines and anywhere else in code, braces and `super::`
//!   chains that climb out of a module included) must be an allowed edge;
//! - no source file holds more than 650 lines of code (physical lines before its first
//!   `#[cfg(test)]`, comments included);
//! - no two types (`struct`, `enum`, `type`, `trait`) share a name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules of `src/`, each with the modules it may use. `test_util` holds the
/// fixtures shared by unit tests: any module's tests may use it, and it may use any module.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("input", &["model"]),
    ("routes", &["model", "input"]),
    ("xds", &["model"]),
    ("envoy", &["model", "input", "routes", "xds"]),
    ("reload", &["model", "input", "routes", "envoy", "xds"]),
    ("canary", &["model", "input", "routes"]),
    ("admin", &["model", "routes", "xds", "reload", "canary"]),
    ("diff", &["model", "input", "routes"]),
    (
        "serve",
        &[
            "model", "input", "routes", "envoy", "xds", "reload", "admin",
        ],
    ),
    (
        "cmd",
        &[
            "model", "input", "routes", "envoy", "xds", "reload", "canary", "admin", "serve",
            "diff",
        ],
    ),
];

const TEST_UTIL: &str = "test_util";
/// Harnesses built only for tests and the fuzzer, which drive one stage with inputs made by the
/// real stages above it (`xds/stream/sim` makes its snapshots with the real pipeline): they may
/// use any module, and nothing outside tests uses them.
const HARNESSES: &[&str] = &["xds/stream/sim/"];
const MAX_LINES_OF_CODE: usize = 650;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file: `src/xds/stream/plan.rs` is `["xds", "stream", "plan"]`,
/// `src/xds/mod.rs` is `["xds"]`.
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The text with comments and string literals blanked, so that prose and messages never
/// count as paths (line breaks are kept, for line numbers).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            out.extend(text[i..end].chars().filter(|&c| c == '\n'));
            i = end;
        } else if b[i] == b'r' && (b[i..].starts_with(b"r#\"") || b[i..].starts_with(b"r\"")) {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = text[start..]
                .find(&close)
                .map_or(b.len(), |e| start + e + close.len());
            out.extend(text[i..end].chars().filter(|&c| c == '\n'));
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.extend(text[i..j.min(b.len())].chars().filter(|&c| c == '\n'));
            i = j + 1;
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\''), not a lifetime.
            let j = text[i + 1..].find('\'').map_or(b.len(), |e| i + 1 + e + 1);
            let j = if b[i + 1] == b'\\' {
                text[i + 3..].find('\'').map_or(b.len(), |e| i + 3 + e + 1)
            } else {
                j
            };
            i = j;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The comma-separated items of a brace group whose opening brace was just read, up to its
/// closing brace: `a::b, c::{d, e}, f} ...` gives `a::b`, `c::{d, e}`, `f`.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (1, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(&group[start..i]);
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

/// The top-level modules a file's code names: `crate::x`, each name of `crate::{x, y::z}`, and
/// `super::` chains that climb to the crate root, with the line of each.
fn uses(file: &Path, code: &str) -> Vec<(String, usize)> {
    // `super` is relative to the module the code is in: the file's own module.
    let here = module_path(file);
    let mut out = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut i = 0;
    while let Some(found) = code[i..].find("crate::").map(|f| f + i) {
        i = found + "crate::".len();
        if found > 0 && is_ident(code[..found].chars().next_back().unwrap()) {
            continue; // `my_crate::`
        }
        let rest = &code[i..];
        if let Some(group) = rest.strip_prefix('{') {
            for part in top_level_items(group) {
                let name: String = part.trim().chars().take_while(|&c| is_ident(c)).collect();
                if !name.is_empty() {
                    out.push((name, line_of(found)));
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                out.push((name, line_of(found)));
            }
        }
    }
    // `super::super::...::x` from deep inside a module may reach the crate root.
    let mut i = 0;
    while let Some(found) = code[i..].find("super::").map(|f| f + i) {
        i = found + 1;
        if found > 0 && is_ident(code[..found].chars().next_back().unwrap()) {
            continue;
        }
        if found >= 7 && code[..found].ends_with("super::") {
            continue; // counted from the first `super::` of the chain
        }
        let mut rest = &code[found..];
        let mut up = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            up += 1;
            rest = r;
        }
        if up >= here.len() {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                out.push((name, line_of(found)));
            }
        }
    }
    out
}

#[test]
fn dependencies_point_down_the_pipeline() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let tops: BTreeSet<String> = fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("mod.rs").exists() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| !matches!(m.as_str(), "lib" | "main"))
        .collect();
    for top in &tops {
        assert!(
            allowed.contains_key(top.as_str()) || top == TEST_UTIL,
            "src/{top} is a top-level module without a row in ALLOWED (tests/structure.rs): \
             say what it may use"
        );
    }
    let mut wrong = Vec::new();
    for file in rust_files(&src()) {
        let module = module_path(&file);
        let Some(top) = module.first() else { continue };
        if matches!(top.as_str(), "lib" | "main") || top == TEST_UTIL {
            continue;
        }
        let relative = file
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if HARNESSES.iter().any(|h| relative.starts_with(h)) {
            continue;
        }
        let code = code_only(&fs::read_to_string(&file).unwrap());
        for (used, line) in uses(&file, &code) {
            if &used == top || used == TEST_UTIL || !tops.contains(&used) {
                continue;
            }
            if !allowed[top.as_str()].contains(used.as_str()) {
                wrong.push(format!(
                    "{}:{line}: {top} uses {used}",
                    file.strip_prefix(src().parent().unwrap())
                        .unwrap()
                        .display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that run up the pipeline (allowed edges are in tests/structure.rs):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_sees_every_form_of_path() {
    let file = src().join("xds/stream/plan.rs");
    let code = code_only(
        "use crate::routes::Route;\nuse crate::{model::x, input as i};\nfn f() { \
         crate::serve::go(); super::super::super::admin::x(); super::Desired::A; }\n\
         // crate::cmd in a comment\nconst S: &str = \"crate::canary\";\n",
    );
    let got: Vec<String> = uses(&file, &code).into_iter().map(|(m, _)| m).collect();
    assert_eq!(got, ["routes", "model", "input", "serve", "admin"]);
}

#[test]
fn no_source_file_is_over_650_lines_of_code() {
    let mut big = Vec::new();
    for file in rust_files(&src()) {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        let lines = text
            .lines()
            .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
            .count();
        if lines > MAX_LINES_OF_CODE {
            big.push(format!("{}: {lines} lines of code", file.display()));
        }
    }
    assert!(
        big.is_empty(),
        "files over {MAX_LINES_OF_CODE} lines of code (split them by idea; long unit tests go \
         to a sibling tests.rs):\n{}",
        big.join("\n")
    );
}

#[test]
fn no_two_types_share_a_name() {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in rust_files(&src()) {
        let code = code_only(&fs::read_to_string(&file).unwrap());
        for line in code.lines() {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            if !first.starts_with("pub") {
                continue;
            }
            let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            if !matches!(kind, "struct" | "enum" | "type" | "trait") {
                continue;
            }
            let name: String = name.chars().take_while(|&c| is_ident(c)).collect();
            seen.entry(name)
                .or_default()
                .push(file.strip_prefix(src()).unwrap().display().to_string());
        }
    }
    let dups: Vec<String> = seen
        .iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|(name, files)| format!("{name}: {}", files.join(", ")))
        .collect();
    assert!(
        dups.is_empty(),
        "public types that share a name:\n{}",
        dups.join("\n")
    );
}
