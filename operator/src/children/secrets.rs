//! The Secrets the operator generates: the brokers' token secret, each client tier's
//! credential, viz's token-signing secret and the CA with the broker certificate. Secrets the
//! user names in the spec are mounted, never written.

use serde_json::json;

use super::{Child, Ctx, Kind};
use crate::names::Tier;

pub(crate) fn build(ctx: &Ctx) -> Vec<Child> {
    let m = ctx.material;
    let n = &ctx.names;
    let mut out = vec![
        ctx.object(
            Kind::Secret,
            &n.auth_secret(),
            Some(Tier::Broker),
            json!({"type": "Opaque", "stringData": {"secret": m.broker_auth}}),
        ),
        ctx.object(
            Kind::Secret,
            &n.token_secret(Tier::Agent),
            Some(Tier::Agent),
            json!({"type": "Opaque", "stringData": {"token": m.agent_token}}),
        ),
        ctx.object(
            Kind::Secret,
            &n.token_secret(Tier::Viz),
            Some(Tier::Viz),
            json!({"type": "Opaque", "stringData": {"token": m.viz_token}}),
        ),
    ];
    if let Some(jwt) = &m.viz_jwt {
        out.push(ctx.object(
            Kind::Secret,
            &n.viz_auth_secret(),
            Some(Tier::Viz),
            json!({"type": "Opaque", "stringData": {"jwt-secret": jwt}}),
        ));
    }
    if let Some(t) = &m.tls {
        out.push(ctx.object(
            Kind::Secret,
            &n.tls_secret(),
            Some(Tier::Broker),
            json!({
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": t.tls_crt, "tls.key": t.tls_key, "ca.crt": t.ca_crt},
            }),
        ));
    }
    out
}
