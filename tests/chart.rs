//! The Helm chart `charts/ringwatch` as Helm and a cluster would take it, with no API server
//! and no helm binary: `tests/chart_check.py` drives helm-python-sdk (Helm v4's engine as a
//! library; PyPI) to lint the chart strictly, to render it for several values, with and without
//! prometheus-operator's PodMonitor API, and to feed bad values to its schema. Every rendered
//! built-in object passes `kubernetes-validate --strict` on Kubernetes 1.30 and 1.37, and the
//! MonitorCluster passes the CRD's own schema. The script prints facts one a line
//! (`<Kind>/<name> <dotted.path>=<JSON>`, `rule …`, `notes …`, `validate …`); the assertions
//! are here. `scripts/test.sh` installs both Python packages under `target/pytools`.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const INSTALL: &str = "/usr/bin/python3 -m pip install --target target/pytools \
                       --break-system-packages kubernetes-validate helm-python-sdk";

fn pytools() -> String {
    std::env::var("RINGWATCH_TEST_PYTHONPATH").unwrap_or_else(|_| format!("{ROOT}/target/pytools"))
}

/// `tests/chart_check.py args…`: its output (stdout, then stderr). Fails loudly, with the
/// install command, when the Python packages are missing, and when the script fails.
fn check(args: &[&str]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg(Path::new(ROOT).join("tests/chart_check.py"))
        .args(args)
        .env("PYTHONPATH", pytools())
        .output()
        .expect("run /usr/bin/python3 tests/chart_check.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("IMPORT FAILED") && !text.contains("No module named"),
        "helm-python-sdk or kubernetes-validate is missing: {INSTALL} (scripts/test.sh does it)\n{text}"
    );
    assert!(
        out.status.success(),
        "tests/chart_check.py {args:?} failed:\n{text}"
    );
    text
}

/// The chart rendered with `values` (JSON) and extra flags (`--name`, `--namespace`,
/// `--api-versions`); release `ringwatch` in namespace `monitoring` unless told otherwise.
fn render(values: &str, flags: &[&str]) -> String {
    let mut args = vec!["render", values];
    args.extend_from_slice(flags);
    check(&args)
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// Every line of `lines` is a line of `text`.
fn assert_lines(text: &str, lines: &[String]) {
    for line in lines {
        assert!(has(text, line), "missing line `{line}` in:\n{text}");
    }
}

/// `<ident> <path>=<value>` lines for one object.
fn facts(ident: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(path, value)| format!("{ident} {path}={value}"))
        .collect()
}

/// The objects rendered, as `Kind/name ns=namespace`, sorted.
fn docs(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("doc "))
        .map(|l| l.to_string())
        .collect();
    out.sort();
    out
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

/// A line of NOTES.txt containing `part`.
fn notes_has(text: &str, part: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("notes ") && l.contains(part))
}

/// The value printed after `prefix` on the line that starts with it.
fn value_of(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with `{prefix}` in:\n{text}"))
        .to_string()
}

/// Every built-in object of the render passed `kubernetes-validate --strict` on both versions
/// (MonitorCluster and PodMonitor are custom kinds it does not know), and nothing else ran.
fn assert_valid(text: &str) {
    let resources: Vec<String> = docs(text)
        .iter()
        .map(|d| d.split(' ').next().unwrap_or_default().to_string())
        .filter(|ident| !ident.starts_with("MonitorCluster/") && !ident.starts_with("PodMonitor/"))
        .map(|ident| ident.to_lowercase())
        .collect();
    assert!(
        resources.len() >= 7,
        "too few objects: {resources:?}\n{text}"
    );
    for version in ["1.30.0", "1.37.0"] {
        assert!(
            has(text, &format!("validate {version} rc=0")),
            "kubernetes-validate --strict -k {version} failed:\n{text}"
        );
        let prefix = format!("validate {version}: ");
        let passed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(" passed for resource "))
            .collect();
        assert_eq!(
            passed.len(),
            resources.len(),
            "Kubernetes {version}: {resources:?}\n{text}"
        );
        for resource in &resources {
            let needle = format!(" passed for resource {resource} against version ");
            assert!(
                passed.iter().any(|l| l.contains(&needle)),
                "{resource} not validated on Kubernetes {version}:\n{text}"
            );
        }
    }
}

const CHILD_VERBS: &str = r#"["create","delete","get","list","patch","watch"]"#;

/// The operator's rules (everything but its Lease): exactly the verbs it uses. Groups,
/// resources and verbs sorted.
const RULES: [(&str, &str, &str); 10] = [
    (
        r#"["ringwatch.dev"]"#,
        r#"["monitorclusters"]"#,
        r#"["get","list","patch","update","watch"]"#,
    ),
    (
        r#"["ringwatch.dev"]"#,
        r#"["monitorclusters/status"]"#,
        r#"["get","patch","update"]"#,
    ),
    (
        r#"["ringwatch.dev"]"#,
        r#"["monitorclusters/finalizers"]"#,
        r#"["update"]"#,
    ),
    (
        r#"[""]"#,
        r#"["configmaps","secrets","serviceaccounts","services"]"#,
        CHILD_VERBS,
    ),
    (
        r#"[""]"#,
        r#"["pods"]"#,
        r#"["delete","get","list","watch"]"#,
    ),
    (
        r#"["apps"]"#,
        r#"["daemonsets","statefulsets"]"#,
        CHILD_VERBS,
    ),
    (r#"["policy"]"#, r#"["poddisruptionbudgets"]"#, CHILD_VERBS),
    (
        r#"["networking.k8s.io"]"#,
        r#"["networkpolicies"]"#,
        CHILD_VERBS,
    ),
    (
        r#"["monitoring.coreos.com"]"#,
        r#"["podmonitors"]"#,
        CHILD_VERBS,
    ),
    (
        r#"["","events.k8s.io"]"#,
        r#"["events"]"#,
        r#"["create","patch"]"#,
    ),
];

const LEASE_RULE: (&str, &str, &str) = (
    r#"["coordination.k8s.io"]"#,
    r#"["leases"]"#,
    r#"["create","get","patch","update"]"#,
);

fn rule_line(rule: &(&str, &str, &str)) -> String {
    format!("groups={} resources={} verbs={}", rule.0, rule.1, rule.2)
}

/// The rules of the Role or ClusterRole `ident`, sorted.
fn rules_of(text: &str, ident: &str) -> Vec<String> {
    let prefix = format!("rule {ident} ");
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|l| l.to_string())
        .collect();
    out.sort();
    out
}

fn operator_rules() -> Vec<String> {
    let mut out: Vec<String> = RULES.iter().map(rule_line).collect();
    out.sort();
    out
}

/// Every optional value of the chart set.
const EVERY_VALUE: &str = r#"{
    "fullnameOverride": "obs",
    "imagePullSecrets": [{"name": "regcred"}],
    "priorityClassName": "system-cluster-critical",
    "podAnnotations": {"a": "b"},
    "podLabels": {"team": "obs"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchExpressions":
            [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
    "serviceAccount": {"create": true, "name": "rw-op", "annotations": {"x": "y"}},
    "logLevel": "debug,kube=info",
    "podMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "kps"}}
}"#;

#[test]
fn the_chart_ships_the_checked_in_crd() {
    let chart = std::fs::read(Path::new(ROOT).join("charts/ringwatch/crds/monitorcluster.yaml"))
        .expect("charts/ringwatch/crds/monitorcluster.yaml");
    let held = std::fs::read(Path::new(ROOT).join("crds/monitorcluster.yaml"))
        .expect("crds/monitorcluster.yaml");
    assert!(
        chart == held,
        "stale: cp crds/monitorcluster.yaml charts/ringwatch/crds/monitorcluster.yaml"
    );
    assert!(String::from_utf8_lossy(&chart).contains("name: monitorclusters.ringwatch.dev"));
}

#[test]
fn the_chart_passes_helm_lint_strict() {
    let text = check(&["lint"]);
    assert!(has(&text, "lint charts=1 errors=0"), "{text}");
    for bad in [
        "lint message severity=2",
        "lint message severity=3",
        "lint error",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(bad)),
            "helm lint --strict: {text}"
        );
    }
}

#[test]
fn the_schema_types_every_value_and_knows_the_crds_spec() {
    let text = check(&["schema"]);
    assert!(
        has(
            &text,
            "schema draft=http://json-schema.org/draft-07/schema#"
        ),
        "{text}"
    );
    assert!(
        has(&text, "schema top additionalProperties=false"),
        "{text}"
    );
    assert_eq!(
        value_of(&text, "schema top keys="),
        value_of(&text, "values top keys="),
        "values.yaml and values.schema.json name different keys:\n{text}"
    );
    assert!(
        has(&text, "schema untyped=[]"),
        "a value without a type:\n{text}"
    );
    let closed = value_of(&text, "schema closed objects=");
    for key in [
        "image",
        "monitorCluster",
        "podMonitor",
        "resources",
        "serviceAccount",
    ] {
        assert!(
            closed.contains(&format!("\"{key}\"")),
            "{key} should refuse unknown keys: {closed}"
        );
    }
    // A misspelt part of the MonitorCluster's spec is refused by helm, and the list cannot go
    // stale: it is the CRD's.
    let crd_keys = value_of(&text, "crd spec keys=");
    assert!(crd_keys.contains("\"broker\""), "{text}");
    assert_eq!(
        value_of(&text, "schema monitorCluster.spec keys="),
        crd_keys,
        "values.schema.json's monitorCluster.spec properties differ from the CRD's spec"
    );
    let metadata = value_of(&text, "chart metadata=");
    for part in [
        r#""apiVersion":"v2""#,
        r#""name":"ringwatch""#,
        r#""version":"0.1.0""#,
        r#""appVersion":"0.1.0""#,
        r#""kubeVersion":">=1.30.0-0""#,
    ] {
        assert!(
            metadata.contains(part),
            "Chart.yaml lacks {part}: {metadata}"
        );
    }
    assert!(
        has(&text, r#"chart crds=["crds/monitorcluster.yaml"]"#),
        "{text}"
    );
}

#[test]
fn the_default_render_is_the_operator_with_its_rbac_and_a_monitorcluster() {
    let text = render("{}", &[]);
    assert_eq!(
        docs(&text),
        sorted(&[
            "ClusterRole/monitoring-ringwatch-operator ns=",
            "ClusterRoleBinding/monitoring-ringwatch-operator ns=",
            "Deployment/ringwatch-operator ns=monitoring",
            "MonitorCluster/ringwatch ns=monitoring",
            "Role/ringwatch-operator-leader-election ns=monitoring",
            "RoleBinding/ringwatch-operator-leader-election ns=monitoring",
            "Service/ringwatch-operator ns=monitoring",
            "ServiceAccount/ringwatch-operator ns=monitoring",
        ]),
        "{text}"
    );
    let pod = [
        ("spec.replicas", "2"),
        (
            "spec.selector.matchLabels.app.kubernetes.io/name",
            r#""ringwatch-operator""#,
        ),
        (
            "spec.selector.matchLabels.app.kubernetes.io/instance",
            r#""ringwatch""#,
        ),
        // The brokers' NetworkPolicy admits this label to their admin port.
        (
            "spec.template.metadata.labels.app.kubernetes.io/name",
            r#""ringwatch-operator""#,
        ),
        (
            "spec.template.metadata.labels.app.kubernetes.io/instance",
            r#""ringwatch""#,
        ),
        (
            "spec.template.metadata.annotations.prometheus.io/scrape",
            r#""true""#,
        ),
        (
            "spec.template.metadata.annotations.prometheus.io/port",
            r#""8090""#,
        ),
        (
            "spec.template.metadata.annotations.prometheus.io/path",
            r#""/metrics""#,
        ),
        (
            "spec.template.spec.serviceAccountName",
            r#""ringwatch-operator""#,
        ),
        ("spec.template.spec.securityContext.runAsNonRoot", "true"),
        (
            "spec.template.spec.securityContext.seccompProfile.type",
            r#""RuntimeDefault""#,
        ),
    ];
    assert_lines(&text, &facts("Deployment/ringwatch-operator", &pod));
    let c = "spec.template.spec.containers.0";
    let container = [
        ("image", r#""ringwatch:0.1.0""#),
        ("imagePullPolicy", r#""IfNotPresent""#),
        ("args", r#"["operator","run"]"#),
        ("env.0.name", r#""POD_NAME""#),
        ("env.0.valueFrom.fieldRef.fieldPath", r#""metadata.name""#),
        ("env.1.name", r#""POD_NAMESPACE""#),
        (
            "env.1.valueFrom.fieldRef.fieldPath",
            r#""metadata.namespace""#,
        ),
        ("env.2.name", r#""RUST_LOG""#),
        ("env.2.value", r#""info""#),
        ("ports.0.name", r#""http""#),
        ("ports.0.containerPort", "8090"),
        ("livenessProbe.httpGet.path", r#""/health""#),
        ("livenessProbe.httpGet.port", r#""http""#),
        ("readinessProbe.httpGet.path", r#""/ready""#),
        ("readinessProbe.httpGet.port", r#""http""#),
        ("resources.requests.cpu", r#""50m""#),
        ("resources.requests.memory", r#""64Mi""#),
        ("resources.limits.memory", r#""256Mi""#),
        ("securityContext.runAsNonRoot", "true"),
        ("securityContext.runAsUser", "65532"),
        ("securityContext.readOnlyRootFilesystem", "true"),
        ("securityContext.allowPrivilegeEscalation", "false"),
        ("securityContext.capabilities.drop", r#"["ALL"]"#),
        ("securityContext.seccompProfile.type", r#""RuntimeDefault""#),
    ];
    let lines: Vec<String> = container
        .iter()
        .map(|(path, value)| format!("Deployment/ringwatch-operator {c}.{path}={value}"))
        .collect();
    assert_lines(&text, &lines);
    // No second container, no extra port, no limit on CPU (a throttled operator misses its
    // Lease renewals).
    assert!(
        !text.contains(&format!("{c}.resources.limits.cpu")),
        "{text}"
    );
    assert!(!text.contains("containers.1."), "{text}");
    assert!(!text.contains(&format!("{c}.ports.1.")), "{text}");

    assert_eq!(
        rules_of(&text, "ClusterRole/monitoring-ringwatch-operator"),
        operator_rules(),
        "the operator's ClusterRole:\n{text}"
    );
    assert_eq!(
        rules_of(&text, "Role/ringwatch-operator-leader-election"),
        vec![rule_line(&LEASE_RULE)],
        "the leader-election Role:\n{text}"
    );
    assert_lines(
        &text,
        &facts(
            "ClusterRoleBinding/monitoring-ringwatch-operator",
            &[
                ("roleRef.kind", r#""ClusterRole""#),
                ("roleRef.name", r#""monitoring-ringwatch-operator""#),
                ("subjects.0.kind", r#""ServiceAccount""#),
                ("subjects.0.name", r#""ringwatch-operator""#),
                ("subjects.0.namespace", r#""monitoring""#),
            ],
        ),
    );
    assert_lines(
        &text,
        &facts(
            "RoleBinding/ringwatch-operator-leader-election",
            &[
                ("roleRef.kind", r#""Role""#),
                ("roleRef.name", r#""ringwatch-operator-leader-election""#),
                ("subjects.0.name", r#""ringwatch-operator""#),
                ("subjects.0.namespace", r#""monitoring""#),
            ],
        ),
    );
    assert_lines(
        &text,
        &facts(
            "Service/ringwatch-operator",
            &[
                ("spec.ports.0.name", r#""http""#),
                ("spec.ports.0.port", "8090"),
                ("spec.ports.0.targetPort", r#""http""#),
                (
                    "spec.selector.app.kubernetes.io/name",
                    r#""ringwatch-operator""#,
                ),
                ("spec.selector.app.kubernetes.io/instance", r#""ringwatch""#),
            ],
        ),
    );
    assert_lines(
        &text,
        &facts(
            "MonitorCluster/ringwatch",
            &[
                ("apiVersion", r#""ringwatch.dev/v1alpha1""#),
                ("metadata.namespace", r#""monitoring""#),
                ("spec", "{}"),
                ("metadata.labels.app.kubernetes.io/managed-by", r#""Helm""#),
                // Kept by `helm uninstall`: its finalizer needs the operator.
                ("metadata.annotations.helm.sh/resource-policy", r#""keep""#),
            ],
        ),
    );
    assert!(
        has(&text, "crd-check MonitorCluster/ringwatch: ok"),
        "{text}"
    );
    // Standard labels on every object.
    assert!(has(&text, "standard-labels checked 8"), "{text}");
    assert!(!text.contains("labels-missing"), "{text}");
    assert_lines(
        &text,
        &facts(
            "Deployment/ringwatch-operator",
            &[
                ("metadata.labels.app.kubernetes.io/version", r#""0.1.0""#),
                ("metadata.labels.app.kubernetes.io/managed-by", r#""Helm""#),
                ("metadata.labels.helm.sh/chart", r#""ringwatch-0.1.0""#),
            ],
        ),
    );
    assert!(
        notes_has(
            &text,
            "kubectl -n monitoring port-forward svc/ringwatch-viz 8080:8080"
        ),
        "NOTES.txt:\n{text}"
    );
    assert!(notes_has(&text, "kubectl -n monitoring get mc"), "{text}");
    assert_valid(&text);
}

#[test]
fn watching_one_namespace_is_a_role_there_and_the_flag() {
    let text = render(
        r#"{"watchNamespace":"team-a"}"#,
        &["--name", "rw", "--namespace", "ops"],
    );
    assert_eq!(
        docs(&text),
        sorted(&[
            "Deployment/rw-ringwatch-operator ns=ops",
            "MonitorCluster/ringwatch ns=team-a",
            "Role/rw-ringwatch-operator ns=team-a",
            "Role/rw-ringwatch-operator-leader-election ns=ops",
            "RoleBinding/rw-ringwatch-operator ns=team-a",
            "RoleBinding/rw-ringwatch-operator-leader-election ns=ops",
            "Service/rw-ringwatch-operator ns=ops",
            "ServiceAccount/rw-ringwatch-operator ns=ops",
        ]),
        "no ClusterRole when one namespace is watched:\n{text}"
    );
    assert_eq!(
        rules_of(&text, "Role/rw-ringwatch-operator"),
        operator_rules(),
        "{text}"
    );
    assert_eq!(
        rules_of(&text, "Role/rw-ringwatch-operator-leader-election"),
        vec![rule_line(&LEASE_RULE)],
        "{text}"
    );
    assert_lines(
        &text,
        &facts(
            "Deployment/rw-ringwatch-operator",
            &[
                (
                    "spec.template.spec.containers.0.args",
                    r#"["operator","run","--namespace","team-a"]"#,
                ),
                (
                    "spec.template.metadata.labels.app.kubernetes.io/name",
                    r#""ringwatch-operator""#,
                ),
                (
                    "spec.template.metadata.labels.app.kubernetes.io/instance",
                    r#""rw""#,
                ),
                (
                    "spec.template.spec.serviceAccountName",
                    r#""rw-ringwatch-operator""#,
                ),
            ],
        ),
    );
    assert_lines(
        &text,
        &facts(
            "RoleBinding/rw-ringwatch-operator",
            &[
                ("roleRef.kind", r#""Role""#),
                ("roleRef.name", r#""rw-ringwatch-operator""#),
                ("subjects.0.name", r#""rw-ringwatch-operator""#),
                ("subjects.0.namespace", r#""ops""#),
            ],
        ),
    );
    assert!(
        notes_has(
            &text,
            "kubectl -n team-a port-forward svc/ringwatch-viz 8080:8080"
        ),
        "{text}"
    );
    assert!(notes_has(&text, "kubectl -n team-a get mc"), "{text}");
    assert_valid(&text);
}

#[test]
fn variants_render_what_they_say_and_validate() {
    // No MonitorCluster: the operator alone, and NOTES says how to make one.
    let text = render(r#"{"monitorCluster":{"create":false}}"#, &[]);
    assert!(
        !docs(&text).iter().any(|d| d.starts_with("MonitorCluster/")),
        "{text}"
    );
    assert_eq!(docs(&text).len(), 7, "{text}");
    assert!(
        notes_has(
            &text,
            "port-forward svc/<monitorcluster-name>-viz 8080:8080"
        ),
        "{text}"
    );
    assert!(notes_has(&text, "kubectl -n monitoring get mc"), "{text}");
    assert_valid(&text);

    // One replica.
    let text = render(r#"{"replicas":1}"#, &[]);
    assert!(
        has(&text, "Deployment/ringwatch-operator spec.replicas=1"),
        "{text}"
    );
    assert_valid(&text);

    // A MonitorCluster of another name with five brokers: the spec as given, valid for the CRD.
    let text = render(
        r#"{"monitorCluster":{"name":"edge","spec":{"broker":{"replicas":5}}}}"#,
        &[],
    );
    assert!(
        has(&text, "MonitorCluster/edge spec.broker.replicas=5"),
        "{text}"
    );
    assert!(has(&text, "crd-check MonitorCluster/edge: ok"), "{text}");
    assert!(
        notes_has(
            &text,
            "kubectl -n monitoring port-forward svc/edge-viz 8080:8080"
        ),
        "{text}"
    );
    assert_valid(&text);

    // Another image.
    let text = render(
        r#"{"image":{"repository":"registry.example/ringwatch","tag":"dev","pullPolicy":"Always"}}"#,
        &[],
    );
    assert_lines(
        &text,
        &facts(
            "Deployment/ringwatch-operator",
            &[
                (
                    "spec.template.spec.containers.0.image",
                    r#""registry.example/ringwatch:dev""#,
                ),
                (
                    "spec.template.spec.containers.0.imagePullPolicy",
                    r#""Always""#,
                ),
            ],
        ),
    );
    assert_valid(&text);

    // Every optional value set: each branch of the templates renders valid objects.
    let text = render(
        EVERY_VALUE,
        &["--api-versions", "monitoring.coreos.com/v1/PodMonitor"],
    );
    assert_lines(
        &text,
        &facts(
            "Deployment/obs-operator",
            &[
                ("spec.template.spec.serviceAccountName", r#""rw-op""#),
                ("spec.template.spec.imagePullSecrets.0.name", r#""regcred""#),
                (
                    "spec.template.spec.priorityClassName",
                    r#""system-cluster-critical""#,
                ),
                ("spec.template.metadata.labels.team", r#""obs""#),
                ("spec.template.metadata.annotations.a", r#""b""#),
                (
                    "spec.template.spec.nodeSelector.kubernetes.io/os",
                    r#""linux""#,
                ),
                ("spec.template.spec.tolerations.0.key", r#""k""#),
                (
                    "spec.template.spec.containers.0.env.2.value",
                    r#""debug,kube=info""#,
                ),
            ],
        ),
    );
    assert!(
        has(
            &text,
            r#"PodMonitor/obs-operator metadata.labels.release="kps""#
        ),
        "{text}"
    );
    assert!(
        has(
            &text,
            r#"PodMonitor/obs-operator spec.podMetricsEndpoints.0.interval="15s""#
        ),
        "{text}"
    );
    assert!(
        has(&text, r#"ServiceAccount/rw-op metadata.annotations.x="y""#),
        "{text}"
    );
    // A given affinity replaces the default (replicas on different nodes).
    assert!(!text.contains("podAntiAffinity"), "{text}");
    assert_valid(&text);
}

#[test]
fn the_pod_monitor_is_made_only_when_its_crd_exists() {
    let api = "monitoring.coreos.com/v1/PodMonitor";
    let text = render("{}", &["--api-versions", api]);
    assert!(
        docs(&text).contains(&"PodMonitor/ringwatch-operator ns=monitoring".to_string()),
        "{text}"
    );
    assert_lines(
        &text,
        &facts(
            "PodMonitor/ringwatch-operator",
            &[
                ("apiVersion", r#""monitoring.coreos.com/v1""#),
                (
                    "spec.selector.matchLabels.app.kubernetes.io/name",
                    r#""ringwatch-operator""#,
                ),
                (
                    "spec.selector.matchLabels.app.kubernetes.io/instance",
                    r#""ringwatch""#,
                ),
                ("spec.podMetricsEndpoints.0.port", r#""http""#),
                ("spec.podMetricsEndpoints.0.path", r#""/metrics""#),
                ("spec.podMetricsEndpoints.0.interval", r#""30s""#),
            ],
        ),
    );
    // The scrape annotations stay for an annotation-driven Prometheus.
    assert!(
        has(
            &text,
            r#"Deployment/ringwatch-operator spec.template.metadata.annotations.prometheus.io/scrape="true""#
        ),
        "{text}"
    );
    assert_valid(&text);

    let text = render(
        r#"{"podMonitor":{"enabled":false}}"#,
        &["--api-versions", api],
    );
    assert!(
        !docs(&text).iter().any(|d| d.starts_with("PodMonitor/")),
        "podMonitor.enabled=false still made one:\n{text}"
    );

    let text = render("{}", &[]);
    assert!(
        !docs(&text).iter().any(|d| d.starts_with("PodMonitor/")),
        "a PodMonitor without its CRD:\n{text}"
    );
    assert!(
        has(
            &text,
            r#"Deployment/ringwatch-operator spec.template.metadata.annotations.prometheus.io/port="8090""#
        ),
        "{text}"
    );
}

#[test]
fn bad_values_are_refused_with_the_key_named() {
    // The control: good values pass both ways, so the refusals below mean something.
    let text = check(&["reject", r#"{"replicas":3,"watchNamespace":"team-a"}"#]);
    assert!(has(&text, "render accepted"), "{text}");
    assert!(has(&text, "lint accepted"), "{text}");

    let cases = [
        (r#"{"replicas":"two"}"#, "/replicas"),
        (r#"{"replicaz":2}"#, "replicaz"),
        (
            r#"{"image":{"pullPolicy":"Sometimes"}}"#,
            "/image/pullPolicy",
        ),
        (
            r#"{"monitorCluster":{"spec":{"brokers":{"replicas":5}}}}"#,
            "brokers",
        ),
        (
            r#"{"monitorCluster":{"name":"My.Cluster"}}"#,
            "/monitorCluster/name",
        ),
        (r#"{"watchNamespace":"Team_A"}"#, "/watchNamespace"),
        (
            r#"{"resources":{"requests":{"cpu":"lots"}}}"#,
            "/resources/requests/cpu",
        ),
        (r#"{"podMonitor":{"enabled":"yes"}}"#, "/podMonitor/enabled"),
    ];
    for (values, key) in cases {
        let text = check(&["reject", values]);
        let render_line = value_of(&text, "render ");
        assert!(
            render_line.starts_with("rejected HelmValuesError") && render_line.contains(key),
            "{values} should be refused naming {key}:\n{text}"
        );
        let lint_line = value_of(&text, "lint ");
        assert!(
            lint_line.starts_with("rejected") && lint_line.contains(key),
            "helm lint should refuse {values} naming {key}:\n{text}"
        );
    }
}

#[test]
fn the_monitorcluster_check_catches_what_the_api_server_would() {
    // The check the rendered MonitorCluster passes is not vacuous: out of range, unknown
    // fields and bad enum values inside a spec part are caught against the CRD's schema.
    let text = render(
        r#"{"monitorCluster":{"spec":{"broker":{"replicas":500,"replica":3},"viz":{"serviceType":"Cloud"}}}}"#,
        &[],
    );
    let line = value_of(&text, "crd-check MonitorCluster/ringwatch: ");
    assert!(line.contains("broker.replicas: 500"), "{line}");
    assert!(line.contains("unknown field spec.broker.replica"), "{line}");
    assert!(line.contains("viz.serviceType"), "{line}");
}

/// Every API call the operator makes (`ringwatch_operator::controller::API_CALLS`, which the
/// reconcile tests hold the operator to) is granted by the chart's rules, whether it watches
/// every namespace or one.
#[test]
fn the_chart_grants_every_call_the_operator_makes() {
    for values in ["{}", r#"{"watchNamespace": "team-a"}"#] {
        let text = render(values, &[]);
        let rules: Vec<(Vec<String>, Vec<String>, Vec<String>)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("rule "))
            .map(|l| {
                let field = |name: &str| -> Vec<String> {
                    let start = l.find(&format!("{name}=")).expect(name) + name.len() + 1;
                    let rest = &l[start..];
                    let end = rest.find(']').expect("a list") + 1;
                    serde_json::from_str(&rest[..end]).expect("a JSON list")
                };
                (field("groups"), field("resources"), field("verbs"))
            })
            .collect();
        assert!(!rules.is_empty(), "{text}");
        for (group, resource, verb) in ringwatch_operator::controller::API_CALLS {
            let granted = rules.iter().any(|(g, r, v)| {
                g.iter().any(|x| x == group)
                    && r.iter().any(|x| x == resource)
                    && v.iter().any(|x| x == verb)
            });
            assert!(
                granted,
                "{values}: {verb} {group}/{resource} is not granted\n{text}"
            );
        }
    }
}
