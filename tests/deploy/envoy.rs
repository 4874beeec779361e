//! Envoy's side: each bootstrap is what `canary-xds bootstrap` prints for the Service, the mTLS
//! certificates carry the names both ends check, and a real Envoy takes the pod's name as its
//! node id.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use canary_xds::xds::identity::{AllowRule, San, authorize};
use serde_json::Value;

use super::common::manifests::{
    Kustomization, args, container, flag_value, flag_values, pod_labels, selects, shown, volume_at,
};
use super::common::{
    Client, Pki, assert_golden, canary_xds, envoy_lock, free_port, require_envoy, wait_for,
};
use super::{
    all_objects, base_dir, bootstrap_file, canary_xds_deployment, envoy_deployment, find, mtls_dir,
    only_object,
};

/// The `canary-xds bootstrap` flags a bootstrap's first line quotes.
fn bootstrap_flags(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let command = text
        .lines()
        .next()
        .and_then(|l| l.split('`').nth(1))
        .unwrap_or_else(|| panic!("{}: the first line quotes no command", shown(path)));
    assert!(
        !command.contains(['\'', '"', '\\']),
        "plain words only: {command}"
    );
    let words: Vec<String> = command.split_whitespace().map(String::from).collect();
    assert_eq!(words[..2], ["canary-xds", "bootstrap"], "{command}");
    words[2..].to_vec()
}

/// What `canary-xds bootstrap FLAGS` prints.
fn print_bootstrap(flags: &[String]) -> String {
    let out = canary_xds().arg("bootstrap").args(flags).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The xDS address of the base's canary-xds Service, as Envoy must dial it.
fn service_address() -> String {
    let base = Kustomization::read(&base_dir());
    let ns = base.namespace().expect("the base sets a namespace");
    let service = only_object(&base_dir().join("canary-xds/service.yaml"));
    assert!(selects(
        &service["spec"]["selector"],
        pod_labels(&canary_xds_deployment())
    ));
    let port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "xds")
        .and_then(|p| p["port"].as_u64())
        .expect("an xds port");
    format!(
        "{}.{ns}.svc.cluster.local:{port}",
        service["metadata"]["name"].as_str().unwrap()
    )
}

#[test]
fn each_envoy_bootstrap_is_what_canary_xds_bootstrap_prints_for_the_service() {
    let mut seen = 0;
    for k in Kustomization::all() {
        let Some(file) = bootstrap_file(&k) else {
            continue;
        };
        let flags = bootstrap_flags(&file);
        assert_golden(&file, &print_bootstrap(&flags));
        assert_eq!(
            flag_value(&flags, "--xds"),
            Some(service_address()),
            "{}",
            shown(&file)
        );
        seen += 1;
    }
    assert_eq!(seen, 2, "the base's bootstrap and the mTLS one");

    // Envoy reads the file where the ConfigMap is mounted.
    let d = envoy_deployment();
    let c = container(&d, "envoy").unwrap();
    let config = flag_value(&args(c), "-c").expect("envoy -c");
    let dir = Path::new(&config).parent().unwrap().to_str().unwrap();
    assert_eq!(Path::new(&config).file_name().unwrap(), "bootstrap.yaml");
    let volume = volume_at(&d, c, dir).expect("the bootstrap is a mount");
    assert_eq!(volume["configMap"]["name"], "envoy-bootstrap");
}

#[test]
fn mtls_certificates_carry_the_names_envoy_checks_and_allow_admits() {
    let objects = all_objects();
    let secret_dir = |deployment: &Value, c: &Value, secret: &str| -> String {
        let mounts = c["volumeMounts"].as_array().unwrap();
        let volumes = deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        let volume = volumes
            .iter()
            .find(|v| v["secret"]["secretName"] == secret)
            .unwrap_or_else(|| panic!("no volume of Secret {secret}"));
        let mount = mounts.iter().find(|m| m["name"] == volume["name"]).unwrap();
        mount["mountPath"].as_str().unwrap().to_string()
    };

    // canary-xds: its certificate carries the name Envoy dials and checks.
    let server = find(&objects, "Certificate", "canary-xds-server");
    let xds = service_address();
    let host = xds.rsplit_once(':').unwrap().0;
    assert!(
        server["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .contains(&Value::from(host))
    );
    let patch = only_object(&mtls_dir().join("canary-xds-tls.yaml"));
    let c = container(&patch, "canary-xds").unwrap();
    let a = args(c);
    let dir = secret_dir(&patch, c, server["spec"]["secretName"].as_str().unwrap());
    for (flag, key) in [
        ("--xds-tls-cert", "tls.crt"),
        ("--xds-tls-key", "tls.key"),
        ("--xds-client-ca", "ca.crt"),
    ] {
        assert_eq!(flag_value(&a, flag), Some(format!("{dir}/{key}")), "{flag}");
    }

    // Envoy: its certificate is its service account's SPIFFE id, which --allow admits to the
    // fleet its bootstrap asks for; its files are where its bootstrap reads them.
    let client = find(&objects, "Certificate", "envoy-xds-client");
    let envoy = envoy_deployment();
    let ns = Kustomization::read(&base_dir())
        .namespace()
        .unwrap()
        .to_string();
    let sa = envoy["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let id = format!("spiffe://cluster.local/ns/{ns}/sa/{sa}");
    assert_eq!(client["spec"]["uris"], serde_json::json!([id]));
    let rules: Vec<AllowRule> = flag_values(&a, "--allow")
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    let bootstrap = bootstrap_file(&Kustomization::read(&mtls_dir())).unwrap();
    let flags = bootstrap_flags(&bootstrap);
    let fleet = flag_value(&flags, "--fleet").unwrap_or_else(|| "default".into());
    authorize(&fleet, &[San::Uri(id.clone())], &rules).expect("Envoy's identity is allowed");
    authorize(&fleet, &[San::Uri(id.replace("/sa/", "/sa/not-"))], &rules)
        .expect_err("another identity is not");

    let envoy_patch = only_object(&mtls_dir().join("envoy-tls.yaml"));
    let ec = container(&envoy_patch, "envoy").unwrap();
    let dir = secret_dir(
        &envoy_patch,
        ec,
        client["spec"]["secretName"].as_str().unwrap(),
    );
    for (flag, key) in [
        ("--xds-tls-ca", "ca.crt"),
        ("--client-cert", "tls.crt"),
        ("--client-key", "tls.key"),
    ] {
        assert_eq!(
            flag_value(&flags, flag),
            Some(format!("{dir}/{key}")),
            "{flag}"
        );
    }
}

/// An Envoy started by a test, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Our own child, by its id.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Envoy container's args as the kubelet passes them: `$(POD_NAME)` expanded and the
/// bootstrap at `config`.
fn envoy_args(pod: &str, config: &Path) -> Vec<String> {
    let d = envoy_deployment();
    let c = container(&d, "envoy").unwrap();
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().any(|e| {
        e["name"] == "POD_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    }));
    let mut out = args(c);
    for a in out.iter_mut() {
        *a = a.replace("$(POD_NAME)", pod);
    }
    let i = out.iter().position(|a| a == "-c").unwrap();
    out[i + 1] = config.display().to_string();
    out
}

#[test]
fn envoy_takes_the_pod_name_as_its_node_id_and_accepts_both_bootstraps() {
    require_envoy!();
    let _lock = envoy_lock();
    let work = tempfile::tempdir().unwrap();
    let pod = "envoy-5d8f7c9b4-x2x7q";

    // Both bootstraps as the manifests pass them; the TLS files where the mTLS one reads them.
    let tls = work.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let pki = Pki::new(&tls, "xds");
    let (cert, key) = pki.issue("envoy", &["spiffe://cluster.local/ns/canary-xds/sa/envoy"]);
    std::fs::copy(&pki.ca, tls.join("ca.crt")).unwrap();
    std::fs::copy(cert, tls.join("tls.crt")).unwrap();
    std::fs::copy(key, tls.join("tls.key")).unwrap();
    for k in [base_dir(), mtls_dir()] {
        let file = bootstrap_file(&Kustomization::read(&k)).unwrap();
        let yaml = std::fs::read_to_string(&file)
            .unwrap()
            .replace("/etc/envoy/tls/", &format!("{}/", tls.display()));
        let config = work.path().join("validate.yaml");
        std::fs::write(&config, yaml).unwrap();
        let out = Command::new("envoy")
            .args(envoy_args(pod, &config))
            .args(["--mode", "validate"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            shown(&file),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The base's bootstrap, its admin on a free port and canary-xds on a port nobody serves
    // (Envoy only needs to start): the node id it presents is the pod's name, not the
    // bootstrap's `node.id`.
    let admin = free_port();
    let service = service_address();
    let host = service.rsplit_once(':').unwrap().0;
    let file = bootstrap_file(&Kustomization::read(&base_dir())).unwrap();
    let yaml = std::fs::read_to_string(file)
        .unwrap()
        .replace(host, "127.0.0.1")
        .replace("port_value: 18000", &format!("port_value: {}", free_port()))
        .replace("port_value: 9901", &format!("port_value: {admin}"));
    assert!(
        yaml.contains("  id: envoy\n"),
        "the bootstrap's own node id"
    );
    assert!(
        !yaml.contains("svc.cluster.local"),
        "no DNS lookups from a test"
    );
    let config = work.path().join("bootstrap.yaml");
    std::fs::write(&config, yaml).unwrap();
    let log = std::fs::File::create(work.path().join("envoy.log")).unwrap();
    let _envoy = Running(
        Command::new("envoy")
            .args(envoy_args(pod, &config))
            .args(["-l", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("envoy starts"),
    );
    let info: Value = wait_for("Envoy's admin", Duration::from_secs(30), || {
        let r = Client::new(admin).get("/server_info", &[]);
        (r.status == 200).then(|| serde_json::from_str(&r.body).unwrap())
    });
    assert_eq!(info["node"]["id"], pod, "{info}");
}
