//! Checks `deploy/kubernetes/` (the kustomize base and the two-tenants overlay) and `deploy/emqx/`:
//!
//! * both render with `kubectl kustomize`; the rendered objects have the structure the README
//!   promises (replicas, probes, hardening, shutdown timing, Services, NetworkPolicy, PDB, HPA,
//!   ServiceMonitor, PrometheusRule). ServiceMonitor and PrometheusRule are prometheus-operator
//!   CRDs that kubernetes-validate has no schema for: they are checked structurally here;
//! * every built-in object passes `kubernetes-validate --strict` for Kubernetes 1.30 (the first
//!   with the preStop `sleep` action on by default) and the tool's newest version;
//! * checkov finds nothing, and every check it skips is skipped by a justified annotation;
//! * yamllint (strict) is clean on every YAML file under deploy/kubernetes/ and deploy/emqx/;
//! * the ConfigMaps' gateway.toml files are valid gateway configurations (`exhook_config`);
//! * `base/prometheusrule.yaml` is generated from `deploy/prometheus/alerts.yml` and carries
//!   the same rules, before and after kustomize;
//! * the EMQX snippets point at the Service.
//!
//! Tools: kubectl (Debian `kubernetes-client` if missing), and from PyPI kubernetes-validate,
//! yamllint and checkov, which `scripts/test.sh` installs into venvs under target/deploy-tools/.
//! YAML is read with the PyYAML of kubernetes-validate's venv (the workspace has no YAML crate).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use exhook_deploy_check::{require_pip_tool, require_tool};
use serde_json::Value;

const BASE: &str = "deploy/kubernetes/base";
const OVERLAY: &str = "deploy/kubernetes/overlays/two-tenants";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/base/prometheusrule.yaml";
/// The preStop sleep and the gateway's drain_timeout, seconds (deployment.yaml, gateway.toml).
const PRESTOP_SLEEP: u64 = 10;
const DRAIN_TIMEOUT: u64 = 10;
/// Kubernetes versions the built-in objects are validated against (besides the tool's newest).
const KUBERNETES_MIN: &str = "1.30.0";
/// The checkov checks skipped on purpose, each by an annotation with its reason.
const CHECKOV_SKIPS: &[&str] = &["CKV_K8S_15", "CKV_K8S_43"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exhook-k8s-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn kubectl(test: &str) -> Option<PathBuf> {
    require_tool(test, "kubectl", "kubernetes-client")
}

/// `kubectl kustomize <dir>`: the rendered YAML.
fn kustomize(kubectl: &Path, dir: &str) -> String {
    let out = Command::new(kubectl).arg("kustomize").arg(root().join(dir)).output().expect("run kubectl kustomize");
    assert!(out.status.success(), "kubectl kustomize {dir} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("kustomize output is UTF-8")
}

/// The Python of kubernetes-validate's venv (it has PyYAML), else `python3`.
fn python(kubernetes_validate: &Path) -> PathBuf {
    let beside = kubernetes_validate.with_file_name("python3");
    if beside.is_file() { beside } else { PathBuf::from("python3") }
}

/// Every YAML document of `text`, as JSON.
fn yaml_docs(python: &Path, text: &str) -> Vec<Value> {
    let mut child = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (PyYAML)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write YAML");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "YAML did not parse:\n{}", String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout).expect("JSON from python") {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects.iter().map(|o| o["kind"].as_str().unwrap_or("?").to_string()).collect();
    k.sort();
    k
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// Labels of `selector` (matchLabels) are all carried by `labels`.
fn selects(selector: &Value, labels: &Value, what: &str) {
    let selector = selector.as_object().unwrap_or_else(|| panic!("{what}: selector is not a map: {selector}"));
    assert!(!selector.is_empty(), "{what}: empty selector");
    for (k, v) in selector {
        assert_eq!(&labels[k], v, "{what}: selector {k}={v} does not match the pods' labels {labels}");
    }
}

/// The structure promised by the README, on one rendering (base or overlay).
fn check_objects(objects: &[Value], image: &str, namespace: Option<&str>) {
    let expected = [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Secret",
        "Secret",
        "Service",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ];
    assert_eq!(kinds(objects), expected, "rendered kinds");
    for o in objects {
        assert_eq!(
            o["metadata"]["namespace"].as_str(),
            namespace,
            "namespace of {} {}",
            o["kind"],
            o["metadata"]["name"]
        );
    }

    let deploy = find(objects, "Deployment", "exhook-gateway");
    let spec = &deploy["spec"];
    assert_eq!(spec["replicas"], 3);
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    selects(&spec["selector"]["matchLabels"], pod_labels, "Deployment");
    assert!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array(),
        "preferred pod anti-affinity"
    );
    let spread = pod["topologySpreadConstraints"].as_array().expect("topologySpreadConstraints");
    assert!(spread.iter().any(|c| c["topologyKey"] == "topology.kubernetes.io/zone"), "spread over zones");
    for c in spread {
        selects(&c["labelSelector"]["matchLabels"], pod_labels, "topologySpreadConstraints");
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["automountServiceAccountToken"], false);

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], image);
    assert_eq!(c["args"], serde_json::json!(["run", "--watch", "--config", "/etc/exhook-gateway/config/gateway.toml"]));
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert!(mounts.iter().all(|m| m.get("subPath").is_none()), "no subPath mounts: the kubelet never updates them");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    for r in ["requests", "limits"] {
        for k in ["cpu", "memory"] {
            assert!(c["resources"][r][k].is_string(), "resources.{r}.{k}");
        }
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/healthz");
    for p in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(c[p]["httpGet"]["port"], "admin", "{p} uses the admin port");
    }
    let ports: Vec<(String, u64)> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (str_of(&p["name"], "port name").to_string(), p["containerPort"].as_u64().expect("containerPort")))
        .collect();
    assert_eq!(
        ports,
        [("exhook".to_string(), 9000), ("exhook-tls".to_string(), 9443), ("admin".to_string(), 9100)],
        "container ports"
    );

    // Shutdown: the preStop sleep, then SIGTERM and drain_timeout, all inside the grace period.
    let sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().expect("preStop sleep");
    assert_eq!(sleep, PRESTOP_SLEEP);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    assert!(
        grace > PRESTOP_SLEEP + DRAIN_TIMEOUT,
        "grace {grace}s must exceed preStop {sleep}s + drain {DRAIN_TIMEOUT}s"
    );

    // Mounts: gateway.toml from the generated ConfigMap; Secrets read-only, as directories.
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    for m in mounts {
        assert_eq!(m["readOnly"], true, "mount {} is read-only", m["name"]);
    }
    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("volume {name}"));
    let config_map = str_of(&volume("config")["configMap"]["name"], "config volume");
    let cm = find(objects, "ConfigMap", config_map);
    assert!(cm["data"]["gateway.toml"].is_string(), "the ConfigMap carries gateway.toml");
    assert!(config_map.starts_with("exhook-gateway-config-"), "hash-suffixed ConfigMap name {config_map}");
    for (vol, secret) in [("tls", "exhook-gateway-tls"), ("admin-token", "exhook-gateway-admin-token")] {
        assert_eq!(volume(vol)["secret"]["secretName"], secret);
        find(objects, "Secret", secret);
    }
    let tls_secret = find(objects, "Secret", "exhook-gateway-tls");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let v = str_of(&tls_secret["stringData"][key], key);
        assert!(v.starts_with("REPLACE") && !v.contains("-----BEGIN"), "example Secret holds no key material ({key})");
    }

    // Services: exhook (h2c + TLS) and admin, both selecting the pods.
    let svc = find(objects, "Service", "exhook-gateway");
    selects(&svc["spec"]["selector"], pod_labels, "Service exhook-gateway");
    let svc_ports: Vec<u64> =
        svc["spec"]["ports"].as_array().expect("ports").iter().map(|p| p["port"].as_u64().unwrap()).collect();
    assert_eq!(svc_ports, [9000, 9443]);
    let admin = find(objects, "Service", "exhook-gateway-admin");
    selects(&admin["spec"]["selector"], pod_labels, "Service exhook-gateway-admin");
    assert_eq!(admin["spec"]["ports"][0]["port"], 9100);
    assert_eq!(admin["spec"]["ports"][0]["name"], "admin");

    let pdb = find(objects, "PodDisruptionBudget", "exhook-gateway");
    selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    let hpa = find(objects, "HorizontalPodAutoscaler", "exhook-gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "exhook-gateway");
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");

    // NetworkPolicy: EMQX pods to 9000/9443, Prometheus to 9100, nothing else.
    let np = find(objects, "NetworkPolicy", "exhook-gateway");
    selects(&np["spec"]["podSelector"]["matchLabels"], pod_labels, "NetworkPolicy");
    let rules = np["spec"]["ingress"].as_array().expect("ingress rules");
    let rule_ports = |r: &Value| -> Vec<u64> {
        r["ports"].as_array().unwrap().iter().map(|p| p["port"].as_u64().unwrap()).collect()
    };
    assert_eq!(rules.len(), 2);
    assert_eq!(rule_ports(&rules[0]), [9000, 9443]);
    assert_eq!(rules[0]["from"][0]["podSelector"]["matchLabels"]["apps.emqx.io/managed-by"], "emqx-operator");
    assert_eq!(rule_ports(&rules[1]), [9100]);
    assert_eq!(rules[1]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "prometheus");

    // ServiceMonitor (CRD, checked here): scrapes /metrics on the admin Service's named port.
    let sm = find(objects, "ServiceMonitor", "exhook-gateway");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    selects(&sm["spec"]["selector"]["matchLabels"], &admin["metadata"]["labels"], "ServiceMonitor");
    let sm_selector = sm["spec"]["selector"]["matchLabels"].as_object().expect("ServiceMonitor selector");
    assert!(
        sm_selector.iter().any(|(k, v)| &svc["metadata"]["labels"][k] != v),
        "the ServiceMonitor must not also select the exhook Service"
    );
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"], "admin");
    assert_eq!(ep["path"], "/metrics");
    assert_eq!(ep["authorization"]["credentials"]["name"], "exhook-gateway-admin-token");
    assert_eq!(ep["authorization"]["credentials"]["key"], "token");
    let allowed_ep: BTreeSet<&str> = ["port", "path", "interval", "scheme", "authorization"].into();
    for k in ep.as_object().unwrap().keys() {
        assert!(allowed_ep.contains(k.as_str()), "unexpected ServiceMonitor endpoint field {k}");
    }

    // PrometheusRule (CRD): well-formed rules.
    let pr = find(objects, "PrometheusRule", "exhook-gateway");
    assert_eq!(pr["apiVersion"], "monitoring.coreos.com/v1");
    for g in pr["spec"]["groups"].as_array().expect("groups") {
        str_of(&g["name"], "group name");
        for r in g["rules"].as_array().expect("rules") {
            str_of(&r["alert"], "alert");
            str_of(&r["expr"], "expr");
            let allowed: BTreeSet<&str> = ["alert", "expr", "for", "labels", "annotations", "keep_firing_for"].into();
            for k in r.as_object().unwrap().keys() {
                assert!(allowed.contains(k.as_str()), "unexpected rule field {k}");
            }
        }
    }
}

#[test]
fn kustomize_renders_the_promised_objects() {
    let test = "kustomize_renders_the_promised_objects";
    let Some(kubectl) = kubectl(test) else { return };
    let base = kustomize(&kubectl, BASE);
    let overlay = kustomize(&kubectl, OVERLAY);
    let Some(kv) = require_pip_tool(test, "kubernetes-validate", "kubernetes-validate") else { return };
    let py = python(&kv);
    let base = yaml_docs(&py, &base);
    let overlay = yaml_docs(&py, &overlay);
    check_objects(&base, "exhook-gateway:0.1.0", None);
    check_objects(&overlay, "registry.example.com/exhook-gateway:0.1.0", Some("exhook"));

    // The ConfigMaps carry the gateway.toml files byte for byte (the overlay's replaces the base's).
    let toml =
        |objects: &[Value]| objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap()["data"]["gateway.toml"].clone();
    assert_eq!(toml(&base), read(&format!("{BASE}/gateway.toml")).as_str());
    assert_eq!(toml(&overlay), read(&format!("{OVERLAY}/gateway.toml")).as_str());

    // The PrometheusRule carries exactly the rules of alerts.yml.
    let alerts = yaml_docs(&py, &read(ALERTS));
    for objects in [&base, &overlay] {
        let pr = find(objects, "PrometheusRule", "exhook-gateway");
        assert_eq!(pr["spec"]["groups"], alerts[0]["groups"], "PrometheusRule and {ALERTS} differ");
    }
}

/// `kubernetes-validate --strict` on a rendering: every built-in object passes; the two
/// prometheus-operator CRDs are reported as having no schema (and are checked above instead).
fn validate(kv: &Path, rendered: &str, dir: &Path, version: Option<&str>) -> usize {
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, rendered).expect("write rendering");
    let mut cmd = Command::new(kv);
    cmd.arg("--strict");
    if let Some(v) = version {
        cmd.args(["-k", v]);
    }
    let out = cmd.arg(&file).output().expect("run kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate {version:?} failed:\n{text}");
    let passed = text.lines().filter(|l| l.starts_with("INFO") && l.contains(" passed for resource ")).count();
    let no_schema: Vec<&str> = text.lines().filter(|l| l.contains("Couldn't find schema")).collect();
    assert_eq!(no_schema.len(), 2, "only the two CRDs lack a schema:\n{text}");
    assert!(no_schema.iter().all(|l| l.contains("monitoring.coreos.com/v1")), "{text}");
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(l.starts_with("INFO") || l.contains("Couldn't find schema"), "kubernetes-validate: {l}\n{text}");
    }
    passed
}

#[test]
fn kubernetes_validate_schemas() {
    let test = "kubernetes_validate_schemas";
    let Some(kubectl) = kubectl(test) else { return };
    let Some(kv) = require_pip_tool(test, "kubernetes-validate", "kubernetes-validate") else { return };
    let dir = scratch(test);
    for rendered in [kustomize(&kubectl, BASE), kustomize(&kubectl, OVERLAY)] {
        for version in [Some(KUBERNETES_MIN), None] {
            assert_eq!(validate(&kv, &rendered, &dir, version), 10, "built-in objects validated ({version:?})");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn checkov_hardening() {
    let test = "checkov_hardening";
    let Some(kubectl) = kubectl(test) else { return };
    let Some(checkov) = require_pip_tool(test, "checkov", "checkov") else { return };
    let dir = scratch(test);
    // The overlay: it has a namespace (the base leaves it to overlays, CKV_K8S_21) and every
    // object of the base.
    let file = dir.join("two-tenants.yaml");
    std::fs::write(&file, kustomize(&kubectl, OVERLAY)).expect("write rendering");
    let out = Command::new(&checkov)
        .arg("-f")
        .arg(&file)
        .args(["--framework", "kubernetes", "--skip-download", "-o", "json"])
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("run checkov");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("checkov JSON: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
    let summary = &report["summary"];
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["check_name"], c["resource"]))
        .collect();
    assert!(failed.is_empty(), "checkov failed checks:\n{}", failed.join("\n"));
    assert_eq!(summary["parsing_errors"], 0, "{summary}");
    assert!(summary["passed"].as_u64().unwrap_or(0) >= 80, "checkov ran its checks: {summary}");
    let skipped = report["results"]["skipped_checks"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<&str> = skipped.iter().map(|c| str_of(&c["check_id"], "check_id")).collect();
    ids.sort();
    assert_eq!(ids, CHECKOV_SKIPS, "skipped checks");
    for c in &skipped {
        let reason = c["check_result"]["suppress_comment"].as_str().unwrap_or("");
        assert!(reason.len() > 40, "{} is skipped without a real justification: {reason:?}", c["check_id"]);
    }
    let _ = writeln!(std::io::stderr(), "checkov {}: {summary}", summary["checkov_version"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn yamllint_clean() {
    let test = "yamllint_clean";
    let Some(yamllint) = require_pip_tool(test, "yamllint", "yamllint") else { return };
    let out = Command::new(yamllint)
        .current_dir(root())
        .args(["--strict", "-c", "deploy/kubernetes/.yamllint.yaml", "deploy/kubernetes", "deploy/emqx"])
        .output()
        .expect("run yamllint");
    assert!(
        out.status.success(),
        "yamllint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The gateway.toml of the base and of the overlay are valid configurations, with throw-away
/// certificates and token at the paths the Deployment mounts them.
#[test]
fn configmap_gateway_toml_is_valid() {
    let dir = scratch("configmap_gateway_toml_is_valid");
    let etc = dir.join("etc-exhook-gateway");
    std::fs::create_dir_all(etc.join("tls")).unwrap();
    std::fs::create_dir_all(etc.join("admin")).unwrap();
    let ca = exhook_testpki::Ca::new("exhook test CA");
    ca.write(&etc.join("tls"), "ca");
    ca.issue(&exhook_testpki::Leaf::new(&["exhook-gateway.exhook.svc.cluster.local"])).write(&etc.join("tls"), "tls");
    std::fs::write(etc.join("admin/token"), "0123456789abcdef\n").unwrap();
    let deployment = read(&format!("{BASE}/deployment.yaml"));
    for mounted in ["/etc/exhook-gateway/config", "/etc/exhook-gateway/tls", "/etc/exhook-gateway/admin"] {
        assert!(deployment.contains(&format!("mountPath: {mounted}")), "deployment.yaml mounts {mounted}");
    }
    for dir_ in [BASE, OVERLAY] {
        let file = format!("{dir_}/gateway.toml");
        let text = read(&file);
        assert!(
            text.contains("drain_timeout = \"10s\""),
            "{file}: drain_timeout {DRAIN_TIMEOUT}s as the Deployment assumes"
        );
        for listen in ["0.0.0.0:9000", "0.0.0.0:9443", "0.0.0.0:9100"] {
            assert!(text.contains(&format!("listen = \"{listen}\"")), "{file} listens on {listen} (the pod's ports)");
        }
        let local = text.replace("/etc/exhook-gateway/", &format!("{}/", etc.display()));
        // The commented-out token_file too must name a readable file.
        let local = local.replace("# token_file", "token_file");
        if let Err(e) = exhook_config::Config::parse(&local, Path::new(&file)) {
            panic!("{file} is not a valid gateway configuration:\n{e}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Generates `base/prometheusrule.yaml` from alerts.yml with PyYAML: the groups re-emitted with
/// multi-line strings as literal blocks. (A verbatim copy of alerts.yml's folded `>-`
/// expressions does not survive kustomize: it re-serializes them with extra blank lines.)
const GENERATOR: &str = r#"
import sys, yaml
class D(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)
def s(d, v):
    return d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None)
D.add_representer(str, s)
alerts = yaml.safe_load(open(sys.argv[1]))
labels = {"app.kubernetes.io/name": "exhook-gateway", "app.kubernetes.io/part-of": "exhook-gateway"}
doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
       "metadata": {"name": "exhook-gateway", "labels": labels},
       "spec": {"groups": alerts["groups"]}}
sys.stdout.write(sys.argv[2] + yaml.dump(doc, Dumper=D, sort_keys=False, width=100, indent=2, allow_unicode=True))
"#;

const GENERATED_HEADER: &str = "# GENERATED from deploy/prometheus/alerts.yml by crates/deploy-check/tests/kubernetes.rs:\n\
     # do not edit. Regenerate with\n\
     #   EXHOOK_BLESS=1 cargo test -p exhook-deploy-check --test kubernetes prometheus_rule\n\
     # (the test fails when this file and alerts.yml differ).\n";

#[test]
fn prometheus_rule_carries_alerts_yml() {
    let test = "prometheus_rule_carries_alerts_yml";
    let Some(kv) = require_pip_tool(test, "kubernetes-validate", "kubernetes-validate") else { return };
    let out = Command::new(python(&kv))
        .args(["-c", GENERATOR])
        .arg(root().join(ALERTS))
        .arg(GENERATED_HEADER)
        .output()
        .expect("run python3 (PyYAML)");
    assert!(out.status.success(), "generator: {}", String::from_utf8_lossy(&out.stderr));
    let want = String::from_utf8(out.stdout).expect("UTF-8");
    if std::env::var_os("EXHOOK_BLESS").is_some() {
        std::fs::write(root().join(PROMETHEUS_RULE), &want).expect("write prometheusrule.yaml");
        return;
    }
    assert!(
        read(PROMETHEUS_RULE) == want,
        "{PROMETHEUS_RULE} is not generated from {ALERTS}: regenerate with \
         EXHOOK_BLESS=1 cargo test -p exhook-deploy-check --test kubernetes prometheus_rule"
    );
    // And it carries the same rules (also checked after kustomize, in kustomize_renders_...).
    let file = yaml_docs(&python(&kv), &want);
    let alerts = yaml_docs(&python(&kv), &read(ALERTS));
    assert_eq!(file[0]["spec"]["groups"], alerts[0]["groups"]);
}

#[test]
fn checkov_skips_are_justified_in_the_manifests() {
    // Every `checkov.io/skipN` annotation names a check and gives a reason.
    let text = read(&format!("{BASE}/deployment.yaml"));
    let mut found = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.trim_start().starts_with("checkov.io/skip") {
            // A folded scalar (`>-`): the more-indented lines that follow.
            let indent = l.len() - l.trim_start().len();
            let value: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|n| n.len() - n.trim_start().len() > indent)
                .map(|n| n.trim())
                .collect();
            let value = value.join(" ");
            let (id, reason) = value.trim().split_once('=').unwrap_or_else(|| panic!("annotation {l}: CHECK=reason"));
            assert!(reason.trim().len() > 40, "{id}: a real reason is needed, got {reason:?}");
            found.push(id.trim().to_string());
        }
    }
    found.sort();
    assert_eq!(found, CHECKOV_SKIPS);
}

#[test]
fn emqx_snippets_point_at_the_service() {
    let plain = "http://exhook-gateway.exhook.svc.cluster.local:9000";
    let tls = "https://exhook-gateway.exhook.svc.cluster.local:9443";
    let service = read(&format!("{BASE}/service.yaml"));
    assert!(
        service.contains("name: exhook-gateway\n") && service.contains("port: 9000") && service.contains("port: 9443")
    );
    assert!(read(&format!("{OVERLAY}/kustomization.yaml")).contains("namespace: exhook\n"));

    let v4 = read("deploy/emqx/emqx_exhook.conf");
    for key in [
        format!("exhook.server.gateway.url = {plain}"),
        format!("## exhook.server.gateway.url = {tls}"),
        "exhook.request_timeout = 5s".into(),
        "exhook.request_failed_action = deny".into(),
        "exhook.auto_reconnect = 60s".into(),
        "exhook.pool_size = 8".into(),
        "exhook.server.gateway.ssl.cacertfile".into(),
        "exhook.server.gateway.ssl.certfile".into(),
        "exhook.server.gateway.ssl.keyfile".into(),
    ] {
        assert!(v4.contains(&key), "emqx_exhook.conf lacks {key}");
    }
    let v5 = read("deploy/emqx/exhook.hocon");
    for key in [
        format!("url = \"{plain}\""),
        format!("url = \"{tls}\""),
        "request_timeout = \"5s\"".into(),
        "failed_action = deny".into(),
        "auto_reconnect = \"60s\"".into(),
        "pool_size = 8".into(),
        "verify = verify_peer".into(),
        "server_name_indication = \"exhook-gateway.exhook.svc.cluster.local\"".into(),
        "cacertfile".into(),
        "certfile".into(),
        "keyfile".into(),
    ] {
        assert!(v5.contains(&key), "exhook.hocon lacks {key}");
    }
    let operator = read("deploy/emqx/emqx-operator.yaml");
    assert!(operator.contains("apiVersion: apps.emqx.io/v2beta1\nkind: EMQX\n"));
    assert!(operator.contains(&format!("url = \"{plain}\"")));
    assert!(operator.contains("cluster.name = \"emqx-factory-a\""));
    assert!(read(&format!("{OVERLAY}/gateway.toml")).contains("cluster_names = [\"emqx-factory-a\"]"));
    let readme = read("deploy/emqx/README.md");
    for topic in [
        "`request_timeout`",
        "`failed_action`",
        "`pool_size`",
        "`auto_reconnect`",
        "max_concurrent_streams",
        "max_connections",
    ] {
        assert!(readme.contains(topic), "deploy/emqx/README.md explains {topic}");
    }
}
