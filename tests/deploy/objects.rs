//! The objects: files and kustomizations, what each kind needs, canary-xds's probes, state
//! and Mapping volumes, the example Mappings, and canary-xds's flags.

use std::collections::BTreeSet;

use serde_json::Value;

use super::common::manifests::{
    Kustomization, args, container, containers, documents, flag_value, kubernetes_dir, object_name,
    pod_labels, selects, shown, volume_at, yaml_files,
};
use super::common::{canary_xds, repo_root};
use super::{
    all_objects, assert_flags_accepted, canary_xds_deployment, mtls_dir, only_object,
    validate_flags,
};

#[test]
fn every_yaml_file_under_deploy_parses() {
    let files = yaml_files(&repo_root().join("deploy"));
    assert!(files.len() >= 20, "{files:?}");
    for file in files {
        let docs = documents(&file);
        assert!(!docs.is_empty(), "{}: no document", shown(&file));
    }
}

#[test]
fn kustomizations_name_files_that_exist_and_every_file_is_named() {
    let mut named = BTreeSet::new();
    let all = Kustomization::all();
    assert_eq!(all.len(), 3, "the base and two overlays");
    for k in &all {
        named.insert(k.dir.join("kustomization.yaml"));
        let generated = k.generated_files().into_iter().map(|g| g.path);
        for path in k
            .resources()
            .into_iter()
            .chain(k.patches())
            .chain(generated)
        {
            let path = path.canonicalize().unwrap_or_else(|e| {
                panic!("{}: {} does not exist: {e}", shown(&k.dir), path.display())
            });
            if path.is_dir() {
                assert!(
                    path.join("kustomization.yaml").is_file(),
                    "{}: {} is a directory without a kustomization",
                    shown(&k.dir),
                    shown(&path)
                );
            }
            named.insert(path);
        }
    }
    for file in yaml_files(&kubernetes_dir()) {
        assert!(
            named.contains(&file.canonicalize().unwrap()),
            "{} is named by no kustomization",
            shown(&file)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Objects.

/// What the checks found, each problem naming its object.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// Notes `what` about `o` unless `ok`.
    fn check(&mut self, o: &Value, ok: bool, what: &str) {
        if !ok {
            self.0.push(format!("{}: {what}", object_name(o)));
        }
    }
}

/// A string that is there and not empty.
fn filled(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

#[test]
fn every_object_has_what_its_kind_needs() {
    let objects = all_objects();
    let mut p = Problems::default();
    for o in &objects {
        p.check(o, filled(&o["apiVersion"]), "no apiVersion");
        p.check(o, filled(&o["kind"]), "no kind");
        p.check(o, filled(&o["metadata"]["name"]), "no metadata.name");
        match o["kind"].as_str().unwrap_or("") {
            "Deployment" => deployment(o, &objects, &mut p),
            "Service" => service(o, &objects, &mut p),
            "NetworkPolicy" => network_policy(o, &objects, &mut p),
            "PodDisruptionBudget" => {
                match selected(&o["spec"]["selector"]["matchLabels"], &objects) {
                    None => p.check(o, false, "its selector selects no Deployment"),
                    Some(d) => p.check(
                        o,
                        o["spec"]["minAvailable"].as_u64() < d["spec"]["replicas"].as_u64(),
                        "minAvailable leaves no pod to disrupt",
                    ),
                }
            }
            "ConfigMap" => {
                let data = o["data"].as_object().cloned().unwrap_or_default();
                p.check(o, !data.is_empty(), "no data");
                let size: usize = data
                    .iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                    .sum();
                p.check(o, size < 1 << 20, "over the 1 MiB a ConfigMap holds");
            }
            "ServiceMonitor" => service_monitor(o, &objects, &mut p),
            "Certificate" => {
                p.check(o, filled(&o["spec"]["secretName"]), "no secretName");
                let issuer = &o["spec"]["issuerRef"]["name"];
                let defined = objects
                    .iter()
                    .any(|i| i["kind"] == "Issuer" && i["metadata"]["name"] == *issuer);
                p.check(o, defined, &format!("issuer {issuer} is not defined"));
            }
            "Issuer" => p.check(
                o,
                o["spec"]["selfSigned"].is_object() || filled(&o["spec"]["ca"]["secretName"]),
                "neither selfSigned nor a CA",
            ),
            "Namespace" | "ServiceAccount" => {}
            other => p.check(o, false, &format!("kind {other} is not checked here")),
        }
    }
    assert!(p.0.is_empty(), "{:#?}", p.0);
}

/// The Deployment whose pods `selector` selects.
fn selected<'a>(selector: &Value, objects: &'a [Value]) -> Option<&'a Value> {
    objects
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .find(|d| selects(selector, pod_labels(d)))
}

/// A Service selects a Deployment's pods, and each port targets one of their ports.
fn service(o: &Value, objects: &[Value], p: &mut Problems) {
    let Some(d) = selected(&o["spec"]["selector"], objects) else {
        return p.check(o, false, "its selector selects no Deployment");
    };
    let ports = o["spec"]["ports"].as_array().cloned().unwrap_or_default();
    p.check(o, !ports.is_empty(), "no ports");
    for port in ports {
        p.check(o, port["port"].is_u64(), "a port without a number");
        p.check(
            o,
            container_ports(d).contains(&port["targetPort"]),
            &format!("targetPort {} is no container's port", port["targetPort"]),
        );
    }
}

/// A NetworkPolicy selects a Deployment's pods, and each ingress rule names whom it admits to
/// which of their ports.
fn network_policy(o: &Value, objects: &[Value], p: &mut Problems) {
    let Some(d) = selected(&o["spec"]["podSelector"]["matchLabels"], objects) else {
        return p.check(o, false, "its podSelector selects no Deployment");
    };
    for rule in o["spec"]["ingress"].as_array().into_iter().flatten() {
        p.check(
            o,
            rule["from"].is_array(),
            "an ingress rule that admits anyone",
        );
        for port in rule["ports"].as_array().into_iter().flatten() {
            p.check(
                o,
                container_ports(d).contains(&port["port"]),
                &format!("port {} is no container's port", port["port"]),
            );
        }
    }
}

/// A ServiceMonitor selects one Service, and scrapes ports it has.
fn service_monitor(o: &Value, objects: &[Value], p: &mut Problems) {
    let selector = &o["spec"]["selector"]["matchLabels"];
    let services: Vec<&Value> = objects
        .iter()
        .filter(|s| s["kind"] == "Service" && selects(selector, &s["metadata"]["labels"]))
        .collect();
    let [service] = services[..] else {
        return p.check(o, false, "its selector selects not exactly one Service");
    };
    let ports = service["spec"]["ports"].as_array().unwrap();
    for e in o["spec"]["endpoints"].as_array().into_iter().flatten() {
        p.check(
            o,
            ports.iter().any(|port| port["name"] == e["port"]),
            &format!("endpoint port {} is not the Service's", e["port"]),
        );
    }
}

/// The names and numbers of a Deployment's container ports (what a `targetPort` or a policy's
/// `port` may name).
fn container_ports(deployment: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for c in containers(deployment) {
        for p in c["ports"].as_array().into_iter().flatten() {
            out.push(p["name"].clone());
            out.push(p["containerPort"].clone());
        }
    }
    out
}

/// What every Deployment here must be: a selector that selects its pods, hardened pods with
/// images, requests and limits, replicas that survive one loss, and surge-only rollouts.
fn deployment(d: &Value, objects: &[Value], p: &mut Problems) {
    let mut check = |ok: bool, what: &str| p.check(d, ok, what);
    let spec = &d["spec"];
    let pod = &spec["template"]["spec"];
    check(
        selects(&spec["selector"]["matchLabels"], pod_labels(d)),
        "its selector does not select its pods",
    );
    check(
        spec["replicas"].as_u64() >= Some(2),
        "fewer than 2 replicas",
    );
    let rolling = &spec["strategy"]["rollingUpdate"];
    check(
        rolling["maxUnavailable"] == 0 && rolling["maxSurge"] == 1,
        "rollouts are not maxUnavailable 0, maxSurge 1",
    );
    let security = &pod["securityContext"];
    check(security["runAsNonRoot"] == true, "not runAsNonRoot");
    check(
        security["runAsUser"].as_u64().is_some_and(|u| u > 0),
        "no numeric non-root runAsUser",
    );
    check(
        security["seccompProfile"]["type"] == "RuntimeDefault",
        "seccomp is not RuntimeDefault",
    );
    let sa = pod["serviceAccountName"].as_str().unwrap_or("");
    check(
        objects
            .iter()
            .any(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == sa),
        &format!("service account {sa:?} is not defined"),
    );
    let cs = containers(d);
    check(!cs.is_empty(), "no containers");
    for c in cs {
        check(
            c["image"].as_str().is_some_and(|i| !i.is_empty()),
            "a container without an image",
        );
        let sc = &c["securityContext"];
        check(
            sc["allowPrivilegeEscalation"] == false,
            "privilege escalation allowed",
        );
        check(
            sc["readOnlyRootFilesystem"] == true,
            "a writable root filesystem",
        );
        check(
            sc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.contains(&Value::from("ALL"))),
            "capabilities not dropped",
        );
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                check(
                    c["resources"][bound][resource].is_string(),
                    &format!("no {resource} {bound}"),
                );
            }
        }
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            check(
                pod["volumes"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| v["name"] == m["name"])),
                &format!("volume {} is not defined", m["name"]),
            );
        }
    }
}

#[test]
fn canary_xds_is_probed_on_its_admin_server_and_keeps_its_state_on_an_emptydir() {
    let d = canary_xds_deployment();
    let c = container(&d, "canary-xds").expect("a canary-xds container");
    let a = args(c);
    let port_named = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port named {name}"))
    };
    let admin: std::net::SocketAddr = flag_value(&a, "--admin").unwrap().parse().unwrap();
    assert!(
        !admin.ip().is_loopback(),
        "the kubelet cannot probe loopback"
    );
    assert_eq!(u64::from(admin.port()), port_named("admin"));
    let xds: std::net::SocketAddr = flag_value(&a, "--xds").unwrap().parse().unwrap();
    assert_eq!(u64::from(xds.port()), port_named("xds"));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }

    let state = flag_value(&a, "--state-dir").expect("--state-dir");
    let volume = volume_at(&d, c, &state).expect("--state-dir is a mount");
    assert!(volume["emptyDir"].is_object(), "{volume}");

    // The watched directory: several ConfigMaps projected into one, each defined here or
    // optional (room to grow).
    let dir = flag_value(&a, "--dir").expect("--dir");
    let volume = volume_at(&d, c, &dir).expect("--dir is a mount");
    let sources = volume["projected"]["sources"]
        .as_array()
        .expect("projected");
    assert!(sources.len() >= 2, "{volume}");
    let objects = all_objects();
    for s in sources {
        let name = s["configMap"]["name"].as_str().expect("ConfigMap sources");
        let defined = objects
            .iter()
            .any(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name);
        assert!(defined || s["configMap"]["optional"] == true, "{name}");
    }
}

#[test]
fn the_example_mapping_configmaps_pass_check() {
    let work = tempfile::tempdir().unwrap();
    let mut files = 0;
    for o in all_objects() {
        if o["kind"] != "ConfigMap"
            || o["metadata"]["labels"]["app.kubernetes.io/component"] != "mappings"
        {
            continue;
        }
        for (key, text) in o["data"].as_object().unwrap() {
            let path = work.path().join(key);
            assert!(
                !path.exists(),
                "{key} is in two ConfigMaps: one would hide the other"
            );
            std::fs::write(&path, text.as_str().unwrap()).unwrap();
            files += 1;
        }
    }
    assert!(files >= 2);
    let out = canary_xds().arg("check").arg(work.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 errors, 0 warnings"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// canary-xds's flags.

#[test]
fn canary_xds_accepts_its_args_in_the_base_and_the_mtls_overlay() {
    let base = canary_xds_deployment();
    let c = container(&base, "canary-xds").unwrap();
    assert_flags_accepted("base", c);

    let patch = only_object(&mtls_dir().join("canary-xds-tls.yaml"));
    let tls = container(&patch, "canary-xds").unwrap();
    assert_flags_accepted("overlays/mtls", tls);
    assert!(!args(tls).contains(&"--insecure".to_string()));

    // The check can fail: plaintext off loopback without --insecure is refused, exit 2.
    let without: Vec<String> = args(c).into_iter().filter(|a| a != "--insecure").collect();
    let out = validate_flags(c, &without);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}
