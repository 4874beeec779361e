//! The runtime values an Envoy holds, from its `/runtime`: where a route with a
//! `runtime_key_prefix` reads its weights (canary-xds's runtime layer sets them there).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::canary::error::LiveError;

/// Envoy's runtime: each key's final value, across every layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvoyRuntime {
    values: BTreeMap<String, String>,
}

impl EnvoyRuntime {
    /// Envoy's `/runtime` answer: `{"layers": [...], "entries": {"key": {"final_value": "5000",
    /// "layer_values": [...]}}}`.
    pub fn from_json(text: &str) -> Result<EnvoyRuntime, LiveError> {
        let doc: Value = serde_json::from_str(text)?;
        let entries = doc["entries"]
            .as_object()
            .ok_or_else(|| LiveError::Shape("not Envoy's /runtime: no \"entries\"".into()))?;
        let values = entries
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v["final_value"].as_str()?.to_string())))
            .collect();
        Ok(EnvoyRuntime { values })
    }

    /// The integer at `key`, as Envoy reads it for a weight: `None` where the runtime holds no
    /// value or a value that is not an integer (Envoy then uses the configured default).
    pub fn integer(&self, key: &str) -> Option<u64> {
        self.values.get(key)?.trim().parse().ok()
    }
}

impl FromIterator<(String, String)> for EnvoyRuntime {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        EnvoyRuntime {
            values: iter.into_iter().collect(),
        }
    }
}
