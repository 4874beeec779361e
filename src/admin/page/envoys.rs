//! The page's Envoys section: who is connected, what each holds and whether it is in sync.

use std::fmt::Write as _;

use super::{PageData, ago, count, esc};
use crate::admin::api::{EnvoyState, envoy_state, rejected, rfc3339, sorted, variant_name};

pub(super) fn write_envoys(out: &mut String, d: &PageData) {
    let _ = writeln!(
        out,
        "<section id=\"envoys\"><h2>Envoys <span class=\"sub\">{} over ADS</span></h2>",
        count(d.envoys.len(), "connected", "connected")
    );
    if d.envoys.is_empty() {
        out.push_str(
            "<p class=\"muted\">No Envoy is connected. Point one at this control plane with \
             <code>envoy -c &lt;(canary-xds bootstrap)</code>.</p>\n</section>\n",
        );
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"envoys\"><thead><tr><th>Node id</th><th>Fleet</th>\
         <th>ADS</th><th>Connected</th><th>State</th><th>Holds version</th>\
         <th title=\"per resource type: ✔ ACKed what was sent, … waiting for the ACK, ✖ \
         rejected\">Resource types</th></tr></thead><tbody>\n",
    );
    for e in sorted(&d.envoys) {
        let state = envoy_state(e);
        let fleet_version = d.served.published.fleet(&e.fleet).version.clone();
        let (cls, label) = match state {
            EnvoyState::InSync => ("good", "in sync"),
            EnvoyState::Rejected => ("bad", "NACK: rejected"),
            EnvoyState::Syncing => ("wait", "updating"),
        };
        let holds = match &e.synced_version {
            Some(v) if *v == fleet_version => format!("<code>{}</code>", esc(v)),
            Some(v) => format!(
                "<code>{}</code> <span class=\"muted\">(current: <code>{}</code>)</span>",
                esc(v),
                esc(&fleet_version)
            ),
            None => "<span class=\"muted\">none yet</span>".into(),
        };
        let types: Vec<String> = e
            .types
            .iter()
            .map(|(k, t)| {
                let (mark, cls) = if rejected(t) {
                    ("\u{2716}", "bad")
                } else if t.waiting_for_ack || t.sent != t.acked {
                    ("\u{2026}", "wait")
                } else {
                    ("\u{2714}", "good")
                };
                format!(
                    "<span class=\"type {cls}\" title=\"{k}: sent {} · ACKed {}\">{k} {mark}</span>",
                    esc(t.sent.as_deref().unwrap_or("nothing")),
                    esc(t.acked.as_deref().unwrap_or("nothing")),
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr class=\"envoy {cls}\" data-node=\"{node}\"><td class=\"mapping\">{node}</td>\
             <td>{fleet}</td><td>{ads}</td><td title=\"{since}\">{ago} ago</td>\
             <td><span class=\"pill {cls}\">{label}</span></td><td>{holds}</td>\
             <td class=\"types\">{types}</td></tr>",
            node = esc(&e.node_id),
            fleet = esc(&e.fleet),
            ads = if variant_name(e.variant) == "delta" {
                "delta"
            } else {
                "SotW"
            },
            since = rfc3339(e.connected_since),
            ago = ago(d.now, e.connected_since),
            types = types.join(" "),
        );
        for (k, t) in &e.types {
            if let Some((version, message)) = &t.last_nack {
                let current = rejected(t);
                let _ = writeln!(
                    out,
                    "<tr class=\"nack{}\"><td colspan=\"7\"><b>{}</b> {k} version <code>{}</code>: \
                     <span class=\"msg\">{}</span></td></tr>",
                    if current { "" } else { " old" },
                    if current {
                        "\u{2716} Envoy rejected"
                    } else {
                        "Earlier NACK (since superseded):"
                    },
                    esc(version),
                    esc(message)
                );
            }
        }
    }
    out.push_str("</tbody></table></div>\n</section>\n");
}
