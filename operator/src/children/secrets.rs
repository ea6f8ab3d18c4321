//! The Secrets the operator generates: the brokers' token secret, each client tier's
//! credential, viz's token-signing secret and the CA with the broker certificate. Secrets the
//! user names in the spec are mounted, never written.

use serde_json::{Value, json};

use super::{Child, Ctx, Kind};
use crate::names::Tier;

/// A Secret's `data`: each value base64 as the API stores it. (Applied as plain-text
/// `stringData`, the server would convert it, and keys dropped later would never be pruned.)
fn data(pairs: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| {
            let encoded = serde_json::to_value(k8s_openapi::ByteString(v.as_bytes().to_vec()))
                .unwrap_or(Value::Null);
            (k.to_string(), encoded)
        })
        .collect();
    Value::Object(map)
}

pub(crate) fn build(ctx: &Ctx) -> Vec<Child> {
    let m = ctx.material;
    let n = &ctx.names;
    let mut out = vec![
        ctx.object(
            Kind::Secret,
            &n.auth_secret(),
            Some(Tier::Broker),
            json!({"type": "Opaque", "data": data(&[("secret", &m.broker_auth)])}),
        ),
        ctx.object(
            Kind::Secret,
            &n.token_secret(Tier::Agent),
            Some(Tier::Agent),
            json!({"type": "Opaque", "data": data(&[("token", &m.agent_token)])}),
        ),
        ctx.object(
            Kind::Secret,
            &n.token_secret(Tier::Viz),
            Some(Tier::Viz),
            json!({"type": "Opaque", "data": data(&[("token", &m.viz_token)])}),
        ),
    ];
    if let Some(jwt) = &m.viz_jwt {
        out.push(ctx.object(
            Kind::Secret,
            &n.viz_auth_secret(),
            Some(Tier::Viz),
            json!({"type": "Opaque", "data": data(&[("jwt-secret", jwt)])}),
        ));
    }
    if let Some(t) = &m.tls {
        out.push(ctx.object(
            Kind::Secret,
            &n.tls_secret(),
            Some(Tier::Broker),
            json!({
                "type": "kubernetes.io/tls",
                "data": data(&[("tls.crt", &t.tls_crt), ("tls.key", &t.tls_key), ("ca.crt", &t.ca_crt)]),
            }),
        ));
    }
    out
}
