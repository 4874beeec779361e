//! The documentation is checked like code, so that moving a section or renaming a function
//! cannot leave it pointing nowhere.
//!
//! - **Links**: every relative link in `README.md` and `docs/*.md` (inline `[text](target)`,
//!   images, and reference definitions `[name]: target`) must name a file or directory that
//!   exists, relative to the linking file; a `#anchor` must be a heading of the target Markdown
//!   file by GitHub's rules (see [`slug`]), or an `id`/`name` of an HTML tag in it. Links inside
//!   fenced code blocks and inline code are not links; `http(s):`, `mailto:` and other absolute
//!   URLs are not checked.
//! - **Architecture names**: every name `docs/architecture.md` writes in backticks must still be
//!   in `src/` (see [`architecture_names_exist_in_src`] for the rule).
//! - **Architecture length**: `docs/architecture.md` stays under 1,500 words outside code fences.
//!
//! Only std: the Markdown read here is the small subset these files use, scanned by hand.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md` and every `docs/*.md`, sorted.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ can be listed").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The path relative to the repository, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// A small Markdown reader.

/// A line of a Markdown file outside fenced code blocks, with its 1-based number.
struct Line<'a> {
    number: usize,
    text: &'a str,
}

/// The lines outside fenced code blocks (``` or ~~~, closed by a fence of the same character at
/// least as long, as CommonMark says; an unclosed fence runs to the end of the file).
fn prose_lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let opener = trimmed
            .chars()
            .next()
            .filter(|c| (*c == '`' || *c == '~') && indent < 4);
        let run = opener.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match fence {
            Some((c, len)) => {
                if opener == Some(c) && run >= len && trimmed[run..].trim().is_empty() {
                    fence = None;
                }
            }
            None if run >= 3 => fence = Some((opener.unwrap(), run)),
            None => out.push(Line {
                number: i + 1,
                text: line,
            }),
        }
    }
    out
}

/// A piece of a line: inline code (backtick spans) or the rest.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Code(&'a str),
    Text(&'a str),
}

/// Splits a line into inline code spans and text. A backtick run opens a span closed by the
/// next run of the same length; a run never closed is text.
fn pieces(line: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
        let body = i + run;
        let mut j = body;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let r = bytes[j..].iter().take_while(|b| **b == b'`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                if start < i {
                    out.push(Piece::Text(&line[start..i]));
                }
                let code = &line[body..end];
                // CommonMark strips one space on each side when both are there.
                let code = if code.len() >= 2 && code.starts_with(' ') && code.ends_with(' ') {
                    &code[1..code.len() - 1]
                } else {
                    code
                };
                out.push(Piece::Code(code));
                i = end + run;
                start = i;
            }
            None => i = body,
        }
    }
    if start < line.len() {
        out.push(Piece::Text(&line[start..]));
    }
    out
}

/// The targets of the links on one line (inline code removed): `[text](target)`, images, and a
/// reference definition `[name]: target`. A target is cut at its first space (a title follows)
/// and may be written `<target>`.
fn link_targets(line: &str) -> Vec<String> {
    let text: String = pieces(line)
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => t.to_string(),
            Piece::Code(c) => " ".repeat(c.len() + 2),
        })
        .collect();
    let mut out = Vec::new();
    let trimmed = text.trim_start();
    if text.len() - trimmed.len() < 4
        && trimmed.starts_with('[')
        && !trimmed.starts_with("[^")
        && let Some(close) = trimmed.find("]:")
        && !trimmed[..close].contains("](")
    {
        if let Some(target) = trimmed[close + 2..].split_whitespace().next() {
            out.push(unangle(target).to_string());
        }
        return out;
    }
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        // The target runs to the `)` that balances the `(`.
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = k;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let inside = after[..end].trim();
        let target = if let Some(stripped) = inside.strip_prefix('<') {
            stripped.split('>').next().unwrap_or("")
        } else {
            inside.split_whitespace().next().unwrap_or("")
        };
        out.push(target.to_string());
        rest = &after[end.min(after.len())..];
    }
    out
}

fn unangle(s: &str) -> &str {
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
}

/// Whether a target is an absolute URL (`https:`, `mailto:`...): not checked here.
fn is_absolute_url(target: &str) -> bool {
    let scheme: String = target
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "+.-".contains(*c))
        .collect();
    !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && target[scheme.len()..].starts_with(':')
        || target.starts_with("//")
}

/// `%20` and friends decoded, as a browser does before asking for the file.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap() as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The anchor GitHub gives a heading. Its rendered text (inline code keeps its text without the
/// backticks, a link keeps its text, HTML tags go) is lower-cased; every character but letters,
/// digits (Unicode ones included), `-`, `_` and spaces is removed; each space becomes `-`.
/// Hyphens are not merged: "check --format json" gives `check---format-json`.
fn slug(heading: &str) -> String {
    let mut rendered = String::new();
    for piece in pieces(heading) {
        match piece {
            Piece::Code(c) => rendered.push_str(c),
            Piece::Text(t) => rendered.push_str(&strip_inline_markup(t)),
        }
    }
    rendered
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Text outside inline code as rendered: `[text](url)` becomes `text`, `<tags>` go.
fn strip_inline_markup(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
            && rest[1..end]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        {
            rest = &rest[end + 1..];
            continue;
        }
        if c == ']'
            && rest.starts_with("](")
            && let Some(end) = rest.find(')')
        {
            rest = &rest[end + 1..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The text of an ATX heading (`## Text ##`), if the line is one.
fn atx_heading(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() >= 4 {
        return None;
    }
    let hashes = trimmed.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &trimmed[hashes..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    // A closing run of `#` preceded by a space is not part of the text.
    let rest = rest.trim();
    let without = rest.trim_end_matches('#');
    let text = if without.is_empty() || without.ends_with([' ', '\t']) {
        without.trim_end()
    } else {
        rest
    };
    Some(text)
}

/// Every anchor a Markdown file offers: its headings' slugs (ATX, and setext under a plain
/// paragraph line), numbered `-1`, `-2`... when repeated, as GitHub does, and the `id` and
/// `name` attributes of HTML tags.
fn anchors(text: &str) -> HashSet<String> {
    let lines = prose_lines(text);
    let mut headings = Vec::new();
    for (k, line) in lines.iter().enumerate() {
        if let Some(h) = atx_heading(line.text) {
            headings.push(h.to_string());
            continue;
        }
        let t = line.text.trim();
        let underline =
            !t.is_empty() && (t.chars().all(|c| c == '=') || t.chars().all(|c| c == '-'));
        if underline
            && k > 0
            && lines[k - 1].number + 1 == line.number
            && is_paragraph_line(lines[k - 1].text)
            && !(k > 1
                && lines[k - 2].number + 1 == lines[k - 1].number
                && is_paragraph_line(lines[k - 2].text))
        {
            headings.push(lines[k - 1].text.trim().to_string());
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = HashSet::new();
    for h in headings {
        let base = slug(&h);
        let mut anchor = base.clone();
        if seen.contains_key(&base) {
            loop {
                let n = seen.get_mut(&base).unwrap();
                *n += 1;
                anchor = format!("{base}-{n}");
                if !seen.contains_key(&anchor) {
                    break;
                }
            }
        }
        seen.insert(anchor.clone(), 0);
        out.insert(anchor);
    }
    for line in &lines {
        for attr in ["id=\"", "name=\""] {
            let mut rest = line.text;
            while let Some(at) = rest.find(attr) {
                let after = &rest[at + attr.len()..];
                if let Some(end) = after.find('"') {
                    out.insert(after[..end].to_string());
                }
                rest = after;
            }
        }
    }
    out
}

/// A line that can be a setext heading's text (not a list item, quote, table row or heading).
fn is_paragraph_line(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty()
        && line.len() - line.trim_start().len() < 4
        && !t.starts_with(['#', '>', '|', '-', '*', '+'])
        && !t.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// Normalises `a/./b/../c` to `a/c` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Why a link is broken, or `None` when it resolves.
fn check_link(
    from: &Path,
    target: &str,
    cache: &mut HashMap<PathBuf, HashSet<String>>,
) -> Option<String> {
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let path = percent_decode(path);
    let file = if path.is_empty() {
        from.to_path_buf()
    } else if let Some(abs) = path.strip_prefix('/') {
        root().join(abs)
    } else {
        normalize(&from.parent().unwrap().join(&path))
    };
    if !file.exists() {
        return Some(format!("{} does not exist", shown(&file)));
    }
    let anchor = anchor.map(percent_decode)?;
    if anchor.is_empty() {
        return None;
    }
    if file.is_dir() || file.extension().is_none_or(|e| e != "md") {
        // GitHub's line anchors into source files (`#L10`, `#L10-L20`).
        let lines = anchor.split('-').all(|p| {
            p.strip_prefix('L')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if lines && !file.is_dir() {
            return None;
        }
        return Some(format!(
            "the anchor #{anchor} points into {}, which is not a Markdown file",
            shown(&file)
        ));
    }
    let anchors = cache
        .entry(file.clone())
        .or_insert_with(|| anchors(&read(&file)));
    if anchors.contains(&anchor) {
        return None;
    }
    let mut near: Vec<&String> = anchors
        .iter()
        .filter(|a| {
            anchor
                .split('-')
                .filter(|w| w.len() > 3)
                .any(|w| a.contains(w))
        })
        .collect();
    near.sort();
    near.truncate(5);
    Some(format!(
        "{} has no heading with the anchor #{anchor}{}",
        shown(&file),
        if near.is_empty() {
            String::new()
        } else {
            format!(
                " (similar: {})",
                near.iter()
                    .map(|a| format!("#{a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ))
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut cache = HashMap::new();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = read(&file);
        for line in prose_lines(&text) {
            for target in link_targets(line.text) {
                if target.is_empty() || is_absolute_url(&target) {
                    continue;
                }
                checked += 1;
                if let Some(why) = check_link(&file, &target, &mut cache) {
                    broken.push(format!(
                        "{}:{}: broken link `{target}`: {why}",
                        shown(&file),
                        line.number
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {checked} relative links do not resolve:\n{}",
        broken.len(),
        broken.join("\n")
    );
    assert!(checked > 0, "no relative link found: the scanner is broken");
}

// ---------------------------------------------------------------------------------------------
// docs/architecture.md against src/.

/// Names declared in `src/`: after `fn`, `struct`, `enum`, `trait`, `type`, `const`, `static`,
/// `union`, `mod` or `macro_rules!`; and, read leniently, fields and enum variants (a line that
/// starts with a name followed by `:`, `,`, `(`, ` {`, ` =` or nothing).
#[derive(Default)]
struct SrcNames {
    declared: HashSet<String>,
    members: HashSet<String>,
    files: HashSet<String>,
}

fn src_names() -> SrcNames {
    let mut names = SrcNames::default();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                names.files.insert(name);
                dirs.push(path);
                continue;
            }
            if let Some(stem) = name.strip_suffix(".rs") {
                names.files.insert(stem.to_string());
                scan_rust(&read(&path), &mut names);
            }
        }
    }
    names
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn scan_rust(text: &str, names: &mut SrcNames) {
    const KEYWORDS: &[&str] = &[
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "union",
        "mod",
        "macro_rules",
    ];
    for line in text.lines() {
        let words: Vec<&str> = line
            .split(|c: char| !is_ident_char(c))
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            if KEYWORDS.contains(&pair[0]) {
                names.declared.insert(pair[1].to_string());
            }
        }
        let mut t = line.trim_start();
        for vis in ["pub(crate) ", "pub(super) ", "pub "] {
            if let Some(rest) = t.strip_prefix(vis) {
                t = rest;
                break;
            }
        }
        let ident: String = t.chars().take_while(|c| is_ident_char(*c)).collect();
        if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let after = &t[ident.len()..];
        let member = (after.starts_with(':') && !after.starts_with("::"))
            || after.starts_with([',', '('])
            || after.starts_with(" {")
            || after.starts_with(" =")
            || after.trim().is_empty();
        if member {
            names.members.insert(ident);
        }
    }
}

/// The crates `Cargo.toml` depends on (with `-` read as `_`), plus `std`, `core` and `alloc`:
/// names under them are not ours to check.
fn external_crates() -> HashSet<String> {
    let mut out: HashSet<String> = ["std", "core", "alloc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut in_deps = false;
    for line in read(&root().join("Cargo.toml")).lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t.ends_with("dependencies]");
            continue;
        }
        if in_deps && let Some((key, _)) = t.split_once('=') {
            out.insert(key.trim().replace('-', "_"));
        }
    }
    out
}

/// Whether a backticked token is a Rust path or identifier: `WatchLoop`, `Reloader::reload`,
/// `compile()`, `xds::stream::plan`.
fn rust_path(token: &str) -> Option<Vec<&str>> {
    let token = token.strip_suffix("()").unwrap_or(token);
    let segments: Vec<&str> = token.split("::").collect();
    let ok = segments.iter().all(|s| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(is_ident_char)
    });
    ok.then_some(segments)
}

/// The top-level directories whose paths `docs/architecture.md` may name (`src/xds/hub.rs`).
const REPO_DIRS: &[&str] = &[
    "src/",
    "tests/",
    "benches/",
    "examples/",
    "docs/",
    "envoy/",
    "fuzz/",
    "scripts/",
];

/// Why a backticked token of `docs/architecture.md` names nothing in the repository, or `None`.
///
/// - A path starting with one of [`REPO_DIRS`] (`src/xds/hub.rs`, `src/xds/`; a `:line` suffix
///   is allowed) must exist.
/// - A Rust path or identifier (`^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*(\(\))?$`),
///   after dropping a leading `crate::` or `canary_xds::`, is skipped when it is a Rust keyword or
///   literal (`true`, `self`...) or when its first segment is an external crate (`tokio::spawn`,
///   `std::sync::Arc`: see [`external_crates`]). Otherwise its last segment must be declared in
///   `src/` ([`SrcNames`]), be a field or variant there, or be the name of a file (`hub` for
///   `hub.rs`) or directory under `src/`. So module words (`xds`, `serve`) pass by their files,
///   and a renamed function or type fails.
/// - Anything else (`/api/routes`, `--flag`, `Arc<Hub>`, YAML) is prose and not checked.
fn unknown_name(token: &str, src: &SrcNames, external: &HashSet<String>) -> Option<String> {
    if REPO_DIRS.iter().any(|d| token.starts_with(d)) {
        let path = token
            .split_once(':')
            .filter(|(_, n)| n.split(':').all(|n| n.bytes().all(|b| b.is_ascii_digit())))
            .map_or(token, |(p, _)| p);
        return (!root().join(path).exists()).then(|| format!("{path} does not exist"));
    }
    let mut segments = rust_path(token)?;
    if segments.len() > 1 && (segments[0] == "crate" || segments[0] == "canary_xds") {
        segments.remove(0);
    }
    const LITERALS: &[&str] = &[
        "true", "false", "self", "Self", "crate", "super", "None", "Some", "Ok", "Err",
    ];
    if (segments.len() == 1 && LITERALS.contains(&segments[0])) || external.contains(segments[0]) {
        return None;
    }
    let name = *segments.last().unwrap();
    let found =
        src.declared.contains(name) || src.members.contains(name) || src.files.contains(name);
    (!found).then(|| format!("no fn, type, const, module, field or file named `{name}` in src/"))
}

#[test]
fn architecture_names_exist_in_src() {
    let path = root().join("docs/architecture.md");
    let text = read(&path);
    let src = src_names();
    let external = external_crates();
    let mut missing = Vec::new();
    for line in prose_lines(&text) {
        for piece in pieces(line.text) {
            if let Piece::Code(token) = piece
                && let Some(why) = unknown_name(token.trim(), &src, &external)
            {
                missing.push(format!(
                    "{}:{}: `{token}`: {why}",
                    shown(&path),
                    line.number
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/architecture.md names code that is not in the repository:\n{}",
        missing.join("\n")
    );
}

/// Words outside code fences: the page is meant to be read in one sitting.
const ARCHITECTURE_MAX_WORDS: usize = 1500;

#[test]
fn architecture_is_under_1500_words() {
    let text = read(&root().join("docs/architecture.md"));
    let words: usize = prose_lines(&text)
        .iter()
        .map(|l| l.text.split_whitespace().count())
        .sum();
    assert!(
        words < ARCHITECTURE_MAX_WORDS,
        "docs/architecture.md has {words} words outside code fences; keep it under {ARCHITECTURE_MAX_WORDS}"
    );
}

// ---------------------------------------------------------------------------------------------
// The reader itself.

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(slug("The Mapping format"), "the-mapping-format");
    assert_eq!(slug("Fleets (`ambassador_id`)"), "fleets-ambassador_id");
    assert_eq!(
        slug("The JSON format (`check --format json`)"),
        "the-json-format-check---format-json"
    );
    assert_eq!(slug("`/api/routes`"), "apiroutes");
    assert_eq!(slug("Changes, safely"), "changes-safely");
    assert_eq!(
        slug("1. Pipeline: parse, weights"),
        "1-pipeline-parse-weights"
    );
    assert_eq!(
        slug("Fuzzing (issue 6, point 1)"),
        "fuzzing-issue-6-point-1"
    );
    assert_eq!(slug("Über [links](x.md) <b>bold</b>"), "über-links-bold");
    assert_eq!(
        slug("The Ambassador docs' example"),
        "the-ambassador-docs-example"
    );
}

#[test]
fn repeated_headings_are_numbered_and_code_is_not_a_heading() {
    let text = "# A\n## Limits\n```\n# Not a heading\n```\n## Limits\nTitle\n-----\n## Limits\n";
    let got = anchors(text);
    for a in ["a", "limits", "limits-1", "limits-2", "title"] {
        assert!(got.contains(a), "{a} missing from {got:?}");
    }
    assert!(!got.contains("not-a-heading"), "{got:?}");
}

#[test]
fn links_are_found_outside_code_only() {
    assert_eq!(
        link_targets("see [a](a.md#x) and `[b](b.md)` and ![img](p.png \"t\") [c](<d e.md>)"),
        vec!["a.md#x", "p.png", "d e.md"]
    );
    assert_eq!(
        link_targets("[ref]: ../x.md#y \"title\""),
        vec!["../x.md#y"]
    );
    assert_eq!(link_targets("[f(x)](f_(x).md)"), vec!["f_(x).md"]);
    let text = "a [x](x.md)\n```sh\n[y](y.md)\n```\nb\n";
    let lines: Vec<usize> = prose_lines(text).iter().map(|l| l.number).collect();
    assert_eq!(lines, vec![1, 5]);
    assert!(is_absolute_url("https://example.com/a.md"));
    assert!(is_absolute_url("mailto:a@b"));
    assert!(!is_absolute_url("docs/a.md#x"));
}

#[test]
fn architecture_tokens_are_read_as_the_doc_comment_says() {
    let mut src = SrcNames::default();
    scan_rust(
        "pub struct WatchLoop {\n    pub dir: PathBuf,\n}\nimpl Reloader {\n    pub async fn reload(&self) {}\n}\nenum Kind {\n    Cluster,\n}\n",
        &mut src,
    );
    src.files.insert("xds".into());
    let external: HashSet<String> = ["tokio".to_string()].into();
    let check = |t: &str| unknown_name(t, &src, &external);
    assert_eq!(check("WatchLoop"), None);
    assert_eq!(check("Reloader::reload"), None);
    assert_eq!(check("crate::Reloader::reload()"), None);
    assert_eq!(check("Kind::Cluster"), None);
    assert_eq!(check("WatchLoop::dir"), None);
    assert_eq!(check("xds"), None);
    assert_eq!(check("tokio::spawn"), None);
    assert_eq!(check("--dir"), None);
    assert!(check("Reloader::rebuild").is_some());
    assert!(check("xds::stream::plan").is_some());
    assert!(check("src/no/such/file.rs").is_some());
    assert_eq!(check("src/lib.rs"), None);
    assert_eq!(check("src/lib.rs:10"), None);
}
