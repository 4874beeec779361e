//! The diff as markdown, ready to post as a pull-request comment: a summary, the risk notes as a
//! list, then a collapsible section per fleet (and one for diagnostics) holding the table's
//! lines in a code block, so that columns stay aligned and nothing needs escaping.

use std::fmt::Write as _;

use super::render::{fleet_heading, risk_name, summary, table, write_fleet};
use super::report::DiffReport;

/// The markdown comment for a diff.
pub fn markdown(r: &DiffReport) -> String {
    let mut out = String::from("### canary-xds diff\n\n");
    let _ = writeln!(
        out,
        "{} → {}: {}\n",
        code(&r.base),
        code(&r.new),
        escape(&summary(r))
    );
    if !r.risks.is_empty() {
        out.push_str("**Risk notes**\n\n");
        for n in &r.risks {
            let fleet = n
                .fleet
                .as_deref()
                .map(|f| format!(" (fleet {})", code(f)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- {}{fleet}: {}",
                code(&risk_name(n)),
                escape(&n.message)
            );
        }
        out.push('\n');
    }
    for f in r.fleets.iter().filter(|f| !f.is_empty()) {
        let mut body = String::new();
        write_fleet(&mut body, f);
        details(&mut out, &fleet_heading(f), &body);
    }
    if !(r.new_diagnostics.is_empty() && r.fixed_diagnostics.is_empty()) {
        // The table's diagnostics part: everything after the risk notes.
        let full = table(r);
        let at = full.find("\ndiagnostics ").map_or(full.len(), |i| i + 1);
        details(
            &mut out,
            &format!(
                "diagnostics: {} new, {} fixed",
                r.new_diagnostics.len(),
                r.fixed_diagnostics.len()
            ),
            &full[at..],
        );
    }
    out
}

/// A collapsible section holding `body` as a code block.
fn details(out: &mut String, summary: &str, body: &str) {
    let fence = fence(body);
    let _ = writeln!(
        out,
        "<details><summary>{}</summary>\n\n{fence}text\n{}\n{fence}\n\n</details>\n",
        html(summary),
        body.trim_end_matches('\n')
    );
}

/// The longest run of backticks in `s`.
fn longest_ticks(s: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// A code fence longer than any run of backticks in `body`.
fn fence(body: &str) -> String {
    "`".repeat((longest_ticks(body) + 1).max(3))
}

/// Inline code that holds any text: delimited by more backticks than it contains.
fn code(s: &str) -> String {
    match longest_ticks(s) {
        0 => format!("`{s}`"),
        n => {
            let ticks = "`".repeat(n + 1);
            format!("{ticks} {s} {ticks}")
        }
    }
}

/// Text with markdown's and HTML's special characters escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
