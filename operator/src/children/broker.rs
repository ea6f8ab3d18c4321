//! The brokers: a StatefulSet (one PersistentVolumeClaim each for the Raft log and the embedded
//! store), the headless Service that gives each pod its stable DNS name (published before the
//! pod is ready, so Raft can form and the operator can join it), the ingest Service agents and
//! viz connect to, and a PodDisruptionBudget of one.
//!
//! Pods are replaced only by the operator (`OnDelete`): an image or config change rolls one
//! broker at a time, each back and caught up before the next. Pods start in parallel: a new
//! broker is not ready until the operator has joined it, so ordered start would wait forever.

use serde_json::{Value, json};

use super::config::{AUTH_DIR, CONFIG_DIR, DATA_DIR, REDIS_DIR, TLS_DIR};
use super::{BrokerPlan, Child, Ctx, Kind, pod_annotations, probe, resources, restricted};
use crate::names::{BROKER_ADMIN_PORT, BROKER_GRPC_PORT, Tier};

pub(crate) fn build(ctx: &Ctx, plan: BrokerPlan, hash: &str) -> Vec<Child> {
    let n = &ctx.names;
    let name = n.tier(Tier::Broker);
    let selector = n.selector(Tier::Broker);
    let spec = &ctx.mc.spec.broker;
    let ports = json!([
        {"name": "grpc", "port": BROKER_GRPC_PORT, "targetPort": "grpc"},
        {"name": "admin", "port": BROKER_ADMIN_PORT, "targetPort": "admin"},
    ]);
    let headless = ctx.object(
        Kind::Service,
        &n.broker_peers(),
        Some(Tier::Broker),
        json!({"spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": selector,
            "ports": ports,
        }}),
    );
    let ingest = ctx.object(
        Kind::Service,
        &n.broker_ingest(),
        Some(Tier::Broker),
        json!({"spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "grpc", "port": BROKER_GRPC_PORT, "targetPort": "grpc"}],
        }}),
    );
    // Voluntary evictions (node drains) keep a Raft majority of the spec's brokers running.
    let budget = if spec.replicas >= 2 {
        json!({"minAvailable": spec.replicas / 2 + 1})
    } else {
        json!({"maxUnavailable": 1})
    };
    let mut pdb_spec = budget;
    pdb_spec["selector"] = json!({"matchLabels": selector});
    let pdb = ctx.object(
        Kind::PodDisruptionBudget,
        &name,
        Some(Tier::Broker),
        json!({"spec": pdb_spec}),
    );
    let host = format!("$(POD_NAME).{}.{}.svc", n.broker_peers(), n.namespace);
    let scheme = if ctx.tls_on() { "https" } else { "http" };
    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "RINGWATCH_BROKER_NODE_ID", "value": "$(POD_NAME)"}),
        json!({"name": "RINGWATCH_BROKER_ADVERTISE_GRPC", "value": format!("{scheme}://{host}:{BROKER_GRPC_PORT}")}),
        json!({"name": "RINGWATCH_BROKER_ADVERTISE_ADMIN", "value": format!("{host}:{BROKER_ADMIN_PORT}")}),
        json!({"name": "RUST_LOG", "value": "info"}),
    ];
    let mut mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
        json!({"name": "auth", "mountPath": AUTH_DIR, "readOnly": true}),
        json!({"name": "data", "mountPath": DATA_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": name}}),
        json!({"name": "auth", "secret": {"secretName": n.auth_secret(), "defaultMode": 0o440}}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}),
    ];
    if ctx.tls_on() {
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
        volumes.push(
            json!({"name": "tls", "secret": {"secretName": ctx.tls_secret_name(), "defaultMode": 0o440}}),
        );
    }
    if let Some(secret) = spec
        .storage
        .redis
        .as_ref()
        .and_then(|r| r.secret_ref.as_ref())
    {
        let key = |k: &str, var: &str| json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": k, "optional": true}}});
        env.push(key("username", "RINGWATCH_BROKER_REDIS_USERNAME"));
        env.push(key("password", "RINGWATCH_BROKER_REDIS_PASSWORD"));
        mounts.push(json!({"name": "redis", "mountPath": REDIS_DIR, "readOnly": true}));
        volumes.push(
            json!({"name": "redis", "secret": {"secretName": secret.name, "defaultMode": 0o440}}),
        );
    }
    let container = json!({
        "name": "broker",
        "image": spec.image,
        "args": ["broker", "--config", format!("{CONFIG_DIR}/broker.yaml")],
        "env": env,
        "ports": [
            {"name": "grpc", "containerPort": BROKER_GRPC_PORT},
            {"name": "admin", "containerPort": BROKER_ADMIN_PORT},
        ],
        "volumeMounts": mounts,
        "resources": resources(&spec.resources, "250m", "512Mi", "2Gi"),
        "securityContext": restricted(),
        "livenessProbe": probe("/health", BROKER_ADMIN_PORT, 10, 6),
        "readinessProbe": probe("/ready", BROKER_ADMIN_PORT, 5, 2),
        "startupProbe": probe("/health", BROKER_ADMIN_PORT, 2, 150),
    });
    let (size, class) = match &spec.storage.embedded {
        Some(e) => (e.size.clone(), e.storage_class_name.clone()),
        // The Raft log only, when samples live in Redis.
        None if spec.storage.redis.is_some() => ("1Gi".to_string(), None),
        None => ("10Gi".to_string(), None),
    };
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    });
    if let Some(c) = class {
        claim_spec["storageClassName"] = json!(c);
    }
    let mut template = pod_template(
        ctx,
        Tier::Broker,
        hash,
        BROKER_ADMIN_PORT,
        container,
        volumes,
    );
    template["spec"]["affinity"] = spread_out(&selector);
    template["spec"]["topologySpreadConstraints"] = json!([{
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector},
    }]);
    let sts = ctx.object(
        Kind::StatefulSet,
        &name,
        Some(Tier::Broker),
        json!({"spec": {
            "replicas": plan.replicas,
            "serviceName": n.broker_peers(),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            // A drained broker's volume is empty of anything the cluster needs; kept when the
            // MonitorCluster is deleted (the data outlives a mistaken delete).
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"},
            "selector": {"matchLabels": selector},
            "template": template,
            "volumeClaimTemplates": [{
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "labels": selector},
                "spec": claim_spec,
            }],
        }}),
    );
    vec![headless, ingest, pdb, sts]
}

/// Prefer one pod of the tier per node (a node lost takes one voter, not a majority).
pub(crate) fn spread_out(selector: &std::collections::BTreeMap<String, String>) -> Value {
    json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": selector},
            "topologyKey": "kubernetes.io/hostname",
        },
    }]}})
}

/// A pod template with the tier's labels, annotations, ServiceAccount and pod security context.
pub(crate) fn pod_template(
    ctx: &Ctx,
    tier: Tier,
    hash: &str,
    metrics_port: u16,
    container: Value,
    volumes: Vec<Value>,
) -> Value {
    json!({
        "metadata": {
            "labels": ctx.names.labels(Some(tier)),
            "annotations": pod_annotations(hash, metrics_port),
        },
        "spec": {
            "serviceAccountName": ctx.names.tier(tier),
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": 60,
            "containers": [container],
            "volumes": volumes,
        },
    })
}
