//! The ConfigMaps: each tier's YAML file, in the nested shape its `--config` reads, written from
//! the spec. Pod-specific settings (node id, advertised addresses) come from the downward API
//! as env variables; secrets are mounted files the file names, never values in it.

use serde_json::{Value, json};

use ringwatch_broker::store::RedisMode;

use super::{BuildError, Child, Ctx, Kind};
use crate::names::{BROKER_ADMIN_PORT, BROKER_GRPC_PORT, Tier, VIZ_HTTP_PORT, VIZ_QUIC_PORT};

/// Where pods find what is mounted.
pub const CONFIG_DIR: &str = "/etc/ringwatch/config";
pub const TLS_DIR: &str = "/etc/ringwatch/tls";
pub const AUTH_DIR: &str = "/etc/ringwatch/auth";
pub const TOKEN_DIR: &str = "/etc/ringwatch/token";
pub const VIZ_AUTH_DIR: &str = "/etc/ringwatch/viz-auth";
pub const VIZ_TLS_DIR: &str = "/etc/ringwatch/viz-tls";
pub const REDIS_DIR: &str = "/etc/ringwatch/redis";
pub const DATA_DIR: &str = "/var/lib/ringwatch";

/// One tier's ConfigMap and the YAML it holds.
pub(crate) struct TierConfig {
    pub tier: Tier,
    pub yaml: String,
    pub child: Child,
}

pub(crate) fn build(ctx: &Ctx) -> Result<Vec<TierConfig>, BuildError> {
    let files = [
        (Tier::Broker, broker_config(ctx)),
        (Tier::Agent, agent_config(ctx)),
        (Tier::Viz, viz_config(ctx)),
    ];
    files
        .into_iter()
        .map(|(tier, value)| {
            let yaml = serde_yaml_ng::to_string(&value).map_err(|e| BuildError::Config {
                tier: tier.as_str(),
                reason: e.to_string(),
            })?;
            let key = format!("{}.yaml", tier.as_str());
            let child = ctx.object(
                Kind::ConfigMap,
                &ctx.names.tier(tier),
                Some(tier),
                json!({"data": {key: yaml}}),
            );
            Ok(TierConfig { tier, yaml, child })
        })
        .collect()
}

/// A checksum of what a tier's pods read: its config file and the credentials it mounts.
/// Changing either changes the pod template, which rolls the tier.
pub(crate) fn tier_hash(ctx: &Ctx, configs: &[TierConfig], tier: Tier) -> String {
    let mut h = crc32fast::Hasher::new();
    if let Some(c) = configs.iter().find(|c| c.tier == tier) {
        h.update(c.yaml.as_bytes());
    }
    let m = ctx.material;
    let tls = m.tls.as_ref();
    let parts: Vec<&str> = match tier {
        Tier::Broker => vec![
            &m.broker_auth,
            tls.map_or("", |t| &t.tls_crt),
            tls.map_or("", |t| &t.ca_crt),
        ],
        Tier::Agent => vec![&m.agent_token, tls.map_or("", |t| &t.ca_crt)],
        Tier::Viz => vec![
            &m.viz_token,
            m.viz_jwt.as_deref().unwrap_or(""),
            tls.map_or("", |t| &t.ca_crt),
        ],
    };
    // The user's Secrets this tier mounts.
    let spec = &ctx.mc.spec;
    let tls_ref = spec.tls.secret_ref.as_ref();
    let refs = match tier {
        Tier::Broker => vec![
            tls_ref,
            spec.broker
                .storage
                .redis
                .as_ref()
                .and_then(|r| r.secret_ref.as_ref()),
        ],
        Tier::Agent => vec![tls_ref],
        Tier::Viz => vec![
            tls_ref,
            spec.viz.auth_secret_ref.as_ref(),
            spec.viz.tls_secret_ref.as_ref(),
        ],
    };
    let digests: Vec<&str> = refs
        .into_iter()
        .flatten()
        .filter_map(|r| m.referenced.get(&r.name).map(String::as_str))
        .collect();
    for p in parts.into_iter().chain(digests) {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    format!("{:08x}", h.finalize())
}

fn file(dir: &str, name: &str) -> String {
    format!("{dir}/{name}")
}

/// The broker's file (broker/src/config.rs's shape).
pub(crate) fn broker_config(ctx: &Ctx) -> Value {
    let spec = &ctx.mc.spec.broker;
    let tls = if ctx.tls_on() {
        json!({"cert": file(TLS_DIR, "tls.crt"), "key": file(TLS_DIR, "tls.key")})
    } else {
        json!({})
    };
    let mut cluster = json!({
        "enabled": true,
        "bootstrap_node": ctx.names.broker_pod(0),
        "vnodes": spec.vnodes,
        "raft": spec.raft,
        "detection": spec.detection,
    });
    if ctx.tls_on() {
        cluster["peer_tls_ca"] = json!(file(TLS_DIR, "ca.crt"));
    }
    let storage = match &spec.storage.redis {
        Some(r) => {
            let mut redis = json!({
                "urls": r.addresses,
                "mode": r.mode,
            });
            if let Some(m) = &r.master_name {
                redis["master_name"] = json!(m);
            }
            // The broker reads a CA file for a standalone or cluster Redis over TLS (not yet
            // through sentinels: there the public roots apply).
            let tls = r.addresses.iter().any(|a| a.starts_with("rediss://"));
            if tls && r.secret_ref.is_some() && r.mode != RedisMode::Sentinel {
                redis["ca_file"] = json!(file(REDIS_DIR, "ca.crt"));
            }
            json!({
                "kind": "redis",
                "retention": humantime::format_duration(spec.retention).to_string(),
                "redis": redis,
            })
        }
        None => json!({
            "kind": "embedded",
            "retention": humantime::format_duration(spec.retention).to_string(),
        }),
    };
    json!({
        "node": {"data_dir": DATA_DIR},
        "grpc": {
            "listen": format!("0.0.0.0:{BROKER_GRPC_PORT}"),
            "tls": tls,
            "auth": {"secret_file": file(AUTH_DIR, "secret")},
        },
        "admin": {"listen": format!("0.0.0.0:{BROKER_ADMIN_PORT}")},
        "cluster": cluster,
        "storage": storage,
    })
}

/// How a client tier reaches the brokers.
fn broker_client(ctx: &Ctx) -> Value {
    let mut client = json!({"token_file": file(TOKEN_DIR, "token")});
    if ctx.tls_on() {
        client["tls_ca"] = json!(file(TLS_DIR, "ca.crt"));
    }
    client
}

/// The agent's file (agent/src/config.rs's shape); the host id is the node's name.
pub(crate) fn agent_config(ctx: &Ctx) -> Value {
    json!({
        "collect": ctx.mc.spec.agent.collect,
        "brokers": {
            "endpoints": [ctx.names.ingest_url(ctx.tls_on())],
            "client": broker_client(ctx),
        },
        "metrics": {"listen": format!("0.0.0.0:{}", crate::names::AGENT_METRICS_PORT)},
    })
}

/// viz's file (viz/src/config.rs's shape).
pub(crate) fn viz_config(ctx: &Ctx) -> Value {
    let mut quic = json!({"listen": format!("0.0.0.0:{VIZ_QUIC_PORT}")});
    if ctx.mc.spec.viz.tls_secret_ref.is_some() {
        quic["cert"] = json!(file(VIZ_TLS_DIR, "tls.crt"));
        quic["key"] = json!(file(VIZ_TLS_DIR, "tls.key"));
    }
    json!({
        "http": {"listen": format!("0.0.0.0:{VIZ_HTTP_PORT}")},
        "brokers": {
            "endpoints": [ctx.names.ingest_url(ctx.tls_on())],
            "client": broker_client(ctx),
        },
        "push": {"quic": quic},
        "auth": {"jwt_secret_file": file(VIZ_AUTH_DIR, "jwt-secret")},
    })
}
