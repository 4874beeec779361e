//! Kubernetes manifests read as JSON values: `deploy/kubernetes`'s YAML files (serde-saphyr, the
//! project's one YAML parser), its kustomizations, and the few lookups the deployment tests
//! make (labels, containers, flags).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::golden::repo_root;

/// `deploy/kubernetes`.
pub fn kubernetes_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

/// The path relative to the repository, for messages.
pub fn shown(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every `.yaml` file under `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The YAML documents of `text`, empty ones (comments only) left out.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The documents of the file at `path`; a file that does not parse fails the test.
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", shown(path)));
    parse_documents(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", shown(path)))
}

/// A `kustomization.yaml` and the directory it is in.
pub struct Kustomization {
    pub dir: PathBuf,
    pub value: Value,
}

/// A file a `configMapGenerator` reads: the ConfigMap's name, the key and the file.
pub struct GeneratedFile {
    pub config_map: String,
    pub key: String,
    pub path: PathBuf,
}

impl Kustomization {
    /// The kustomization in `dir`.
    pub fn read(dir: &Path) -> Kustomization {
        let mut docs = documents(&dir.join("kustomization.yaml"));
        assert_eq!(docs.len(), 1, "{}: one document", shown(dir));
        Kustomization {
            dir: dir.to_path_buf(),
            value: docs.remove(0),
        }
    }

    /// Every kustomization under `deploy/kubernetes`.
    pub fn all() -> Vec<Kustomization> {
        yaml_files(&kubernetes_dir())
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "kustomization.yaml"))
            .map(|p| Kustomization::read(p.parent().unwrap()))
            .collect()
    }

    /// The `namespace:` every object is put in, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.value["namespace"].as_str()
    }

    /// `resources:`, resolved: files of objects, or directories of other kustomizations.
    pub fn resources(&self) -> Vec<PathBuf> {
        self.paths("resources", |v| v.as_str())
    }

    /// The files of objects among `resources:` (not other kustomizations).
    pub fn resource_files(&self) -> Vec<PathBuf> {
        self.resources()
            .into_iter()
            .filter(|p| !p.is_dir())
            .collect()
    }

    /// The files of `patches:` (`- path: FILE`).
    pub fn patches(&self) -> Vec<PathBuf> {
        self.paths("patches", |v| v["path"].as_str())
    }

    /// The files `configMapGenerator:` reads (`files: [KEY=FILE]` or `[FILE]`).
    pub fn generated_files(&self) -> Vec<GeneratedFile> {
        let mut out = Vec::new();
        for generator in self.value["configMapGenerator"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = generator["name"].as_str().expect("a generator has a name");
            for file in generator["files"].as_array().into_iter().flatten() {
                let file = file.as_str().expect("a file is a string");
                let (key, rel) = file.split_once('=').unwrap_or_else(|| {
                    let base = Path::new(file).file_name().unwrap().to_str().unwrap();
                    (base, file)
                });
                out.push(GeneratedFile {
                    config_map: name.to_string(),
                    key: key.to_string(),
                    path: self.dir.join(rel),
                });
            }
        }
        out
    }

    fn paths(&self, field: &str, get: impl Fn(&Value) -> Option<&str>) -> Vec<PathBuf> {
        self.value[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let rel =
                    get(v).unwrap_or_else(|| panic!("{}: a {field} entry {v}", shown(&self.dir)));
                self.dir.join(rel)
            })
            .collect()
    }
}

/// `kind/name` of an object, for messages.
pub fn object_name(o: &Value) -> String {
    format!(
        "{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Whether every label `selector` asks for (a `matchLabels`, or a Service's plain selector) is
/// in `labels`. An empty or missing selector selects nothing here: none is meant to.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(wanted) = selector.as_object().filter(|m| !m.is_empty()) else {
        return false;
    };
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A Deployment's pod labels.
pub fn pod_labels(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["metadata"]["labels"]
}

/// The containers of a Deployment (or of a patch of one).
pub fn containers(deployment: &Value) -> Vec<&Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

/// The container named `name`.
pub fn container<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    containers(deployment)
        .into_iter()
        .find(|c| c["name"] == name)
}

/// A container's `args`, as strings.
pub fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect()
}

/// The value of `--flag` among `args`, written `--flag=VALUE` or `--flag VALUE`; each value
/// when the flag repeats.
pub fn flag_values(args: &[String], flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            out.push(v.to_string());
        } else if a == flag
            && let Some(v) = it.next()
        {
            out.push(v.clone());
        }
    }
    out
}

/// The one value of `--flag` among `args`.
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut values = flag_values(args, flag);
    assert!(values.len() <= 1, "{flag} given {} times", values.len());
    values.pop()
}

/// The volume a container mounts at `mount_path`, from the pod's `volumes`.
pub fn volume_at<'a>(
    deployment: &'a Value,
    container: &Value,
    mount_path: &str,
) -> Option<&'a Value> {
    let mount = container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"] == mount_path)?;
    deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])
}
