//! The MonitorCluster CRD as a cluster would take it: `ringwatch operator crd` prints exactly
//! the checked-in `crds/monitorcluster.yaml`, and that file passes `kubernetes-validate
//! --strict` (PyPI; `scripts/test.sh` installs it under `target/pytools`) against the oldest and
//! newest Kubernetes versions it knows that we support. No API server runs here.

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

#[test]
fn the_crd_passes_kubernetes_validate_strict() {
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new("/usr/bin/python3")
            .args(["-m", "kubernetes_validate", "--strict", "-k", version])
            .arg(Path::new(ROOT).join("crds/monitorcluster.yaml"))
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
        assert!(out.status.success(), "Kubernetes {version}: {text}");
        assert!(
            text.contains(
                "passed for resource customresourcedefinition/monitorclusters.ringwatch.dev"
            ),
            "{text}"
        );
    }
}
