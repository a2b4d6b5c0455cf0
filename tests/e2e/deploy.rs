//! Deploy files cannot drift from the code: every plugin configuration embedded under
//! `deploy/` must parse as the filter's configuration, and every upstream it names must be
//! defined where the proxy will look for it. `schema` validates every file against the
//! published schema of the tool that reads it.

#[path = "deploy_schema.rs"]
mod schema;

use std::path::{Path, PathBuf};

use edge_policy::config::FilterConfig;
use serde_yaml_ng::Value;

/// The deploy files hold `REPLACE_WITH_POLICY_KEY` where the control plane's public key
/// goes (`control-plane key list`); any valid key stands in for it here.
fn with_test_key(text: &str) -> String {
    assert!(
        text.contains("REPLACE_WITH_POLICY_KEY"),
        "a deploy configuration trusts no policy key placeholder"
    );
    text.replace("REPLACE_WITH_POLICY_KEY", &edge_testkit::test_trusted_key())
}

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// Every YAML document under deploy/, with its file.
fn documents() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", f.display()));
            docs.push((f.clone(), v));
        }
    }
    docs
}

/// Every mapping inside `v`, depth first.
fn mappings<'a>(v: &'a Value, out: &mut Vec<&'a serde_yaml_ng::Mapping>) {
    match v {
        Value::Mapping(m) => {
            out.push(m);
            for (_, child) in m {
                mappings(child, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| mappings(c, out)),
        Value::Tagged(t) => mappings(&t.value, out),
        _ => {}
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

#[test]
fn envoy_plugin_configuration_parses_and_names_a_defined_cluster() {
    let mut checked = 0;
    for (file, doc) in documents() {
        let clusters: Vec<&str> = get(&doc, &["static_resources", "clusters"])
            .and_then(Value::as_sequence)
            .map(|s| s.iter().filter_map(|c| c.get("name")?.as_str()).collect())
            .unwrap_or_default();
        let mut maps = Vec::new();
        mappings(&doc, &mut maps);
        for m in maps {
            let is_wasm = m.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
            if !is_wasm {
                continue;
            }
            let cfg_text = m
                .get("config")
                .and_then(|c| get(c, &["configuration", "value"]))
                .and_then(Value::as_str)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: wasm filter without configuration.value",
                        file.display()
                    )
                });
            let cfg_text = with_test_key(cfg_text);
            let cfg = FilterConfig::parse(cfg_text.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(
                clusters.contains(&cfg.control_plane.cluster.as_str()),
                "{}: control_plane.cluster {:?} is not among the clusters {clusters:?}",
                file.display(),
                cfg.control_plane.cluster
            );
            let vm = m
                .get("config")
                .and_then(|c| get(c, &["vm_config", "code", "local", "filename"]));
            assert!(
                vm.and_then(Value::as_str)
                    .is_some_and(|f| f.ends_with("edge_filter.wasm")),
                "{}: vm_config must load edge_filter.wasm",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 1,
        "no Envoy wasm filter configuration found under deploy/"
    );
}

#[test]
fn istio_plugin_configuration_parses_and_names_a_defined_service() {
    let docs = documents();
    // Services defined in the Kubernetes manifests: (name, namespace, port).
    let services: Vec<(String, String, u64)> = docs
        .iter()
        .filter(|(_, d)| d.get("kind").and_then(Value::as_str) == Some("Service"))
        .flat_map(|(_, d)| {
            let name = get(d, &["metadata", "name"])
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let ns = get(d, &["metadata", "namespace"])
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string();
            get(d, &["spec", "ports"])
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("port")?.as_u64())
                .map(move |port| (name.clone(), ns.clone(), port))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut checked = 0;
    for (file, doc) in &docs {
        if doc.get("kind").and_then(Value::as_str) != Some("WasmPlugin") {
            continue;
        }
        let plugin_cfg =
            get(doc, &["spec", "pluginConfig"]).expect("WasmPlugin without pluginConfig");
        let json = with_test_key(&serde_json::to_string(plugin_cfg).unwrap());
        let cfg = FilterConfig::parse(json.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // outbound|PORT||SERVICE.NAMESPACE.svc.cluster.local
        let parts: Vec<&str> = cfg.control_plane.cluster.split('|').collect();
        assert_eq!(
            parts.len(),
            4,
            "{}: cluster {:?} is not an Istio outbound cluster",
            file.display(),
            cfg.control_plane.cluster
        );
        let port: u64 = parts[1].parse().expect("cluster port");
        let host: Vec<&str> = parts[3].split('.').collect();
        assert!(
            host.len() >= 3 && host[2] == "svc",
            "{}: {:?}",
            file.display(),
            parts[3]
        );
        let wanted = (host[0].to_string(), host[1].to_string(), port);
        assert!(
            services.contains(&wanted),
            "{}: no Service {wanted:?} under deploy/ (have {services:?})",
            file.display()
        );
        let strategy = get(doc, &["spec", "failStrategy"]).and_then(Value::as_str);
        assert!(
            matches!(strategy, Some("FAIL_CLOSE" | "FAIL_OPEN")),
            "{}: failStrategy",
            file.display()
        );
        let sha = get(doc, &["spec", "sha256"])
            .and_then(Value::as_str)
            .unwrap_or("");
        assert!(
            sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}: sha256 pin",
            file.display()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no Istio WasmPlugin found under deploy/");
}

fn compose_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("compose") && name.ends_with(".yaml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "compose.yaml and compose.postgres.yaml");
    files
}

#[test]
fn compose_mounts_files_that_exist() {
    for compose in compose_files() {
        let text = std::fs::read_to_string(&compose).unwrap();
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        let services = doc
            .get("services")
            .and_then(Value::as_mapping)
            .expect("services");
        let mut mounts = 0;
        for (_, svc) in services {
            for v in svc
                .get("volumes")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let Some(spec) = v.as_str() else { continue };
                let src = spec.split(':').next().unwrap();
                if !src.starts_with('.') || src.contains("/target/") {
                    continue; // named volume, or a build output
                }
                assert!(
                    deploy_dir().join(src).exists(),
                    "{} mounts {src}, which does not exist",
                    compose.display()
                );
                mounts += 1;
            }
        }
        assert!(mounts >= 1, "{}", compose.display());
    }
}

/// The Envoy endpoint names are the control-plane services' names (or their aliases) in
/// every Compose file, and no container but the one-shot ownership step runs as root.
#[test]
fn compose_resolves_envoy_endpoints_and_runs_unprivileged() {
    let envoy: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy_dir().join("envoy/envoy.yaml")).unwrap(),
    )
    .unwrap();
    let cluster = get(&envoy, &["static_resources", "clusters"])
        .and_then(Value::as_sequence)
        .and_then(|s| {
            s.iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some("edge_control_plane"))
        })
        .expect("edge_control_plane cluster");
    let hosts: Vec<&str> = get(cluster, &["load_assignment", "endpoints"])
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .flat_map(|e| {
            e.get("lb_endpoints")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
        })
        .filter_map(|e| get(e, &["endpoint", "address", "socket_address", "address"])?.as_str())
        .collect();
    assert!(
        hosts.len() >= 2,
        "the control-plane cluster names two replicas: {hosts:?}"
    );
    assert!(
        cluster.get("health_checks").is_some(),
        "control-plane cluster without health checks"
    );
    for compose in compose_files() {
        let mut doc: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&compose).unwrap()).unwrap();
        doc.apply_merge().unwrap();
        let services = doc.get("services").and_then(Value::as_mapping).unwrap();
        let mut names: Vec<&str> = Vec::new();
        for (name, svc) in services {
            names.push(name.as_str().unwrap());
            let aliases =
                get(svc, &["networks", "default", "aliases"]).and_then(Value::as_sequence);
            names.extend(aliases.into_iter().flatten().filter_map(Value::as_str));
            let user = svc.get("user").and_then(Value::as_str);
            let is_root = user.is_some_and(|u| u == "root" || u.starts_with("0:") || u == "0");
            assert!(
                !is_root || name.as_str() == Some("volume-init"),
                "{}: service {name:?} runs as root",
                compose.display()
            );
            if let Some(image) = svc.get("image").and_then(Value::as_str) {
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(
                    !tag.is_empty() && !tag.contains("latest") && tag.contains('.'),
                    "{}: image {image} is not pinned to a version",
                    compose.display()
                );
            }
        }
        for h in &hosts {
            assert!(
                names.contains(h),
                "{}: Envoy's endpoint {h} resolves to no service",
                compose.display()
            );
        }
    }
}

/// The PostgreSQL Deployment reads its URL from the Secret CloudNativePG generates for the
/// Cluster under deploy/, runs 2+ replicas, and its liveness does not ping the database.
#[test]
fn kubernetes_control_plane_uses_the_cloudnativepg_secret() {
    let docs = documents();
    let cluster = docs
        .iter()
        .find(|(_, d)| d.get("kind").and_then(Value::as_str) == Some("Cluster"))
        .and_then(|(_, d)| get(d, &["metadata", "name"])?.as_str())
        .expect("a CloudNativePG Cluster under deploy/kubernetes/");
    let mut seen = 0;
    for (file, d) in &docs {
        if d.get("kind").and_then(Value::as_str) != Some("Deployment") {
            continue;
        }
        let replicas = get(d, &["spec", "replicas"])
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let pod = get(d, &["spec", "template", "spec"]).unwrap();
        let c = &pod.get("containers").and_then(Value::as_sequence).unwrap()[0];
        let live = c.get("livenessProbe").expect("livenessProbe");
        assert!(
            get(live, &["httpGet", "path"]).and_then(Value::as_str) != Some("/healthz"),
            "{}: liveness pings the database through /healthz",
            file.display()
        );
        let sc = c.get("securityContext").expect("container securityContext");
        assert_eq!(
            sc.get("allowPrivilegeEscalation").and_then(Value::as_bool),
            Some(false)
        );
        assert_eq!(
            get(pod, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool),
            Some(true)
        );
        let url = c
            .get("env")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|e| e.get("name").and_then(Value::as_str) == Some("EC_DATABASE_URL"));
        let Some(url) = url else {
            assert_eq!(
                replicas,
                1,
                "{}: SQLite means exactly one replica",
                file.display()
            );
            continue;
        };
        assert!(
            replicas >= 2,
            "{}: PostgreSQL Deployment with {replicas} replica",
            file.display()
        );
        let secret =
            get(url, &["valueFrom", "secretKeyRef"]).expect("EC_DATABASE_URL from a Secret");
        assert_eq!(
            secret.get("name").and_then(Value::as_str),
            Some(format!("{cluster}-app").as_str())
        );
        assert_eq!(secret.get("key").and_then(Value::as_str), Some("uri"));
        seen += 1;
    }
    assert_eq!(
        seen, 1,
        "one PostgreSQL Deployment under deploy/kubernetes/"
    );
}
