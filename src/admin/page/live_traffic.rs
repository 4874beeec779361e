//! The page's live-traffic section: each canary beside its primary over the last window.

use std::fmt::Write as _;

use super::{PageData, ago, esc, share};
use crate::admin::traffic::TrafficVerdict;

pub(super) fn write_traffic(out: &mut String, d: &PageData) {
    out.push_str(
        "<section id=\"traffic\"><h2>Live traffic <span class=\"sub\">each canary against \
         its primary, from Envoy's stats</span></h2>\n",
    );
    if d.envoy_admin.is_empty() {
        out.push_str(
            "<p class=\"muted\" id=\"traffic-off\">No Envoy admin configured: start \
             <code>serve</code> with <code>--envoy-admin http://127.0.0.1:9901</code> \
             (repeatable) to compare each canary with its primary here.</p>\n</section>\n",
        );
        return;
    }
    let _ = writeln!(
        out,
        "<p class=\"muted\">Envoy admin: {}</p>",
        d.envoy_admin
            .iter()
            .map(|u| format!("<code>{}</code>", esc(u)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some(live) = &d.live else {
        out.push_str("<p class=\"muted\">Waiting for the first reading.</p>\n</section>\n");
        return;
    };
    for p in &live.problems {
        let _ = writeln!(out, "<p class=\"problem\">{}</p>", esc(p));
    }
    if live.routes.is_empty()
        && !live.problems.is_empty()
        && live.problems.len() >= d.envoy_admin.len()
    {
        out.push_str(
            "<p class=\"muted\">No traffic to show: no Envoy admin endpoint could be read.</p>\n\
             </section>\n",
        );
        return;
    }
    let _ = writeln!(
        out,
        "<p class=\"muted\">Over the last {} s, read {} ago.</p>",
        live.window.as_secs(),
        ago(d.now, live.taken_at)
    );
    if live.routes.is_empty() {
        out.push_str("<p class=\"muted\">No route has more than one backend.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"traffic\"><thead><tr><th>Backend</th>\
         <th>Configured</th><th>Observed</th><th>Requests</th><th>req/s</th><th>5xx</th>\
         <th>p50</th><th>p99</th><th>Verdict</th></tr></thead>\n",
    );
    for r in &live.routes {
        let _ = writeln!(
            out,
            "<tbody><tr class=\"match\"><td colspan=\"9\"><code class=\"prefix\">{}</code> \
             <span class=\"matchers\">fleet {}</span></td></tr>",
            esc(&r.route),
            esc(&r.fleet)
        );
        for b in &r.backends {
            let verdict = match &b.verdict {
                None if b.primary => "<span class=\"muted\">the baseline</span>".to_string(),
                None => String::new(),
                Some(v) => {
                    let cls = match v {
                        TrafficVerdict::Healthy | TrafficVerdict::Promoted => "good",
                        TrafficVerdict::Worse { .. } => "bad",
                        TrafficVerdict::NotEnoughTraffic => "wait",
                    };
                    let reason = match v {
                        TrafficVerdict::Worse { reason } => format!(": {}", esc(reason)),
                        _ => String::new(),
                    };
                    format!(
                        "<span class=\"pill {cls}\">{}</span>{reason}",
                        esc(v.label())
                    )
                }
            };
            let _ = writeln!(
                out,
                "<tr><td class=\"mapping\">{}{}<div class=\"muted\"><code>{}</code></div></td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&b.mapping),
                if b.primary {
                    " <span class=\"tag\">primary</span>"
                } else {
                    ""
                },
                esc(&b.cluster),
                share(b.configured_bp),
                opt_pct(b.observed_share),
                b.requests,
                b.rps,
                opt_pct(b.error_rate),
                opt_ms(b.p50_ms),
                opt_ms(b.p99_ms),
                verdict
            );
        }
        out.push_str("</tbody>\n");
    }
    out.push_str("</table></div>\n</section>\n");
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.2}%", v * 100.0))
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1} ms"))
}
