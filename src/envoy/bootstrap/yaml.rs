//! The bootstrap as a YAML tree whose maps keep their order, serialized as written.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A YAML tree whose maps keep their order, so the text reads like Envoy's docs and is the same
/// on every run.
pub(super) enum Yaml {
    Map(Vec<(&'static str, Yaml)>),
    Seq(Vec<Yaml>),
    /// A list on one line, `[a, b]`.
    FlowSeq(Vec<Yaml>),
    Str(String),
    Int(u64),
    /// Written as a whole number when it is one.
    Number(f64),
    Bool(bool),
}

pub(super) fn map<const N: usize>(entries: [(&'static str, Yaml); N]) -> Yaml {
    Yaml::Map(entries.into())
}

pub(super) fn seq<const N: usize>(items: [Yaml; N]) -> Yaml {
    Yaml::Seq(items.into())
}

pub(super) fn s(text: impl Into<String>) -> Yaml {
    Yaml::Str(text.into())
}

impl Serialize for Yaml {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self {
            Yaml::Map(entries) => {
                let mut m = ser.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            Yaml::Seq(items) => {
                let mut l = ser.serialize_seq(Some(items.len()))?;
                for item in items {
                    l.serialize_element(item)?;
                }
                l.end()
            }
            Yaml::FlowSeq(items) => serde_saphyr::FlowSeq(items).serialize(ser),
            Yaml::Str(text) => ser.serialize_str(text),
            Yaml::Int(n) => ser.serialize_u64(*n),
            Yaml::Number(x) if x.fract() == 0.0 && *x >= 0.0 => ser.serialize_u64(*x as u64),
            Yaml::Number(x) => ser.serialize_f64(*x),
            Yaml::Bool(b) => ser.serialize_bool(*b),
        }
    }
}
