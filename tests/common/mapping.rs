//! Mapping text, and files written the way editors and `mv` write them.

use std::path::Path;

/// Writes `text` to `path` the way `mv` does: a temporary file renamed into place.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A Mapping document.
pub fn mapping(name: &str, prefix: &str, service: &str, extra: &str) -> String {
    format!(
        "apiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: {prefix}\nservice: {service}\n{extra}"
    )
}
