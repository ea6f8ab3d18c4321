//! The agent DaemonSet: one on every node, tolerating every taint, seeing the host's processes
//! and network (host PID and network namespaces) and its `/proc`, `/sys` and root filesystem
//! read-only; the node's name (the host id) from the downward API. It needs no privilege: it
//! only reads, and runs as non-root with every capability dropped.

use serde_json::json;

use super::broker::pod_template;
use super::config::{CONFIG_DIR, TLS_DIR, TOKEN_DIR};
use super::{Child, Ctx, Kind, probe, resources, restricted};
use crate::names::{AGENT_METRICS_PORT, Tier};

pub(crate) fn build(ctx: &Ctx, hash: &str) -> Vec<Child> {
    let n = &ctx.names;
    let name = n.tier(Tier::Agent);
    let spec = &ctx.mc.spec.agent;
    let mut mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
        json!({"name": "token", "mountPath": TOKEN_DIR, "readOnly": true}),
        json!({"name": "proc", "mountPath": "/host/proc", "readOnly": true}),
        json!({"name": "sys", "mountPath": "/host/sys", "readOnly": true}),
        json!({"name": "root", "mountPath": "/host/root", "readOnly": true, "mountPropagation": "HostToContainer"}),
    ];
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": name}}),
        json!({"name": "token", "secret": {"secretName": n.token_secret(Tier::Agent), "defaultMode": 0o440}}),
        json!({"name": "proc", "hostPath": {"path": "/proc"}}),
        json!({"name": "sys", "hostPath": {"path": "/sys"}}),
        json!({"name": "root", "hostPath": {"path": "/"}}),
    ];
    if ctx.tls_on() {
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
        volumes.push(json!({"name": "tls", "secret": {
            "secretName": ctx.tls_secret_name(),
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }}));
    }
    let container = json!({
        "name": "agent",
        "image": spec.image,
        "args": ["agent", "--config", format!("{CONFIG_DIR}/agent.yaml")],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "RUST_LOG", "value": "info"},
        ],
        "ports": [{"name": "metrics", "containerPort": AGENT_METRICS_PORT}],
        "volumeMounts": mounts,
        "resources": resources(&spec.resources, "20m", "32Mi", "128Mi"),
        "securityContext": restricted(),
        "livenessProbe": probe("/health", AGENT_METRICS_PORT, 10, 6),
        "readinessProbe": probe("/health", AGENT_METRICS_PORT, 10, 3),
    });
    let mut template = pod_template(
        ctx,
        Tier::Agent,
        hash,
        AGENT_METRICS_PORT,
        container,
        volumes,
    );
    let pod = &mut template["spec"];
    pod["hostPID"] = json!(true);
    pod["hostNetwork"] = json!(true);
    pod["dnsPolicy"] = json!("ClusterFirstWithHostNet");
    pod["terminationGracePeriodSeconds"] = json!(15);
    let mut tolerations = vec![json!({"operator": "Exists"})];
    tolerations.extend(
        spec.tolerations
            .iter()
            .filter_map(|t| serde_json::to_value(t).ok()),
    );
    pod["tolerations"] = json!(tolerations);
    if !spec.node_selector.is_empty() {
        pod["nodeSelector"] = json!(spec.node_selector);
    }
    if let Some(p) = &spec.priority_class_name {
        pod["priorityClassName"] = json!(p);
    }
    vec![ctx.object(
        Kind::DaemonSet,
        &name,
        Some(Tier::Agent),
        json!({"spec": {
            "selector": {"matchLabels": n.selector(Tier::Agent)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": template,
        }}),
    )]
}
