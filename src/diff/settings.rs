//! Settings compared field by field: a Mapping's service, cluster and every route, backend and
//! cluster setting, each named by its path in `check --format json` (`route.timeout_ms`,
//! `backend.add_request_headers.x-env`). The settings are walked as JSON, so that a setting
//! added to the model is compared without a change here.

use std::collections::BTreeMap;

use serde_json::Value;

use super::report::SettingDelta;
use super::side::BackendView;

/// The settings of one Mapping that differ between `before` and `after`.
pub fn setting_deltas(before: &BackendView, after: &BackendView, out: &mut Vec<SettingDelta>) {
    let mapping = after.id.to_string();
    let mut push = |field: String, b: Value, a: Value| {
        out.push(SettingDelta {
            mapping: mapping.clone(),
            field,
            before: b,
            after: a,
        });
    };
    if before.service != after.service {
        push(
            "service".into(),
            before.service.clone().into(),
            after.service.clone().into(),
        );
    }
    if before.cluster != after.cluster {
        push(
            "cluster".into(),
            before.cluster.clone().into(),
            after.cluster.clone().into(),
        );
    }
    if before.weighted != after.weighted {
        push(
            "weighted".into(),
            before.weighted.into(),
            after.weighted.into(),
        );
    }
    // A side without settings (an older server) cannot say what changed: nothing is claimed.
    let (Some(b), Some(a)) = (&before.settings, &after.settings) else {
        return;
    };
    if b == a {
        return;
    }
    let (mut fb, mut fa) = (BTreeMap::new(), BTreeMap::new());
    flatten(String::new(), to_value(b), &mut fb);
    flatten(String::new(), to_value(a), &mut fa);
    let fields: std::collections::BTreeSet<&String> = fb.keys().chain(fa.keys()).collect();
    for field in fields {
        let (vb, va) = (
            fb.get(field).cloned().unwrap_or(Value::Null),
            fa.get(field).cloned().unwrap_or(Value::Null),
        );
        if vb != va {
            push(field.clone(), vb, va);
        }
    }
}

fn to_value(s: &impl serde::Serialize) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

/// Objects become dotted paths down to their leaves; lists, numbers, strings and `null` are
/// leaves (a list of upgrades is one setting).
fn flatten(path: String, v: Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                };
                flatten(p, v, out);
            }
        }
        Value::Object(_) => {}
        leaf => {
            out.insert(path, leaf);
        }
    }
}
