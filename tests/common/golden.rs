//! Golden files: output compared with a committed file, or the file rewritten under
//! `UPDATE_GOLDEN`; the one comparer of every golden test.

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/golden/<rel>`.
pub fn golden_path(rel: &str) -> PathBuf {
    repo_root().join("tests/golden").join(rel)
}

/// Compares `actual` with the file at `path`, or, with `UPDATE_GOLDEN` set, writes `actual`
/// there (then review the diff like code). A mismatch fails with the first line that differs
/// and a diff of the two.
pub fn assert_golden(path: impl AsRef<Path>, actual: &str) {
    let path = path.as_ref();
    let rerun = format!(
        "UPDATE_GOLDEN=1 cargo test --test {}",
        env!("CARGO_CRATE_NAME")
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}; run {rerun} to create it", path.display()));
    if expected == actual {
        return;
    }
    let line = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    panic!(
        "{} is out of date at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
         --- expected\n+++ actual\n{}\
         after a deliberate change: run {rerun} and review the diff",
        path.display(),
        line + 1,
        expected.lines().nth(line).unwrap_or("<end>"),
        actual.lines().nth(line).unwrap_or("<end>"),
        diff(&expected, actual),
    );
}

/// A line diff (`-` the expected line, `+` the actual one), two lines of context around each
/// change.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // common[i][j]: the length of the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last = None;
    for (k, (tag, line)) in ops.iter().enumerate() {
        if !changed.iter().any(|&c| c.abs_diff(k) <= 2) {
            continue;
        }
        if last.is_some_and(|l| k > l + 1) {
            out.push_str("  ...\n");
        }
        out.push_str(&format!("{tag} {line}\n"));
        last = Some(k);
    }
    out
}
