//! Conservative validation of the regexes Envoy will compile with RE2.
//!
//! Rust has no RE2, so we parse with `regex-syntax` (whose syntax is close to RE2's and, like
//! RE2, has no backreferences or lookaround), reject what RE2 does not accept, and estimate the
//! size of RE2's compiled program: Envoy refuses programs over 100 instructions by default, and a
//! regex Envoy refuses would make it reject the whole route table.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Envoy's default limit on RE2's program size (`re2.max_program_size.error_level`).
pub const MAX_PROGRAM_SIZE: usize = 100;

/// Checks that `pattern` is a regex Envoy will accept, or says why not.
pub fn check(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the regex is empty".into());
    }
    // Class set operations are a regex-crate extension that RE2 does not have.
    for op in ["&&", "--", "~~"] {
        if in_class(pattern, op) {
            return Err(format!(
                "the class operation {op:?} is not supported by Envoy's RE2"
            ));
        }
    }
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .map_err(|e| first_line(&e.to_string()))?;
    let size = estimate(&hir);
    if size > MAX_PROGRAM_SIZE {
        return Err(format!(
            "the regex is too complex for Envoy: its RE2 program would have about {size} \
             instructions, over Envoy's limit of {MAX_PROGRAM_SIZE}"
        ));
    }
    Ok(())
}

/// Whether `op` occurs inside a bracketed class (roughly: after an unescaped `[`).
fn in_class(pattern: &str, op: &str) -> bool {
    let mut depth = 0usize;
    let mut escaped = false;
    let bytes = pattern.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'[' => depth += 1,
            b']' if depth > 0 => depth -= 1,
            // Bytes, not `&pattern[i..]`: `i` may fall inside a multi-byte character.
            _ if depth > 0 && bytes[i..].starts_with(op.as_bytes()) => return true,
            _ => {}
        }
    }
    false
}

fn first_line(s: &str) -> String {
    // regex-syntax renders the pattern with a caret line; the last line holds the reason.
    s.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| s.lines().next().unwrap_or(s).to_string())
}

/// An over-estimate of RE2's instruction count: one per byte of a literal, one per UTF-8 byte
/// range of a class, repetitions copied out, plus the split and capture instructions.
fn estimate(hir: &Hir) -> usize {
    match hir.kind() {
        HirKind::Empty => 0,
        HirKind::Literal(lit) => lit.0.len(),
        HirKind::Class(Class::Bytes(c)) => c.ranges().len(),
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| regex_syntax::utf8::Utf8Sequences::new(r.start(), r.end()).count())
            .sum::<usize>()
            .max(1),
        HirKind::Look(_) => 1,
        HirKind::Repetition(rep) => {
            let inner = estimate(&rep.sub);
            let copies = match rep.max {
                Some(max) => max.max(rep.min) as usize,
                None => rep.min.max(1) as usize,
            };
            inner.saturating_mul(copies).saturating_add(copies)
        }
        HirKind::Capture(cap) => estimate(&cap.sub) + 2,
        HirKind::Concat(parts) => parts.iter().map(estimate).sum(),
        HirKind::Alternation(parts) => parts.iter().map(estimate).sum::<usize>() + parts.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_regexes() {
        for re in [
            "^/api/v[0-9]+/",
            "/qotm/.*",
            "foo|bar",
            r"^.*\.example\.com$",
        ] {
            assert_eq!(check(re), Ok(()), "{re}");
        }
    }

    #[test]
    fn rejects_syntax_errors_and_rust_only_syntax() {
        assert!(check("(").unwrap_err().contains("unclosed"));
        assert!(check("[a-z&&[^x]]").is_err());
        assert!(check("").is_err());
    }

    #[test]
    fn non_ascii_patterns_do_not_panic() {
        assert_eq!(check("[é]"), Ok(()));
        assert_eq!(check("^/café/[ü-ÿ]+"), Ok(()));
        assert!(check("[é&&ü]").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_pattern_is_accepted_or_refused_without_panic(pattern in "\\PC{0,40}") {
            let _ = check(&pattern);
        }

        #[test]
        fn any_bracketed_pattern_too(inner in "[\\[\\]&~\\-\\\\a-zé-ü]{0,20}") {
            let _ = check(&format!("[{inner}]"));
        }
    }

    #[test]
    fn rejects_programs_over_envoys_limit() {
        let long = "a".repeat(150);
        assert!(check(&long).unwrap_err().contains("too complex"));
        assert!(check("(abc){60}").is_err());
    }
}
