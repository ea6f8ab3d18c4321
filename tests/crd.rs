//! The MonitorCluster CRD as a cluster would take it: `ringwatch operator crd` prints exactly
//! the checked-in `crds/monitorcluster.yaml`, and that file passes `kubernetes-validate
//! --strict` (PyPI; `scripts/test.sh` installs it under `target/pytools`) against the oldest and
//! newest Kubernetes versions it knows that we support; so does every object `ringwatch
//! operator render` makes for several MonitorClusters (the samples and variants that switch
//! TLS, policies, storage, service type and scheduling). No API server runs here.

mod common;

use std::path::Path;
use std::process::Command;

use common::BIN;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn pytools() -> String {
    std::env::var("RINGWATCH_TEST_PYTHONPATH").unwrap_or_else(|_| format!("{ROOT}/target/pytools"))
}

#[test]
fn the_cli_prints_the_checked_in_crd() {
    let out = Command::new(BIN)
        .args(["operator", "crd"])
        .output()
        .expect("run ringwatch operator crd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held = std::fs::read_to_string(Path::new(ROOT).join("crds/monitorcluster.yaml"))
        .expect("crds/monitorcluster.yaml");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        held,
        "stale: run `cargo run -- operator crd > crds/monitorcluster.yaml`"
    );
}

/// `kubernetes-validate --strict -k version file`: whether it passed, and what it said.
fn kubernetes_validate(version: &str, file: &Path) -> (bool, String) {
    let out = Command::new("/usr/bin/python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", version])
        .arg(file)
        .env("PYTHONPATH", pytools())
        .output()
        .expect("run python3 -m kubernetes_validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "kubernetes-validate is missing: /usr/bin/python3 -m pip install --target target/pytools \
         --break-system-packages kubernetes-validate (scripts/test.sh does it)\n{text}"
    );
    (out.status.success(), text)
}

#[test]
fn the_crd_passes_kubernetes_validate_strict() {
    for version in ["1.30.0", "1.37.0"] {
        let (ok, text) =
            kubernetes_validate(version, &Path::new(ROOT).join("crds/monitorcluster.yaml"));
        assert!(ok, "Kubernetes {version}: {text}");
        assert!(
            text.contains(
                "passed for resource customresourcedefinition/monitorclusters.ringwatch.dev"
            ),
            "{text}"
        );
    }
}

/// MonitorClusters whose children are validated: the samples, and variants that switch every
/// branch of the builders.
fn variants() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ["monitorcluster.yaml", "monitorcluster-sentinel.yaml"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(Path::new(ROOT).join("examples").join(f))
                .expect("the sample");
            (f.to_string(), text)
        })
        .collect();
    out.push((
        "plain, open, exposed, scheduled".into(),
        r#"
apiVersion: ringwatch.dev/v1alpha1
kind: MonitorCluster
metadata: {name: lab, namespace: lab}
spec:
  tls: {enabled: false}
  networkPolicy: {enabled: false}
  monitoring: {podMonitor: false}
  agent:
    collect: {interval: 1s}
    tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
    nodeSelector: {kubernetes.io/os: linux}
    priorityClassName: system-node-critical
    resources: {requests: {cpu: 10m, memory: 24Mi}, limits: {memory: 64Mi}}
  broker:
    replicas: 5
    retention: 2d
    raft: {heartbeat: 100ms, election_timeout: 300ms}
    storage: {embedded: {size: 50Gi, storageClassName: fast}}
  viz:
    replicas: 2
    serviceType: LoadBalancer
    authSecretRef: {name: viz-jwt}
    tlsSecretRef: {name: viz-quic}
"#
        .into(),
    ));
    out.push((
        "redis cluster over TLS, cert-manager certificates".into(),
        r#"
apiVersion: ringwatch.dev/v1alpha1
kind: MonitorCluster
metadata: {name: big}
spec:
  tls: {secretRef: {name: big-broker-cert}}
  broker:
    replicas: 7
    storage:
      redis:
        mode: cluster
        addresses: ["rediss://redis-0:6380", "rediss://redis-1:6380"]
        secretRef: {name: redis-creds}
  viz: {serviceType: NodePort}
"#
        .into(),
    ));
    out
}

#[test]
fn every_generated_manifest_passes_kubernetes_validate_strict() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, yaml)) in variants().into_iter().enumerate() {
        let input = dir.path().join(format!("mc-{i}.yaml"));
        std::fs::write(&input, &yaml).unwrap();
        let out = Command::new(BIN)
            .args(["operator", "render", "--namespace", "monitoring"])
            .arg(&input)
            .output()
            .expect("run ringwatch operator render");
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8(out.stdout).unwrap();
        let documents = rendered.matches("\n---\n").count() + 1;
        let pod_monitors = rendered.matches("kind: PodMonitor").count();
        let manifests = dir.path().join(format!("children-{i}.yaml"));
        std::fs::write(&manifests, &rendered).unwrap();
        for version in ["1.30.0", "1.37.0"] {
            let (ok, text) = kubernetes_validate(version, &manifests);
            assert!(ok, "{what}, Kubernetes {version}: {text}");
            let passed = text.matches(" passed for resource ").count();
            // prometheus-operator's PodMonitor has no schema in Kubernetes' own set.
            assert_eq!(
                passed + pod_monitors,
                documents,
                "{what}, {version}: {text}"
            );
            assert!(
                !text.contains("ERROR") && !text.contains("failed"),
                "{what}: {text}"
            );
        }
    }
}

#[test]
fn the_validator_refuses_a_manifest_with_a_misspelt_field() {
    // The strict check bites: the same rendered StatefulSet with one field misspelt fails.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mc.yaml");
    std::fs::copy(Path::new(ROOT).join("examples/monitorcluster.yaml"), &input).unwrap();
    let out = Command::new(BIN)
        .args(["operator", "render"])
        .arg(&input)
        .output()
        .expect("run ringwatch operator render");
    assert!(out.status.success());
    let rendered = String::from_utf8(out.stdout).unwrap();
    let broken = rendered.replacen("podManagementPolicy:", "podManagmentPolicy:", 1);
    assert_ne!(broken, rendered);
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let (ok, text) = kubernetes_validate("1.37.0", &file);
    assert!(!ok, "a misspelt field must fail: {text}");
    assert!(text.contains("podManagmentPolicy"), "{text}");
}

#[test]
fn render_refuses_what_is_not_a_monitorcluster() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.yaml");
    std::fs::write(
        &input,
        "apiVersion: v1\nkind: MonitorCluster\nspec: {broker: {replicas: many}}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["operator", "render"])
        .arg(&input)
        .output()
        .expect("run ringwatch operator render");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a MonitorCluster") && err.contains("replicas"),
        "{err}"
    );
}
