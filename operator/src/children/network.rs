//! NetworkPolicies and the PodMonitor.
//!
//! - Brokers: the gRPC port (ingest, queries, peer forwarding, Raft) admits this cluster's
//!   brokers, viz and agents; agents use the host's network, so they arrive from node
//!   addresses (`networkPolicy.nodeCidrs`), not as pods. The admin port (membership, probes,
//!   `/metrics`) admits only the brokers, the operator and Prometheus.
//! - viz: its HTTP and QUIC ports are the dashboard: open.
//!
//! Credentials still guard every port: a policy narrows who can knock, the token says who may
//! enter.

use serde_json::{Value, json};

use super::{Child, Ctx, Kind};
use crate::names::{BROKER_ADMIN_PORT, BROKER_GRPC_PORT, Tier, VIZ_HTTP_PORT, VIZ_QUIC_PORT};

fn pods(ctx: &Ctx, tier: Tier) -> Value {
    json!({"podSelector": {"matchLabels": ctx.names.selector(tier)}})
}

/// Pods of this name in any namespace (the operator, Prometheus).
fn anywhere(name: &str) -> Value {
    json!({
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
    })
}

pub(crate) fn build(ctx: &Ctx) -> Vec<Child> {
    let n = &ctx.names;
    let mut grpc_from = vec![
        pods(ctx, Tier::Broker),
        pods(ctx, Tier::Viz),
        pods(ctx, Tier::Agent),
    ];
    grpc_from.extend(
        ctx.mc
            .spec
            .network_policy
            .node_cidrs
            .iter()
            .map(|c| json!({"ipBlock": {"cidr": c}})),
    );
    let admin_from = vec![
        pods(ctx, Tier::Broker),
        anywhere("ringwatch-operator"),
        anywhere("prometheus"),
    ];
    let broker = ctx.object(
        Kind::NetworkPolicy,
        &n.tier(Tier::Broker),
        Some(Tier::Broker),
        json!({"spec": {
            "podSelector": {"matchLabels": n.selector(Tier::Broker)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": grpc_from, "ports": [{"protocol": "TCP", "port": BROKER_GRPC_PORT}]},
                {"from": admin_from, "ports": [{"protocol": "TCP", "port": BROKER_ADMIN_PORT}]},
            ],
        }}),
    );
    let viz = ctx.object(
        Kind::NetworkPolicy,
        &n.tier(Tier::Viz),
        Some(Tier::Viz),
        json!({"spec": {
            "podSelector": {"matchLabels": n.selector(Tier::Viz)},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [
                {"protocol": "TCP", "port": VIZ_HTTP_PORT},
                {"protocol": "UDP", "port": VIZ_QUIC_PORT},
            ]}],
        }}),
    );
    vec![broker, viz]
}

/// One PodMonitor for every tier's `/metrics` (made only when prometheus-operator's CRD is
/// installed).
pub(crate) fn pod_monitor(ctx: &Ctx) -> Child {
    let endpoint = |port: &str| json!({"port": port, "path": "/metrics", "interval": "30s"});
    ctx.object(
        Kind::PodMonitor,
        &ctx.names.cluster,
        None,
        json!({"spec": {
            "selector": {"matchLabels": {
                "app.kubernetes.io/name": "ringwatch",
                crate::names::INSTANCE: ctx.names.cluster,
            }},
            "podMetricsEndpoints": [endpoint("admin"), endpoint("http"), endpoint("metrics")],
        }}),
    )
}
