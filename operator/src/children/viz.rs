//! viz: a StatefulSet (each replica holds the dashboard snapshot in memory; a stable name per
//! replica keeps its QUIC certificate and logs apart), its Service and a PodDisruptionBudget.

use serde_json::json;

use super::broker::{pod_template, spread_out};
use super::config::{CONFIG_DIR, TLS_DIR, TOKEN_DIR, VIZ_AUTH_DIR, VIZ_TLS_DIR};
use super::{Child, Ctx, Kind, probe, resources, restricted};
use crate::names::{Tier, VIZ_HTTP_PORT, VIZ_QUIC_PORT};

pub(crate) fn build(ctx: &Ctx, hash: &str) -> Vec<Child> {
    let n = &ctx.names;
    let name = n.tier(Tier::Viz);
    let selector = n.selector(Tier::Viz);
    let spec = &ctx.mc.spec.viz;
    let service_type = serde_json::to_value(spec.service_type).unwrap_or(json!("ClusterIP"));
    let service = ctx.object(
        Kind::Service,
        &name,
        Some(Tier::Viz),
        json!({"spec": {
            "type": service_type,
            "selector": selector,
            "ports": [
                {"name": "http", "port": VIZ_HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "quic", "port": VIZ_QUIC_PORT, "targetPort": "quic", "protocol": "UDP"},
            ],
        }}),
    );
    let pdb = ctx.object(
        Kind::PodDisruptionBudget,
        &name,
        Some(Tier::Viz),
        json!({"spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}}}),
    );
    let jwt_secret = match &spec.auth_secret_ref {
        Some(r) => r.name.clone(),
        None => n.viz_auth_secret(),
    };
    let mut mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
        json!({"name": "token", "mountPath": TOKEN_DIR, "readOnly": true}),
        json!({"name": "viz-auth", "mountPath": VIZ_AUTH_DIR, "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": name}}),
        json!({"name": "token", "secret": {"secretName": n.token_secret(Tier::Viz), "defaultMode": 0o440}}),
        json!({"name": "viz-auth", "secret": {"secretName": jwt_secret, "defaultMode": 0o440}}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}),
    ];
    if ctx.tls_on() {
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
        volumes.push(json!({"name": "tls", "secret": {
            "secretName": ctx.tls_secret_name(),
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }}));
    }
    if let Some(r) = &spec.tls_secret_ref {
        mounts.push(json!({"name": "viz-tls", "mountPath": VIZ_TLS_DIR, "readOnly": true}));
        volumes.push(
            json!({"name": "viz-tls", "secret": {"secretName": r.name, "defaultMode": 0o440}}),
        );
    }
    let container = json!({
        "name": "viz",
        "image": spec.image,
        "args": ["viz", "--config", format!("{CONFIG_DIR}/viz.yaml")],
        "env": [{"name": "RUST_LOG", "value": "info"}],
        "ports": [
            {"name": "http", "containerPort": VIZ_HTTP_PORT, "protocol": "TCP"},
            {"name": "quic", "containerPort": VIZ_QUIC_PORT, "protocol": "UDP"},
        ],
        "volumeMounts": mounts,
        "resources": resources(&spec.resources, "100m", "128Mi", "1Gi"),
        "securityContext": restricted(),
        "livenessProbe": probe("/health", VIZ_HTTP_PORT, 10, 6),
        "readinessProbe": probe("/health", VIZ_HTTP_PORT, 5, 2),
    });
    let mut template = pod_template(ctx, Tier::Viz, hash, VIZ_HTTP_PORT, container, volumes);
    template["spec"]["affinity"] = spread_out(&selector);
    let sts = ctx.object(
        Kind::StatefulSet,
        &name,
        Some(Tier::Viz),
        json!({"spec": {
            "replicas": spec.replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector},
            "template": template,
        }}),
    );
    vec![service, pdb, sts]
}
