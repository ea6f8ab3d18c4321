//! Sample MonitorClusters against the CRD as the API server checks them: its OpenAPI schema's
//! CEL rules (`x-kubernetes-validations`, evaluated by kube-cel) and the Rust types. The good
//! samples (`examples/`) pass; the bad ones are refused with the message a user would see.

use kube::CustomResourceExt;
use kube_cel::Validator;
use ringwatch_operator::MonitorCluster;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(MonitorCluster::crd()).expect("crd");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The messages of the CEL rules `object` breaks (defaults applied first, as the server does).
fn refusals(object: &Value) -> Vec<String> {
    Validator::new()
        .validate_with_defaults(&schema(), object, None)
        .into_iter()
        .map(|e| e.message)
        .collect()
}

fn sample(name: &str) -> Value {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    serde_yaml_ng::from_str(&text).expect("yaml")
}

#[test]
fn the_examples_pass_the_rules_and_read_as_the_types() {
    for name in ["monitorcluster.yaml", "monitorcluster-sentinel.yaml"] {
        let object = sample(name);
        assert_eq!(refusals(&object), Vec::<String>::new(), "{name}");
        let mc: MonitorCluster = serde_json::from_value(object).expect(name);
        assert!(mc.spec.broker.replicas >= 1, "{name}");
    }
}

#[test]
fn bad_samples_are_refused_with_the_message_a_user_sees() {
    let with_storage = |storage: Value| {
        json!({
            "apiVersion": "ringwatch.dev/v1alpha1",
            "kind": "MonitorCluster",
            "metadata": {"name": "bad"},
            "spec": {"broker": {"storage": storage}},
        })
    };
    for (storage, message) in [
        (
            json!({"embedded": {"size": "1Gi"}, "redis": {"addresses": ["redis://r:6379"]}}),
            "storage: embedded or redis, not both",
        ),
        (
            json!({"redis": {"mode": "sentinel", "addresses": ["redis://s:26379"]}}),
            "redis: sentinel mode needs masterName",
        ),
        (
            json!({"redis": {"mode": "standalone", "addresses": []}}),
            "redis: at least one address (redis:// or rediss://)",
        ),
    ] {
        let got = refusals(&with_storage(storage.clone()));
        assert!(
            got.iter().any(|m| m == message),
            "{storage}: wanted {message:?}, got {got:?}"
        );
    }
    // And the good forms of the same fields pass.
    for storage in [
        json!({"embedded": {"size": "1Gi"}}),
        json!({"redis": {"mode": "cluster", "addresses": ["redis://r:6379"]}}),
        json!({}),
    ] {
        assert_eq!(
            refusals(&with_storage(storage.clone())),
            Vec::<String>::new(),
            "{storage}"
        );
    }
}

#[test]
fn the_storage_cannot_change_once_the_cluster_exists() {
    let with_storage = |storage: Value| {
        json!({
            "apiVersion": "ringwatch.dev/v1alpha1",
            "kind": "MonitorCluster",
            "metadata": {"name": "mc"},
            "spec": {"broker": {"storage": storage}},
        })
    };
    let errors = |new: &Value, old: &Value| -> Vec<String> {
        Validator::new()
            .validate_with_defaults(&schema(), new, Some(old))
            .into_iter()
            .map(|e| e.message)
            .collect()
    };
    let small = with_storage(json!({"embedded": {"size": "10Gi"}}));
    let big = with_storage(json!({"embedded": {"size": "50Gi"}}));
    let redis = with_storage(json!({"redis": {"addresses": ["redis://r:6379"]}}));
    let other_redis = with_storage(json!({"redis": {"addresses": ["redis://s:6379"]}}));
    assert!(
        errors(&big, &small)
            .iter()
            .any(|m| m.contains("storage.embedded cannot change")),
        "{:?}",
        errors(&big, &small)
    );
    assert!(
        errors(&redis, &small)
            .iter()
            .any(|m| m.contains("chosen when the cluster is made")),
        "{:?}",
        errors(&redis, &small)
    );
    // What can change does: the same storage, and Redis's addresses.
    assert_eq!(errors(&small, &small), Vec::<String>::new());
    assert_eq!(errors(&other_redis, &redis), Vec::<String>::new());
    // A new cluster may choose either.
    assert_eq!(refusals(&big), Vec::<String>::new());

    // TLS on or off is chosen once too.
    let tls = |on: bool| {
        json!({
            "apiVersion": "ringwatch.dev/v1alpha1",
            "kind": "MonitorCluster",
            "metadata": {"name": "mc"},
            "spec": {"tls": {"enabled": on}},
        })
    };
    assert!(
        errors(&tls(false), &tls(true))
            .iter()
            .any(|m| m.contains("tls.enabled is chosen")),
        "{:?}",
        errors(&tls(false), &tls(true))
    );
    assert_eq!(errors(&tls(true), &tls(true)), Vec::<String>::new());

    // So is the ring's vnodes.
    let vnodes = |n: u32| {
        json!({
            "apiVersion": "ringwatch.dev/v1alpha1",
            "kind": "MonitorCluster",
            "metadata": {"name": "mc"},
            "spec": {"broker": {"vnodes": n}},
        })
    };
    assert!(
        errors(&vnodes(100), &vnodes(50))
            .iter()
            .any(|m| m.contains("broker.vnodes is set when the cluster is made")),
        "{:?}",
        errors(&vnodes(100), &vnodes(50))
    );
    assert_eq!(errors(&vnodes(100), &vnodes(100)), Vec::<String>::new());
}

#[test]
fn a_name_its_children_could_not_carry_is_refused() {
    let named = |name: &str| {
        json!({
            "apiVersion": "ringwatch.dev/v1alpha1",
            "kind": "MonitorCluster",
            "metadata": {"name": name},
            "spec": {},
        })
    };
    for bad in ["9lives", "has.dot", &"a".repeat(41)] {
        assert!(
            refusals(&named(bad))
                .iter()
                .any(|m| m.contains("metadata.name")),
            "{bad}: {:?}",
            refusals(&named(bad))
        );
    }
    assert_eq!(refusals(&named("ringwatch-prod")), Vec::<String>::new());
}
