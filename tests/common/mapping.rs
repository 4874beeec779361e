//! Mapping text: the one builder of Mapping documents for every test, and a file written the way
//! editors and `mv` write it.

use std::fmt::Display;
use std::path::Path;

/// A Mapping document: `apiVersion`, `kind` and `name`, then `prefix`, `service` and `weight`
/// when they are given, then the `extra` lines exactly as written; `---` first when asked.
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    name: String,
    prefix: Option<String>,
    service: Option<String>,
    weight: Option<String>,
    extra: String,
    document_start: bool,
}

impl Mapping {
    pub fn new(name: &str) -> Mapping {
        Mapping {
            name: name.to_string(),
            ..Mapping::default()
        }
    }

    /// A Mapping whose service is named after it: `Mapping::new(name)` on `prefix`, service
    /// `name`.
    pub fn named(name: &str, prefix: &str) -> Mapping {
        Mapping::new(name).prefix(prefix).service(name)
    }

    /// `prefix: <prefix>`, as written (quote it in the text if YAML needs the quotes).
    pub fn prefix(mut self, prefix: &str) -> Mapping {
        self.prefix = Some(prefix.to_string());
        self
    }

    /// `service: <service>`, as written.
    pub fn service(mut self, service: &str) -> Mapping {
        self.service = Some(service.to_string());
        self
    }

    /// `weight: <weight>`, as written (`10`, `33.33`, `"10"`).
    pub fn weight(mut self, weight: impl Display) -> Mapping {
        self.weight = Some(weight.to_string());
        self
    }

    /// More lines after the fields above, each ending in a newline.
    pub fn extra(mut self, lines: &str) -> Mapping {
        self.extra.push_str(lines);
        self
    }

    /// Starts the text with `---`, a document of its own.
    pub fn document_start(mut self) -> Mapping {
        self.document_start = true;
        self
    }

    pub fn text(&self) -> String {
        let mut text = String::new();
        if self.document_start {
            text.push_str("---\n");
        }
        text.push_str("apiVersion: ambassador/v1\nkind: Mapping\n");
        text.push_str(&format!("name: {}\n", self.name));
        let fields = [
            ("prefix", &self.prefix),
            ("service", &self.service),
            ("weight", &self.weight),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                text.push_str(&format!("{key}: {value}\n"));
            }
        }
        text.push_str(&self.extra);
        text
    }
}

/// The usual Mapping: `name` on `prefix` to `service`, then `extra` lines.
pub fn mapping(name: &str, prefix: &str, service: &str, extra: &str) -> String {
    Mapping::new(name)
        .prefix(prefix)
        .service(service)
        .extra(extra)
        .text()
}

/// A Mapping given by its `body` (every field after `name`, in the order written), as a YAML
/// document of its own (`---` first).
pub fn mapping_body(name: &str, body: &str) -> String {
    Mapping::new(name).document_start().extra(body).text()
}

/// Writes `text` to `path` the way `mv` does: a temporary file renamed into place.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
